//! Audit logger: connections, authentication attempts, sessions and deliveries as JSON lines
//! appended to `--file`, never the password. The provider is
//! `exhook_provider::examples::audit_log` (`src/examples/audit_log.rs`); this is its command line.
//!
//! `cargo run -p exhook-provider --example audit_log -- --listen 127.0.0.1:9001 --file audit.jsonl`

mod common;

use std::fs::File;

use exhook_provider::examples::audit_log::AuditLog;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::Args::parse("audit_log --listen ADDR --file PATH");
    let path = args.get("file").unwrap_or_else(|| "audit.jsonl".into());
    let file = File::options().create(true).append(true).open(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok(common::run(&args, AuditLog::new(file)).await?)
}
