//! Topic-prefix authorizer per tenant: a client `user@tenant` may publish and subscribe only
//! under its tenant's prefix. The provider is `exhook_provider::examples::tenant_topics`
//! (`src/examples/tenant_topics.rs`); this is its command line.
//!
//! `cargo run -p exhook-provider --example tenant_topics -- --listen 127.0.0.1:9001 \
//!     --tenant acme=acme/ --tenant globex=tenants/globex/`

mod common;

use exhook_provider::examples::tenant_topics::TenantTopics;

#[tokio::main]
async fn main() -> Result<(), exhook_provider::ServeError> {
    let args = common::Args::parse("tenant_topics --listen ADDR --tenant NAME=PREFIX [--tenant ...]");
    let tenants = args.all("tenant").into_iter().filter_map(|t| {
        let (name, prefix) = t.split_once('=')?;
        Some((name.to_owned(), prefix.to_owned()))
    });
    common::run(&args, TenantTopics::new(tenants)).await
}
