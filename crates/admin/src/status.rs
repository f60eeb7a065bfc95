//! The status report and readiness: plain data computed from the gateway's snapshot.

use std::collections::BTreeMap;

use exhook_hooks::Hook;
use exhook_server::Gateway;
use exhook_upstream::ProviderState;
use serde::Serialize;

use crate::ConfigInfo;

/// `GET /readyz`.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Ready to serve EMQX.
    pub ready: bool,
    /// What is missing, one line each.
    pub reasons: Vec<String>,
}

/// Ready when: the configuration is loaded (always, once running), the EMQX listener is
/// bound, and every explicit, non-empty chain of every tenant has at least one loaded
/// decisive provider (shadows and observers do not count unless a chain has nothing else); with no explicit chains at all, at least one provider must be loaded (when any
/// is configured). A chain whose providers are all still connecting would make EMQX's
/// valued hooks fall through to IGNORE, which an operator rolling out the gateway wants to
/// know before pointing EMQX at it.
pub fn readiness(gateway: &Gateway, listener_up: bool) -> Readiness {
    let snap = gateway.snapshot();
    let config = snap.config();
    let loaded = |i: usize| snap.providers()[i].registration().is_some();
    let mut reasons = Vec::new();
    if !listener_up {
        reasons.push("the EMQX listener is not serving (starting, or draining for shutdown)".to_owned());
    }
    let mut any_explicit = false;
    for t in &config.tenants {
        for hook in t.explicit.iter() {
            // A shadow or observer never answers for the chain: its decisive members must be
            // there (a chain of observers only: one of them).
            let decisive: Vec<usize> =
                t.members(hook).filter(|(_, m)| *m == exhook_config::MemberMode::Decisive).map(|(i, _)| i).collect();
            let chain = if decisive.is_empty() { t.chain(hook) } else { &decisive[..] };
            if chain.is_empty() {
                continue;
            }
            any_explicit = true;
            if !chain.iter().any(|&i| loaded(i)) {
                let names: Vec<&str> = chain.iter().map(|&i| config.providers[i].name.as_str()).collect();
                reasons.push(format!(
                    "tenant {}: no provider of the {} chain is loaded ({})",
                    t.name,
                    hook,
                    names.join(", ")
                ));
            }
        }
    }
    if !any_explicit && !config.providers.is_empty() && !(0..config.providers.len()).any(loaded) {
        reasons.push("no provider is loaded yet".to_owned());
    }
    Readiness { ready: reasons.is_empty(), reasons }
}

/// One replica in the report.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReport {
    /// URL.
    pub url: String,
    /// Reachable at the last probe or call.
    pub healthy: bool,
    /// Ejected as an outlier.
    pub ejected: bool,
    /// Calls in flight.
    pub inflight: usize,
}

/// One provider in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderStatus {
    /// Name.
    pub name: String,
    /// Replica URLs and their health.
    pub endpoints: Vec<EndpointReport>,
    /// Configured protocol (`auto` or a package).
    pub protocol: String,
    /// The package it answered in (`null` until loaded).
    pub version: Option<String>,
    /// `connecting`, `loaded` or `failed`.
    pub state: String,
    /// Loaded and reachable.
    pub up: bool,
    /// `closed`, `half-open` or `open`.
    pub breaker: String,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Calls in flight.
    pub inflight: usize,
    /// Per-call timeout, e.g. `300ms`.
    pub timeout: String,
    /// `deny` or `ignore`.
    pub failed_action: String,
    /// Hooks registered at the last load, EMQX 5.x spelling.
    pub hooks: Vec<String>,
    /// Topic filters per message hook (absent: all topics).
    pub topics: BTreeMap<String, Vec<String>>,
    /// Calls answered (`provider_calls_total` results continue, stop, ignore, ok).
    pub calls_ok: u64,
    /// Calls failed or refused (timeout, unavailable, error, breaker_open, shed).
    pub calls_failed: u64,
    /// Notifications waiting.
    pub queued: usize,
    /// Notifications dropped, every reason (`notifications_dropped_total`).
    pub dropped: u64,
    /// Call latency over all hooks: `[upper bound seconds, cumulative count]` (the last bound
    /// is `null` for +Inf).
    pub latency_buckets: Vec<(Option<f64>, u64)>,
    /// Decisions in its cache now (`None`: no `[providers.cache]`).
    pub cache_entries: Option<usize>,
}

/// One tenant in the report.
#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    /// Name.
    pub name: String,
    /// `RequestMeta.cluster_name` values that select it (empty for the default tenant).
    pub cluster_names: Vec<String>,
    /// Hook → providers in call order, for every hook with a non-empty chain; `explicit`
    /// tells configured chains from "every provider that registered it".
    pub chains: Vec<ChainReport>,
}

/// One chain.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    /// Hookpoint.
    pub hook: String,
    /// Configured in `[chains]` (else: every tenant provider that registered the hook).
    pub explicit: bool,
    /// Provider names in call order (for implicit chains, those that registered it).
    pub providers: Vec<String>,
    /// Each provider's mode, same order: `decisive`, `shadow` or `observe`.
    pub modes: Vec<String>,
}

/// One shadow disagreement (`GET /api/v1/shadow/disagreements`, the status page): the client,
/// and the two answers as EMQX would read them. Never a password or a payload.
#[derive(Debug, Clone, Serialize)]
pub struct DisagreementReport {
    /// When it was seen (RFC 3339).
    pub at: String,
    /// Tenant.
    pub tenant: String,
    /// Hook.
    pub hook: String,
    /// The shadow provider.
    pub provider: String,
    /// The client (clientid, or a publish's sender).
    pub clientid: String,
    /// What the chain decided (`allow`, `deny`, or a message's topic, qos, size and hash).
    pub chain: String,
    /// What the shadow would have decided at its position.
    pub shadow: String,
}

/// The disagreements the gateway keeps, newest first.
pub fn disagreements(gateway: &Gateway) -> Vec<DisagreementReport> {
    gateway
        .metrics()
        .disagreements()
        .into_iter()
        .map(|d| DisagreementReport {
            at: humantime::format_rfc3339_millis(d.at).to_string(),
            tenant: d.tenant,
            hook: d.hook.to_owned(),
            provider: d.provider,
            clientid: d.clientid,
            chain: d.chain,
            shadow: d.shadow,
        })
        .collect()
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// Gateway version.
    pub version: String,
    /// The running configuration file.
    pub config: ConfigInfo,
    /// EMQX-facing plaintext listener address (empty when there is none).
    pub listen: String,
    /// EMQX-facing TLS listener address.
    pub tls_listen: Option<String>,
    /// Readiness, as `/readyz`.
    pub ready: Readiness,
    /// Tenants, default first.
    pub tenants: Vec<TenantReport>,
    /// Providers in `[[providers]]` order.
    pub providers: Vec<ProviderStatus>,
    /// The newest shadow disagreements, newest first (see [`DisagreementReport`]).
    pub disagreements: Vec<DisagreementReport>,
}

/// Builds the report. Contains configuration and state only: never request contents.
pub fn status_report(gateway: &Gateway, config_info: &ConfigInfo, listener_up: bool) -> StatusReport {
    let snap = gateway.snapshot();
    let config = snap.config();
    let cached: BTreeMap<String, usize> = gateway.cache_entries().into_iter().collect();
    let providers = snap
        .providers()
        .iter()
        .zip(&config.providers)
        .map(|(p, pc)| {
            let registration = p.registration();
            let hooks = registration
                .as_ref()
                .map(|r| r.hooks.iter().map(|h| h.name().to_owned()).collect())
                .unwrap_or_default();
            let topics = registration
                .as_ref()
                .map(|r| {
                    Hook::ALL
                        .into_iter()
                        .filter(|h| h.is_message_hook() && r.hooks.contains(*h))
                        .filter_map(|h| r.filters(h).map(|f| (h.name().to_owned(), f.filters().to_vec())))
                        .collect()
                })
                .unwrap_or_default();
            // The same numbers /metrics exports (one owner: the metric families).
            let summary = gateway.metrics().provider_summary(&pc.name);
            let snapshot = p.breaker().snapshot();
            ProviderStatus {
                name: pc.name.clone(),
                endpoints: p
                    .endpoints()
                    .into_iter()
                    .map(|e| EndpointReport {
                        url: e.url,
                        healthy: e.healthy,
                        ejected: e.ejected,
                        inflight: e.inflight,
                    })
                    .collect(),
                protocol: pc.protocol.map_or("auto", |v| v.as_str()).to_owned(),
                version: p.version().map(|v| v.as_str().to_owned()),
                state: match p.state() {
                    ProviderState::Connecting => "connecting",
                    ProviderState::Loaded => "loaded",
                    ProviderState::Failed => "failed",
                }
                .to_owned(),
                up: p.is_up(),
                breaker: snapshot.state.as_str().to_owned(),
                breaker_opened: snapshot.times_opened,
                inflight: p.inflight(),
                timeout: humantime::format_duration(pc.timeout).to_string(),
                failed_action: match pc.failed_action {
                    exhook_config::FailedAction::Deny => "deny",
                    exhook_config::FailedAction::Ignore => "ignore",
                }
                .to_owned(),
                hooks,
                topics,
                calls_ok: summary.answered,
                calls_failed: summary.failed,
                queued: p.queues().len(),
                dropped: summary.dropped,
                latency_buckets: gateway
                    .metrics()
                    .provider_latency(&pc.name)
                    .into_iter()
                    .map(|(le, n)| (le.is_finite().then_some(le), n))
                    .collect(),
                cache_entries: cached.get(&pc.name).copied(),
            }
        })
        .collect();
    let tenants = config
        .tenants
        .iter()
        .map(|t| TenantReport {
            name: t.name.clone(),
            cluster_names: t.cluster_names.clone(),
            chains: Hook::hookpoints()
                .filter_map(|hook| {
                    let explicit = t.explicit.contains(hook);
                    let (members, modes): (Vec<String>, Vec<String>) = t
                        .members(hook)
                        .filter(|&(i, _)| {
                            explicit || snap.providers()[i].registration().is_some_and(|r| r.hooks.contains(hook))
                        })
                        .map(|(i, mode)| (config.providers[i].name.clone(), mode.as_str().to_owned()))
                        .unzip();
                    (!members.is_empty()).then(|| ChainReport {
                        hook: hook.name().to_owned(),
                        explicit,
                        providers: members,
                        modes,
                    })
                })
                .collect(),
        })
        .collect();
    StatusReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config: config_info.clone(),
        listen: config.server.listen.map(|a| a.to_string()).unwrap_or_default(),
        tls_listen: config.server.tls.as_ref().map(|t| t.listen.to_string()),
        ready: readiness(gateway, listener_up),
        tenants,
        providers,
        disagreements: disagreements(gateway),
    }
}
