//! exhook-gateway's EMQX-facing side.
//!
//! [`Gateway`] serves `HookProvider` of `emqx.exhook.v1`, `v2` and `v3` on one listener
//! (the gRPC path selects the package), converts every call into the internal model, picks
//! the tenant by the caller's identity (own listener, client certificate) or else its
//! `RequestMeta.cluster_name`, and runs the tenant's chain for the hook:
//! a fold for valued hooks, queued (or awaited) delivery for notifications.
//!
//! The routing tables, providers and metric handles form one snapshot ([`exec::Runtime`]),
//! read lock-free by every call and replaced atomically by [`Gateway::reload`].
#![warn(missing_docs)]

mod connection;
mod deadline;
mod exec;
mod listen;
mod loaded;
pub mod observe;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use exhook_config::{Config, ProviderConfig};
use exhook_metrics::{Metrics, ProviderGauges};
use exhook_upstream::{MetricsSlot, Provider, spawn_health_checker};
use tokio::net::TcpListener;
use tokio::time::Instant;

pub use deadline::parse_grpc_timeout;
pub use exec::outcome_name;
pub use listen::{Caller, CallerInfo, HANDSHAKE_TIMEOUT, ListenError, Listeners, MAX_HANDSHAKES, TLS_POLL};
pub use loaded::loaded_response;
pub use observe::{NoopObserver, Observer};
pub use service::{HookService, Package, PackageV1, PackageV2, PackageV3};

/// Why the gateway could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A provider's URL could not be turned into an endpoint.
    #[error("provider {provider}: {source}")]
    Provider {
        /// Provider name.
        provider: String,
        /// What is wrong with it.
        source: tonic::Status,
    },
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Providers created (new, or changed in a way that needs new connections).
    pub added: Vec<String>,
    /// Providers kept with their connections, registration and breaker state.
    pub kept: Vec<String>,
    /// Providers no longer configured.
    pub removed: Vec<String>,
    /// Changed providers whose new instance could not be loaded in time: the running
    /// instance stays with its old settings (`name: why`).
    pub not_replaced: Vec<String>,
    /// Settings that only take effect after a restart (e.g. `server.listen`).
    pub needs_restart: Vec<String>,
}

pub(crate) struct Shared {
    runtime: ArcSwap<exec::Runtime>,
    metrics: Arc<Metrics>,
    observer: Arc<dyn Observer>,
    loaded_at: ArcSwap<SystemTime>,
}

impl Shared {
    pub(crate) fn current(&self) -> Arc<exec::Runtime> {
        self.runtime.load_full()
    }
}

/// A configured gateway: providers created (channels connect lazily), ready to serve.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("providers", &self.shared.current().providers.len()).finish()
    }
}

fn build_runtime(
    config: Config,
    providers: Vec<Arc<Provider>>,
    metrics: &Arc<Metrics>,
    observer: Arc<dyn Observer>,
) -> exec::Runtime {
    let tenants: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
    let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
    let handles = Arc::new(metrics.handles(&tenants, &names));
    // Every explicit chain's series exist from the first scrape.
    for (t, tenant) in config.tenants.iter().enumerate() {
        for hook in tenant.explicit.iter() {
            handles.declare_chain(t, hook, tenant.chain(hook), hook.kind() == exhook_hooks::HookKind::Valued);
        }
    }
    for (index, p) in providers.iter().enumerate() {
        p.set_metrics(MetricsSlot { handles: Arc::clone(&handles), index });
    }
    exec::Runtime::new(config, providers, observer, handles)
}

fn new_provider(pc: &exhook_config::ProviderConfig) -> Result<Arc<Provider>, ServeError> {
    Provider::new(pc.clone()).map_err(|source| ServeError::Provider { provider: pc.name.clone(), source })
}

/// A read-only view of the running configuration and providers.
pub struct Snapshot(Arc<exec::Runtime>);

impl Snapshot {
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// The providers, in `[[providers]]` order.
    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.0.providers
    }
}

impl Gateway {
    /// Creates the providers and their notification queues. Needs a tokio runtime.
    pub fn new(config: Config, observer: Arc<dyn Observer>) -> Result<Gateway, ServeError> {
        Gateway::with_metrics(config, observer, Metrics::new())
    }

    /// As [`Gateway::new`], recording into `metrics`.
    pub fn with_metrics(
        config: Config,
        observer: Arc<dyn Observer>,
        metrics: Arc<Metrics>,
    ) -> Result<Gateway, ServeError> {
        let providers = config.providers.iter().map(new_provider).collect::<Result<Vec<_>, _>>()?;
        let runtime = build_runtime(config, providers, &metrics, Arc::clone(&observer));
        Ok(Gateway {
            shared: Arc::new(Shared {
                runtime: ArcSwap::from_pointee(runtime),
                metrics,
                observer,
                loaded_at: ArcSwap::from_pointee(SystemTime::now()),
            }),
        })
    }

    /// The running configuration and providers.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.shared.current())
    }

    /// The providers, in `[[providers]]` order.
    pub fn providers(&self) -> Vec<Arc<Provider>> {
        self.shared.current().providers.clone()
    }

    /// A provider by name.
    pub fn provider(&self, name: &str) -> Option<Arc<Provider>> {
        let rt = self.shared.current();
        rt.config.providers.iter().position(|p| p.name == name).map(|i| Arc::clone(&rt.providers[i]))
    }

    /// `HookProvider` of package `P` as a tower service, to drive in-process without a socket
    /// (the fuzz harness feeds it raw request bodies).
    pub fn hook_service<P: Package>(&self) -> HookService<P> {
        HookService::new(Arc::clone(&self.shared))
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// When the running configuration was loaded.
    pub fn config_loaded_at(&self) -> SystemTime {
        **self.shared.loaded_at.load()
    }

    /// Starts loading every provider in the background (with the gateway's own broker info
    /// until EMQX sends its own), retrying those that are down, and their health checks.
    pub fn start_loading(&self) {
        let rt = self.shared.current();
        for p in &rt.providers {
            Self::start_provider(p, &rt.own_broker);
        }
    }

    fn start_provider(p: &Arc<Provider>, own_broker: &exhook_proto::model::ProviderLoadedRequest) {
        if p.registration().is_none() {
            p.spawn_loader(own_broker.clone(), exec::MAX_LOAD_BACKOFF);
        }
        spawn_health_checker(p, own_broker.clone());
    }

    /// Applies a new configuration atomically, without a window in which a changed provider
    /// is not loaded. Providers whose connection settings did not change are kept
    /// (connections, registration, breaker state, queues). A changed provider is built and
    /// loaded (with every tenant's broker info) *before* it replaces the old instance, which
    /// keeps serving meanwhile; if it cannot be loaded within its budget (connect timeout +
    /// timeout, at least 1 s) the old instance stays, with its old settings, and the report
    /// says so. New providers get the same attempt, then keep loading in the background
    /// (a `deny` provider denies until loaded). Removed ones stop when their last in-flight
    /// call ends. Calls in flight finish on the snapshot they started with.
    pub async fn reload(&self, mut config: Config) -> Result<ReloadReport, ServeError> {
        let old = self.shared.current();
        let mut report = ReloadReport::default();
        if config.server.listen != old.config.server.listen {
            report
                .needs_restart
                .push(format!("server.listen ({:?} -> {:?})", old.config.server.listen, config.server.listen));
        }
        // max_request_bytes is read per call: a reload applies it.
        let bounds = |c: &Config| (c.server.tls.clone(), c.server.max_connections, c.server.max_concurrent_streams);
        if bounds(&config) != bounds(&old.config) {
            report.needs_restart.push("server.tls / max_connections / max_concurrent_streams".to_owned());
        }
        let listeners = |c: &Config| c.tenants.iter().map(|t| (t.name.clone(), t.listener.clone())).collect::<Vec<_>>();
        if listeners(&config) != listeners(&old.config) {
            report.needs_restart.push("tenants[].listen / tenants[].tls".to_owned());
        }
        if config.admin != old.config.admin {
            report.needs_restart.push("admin".to_owned());
        }
        // (index in the new configuration, the instance it replaces if any, the fresh one)
        let mut fresh: Vec<(usize, Option<Arc<Provider>>, Arc<Provider>)> = Vec::new();
        let mut providers = Vec::with_capacity(config.providers.len());
        for (i, pc) in config.providers.iter().enumerate() {
            let existing = old.config.providers.iter().position(|o| o.name == pc.name).map(|i| &old.providers[i]);
            match existing {
                Some(p) if p.can_update_in_place(pc) => {
                    p.update(pc.clone());
                    report.kept.push(pc.name.clone());
                    providers.push(Arc::clone(p));
                }
                _ => {
                    let p = new_provider(pc)?;
                    match existing {
                        Some(o) => p.inherit_loaded_by(o),
                        // New: the broker info of the tenants that reach it, as their EMQX
                        // loaded the gateway (EMQX 5.0–5.8 never load it again).
                        None => {
                            for t in config.tenants.iter().filter(|t| t.reachable.contains(&i)) {
                                let known = old.providers.iter().find_map(|o| o.loaded_request_of(&t.name));
                                if let Some(request) = known {
                                    p.loaded_by(&t.name, &request);
                                }
                            }
                        }
                    }
                    fresh.push((i, existing.cloned(), Arc::clone(&p)));
                    providers.push(p);
                }
            }
        }
        let own_broker = exec::own_broker();
        let loads = fresh.iter().map(|(_, _, p)| {
            let budget = p.config().connect_timeout + p.config().timeout.max(Duration::from_secs(1));
            let own_broker = &own_broker;
            async move { p.load_all(own_broker, budget).await }
        });
        let results = futures::future::join_all(loads).await;
        let mut started = Vec::new();
        for ((i, replaced, p), result) in fresh.into_iter().zip(results) {
            let name = config.providers[i].name.clone();
            match (result, replaced) {
                (Ok(_), _) | (Err(_), None) => {
                    report.added.push(name);
                    started.push(p);
                }
                (Err(e), Some(old_instance)) => {
                    // The old instance keeps serving with its old settings; the next reload
                    // tries again.
                    tracing::warn!(provider = %name, error = %e, "changed provider could not be loaded: the running instance stays");
                    report.not_replaced.push(format!("{name}: {e}"));
                    config.providers[i] = ProviderConfig::clone(&old_instance.config());
                    providers[i] = old_instance;
                }
            }
        }
        for o in &old.config.providers {
            if !config.providers.iter().any(|n| n.name == o.name) {
                report.removed.push(o.name.clone());
                old.metrics.forget_provider(&o.name);
            }
        }
        let runtime = build_runtime(config, providers, &self.shared.metrics, Arc::clone(&self.shared.observer));
        for p in &started {
            Self::start_provider(p, &runtime.own_broker);
        }
        self.shared.runtime.store(Arc::new(runtime));
        self.shared.loaded_at.store(Arc::new(SystemTime::now()));
        Ok(report)
    }

    /// Sets the gauges (up, in-flight, queued, breaker state) from the providers' state; the
    /// admin listener calls this before every scrape.
    pub fn refresh_gauges(&self) {
        let rt = self.shared.current();
        for (i, p) in rt.providers.iter().enumerate() {
            rt.metrics.set_gauges(
                i,
                ProviderGauges {
                    up: p.is_up(),
                    inflight: p.inflight() as i64,
                    queued: p.queues().len() as i64,
                    breaker_state: p.breaker_state().as_gauge(),
                },
            );
        }
    }

    /// Serves the three packages on one plaintext `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        self.serve_on(Listeners::plaintext(listener), shutdown).await
    }

    /// Serves the three packages on every listener (plaintext, TLS, tenants' own) until
    /// `shutdown` completes, then drains: every connection is closed gracefully (HTTP/2
    /// GOAWAY) once its calls are answered, connections still arriving meanwhile are served
    /// the same way, and it returns when none is left.
    pub async fn serve_on(
        &self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        // TCP_NODELAY is set by the accept loops (`Server::tcp_nodelay` does not apply to
        // connections passed in). The connection and stream bounds are read once, here: a
        // reload does not change them (the listeners are not re-bound either).
        let (max_connections, max_streams) = {
            let server = &self.shared.current().config.server;
            (server.max_connections, server.max_concurrent_streams)
        };
        let limit = listen::connection_limit(max_connections, Arc::clone(&self.shared.metrics));
        let mut incoming = listeners.accept(Arc::clone(&self.shared.metrics), limit);
        // SETTINGS_MAX_CONCURRENT_STREAMS: a client that respects it (tonic's, hyper's h2, EMQX's)
        // queues further calls itself; one that does not gets REFUSED_STREAM from h2 before the
        // gateway sees the stream (safe to retry, and not countable here).
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let mut connections = tokio::task::JoinSet::new();
        let mut draining = false;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown, if !draining => {
                    // Every open connection closes gracefully once its calls are answered.
                    draining = true;
                    let _ = stopping_tx.send(true);
                }
                accepted = incoming.recv() => match accepted {
                    // While draining, a connection still routed here (the load balancer has
                    // not seen readiness fail yet) is served too, with GOAWAY at once: the
                    // requests it already carries are answered, the client moves on. Closing
                    // the listener instead would reset it with those requests on it.
                    Some(Ok(io)) => {
                        connections.spawn(connection::serve_connection(
                            Arc::clone(&self.shared),
                            io,
                            max_streams,
                            stopping.clone(),
                        ));
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "accept failed"),
                    None => break,
                },
                // Reap finished connections as they end, so the set stays as large as the open ones.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
            // Drained: nothing open and nothing accepted waiting. The listeners close with the
            // channel (the accept loops stop).
            if draining && connections.is_empty() && incoming.is_empty() {
                break;
            }
        }
        drop(incoming);
        let _ = stopping_tx.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Delivers what is still queued, up to `timeout`; returns how many notifications were
    /// left undelivered (counted as dropped, reason `shutdown`).
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let rt = self.shared.current();
        let left = futures::future::join_all(rt.providers.iter().map(|p| p.drain(deadline))).await;
        left.into_iter().sum()
    }
}
