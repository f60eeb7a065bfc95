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
    /// Topic filters per message hook (absent: all topics): the first
    /// [`TOPICS_SHOWN`] of each; `topic_counts` has the totals.
    pub topics: BTreeMap<String, Vec<String>>,
    /// How many topic filters each message hook registered (absent: all topics).
    pub topic_counts: BTreeMap<String, usize>,
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
    /// The last minutes: calls/s, p99 and breaker state, oldest first (sampled by the admin
    /// plane every few seconds; empty until the first samples).
    pub history: Vec<crate::history::Sample>,
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
    /// Each member in call order with what it did, for the page's chain diagram.
    pub members: Vec<MemberReport>,
}

/// One chain member and what it did so far (the counters `/metrics` exports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemberReport {
    /// Provider name.
    pub provider: String,
    /// `decisive`, `shadow` or `observe`.
    pub mode: String,
    /// Loaded and registered the hook (else every call skips it: `not registered`).
    pub registered: bool,
    /// Its answers and skips for this hook, over every tenant it serves
    /// (`provider_calls_total` has no tenant label): `stop`, `continue`, `ignore`, `ok`,
    /// `failed` (timeout, unavailable, error), `breaker_open`, `shed`, `filtered`, and
    /// `cache_hit` (`cache_lookups_total{result="hit"}`).
    pub counts: BTreeMap<String, u64>,
    /// Chains of this tenant and hook it ended (`chain_decisions_total{decided_by}`).
    pub decided: u64,
}

/// The counters behind [`MemberReport`]: provider and hook → result → calls, and tenant,
/// hook and provider → decisions.
#[derive(Debug, Default)]
pub struct ChainCounts {
    calls: BTreeMap<(String, String), BTreeMap<String, u64>>,
    decided: BTreeMap<(String, String, String), u64>,
}

impl ChainCounts {
    /// Reads them from the metric families.
    pub fn read(metrics: &exhook_metrics::Metrics) -> ChainCounts {
        let mut counts = ChainCounts::default();
        let label = |labels: &[(String, String)], name: &str| {
            labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
        };
        for (labels, n) in metrics.counter_series("exhook_gateway_provider_calls_total") {
            counts.add_call(&label(&labels, "provider"), &label(&labels, "hook"), &label(&labels, "result"), n);
        }
        for (labels, n) in metrics.counter_series("exhook_gateway_cache_lookups_total") {
            if label(&labels, "result") == "hit" {
                counts.add_call(&label(&labels, "provider"), &label(&labels, "hook"), "cache_hit", n);
            }
        }
        for (labels, n) in metrics.counter_series("exhook_gateway_chain_decisions_total") {
            let key = (label(&labels, "tenant"), label(&labels, "hook"), label(&labels, "decided_by"));
            *counts.decided.entry(key).or_default() += n;
        }
        counts
    }

    /// Adds `n` calls of `provider` on `hook` with `result` (timeouts, unavailable and errors
    /// are all `failed`).
    pub fn add_call(&mut self, provider: &str, hook: &str, result: &str, n: u64) {
        let result = match result {
            "timeout" | "unavailable" | "error" => "failed",
            r => r,
        };
        let slot = self.calls.entry((provider.to_owned(), hook.to_owned())).or_default();
        *slot.entry(result.to_owned()).or_default() += n;
    }

    /// A member's report.
    pub fn member(&self, tenant: &str, hook: &str, provider: &str, mode: &str, registered: bool) -> MemberReport {
        MemberReport {
            provider: provider.to_owned(),
            mode: mode.to_owned(),
            registered,
            counts: self.calls.get(&(provider.to_owned(), hook.to_owned())).cloned().unwrap_or_default(),
            decided: self
                .decided
                .get(&(tenant.to_owned(), hook.to_owned(), provider.to_owned()))
                .copied()
                .unwrap_or_default(),
        }
    }
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

/// Topic filters listed per message hook in the status report: the page polls it every
/// second, and a provider may register thousands (100 providers × 1,000 filters made 7.8 MiB
/// of JSON per read before this bound); the counts are always complete.
pub const TOPICS_SHOWN: usize = 100;

/// Builds the report. Contains configuration and state only: never request contents.
pub fn status_report(gateway: &Gateway, config_info: &ConfigInfo, listener_up: bool) -> StatusReport {
    let snap = gateway.snapshot();
    let config = snap.config();
    let cached: BTreeMap<String, usize> = gateway.cache_entries().into_iter().collect();
    // The same numbers /metrics exports (one owner: the metric families), read in one pass.
    let mut summaries = gateway.metrics().provider_summaries();
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
            let filter_sets: Vec<(String, &[String])> = registration
                .as_ref()
                .map(|r| {
                    Hook::ALL
                        .into_iter()
                        .filter(|h| h.is_message_hook() && r.hooks.contains(*h))
                        .filter_map(|h| r.filters(h).map(|f| (h.name().to_owned(), f.filters())))
                        .collect()
                })
                .unwrap_or_default();
            let topic_counts = filter_sets.iter().map(|(h, f)| (h.clone(), f.len())).collect();
            let topics =
                filter_sets.iter().map(|(h, f)| (h.clone(), f.iter().take(TOPICS_SHOWN).cloned().collect())).collect();
            let summary = summaries.remove(&pc.name).unwrap_or_default();
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
                topic_counts,
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
                history: Vec::new(),
            }
        })
        .collect();
    let counts = ChainCounts::read(gateway.metrics());
    let tenants = config
        .tenants
        .iter()
        .map(|t| TenantReport {
            name: t.name.clone(),
            cluster_names: t.cluster_names.clone(),
            chains: Hook::hookpoints()
                .filter_map(|hook| {
                    let explicit = t.explicit.contains(hook);
                    let registered =
                        |i: usize| snap.providers()[i].registration().is_some_and(|r| r.hooks.contains(hook));
                    let (members, modes): (Vec<String>, Vec<String>) = t
                        .members(hook)
                        .filter(|&(i, _)| explicit || registered(i))
                        .map(|(i, mode)| (config.providers[i].name.clone(), mode.as_str().to_owned()))
                        .unzip();
                    let reports = t
                        .members(hook)
                        .filter(|&(i, _)| explicit || registered(i))
                        .map(|(i, mode)| {
                            counts.member(&t.name, hook.name(), &config.providers[i].name, mode.as_str(), registered(i))
                        })
                        .collect();
                    (!members.is_empty()).then(|| ChainReport {
                        hook: hook.name().to_owned(),
                        explicit,
                        providers: members,
                        modes,
                        members: reports,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_counts_group_failures_and_keep_skips_apart() {
        let mut c = ChainCounts::default();
        for (result, n) in [("stop", 3), ("continue", 5), ("timeout", 1), ("error", 2), ("filtered", 4), ("shed", 1)] {
            c.add_call("auth", "client.authenticate", result, n);
        }
        c.add_call("auth", "message.publish", "continue", 9);
        c.decided.insert(("t".into(), "client.authenticate".into(), "auth".into()), 3);
        let m = c.member("t", "client.authenticate", "auth", "decisive", true);
        let want: BTreeMap<String, u64> = [("stop", 3), ("continue", 5), ("failed", 3), ("filtered", 4), ("shed", 1)]
            .map(|(k, v)| (k.into(), v))
            .into();
        assert_eq!(m.counts, want);
        assert_eq!(m.decided, 3);
        assert_eq!(c.member("other", "client.authenticate", "auth", "decisive", true).decided, 0);
        assert!(c.member("t", "client.authorize", "auth", "shadow", false).counts.is_empty());
    }
}
