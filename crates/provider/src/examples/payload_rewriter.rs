//! Payload rewriter: on its topic filters, wraps each payload in a JSON envelope
//! `{"from": clientid, "ts": ms, "data": payload-as-text}`; the rest of the message (id, QoS,
//! headers, topic) is echoed by the kit. Payloads that are not UTF-8 pass unchanged.
//!
//! `cargo run -p exhook-provider --example payload_rewriter -- --listen 127.0.0.1:9001 --topic 'sensors/#'`

use exhook_provider::model::MessagePublishRequest;
use exhook_provider::{Provider, Publish, RequestExt, ignore, rewrite};

/// Wraps the payloads of the messages on its topic filters in a JSON envelope.
pub struct PayloadRewriter(Vec<String>);

impl PayloadRewriter {
    /// Rewrites messages whose topic matches one of `topics` (MQTT filters; none: every topic).
    pub fn new<S: Into<String>>(topics: impl IntoIterator<Item = S>) -> PayloadRewriter {
        PayloadRewriter(topics.into_iter().map(Into::into).collect())
    }
}

#[exhook_provider::provider]
impl Provider for PayloadRewriter {
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
