//! The chain executor: one EMQX call in, provider calls out, one answer back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use exhook_chain::{Fold, StepOutcome};
use exhook_config::{Config, NotifyMode, TenantConfig};
use exhook_hooks::{HookRequest, ValuedRequest, Version};
use exhook_proto::model::{
    EmptySuccess, LoadedResponse, ProviderLoadedRequest, ProviderUnloadedRequest, RequestMeta, ValuedResponse,
};
use exhook_upstream::queue::{EnqueueError, Notification};
use exhook_upstream::{CallError, Provider};
use tokio::time::Instant;

use crate::loaded::loaded_response;
use crate::observe::{CallEvent, Observer, StepEvent, StepResult};

/// How long EMQX waits for `OnProviderUnloaded` (5.x: a fixed 5 s); the gateway forwards it
/// with the same bound, in the background.
const UNLOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of the background loader's retry backoff.
const MAX_LOAD_BACKOFF: Duration = Duration::from_secs(30);

/// Everything one EMQX call needs, shared by the three package services.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) providers: Vec<Arc<Provider>>,
    pub(crate) observer: Arc<dyn Observer>,
    tenant_by_cluster: HashMap<String, usize>,
    /// The broker info providers are loaded with before any EMQX called OnProviderLoaded.
    pub(crate) own_broker: ProviderLoadedRequest,
}

impl Runtime {
    pub(crate) fn new(config: Config, providers: Vec<Arc<Provider>>, observer: Arc<dyn Observer>) -> Runtime {
        let mut tenant_by_cluster = HashMap::new();
        for (i, t) in config.tenants.iter().enumerate() {
            for c in &t.cluster_names {
                tenant_by_cluster.insert(c.clone(), i);
            }
        }
        let own_broker = ProviderLoadedRequest {
            broker: Some(exhook_proto::model::BrokerInfo {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                sysdescr: "exhook-gateway".to_owned(),
                uptime: 0,
                datetime: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            }),
            meta: Some(RequestMeta {
                node: "exhook-gateway".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                sysdescr: "exhook-gateway".to_owned(),
                cluster_name: String::new(),
            }),
        };
        Runtime { config, providers, observer, tenant_by_cluster, own_broker }
    }

    pub(crate) fn tenant(&self, meta: Option<&RequestMeta>) -> &TenantConfig {
        let i = meta.and_then(|m| self.tenant_by_cluster.get(m.cluster_name.as_str())).copied().unwrap_or(0);
        &self.config.tenants[i]
    }

    fn step(
        &self,
        tenant: &TenantConfig,
        hook: exhook_hooks::Hook,
        p: &Provider,
        result: StepResult<'_>,
        elapsed: Duration,
    ) {
        self.observer.step(&StepEvent { tenant: &tenant.name, hook, provider: p.name(), result, elapsed });
    }

    /// A valued hook: the fold over the tenant's chain, inside the caller's deadline.
    pub(crate) async fn valued<R: ValuedRequest>(
        &self,
        request: R,
        deadline: Instant,
        received: Instant,
    ) -> ValuedResponse {
        let tenant = self.tenant(request.meta());
        let mut fold = Fold::new(request);
        for (position, &index) in tenant.chain(R::HOOK).iter().enumerate() {
            let p = &self.providers[index];
            let Some(registration) = p.registration() else {
                self.step(tenant, R::HOOK, p, StepResult::SkippedNotLoaded, Duration::ZERO);
                continue;
            };
            // For publish the topic is the folded message's: a rewrite re-routes the filters.
            if !registration.wants(R::HOOK, fold.current().topic()) {
                let why = if registration.hooks.contains(R::HOOK) {
                    StepResult::SkippedFiltered
                } else {
                    StepResult::SkippedNotRegistered
                };
                self.step(tenant, R::HOOK, p, why, Duration::ZERO);
                continue;
            }
            let started = Instant::now();
            let remaining = deadline.saturating_duration_since(started);
            let result = if remaining.is_zero() {
                Err(CallError::Timeout(Duration::ZERO))
            } else {
                let body = Provider::encode_for(fold.current(), registration.version);
                p.call::<ValuedResponse>(R::HOOK, registration.version, body, p.config.timeout.min(remaining)).await
            };
            let elapsed = started.elapsed();
            let flow = match result {
                Ok(response) => {
                    let copy = self.observer.wants_values().then(|| response.clone());
                    let (flow, outcome) = fold.on_response(position, response);
                    self.step(tenant, R::HOOK, p, StepResult::Answered(outcome, copy.as_ref()), elapsed);
                    flow
                }
                Err(e) => {
                    let (flow, outcome) = fold.on_failure(position, p.config.failed_action);
                    tracing::debug!(provider = %p.name(), hook = %R::HOOK, error = %e, ?outcome, "provider call failed");
                    self.step(tenant, R::HOOK, p, StepResult::Failed(&e, Some(outcome)), elapsed);
                    flow
                }
            };
            if flow == exhook_chain::Flow::Stop {
                break;
            }
        }
        let (response, ending) = fold.finish();
        self.observer.call(&CallEvent {
            tenant: &tenant.name,
            hook: R::HOOK,
            valued: Some((&response, ending)),
            elapsed: received.elapsed(),
        });
        response
    }

    /// A notification: queued to every subscribed provider (answered at once), or delivered
    /// and awaited for providers with `notify = "after-delivery"`.
    pub(crate) async fn notify<R: HookRequest>(
        &self,
        request: R,
        deadline: Instant,
        received: Instant,
    ) -> EmptySuccess {
        let tenant = self.tenant(request.meta());
        let key = request.dispatch_key();
        let topic = request.topic();
        // Encoded once per package, shared by every provider of that package.
        let mut bodies: [Option<Bytes>; 3] = [None, None, None];
        let mut awaited = Vec::new();
        for &index in tenant.chain(R::HOOK) {
            let p = &self.providers[index];
            let Some(registration) = p.registration() else {
                self.step(tenant, R::HOOK, p, StepResult::SkippedNotLoaded, Duration::ZERO);
                continue;
            };
            if !registration.wants(R::HOOK, topic) {
                let why = if registration.hooks.contains(R::HOOK) {
                    StepResult::SkippedFiltered
                } else {
                    StepResult::SkippedNotRegistered
                };
                self.step(tenant, R::HOOK, p, why, Duration::ZERO);
                continue;
            }
            let version = registration.version;
            let body = bodies[version.index()].get_or_insert_with(|| Provider::encode_for(&request, version)).clone();
            match p.config.notify {
                NotifyMode::Queue => {
                    let n = Notification { hook: R::HOOK, version, body };
                    let result = match p.queues().enqueue(key, n) {
                        Ok(()) => {
                            p.stats.notify_enqueued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            StepResult::Queued
                        }
                        Err(e) => {
                            let counter = match e {
                                EnqueueError::Full => &p.stats.notify_dropped_full,
                                EnqueueError::Closed => &p.stats.notify_dropped_closed,
                            };
                            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            StepResult::Dropped
                        }
                    };
                    self.step(tenant, R::HOOK, p, result, Duration::ZERO);
                }
                NotifyMode::AfterDelivery => awaited.push(async move {
                    let started = Instant::now();
                    let remaining = deadline.saturating_duration_since(started);
                    let result = if remaining.is_zero() {
                        Err(CallError::Timeout(Duration::ZERO))
                    } else {
                        p.call::<EmptySuccess>(R::HOOK, version, body, p.config.timeout.min(remaining)).await
                    };
                    (p, result, started.elapsed())
                }),
            }
        }
        if !awaited.is_empty() {
            for (p, result, elapsed) in futures::future::join_all(awaited).await {
                let counter = if result.is_ok() { &p.stats.notify_delivered } else { &p.stats.notify_failed };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let step = match &result {
                    Ok(_) => StepResult::Delivered,
                    Err(e) => StepResult::Failed(e, None),
                };
                self.step(tenant, R::HOOK, p, step, elapsed);
            }
        }
        self.observer.call(&CallEvent {
            tenant: &tenant.name,
            hook: R::HOOK,
            valued: None,
            elapsed: received.elapsed(),
        });
        EmptySuccess {}
    }

    /// The providers a tenant's OnProviderLoaded/Unloaded reach: its own providers and every
    /// provider named in its explicit chains, in `[[providers]]` order.
    fn members(&self, tenant: &TenantConfig) -> Vec<usize> {
        let mut m: Vec<usize> = tenant.providers.clone();
        for hook in tenant.explicit.iter() {
            m.extend_from_slice(tenant.chain(hook));
        }
        m.sort_unstable();
        m.dedup();
        m
    }

    /// EMQX (re)loaded the gateway: load the tenant's providers with EMQX's broker info (within
    /// EMQX's deadline; those that fail keep retrying in the background) and answer with
    /// the union of hooks in the caller's spelling.
    pub(crate) async fn provider_loaded(
        &self,
        caller: Version,
        request: ProviderLoadedRequest,
        deadline: Instant,
    ) -> LoadedResponse {
        let tenant = self.tenant(request.meta.as_ref());
        let members = self.members(tenant);
        let loads = members.iter().map(|&i| {
            let p = &self.providers[i];
            let request = &request;
            async move {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let timeout = p.config.timeout.max(Duration::from_secs(1)).min(remaining);
                if let Err(e) = p.load(request, timeout).await {
                    tracing::warn!(provider = %p.name(), error = %e, "provider not loaded; retrying in the background");
                    p.spawn_loader(self.own_broker.clone(), MAX_LOAD_BACKOFF);
                }
            }
        });
        futures::future::join_all(loads).await;
        let registrations: Vec<_> = self.providers.iter().map(|p| p.registration()).collect();
        let response = loaded_response(tenant, &registrations, caller);
        tracing::info!(tenant = %tenant.name, caller = %caller, hooks = response.hooks.len(), "EMQX loaded the gateway");
        response
    }

    /// EMQX unloaded the gateway: forward to the tenant's providers (reply ignored, as EMQX does).
    pub(crate) fn provider_unloaded(self: &Arc<Self>, request: ProviderUnloadedRequest) -> EmptySuccess {
        let tenant = self.tenant(request.meta.as_ref());
        for i in self.members(tenant) {
            let p = Arc::clone(&self.providers[i]);
            let Some(version) = p.version() else { continue };
            let body = Provider::encode_for(&request, version);
            tokio::spawn(async move {
                let _ =
                    p.call::<EmptySuccess>(exhook_hooks::Hook::ProviderUnloaded, version, body, UNLOAD_TIMEOUT).await;
            });
        }
        tracing::info!(tenant = %tenant.name, "EMQX unloaded the gateway");
        EmptySuccess {}
    }
}

/// A step outcome's short name, for logs and the demo.
pub fn outcome_name(o: StepOutcome) -> &'static str {
    match o {
        StepOutcome::Continue => "continue",
        StepOutcome::Ignore => "ignore",
        StepOutcome::Stop => "stop",
        StepOutcome::FailedIgnored => "failed (ignored)",
        StepOutcome::FailedDenied => "failed (denied)",
    }
}
