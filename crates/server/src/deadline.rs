//! The caller's deadline, from the `grpc-timeout` header EMQX sends (its `request_timeout`).

use std::time::Duration;

use tokio::time::Instant;

pub use exhook_proto::codec::parse_grpc_timeout;

/// When the answer must be on its way to EMQX: the incoming `grpc-timeout` (or the
/// configured default), less a small reserve for writing the answer back.
pub fn deadline_for(metadata: &tonic::metadata::MetadataMap, default: Duration, received: Instant) -> Instant {
    let budget =
        metadata.get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout).unwrap_or(default);
    // 5% of the budget, at most 20 ms: time to encode and send the answer, and slack for a
    // busy machine's late timers (EMQX's default 5 s budget loses 20 ms; a 200 ms one, 10 ms).
    let reserve = (budget / 20).min(Duration::from_millis(20));
    received + budget.saturating_sub(reserve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("100u"), Some(Duration::from_micros(100)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "5 S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn deadline_uses_header_or_default() {
        let now = Instant::now();
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(deadline_for(&md, Duration::from_secs(5), now), now + Duration::from_millis(4980));
        md.insert("grpc-timeout", "100m".parse().unwrap());
        assert_eq!(deadline_for(&md, Duration::from_secs(5), now), now + Duration::from_millis(95));
    }
}
