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
}

/// Observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl Observer for NoopObserver {}
