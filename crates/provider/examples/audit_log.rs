//! Audit logger: connections, authentication attempts, sessions and deliveries as JSON lines
//! appended to `--file`. It writes chosen fields only, never a whole `ClientInfo`, so the
//! password EMQX sends with `client.authenticate` never reaches the file.
//!
//! `cargo run -p exhook-provider --example audit_log -- --listen 127.0.0.1:9001 --file audit.jsonl`

mod common;

use std::fs::File;
use std::io::Write as _;
use std::sync::Mutex;

use exhook_provider::model::{
    ClientAuthenticateRequest, ClientConnectedRequest, ClientDisconnectedRequest, ClientInfo, MessageDeliveredRequest,
    SessionCreatedRequest,
};
use exhook_provider::{Decision, Provider, RequestExt, ignore};
use serde_json::{Value, json};

struct Audit(Mutex<File>);

impl Audit {
    fn write(&self, event: &str, c: &ClientInfo, extra: Value) {
        let line = json!({ "event": event, "clientid": c.clientid, "username": c.username,
                           "peerhost": c.peerhost, "extra": extra });
        // One short append per event; the lock is never held across an await.
        let mut file = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(file, "{line}") {
            tracing::error!("audit file: {e}");
        }
    }
}

#[exhook_provider::provider]
impl Provider for Audit {
    async fn client_authenticate(&self, r: &ClientAuthenticateRequest) -> Decision {
        self.write("authenticate", r.client(), json!({ "result_so_far": r.result }));
        ignore()
    }
    async fn client_connected(&self, r: &ClientConnectedRequest) {
        self.write("connected", r.client(), Value::Null);
    }
    async fn client_disconnected(&self, r: &ClientDisconnectedRequest) {
        self.write("disconnected", r.client(), json!({ "reason": r.reason }));
    }
    async fn session_created(&self, r: &SessionCreatedRequest) {
        self.write("session_created", r.client(), Value::Null);
    }
    async fn message_delivered(&self, r: &MessageDeliveredRequest) {
        self.write("delivered", r.client(), json!({ "topic": r.msg().topic, "id": r.msg().id }));
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = common::Args::parse("audit_log --listen ADDR --file PATH");
    let path = args.get("file").unwrap_or_else(|| "audit.jsonl".into());
    let file = File::options().create(true).append(true).open(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok(common::run(&args, Audit(Mutex::new(file))).await?)
}
