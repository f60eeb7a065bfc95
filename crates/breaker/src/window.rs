//! The rolling window of recorded outcomes: a ring of [`WINDOW_BUCKETS`] time buckets.
//!
//! Time since `origin` is cut into buckets of `window / WINDOW_BUCKETS`; bucket number `i`
//! lives in slot `i % WINDOW_BUCKETS` and remembers `i`, so a slot whose number is stale is
//! simply cleared when it is reused. The window at time `now` is the current bucket and the
//! `WINDOW_BUCKETS - 1` before it. Memory is constant and no timer is needed: buckets age
//! out by arithmetic on the next read or write.

use std::time::Duration;

use tokio::time::Instant;

/// Number of buckets the rolling window is divided into.
pub const WINDOW_BUCKETS: u32 = 10;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    /// The bucket number (time since `origin` divided by the bucket width).
    index: u64,
    calls: u32,
    failures: u32,
}

/// Calls and failures recorded over the last `window`.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    origin: Instant,
    width: Duration,
    buckets: [Bucket; WINDOW_BUCKETS as usize],
}

/// Width of one bucket; at least a nanosecond so the index computation never divides by zero.
fn bucket_width(window: Duration) -> Duration {
    (window / WINDOW_BUCKETS).max(Duration::from_nanos(1))
}

impl Window {
    /// An empty window starting at `now`.
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        Window { origin: now, width: bucket_width(window), buckets: [Bucket::default(); WINDOW_BUCKETS as usize] }
    }

    fn index(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let width = self.width.as_nanos().max(1);
        u64::try_from(elapsed / width).unwrap_or(u64::MAX)
    }

    /// Whether bucket number `bucket` is inside the window whose newest bucket is `current`.
    fn live(bucket: u64, current: u64) -> bool {
        bucket <= current && current - bucket < u64::from(WINDOW_BUCKETS)
    }

    /// Records one call at `now`.
    pub(crate) fn record(&mut self, now: Instant, failed: bool) {
        let index = self.index(now);
        let slot = (index % u64::from(WINDOW_BUCKETS)) as usize;
        if let Some(bucket) = self.buckets.get_mut(slot) {
            if bucket.index != index {
                *bucket = Bucket { index, calls: 0, failures: 0 };
            }
            bucket.calls = bucket.calls.saturating_add(1);
            if failed {
                bucket.failures = bucket.failures.saturating_add(1);
            }
        }
    }

    /// `(calls, failures)` recorded in the window ending at `now`.
    pub(crate) fn totals(&self, now: Instant) -> (u32, u32) {
        let current = self.index(now);
        self.buckets
            .iter()
            .filter(|b| Self::live(b.index, current))
            .fold((0u32, 0u32), |(c, f), b| (c.saturating_add(b.calls), f.saturating_add(b.failures)))
    }

    /// Forgets everything; the window restarts at `now`.
    pub(crate) fn reset(&mut self, window: Duration, now: Instant) {
        *self = Window::new(window, now);
    }

    /// Adopts a new window length, keeping what was recorded.
    ///
    /// With the same bucket width nothing changes. Otherwise the buckets cannot be mapped
    /// onto the new grid, so the current totals are carried over into the first bucket of a
    /// window restarting at `now`; they age out one new `window` later.
    pub(crate) fn resize(&mut self, window: Duration, now: Instant) {
        if bucket_width(window) == self.width {
            return;
        }
        let (calls, failures) = self.totals(now);
        *self = Window::new(window, now);
        if let Some(first) = self.buckets.first_mut() {
            *first = Bucket { index: 0, calls, failures };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn counts_within_the_window_and_ages_out_after_it() {
        let t0 = Instant::now();
        let mut w = Window::new(10 * SECOND, t0);
        w.record(t0, true);
        w.record(t0 + SECOND / 2, false);
        w.record(t0 + 3 * SECOND, true);
        assert_eq!(w.totals(t0 + 3 * SECOND), (3, 2));
        // The first bucket [0 s, 1 s) is still in the window until 10 s.
        assert_eq!(w.totals(t0 + 9 * SECOND + SECOND / 2), (3, 2));
        assert_eq!(w.totals(t0 + 10 * SECOND), (1, 1));
        assert_eq!(w.totals(t0 + 13 * SECOND), (0, 0));
    }

    #[test]
    fn reused_slots_are_cleared() {
        let t0 = Instant::now();
        let mut w = Window::new(10 * SECOND, t0);
        w.record(t0, true);
        // Same slot, ten buckets later: the old count must not leak into the new bucket.
        w.record(t0 + 10 * SECOND, false);
        assert_eq!(w.totals(t0 + 10 * SECOND), (1, 0));
        // Far in the future, everything has aged out.
        assert_eq!(w.totals(t0 + 1_000 * SECOND), (0, 0));
    }

    #[test]
    fn resize_keeps_totals_then_ages_them_out() {
        let t0 = Instant::now();
        let mut w = Window::new(10 * SECOND, t0);
        w.record(t0, true);
        w.record(t0, false);
        let before = w.clone();
        w.resize(10 * SECOND, t0 + SECOND);
        assert_eq!(w.buckets, before.buckets, "same width: untouched");
        w.resize(20 * SECOND, t0 + SECOND);
        assert_eq!(w.totals(t0 + SECOND), (2, 1));
        assert_eq!(w.totals(t0 + 20 * SECOND), (2, 1));
        assert_eq!(w.totals(t0 + 21 * SECOND), (0, 0));
    }

    #[test]
    fn tiny_windows_do_not_divide_by_zero() {
        let t0 = Instant::now();
        let mut w = Window::new(Duration::from_nanos(3), t0);
        w.record(t0, true);
        assert_eq!(w.totals(t0), (1, 1));
        assert_eq!(w.totals(t0 + SECOND), (0, 0));
    }
}
