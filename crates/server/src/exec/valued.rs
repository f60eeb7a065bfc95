//! A valued hook: the fold over the tenant's chain, inside the caller's deadline, with
//! per-client order against queued notifications. A member with a decision cache is looked
//! up first (a hit is its answer, without a call); shadow and observe members are handed to
//! `side` at their position and never folded.

use std::time::Duration;

use exhook_chain::{Ending, Fold};
use exhook_config::{FailedAction, MemberMode, NotifyMode};
use exhook_hooks::ValuedRequest;
use exhook_metrics::Outcome;
use exhook_proto::model::{ValuedResponse, valued_response::ResponsedType};
use exhook_upstream::queue::Turn;
use exhook_upstream::share::TenantShare;
use exhook_upstream::{CallError, Provider, Route, hash_key};
use tokio::time::Instant;

use crate::observe::{CallEvent, StepResult};

use super::*;

impl Runtime {
    /// A valued hook: the fold over the tenant's chain, inside the caller's deadline.
    pub(crate) async fn valued<R: ValuedRequest>(
        &self,
        t: usize,
        request: R,
        deadline: Instant,
        received: Instant,
    ) -> ValuedResponse {
        let tenant = &self.config.tenants[t];
        let slot = self.admit(t);
        let chain = tenant.chain(R::HOOK);
        let mut fold = Fold::new(request);
        let key_hash = hash_key(fold.current().dispatch_key());
        // Shadow and observe members (one bit for a plain chain): what EMQX sent is what it
        // keeps on IGNORE, the value the shadows are compared with.
        let side = self.side_hooks[t].contains(R::HOOK).then(|| &tenant.modes[R::HOOK.index()]);
        let sent = side.map(|_| fold.current().answer());
        let mut shadows = Vec::new();
        let mut reached = chain.len();
        for (position, &index) in chain.iter().enumerate() {
            if let Some(mode) = side.map(|m| m[position]).filter(|m| *m != MemberMode::Decisive) {
                shadows.extend(self.side_member(t, index, mode, fold.current(), key_hash));
                continue;
            }
            let p = &self.providers[index];
            let settings = p.config();
            // For publish the topic is the folded message's: a rewrite re-routes the filters.
            let version = match self.route(index, R::HOOK, fold.current().topic()) {
                Ok(version) => Some(version),
                // Fail closed: a deny provider that never answered a load cannot say whether
                // it takes this hook, so it fails (and denies) instead of being skipped.
                Err(StepResult::SkippedNotLoaded) if settings.failed_action == FailedAction::Deny => None,
                Err(skip) => {
                    self.step(t, R::HOOK, index, skip, Duration::ZERO);
                    continue;
                }
            };
            // The decision cache: a hit is this provider's answer without a call.
            let cache_key = version.and_then(|_| self.cache_key(index, fold.current()));
            if let Some(response) = cache_key.as_ref().and_then(|k| self.cache_lookup(index, R::HOOK, k)) {
                let copy = self.observer.wants_values().then(|| response.clone());
                let (flow, outcome) = fold.on_response(position, response);
                self.step_as(
                    t,
                    R::HOOK,
                    index,
                    StepResult::Answered(outcome, copy.as_ref()),
                    Duration::ZERO,
                    Via::Cache,
                );
                if flow == exhook_chain::Flow::Stop {
                    reached = position + 1;
                    break;
                }
                continue;
            }
            let started = Instant::now();
            let remaining = deadline.saturating_duration_since(started);
            let share = self.shares[t][index].as_deref();
            let call_slot = share.and_then(TenantShare::try_call);
            let refuse = |e| Err(self.refused(index, R::HOOK, e));
            let result = match version {
                None => refuse(CallError::NotLoaded),
                Some(_) if slot.is_none() => refuse(CallError::Shed(tenant.max_inflight.unwrap_or(0))),
                Some(_) if call_slot.is_none() => refuse(CallError::Shed(share.map_or(0, TenantShare::max_inflight))),
                Some(_) if remaining.is_zero() => refuse(CallError::Timeout(Duration::ZERO)),
                Some(version) => {
                    // Per-client order: this provider's queued notifications of the client
                    // reach it first (usually none are pending: two atomic loads).
                    let budget = settings.timeout.min(remaining);
                    let turn = match settings.notify {
                        NotifyMode::Queue => p.queues().wait_turn(key_hash, started + budget).await,
                        NotifyMode::AfterDelivery => Turn::Free,
                    };
                    // Only a wait shortens the budget: an unchanged one keeps the breaker's
                    // "cut short by EMQX's deadline" rule exact.
                    let timeout = match turn {
                        Turn::Free => budget,
                        _ => budget.saturating_sub(started.elapsed()),
                    };
                    if turn == Turn::TimedOut || timeout.is_zero() {
                        refuse(CallError::Timeout(budget))
                    } else {
                        let body = Provider::encode_for(fold.current(), version);
                        p.call::<ValuedResponse>(R::HOOK, version, body, timeout, key_hash, Route::Valued).await
                    }
                }
            };
            drop(call_slot);
            let elapsed = started.elapsed();
            let flow = match result {
                Ok(response) => {
                    if let Some(key) = &cache_key {
                        self.cache_store(index, key, &response);
                    }
                    let copy = self.observer.wants_values().then(|| response.clone());
                    let (flow, outcome) = fold.on_response(position, response);
                    self.step(t, R::HOOK, index, StepResult::Answered(outcome, copy.as_ref()), elapsed);
                    flow
                }
                Err(e) => {
                    let (flow, outcome) = fold.on_failure(position, settings.failed_action);
                    tracing::debug!(provider = %self.provider_name(index), hook = %R::HOOK, error = %e, ?outcome, "provider call failed");
                    self.step(t, R::HOOK, index, StepResult::Failed(&e, Some(outcome)), elapsed);
                    flow
                }
            };
            if flow == exhook_chain::Flow::Stop {
                reached = position + 1;
                break;
            }
        }
        // Side members after where the chain ended get the request as it ended.
        if let Some(modes) = side {
            for (position, &index) in chain.iter().enumerate().skip(reached) {
                if modes[position] != MemberMode::Decisive {
                    shadows.extend(self.side_member(t, index, modes[position], fold.current(), key_hash));
                }
            }
        }
        let (response, ending) = fold.finish();
        if let Some(sent) = sent {
            let value = exhook_chain::shadow::chain_value(&response, sent);
            for shadow in shadows {
                // A shadow whose task already ended (failed, dropped) no longer listens.
                let _ = shadow.send(value.clone());
            }
        }
        let (outcome, decided_by) = match ending {
            Ending::AllIgnored => (Outcome::Ignore, None),
            Ending::Continued => (Outcome::Continue, None),
            Ending::StoppedBy(pos) => (Outcome::Stop, chain.get(pos).copied()),
            Ending::DeniedByFailure(pos) => (Outcome::DeniedByFailure, chain.get(pos).copied()),
        };
        let elapsed = received.elapsed();
        self.metrics.request(t, R::HOOK, outcome, elapsed);
        self.metrics.decision(t, R::HOOK, decided_by);
        self.observer.call(&CallEvent {
            tenant: &tenant.name,
            hook: R::HOOK,
            valued: Some((&response, ending)),
            elapsed,
        });
        debug_assert!(response.r#type != ResponsedType::Continue as i32 || response.value.is_some());
        response
    }
}
