//! The state machine, driven through the public API in paused time.

use std::time::Duration;

use exhook_breaker::{Breaker, BreakerConfig, BreakerOpen, BreakerState, Outcome};
use tokio::time::{Instant, advance};

const SECOND: Duration = Duration::from_secs(1);

/// Rate-only breaker: 50 % over 10 s with at least 10 calls; 5 s cool-down; 2 probes.
fn rate_only() -> BreakerConfig {
    BreakerConfig {
        failure_rate: 0.5,
        minimum_calls: 10,
        window: 10 * SECOND,
        consecutive_failures: 0,
        open_duration: 5 * SECOND,
        half_open_probes: 2,
    }
}

/// Trips after 3 failures in a row; the rate condition is out of reach.
fn streak_only() -> BreakerConfig {
    BreakerConfig { minimum_calls: 1_000, consecutive_failures: 3, ..rate_only() }
}

fn record(breaker: &Breaker, outcome: Outcome) {
    breaker.try_acquire().expect("admitted").record(outcome);
}

fn record_n(breaker: &Breaker, n: usize, outcome: Outcome) {
    for _ in 0..n {
        record(breaker, outcome);
    }
}

/// Opens `breaker` (configured with `streak_only`-like settings) by failing `n` calls.
fn trip(breaker: &Breaker, n: u32) {
    for _ in 0..n {
        breaker.try_acquire().expect("closed").failure();
    }
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn opens_on_failure_rate_once_minimum_calls_is_reached() {
    let b = Breaker::new(rate_only());
    record_n(&b, 5, Outcome::Success);
    record_n(&b, 4, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed, "9 calls < minimum 10");
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open, "5/10 failures >= 0.5");
    let s = b.snapshot();
    assert_eq!((s.calls_in_window, s.failures_in_window, s.times_opened), (10, 5, 1));
    assert_eq!(s.opened_at, Some(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn does_not_open_below_minimum_calls() {
    let b = Breaker::new(rate_only());
    record_n(&b, 9, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed, "100 % failures but only 9 calls");
    assert_eq!(b.snapshot().failures_in_window, 9);
}

#[tokio::test(start_paused = true)]
async fn does_not_open_below_failure_rate() {
    let b = Breaker::new(rate_only());
    record_n(&b, 6, Outcome::Success);
    record_n(&b, 4, Outcome::Failure);
    record_n(&b, 10, Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed, "4/20 failures");
}

#[tokio::test(start_paused = true)]
async fn a_success_can_complete_the_minimum_and_trip() {
    let b = Breaker::new(rate_only());
    record_n(&b, 5, Outcome::Failure);
    record_n(&b, 4, Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    record(&b, Outcome::Success);
    assert_eq!(b.state(), BreakerState::Open, "the 10th call, 5/10 failures");
}

#[tokio::test(start_paused = true)]
async fn failure_rate_is_computed_over_the_rolling_window() {
    let b = Breaker::new(rate_only());
    record_n(&b, 9, Outcome::Failure);
    advance(9 * SECOND).await;
    assert_eq!(b.snapshot().failures_in_window, 9, "still inside the window");
    advance(SECOND).await;
    let s = b.snapshot();
    assert_eq!((s.calls_in_window, s.failures_in_window), (0, 0), "aged out after `window`");
    // Without aging this would be 10 failures out of 10.
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed);
    // Fresh calls in the new window trip it again as usual.
    record_n(&b, 4, Outcome::Success);
    record_n(&b, 4, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed, "9 calls in the window");
    record(&b, Outcome::Success);
    assert_eq!(b.state(), BreakerState::Open, "5/10 within the window");
}

#[tokio::test(start_paused = true)]
async fn old_successes_age_out_too() {
    let b = Breaker::new(rate_only());
    record_n(&b, 20, Outcome::Success);
    advance(5 * SECOND).await;
    record_n(&b, 9, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed, "9/29 failures");
    advance(5 * SECOND).await;
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open, "the successes aged out: 10/10");
}

#[tokio::test(start_paused = true)]
async fn opens_on_consecutive_failures_below_minimum_calls() {
    let b = Breaker::new(streak_only());
    record_n(&b, 2, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 2);
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().consecutive_failures, 3);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_streak() {
    let b = Breaker::new(streak_only());
    record_n(&b, 2, Outcome::Failure);
    record(&b, Outcome::Success);
    assert_eq!(b.snapshot().consecutive_failures, 0);
    record_n(&b, 2, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed, "2 + success + 2 is no streak of 3");
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn zero_consecutive_failures_disables_the_streak_trip() {
    let b = Breaker::new(BreakerConfig { consecutive_failures: 0, ..streak_only() });
    record_n(&b, 100, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_and_reports_retry_after() {
    let b = Breaker::new(streak_only());
    trip(&b, 3);
    assert_eq!(b.try_acquire().unwrap_err(), BreakerOpen { retry_after: 5 * SECOND });
    advance(2 * SECOND).await;
    assert_eq!(b.try_acquire().unwrap_err().retry_after, 3 * SECOND);
    advance(2_999 * Duration::from_millis(1)).await;
    assert_eq!(b.try_acquire().unwrap_err().retry_after, Duration::from_millis(1));
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_probes_and_closes_when_all_succeed() {
    let b = Breaker::new(streak_only());
    trip(&b, 3);
    advance(5 * SECOND).await;
    assert_eq!(b.state(), BreakerState::Open, "turns half-open on the next call, not by itself");
    let p1 = b.try_acquire().expect("first probe");
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let p2 = b.try_acquire().expect("second probe");
    assert_eq!(b.try_acquire().unwrap_err(), BreakerOpen { retry_after: Duration::ZERO });
    p1.success();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert!(b.try_acquire().is_err(), "a succeeded probe still uses its slot");
    p2.success();
    assert_eq!(b.state(), BreakerState::Closed);
    let s = b.snapshot();
    assert_eq!((s.calls_in_window, s.failures_in_window, s.consecutive_failures), (0, 0, 0), "fresh window");
    assert_eq!((s.opened_at, s.times_opened), (None, 1));
    b.try_acquire().expect("closed again").success();
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_a_new_cool_down() {
    let b = Breaker::new(streak_only());
    trip(&b, 3);
    let first_opened = b.snapshot().opened_at.expect("open");
    advance(7 * SECOND).await;
    let p1 = b.try_acquire().expect("probe");
    let p2 = b.try_acquire().expect("probe");
    assert_eq!(b.snapshot().opened_at, Some(first_opened), "half-open remembers when it opened");
    p1.success();
    p2.failure();
    assert_eq!(b.state(), BreakerState::Open);
    let s = b.snapshot();
    assert_eq!(s.opened_at, Some(first_opened + 7 * SECOND));
    assert_eq!(s.times_opened, 2);
    assert_eq!(b.try_acquire().unwrap_err().retry_after, 5 * SECOND, "a full new cool-down");
    advance(5 * SECOND).await;
    b.try_acquire().expect("probing again").success();
    b.try_acquire().expect("probing again").success();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_permit_is_neutral_and_frees_its_probe_slot() {
    let b = Breaker::new(streak_only());
    trip(&b, 3);
    advance(5 * SECOND).await;
    let p1 = b.try_acquire().expect("probe");
    let p2 = b.try_acquire().expect("probe");
    assert!(b.try_acquire().is_err());
    drop(p1);
    assert_eq!(b.state(), BreakerState::HalfOpen, "neutral: neither closes nor reopens");
    let p3 = b.try_acquire().expect("the dropped probe's slot is free again");
    assert!(b.try_acquire().is_err());
    p2.success();
    p3.success();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn ignore_frees_the_probe_slot_too() {
    let b = Breaker::new(streak_only());
    trip(&b, 3);
    advance(5 * SECOND).await;
    b.try_acquire().expect("probe").ignore();
    b.try_acquire().expect("probe").ignore();
    assert_eq!(b.state(), BreakerState::HalfOpen);
    b.try_acquire().expect("probe").success();
    b.try_acquire().expect("probe").success();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn neutral_outcomes_do_not_count() {
    let b = Breaker::new(BreakerConfig { consecutive_failures: 3, ..rate_only() });
    record_n(&b, 2, Outcome::Failure);
    record_n(&b, 50, Outcome::Neutral);
    drop(b.try_acquire().expect("closed"));
    let s = b.snapshot();
    assert_eq!((s.calls_in_window, s.failures_in_window), (2, 2), "neutral calls are not in the window");
    assert_eq!(s.consecutive_failures, 2, "neutral calls neither extend nor break the streak");
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_while_closed_does_not_count_as_a_probe() {
    let b = Breaker::new(streak_only());
    let slow = b.try_acquire().expect("closed");
    trip(&b, 3);
    advance(5 * SECOND).await;
    let p1 = b.try_acquire().expect("probe");
    slow.success();
    let p2 = b.try_acquire().expect("the stale success took no slot");
    p1.success();
    assert_eq!(b.state(), BreakerState::HalfOpen, "only one of two probes succeeded");
    p2.success();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn set_config_keeps_state_and_window() {
    let b = Breaker::new(rate_only());
    record_n(&b, 3, Outcome::Failure);
    let looser = BreakerConfig { minimum_calls: 50, failure_rate: 0.9, ..rate_only() };
    b.set_config(looser.clone());
    assert_eq!(b.config(), looser);
    assert_eq!(b.snapshot().failures_in_window, 3, "the window survives a reload");
    b.set_config(BreakerConfig { window: 20 * SECOND, consecutive_failures: 4, ..looser });
    let s = b.snapshot();
    assert_eq!((s.failures_in_window, s.consecutive_failures), (3, 3), "also across a window resize");
    record(&b, Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open, "the streak carried over");

    // Open survives a reload; a shorter cool-down applies to the one in progress.
    b.set_config(BreakerConfig { open_duration: 2 * SECOND, ..b.config() });
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.try_acquire().unwrap_err().retry_after, 2 * SECOND);
    advance(2 * SECOND).await;
    let probe = b.try_acquire().expect("probe");
    b.set_config(b.config());
    assert_eq!(b.state(), BreakerState::HalfOpen);
    probe.success();
    assert_eq!(b.state(), BreakerState::HalfOpen, "2 probes required");
}

#[tokio::test(start_paused = true)]
async fn subscribe_sees_transitions_in_order() {
    let b = Breaker::new(streak_only());
    let mut rx = b.subscribe();
    assert_eq!(*rx.borrow_and_update(), BreakerState::Closed);
    let observer = tokio::spawn(async move {
        let mut seen = Vec::new();
        while rx.changed().await.is_ok() {
            let state = *rx.borrow_and_update();
            seen.push(state);
            if seen.len() == 3 {
                break;
            }
        }
        seen
    });
    let yield_to_observer = || async {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    };
    trip(&b, 3);
    yield_to_observer().await;
    advance(5 * SECOND).await;
    let p1 = b.try_acquire().expect("probe");
    yield_to_observer().await;
    p1.success();
    b.try_acquire().expect("probe").success();
    let seen = observer.await.expect("observer");
    assert_eq!(seen, [BreakerState::Open, BreakerState::HalfOpen, BreakerState::Closed]);
}

#[tokio::test(start_paused = true)]
async fn subscribe_starts_at_the_current_state() {
    let b = Breaker::new(streak_only());
    trip(&b, 3);
    let rx = b.subscribe();
    assert_eq!(*rx.borrow(), BreakerState::Open);
    assert!(!rx.has_changed().expect("sender alive"));
}

#[tokio::test(start_paused = true)]
async fn clones_share_state() {
    let a = Breaker::new(streak_only());
    let b = a.clone();
    let mut rx = b.subscribe();
    trip(&a, 3);
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.try_acquire().is_err());
    assert!(rx.has_changed().expect("sender alive"));
    assert_eq!(*rx.borrow_and_update(), BreakerState::Open);
    assert_eq!(b.snapshot(), a.snapshot());
}

#[tokio::test(start_paused = true)]
async fn permits_are_send_and_breakers_are_shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let b = Breaker::new(rate_only());
    assert_send_sync(&b);
    let permit = b.try_acquire().expect("closed");
    assert_send_sync(&permit);
    tokio::spawn(async move { permit.failure() }).await.expect("task");
    assert_eq!(b.snapshot().failures_in_window, 1);
}
