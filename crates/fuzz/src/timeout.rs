//! `grpc_timeout`: the `grpc-timeout` header parser against the gRPC spec.

use std::time::Duration;

/// What the spec allows: `TimeoutValue TimeoutUnit`, 1 to 8 ASCII digits and one of
/// `H M S m u n`, as nanoseconds (at most 99999999 hours: fits in a u128 easily).
fn expected(value: &str) -> Option<u128> {
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u128 = digits.parse().ok()?;
    let nanos_per_unit: u128 = match unit {
        "H" => 3_600_000_000_000,
        "M" => 60_000_000_000,
        "S" => 1_000_000_000,
        "m" => 1_000_000,
        "u" => 1_000,
        "n" => 1,
        _ => return None,
    };
    Some(n * nanos_per_unit)
}

pub(crate) fn run(data: &[u8]) {
    let value = String::from_utf8_lossy(data);
    let got = exhook_server::parse_grpc_timeout(&value);
    assert_eq!(got, exhook_proto::codec::parse_grpc_timeout(&value), "the server and the codec disagree");
    assert_eq!(got.map(|d| d.as_nanos()), expected(&value), "grpc-timeout {value:?}");
    if let Some(d) = got {
        // The deadline is `received + budget`: the largest budget must not overflow it.
        assert!(tokio::time::Instant::now().checked_add(d).is_some(), "{value:?} overflows a deadline");
        assert!(d <= Duration::from_secs(99_999_999 * 3600));
    }
}
