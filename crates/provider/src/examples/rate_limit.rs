//! Per-client rate limiter on `message.publish`: a token bucket per clientid (`rate` tokens
//! per second, at most `burst`); a publish without a token is stopped (`stop_publish()`: EMQX
//! does not deliver it), the others get no opinion.
//!
//! `cargo run -p exhook-provider --example rate_limit -- --listen 127.0.0.1:9001 --rate 10 --burst 20`

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use exhook_provider::model::MessagePublishRequest;
use exhook_provider::{Provider, Publish, RequestExt, ignore, stop_publish};

/// Buckets kept at most; beyond it the full (idle) ones are forgotten, as a full bucket is
/// what a new client gets anyway.
const MAX_CLIENTS: usize = 100_000;

/// A token bucket per publishing clientid.
pub struct RateLimit {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    /// `rate` tokens per second (at least 0), buckets of `burst` tokens (at least 1).
    pub fn new(rate: f64, burst: f64) -> RateLimit {
        RateLimit { rate: rate.max(0.0), burst: burst.max(1.0), buckets: Mutex::default() }
    }

    fn take(&self, client: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(client) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + rate * now.duration_since(*at).as_secs_f64() < burst);
        }
        let (tokens, at) = buckets.entry(client.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + self.rate * now.duration_since(*at).as_secs_f64()).min(self.burst);
        *at = now;
        let allowed = *tokens >= 1.0;
        if allowed {
            *tokens -= 1.0;
        }
        allowed
    }
}

#[exhook_provider::provider]
impl Provider for RateLimit {
    async fn message_publish(&self, r: &MessagePublishRequest) -> Publish {
        if self.take(&r.msg().from) { ignore() } else { stop_publish() }
    }
}
