//! The chain executor: one EMQX call in, provider calls out, one answer back.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use exhook_chain::{Ending, Fold, StepOutcome};
use exhook_config::{Config, FailedAction, NotifyMode, UnknownClient, UnknownCluster};
use exhook_hooks::{Hook, HookRequest, ValuedRequest, Version};
use exhook_metrics::{CallResult, DropReason, Handles, IdentityEvent, Outcome};
use exhook_proto::model::{
    EmptySuccess, LoadedResponse, ProviderLoadedRequest, ProviderUnloadedRequest, RequestMeta, ValuedResponse,
    valued_response::ResponsedType,
};
use exhook_upstream::queue::{EnqueueError, Notification};
use exhook_upstream::share::{ShareFull, TenantShare};
use exhook_upstream::{CallError, Provider, Route, hash_key};
use tokio::time::Instant;
use tonic::Status;

use crate::listen::CallerInfo;
use crate::loaded::loaded_response;
use crate::observe::{CallEvent, Observer, StepEvent, StepResult};

/// How long EMQX waits for `OnProviderUnloaded` (5.x: a fixed 5 s); the gateway forwards it
/// with the same bound, in the background.
const UNLOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound of the background loader's retry backoff.
pub(crate) const MAX_LOAD_BACKOFF: Duration = Duration::from_secs(30);

/// One configuration's routing, providers and metric handles: the snapshot every EMQX call
/// reads (swapped atomically on reload).
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) providers: Vec<Arc<Provider>>,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) metrics: Arc<Handles>,
    tenant_by_cluster: HashMap<String, usize>,
    tenant_by_cert_name: HashMap<String, usize>,
    tenant_by_name: HashMap<String, usize>,
    tenant_inflight: Vec<AtomicUsize>,
    /// Each tenant's share of each provider it reaches (`[tenant][provider]`).
    shares: Vec<Vec<Option<Arc<TenantShare>>>>,
    /// Cluster names already logged as unknown (bounded: a caller inventing names is logged
    /// for the first [`MAX_LOGGED_CLUSTERS`] only; the metric counts them all).
    unknown_clusters: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The broker info providers are loaded with before any EMQX called OnProviderLoaded.
    pub(crate) own_broker: ProviderLoadedRequest,
}

/// How many distinct unknown cluster names are logged (each once).
const MAX_LOGGED_CLUSTERS: usize = 256;

/// Marks the connection warned; true if it already was.
fn c_warned(caller: Option<&CallerInfo>) -> bool {
    caller.is_some_and(|c| c.warned.swap(true, Ordering::Relaxed))
}

/// Every tenant's share of every provider it reaches: the provider's limits divided by the
/// number of tenants that reach it (see [`exhook_upstream::share`]).
fn share_table(config: &Config) -> Vec<Vec<Option<Arc<TenantShare>>>> {
    let users: Vec<usize> = (0..config.providers.len())
        .map(|i| config.tenants.iter().filter(|t| t.reachable.contains(&i)).count())
        .collect();
    config
        .tenants
        .iter()
        .map(|t| {
            config
                .providers
                .iter()
                .enumerate()
                .map(|(i, pc)| {
                    t.reachable.contains(&i).then(|| {
                        TenantShare::new(pc.max_inflight, pc.queue_shards, pc.queue_size, pc.queue_bytes, users[i])
                    })
                })
                .collect()
        })
        .collect()
}

/// Frees a tenant's in-flight slot.
struct TenantSlot<'a>(&'a AtomicUsize);

impl Drop for TenantSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn own_broker() -> ProviderLoadedRequest {
    ProviderLoadedRequest {
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
    }
}

impl Runtime {
    pub(crate) fn new(
        config: Config,
        providers: Vec<Arc<Provider>>,
        observer: Arc<dyn Observer>,
        metrics: Arc<Handles>,
    ) -> Runtime {
        let mut tenant_by_cluster = HashMap::new();
        let mut tenant_by_cert_name = HashMap::new();
        let mut tenant_by_name = HashMap::new();
        for (i, t) in config.tenants.iter().enumerate() {
            for c in &t.cluster_names {
                tenant_by_cluster.insert(c.clone(), i);
            }
            for n in &t.client_cert_names {
                tenant_by_cert_name.insert(n.clone(), i);
            }
            tenant_by_name.insert(t.name.clone(), i);
        }
        let tenant_inflight = config.tenants.iter().map(|_| AtomicUsize::new(0)).collect();
        let shares = share_table(&config);
        Runtime {
            config,
            providers,
            observer,
            metrics,
            tenant_by_cluster,
            tenant_by_cert_name,
            tenant_by_name,
            tenant_inflight,
            shares,
            unknown_clusters: Default::default(),
            own_broker: own_broker(),
        }
    }

    /// A `cluster_name` that selects no tenant: the default tenant without `[[tenants]]` or
    /// with `unknown_cluster = "default"`; otherwise refused (counted, logged once per name).
    fn unknown_cluster(&self, cluster: &str) -> Result<usize, Status> {
        if self.config.tenants.len() == 1 || self.config.server.unknown_cluster == UnknownCluster::Default {
            return Ok(0);
        }
        self.metrics.metrics().identity(IdentityEvent::RejectedUnknownCluster);
        let mut logged = self.unknown_clusters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.len() < MAX_LOGGED_CLUSTERS && logged.insert(cluster.to_owned()) {
            drop(logged);
            tracing::warn!(cluster_name = %cluster, "RequestMeta.cluster_name selects no tenant: calls refused (server.unknown_cluster = \"reject\")");
        }
        Err(Status::permission_denied(format!("cluster_name {cluster:?} selects no tenant of this gateway")))
    }

    /// The tenant of a call. Identity first: a tenant's own listener, else a verified client
    /// certificate's names (`client_cert_names`; one that names no tenant is rejected or the
    /// default tenant, per `unknown_client`). Only a caller without either is placed by
    /// `RequestMeta.cluster_name`; a `cluster_name` that claims another tenant than the
    /// identity does not move the call (counted and logged once per connection).
    pub(crate) fn tenant_of(&self, caller: Option<&CallerInfo>, meta: Option<&RequestMeta>) -> Result<usize, Status> {
        let cluster = meta.map_or("", |m| m.cluster_name.as_str());
        let by_cluster = self.tenant_by_cluster.get(cluster).copied();
        let t = match caller {
            Some(c) if c.listener_tenant.is_some() => {
                let name = c.listener_tenant.as_deref().unwrap_or_default();
                // A tenant removed by a reload keeps its listener until a restart: refuse.
                self.tenant_by_name
                    .get(name)
                    .copied()
                    .ok_or_else(|| Status::permission_denied(format!("tenant {name:?} is no longer configured")))?
            }
            Some(c) if c.cert_names.is_some() => {
                let names = c.cert_names.as_deref().unwrap_or_default();
                match names.iter().find_map(|n| self.tenant_by_cert_name.get(n.as_str())) {
                    Some(&t) => t,
                    None if c.unknown_client == UnknownClient::Default => 0,
                    None => {
                        self.metrics.metrics().identity(IdentityEvent::RejectedUnknownClient);
                        if !c.warned.swap(true, Ordering::Relaxed) {
                            tracing::warn!(remote = ?c.remote, certificate_names = ?names, "client certificate names no tenant: calls refused (server.tls.unknown_client = \"reject\")");
                        }
                        return Err(Status::permission_denied("client certificate names no tenant"));
                    }
                }
            }
            _ => return by_cluster.map_or_else(|| self.unknown_cluster(cluster), Ok),
        };
        if let Some(claimed) = by_cluster
            && claimed != t
        {
            self.metrics.metrics().identity(IdentityEvent::ClusterNameMismatch);
            if !c_warned(caller) {
                tracing::warn!(remote = ?caller.and_then(|c| c.remote), cluster_name = %cluster, claimed = %self.config.tenants[claimed].name, tenant = %self.config.tenants[t].name, "cluster_name claims another tenant than the caller's identity: the identity wins");
            }
        }
        Ok(t)
    }

    /// Takes one of the tenant's in-flight slots, or `None` if its `max_inflight` is reached.
    fn admit(&self, t: usize) -> Option<TenantSlot<'_>> {
        let counter = &self.tenant_inflight[t];
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let slot = TenantSlot(counter);
        match self.config.tenants[t].max_inflight {
            Some(max) if n >= max => None,
            _ => Some(slot),
        }
    }

    fn provider_name(&self, i: usize) -> &str {
        &self.config.providers[i].name
    }

    /// Records one provider's turn: metrics, then the observer.
    fn step(&self, t: usize, hook: Hook, i: usize, result: StepResult<'_>, elapsed: Duration) {
        let metric = match &result {
            StepResult::SkippedNotLoaded => Some((CallResult::Unavailable, None)),
            StepResult::SkippedNotRegistered | StepResult::Queued | StepResult::Dropped => None,
            StepResult::SkippedFiltered => Some((CallResult::Filtered, None)),
            StepResult::Answered(o, _) => {
                let r = match o {
                    StepOutcome::Continue => CallResult::Continue,
                    StepOutcome::Stop => CallResult::Stop,
                    _ => CallResult::Ignore,
                };
                Some((r, Some(elapsed)))
            }
            StepResult::Delivered => Some((CallResult::Ok, Some(elapsed))),
            StepResult::Failed(e, _) => {
                let called = matches!(e, CallError::Timeout(_) | CallError::Status(_));
                Some((e.result(), called.then_some(elapsed)))
            }
        };
        if let Some((r, el)) = metric {
            self.metrics.provider_call(i, hook, r, el);
        }
        let tenant = &self.config.tenants[t].name;
        self.observer.step(&StepEvent { tenant, hook, provider: self.provider_name(i), result, elapsed });
    }

    /// Whether provider `index` takes this call: the package it speaks, or why it is skipped
    /// (never loaded, hook not registered, no topic filter matches). Reads the registration
    /// without touching its reference count: this runs for every provider of every call.
    fn route(&self, index: usize, hook: Hook, topic: Option<&str>) -> Result<Version, StepResult<'static>> {
        self.providers[index]
            .with_registration(|r| match (r.wants(hook, topic), r.hooks.contains(hook)) {
                (true, _) => Ok(r.version),
                (false, true) => Err(StepResult::SkippedFiltered),
                (false, false) => Err(StepResult::SkippedNotRegistered),
            })
            .unwrap_or(Err(StepResult::SkippedNotLoaded))
    }

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
        for (position, &index) in chain.iter().enumerate() {
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
            let started = Instant::now();
            let remaining = deadline.saturating_duration_since(started);
            let share = self.shares[t][index].as_deref();
            let call_slot = share.and_then(TenantShare::try_call);
            let result = match version {
                None => Err(CallError::NotLoaded),
                Some(_) if slot.is_none() => Err(CallError::Shed(tenant.max_inflight.unwrap_or(0))),
                Some(_) if call_slot.is_none() => Err(CallError::Shed(share.map_or(0, TenantShare::max_inflight))),
                Some(_) if remaining.is_zero() => Err(CallError::Timeout(Duration::ZERO)),
                Some(version) => {
                    // Per-client order: this provider's queued notifications of the client
                    // reach it first (usually none are pending: two atomic loads).
                    let budget = settings.timeout.min(remaining);
                    let queued_first =
                        settings.notify != NotifyMode::Queue || p.queues().wait_turn(key_hash, started + budget).await;
                    let timeout = budget.saturating_sub(started.elapsed());
                    if !queued_first || timeout.is_zero() {
                        Err(CallError::Timeout(budget))
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
                break;
            }
        }
        let (response, ending) = fold.finish();
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
                    let queued = share
                        .try_queue(p.queues().shard_of(key_hash), body.len())
                        .map_err(|full| match full {
                            ShareFull::Count => EnqueueError::Full,
                            ShareFull::Bytes => EnqueueError::Bytes,
                        })
                        .and_then(|ticket| {
                            p.queues().enqueue(Notification { hook: R::HOOK, version, body, key_hash, ticket })
                        });
                    let result = match queued {
                        Ok(()) => {
                            p.stats.notify_enqueued.fetch_add(1, Ordering::Relaxed);
                            StepResult::Queued
                        }
                        Err(e) => {
                            let (counter, reason) = match e {
                                EnqueueError::Full => (&p.stats.notify_dropped_full, DropReason::QueueFull),
                                EnqueueError::Bytes => (&p.stats.notify_dropped_bytes, DropReason::QueueBytes),
                                EnqueueError::Closed => (&p.stats.notify_dropped_closed, DropReason::Closed),
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                            self.metrics.dropped(index, reason);
                            StepResult::Dropped
                        }
                    };
                    self.step(t, R::HOOK, index, result, Duration::ZERO);
                }
                NotifyMode::AfterDelivery => {
                    let e = match share.try_call() {
                        _ if slot.is_none() => CallError::Shed(tenant.max_inflight.unwrap_or(0)),
                        None => CallError::Shed(share.max_inflight()),
                        Some(call_slot) => {
                            let timeout = settings.timeout;
                            awaited.push(async move {
                                let _call_slot = call_slot;
                                let started = Instant::now();
                                let remaining = deadline.saturating_duration_since(started);
                                let result = if remaining.is_zero() {
                                    Err(CallError::Timeout(Duration::ZERO))
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
                    p.stats.notify_failed.fetch_add(1, Ordering::Relaxed);
                    self.step(t, R::HOOK, index, StepResult::Failed(&e, None), Duration::ZERO);
                }
            }
        }
        if !awaited.is_empty() {
            for (index, result, elapsed) in futures::future::join_all(awaited).await {
                let p = &self.providers[index];
                let counter = if result.is_ok() { &p.stats.notify_delivered } else { &p.stats.notify_failed };
                counter.fetch_add(1, Ordering::Relaxed);
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

    /// EMQX (re)loaded the gateway: load the tenant's providers with EMQX's broker info (within
    /// EMQX's deadline, through each provider's breaker and limit; those that fail keep
    /// retrying in the background) and answer with the union of hooks in the caller's
    /// spelling. A provider shared with other tenants keeps each tenant's broker info.
    pub(crate) async fn provider_loaded(
        &self,
        t: usize,
        caller: Version,
        request: ProviderLoadedRequest,
        deadline: Instant,
    ) -> LoadedResponse {
        let tenant = &self.config.tenants[t];
        let loads = tenant.reachable.iter().map(|&i| {
            let p = &self.providers[i];
            let request = &request;
            async move {
                p.loaded_by(&tenant.name, request);
                let remaining = deadline.saturating_duration_since(Instant::now());
                let timeout = p.config().timeout.max(Duration::from_secs(1)).min(remaining);
                if let Err(e) = p.load_admitted(request, timeout).await {
                    // Never loaded: the background loader retries. Loaded before: its health
                    // check re-loads it (with this broker info) once it answers again.
                    tracing::warn!(provider = %self.provider_name(i), error = %e, "provider not loaded; retrying in the background");
                    if p.registration().is_none() {
                        p.spawn_loader(self.own_broker.clone(), MAX_LOAD_BACKOFF);
                    }
                }
            }
        });
        futures::future::join_all(loads).await;
        let registrations: Vec<_> = self.providers.iter().map(|p| p.registration()).collect();
        let response = loaded_response(tenant, &registrations, caller);
        tracing::info!(tenant = %tenant.name, caller = %caller, hooks = response.hooks.len(), "EMQX loaded the gateway");
        response
    }

    /// EMQX unloaded the gateway: forward to each of the tenant's providers that no other
    /// tenant still has loaded (reply ignored, as EMQX does), through its breaker and limit.
    pub(crate) fn provider_unloaded(&self, t: usize, request: ProviderUnloadedRequest) -> EmptySuccess {
        let tenant = &self.config.tenants[t];
        for &i in &tenant.reachable {
            let p = Arc::clone(&self.providers[i]);
            if !p.unloaded_by(&tenant.name) {
                tracing::debug!(provider = %self.provider_name(i), tenant = %tenant.name, others = ?p.loaded_tenants(), "OnProviderUnloaded kept back: other tenants still use the provider");
                continue;
            }
            let Some(version) = p.version() else { continue };
            let body = Provider::encode_for(&request, version);
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(async move {
                let started = Instant::now();
                let hook = Hook::ProviderUnloaded;
                let result = match p.call::<EmptySuccess>(hook, version, body, UNLOAD_TIMEOUT, 0, Route::Valued).await {
                    Ok(_) => (CallResult::Ok, Some(started.elapsed())),
                    Err(e) => (e.result(), None),
                };
                metrics.provider_call(i, hook, result.0, result.1);
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
