//! The chain executor: one EMQX call in, provider calls out, one answer back.
//!
//! [`Runtime`] is one configuration's snapshot (routing, providers, tenants' shares, metric
//! handles); its work is split by phase:
//! * `tenant` — who is calling: identity (listener, certificate, `cluster_name`) → tenant;
//! * `valued` — a valued hook: the fold over the tenant's chain, inside EMQX's deadline;
//! * `notify` — a notification: queued (or awaited) delivery to each subscribed provider;
//! * `lifecycle` — OnProviderLoaded / OnProviderUnloaded fan-out to the tenant's providers;
//! * `side` — a valued chain's shadow and observe members: spawned or queued off the
//!   answer's path, never folded;
//! * `cache` — the providers' decision caches (per snapshot: a reload starts them empty);
//! * here — admission (tenant limit), routing (which package, or why a provider is skipped)
//!   and per-step recording, shared by all of them.

mod cache;
mod lifecycle;
mod notify;
mod side;
mod tenant;
mod valued;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use exhook_chain::StepOutcome;
use exhook_chain::cache::DecisionCache;
use exhook_config::{Config, MemberMode};
use exhook_hooks::{Hook, HookSet, Version};
use exhook_metrics::{CallResult, Handles};
use exhook_proto::model::{ProviderLoadedRequest, RequestMeta};
use exhook_upstream::share::TenantShare;
use exhook_upstream::{CallError, Provider};

use crate::observe::{Observer, StepEvent, StepResult};

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
    /// Per tenant: the valued hooks whose chain has shadow or observe members (the plain
    /// chain's path checks one bit).
    side_hooks: Vec<HookSet>,
    /// Shadow calls in flight, over every tenant and provider.
    shadow_budget: Arc<side::ShadowBudget>,
    /// Per provider: its decision cache, if `[providers.cache]` is set.
    caches: Vec<Option<DecisionCache>>,
}

/// How many distinct unknown cluster names are logged (each once).
const MAX_LOGGED_CLUSTERS: usize = 256;

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
        let mut side_hooks = vec![HookSet::EMPTY; config.tenants.len()];
        for (t, tenant) in config.tenants.iter().enumerate() {
            for hook in tenant.explicit.iter() {
                for (p, mode) in tenant.members(hook) {
                    match mode {
                        MemberMode::Shadow => metrics.declare_shadow(t, hook, p),
                        MemberMode::Observe => metrics.declare_observer(p, hook),
                        MemberMode::Decisive => {}
                    }
                    if mode != MemberMode::Decisive {
                        side_hooks[t].insert(hook);
                    }
                }
            }
        }
        let caches = cache::caches(&config, &metrics);
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
            side_hooks,
            shadow_budget: Arc::new(side::ShadowBudget::default()),
            caches,
        }
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

    /// A caller request with a part that could not be converted (served anyway, the part
    /// passed on unchanged): counted, and logged the first time per package and issue.
    pub(crate) fn conversion_issue(&self, caller: Version, issue: exhook_hooks::ConversionIssue) {
        if self.metrics.metrics().conversion_issue(caller, issue) == 0 {
            tracing::warn!(package = %caller, issue = issue.as_str(), "{issue} (counted in exhook_gateway_conversion_issues_total; logged once)");
        }
    }

    /// A call the gateway refused to make for the chain (tenant or share limit, no time left,
    /// fail closed): counted as the provider's result, as the provider counts its own.
    fn refused(&self, i: usize, hook: Hook, e: CallError) -> CallError {
        self.metrics.provider_call(i, hook, e.result(), None);
        e
    }

    fn provider_name(&self, i: usize) -> &str {
        &self.config.providers[i].name
    }

    /// Records one provider's turn: the chain-level metric (skips, and what a valued answer
    /// meant to the fold; a call's own result and latency are recorded by the provider),
    /// then the observer.
    fn step(&self, t: usize, hook: Hook, i: usize, result: StepResult<'_>, elapsed: Duration) {
        self.step_as(t, hook, i, result, elapsed, Via::Call(MemberMode::Decisive));
    }

    /// As [`Runtime::step`], for a step that was not a decisive call: a cache hit, a shadow or
    /// an observer.
    fn step_as(&self, t: usize, hook: Hook, i: usize, result: StepResult<'_>, elapsed: Duration, via: Via) {
        let metric = match &result {
            StepResult::SkippedNotLoaded => Some(CallResult::Unavailable),
            StepResult::SkippedFiltered => Some(CallResult::Filtered),
            StepResult::Answered(outcome, _) => Some(answered_result(*outcome)),
            StepResult::SkippedNotRegistered
            | StepResult::Queued
            | StepResult::Dropped
            | StepResult::Delivered
            | StepResult::Failed(..) => None,
        };
        // A cache hit made no call: it is counted as a lookup, not as a provider call.
        if let (Some(r), false) = (metric, via == Via::Cache) {
            self.metrics.provider_call(i, hook, r, None);
        }
        let tenant = &self.config.tenants[t].name;
        let (mode, cached) = match via {
            Via::Call(mode) => (mode, false),
            Via::Cache => (MemberMode::Decisive, true),
        };
        self.observer.step(&StepEvent { tenant, hook, provider: self.provider_name(i), result, elapsed, mode, cached });
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
}

/// What a valued answer meant to the fold, as `provider_calls_total{result}` counts it.
fn answered_result(outcome: StepOutcome) -> CallResult {
    match outcome {
        StepOutcome::Continue => CallResult::Continue,
        StepOutcome::Stop => CallResult::Stop,
        _ => CallResult::Ignore,
    }
}

/// How a step's answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A call to the provider, as a member of this mode.
    Call(MemberMode),
    /// The provider's decision cache (no call).
    Cache,
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
