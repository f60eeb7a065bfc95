//! The last minutes of each provider, for the status page's sparklines and breaker timeline:
//! a bounded ring per provider ([`SAMPLES`] samples, one every [`EVERY`]), filled by a task of
//! the admin plane from the same metric families `/metrics` exports. Nothing here runs on the
//! call path: a sample reads the counters and histograms the calls already recorded.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exhook_server::Gateway;
use serde::Serialize;

/// Time between samples.
pub const EVERY: Duration = Duration::from_secs(2);

/// Samples kept per provider: 150 × 2 s = the last 5 minutes.
pub const SAMPLES: usize = 150;

/// One provider at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// When (Unix milliseconds).
    pub at: u64,
    /// Calls per second since the previous sample (answered and failed).
    pub calls_per_s: f64,
    /// p99 call latency since the previous sample, in seconds (`None`: no call).
    pub p99: Option<f64>,
    /// The breaker: `closed`, `half-open` or `open`.
    pub breaker: &'static str,
}

/// One provider's counters as read for a sample.
#[derive(Debug)]
struct Reading {
    name: String,
    calls: u64,
    buckets: Vec<(f64, u64)>,
    breaker: &'static str,
}

/// What the previous sample read, to difference against.
#[derive(Debug)]
struct Last {
    at: SystemTime,
    calls: u64,
    buckets: Vec<(f64, u64)>,
}

/// Every provider's ring.
#[derive(Debug, Default)]
pub struct History {
    rings: Mutex<BTreeMap<String, (Last, VecDeque<Sample>)>>,
}

/// The p99 of the calls between two cumulative histograms (`(upper bound, cumulative count)`,
/// the last bound +Inf): the first bound whose count reaches 99 % of the calls; `None` when
/// there was none (or only above the last finite bound's range, reported as that bound).
pub fn p99_between(now: &[(f64, u64)], before: &[(f64, u64)]) -> Option<f64> {
    let delta: Vec<(f64, u64)> =
        now.iter().enumerate().map(|(i, &(le, n))| (le, n.saturating_sub(before.get(i).map_or(0, |b| b.1)))).collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let want = (total as f64 * 0.99).ceil() as u64;
    let finite = delta.iter().rev().find(|(le, _)| le.is_finite()).map(|(le, _)| *le);
    delta.iter().find(|(_, n)| *n >= want).map(|(le, _)| if le.is_finite() { *le } else { finite.unwrap_or(*le) })
}

impl History {
    /// Takes one sample of every configured provider (and forgets removed ones).
    pub fn sample(&self, gateway: &Gateway) {
        let now = SystemTime::now();
        let at = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let snap = gateway.snapshot();
        let names: Vec<String> = snap.config().providers.iter().map(|p| p.name.clone()).collect();
        // Read the metrics before taking the lock: the lock covers map updates only. One pass
        // over each family for every provider (a pass per provider was O(providers × series)).
        let mut summaries = gateway.metrics().provider_summaries();
        let mut latencies = gateway.metrics().provider_latencies();
        let readings: Vec<Reading> = snap
            .providers()
            .iter()
            .zip(&names)
            .map(|(p, name)| {
                let summary = summaries.remove(name).unwrap_or_default();
                let buckets = latencies.remove(name).unwrap_or_else(|| gateway.metrics().provider_latency(name));
                Reading {
                    name: name.clone(),
                    calls: summary.answered + summary.failed,
                    buckets,
                    breaker: p.breaker().snapshot().state.as_str(),
                }
            })
            .collect();
        let mut rings = self.rings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rings.retain(|name, _| names.contains(name));
        for Reading { name, calls, buckets, breaker } in readings {
            let Some((last, ring)) = rings.get_mut(&name) else {
                // The first reading: a baseline, no rate yet.
                let ring = VecDeque::from([Sample { at, calls_per_s: 0.0, p99: None, breaker }]);
                rings.insert(name, (Last { at: now, calls, buckets }, ring));
                continue;
            };
            let dt = now.duration_since(last.at).unwrap_or_default().as_secs_f64();
            let calls_per_s = if dt > 0.0 { calls.saturating_sub(last.calls) as f64 / dt } else { 0.0 };
            let p99 = p99_between(&buckets, &last.buckets);
            if ring.len() >= SAMPLES {
                ring.pop_front();
            }
            ring.push_back(Sample { at, calls_per_s, p99, breaker });
            *last = Last { at: now, calls, buckets };
        }
    }

    /// A provider's samples, oldest first.
    pub fn of(&self, provider: &str) -> Vec<Sample> {
        let rings = self.rings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rings.get(provider).map(|(_, r)| r.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_of_the_interval_only() {
        let inf = f64::INFINITY;
        let before = [(0.001, 100), (0.01, 100), (inf, 100)];
        // 100 new calls: 98 under 1 ms, 2 under 10 ms → p99 is the 10 ms bucket.
        let now = [(0.001, 198), (0.01, 200), (inf, 200)];
        assert_eq!(p99_between(&now, &before), Some(0.01));
        assert_eq!(p99_between(&before, &before), None, "no call in the interval");
        // Everything fast: 1 ms.
        assert_eq!(p99_between(&[(0.001, 50), (0.01, 50), (inf, 50)], &[]), Some(0.001));
        // Beyond the last finite bound: reported as that bound.
        assert_eq!(p99_between(&[(0.001, 0), (0.01, 0), (inf, 5)], &[]), Some(0.01));
    }
}
