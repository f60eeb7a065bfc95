//! Payload rewriter: on the topics given with `--topic`, wraps each payload in a JSON
//! envelope. The provider is `exhook_provider::examples::payload_rewriter`
//! (`src/examples/payload_rewriter.rs`); this is its command line.
//!
//! `cargo run -p exhook-provider --example payload_rewriter -- --listen 127.0.0.1:9001 --topic 'sensors/#'`

mod common;

use exhook_provider::examples::payload_rewriter::PayloadRewriter;

#[tokio::main]
async fn main() -> Result<(), exhook_provider::ServeError> {
    let args = common::Args::parse("payload_rewriter --listen ADDR --topic FILTER [--topic FILTER ...]");
    common::run(&args, PayloadRewriter::new(args.all("topic"))).await
}
