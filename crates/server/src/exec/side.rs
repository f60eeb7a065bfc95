//! A valued chain's side members: `shadow` and `observe` (the rules are the configuration's,
//! [`exhook_config::MemberMode`]). Neither ever takes part in the fold nor delays the answer:
//!
//! * **shadow** — when the chain reaches its position (or ends before it), the provider is
//!   called on a task of its own with the request as folded at that point, within its own
//!   `timeout` (not EMQX's deadline: EMQX is not waiting for it). When both the chain's answer
//!   and the shadow's are known they are compared as EMQX would read them
//!   ([`exhook_chain::shadow`]) and counted by verdict; a disagreement is kept in the log the
//!   admin API serves. Bounded: at most [`MAX_SHADOW_CALLS`] shadow calls and
//!   [`MAX_SHADOW_BYTES`] of their requests in flight over the process, and each within the
//!   tenant's share of the provider's `max_inflight`; beyond either the call is not made and
//!   counted (`exhook_gateway_shadow_dropped_total`), never queued.
//! * **observe** — the request at its position goes through the provider's notification
//!   queue (the tenant's share of it, the client's shard, so per-client order holds), exactly
//!   as a notification: acknowledged at once, dropped and counted when full.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use exhook_chain::shadow::{describe, same_effect, shadow_value};
use exhook_config::MemberMode;
use exhook_hooks::ValuedRequest;
use exhook_metrics::ShadowVerdict;
use exhook_proto::model::ValuedResponse;
use exhook_proto::model::valued_response::Value;
use exhook_upstream::{CallError, Provider, Route};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::observe::{ShadowEvent, StepEvent, StepResult};

use super::{Runtime, Via};

/// Shadow calls in flight at most, over every tenant and provider.
pub(crate) const MAX_SHADOW_CALLS: usize = 1024;
/// Bytes of shadow requests in flight at most (each holds its encoded body and the request it
/// is compared at, about twice the body): `message.publish` carries payloads of any size.
pub(crate) const MAX_SHADOW_BYTES: usize = 64 << 20;

/// The process's room for shadow calls.
#[derive(Debug, Default)]
pub(crate) struct ShadowBudget {
    calls: AtomicUsize,
    bytes: AtomicUsize,
}

/// One shadow call's room; given back when its task ends.
pub(crate) struct ShadowPermit {
    budget: Arc<ShadowBudget>,
    bytes: usize,
}

impl ShadowBudget {
    /// Room for one call of `bytes`, or `None` beyond either bound.
    pub(crate) fn try_take(self: &Arc<Self>, bytes: usize) -> Option<ShadowPermit> {
        let permit = ShadowPermit { budget: Arc::clone(self), bytes };
        let calls = self.calls.fetch_add(1, Ordering::Relaxed);
        let held = self.bytes.fetch_add(bytes, Ordering::Relaxed);
        // The permit gives both back on drop, also when refused here.
        (calls < MAX_SHADOW_CALLS && held + bytes <= MAX_SHADOW_BYTES).then_some(permit)
    }
}

impl Drop for ShadowPermit {
    fn drop(&mut self) {
        self.budget.calls.fetch_sub(1, Ordering::Relaxed);
        self.budget.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// A shadow waiting for the chain's answer: send it the value EMQX is left with.
pub(super) type ChainValue = oneshot::Sender<Value>;

impl Runtime {
    /// Runs side member `index` (`mode` shadow or observe) with `at`, the request the chain
    /// gives it at its position. A shadow that was called returns the sender its comparison
    /// waits on.
    pub(super) fn side_member<R: ValuedRequest>(
        &self,
        t: usize,
        index: usize,
        mode: MemberMode,
        at: &R,
        key_hash: u64,
    ) -> Option<ChainValue> {
        let version = match self.route(index, R::HOOK, at.topic()) {
            Ok(version) => version,
            Err(skip) => {
                // A shadow that never loaded cannot answer: that is its verdict.
                if mode == MemberMode::Shadow && matches!(skip, StepResult::SkippedNotLoaded) {
                    self.metrics.shadow(t, R::HOOK, index, ShadowVerdict::Error);
                }
                self.step_as(t, R::HOOK, index, skip, Duration::ZERO, Via::Call(mode));
                return None;
            }
        };
        match mode {
            MemberMode::Observe => {
                self.observe(t, index, at, version, key_hash);
                None
            }
            MemberMode::Shadow => self.shadow(t, index, at, version, key_hash),
            MemberMode::Decisive => None,
        }
    }

    /// Queues `at` to observer `index`, as a notification.
    fn observe<R: ValuedRequest>(&self, t: usize, index: usize, at: &R, version: exhook_hooks::Version, key_hash: u64) {
        let Some(share) = self.shares[t][index].as_ref() else { return };
        let body = Provider::encode_for(at, version);
        let result = self.queue_to(index, share, R::HOOK, version, body, key_hash);
        self.step_as(t, R::HOOK, index, result, Duration::ZERO, Via::Call(MemberMode::Observe));
    }

    /// Spawns shadow `index`'s call with `at`; its comparison waits for the chain's value.
    fn shadow<R: ValuedRequest>(
        &self,
        t: usize,
        index: usize,
        at: &R,
        version: exhook_hooks::Version,
        key_hash: u64,
    ) -> Option<ChainValue> {
        let body = Provider::encode_for(at, version);
        let (Some(permit), Some(share)) =
            (self.shadow_budget.try_take(2 * body.len()), self.shares[t][index].as_ref().map(Arc::clone))
        else {
            self.metrics.shadow_dropped(t, R::HOOK, index);
            return None;
        };
        let (tx, rx) = oneshot::channel::<Value>();
        let provider = Arc::clone(&self.providers[index]);
        let metrics = Arc::clone(&self.metrics);
        let observer = Arc::clone(&self.observer);
        let tenant = self.config.tenants[t].name.clone();
        let name = self.provider_name(index).to_owned();
        let at = at.clone();
        // Its own timeout: EMQX is not waiting for a shadow, so its deadline does not apply.
        let timeout = provider.config().timeout;
        // The call's live trace (if any) follows the shadow onto its task.
        tokio::spawn(crate::observe::propagate(async move {
            let _permit = permit;
            let Some(slot) = share.try_call() else {
                metrics.shadow_dropped(t, R::HOOK, index);
                return;
            };
            let started = Instant::now();
            let result =
                provider.call::<ValuedResponse>(R::HOOK, version, body, timeout, key_hash, Route::Valued).await;
            drop(slot);
            let elapsed = started.elapsed();
            let event = |result| StepEvent {
                tenant: &tenant,
                hook: R::HOOK,
                provider: &name,
                result,
                elapsed,
                mode: MemberMode::Shadow,
                cached: false,
            };
            let verdict = match result {
                Ok(response) => {
                    // What the fold would make of it at its position (for the step's outcome
                    // and its calls_total result), then what EMQX would be left with.
                    let mut fold = exhook_chain::Fold::new(at.clone());
                    let (_, outcome) = fold.on_response(0, response.clone());
                    metrics.provider_call(index, R::HOOK, super::answered_result(outcome), None);
                    let copy = observer.wants_values().then_some(&response);
                    observer.step(&event(StepResult::Answered(outcome, copy)));
                    let shadow = shadow_value(&at, response);
                    // The chain's value; none when EMQX's call was dropped before it ended.
                    let Ok(chain) = rx.await else { return };
                    if same_effect(&chain, &shadow) {
                        metrics.shadow(t, R::HOOK, index, ShadowVerdict::Agree);
                        ShadowVerdict::Agree
                    } else {
                        metrics.disagreement(t, R::HOOK, index, at.dispatch_key(), describe(&chain), describe(&shadow));
                        ShadowVerdict::Disagree
                    }
                }
                Err(e) => {
                    observer.step(&event(StepResult::Failed(&e, None)));
                    let verdict = match e {
                        CallError::Timeout(_) => ShadowVerdict::Timeout,
                        _ => ShadowVerdict::Error,
                    };
                    metrics.shadow(t, R::HOOK, index, verdict);
                    verdict
                }
            };
            observer.shadow(&ShadowEvent { tenant: &tenant, hook: R::HOOK, provider: &name, verdict, elapsed });
        }));
        Some(tx)
    }
}
