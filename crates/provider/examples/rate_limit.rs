//! Per-client rate limiter on `message.publish`: a token bucket per clientid; over it,
//! `stop_publish()`. The provider is `exhook_provider::examples::rate_limit`
//! (`src/examples/rate_limit.rs`); this is its command line.
//!
//! `cargo run -p exhook-provider --example rate_limit -- --listen 127.0.0.1:9001 --rate 10 --burst 20`

mod common;

use exhook_provider::examples::rate_limit::RateLimit;

#[tokio::main]
async fn main() -> Result<(), exhook_provider::ServeError> {
    let args = common::Args::parse("rate_limit --listen ADDR --rate PER_SECOND --burst N");
    let (rate, burst) = (args.parsed("rate", 10.0_f64), args.parsed("burst", 20.0_f64));
    common::run(&args, RateLimit::new(rate, burst)).await
}
