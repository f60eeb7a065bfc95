//! One replica of a provider: its HTTP/2 connections, in-flight count, health and ejection.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use std::sync::Arc;

use crate::conn::{Connection, TlsClient};

/// Milliseconds since the first call of this function in the process (a monotonic clock that
/// fits in an atomic).
pub(crate) fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(Instant::now().saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
}

/// The hash of a dispatch key (clientid) that picks the queue shard, replica and connection.
pub fn hash_key(key: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

/// One replica.
#[derive(Debug)]
pub struct Endpoint {
    /// Its URL.
    pub url: String,
    connections: Vec<Connection>,
    inflight: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// `now_ms()` until which it is ejected (0: not ejected).
    ejected_until: AtomicU64,
    healthy: AtomicBool,
}

/// How one endpoint is doing, for the status API.
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    /// Its URL.
    pub url: String,
    /// Last probe or call reached it.
    pub healthy: bool,
    /// Currently ejected as an outlier.
    pub ejected: bool,
    /// Calls in flight.
    pub inflight: usize,
}

impl Endpoint {
    pub(crate) fn new(
        url: &str,
        connections: usize,
        connect_timeout: Duration,
        tls: Option<&Arc<TlsClient>>,
    ) -> Result<Endpoint, tonic::Status> {
        // Each is its own HTTP/2 connection, opened on first use and re-opened after it closes.
        let connections = (0..connections.max(1))
            .map(|_| Connection::new(url, connect_timeout, tls.cloned()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Endpoint {
            url: url.to_owned(),
            connections,
            inflight: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        })
    }

    /// The connection for a dispatch key: one clientid always uses the same one.
    pub(crate) fn connection(&self, key_hash: u64) -> &Connection {
        &self.connections[(key_hash % self.connections.len() as u64) as usize]
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub(crate) fn begin(&self) -> InflightGuard<'_> {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(&self.inflight)
    }

    /// Not ejected and not known to be down.
    pub(crate) fn available(&self, now: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.ejected_until.load(Ordering::Relaxed) <= now
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a call or probe result. Returns true if the endpoint's health changed.
    pub(crate) fn record(&self, reached: bool, eject_after: u32, eject_for: Duration) -> bool {
        if reached {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            !self.healthy.swap(true, Ordering::Relaxed)
        } else {
            let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= eject_after {
                let until = now_ms().saturating_add(u64::try_from(eject_for.as_millis()).unwrap_or(u64::MAX));
                self.ejected_until.store(until, Ordering::Relaxed);
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            false
        }
    }

    /// Records a health probe: marks it up or down.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        if healthy {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    pub(crate) fn status(&self) -> EndpointStatus {
        EndpointStatus {
            url: self.url.clone(),
            healthy: self.is_healthy(),
            ejected: self.ejected_until.load(Ordering::Relaxed) > now_ms(),
            inflight: self.inflight(),
        }
    }
}

pub(crate) struct InflightGuard<'a>(&'a AtomicUsize);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Chooses a replica (by index), never `exclude` (the replica a call just failed on).
///
/// * `sticky` (notifications): rendezvous hashing of the key over the available replicas, so
///   one client's events go to one replica, and an ejection moves only that replica's clients.
/// * otherwise: power of two choices by fewest calls in flight.
///
/// Falls back to unhealthy replicas when none is available (better a try than a certain
/// failure: the breaker decides whether to call at all). `None` only when `exclude` was the
/// only replica.
pub(crate) fn pick(
    endpoints: &[Endpoint],
    key_hash: u64,
    sticky: bool,
    random: u64,
    exclude: Option<usize>,
) -> Option<usize> {
    let n = endpoints.len();
    if n == 1 {
        return (exclude != Some(0)).then_some(0);
    }
    let now = now_ms();
    let allowed = |i: usize| Some(i) != exclude;
    let any_available = (0..n).any(|i| allowed(i) && endpoints[i].available(now));
    let eligible = |i: usize| allowed(i) && (!any_available || endpoints[i].available(now));
    if sticky {
        return (0..n).filter(|&i| eligible(i)).max_by_key(|&i| mix(key_hash ^ mix(i as u64 + 1)));
    }
    let a = (random % n as u64) as usize;
    let b = ((random >> 32) % n as u64) as usize;
    match (eligible(a), eligible(b)) {
        (true, true) => Some(if endpoints[b].inflight() < endpoints[a].inflight() { b } else { a }),
        (true, false) => Some(a),
        (false, true) => Some(b),
        (false, false) => (0..n).filter(|&i| eligible(i)).min_by_key(|&i| endpoints[i].inflight()),
    }
}

/// A 64-bit mixer (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A cheap per-call random number (no shared state).
pub(crate) fn random() -> u64 {
    use std::cell::Cell;
    thread_local!(static STATE: Cell<u64> = Cell::new(mix(now_ms() ^ (std::process::id() as u64) << 32) | 1));
    STATE.with(|s| {
        let x = mix(s.get().wrapping_add(0x9e37_79b9_7f4a_7c15));
        s.set(x);
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: usize) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(&format!("http://127.0.0.1:{}", 1000 + i), 1, Duration::from_secs(1), None).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn sticky_keeps_a_key_and_moves_only_ejected_keys() {
        let eps = endpoints(3);
        let keys: Vec<u64> = (0..300).map(|i| hash_key(&format!("client-{i}"))).collect();
        let before: Vec<usize> = keys.iter().map(|k| pick(&eps, *k, true, 0, None).unwrap()).collect();
        for (k, b) in keys.iter().zip(&before) {
            assert_eq!(pick(&eps, *k, true, 99, None), Some(*b));
            assert_ne!(pick(&eps, *k, true, 99, Some(*b)), Some(*b), "never the excluded replica");
        }
        let used: std::collections::HashSet<_> = before.iter().collect();
        assert_eq!(used.len(), 3, "keys spread over every replica");
        // Eject replica 1: only its keys move.
        for _ in 0..5 {
            eps[1].record(false, 5, Duration::from_secs(60));
        }
        for (k, b) in keys.iter().zip(&before) {
            let now = pick(&eps, *k, true, 0, None).unwrap();
            if *b == 1 {
                assert_ne!(now, 1);
            } else {
                assert_eq!(now, *b);
            }
        }
    }

    #[tokio::test]
    async fn p2c_prefers_fewer_in_flight_and_skips_unavailable() {
        let eps = endpoints(2);
        let _busy = [eps[0].begin(), eps[0].begin()];
        for r in 0..50u64 {
            let random = r | ((r + 1) << 32); // two different replicas
            assert_eq!(pick(&eps, 0, false, random, None), Some(1));
        }
        assert_eq!(pick(&eps, 0, false, 1 << 32, Some(1)), Some(0), "retry goes elsewhere");
        eps[1].set_healthy(false);
        assert_eq!(pick(&eps, 0, false, 1 << 32, None), Some(0));
        // Nobody available: still pick someone.
        eps[0].set_healthy(false);
        assert!(pick(&eps, 0, false, 7, None).is_some());
        let single = endpoints(1);
        assert_eq!(pick(&single, 0, false, 0, Some(0)), None);
    }

    #[tokio::test]
    async fn ejection_after_consecutive_failures() {
        let eps = endpoints(1);
        assert!(eps[0].available(now_ms()));
        for _ in 0..2 {
            eps[0].record(false, 3, Duration::from_secs(60));
        }
        assert!(eps[0].available(now_ms()));
        eps[0].record(true, 3, Duration::from_secs(60));
        for _ in 0..2 {
            eps[0].record(false, 3, Duration::from_secs(60));
        }
        assert!(eps[0].available(now_ms()), "a success resets the streak");
        eps[0].record(false, 3, Duration::from_secs(60));
        assert!(!eps[0].available(now_ms()));
        assert!(eps[0].status().ejected);
    }
}
