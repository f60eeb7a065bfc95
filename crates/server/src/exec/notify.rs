//! A notification: queued to every subscribed provider (EMQX is answered at once), or
//! awaited for `after-delivery` providers.

use std::time::Duration;

use bytes::Bytes;
use exhook_config::NotifyMode;
use exhook_hooks::HookRequest;
use exhook_metrics::{DropReason, Outcome};
use exhook_proto::model::EmptySuccess;
use exhook_upstream::queue::{EnqueueError, Notification};
use exhook_upstream::share::ShareFull;
use exhook_upstream::{CallError, Provider, Route, hash_key};
use tokio::time::Instant;

use crate::observe::{CallEvent, StepResult};

use super::*;

impl Runtime {
    /// A notification: queued to every subscribed provider (answered at once), or delivered
    /// and awaited for providers with `notify = "after-delivery"`.
    pub(crate) async fn notify<R: HookRequest>(
        &self,
        t: usize,
        request: R,
        deadline: Instant,
        received: Instant,
    ) -> EmptySuccess {
        let tenant = &self.config.tenants[t];
        let key_hash = hash_key(request.dispatch_key());
        let topic = request.topic();
        // Only after-delivery providers hold the call open; the tenant limit applies to them.
        let slot = self.admit(t);
        // Encoded once per package, shared by every provider of that package.
        let mut bodies: [Option<Bytes>; 3] = [None, None, None];
        let mut awaited = Vec::new();
        for &index in tenant.chain(R::HOOK) {
            let p = &self.providers[index];
            let version = match self.route(index, R::HOOK, topic) {
                Ok(version) => version,
                Err(skip) => {
                    self.step(t, R::HOOK, index, skip, Duration::ZERO);
                    continue;
                }
            };
            let body = bodies[version.index()].get_or_insert_with(|| Provider::encode_for(&request, version)).clone();
            let settings = p.config();
            let Some(share) = self.shares[t][index].as_ref() else { continue };
            match settings.notify {
                NotifyMode::Queue => {
                    let result = self.queue_to(index, share, R::HOOK, version, body, key_hash);
                    self.step(t, R::HOOK, index, result, Duration::ZERO);
                }
                NotifyMode::AfterDelivery => {
                    let e = match share.try_call() {
                        _ if slot.is_none() => {
                            self.refused(index, R::HOOK, CallError::Shed(tenant.max_inflight.unwrap_or(0)))
                        }
                        None => self.refused(index, R::HOOK, CallError::Shed(share.max_inflight())),
                        Some(call_slot) => {
                            let timeout = settings.timeout;
                            awaited.push(async move {
                                let _call_slot = call_slot;
                                let started = Instant::now();
                                let remaining = deadline.saturating_duration_since(started);
                                let result = if remaining.is_zero() {
                                    Err(self.refused(index, R::HOOK, CallError::Timeout(Duration::ZERO)))
                                } else {
                                    let timeout = timeout.min(remaining);
                                    p.call::<EmptySuccess>(
                                        R::HOOK,
                                        version,
                                        body,
                                        timeout,
                                        key_hash,
                                        Route::Notification,
                                    )
                                    .await
                                };
                                (index, result, started.elapsed())
                            });
                            continue;
                        }
                    };
                    self.step(t, R::HOOK, index, StepResult::Failed(&e, None), Duration::ZERO);
                }
            }
        }
        if !awaited.is_empty() {
            for (index, result, elapsed) in futures::future::join_all(awaited).await {
                let step = match &result {
                    Ok(_) => StepResult::Delivered,
                    Err(e) => StepResult::Failed(e, None),
                };
                self.step(t, R::HOOK, index, step, elapsed);
            }
        }
        let elapsed = received.elapsed();
        self.metrics.request(t, R::HOOK, Outcome::Ack, elapsed);
        self.observer.call(&CallEvent { tenant: &tenant.name, hook: R::HOOK, valued: None, elapsed });
        EmptySuccess {}
    }
}

impl Runtime {
    /// Queues `body` to provider `index` through the tenant's `share` of its queues (the
    /// client's shard); a full share or queue drops it, counted. Queued or dropped.
    pub(super) fn queue_to(
        &self,
        index: usize,
        share: &Arc<TenantShare>,
        hook: Hook,
        version: Version,
        body: Bytes,
        key_hash: u64,
    ) -> StepResult<'static> {
        let p = &self.providers[index];
        let queued = share
            .try_queue(p.queues().shard_of(key_hash), body.len())
            .map_err(|full| match full {
                ShareFull::Count => EnqueueError::Full,
                ShareFull::Bytes => EnqueueError::Bytes,
            })
            .and_then(|ticket| p.queues().enqueue(Notification { hook, version, body, key_hash, ticket }));
        match queued {
            Ok(()) => StepResult::Queued,
            Err(e) => {
                let reason = match e {
                    EnqueueError::Full => DropReason::QueueFull,
                    EnqueueError::Bytes => DropReason::QueueBytes,
                    EnqueueError::Closed => DropReason::Closed,
                };
                self.metrics.dropped(index, reason);
                StepResult::Dropped
            }
        }
    }
}
