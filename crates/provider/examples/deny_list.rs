//! Deny-list authenticator: refuses clients whose clientid or username is listed, and has no
//! opinion on everybody else. The provider is `exhook_provider::examples::deny_list`
//! (`src/examples/deny_list.rs`); this is its command line.
//!
//! `cargo run -p exhook-provider --example deny_list -- --listen 127.0.0.1:9001 --deny mallory`

mod common;

use exhook_provider::examples::deny_list::DenyList;

#[tokio::main]
async fn main() -> Result<(), exhook_provider::ServeError> {
    let args = common::Args::parse("deny_list --listen ADDR --deny NAME [--deny NAME ...]");
    common::run(&args, DenyList::new(args.all("deny"))).await
}
