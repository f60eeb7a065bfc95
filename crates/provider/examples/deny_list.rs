//! Deny-list authenticator: refuses clients whose clientid or username is listed, and has no
//! opinion on everybody else (the next provider, or EMQX's own value, decides).
//!
//! `cargo run -p exhook-provider --example deny_list -- --listen 127.0.0.1:9001 --deny mallory`

mod common;

use std::collections::HashSet;

use exhook_provider::model::ClientAuthenticateRequest;
use exhook_provider::{Decision, Provider, RequestExt, deny, ignore};

struct DenyList(HashSet<String>);

#[exhook_provider::provider]
impl Provider for DenyList {
    async fn client_authenticate(&self, r: &ClientAuthenticateRequest) -> Decision {
        let c = r.client();
        if self.0.contains(&c.clientid) || self.0.contains(&c.username) { deny() } else { ignore() }
    }
}

#[tokio::main]
async fn main() -> Result<(), exhook_provider::ServeError> {
    let args = common::Args::parse("deny_list --listen ADDR --deny NAME [--deny NAME ...]");
    common::run(&args, DenyList(args.all("deny").into_iter().collect())).await
}
