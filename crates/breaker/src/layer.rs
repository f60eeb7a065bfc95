//! The tower middleware: [`BreakerLayer`], [`BreakerService`], [`ResponseFuture`].

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::breaker::{Breaker, BreakerOpen, Outcome, Permit};

/// Decides what a call's result says about the upstream.
///
/// Only upstream faults (timeouts, transport errors, `UNAVAILABLE`…) should be
/// [`Outcome::Failure`]; a provider's decisive answer — even a denial or an application
/// error — is [`Outcome::Success`], and anything that says nothing about the upstream (the
/// caller's own deadline ran out first, a local overload rejection) is
/// [`Outcome::Neutral`].
///
/// Implemented for `Fn(&Result<Resp, Err>) -> Outcome` closures.
pub trait Classify<Resp, Err> {
    /// Classifies one result.
    fn classify(&self, result: &Result<Resp, Err>) -> Outcome;
}

impl<F, Resp, Err> Classify<Resp, Err> for F
where
    F: Fn(&Result<Resp, Err>) -> Outcome,
{
    fn classify(&self, result: &Result<Resp, Err>) -> Outcome {
        self(result)
    }
}

/// The simplest classifier: `Ok` is a success, `Err` a failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorsAreFailures;

impl<Resp, Err> Classify<Resp, Err> for ErrorsAreFailures {
    fn classify(&self, result: &Result<Resp, Err>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

/// The error of a [`BreakerService`].
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The breaker rejected the call; the inner service was not called.
    #[error("rejected by the circuit breaker")]
    Open(#[from] BreakerOpen),
    /// The inner service failed.
    #[error("upstream service failed")]
    Inner(#[source] E),
}

impl<E> BreakerError<E> {
    /// Whether the breaker rejected the call.
    pub fn is_open(&self) -> bool {
        matches!(self, BreakerError::Open(_))
    }

    /// The inner service's error, if that is what this is.
    pub fn into_inner(self) -> Option<E> {
        match self {
            BreakerError::Open(_) => None,
            BreakerError::Inner(e) => Some(e),
        }
    }

    /// Flattens into a boxed error: a [`BreakerOpen`] (which callers can find by
    /// downcasting) or the inner error itself.
    ///
    /// Useful in stacks whose errors are `Box<dyn Error + Send + Sync>` (tower's timeout,
    /// concurrency limit, buffer…), for which `BreakerError<Box<dyn Error…>>` is not an
    /// `Error` itself because the box is not.
    pub fn into_boxed(self) -> Box<dyn Error + Send + Sync>
    where
        E: Into<Box<dyn Error + Send + Sync>>,
    {
        match self {
            BreakerError::Open(open) => Box::new(open),
            BreakerError::Inner(e) => e.into(),
        }
    }
}

/// Wraps services in a [`BreakerService`] sharing one [`Breaker`].
#[derive(Clone)]
pub struct BreakerLayer<C> {
    breaker: Breaker,
    classify: C,
}

impl<C> BreakerLayer<C> {
    /// A layer whose services use `breaker` and judge results with `classify`.
    pub fn new(breaker: Breaker, classify: C) -> Self {
        BreakerLayer { breaker, classify }
    }

    /// The shared breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<C> fmt::Debug for BreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer").field("breaker", &self.breaker).finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for BreakerLayer<C> {
    type Service = BreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BreakerService::new(inner, self.breaker.clone(), self.classify.clone())
    }
}

/// A service guarded by a [`Breaker`].
///
/// `poll_ready` is the inner service's. `call` asks the breaker for a permit: when refused,
/// the inner service is not called and the response future resolves at once to
/// [`BreakerError::Open`] (capacity the inner service reserved in `poll_ready` stays
/// reserved for the next call); when admitted, the outcome is recorded when the inner
/// future completes, or as neutral if the response future is dropped first.
#[derive(Clone)]
pub struct BreakerService<S, C> {
    inner: S,
    breaker: Breaker,
    classify: C,
}

impl<S, C> BreakerService<S, C> {
    /// Guards `inner` with `breaker`, judging results with `classify`.
    pub fn new(inner: S, breaker: Breaker, classify: C) -> Self {
        BreakerService { inner, breaker, classify }
    }

    /// The shared breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug, C> fmt::Debug for BreakerService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerService")
            .field("inner", &self.inner)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for BreakerService<S, C>
where
    S: Service<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BreakerError<S::Error>;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(BreakerError::Inner)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let kind = match self.breaker.try_acquire() {
            Ok(permit) => {
                Kind::Called { future: self.inner.call(req), permit: Some(permit), classify: self.classify.clone() }
            }
            Err(open) => Kind::Rejected { open },
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// The response future of a [`BreakerService`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        /// Refused by the breaker: resolves at once.
        Rejected { open: BreakerOpen },
        /// Admitted: the permit is resolved when `future` completes (or dropped with it).
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
            classify: C,
        },
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Called { .. } => "called",
        };
        f.debug_struct("ResponseFuture").field("state", &state).finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<T, E>,
{
    type Output = Result<T, BreakerError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { open } => Poll::Ready(Err(BreakerError::Open(*open))),
            KindProj::Called { future, permit, classify } => {
                let result = std::task::ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.record(classify.classify(&result));
                }
                Poll::Ready(result.map_err(BreakerError::Inner))
            }
        }
    }
}
