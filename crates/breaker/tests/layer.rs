//! The tower middleware around `tower::service_fn` services, in paused time.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use exhook_breaker::{
    Breaker, BreakerConfig, BreakerError, BreakerLayer, BreakerOpen, BreakerService, BreakerState, ErrorsAreFailures,
    Outcome,
};
use tower::{Layer, Service, ServiceExt, service_fn};

const SECOND: Duration = Duration::from_secs(1);

fn config() -> BreakerConfig {
    BreakerConfig {
        failure_rate: 0.5,
        minimum_calls: 1_000,
        window: 10 * SECOND,
        consecutive_failures: 2,
        open_duration: 5 * SECOND,
        half_open_probes: 1,
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("upstream unavailable")]
struct Unavailable;

/// An inner service counting its calls: even requests succeed (echoed), odd ones fail.
fn counted() -> (
    Arc<AtomicUsize>,
    impl Service<u32, Response = u32, Error = Unavailable, Future = impl Future<Output = Result<u32, Unavailable>>> + Clone,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let svc = service_fn(move |req: u32| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move { if req.is_multiple_of(2) { Ok(req) } else { Err(Unavailable) } }
    });
    (calls, svc)
}

#[tokio::test(start_paused = true)]
async fn layer_passes_results_through_and_records_them() {
    let breaker = Breaker::new(config());
    let (calls, inner) = counted();
    let mut svc = BreakerLayer::new(breaker.clone(), ErrorsAreFailures).layer(inner);

    assert_eq!(svc.ready().await.expect("ready").call(2).await.expect("ok"), 2);
    let err = svc.ready().await.expect("ready").call(1).await.unwrap_err();
    assert!(matches!(err, BreakerError::Inner(Unavailable)));
    assert_eq!(err.to_string(), "upstream service failed");
    assert_eq!(err.source().map(ToString::to_string).as_deref(), Some("upstream unavailable"));
    let s = breaker.snapshot();
    assert_eq!((s.calls_in_window, s.failures_in_window, s.consecutive_failures), (2, 1, 1));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn open_rejects_without_calling_the_inner_service() {
    let breaker = Breaker::new(config());
    let (calls, inner) = counted();
    let mut svc = BreakerService::new(inner, breaker.clone(), ErrorsAreFailures);
    for _ in 0..2 {
        assert!(matches!(svc.ready().await.expect("ready").call(1).await, Err(BreakerError::Inner(_))));
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    advance_and_check(&mut svc, &calls, SECOND, 4 * SECOND).await;
    advance_and_check(&mut svc, &calls, 3 * SECOND, SECOND).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "never called while open");
}

async fn advance_and_check<S>(svc: &mut S, calls: &AtomicUsize, by: Duration, retry_after: Duration)
where
    S: Service<u32, Response = u32, Error = BreakerError<Unavailable>>,
{
    tokio::time::advance(by).await;
    let before = calls.load(Ordering::SeqCst);
    let err = svc.ready().await.expect("ready").call(2).await.unwrap_err();
    assert!(err.is_open());
    let source = err.source().and_then(|e| e.downcast_ref::<BreakerOpen>()).copied();
    assert_eq!(source, Some(BreakerOpen { retry_after }));
    assert_eq!(err.into_inner(), None);
    assert_eq!(calls.load(Ordering::SeqCst), before);
}

#[tokio::test(start_paused = true)]
async fn half_open_probe_through_the_layer_closes_the_circuit() {
    let breaker = Breaker::new(config());
    let (calls, inner) = counted();
    let mut svc = BreakerLayer::new(breaker.clone(), ErrorsAreFailures).layer(inner);
    for _ in 0..2 {
        let _ = svc.ready().await.expect("ready").call(1).await;
    }
    tokio::time::advance(5 * SECOND).await;
    // A failing probe re-opens…
    assert!(matches!(svc.ready().await.expect("ready").call(3).await, Err(BreakerError::Inner(_))));
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(svc.ready().await.expect("ready").call(2).await.unwrap_err().is_open());
    // …a succeeding one closes.
    tokio::time::advance(5 * SECOND).await;
    assert_eq!(svc.ready().await.expect("ready").call(4).await.expect("probe"), 4);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn neutral_classification_is_not_recorded() {
    let breaker = Breaker::new(config());
    let (_, inner) = counted();
    // A classifier for which errors say nothing about the upstream.
    let classify = |r: &Result<u32, Unavailable>| if r.is_ok() { Outcome::Success } else { Outcome::Neutral };
    let mut svc = BreakerLayer::new(breaker.clone(), classify).layer(inner);
    for _ in 0..10 {
        let _ = svc.ready().await.expect("ready").call(1).await;
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().calls_in_window, 0);
}

#[tokio::test(start_paused = true)]
async fn a_decisive_error_classified_as_success_does_not_trip() {
    let breaker = Breaker::new(config());
    let (_, inner) = counted();
    let mut svc = BreakerLayer::new(breaker.clone(), |_: &Result<u32, Unavailable>| Outcome::Success).layer(inner);
    for _ in 0..10 {
        assert!(svc.ready().await.expect("ready").call(1).await.is_err());
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().failures_in_window, 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_frees_the_probe_slot() {
    let breaker = Breaker::new(config());
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    // Answers after one second.
    let inner = service_fn(move |req: u32| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(SECOND).await;
            Ok::<_, Unavailable>(req)
        }
    });
    let mut svc = BreakerLayer::new(breaker.clone(), ErrorsAreFailures).layer(inner);
    breaker.try_acquire().expect("closed").failure();
    breaker.try_acquire().expect("closed").failure();
    tokio::time::advance(5 * SECOND).await;

    let abandoned = svc.ready().await.expect("ready").call(1);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert!(svc.ready().await.expect("ready").call(2).await.unwrap_err().is_open(), "the only slot is taken");
    // The caller gives up (e.g. its own deadline): the future is dropped unfinished.
    let gave_up = tokio::time::timeout(SECOND / 2, abandoned).await;
    assert!(gave_up.is_err());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);

    assert_eq!(svc.ready().await.expect("ready").call(3).await.expect("probe"), 3);
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// An inner service whose readiness fails: `poll_ready` must pass it through.
#[derive(Clone, Debug)]
struct NeverReady;

impl Service<u32> for NeverReady {
    type Response = u32;
    type Error = Unavailable;
    type Future = std::future::Ready<Result<u32, Unavailable>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Unavailable>> {
        Poll::Ready(Err(Unavailable))
    }

    fn call(&mut self, req: u32) -> Self::Future {
        std::future::ready(Ok(req))
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_delegates_to_the_inner_service() {
    let breaker = Breaker::new(config());
    let mut svc = BreakerLayer::new(breaker.clone(), ErrorsAreFailures).layer(NeverReady);
    let err = svc.ready().await.unwrap_err();
    assert_eq!(err.into_inner(), Some(Unavailable));
    assert_eq!(breaker.snapshot().calls_in_window, 0, "readiness is not a call");
}

#[tokio::test(start_paused = true)]
async fn errors_flatten_into_boxed_errors_for_downcasting() {
    let open: BreakerError<Unavailable> = BreakerOpen { retry_after: SECOND }.into();
    let boxed = open.into_boxed();
    assert_eq!(boxed.downcast_ref::<BreakerOpen>(), Some(&BreakerOpen { retry_after: SECOND }));
    let inner: BreakerError<Unavailable> = BreakerError::Inner(Unavailable);
    assert!(inner.into_boxed().downcast_ref::<Unavailable>().is_some());
}
