use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use exhook_config::ProviderConfig;
use exhook_hooks::{Hook, HookRequest, Version, convert};
use exhook_proto::codec::RawCodec;
use exhook_proto::model::{LoadedResponse, ProviderLoadedRequest};
use prost::Message as _;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use crate::Registration;
use crate::queue::NotifyQueues;

/// Why a call to a provider failed. Every variant is an upstream fault: it counts against
/// the provider and applies its `failed_action`.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer within the call's timeout (its own, or what was left of EMQX's deadline).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The provider answered with a gRPC error status (or the transport failed, which tonic
    /// reports as a status too: UNAVAILABLE, UNKNOWN, INTERNAL, …).
    #[error("gRPC status {}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// The provider's package is not known yet (`auto`, never loaded).
    #[error("package not known yet (provider never loaded)")]
    NotLoaded,
}

impl CallError {
    /// A short, bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::Status(s) if s.code() == tonic::Code::Unavailable => "unavailable",
            CallError::Status(_) => "error",
            CallError::NotLoaded => "unavailable",
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
    /// Was loaded, and the last reload failed (it keeps serving with its last registration).
    Failed = 2,
}

/// Counters of one provider, for tests, logs and metrics.
#[derive(Debug, Default)]
pub struct ProviderStats {
    /// Calls answered (any valid reply).
    pub calls_ok: AtomicU64,
    /// Calls failed (timeout, status, transport).
    pub calls_failed: AtomicU64,
    /// Notifications put on a queue.
    pub notify_enqueued: AtomicU64,
    /// Notifications delivered (the provider answered).
    pub notify_delivered: AtomicU64,
    /// Notifications whose delivery failed.
    pub notify_failed: AtomicU64,
    /// Notifications dropped because the shard's queue was full.
    pub notify_dropped_full: AtomicU64,
    /// Notifications dropped because the queue was closed (shutdown).
    pub notify_dropped_closed: AtomicU64,
}

/// One upstream provider. Shared (`Arc`) by the server, its queues and its loader task.
#[derive(Debug)]
pub struct Provider {
    /// Position in `[[providers]]`.
    pub index: usize,
    /// Its configuration.
    pub config: ProviderConfig,
    grpc: Grpc<Channel>,
    /// 0 = unknown, else `Version as u8`.
    version: AtomicU8,
    state: AtomicU8,
    registration: ArcSwapOption<Registration>,
    /// The broker info to load with when retrying in the background.
    last_loaded_request: ArcSwapOption<ProviderLoadedRequest>,
    loading: AtomicBool,
    /// Bumped on every successful load: a readiness signal for the status API and tests.
    loads: tokio::sync::watch::Sender<u64>,
    /// Counters.
    pub stats: ProviderStats,
    queues: NotifyQueues,
}

fn version_from_u8(v: u8) -> Option<Version> {
    Version::from_index((v as usize).checked_sub(1)?)
}

impl Provider {
    /// Creates the provider with a lazily connected channel (the gateway starts even when
    /// providers are down) and starts its notification delivery tasks. Needs a tokio runtime.
    pub fn new(index: usize, config: ProviderConfig) -> Result<Arc<Provider>, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(config.url.clone())?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let channel = endpoint.connect_lazy();
        let version = config.protocol.map_or(0, |v| v as u8);
        let provider = Arc::new_cyclic(|weak| Provider {
            index,
            queues: NotifyQueues::new(weak.clone(), config.queue_shards, config.queue_size),
            config,
            grpc: Grpc::new(channel),
            version: AtomicU8::new(version),
            state: AtomicU8::new(ProviderState::Connecting as u8),
            registration: ArcSwapOption::empty(),
            last_loaded_request: ArcSwapOption::empty(),
            loading: AtomicBool::new(false),
            loads: tokio::sync::watch::Sender::new(0),
            stats: ProviderStats::default(),
        });
        Ok(provider)
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.config.name
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

    /// Its registration from the last successful load (`None` if never loaded).
    pub fn registration(&self) -> Option<Arc<Registration>> {
        self.registration.load_full()
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
    /// `timeout` (also sent as `grpc-timeout`).
    pub async fn call<D>(&self, hook: Hook, version: Version, body: Bytes, timeout: Duration) -> Result<D, CallError>
    where
        D: prost::Message + Default + Send + 'static,
    {
        let result = tokio::time::timeout(timeout, self.call_inner::<D>(hook, version, body, timeout)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(timeout)),
        };
        let counter = if result.is_ok() { &self.stats.calls_ok } else { &self.stats.calls_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn call_inner<D>(&self, hook: Hook, version: Version, body: Bytes, timeout: Duration) -> Result<D, CallError>
    where
        D: prost::Message + Default + Send + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready().await.map_err(|e| CallError::Status(tonic::Status::unavailable(e.to_string())))?;
        let mut request = tonic::Request::new(body);
        request.set_timeout(timeout);
        let path = http::uri::PathAndQuery::from_static(hook.path(version));
        let response = grpc.unary(request, path, RawCodec::<D>::default()).await.map_err(CallError::Status)?;
        Ok(response.into_inner())
    }

    /// Calls `OnProviderLoaded` (probing packages newest first when the protocol is `auto`
    /// and not yet known), and records the registration.
    pub async fn load(
        &self,
        request: &ProviderLoadedRequest,
        timeout: Duration,
    ) -> Result<Arc<Registration>, LoadError> {
        self.last_loaded_request.store(Some(Arc::new(request.clone())));
        let candidates: &[Version] = match self.version() {
            Some(Version::V1) => &[Version::V1],
            Some(Version::V2) => &[Version::V2],
            Some(Version::V3) => &[Version::V3],
            None => &Version::NEWEST_FIRST,
        };
        let mut last = None;
        for &version in candidates {
            let body: Bytes = match version {
                Version::V1 => convert::loaded_request_to_v1(request).encode_to_vec().into(),
                _ => request.encode_to_vec().into(),
            };
            match self.call::<LoadedResponse>(Hook::ProviderLoaded, version, body, timeout).await {
                Ok(response) => {
                    let registration = Arc::new(Registration::from_response(version, &response));
                    if !registration.unknown.is_empty() || !registration.invalid_filters.is_empty() {
                        tracing::warn!(provider = %self.name(), unknown_hooks = ?registration.unknown,
                            invalid_filters = ?registration.invalid_filters, "provider registered names the gateway ignores");
                    }
                    self.version.store(version as u8, Ordering::Release);
                    self.registration.store(Some(registration.clone()));
                    self.loads.send_modify(|n| *n += 1);
                    let before = self.state.swap(ProviderState::Loaded as u8, Ordering::AcqRel);
                    if before != ProviderState::Loaded as u8 {
                        tracing::info!(provider = %self.name(), %version, hooks = ?registration.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(), "provider loaded");
                    }
                    return Ok(registration);
                }
                // `auto`: a provider of another package answers UNIMPLEMENTED; try the next.
                Err(CallError::Status(s)) if s.code() == tonic::Code::Unimplemented && candidates.len() > 1 => {
                    last = Some((version, CallError::Status(s)));
                }
                Err(e) => {
                    self.mark_load_failed();
                    return Err(LoadError::Call { version, source: e });
                }
            }
        }
        self.mark_load_failed();
        let (version, source) = last.unwrap_or((Version::V3, CallError::NotLoaded));
        Err(LoadError::Call { version, source })
    }

    fn mark_load_failed(&self) {
        if self.state() == ProviderState::Loaded {
            self.state.store(ProviderState::Failed as u8, Ordering::Release);
        }
    }

    /// Keeps calling `OnProviderLoaded` in the background (jittered exponential backoff,
    /// 250 ms doubling up to `max_backoff`) until it succeeds. At most one loader runs.
    pub fn spawn_loader(self: &Arc<Self>, fallback: ProviderLoadedRequest, max_backoff: Duration) {
        if self.loading.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let request = this.last_loaded_request.load_full().unwrap_or_else(|| Arc::new(fallback.clone()));
                let timeout = this.config.timeout.max(Duration::from_secs(1));
                match this.load(&request, timeout).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(provider = %this.name(), error = %e, retry_in = ?backoff, "provider not loaded; retrying");
                    }
                }
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(max_backoff);
            }
            this.loading.store(false, Ordering::Release);
        });
    }
}

/// ±20% jitter without a random-number dependency (the clock's sub-microsecond noise is
/// enough to keep many gateways from retrying in lock-step).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let factor = 0.8 + f64::from(nanos % 1000) / 1000.0 * 0.4;
    d.mul_f64(factor)
}
