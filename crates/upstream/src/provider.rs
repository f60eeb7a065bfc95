use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption, Guard};
use bytes::Bytes;
use exhook_breaker::{Breaker, BreakerState};
use exhook_config::{ProviderConfig, ProviderTls};
use exhook_hooks::{Hook, HookRequest, Version, convert};
use exhook_metrics::{CallResult, Handles};
use exhook_proto::model::{LoadedResponse, ProviderLoadedRequest};
use prost::Message as _;
use tokio::time::Instant;

use crate::Registration;
use crate::conn::TlsClient;
use crate::endpoint::{Endpoint, EndpointStatus, pick, random};
use crate::queue::NotifyQueues;

/// Why a call to a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer within the call's timeout (its own, or what was left of EMQX's deadline).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The provider answered with a gRPC error status, or the transport failed (tonic reports
    /// both as a status: UNAVAILABLE for connection failures).
    #[error("gRPC status {}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// Not called: the provider's circuit breaker is open.
    #[error("circuit breaker open (retry in {0:?})")]
    BreakerOpen(Duration),
    /// Not called: the provider's concurrency limit (`max_inflight`) is reached.
    #[error("shed: {0} calls in flight")]
    Shed(usize),
    /// The provider's package is not known yet (`auto`, never loaded).
    #[error("package not known yet (provider never loaded)")]
    NotLoaded,
}

impl CallError {
    /// The metrics result for this failure.
    pub fn result(&self) -> CallResult {
        match self {
            CallError::Timeout(_) => CallResult::Timeout,
            CallError::Status(s) if s.code() == tonic::Code::Unavailable => CallResult::Unavailable,
            CallError::Status(_) => CallResult::Error,
            CallError::BreakerOpen(_) => CallResult::BreakerOpen,
            CallError::Shed(_) => CallResult::Shed,
            CallError::NotLoaded => CallResult::Unavailable,
        }
    }

    /// True if the call reached the provider's process (it answered, even with an error).
    fn reached(&self) -> bool {
        match self {
            CallError::Status(s) => s.code() != tonic::Code::Unavailable && s.code() != tonic::Code::Unknown,
            _ => false,
        }
    }
}

/// Why `OnProviderLoaded` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The call failed.
    #[error("OnProviderLoaded ({version}): {source}")]
    Call {
        /// The package tried (the last one, for `auto`).
        version: Version,
        /// What went wrong.
        source: CallError,
    },
}

/// Where a provider is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderState {
    /// Never loaded; loading (or retrying) in the background.
    Connecting = 0,
    /// `OnProviderLoaded` succeeded; calls go to it.
    Loaded = 1,
    /// Was loaded, and then failed (unreachable, or a reload failed); it keeps its last
    /// registration and is re-loaded when it comes back.
    Failed = 2,
}

impl ProviderState {
    /// `connecting`, `loaded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderState::Connecting => "connecting",
            ProviderState::Loaded => "loaded",
            ProviderState::Failed => "failed",
        }
    }
}

/// How a call picks its replica and whether it counts against `max_inflight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A valued call (or OnProviderUnloaded): the less loaded of two random replicas;
    /// counted against `max_inflight`.
    Valued,
    /// An `after-delivery` notification: the clientid's replica (its events stay in order);
    /// counted against `max_inflight`.
    Notification,
    /// A queued notification's delivery: the clientid's replica; not counted against
    /// `max_inflight`, which the tenants' shares of EMQX's calls add up to: deliveries are
    /// bounded by the queue's shard count instead (one delivery task per shard).
    Queued,
}

impl Route {
    fn sticky(self) -> bool {
        !matches!(self, Route::Valued)
    }
}

/// Where this provider's metrics go (set per configuration: indices change on reload).
#[derive(Debug)]
pub struct MetricsSlot {
    /// The configuration's handles.
    pub handles: Arc<Handles>,
    /// This provider's index in them.
    pub index: usize,
}

/// Settings that need new connections or queues when they change.
type HardSettings<'a> = (&'a [String], usize, Duration, usize, usize, Option<Version>, &'a Option<ProviderTls>);

fn hard_settings(c: &ProviderConfig) -> HardSettings<'_> {
    (&c.urls, c.connections, c.connect_timeout, c.queue_size, c.queue_shards, c.protocol, &c.tls)
}

/// One upstream provider: its replicas, breaker, limits, registration and queues. Shared
/// (`Arc`) by the server, its queues, its loader and its health checker.
#[derive(Debug)]
pub struct Provider {
    settings: ArcSwap<ProviderConfig>,
    endpoints: Vec<Endpoint>,
    breaker: Breaker,
    inflight: AtomicUsize,
    /// 0 = unknown, else `Version as u8`.
    version: AtomicU8,
    state: AtomicU8,
    registration: ArcSwapOption<Registration>,
    /// Each tenant's last OnProviderLoaded (tenant name, request), in the order they came:
    /// replayed when the provider is re-loaded, so a shared provider keeps every tenant's
    /// broker info; OnProviderUnloaded goes out when the last tenant is gone. Touched only
    /// by (re)loads, never by calls.
    loaded_by: std::sync::Mutex<Vec<(String, Arc<ProviderLoadedRequest>)>>,
    loading: AtomicBool,
    /// Bumped on every successful load: a readiness signal for the status API and tests.
    loads: tokio::sync::watch::Sender<u64>,
    metrics: ArcSwapOption<MetricsSlot>,
    queues: NotifyQueues,
}

fn version_from_u8(v: u8) -> Option<Version> {
    Version::from_index((v as usize).checked_sub(1)?)
}

impl Provider {
    /// Creates the provider with lazily connected channels (the gateway starts even when
    /// providers are down) and starts its notification delivery tasks. Needs a tokio runtime.
    pub fn new(config: ProviderConfig) -> Result<Arc<Provider>, tonic::Status> {
        let tls = match &config.tls {
            Some(t) => Some(Arc::new(
                TlsClient::new(&config.name, t).map_err(|e| tonic::Status::invalid_argument(format!("tls.{e}")))?,
            )),
            None => None,
        };
        let endpoints = config
            .urls
            .iter()
            .map(|u| Endpoint::new(u, config.connections, config.connect_timeout, tls.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        let version = config.protocol.map_or(0, |v| v as u8);
        let provider = Arc::new_cyclic(|weak| Provider {
            queues: NotifyQueues::new(weak.clone(), config.queue_shards, config.queue_size),
            breaker: Breaker::new(config.breaker.clone()),
            settings: ArcSwap::from_pointee(config),
            endpoints,
            inflight: AtomicUsize::new(0),
            version: AtomicU8::new(version),
            state: AtomicU8::new(ProviderState::Connecting as u8),
            registration: ArcSwapOption::empty(),
            loaded_by: std::sync::Mutex::new(Vec::new()),
            loading: AtomicBool::new(false),
            loads: tokio::sync::watch::Sender::new(0),
            metrics: ArcSwapOption::empty(),
        });
        Ok(provider)
    }

    /// True if `new` can be applied to this provider in place (same replicas, connections,
    /// queues and package): a reload then keeps its connections, registration and breaker.
    pub fn can_update_in_place(&self, new: &ProviderConfig) -> bool {
        hard_settings(&self.settings.load()) == hard_settings(new)
    }

    /// Applies new soft settings (timeouts, failed_action, notify mode, limits, breaker
    /// thresholds, health interval). Only valid when [`Provider::can_update_in_place`].
    pub fn update(&self, new: ProviderConfig) {
        self.breaker.set_config(new.breaker.clone());
        self.settings.store(Arc::new(new));
    }

    /// The current settings.
    pub fn config(&self) -> Guard<Arc<ProviderConfig>> {
        self.settings.load()
    }

    /// The provider's name.
    pub fn name(&self) -> String {
        self.settings.load().name.clone()
    }

    /// Where metrics go from now on.
    pub fn set_metrics(&self, slot: MetricsSlot) {
        self.metrics.store(Some(Arc::new(slot)));
    }

    pub(crate) fn record_drop(&self, reason: exhook_metrics::DropReason) {
        if let Some(m) = self.metrics.load().as_ref() {
            m.handles.dropped(m.index, reason);
        }
    }

    /// The package it speaks, once known.
    pub fn version(&self) -> Option<Version> {
        version_from_u8(self.version.load(Ordering::Acquire))
    }

    /// Its state.
    pub fn state(&self) -> ProviderState {
        match self.state.load(Ordering::Acquire) {
            1 => ProviderState::Loaded,
            2 => ProviderState::Failed,
            _ => ProviderState::Connecting,
        }
    }

    /// Loaded and at least one replica reachable.
    pub fn is_up(&self) -> bool {
        self.state() == ProviderState::Loaded && self.endpoints.iter().any(Endpoint::is_healthy)
    }

    /// Reads its registration in place (`None` if never loaded): no reference count taken,
    /// for the per-call path.
    pub fn with_registration<T>(&self, f: impl FnOnce(&Registration) -> T) -> Option<T> {
        self.registration.load().as_deref().map(f)
    }

    /// Its registration from the last successful load (`None` if never loaded).
    pub fn registration(&self) -> Option<Arc<Registration>> {
        self.registration.load_full()
    }

    /// Its circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Calls in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Its replicas.
    pub fn endpoints(&self) -> Vec<EndpointStatus> {
        self.endpoints.iter().map(Endpoint::status).collect()
    }

    pub(crate) fn endpoint_list(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// How many times it has been loaded successfully.
    pub fn load_count(&self) -> u64 {
        *self.loads.borrow()
    }

    /// Waits until it has been loaded successfully more than `after` times (pass
    /// [`Provider::load_count`] from before an event to wait for a reload).
    pub async fn wait_loaded(&self, after: u64) {
        let mut rx = self.loads.subscribe();
        let _ = rx.wait_for(|n| *n > after).await;
    }

    /// The notification queues.
    pub fn queues(&self) -> &NotifyQueues {
        &self.queues
    }

    /// Encodes `request` for `version` (a copy is made only if the package needs changes).
    pub fn encode_for<R: HookRequest>(request: &R, version: Version) -> Bytes {
        match request.for_version(version) {
            Some(copy) => copy.encode_to_vec().into(),
            None => request.encode_to_vec().into(),
        }
    }

    /// One unary call of `hook` in `version`'s package with a pre-encoded body, bounded by
    /// `timeout` (also sent as `grpc-timeout`). `key_hash` is [`crate::hash_key`] of the
    /// dispatch key (clientid). The phases, in order: circuit breaker
    /// (fail fast when open), concurrency limit (shed when full; not for [`Route::Queued`]),
    /// replica choice (by `route`), connection by `key`, call, classification (only upstream
    /// faults count against the breaker and the replica).
    pub async fn call<D>(
        &self,
        hook: Hook,
        version: Version,
        body: Bytes,
        timeout: Duration,
        key_hash: u64,
        route: Route,
    ) -> Result<D, CallError>
    where
        D: prost::Message + Default + Send + 'static,
    {
        let started = Instant::now();
        let result = async {
            let permit = self.breaker.try_acquire().map_err(|open| CallError::BreakerOpen(open.retry_after))?;
            let settings = self.settings.load();
            let inflight = self.inflight.fetch_add(1, Ordering::Relaxed);
            let _guard = CountGuard(&self.inflight);
            if inflight >= settings.max_inflight && route != Route::Queued {
                permit.ignore();
                return Err(CallError::Shed(inflight));
            }
            let started = Instant::now();
            let sticky = route.sticky();
            let Some(first) = pick(&self.endpoints, key_hash, sticky, random(), None) else {
                permit.ignore();
                return Err(CallError::NotLoaded);
            };
            let mut result = self.attempt(&self.endpoints[first], hook, version, body.clone(), timeout, key_hash).await;
            self.note(first, &result, timeout);
            // UNAVAILABLE (connection refused or reset, or the provider said so) is gRPC's
            // retryable code: try one other replica with what is left of the timeout.
            if matches!(&result, Err(CallError::Status(s)) if s.code() == tonic::Code::Unavailable) {
                let left = timeout.saturating_sub(started.elapsed());
                if let Some(other) =
                    pick(&self.endpoints, key_hash, sticky, random(), Some(first)).filter(|_| !left.is_zero())
                {
                    result = self.attempt(&self.endpoints[other], hook, version, body, left, key_hash).await;
                    self.note(other, &result, left);
                }
            }
            match &result {
                Ok(_) => permit.success(),
                // A timeout imposed by EMQX's remaining budget rather than the provider's own
                // timeout says little about the provider: neutral for the breaker.
                Err(CallError::Timeout(t)) if *t < settings.timeout => permit.ignore(),
                Err(_) => permit.failure(),
            }
            result
        }
        .await;
        self.record_call(hook, route, &result, started.elapsed());
        result
    }

    /// The provider-level facts of one call, recorded here and nowhere else: its latency when
    /// it got an answer (or timed out, or failed with a status), and its result — except a
    /// valued answer's, which only the chain can read (`continue`, `stop` or `ignore`). A
    /// valued hook delivered through the queue (an `observe` member) is read by nobody: it
    /// counts as delivered (`ok`), as a notification.
    fn record_call<D>(&self, hook: Hook, route: Route, result: &Result<D, CallError>, elapsed: Duration) {
        // A guard, not a clone: no reference count taken on the per-call path.
        let slot = self.metrics.load();
        let Some(m) = slot.as_deref() else { return };
        match result {
            Ok(_) if hook.kind() == exhook_hooks::HookKind::Valued && route != Route::Queued => {
                m.handles.provider_latency(m.index, hook, elapsed);
            }
            Ok(_) => m.handles.provider_call(m.index, hook, CallResult::Ok, Some(elapsed)),
            Err(e) => {
                let called = matches!(e, CallError::Timeout(_) | CallError::Status(_));
                m.handles.provider_call(m.index, hook, e.result(), called.then_some(elapsed));
            }
        }
    }

    /// One attempt on one replica.
    async fn attempt<D>(
        &self,
        endpoint: &Endpoint,
        hook: Hook,
        version: Version,
        body: Bytes,
        timeout: Duration,
        key_hash: u64,
    ) -> Result<D, CallError>
    where
        D: prost::Message + Default + Send + 'static,
    {
        let _busy = endpoint.begin();
        let limit = crate::conn::ReplyLimit { max: self.settings.load().max_reply_bytes, metrics: Some(&self.metrics) };
        endpoint.connection(key_hash).call(hook.path(version), body, timeout, limit).await
    }

    /// Records an attempt's result on its replica (outlier ejection, health).
    fn note<D>(&self, index: usize, result: &Result<D, CallError>, timeout: Duration) {
        let settings = self.settings.load();
        let endpoint = &self.endpoints[index];
        match result {
            Ok(_) => {
                endpoint.record(true, settings.eject_after, settings.eject_for);
            }
            Err(e) => {
                let cut_short =
                    matches!(e, CallError::Timeout(t) if *t < settings.timeout) || timeout < settings.timeout;
                if e.reached() {
                    endpoint.record(true, settings.eject_after, settings.eject_for);
                } else if !cut_short {
                    endpoint.record(false, settings.eject_after, settings.eject_for);
                }
                let now = crate::endpoint::now_ms();
                if !e.reached() && !cut_short && !self.endpoints.iter().any(|e| e.available(now)) {
                    self.mark_failed();
                }
            }
        }
    }

    /// Calls `OnProviderLoaded` (probing packages newest first when the protocol is `auto`
    /// and not yet known), and records the registration.
    pub async fn load(
        &self,
        request: &ProviderLoadedRequest,
        timeout: Duration,
    ) -> Result<Arc<Registration>, LoadError> {
        let candidates: &[Version] = match self.version() {
            Some(Version::V1) => &[Version::V1],
            Some(Version::V2) => &[Version::V2],
            Some(Version::V3) => &[Version::V3],
            None => &Version::NEWEST_FIRST,
        };
        let name = self.name();
        let mut last = None;
        for &version in candidates {
            let body: Bytes = match version {
                Version::V1 => convert::loaded_request_to_v1(request).encode_to_vec().into(),
                _ => request.encode_to_vec().into(),
            };
            // Loading bypasses the breaker's verdict on ordinary calls: it is how a provider
            // proves it is back. Each replica answers for the whole provider.
            match self.load_call(version, body, timeout).await {
                Ok(response) => {
                    let registration = Arc::new(Registration::from_response(version, &response));
                    if !registration.unknown.is_empty() || !registration.invalid_filters.is_empty() {
                        tracing::warn!(provider = %name, unknown_hooks = ?registration.unknown,
                            invalid_filters = ?registration.invalid_filters, "provider registered names the gateway ignores");
                    }
                    let changed = self.registration.load().as_deref().is_none_or(|old| !old.same_as(&registration));
                    self.version.store(version as u8, Ordering::Release);
                    self.registration.store(Some(registration.clone()));
                    let before = self.state.swap(ProviderState::Loaded as u8, Ordering::AcqRel);
                    self.loads.send_modify(|n| *n += 1);
                    if before != ProviderState::Loaded as u8 || changed {
                        tracing::info!(provider = %name, %version, changed,
                            hooks = ?registration.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(), "provider loaded");
                    }
                    return Ok(registration);
                }
                // `auto`: a provider of another package answers UNIMPLEMENTED; try the next.
                Err(CallError::Status(s)) if s.code() == tonic::Code::Unimplemented && candidates.len() > 1 => {
                    last = Some((version, CallError::Status(s)));
                }
                Err(e) => {
                    self.mark_failed();
                    return Err(LoadError::Call { version, source: e });
                }
            }
        }
        self.mark_failed();
        let (version, source) = last.unwrap_or((Version::V3, CallError::NotLoaded));
        Err(LoadError::Call { version, source })
    }

    async fn load_call(&self, version: Version, body: Bytes, timeout: Duration) -> Result<LoadedResponse, CallError> {
        let endpoint = &self.endpoints[pick(&self.endpoints, 0, false, random(), None).unwrap_or(0)];
        let path = Hook::ProviderLoaded.path(version);
        let limit = crate::conn::ReplyLimit { max: self.settings.load().max_reply_bytes, metrics: Some(&self.metrics) };
        let result = endpoint.connection(0).call::<LoadedResponse>(path, body, timeout, limit).await;
        let reached = result.as_ref().map_or_else(CallError::reached, |_| true);
        endpoint.set_healthy(reached);
        result
    }

    fn mark_failed(&self) {
        if self
            .state
            .compare_exchange(
                ProviderState::Loaded as u8,
                ProviderState::Failed as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            tracing::warn!(provider = %self.name(), "provider failed; it will be re-loaded when it answers again");
        }
    }

    /// Records that `tenant`'s EMQX loaded the gateway with `request`: replayed on re-loads.
    pub fn loaded_by(&self, tenant: &str, request: &ProviderLoadedRequest) {
        let mut by = self.loaded_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        by.retain(|(t, _)| t != tenant);
        by.push((tenant.to_owned(), Arc::new(request.clone())));
    }

    /// Takes over the tenants' broker info of the instance this one replaces (a reload).
    pub fn inherit_loaded_by(&self, old: &Provider) {
        let from = old.loaded_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        *self.loaded_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = from;
    }

    /// `tenant`'s last OnProviderLoaded, if its EMQX loaded this provider.
    pub fn loaded_request_of(&self, tenant: &str) -> Option<Arc<ProviderLoadedRequest>> {
        let by = self.loaded_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        by.iter().find(|(t, _)| t == tenant).map(|(_, r)| Arc::clone(r))
    }

    /// Records that `tenant`'s EMQX unloaded the gateway; true when no tenant that loaded
    /// the provider is left (then, and only then, the provider hears OnProviderUnloaded).
    pub fn unloaded_by(&self, tenant: &str) -> bool {
        let mut by = self.loaded_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        by.retain(|(t, _)| t != tenant);
        by.is_empty()
    }

    /// The tenants whose EMQX loaded the provider and have not unloaded it, in load order.
    pub fn loaded_tenants(&self) -> Vec<String> {
        let by = self.loaded_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        by.iter().map(|(t, _)| t.clone()).collect()
    }

    /// The requests a re-load sends: every tenant's last one (else `fallback`).
    fn reload_requests(&self, fallback: &ProviderLoadedRequest) -> Vec<Arc<ProviderLoadedRequest>> {
        let by = self.loaded_by.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if by.is_empty() { vec![Arc::new(fallback.clone())] } else { by.iter().map(|(_, r)| Arc::clone(r)).collect() }
    }

    /// Loads the provider again with every tenant's broker info (the gateway's own,
    /// `fallback`, before any EMQX loaded it); the registration is the last answer's.
    pub async fn load_all(
        &self,
        fallback: &ProviderLoadedRequest,
        timeout: Duration,
    ) -> Result<Arc<Registration>, LoadError> {
        let mut last = Err(LoadError::Call { version: Version::V3, source: CallError::NotLoaded });
        for request in self.reload_requests(fallback) {
            last = Ok(self.load(&request, timeout).await?);
        }
        last
    }

    /// `OnProviderLoaded` on behalf of an EMQX call: through the breaker's verdict (an open
    /// breaker is not called; its health check re-loads it when it is back) and the
    /// concurrency limit, unlike the background loader's own loads.
    pub async fn load_admitted(
        &self,
        request: &ProviderLoadedRequest,
        timeout: Duration,
    ) -> Result<Arc<Registration>, LoadError> {
        let version = self.version().unwrap_or(Version::V3);
        if let BreakerState::Open = self.breaker.state() {
            let open_for = self.breaker.snapshot().opened_at.map_or(Duration::ZERO, |t| t.elapsed());
            let retry = self.settings.load().breaker.open_duration.saturating_sub(open_for);
            return Err(LoadError::Call { version, source: CallError::BreakerOpen(retry) });
        }
        let inflight = self.inflight.fetch_add(1, Ordering::Relaxed);
        let _guard = CountGuard(&self.inflight);
        if inflight >= self.settings.load().max_inflight {
            return Err(LoadError::Call { version, source: CallError::Shed(inflight) });
        }
        self.load(request, timeout).await
    }

    /// Keeps calling `OnProviderLoaded` in the background (jittered exponential backoff,
    /// 250 ms doubling up to `max_backoff`) until it succeeds. At most one loader runs per
    /// provider, and it stops if the provider is removed by a reload.
    pub fn spawn_loader(self: &Arc<Self>, fallback: ProviderLoadedRequest, max_backoff: Duration) {
        if self.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(250), max_backoff);
            let mut failures = 0u32;
            loop {
                let Some(this) = weak.upgrade() else { return };
                let timeout = this.config().timeout.max(Duration::from_secs(1));
                match this.load_all(&fallback, timeout).await {
                    Ok(_) => {
                        this.loading.store(false, Ordering::Release);
                        return;
                    }
                    // One line when it starts failing, then quiet (debug) until it loads.
                    Err(e) if failures == 0 => {
                        failures += 1;
                        tracing::warn!(provider = %this.name(), error = %e, "provider not loaded; retrying in the background");
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::debug!(provider = %this.name(), error = %e, failures, "provider still not loaded");
                    }
                }
                drop(this);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        });
    }

    /// The breaker state, for metrics.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Waits until the notification queues are empty or `deadline` passes; returns how many
    /// notifications were still queued (they are counted as dropped, reason `shutdown`).
    pub async fn drain(&self, deadline: Instant) -> usize {
        let left = self.queues.drain(deadline).await;
        if left > 0 {
            for _ in 0..left {
                self.record_drop(exhook_metrics::DropReason::Shutdown);
            }
        }
        left
    }
}

struct CountGuard<'a>(&'a AtomicUsize);

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Jittered exponential backoff: `initial`, doubling up to `max`, each delay ±20 % so that
/// many gateways (or providers) do not retry in lock-step.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { next: initial.min(max), max }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(d)
    }
}

/// ±20 % jitter.
pub(crate) fn jitter(d: Duration) -> Duration {
    let factor = 0.8 + (random() % 1000) as f64 / 1000.0 * 0.4;
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let bases = [250u64, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
        for base in bases {
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= base * 8 / 10 && d <= base * 12 / 10, "{d} not within 20% of {base}");
        }
        let spread: std::collections::HashSet<u128> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_delay().as_micros())
            .collect();
        assert!(spread.len() > 1, "jitter varies");
    }
}
