//! Hooks for seeing what the gateway does: which provider said what, how a chain ended.
//! The demo prints these; metrics (a later layer) count them. Implementations must be cheap:
//! they run on the hot path.

use std::time::Duration;

use exhook_chain::Ending;
pub use exhook_config::MemberMode;
use exhook_hooks::Hook;
pub use exhook_metrics::ShadowVerdict;
use exhook_proto::model::ValuedResponse;
use exhook_upstream::CallError;

/// What happened to one provider in one chain.
#[derive(Debug)]
pub enum StepResult<'a> {
    /// Not called: never loaded.
    SkippedNotLoaded,
    /// Not called: it did not register the hook.
    SkippedNotRegistered,
    /// Not called: none of its topic filters matches the (current) topic.
    SkippedFiltered,
    /// Valued hook: what the fold made of its answer, and the answer itself when the
    /// observer asked for values ([`Observer::wants_values`]).
    Answered(exhook_chain::StepOutcome, Option<&'a ValuedResponse>),
    /// Notification delivered and acknowledged (after-delivery providers).
    Delivered,
    /// Notification put on the provider's queue.
    Queued,
    /// Notification dropped: the provider's queue shard was full (or closed).
    Dropped,
    /// The call failed; for valued hooks, the failed_action's effect.
    Failed(&'a CallError, Option<exhook_chain::StepOutcome>),
}

/// One provider's turn.
#[derive(Debug)]
pub struct StepEvent<'a> {
    /// Tenant name.
    pub tenant: &'a str,
    /// The hook.
    pub hook: Hook,
    /// Provider name.
    pub provider: &'a str,
    /// What happened.
    pub result: StepResult<'a>,
    /// Call time (zero when not called).
    pub elapsed: Duration,
    /// How the provider takes part in the chain: a shadow's step is reported when its
    /// answer arrives (after EMQX may already have been answered), an observer's when its
    /// request is queued.
    pub mode: MemberMode,
    /// The answer came from the provider's decision cache: no call was made.
    pub cached: bool,
}

/// A shadow provider's answer compared with the chain's (after both are known).
#[derive(Debug)]
pub struct ShadowEvent<'a> {
    /// Tenant name.
    pub tenant: &'a str,
    /// The hook.
    pub hook: Hook,
    /// The shadow provider's name.
    pub provider: &'a str,
    /// The verdict.
    pub verdict: ShadowVerdict,
    /// The shadow call's time.
    pub elapsed: Duration,
}

/// The end of one EMQX call.
#[derive(Debug)]
pub struct CallEvent<'a> {
    /// Tenant name.
    pub tenant: &'a str,
    /// The hook.
    pub hook: Hook,
    /// The answer to EMQX for valued hooks, with how the chain ended (`None` for
    /// notifications).
    pub valued: Option<(&'a ValuedResponse, Ending)>,
    /// Time from receiving the call to answering it.
    pub elapsed: Duration,
}

/// Receives events. All methods default to doing nothing.
pub trait Observer: Send + Sync + 'static {
    /// Whether step events should carry the providers' full answers (costs a copy per call;
    /// the demo wants them, metrics do not).
    fn wants_values(&self) -> bool {
        false
    }
    /// One provider's turn in a chain.
    fn step(&self, _event: &StepEvent<'_>) {}
    /// An EMQX call answered.
    fn call(&self, _event: &CallEvent<'_>) {}
    /// A shadow provider's answer compared (runs on the shadow's own task).
    fn shadow(&self, _event: &ShadowEvent<'_>) {}
    /// Whether any live trace is open: when `false` the server asks nothing more about the
    /// call (this runs once per EMQX call: keep it to an atomic load).
    fn tracing(&self) -> bool {
        false
    }
    /// A call received (after tenant resolution, before its chain): `Some` to trace it, its
    /// events then run inside the returned context ([`with_trace`]). Asked only while
    /// [`Observer::tracing`] is `true`.
    fn trace(&self, _tenant: &str, _hook: Hook, _subject: &Subject<'_>) -> Option<TraceContext> {
        None
    }
}

/// Observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

// ---- Live traces (the admin API's `GET /api/v1/trace`) ----
//
// A trace follows one EMQX call through its chain. The server asks the observer once per call,
// before the chain runs, whether the call is traced ([`Observer::tracing`]: one atomic load in
// the admin plane's implementation, so a gateway with no trace open pays that and nothing
// else); a traced call runs inside a task-local [`TraceContext`] the observer reads back in
// [`Observer::step`], [`Observer::call`] and [`Observer::shadow`] ([`with_trace`]). A task-local
// rather than a field in every event: the events stay as they are, and the context follows the
// call's future through every `.await` (also when one connection's calls interleave in its
// task), and into a shadow's task through [`propagate`].

/// Who an EMQX call is about: what a live trace matches on. Borrowed from the request;
/// deliberately without the password (or any other credential).
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// `clientinfo.clientid`, else `conninfo.clientid`, else `message.from` (the dispatch key).
    pub clientid: &'a str,
    /// `clientinfo.username`, `conninfo.username`, or a message's `username` header.
    pub username: &'a str,
    /// The topic: a message's, or the topic `client.authorize` and `session.(un)subscribed` are about.
    pub topic: Option<&'a str>,
    /// The topic filters of `client.subscribe` / `client.unsubscribe`.
    pub filters: &'a [exhook_proto::model::TopicFilter],
}

impl<'a> Subject<'a> {
    /// The subject of `request`. Runs only for a call that may be traced (never when no trace
    /// is open): a few type-id comparisons.
    pub fn of<R: exhook_hooks::HookRequest>(request: &'a R) -> Subject<'a> {
        use exhook_proto::model;
        let any = request as &dyn std::any::Any;
        let mut s = Subject { clientid: request.dispatch_key(), topic: request.topic(), ..Subject::default() };
        macro_rules! clientinfo {
            ($($ty:ident),*) => {$(
                if let Some(r) = any.downcast_ref::<model::$ty>() {
                    s.username = r.clientinfo.as_ref().map_or("", |c| c.username.as_str());
                }
            )*};
        }
        clientinfo!(
            ClientConnectedRequest,
            ClientDisconnectedRequest,
            ClientAuthenticateRequest,
            ClientAuthorizeRequest,
            ClientSubscribeRequest,
            ClientUnsubscribeRequest,
            SessionCreatedRequest,
            SessionSubscribedRequest,
            SessionUnsubscribedRequest,
            SessionResumedRequest,
            SessionDiscardedRequest,
            SessionTakenoverRequest,
            SessionTerminatedRequest,
            MessageDeliveredRequest,
            MessageAckedRequest
        );
        if let Some(r) = any.downcast_ref::<model::ClientConnectRequest>() {
            s.username = r.conninfo.as_ref().map_or("", |c| c.username.as_str());
        } else if let Some(r) = any.downcast_ref::<model::ClientConnackRequest>() {
            s.username = r.conninfo.as_ref().map_or("", |c| c.username.as_str());
        } else if let Some(r) = any.downcast_ref::<model::ClientAuthorizeRequest>() {
            s.topic = Some(&r.topic);
        } else if let Some(r) = any.downcast_ref::<model::SessionSubscribedRequest>() {
            s.topic = Some(&r.topic);
        } else if let Some(r) = any.downcast_ref::<model::SessionUnsubscribedRequest>() {
            s.topic = Some(&r.topic);
        } else if let Some(r) = any.downcast_ref::<model::ClientSubscribeRequest>() {
            s.filters = &r.topic_filters;
        } else if let Some(r) = any.downcast_ref::<model::ClientUnsubscribeRequest>() {
            s.filters = &r.topic_filters;
        }
        let message = if let Some(r) = any.downcast_ref::<model::MessagePublishRequest>() {
            r.message.as_ref()
        } else if let Some(r) = any.downcast_ref::<model::MessageDroppedRequest>() {
            r.message.as_ref()
        } else {
            None
        };
        if let Some(m) = message {
            s.username = m.headers.get("username").map_or("", String::as_str);
        }
        s
    }
}

/// What an observer attaches to a traced call (its own type, read back with a downcast).
pub type TraceContext = std::sync::Arc<dyn std::any::Any + Send + Sync>;

tokio::task_local! {
    /// The trace of the call whose future is being polled.
    static TRACE: TraceContext;
}

/// A call's future, inside its trace or not (see [`in_scope`]).
pub type Traced<F> = futures::future::Either<F, tokio::task::futures::TaskLocalFuture<TraceContext, F>>;

/// The server's one question per call: does the observer trace it? `None` at the cost of one
/// [`Observer::tracing`] call when no trace is open.
pub fn trace_scope<R: exhook_hooks::HookRequest>(
    observer: &dyn Observer,
    tenant: &str,
    request: &R,
) -> Option<TraceContext> {
    if !observer.tracing() {
        return None;
    }
    observer.trace(tenant, R::HOOK, &Subject::of(request))
}

/// Runs `call` inside `scope` (from [`trace_scope`]): its events can read the context with
/// [`with_trace`].
pub fn in_scope<F: Future>(scope: Option<TraceContext>, call: F) -> Traced<F> {
    match scope {
        None => futures::future::Either::Left(call),
        Some(context) => futures::future::Either::Right(TRACE.scope(context, call)),
    }
}

/// Carries the current call's trace (if any) into `task`, a future spawned for the call (a
/// shadow's): its events are then part of the trace.
pub fn propagate<F: Future>(task: F) -> Traced<F> {
    in_scope(TRACE.try_with(std::sync::Arc::clone).ok(), task)
}

/// Runs `f` with the trace of the call being polled; `None` outside a traced call.
pub fn with_trace<T>(f: impl FnOnce(&TraceContext) -> T) -> Option<T> {
    TRACE.try_with(f).ok()
}
