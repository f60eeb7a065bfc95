//! [`BreakerConfig`]: when the circuit opens and how it recovers.

use std::time::Duration;

/// When a breaker opens and how it recovers.
///
/// The breaker opens when either trip condition holds:
///
/// * **failure rate**: at least [`minimum_calls`](Self::minimum_calls) outcomes were recorded
///   in the rolling [`window`](Self::window) and `failures / calls >= failure_rate`;
/// * **consecutive failures**: the last [`consecutive_failures`](Self::consecutive_failures)
///   recorded outcomes were all failures (`0` disables this condition).
///
/// After [`open_duration`](Self::open_duration) the next call is admitted as a probe
/// (half-open); up to [`half_open_probes`](Self::half_open_probes) probes are admitted, all
/// of them must succeed to close the circuit, and any failing probe opens it again.
///
/// [`Breaker::new`](crate::Breaker::new) accepts any value and clamps what it cannot use
/// (zero probes behave as one); call [`validate`](Self::validate) where the configuration
/// is loaded to report mistakes instead.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Open when `failures / calls` in the window reaches this (`0 < rate ≤ 1`)…
    pub failure_rate: f64,
    /// …and at least this many calls were recorded in the window.
    pub minimum_calls: u32,
    /// The rolling window, kept as a fixed number of buckets (see
    /// [`WINDOW_BUCKETS`](crate::WINDOW_BUCKETS)), so an outcome stops counting at most
    /// `window` after it was recorded and at least `window - window / WINDOW_BUCKETS`.
    pub window: Duration,
    /// Also open after this many failures in a row (`0` disables).
    pub consecutive_failures: u32,
    /// How long the circuit stays open before probing.
    pub open_duration: Duration,
    /// Probe calls admitted while half-open; all must succeed to close.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate: 0.5,
            minimum_calls: 20,
            window: Duration::from_secs(10),
            consecutive_failures: 5,
            open_duration: Duration::from_secs(5),
            half_open_probes: 3,
        }
    }
}

impl BreakerConfig {
    /// Checks the values; the error message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let rate = self.failure_rate;
        if rate.is_nan() || rate <= 0.0 || rate > 1.0 {
            return Err(format!("failure_rate must be in (0, 1], got {rate}"));
        }
        if self.window.is_zero() {
            return Err("window must be greater than zero".to_owned());
        }
        if self.open_duration.is_zero() {
            return Err("open_duration must be greater than zero".to_owned());
        }
        if self.half_open_probes == 0 {
            return Err("half_open_probes must be at least 1".to_owned());
        }
        Ok(())
    }

    /// Probes admitted while half-open; never zero, so a half-open breaker cannot get stuck.
    pub(crate) fn probes(&self) -> u32 {
        self.half_open_probes.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_values() {
        let c = BreakerConfig::default();
        assert_eq!(c.failure_rate, 0.5);
        assert_eq!(c.minimum_calls, 20);
        assert_eq!(c.window, Duration::from_secs(10));
        assert_eq!(c.consecutive_failures, 5);
        assert_eq!(c.open_duration, Duration::from_secs(5));
        assert_eq!(c.half_open_probes, 3);
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn validate_names_the_bad_field() {
        let bad = |f: fn(&mut BreakerConfig)| {
            let mut c = BreakerConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        for rate in [0.0, -0.1, 1.5, f64::NAN, f64::INFINITY] {
            let mut c = BreakerConfig { failure_rate: rate, ..BreakerConfig::default() };
            assert!(c.validate().unwrap_err().contains("failure_rate"), "{rate}");
            c.failure_rate = 1.0;
            assert_eq!(c.validate(), Ok(()));
        }
        assert!(bad(|c| c.window = Duration::ZERO).contains("window"));
        assert!(bad(|c| c.open_duration = Duration::ZERO).contains("open_duration"));
        assert!(bad(|c| c.half_open_probes = 0).contains("half_open_probes"));
        // Zero is meaningful for these two.
        let ok = BreakerConfig { minimum_calls: 0, consecutive_failures: 0, ..BreakerConfig::default() };
        assert_eq!(ok.validate(), Ok(()));
    }
}
