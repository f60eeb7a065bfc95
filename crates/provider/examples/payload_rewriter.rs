//! Payload rewriter: on the topics given with `--topic`, wraps each payload in a JSON
//! envelope `{"from": clientid, "ts": ms, "data": payload-as-text}`; the rest of the message
//! (id, QoS, headers, topic) is echoed by the kit. Payloads that are not UTF-8 pass unchanged.
//!
//! `cargo run -p exhook-provider --example payload_rewriter -- --listen 127.0.0.1:9001 --topic 'sensors/#'`

mod common;

use exhook_provider::model::MessagePublishRequest;
use exhook_provider::{Provider, Publish, RequestExt, ignore, rewrite};

struct Envelope(Vec<String>);

#[exhook_provider::provider]
impl Provider for Envelope {
    fn topics(&self) -> Vec<String> {
        self.0.clone()
    }

    async fn message_publish(&self, r: &MessagePublishRequest) -> Publish {
        let m = r.msg();
        let Ok(data) = std::str::from_utf8(&m.payload) else { return ignore() };
        let envelope = serde_json::json!({ "from": m.from, "ts": m.timestamp, "data": data });
        rewrite().payload(envelope.to_string())
    }
}

#[tokio::main]
async fn main() -> Result<(), exhook_provider::ServeError> {
    let args = common::Args::parse("payload_rewriter --listen ADDR --topic FILTER [--topic FILTER ...]");
    common::run(&args, Envelope(args.all("topic"))).await
}
