//! The shared state machine: [`Breaker`], its [`Permit`]s and what it reports.
//!
//! ```text
//!            trip condition met                cool-down elapsed,
//!           (rate over window, or              next try_acquire
//!            consecutive failures)             becomes the first probe
//!   Closed ───────────────────────▶ Open ──────────────────────────▶ HalfOpen
//!     ▲                              ▲                                  │
//!     │                              └──────── any probe fails ─────────┤
//!     └────────────── all `half_open_probes` probes succeed ────────────┘
//!                     (fresh window, streak reset)
//! ```
//!
//! Every transition bumps a *generation* number and every [`Permit`] remembers the
//! generation it was issued in. An outcome is applied only if the breaker is still in that
//! generation: a call admitted while closed that completes after the circuit opened (or
//! after it closed again) is stale and must not count as a probe, nor free a probe slot it
//! never held, nor land in a window that was started afresh.
//!
//! ## Locking
//!
//! All state sits behind one `std::sync::Mutex`. Every critical section is a handful of
//! integer operations on a fixed-size struct (the window is ten buckets): no allocation, no
//! I/O, no `.await`, no user callback — so the lock is never held across a suspension point
//! and contention is as short as it gets. A `tokio::sync::Mutex` would only add overhead.
//! The clock is read inside the lock so outcomes are recorded in time order. State changes
//! are published to the `watch` channel while the lock is still held, so subscribers see
//! transitions in the order they happened; `watch::Sender::send_replace` does not block on
//! receivers. A poisoned lock is recovered: the state is plain data that no panic can leave
//! half-written in a way that matters more than failing every call would.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::BreakerConfig;
use crate::window::Window;

/// The externally visible state of a [`Breaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are recorded.
    Closed,
    /// A limited number of probe calls are admitted to test recovery.
    HalfOpen,
    /// Calls are rejected until the cool-down has elapsed.
    Open,
}

impl BreakerState {
    /// The value for a gauge metric: 0 closed, 1 half-open, 2 open.
    pub const fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }

    /// A stable lower-case name: `closed`, `half_open` or `open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one call ended, as far as the breaker is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The upstream is healthy (including decisive negative answers).
    Success,
    /// An upstream fault: timeout, transport error, `UNAVAILABLE`…
    Failure,
    /// Says nothing about the upstream (e.g. the caller gave up); not recorded.
    Neutral,
}

/// A call was rejected because the circuit is open (or half-open with every probe slot taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("circuit breaker is open (retry after {retry_after:?})")]
pub struct BreakerOpen {
    /// Time left until the breaker admits a probe; zero when it is half-open and all probe
    /// slots are in use (a slot frees up as soon as a probe completes).
    pub retry_after: Duration,
}

/// A point-in-time view of a [`Breaker`], for status pages and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSnapshot {
    /// The current state.
    pub state: BreakerState,
    /// Calls recorded (successes and failures, not neutral outcomes) in the rolling window.
    pub calls_in_window: u32,
    /// Failures recorded in the rolling window.
    pub failures_in_window: u32,
    /// Current streak of failures (reset by a success and when the circuit closes).
    pub consecutive_failures: u32,
    /// When the circuit last opened; `None` while closed.
    pub opened_at: Option<Instant>,
    /// How many times the circuit opened since the breaker was created (including re-opens
    /// from half-open).
    pub times_opened: u64,
}

/// The phase of the state machine, with the data each phase needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Closed,
    Open {
        since: Instant,
    },
    HalfOpen {
        /// When the circuit opened (kept for the snapshot).
        opened_at: Instant,
        /// Probes admitted and not yet resolved.
        in_flight: u32,
        /// Probes that succeeded.
        succeeded: u32,
    },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// The state behind the lock. Its methods are pure functions of `now`; each returns the
/// new state when it made a transition, for the caller to publish.
#[derive(Debug)]
struct Core {
    config: BreakerConfig,
    phase: Phase,
    /// Bumped on every transition; see the module documentation.
    generation: u64,
    window: Window,
    streak: u32,
    times_opened: u64,
}

impl Core {
    fn new(config: BreakerConfig, now: Instant) -> Self {
        let window = Window::new(config.window, now);
        Core { config, phase: Phase::Closed, generation: 0, window, streak: 0, times_opened: 0 }
    }

    fn enter(&mut self, phase: Phase) -> BreakerState {
        self.phase = phase;
        self.generation = self.generation.wrapping_add(1);
        phase.state()
    }

    fn open(&mut self, now: Instant) -> BreakerState {
        self.times_opened = self.times_opened.saturating_add(1);
        self.enter(Phase::Open { since: now })
    }

    fn close(&mut self, now: Instant) -> BreakerState {
        self.window.reset(self.config.window, now);
        self.streak = 0;
        self.enter(Phase::Closed)
    }

    /// Admits a call, returning the generation for its permit.
    fn acquire(&mut self, now: Instant) -> (Result<u64, BreakerOpen>, Option<BreakerState>) {
        match &mut self.phase {
            Phase::Closed => (Ok(self.generation), None),
            Phase::Open { since } => {
                let since = *since;
                let elapsed = now.saturating_duration_since(since);
                if elapsed >= self.config.open_duration {
                    let state = self.enter(Phase::HalfOpen { opened_at: since, in_flight: 1, succeeded: 0 });
                    (Ok(self.generation), Some(state))
                } else {
                    (Err(BreakerOpen { retry_after: self.config.open_duration.saturating_sub(elapsed) }), None)
                }
            }
            Phase::HalfOpen { in_flight, succeeded, .. } => {
                if in_flight.saturating_add(*succeeded) < self.config.probes() {
                    *in_flight += 1;
                    (Ok(self.generation), None)
                } else {
                    (Err(BreakerOpen { retry_after: Duration::ZERO }), None)
                }
            }
        }
    }

    fn should_trip(&self, now: Instant) -> bool {
        let threshold = self.config.consecutive_failures;
        if threshold > 0 && self.streak >= threshold {
            return true;
        }
        let (calls, failures) = self.window.totals(now);
        calls > 0
            && calls >= self.config.minimum_calls
            && f64::from(failures) / f64::from(calls) >= self.config.failure_rate
    }

    /// Applies the outcome of a call admitted in `generation`.
    fn complete(&mut self, generation: u64, outcome: Outcome, now: Instant) -> Option<BreakerState> {
        if generation != self.generation {
            return None;
        }
        let probes = self.config.probes();
        match &mut self.phase {
            Phase::Closed => {
                match outcome {
                    Outcome::Neutral => return None,
                    Outcome::Success => {
                        self.window.record(now, false);
                        self.streak = 0;
                    }
                    Outcome::Failure => {
                        self.window.record(now, true);
                        self.streak = self.streak.saturating_add(1);
                    }
                }
                // A success can trip too: it may be the call that reaches `minimum_calls`
                // while the rate is still at or above the threshold.
                self.should_trip(now).then(|| self.open(now))
            }
            Phase::HalfOpen { in_flight, succeeded, .. } => {
                *in_flight = in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Neutral => None,
                    Outcome::Failure => Some(self.open(now)),
                    Outcome::Success => {
                        *succeeded = succeeded.saturating_add(1);
                        (*succeeded >= probes).then(|| self.close(now))
                    }
                }
            }
            // No permit is ever issued in an open generation.
            Phase::Open { .. } => None,
        }
    }

    fn set_config(&mut self, config: BreakerConfig, now: Instant) -> Option<BreakerState> {
        self.window.resize(config.window, now);
        self.config = config;
        // Fewer probes may now be required than have already succeeded: close rather than
        // wait for a probe that will never be admitted.
        match self.phase {
            Phase::HalfOpen { succeeded, .. } if succeeded >= self.config.probes() => Some(self.close(now)),
            _ => None,
        }
    }

    fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let (calls_in_window, failures_in_window) = self.window.totals(now);
        let opened_at = match self.phase {
            Phase::Closed => None,
            Phase::Open { since } => Some(since),
            Phase::HalfOpen { opened_at, .. } => Some(opened_at),
        };
        BreakerSnapshot {
            state: self.phase.state(),
            calls_in_window,
            failures_in_window,
            consecutive_failures: self.streak,
            opened_at,
            times_opened: self.times_opened,
        }
    }
}

struct Shared {
    core: Mutex<Core>,
    /// Published under the `core` lock; its value always equals the phase's state.
    state_tx: watch::Sender<BreakerState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` under the lock with the current time, publishing any transition it reports
    /// before the lock is released.
    fn with_core<T>(&self, f: impl FnOnce(&mut Core, Instant) -> (T, Option<BreakerState>)) -> T {
        let mut core = self.lock();
        let (value, transition) = f(&mut core, Instant::now());
        if let Some(state) = transition {
            self.state_tx.send_replace(state);
        }
        drop(core);
        value
    }

    fn complete(&self, generation: u64, outcome: Outcome) {
        self.with_core(|core, now| ((), core.complete(generation, outcome, now)));
    }
}

/// A circuit breaker for one upstream provider.
///
/// Cloning is cheap and clones share the state, so one breaker can be shared by a provider and
/// be observed by the status page; keep it across configuration reloads (with
/// [`set_config`](Self::set_config)) so a reload does not forget a sick provider.
///
/// Time comes from [`tokio::time::Instant`], so tests can pause and advance it.
#[derive(Clone)]
pub struct Breaker {
    shared: Arc<Shared>,
}

impl Breaker {
    /// A closed breaker with an empty window.
    pub fn new(config: BreakerConfig) -> Breaker {
        let core = Core::new(config, Instant::now());
        let (state_tx, _) = watch::channel(BreakerState::Closed);
        Breaker { shared: Arc::new(Shared { core: Mutex::new(core), state_tx }) }
    }

    /// Asks to make one call.
    ///
    /// * Closed: admitted.
    /// * Open: if the cool-down has elapsed the breaker turns half-open and admits this call
    ///   as its first probe; otherwise rejected with the time left.
    /// * Half-open: admitted as a probe while fewer than `half_open_probes` probes are in
    ///   flight or have succeeded; otherwise rejected (with `retry_after` zero).
    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let generation = self.shared.with_core(|core, now| core.acquire(now))?;
        Ok(Permit { shared: Some(Arc::clone(&self.shared)), generation })
    }

    /// The current state.
    ///
    /// An open breaker whose cool-down has elapsed still reports [`BreakerState::Open`]
    /// until the next [`try_acquire`](Self::try_acquire) turns it half-open.
    pub fn state(&self) -> BreakerState {
        *self.shared.state_tx.borrow()
    }

    /// The configuration in use.
    pub fn config(&self) -> BreakerConfig {
        self.shared.lock().config.clone()
    }

    /// Replaces the configuration (hot reload), keeping the state, the window's counts, the
    /// failure streak and any cool-down in progress (measured with the new `open_duration`).
    ///
    /// If the window length changes, what the window holds is kept and ages out one new
    /// window later. If fewer probes are now required than have already succeeded, the
    /// breaker closes.
    pub fn set_config(&self, config: BreakerConfig) {
        self.shared.with_core(|core, now| ((), core.set_config(config, now)));
    }

    /// A point-in-time view of the breaker.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.shared.with_core(|core, now| (core.snapshot(now), None))
    }

    /// A receiver of state changes, for metrics and logs.
    ///
    /// It starts at the current state; `changed().await` wakes on every transition. Like any
    /// `watch` receiver it keeps only the latest value, so a slow reader may skip
    /// intermediate states but never sees them out of order.
    pub fn subscribe(&self) -> watch::Receiver<BreakerState> {
        self.shared.state_tx.subscribe()
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker").field("state", &self.state()).finish_non_exhaustive()
    }
}

/// Permission to make one call, from [`Breaker::try_acquire`].
///
/// Resolve it with [`success`](Self::success), [`failure`](Self::failure) or
/// [`ignore`](Self::ignore). Dropping it unresolved counts as `ignore`, so a cancelled call
/// frees its half-open probe slot instead of leaking it.
#[must_use = "resolve the permit with success(), failure() or ignore(); dropping it counts as ignore()"]
pub struct Permit {
    /// `None` once resolved, so `Drop` does nothing more.
    shared: Option<Arc<Shared>>,
    generation: u64,
}

impl Permit {
    /// The call succeeded.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// The call failed because of the upstream.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    /// The outcome says nothing about the upstream; it is not recorded.
    pub fn ignore(self) {
        self.record(Outcome::Neutral);
    }

    /// Records `outcome`.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(shared) = self.shared.take() {
            shared.complete(self.generation, outcome);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.complete(self.generation, Outcome::Neutral);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("generation", &self.generation).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_rate: 0.5,
            minimum_calls: 4,
            window: 10 * SECOND,
            consecutive_failures: 0,
            open_duration: 5 * SECOND,
            half_open_probes: 2,
        }
    }

    #[test]
    fn state_names_and_gauges() {
        let all = [BreakerState::Closed, BreakerState::HalfOpen, BreakerState::Open];
        assert_eq!(all.map(BreakerState::as_gauge), [0, 1, 2]);
        assert_eq!(all.map(BreakerState::as_str), ["closed", "half_open", "open"]);
        assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
    }

    #[test]
    fn core_walks_the_whole_cycle() {
        let t0 = Instant::now();
        let mut core = Core::new(config(), t0);
        for i in 0..3 {
            let (g, _) = core.acquire(t0);
            assert_eq!(core.complete(g.unwrap(), Outcome::Failure, t0), None, "call {i}");
        }
        let (g, _) = core.acquire(t0);
        assert_eq!(core.complete(g.unwrap(), Outcome::Success, t0), Some(BreakerState::Open), "4 calls, rate 0.75");
        let (r, t) = core.acquire(t0 + 2 * SECOND);
        assert_eq!((r, t), (Err(BreakerOpen { retry_after: 3 * SECOND }), None));
        let (p1, t) = core.acquire(t0 + 5 * SECOND);
        assert_eq!(t, Some(BreakerState::HalfOpen));
        let (p2, _) = core.acquire(t0 + 5 * SECOND);
        assert_eq!(core.acquire(t0 + 5 * SECOND).0, Err(BreakerOpen { retry_after: Duration::ZERO }));
        let now = t0 + 6 * SECOND;
        assert_eq!(core.complete(p1.unwrap(), Outcome::Success, now), None);
        assert_eq!(core.complete(p2.unwrap(), Outcome::Success, now), Some(BreakerState::Closed));
        assert_eq!(core.window.totals(now), (0, 0));
        assert_eq!(core.times_opened, 1);
    }

    #[test]
    fn stale_permits_are_ignored() {
        let t0 = Instant::now();
        let mut core = Core::new(BreakerConfig { consecutive_failures: 1, ..config() }, t0);
        let old = core.acquire(t0).0.unwrap();
        let tripper = core.acquire(t0).0.unwrap();
        assert_eq!(core.complete(tripper, Outcome::Failure, t0), Some(BreakerState::Open));
        let later = t0 + 5 * SECOND;
        let probe = core.acquire(later).0.unwrap();
        // The call admitted while closed finishes now: neither a probe success nor a failure.
        assert_eq!(core.complete(old, Outcome::Failure, later), None);
        assert_eq!(core.complete(old, Outcome::Success, later), None);
        assert!(matches!(core.phase, Phase::HalfOpen { in_flight: 1, succeeded: 0, .. }));
        assert_eq!(core.complete(probe, Outcome::Failure, later), Some(BreakerState::Open));
        assert_eq!(core.times_opened, 2);
    }

    #[test]
    fn lowering_probes_below_successes_closes() {
        let t0 = Instant::now();
        let mut core = Core::new(BreakerConfig { consecutive_failures: 1, half_open_probes: 3, ..config() }, t0);
        let g = core.acquire(t0).0.unwrap();
        core.complete(g, Outcome::Failure, t0);
        let later = t0 + 5 * SECOND;
        let p = core.acquire(later).0.unwrap();
        assert_eq!(core.complete(p, Outcome::Success, later), None);
        let fewer = BreakerConfig { half_open_probes: 1, ..core.config.clone() };
        assert_eq!(core.set_config(fewer, later), Some(BreakerState::Closed));
    }

    #[test]
    fn zero_probes_behave_as_one() {
        let t0 = Instant::now();
        let mut core = Core::new(BreakerConfig { consecutive_failures: 1, half_open_probes: 0, ..config() }, t0);
        let g = core.acquire(t0).0.unwrap();
        core.complete(g, Outcome::Failure, t0);
        let later = t0 + 5 * SECOND;
        let p = core.acquire(later).0.unwrap();
        assert!(core.acquire(later).0.is_err());
        assert_eq!(core.complete(p, Outcome::Success, later), Some(BreakerState::Closed));
    }
}
