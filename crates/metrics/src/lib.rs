//! exhook-gateway's Prometheus metrics.
//!
//! [`Metrics`] owns the registry and the metric families for the life of the process;
//! [`Handles`] are built per configuration (tenants and providers by index) and hand out
//! pre-resolved children, so recording on the hot path is an index, an atomic load and an
//! atomic add: no string formatting, no hashing, no allocation. Every series whose labels
//! are known from the configuration is created at 0 when the handles are built (per
//! provider, per tenant and hook of an explicit chain, every reason and result enum), so a
//! fresh gateway's first scrape already has every family and `increase(...)` sees the first
//! event (Prometheus' own guidance); other combinations are created the first time they are
//! used and kept in a `OnceLock` after that. Labels are bounded: tenant, hook, provider, and small
//! enums; never clientid, username, topic or password.
#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use exhook_hooks::{ConversionIssue, Hook, Version};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric family the gateway exports (histograms also export `_bucket`, `_sum` and
/// `_count` series). The dashboard and alert tests check their expressions against this list.
pub const METRIC_NAMES: &[&str] = &[
    "exhook_gateway_requests_total",
    "exhook_gateway_request_duration_seconds",
    "exhook_gateway_provider_calls_total",
    "exhook_gateway_provider_call_duration_seconds",
    "exhook_gateway_provider_breaker_state",
    "exhook_gateway_provider_up",
    "exhook_gateway_provider_inflight",
    "exhook_gateway_notifications_queued",
    "exhook_gateway_notifications_dropped_total",
    "exhook_gateway_chain_decisions_total",
    "exhook_gateway_config_reloads_total",
    "exhook_gateway_build_info",
    "exhook_gateway_caller_identity_total",
    "exhook_gateway_conversion_issues_total",
    "exhook_gateway_limit_exceeded_total",
    "exhook_gateway_connections",
    "exhook_gateway_trace_dropped_total",
];

/// Families that exist (from the first scrape, at 0) only when the configuration uses what
/// they count: a chain with a shadow member (`shadow_*`), a provider with
/// `[providers.cache]` (`cache_*`). Kept apart from [`METRIC_NAMES`], whose every family
/// exists whatever the configuration (a family with no series is not exported at all, and a
/// series for a shadow or cache that is not configured would be a lie).
pub const OPTIONAL_METRIC_NAMES: &[&str] = &[
    "exhook_gateway_shadow_comparisons_total",
    "exhook_gateway_shadow_dropped_total",
    "exhook_gateway_cache_lookups_total",
    "exhook_gateway_cache_evictions_total",
    "exhook_gateway_cache_entries",
];

/// Disagreements kept for the admin API and the status page (the newest; older ones are
/// only counted).
pub const DISAGREEMENTS_KEPT: usize = 100;

/// Latency buckets, seconds: 100 µs to 5 s (EMQX's default request_timeout).
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $variant),* }
        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label),* }
            }
        }
    };
}

label_enum!(
    /// What EMQX saw (`exhook_gateway_requests_total{outcome}`).
    Outcome {
        /// Valued hook answered CONTINUE.
        Continue => "continue",
        /// Valued hook answered STOP_AND_RETURN by a provider.
        Stop => "stop",
        /// Valued hook answered IGNORE.
        Ignore => "ignore",
        /// Valued hook denied because a provider failed with `failed_action = deny`.
        DeniedByFailure => "denied_by_failure",
        /// Notification acknowledged.
        Ack => "ack",
    }
);

label_enum!(
    /// One provider call (`exhook_gateway_provider_calls_total{result}`).
    CallResult {
        /// Valued: CONTINUE with a usable value.
        Continue => "continue",
        /// Valued: STOP_AND_RETURN with a usable value.
        Stop => "stop",
        /// Valued: IGNORE (or an answer treated as IGNORE).
        Ignore => "ignore",
        /// Notification delivered.
        Ok => "ok",
        /// No answer in time.
        Timeout => "timeout",
        /// Provider unreachable (connect/transport failure, UNAVAILABLE, or not loaded).
        Unavailable => "unavailable",
        /// Any other gRPC error or an undecodable answer.
        Error => "error",
        /// Not called: its circuit breaker is open.
        BreakerOpen => "breaker_open",
        /// Not called: its concurrency limit is reached.
        Shed => "shed",
        /// Not called: its topic filters do not match.
        Filtered => "filtered",
    }
);

label_enum!(
    /// Why a notification was dropped (`exhook_gateway_notifications_dropped_total{reason}`).
    DropReason {
        /// The provider's queue shard was full.
        QueueFull => "queue_full",
        /// The queue was closed (provider removed by a reload).
        Closed => "closed",
        /// Still queued when the gateway shut down.
        Shutdown => "shutdown",
        /// Taken off the queue but not delivered (provider failed, timed out, breaker open).
        DeliveryFailed => "delivery_failed",
        /// The tenant's share of the provider's `queue_bytes` was used up.
        QueueBytes => "queue_bytes",
    }
);

label_enum!(
    /// Identity events on the EMQX-facing listeners (`exhook_gateway_caller_identity_total{event}`).
    IdentityEvent {
        /// A TLS handshake failed (no, expired or untrusted client certificate; bad ALPN; timeout).
        HandshakeFailed => "tls_handshake_failed",
        /// A call from a verified certificate that names no tenant was refused (`unknown_client = "reject"`).
        RejectedUnknownClient => "rejected_unknown_client",
        /// A call's `cluster_name` claimed another tenant than its certificate or listener (the identity won).
        ClusterNameMismatch => "cluster_name_mismatch",
        /// A call whose `cluster_name` no tenant claims was refused (`unknown_cluster = "reject"`).
        RejectedUnknownCluster => "rejected_unknown_cluster",
    }
);

label_enum!(
    /// A bound that was reached (`exhook_gateway_limit_exceeded_total{limit}`). No `provider`
    /// label: every child exists from the first scrape (providers come and go with reloads), and
    /// the provider of an oversized reply is already named by its failed call
    /// (`provider_calls_total{result="error"}`) and by the log line.
    Limit {
        /// An EMQX connection arrived while `server.max_connections` were open: it waits until
        /// one closes (counted once per connection that had to wait at the accept loop).
        Connections => "connections",
        /// An EMQX request larger than `server.max_request_bytes` was answered RESOURCE_EXHAUSTED.
        RequestBytes => "request_bytes",
        /// A provider reply larger than the provider's `max_reply_bytes` was refused (the call failed).
        ReplyBytes => "reply_bytes",
    }
);

label_enum!(
    /// A shadow provider's answer against the chain's
    /// (`exhook_gateway_shadow_comparisons_total{verdict}`).
    ShadowVerdict {
        /// EMQX would have acted the same on the shadow's answer.
        Agree => "agree",
        /// It would not (the case is kept in the disagreement log).
        Disagree => "disagree",
        /// The shadow failed (error status, unreachable, breaker open, shed, not loaded).
        Error => "error",
        /// The shadow did not answer within its own `timeout`.
        Timeout => "timeout",
    }
);

label_enum!(
    /// A decision cache lookup (`exhook_gateway_cache_lookups_total{result}`).
    CacheLookup {
        /// A live answer was reused: no provider call.
        Hit => "hit",
        /// No live answer: the provider was called.
        Miss => "miss",
    }
);

label_enum!(
    /// Why cached decisions were removed (`exhook_gateway_cache_evictions_total{reason}`).
    CacheEviction {
        /// The cache was full: the oldest entry made room.
        Capacity => "capacity",
        /// Looked up after its TTL.
        Expired => "expired",
        /// The provider was re-loaded.
        Invalidated => "invalidated",
        /// Removed through the admin API.
        Api => "api",
    }
);

/// One shadow disagreement, as the admin API and the status page show it. Never a password:
/// the answers are described (`allow`/`deny`, or a message's topic, qos and payload size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// When it was seen.
    pub at: std::time::SystemTime,
    /// The tenant.
    pub tenant: String,
    /// The hook.
    pub hook: &'static str,
    /// The shadow provider.
    pub provider: String,
    /// The client (the dispatch key: clientid, or the publisher).
    pub clientid: String,
    /// What the chain decided.
    pub chain: String,
    /// What the shadow would have decided at its position.
    pub shadow: String,
}

/// The registry and metric families; one per process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    provider_calls: IntCounterVec,
    provider_call_duration: HistogramVec,
    breaker_state: IntGaugeVec,
    up: IntGaugeVec,
    inflight: IntGaugeVec,
    queued: IntGaugeVec,
    dropped: IntCounterVec,
    decisions: IntCounterVec,
    reloads: IntCounterVec,
    /// One child per [`IdentityEvent`], in `ALL` order (created at start: every event exists at 0).
    identity: Vec<IntCounter>,
    /// One child per (caller package, [`ConversionIssue`]), created at start.
    conversions: Vec<IntCounter>,
    /// One child per [`Limit`], in `ALL` order (created at start: every limit exists at 0).
    limits: Vec<IntCounter>,
    /// Open EMQX-facing connections.
    connections: IntGauge,
    /// Live trace events dropped because a viewer read too slowly (admin plane).
    trace_dropped: IntCounter,
    shadow_comparisons: IntCounterVec,
    shadow_dropped: IntCounterVec,
    cache_lookups: IntCounterVec,
    cache_evictions: IntCounterVec,
    cache_entries: IntGaugeVec,
    /// The newest [`DISAGREEMENTS_KEPT`] disagreements (kept across reloads, like the counters).
    disagreements: std::sync::Mutex<std::collections::VecDeque<Disagreement>>,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()), labels)
        .expect("valid metric definition");
    registry.register(Box::new(h.clone())).expect("metric registered once");
    h
}

fn slots<T>(n: usize) -> Vec<OnceLock<T>> {
    (0..n).map(|_| OnceLock::new()).collect()
}

impl Metrics {
    /// Creates the registry with every family (and `build_info` set).
    pub fn new() -> Arc<Metrics> {
        // The definitions are constants: `expect` here can only fire on a programming error,
        // caught by the tests on the first run.
        let r = Registry::new();
        let m = Metrics {
            requests: counter(
                &r,
                "exhook_gateway_requests_total",
                "EMQX calls answered, by what EMQX got.",
                &["tenant", "hook", "outcome"],
            ),
            request_duration: histogram(
                &r,
                "exhook_gateway_request_duration_seconds",
                "Time from receiving an EMQX call to answering it.",
                &["tenant", "hook"],
            ),
            provider_calls: counter(
                &r,
                "exhook_gateway_provider_calls_total",
                "Provider calls (and skips) by result.",
                &["provider", "hook", "result"],
            ),
            provider_call_duration: histogram(
                &r,
                "exhook_gateway_provider_call_duration_seconds",
                "Provider call latency.",
                &["provider", "hook"],
            ),
            breaker_state: gauge(
                &r,
                "exhook_gateway_provider_breaker_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                &["provider"],
            ),
            up: gauge(
                &r,
                "exhook_gateway_provider_up",
                "1 if the provider is loaded and its last call reached it.",
                &["provider"],
            ),
            inflight: gauge(&r, "exhook_gateway_provider_inflight", "Provider calls in flight.", &["provider"]),
            queued: gauge(
                &r,
                "exhook_gateway_notifications_queued",
                "Notifications waiting in the provider's queues.",
                &["provider"],
            ),
            dropped: counter(
                &r,
                "exhook_gateway_notifications_dropped_total",
                "Notifications dropped, by reason.",
                &["provider", "reason"],
            ),
            decisions: counter(
                &r,
                "exhook_gateway_chain_decisions_total",
                "Valued chains by the provider that ended them (\"none\": ran to the end).",
                &["tenant", "hook", "decided_by"],
            ),
            reloads: counter(
                &r,
                "exhook_gateway_config_reloads_total",
                "Configuration reloads by result.",
                &["result"],
            ),
            identity: {
                let family = counter(
                    &r,
                    "exhook_gateway_caller_identity_total",
                    "Caller identity events on the EMQX-facing listeners.",
                    &["event"],
                );
                // Known from the start: every event exists at 0, so increase() sees the first one.
                IdentityEvent::ALL.iter().map(|e| family.with_label_values(&[e.as_str()])).collect()
            },
            conversions: {
                let family = counter(
                    &r,
                    "exhook_gateway_conversion_issues_total",
                    "Caller requests with a part that could not be converted between packages (passed on unchanged).",
                    &["package", "issue"],
                );
                // Indexed by caller package (`Version::index`), then issue.
                (0..Version::NEWEST_FIRST.len())
                    .filter_map(Version::from_index)
                    .flat_map(|v| ConversionIssue::ALL.iter().map(move |i| (v, i)))
                    .map(|(v, i)| family.with_label_values(&[v.as_str(), i.as_str()]))
                    .collect()
            },
            limits: {
                let family = counter(
                    &r,
                    "exhook_gateway_limit_exceeded_total",
                    "Bounds reached: connections waiting, requests and replies refused for their size.",
                    &["limit"],
                );
                Limit::ALL.iter().map(|l| family.with_label_values(&[l.as_str()])).collect()
            },
            connections: {
                let g = IntGauge::new("exhook_gateway_connections", "Open EMQX-facing connections.")
                    .expect("valid metric definition");
                r.register(Box::new(g.clone())).expect("metric registered once");
                g
            },
            trace_dropped: {
                let c = IntCounter::new(
                    "exhook_gateway_trace_dropped_total",
                    "Live trace events dropped because a viewer read too slowly.",
                )
                .expect("valid metric definition");
                r.register(Box::new(c.clone())).expect("metric registered once");
                c
            },
            shadow_comparisons: counter(
                &r,
                "exhook_gateway_shadow_comparisons_total",
                "Shadow providers' answers compared with the chain's, by verdict.",
                &["tenant", "hook", "provider", "verdict"],
            ),
            shadow_dropped: counter(
                &r,
                "exhook_gateway_shadow_dropped_total",
                "Shadow calls not made: too many shadow calls in flight.",
                &["tenant", "hook", "provider"],
            ),
            cache_lookups: counter(
                &r,
                "exhook_gateway_cache_lookups_total",
                "Decision cache lookups by result (a hit costs no provider call).",
                &["provider", "hook", "result"],
            ),
            cache_evictions: counter(
                &r,
                "exhook_gateway_cache_evictions_total",
                "Cached decisions removed, by reason.",
                &["provider", "reason"],
            ),
            cache_entries: gauge(&r, "exhook_gateway_cache_entries", "Decisions cached now.", &["provider"]),
            disagreements: Default::default(),
            registry: r,
        };
        m.declare_reloads();
        let info = gauge(&m.registry, "exhook_gateway_build_info", "Build information; always 1.", &["version"]);
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Arc::new(m)
    }

    /// Pre-resolved handles for a configuration's tenants and providers (by index), with
    /// every per-provider series created at 0 (gauges, drops by reason).
    pub fn handles(self: &Arc<Self>, tenants: &[&str], providers: &[&str]) -> Handles {
        let hooks = Hook::ALL.len();
        let handles = Handles {
            metrics: Arc::clone(self),
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            providers: providers.iter().map(|s| s.to_string()).collect(),
            requests: slots::<_>(tenants.len() * hooks * Outcome::ALL.len()),
            request_duration: slots::<_>(tenants.len() * hooks),
            calls: slots::<_>(providers.len() * hooks * CallResult::ALL.len()),
            call_duration: slots::<_>(providers.len() * hooks),
            decisions: slots::<_>(tenants.len() * hooks * (providers.len() + 1)),
            dropped: slots::<_>(providers.len() * DropReason::ALL.len()),
            shadow: slots::<_>(tenants.len() * HOOKS * providers.len() * ShadowVerdict::ALL.len()),
            shadow_dropped: slots::<_>(tenants.len() * HOOKS * providers.len()),
            cache_lookups: slots::<_>(providers.len() * HOOKS * CacheLookup::ALL.len()),
            cache_evictions: slots::<_>(providers.len() * CacheEviction::ALL.len()),
        };
        for p in 0..providers.len() {
            handles.set_gauges(p, ProviderGauges::default());
            for &reason in DropReason::ALL {
                handles.dropped_slot(p, reason);
            }
        }
        handles
    }

    /// Counts a caller identity event.
    pub fn identity(&self, event: IdentityEvent) {
        // `ALL` lists every variant in declaration order, so the index is the discriminant.
        self.identity[event as usize].inc();
    }

    /// Counts a caller request with a part that could not be converted; returns how many
    /// there were before (0: the first, worth a log line).
    pub fn conversion_issue(&self, caller: Version, issue: ConversionIssue) -> u64 {
        let i = caller.index() * ConversionIssue::ALL.len() + issue as usize;
        self.conversions.get(i).map_or(0, |c| {
            let before = c.get();
            c.inc();
            before
        })
    }

    /// Counts a bound reached.
    pub fn limit_exceeded(&self, limit: Limit) {
        // `ALL` lists every variant in declaration order, so the index is the discriminant.
        self.limits[limit as usize].inc();
    }

    /// Counts an EMQX-facing connection opened (admitted under `server.max_connections`).
    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    /// Counts an EMQX-facing connection closed.
    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    /// Creates the reload series at 0 (both results), so a first failure is an increase.
    fn declare_reloads(&self) {
        for result in ["success", "failure"] {
            self.reloads.with_label_values(&[result]);
        }
    }

    /// Counts a configuration reload.
    pub fn reload(&self, success: bool) {
        self.reloads.with_label_values(&[if success { "success" } else { "failure" }]).inc();
    }

    /// The Prometheus text exposition of everything.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Every provider's latency buckets over its hooks: `(upper bound in seconds, cumulative
    /// count)`, the last bound infinite. One pass over the family for all providers: the admin
    /// plane samples them every few seconds, and a pass per provider cost O(providers ×
    /// series) (measured: 91 % of an idle 100-provider gateway's CPU).
    pub fn provider_latencies(&self) -> HashMap<String, Vec<(f64, u64)>> {
        let empty = || {
            let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS.iter().map(|b| (*b, 0)).collect();
            buckets.push((f64::INFINITY, 0));
            buckets
        };
        let mut out: HashMap<String, Vec<(f64, u64)>> = HashMap::new();
        for family in prometheus::core::Collector::collect(&self.provider_call_duration) {
            for m in family.get_metric() {
                let Some(provider) = m.get_label().iter().find(|l| l.name() == "provider") else { continue };
                let buckets = out.entry(provider.value().to_owned()).or_insert_with(empty);
                let h = m.get_histogram();
                for (slot, b) in buckets.iter_mut().zip(h.get_bucket()) {
                    slot.1 += b.cumulative_count();
                }
                if let Some(last) = buckets.last_mut() {
                    last.1 += h.get_sample_count();
                }
            }
        }
        out
    }

    /// One provider's latency buckets (see [`Metrics::provider_latencies`]).
    pub fn provider_latency(&self, provider: &str) -> Vec<(f64, u64)> {
        let mut all = self.provider_latencies();
        all.remove(provider).unwrap_or_else(|| {
            let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS.iter().map(|b| (*b, 0)).collect();
            buckets.push((f64::INFINITY, 0));
            buckets
        })
    }

    /// Every provider's totals as `/metrics` exports them (the status API reads these, so the
    /// two never disagree), in one pass over the families. Computed at request time, not on
    /// the hot path.
    pub fn provider_summaries(&self) -> HashMap<String, ProviderSummary> {
        let mut out: HashMap<String, ProviderSummary> = HashMap::new();
        let provider_of = |m: &prometheus::proto::Metric| {
            m.get_label().iter().find(|l| l.name() == "provider").map(|l| l.value().to_owned())
        };
        for family in prometheus::core::Collector::collect(&self.provider_calls) {
            for m in family.get_metric() {
                let Some(provider) = provider_of(m) else { continue };
                let summary = out.entry(provider).or_default();
                let result = m.get_label().iter().find(|l| l.name() == "result").map(|l| l.value());
                let n = m.get_counter().get_value() as u64;
                match result {
                    Some("continue" | "stop" | "ignore" | "ok") => summary.answered += n,
                    Some("filtered") | None => {}
                    Some(_) => summary.failed += n,
                }
            }
        }
        for family in prometheus::core::Collector::collect(&self.dropped) {
            for m in family.get_metric() {
                let Some(provider) = provider_of(m) else { continue };
                out.entry(provider).or_default().dropped += m.get_counter().get_value() as u64;
            }
        }
        out
    }

    /// One provider's totals (see [`Metrics::provider_summaries`]).
    pub fn provider_summary(&self, provider: &str) -> ProviderSummary {
        self.provider_summaries().remove(provider).unwrap_or_default()
    }

    /// Live trace events dropped for a slow viewer (`exhook_gateway_trace_dropped_total`).
    pub fn trace_dropped(&self, n: u64) {
        self.trace_dropped.inc_by(n);
    }

    /// Every series of the counter family `name` as `(labels, value)`, for the status page's
    /// chain diagrams. Reads the registry: admin plane only, never on the call path.
    pub fn counter_series(&self, name: &str) -> Vec<(Vec<(String, String)>, u64)> {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().iter())
            .map(|m| {
                let labels = m.get_label().iter().map(|l| (l.name().to_owned(), l.value().to_owned())).collect();
                (labels, m.get_counter().get_value() as u64)
            })
            .collect()
    }

    /// The registry (for tests and embedding).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The disagreements kept, newest first.
    pub fn disagreements(&self) -> Vec<Disagreement> {
        let log = self.disagreements.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        log.iter().rev().cloned().collect()
    }

    fn keep_disagreement(&self, d: Disagreement) {
        let mut log = self.disagreements.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.len() >= DISAGREEMENTS_KEPT {
            log.pop_front();
        }
        log.push_back(d);
    }
}

/// A provider's counters summed over hooks (see [`Metrics::provider_summary`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderSummary {
    /// Calls answered: `continue`, `stop`, `ignore` (valued), `ok` (notifications).
    pub answered: u64,
    /// Calls failed or refused: `timeout`, `unavailable`, `error`, `breaker_open`, `shed`.
    pub failed: u64,
    /// Notifications dropped, every reason.
    pub dropped: u64,
}

/// Gauge values of one provider, read from its state at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderGauges {
    /// Loaded and reachable.
    pub up: bool,
    /// Calls in flight.
    pub inflight: i64,
    /// Notifications waiting.
    pub queued: i64,
    /// 0 closed, 1 half-open, 2 open.
    pub breaker_state: i64,
}

/// Label handles for one configuration. Cheap to use from any task.
#[derive(Debug)]
pub struct Handles {
    metrics: Arc<Metrics>,
    tenants: Vec<String>,
    providers: Vec<String>,
    requests: Vec<OnceLock<IntCounter>>,
    request_duration: Vec<OnceLock<Histogram>>,
    calls: Vec<OnceLock<IntCounter>>,
    call_duration: Vec<OnceLock<Histogram>>,
    decisions: Vec<OnceLock<IntCounter>>,
    dropped: Vec<OnceLock<IntCounter>>,
    shadow: Vec<OnceLock<IntCounter>>,
    shadow_dropped: Vec<OnceLock<IntCounter>>,
    cache_lookups: Vec<OnceLock<IntCounter>>,
    cache_evictions: Vec<OnceLock<IntCounter>>,
}

const HOOKS: usize = Hook::ALL.len();

impl Handles {
    fn request_slot(&self, tenant: usize, hook: Hook, outcome: Outcome) -> Option<&IntCounter> {
        let i = (tenant * HOOKS + hook.index()) * Outcome::ALL.len() + outcome as usize;
        Some(self.requests.get(i)?.get_or_init(|| {
            self.metrics.requests.with_label_values(&[&self.tenants[tenant], hook.name(), outcome.as_str()])
        }))
    }

    fn request_duration_slot(&self, tenant: usize, hook: Hook) -> Option<&Histogram> {
        Some(
            self.request_duration
                .get(tenant * HOOKS + hook.index())?
                .get_or_init(|| self.metrics.request_duration.with_label_values(&[&self.tenants[tenant], hook.name()])),
        )
    }

    fn call_slot(&self, provider: usize, hook: Hook, result: CallResult) -> Option<&IntCounter> {
        let i = (provider * HOOKS + hook.index()) * CallResult::ALL.len() + result as usize;
        Some(self.calls.get(i)?.get_or_init(|| {
            self.metrics.provider_calls.with_label_values(&[&self.providers[provider], hook.name(), result.as_str()])
        }))
    }

    fn call_duration_slot(&self, provider: usize, hook: Hook) -> Option<&Histogram> {
        Some(self.call_duration.get(provider * HOOKS + hook.index())?.get_or_init(|| {
            self.metrics.provider_call_duration.with_label_values(&[&self.providers[provider], hook.name()])
        }))
    }

    fn decision_slot(&self, tenant: usize, hook: Hook, decided_by: Option<usize>) -> Option<&IntCounter> {
        let column = decided_by.map_or(0, |p| p + 1);
        if column > self.providers.len() {
            return None;
        }
        let i = (tenant * HOOKS + hook.index()) * (self.providers.len() + 1) + column;
        Some(self.decisions.get(i)?.get_or_init(|| {
            let by = decided_by.map_or("none", |p| self.providers[p].as_str());
            self.metrics.decisions.with_label_values(&[&self.tenants[tenant], hook.name(), by])
        }))
    }

    fn dropped_slot(&self, provider: usize, reason: DropReason) -> Option<&IntCounter> {
        Some(
            self.dropped
                .get(provider * DropReason::ALL.len() + reason as usize)?
                .get_or_init(|| self.metrics.dropped.with_label_values(&[&self.providers[provider], reason.as_str()])),
        )
    }

    fn shadow_slot(&self, tenant: usize, hook: Hook, provider: usize, verdict: ShadowVerdict) -> Option<&IntCounter> {
        if tenant >= self.tenants.len() || provider >= self.providers.len() {
            return None;
        }
        let i = ((tenant * HOOKS + hook.index()) * self.providers.len() + provider) * ShadowVerdict::ALL.len()
            + verdict as usize;
        Some(self.shadow.get(i)?.get_or_init(|| {
            self.metrics.shadow_comparisons.with_label_values(&[
                &self.tenants[tenant],
                hook.name(),
                &self.providers[provider],
                verdict.as_str(),
            ])
        }))
    }

    fn shadow_dropped_slot(&self, tenant: usize, hook: Hook, provider: usize) -> Option<&IntCounter> {
        if tenant >= self.tenants.len() || provider >= self.providers.len() {
            return None;
        }
        let i = (tenant * HOOKS + hook.index()) * self.providers.len() + provider;
        Some(self.shadow_dropped.get(i)?.get_or_init(|| {
            self.metrics.shadow_dropped.with_label_values(&[
                &self.tenants[tenant],
                hook.name(),
                &self.providers[provider],
            ])
        }))
    }

    fn cache_lookup_slot(&self, provider: usize, hook: Hook, result: CacheLookup) -> Option<&IntCounter> {
        let i = (provider * HOOKS + hook.index()) * CacheLookup::ALL.len() + result as usize;
        Some(self.cache_lookups.get(i)?.get_or_init(|| {
            self.metrics.cache_lookups.with_label_values(&[&self.providers[provider], hook.name(), result.as_str()])
        }))
    }

    fn cache_eviction_slot(&self, provider: usize, reason: CacheEviction) -> Option<&IntCounter> {
        Some(self.cache_evictions.get(provider * CacheEviction::ALL.len() + reason as usize)?.get_or_init(|| {
            self.metrics.cache_evictions.with_label_values(&[&self.providers[provider], reason.as_str()])
        }))
    }

    /// Creates at 0 the series of an observe member: its deliveries of `hook`
    /// (`provider_calls_total{result="ok"}`, which a valued hook has nowhere else).
    pub fn declare_observer(&self, provider: usize, hook: Hook) {
        self.call_slot(provider, hook, CallResult::Ok);
    }

    /// Creates at 0 the series of a shadow member: its comparisons by every verdict and its
    /// dropped calls, for `tenant`'s chain of `hook`.
    pub fn declare_shadow(&self, tenant: usize, hook: Hook, provider: usize) {
        for &v in ShadowVerdict::ALL {
            self.shadow_slot(tenant, hook, provider, v);
        }
        self.shadow_dropped_slot(tenant, hook, provider);
    }

    /// Counts a shadow comparison.
    pub fn shadow(&self, tenant: usize, hook: Hook, provider: usize, verdict: ShadowVerdict) {
        if let Some(c) = self.shadow_slot(tenant, hook, provider, verdict) {
            c.inc();
        }
    }

    /// Counts a disagreement and keeps it in the log (the newest [`DISAGREEMENTS_KEPT`]).
    /// `chain` and `shadow` are descriptions of the two answers, never request contents.
    pub fn disagreement(
        &self,
        tenant: usize,
        hook: Hook,
        provider: usize,
        clientid: &str,
        chain: String,
        shadow: String,
    ) {
        self.shadow(tenant, hook, provider, ShadowVerdict::Disagree);
        let (Some(t), Some(p)) = (self.tenants.get(tenant), self.providers.get(provider)) else { return };
        self.metrics.keep_disagreement(Disagreement {
            at: std::time::SystemTime::now(),
            tenant: t.clone(),
            hook: hook.name(),
            provider: p.clone(),
            // Bounded: a clientid is at most 65535 bytes in MQTT; the log keeps 256 chars.
            clientid: clientid.chars().take(256).collect(),
            chain,
            shadow,
        });
    }

    /// Counts a shadow call not made (too many in flight).
    pub fn shadow_dropped(&self, tenant: usize, hook: Hook, provider: usize) {
        if let Some(c) = self.shadow_dropped_slot(tenant, hook, provider) {
            c.inc();
        }
    }

    /// Creates at 0 the series of a provider's decision cache: lookups of `hooks` by result,
    /// evictions by reason, and the entries gauge.
    pub fn declare_cache(&self, provider: usize, hooks: &[Hook]) {
        for &hook in hooks {
            for &r in CacheLookup::ALL {
                self.cache_lookup_slot(provider, hook, r);
            }
        }
        for &r in CacheEviction::ALL {
            self.cache_eviction_slot(provider, r);
        }
        self.cache_entries(provider, 0);
    }

    /// Counts a decision cache lookup.
    pub fn cache_lookup(&self, provider: usize, hook: Hook, result: CacheLookup) {
        if let Some(c) = self.cache_lookup_slot(provider, hook, result) {
            c.inc();
        }
    }

    /// Counts `n` cached decisions removed for `reason`.
    pub fn cache_evicted(&self, provider: usize, reason: CacheEviction, n: usize) {
        if let (Some(c), true) = (self.cache_eviction_slot(provider, reason), n > 0) {
            c.inc_by(n as u64);
        }
    }

    /// Removes the entries gauge of a provider that has no cache (any more): a reload that
    /// drops `[providers.cache]` must not leave its last count behind.
    pub fn forget_cache(&self, provider: usize) {
        if let Some(name) = self.providers.get(provider) {
            let _ = self.metrics.cache_entries.remove_label_values(&[name]);
        }
    }

    /// Sets the number of decisions a provider's cache holds.
    pub fn cache_entries(&self, provider: usize, n: usize) {
        if let Some(name) = self.providers.get(provider) {
            self.metrics.cache_entries.with_label_values(&[name]).set(n as i64);
        }
    }

    /// Creates at 0 the series of one tenant's explicit chain for `hook`: the tenant's
    /// requests by every outcome the hook can have, its latency, the decisions (valued hooks:
    /// "none" and each member), and each member's calls by every result and latency.
    pub fn declare_chain(&self, tenant: usize, hook: Hook, chain: &[usize], valued: bool) {
        let outcomes: &[Outcome] = if valued {
            &[Outcome::Continue, Outcome::Stop, Outcome::Ignore, Outcome::DeniedByFailure]
        } else {
            &[Outcome::Ack]
        };
        for &o in outcomes {
            self.request_slot(tenant, hook, o);
        }
        self.request_duration_slot(tenant, hook);
        if valued {
            self.decision_slot(tenant, hook, None);
        }
        for &p in chain {
            if valued {
                self.decision_slot(tenant, hook, Some(p));
            }
            for &r in CallResult::ALL {
                let fits = match r {
                    CallResult::Continue | CallResult::Stop | CallResult::Ignore => valued,
                    CallResult::Ok => !valued,
                    _ => true,
                };
                if fits {
                    self.call_slot(p, hook, r);
                }
            }
            self.call_duration_slot(p, hook);
        }
    }

    /// Records an EMQX call answered.
    pub fn request(&self, tenant: usize, hook: Hook, outcome: Outcome, elapsed: Duration) {
        if let Some(c) = self.request_slot(tenant, hook, outcome) {
            c.inc();
        }
        if let Some(h) = self.request_duration_slot(tenant, hook) {
            h.observe(elapsed.as_secs_f64());
        }
    }

    /// Records one provider call (or skip); `elapsed` only for calls that were made.
    pub fn provider_call(&self, provider: usize, hook: Hook, result: CallResult, elapsed: Option<Duration>) {
        if let Some(c) = self.call_slot(provider, hook, result) {
            c.inc();
        }
        if let (Some(elapsed), Some(h)) = (elapsed, self.call_duration_slot(provider, hook)) {
            h.observe(elapsed.as_secs_f64());
        }
    }

    /// Records the latency of a provider call that got an answer (its result is recorded by
    /// whoever interprets it: the chain for valued answers).
    pub fn provider_latency(&self, provider: usize, hook: Hook, elapsed: Duration) {
        if let Some(h) = self.call_duration_slot(provider, hook) {
            h.observe(elapsed.as_secs_f64());
        }
    }

    /// Records which provider ended a valued chain (`None`: it ran to the end).
    pub fn decision(&self, tenant: usize, hook: Hook, decided_by: Option<usize>) {
        if let Some(c) = self.decision_slot(tenant, hook, decided_by) {
            c.inc();
        }
    }

    /// Records a dropped notification.
    pub fn dropped(&self, provider: usize, reason: DropReason) {
        if let Some(c) = self.dropped_slot(provider, reason) {
            c.inc();
        }
    }

    /// Sets a provider's gauges (called at scrape time).
    pub fn set_gauges(&self, provider: usize, g: ProviderGauges) {
        let Some(name) = self.providers.get(provider) else { return };
        let m = &self.metrics;
        m.up.with_label_values(&[name]).set(i64::from(g.up));
        m.inflight.with_label_values(&[name]).set(g.inflight);
        m.queued.with_label_values(&[name]).set(g.queued);
        m.breaker_state.with_label_values(&[name]).set(g.breaker_state);
    }

    /// Removes the gauges of providers that are no longer configured (after a reload).
    pub fn forget_provider(&self, name: &str) {
        let m = &self.metrics;
        for g in [&m.up, &m.inflight, &m.queued, &m.breaker_state, &m.cache_entries] {
            let _ = g.remove_label_values(&[name]);
        }
    }

    /// The shared families.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }

    #[test]
    fn records_with_the_right_labels() {
        let m = Metrics::new();
        let h = m.handles(&["default", "factory-a"], &["auth", "audit"]);
        h.request(1, Hook::ClientAuthenticate, Outcome::Stop, Duration::from_millis(2));
        h.request(1, Hook::ClientAuthenticate, Outcome::Stop, Duration::from_millis(3));
        h.provider_call(0, Hook::MessagePublish, CallResult::Filtered, None);
        h.provider_call(1, Hook::ClientAuthenticate, CallResult::Timeout, Some(Duration::from_millis(300)));
        h.decision(0, Hook::ClientAuthenticate, Some(1));
        h.decision(0, Hook::ClientAuthenticate, None);
        h.dropped(1, DropReason::QueueFull);
        h.set_gauges(0, ProviderGauges { up: true, inflight: 3, queued: 7, breaker_state: 2 });
        h.declare_shadow(0, Hook::ClientAuthenticate, 1);
        h.declare_cache(0, &[Hook::ClientAuthenticate, Hook::ClientAuthorize]);
        m.reload(true);
        let text = m.encode();
        assert_eq!(
            value(
                &text,
                "exhook_gateway_requests_total{hook=\"client.authenticate\",outcome=\"stop\",tenant=\"factory-a\"}"
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                "exhook_gateway_request_duration_seconds_count{hook=\"client.authenticate\",tenant=\"factory-a\"}"
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &text,
                "exhook_gateway_provider_calls_total{hook=\"message.publish\",provider=\"auth\",result=\"filtered\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "exhook_gateway_provider_call_duration_seconds_bucket{hook=\"client.authenticate\",provider=\"audit\",le=\"0.5\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "exhook_gateway_chain_decisions_total{decided_by=\"audit\",hook=\"client.authenticate\",tenant=\"default\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                "exhook_gateway_chain_decisions_total{decided_by=\"none\",hook=\"client.authenticate\",tenant=\"default\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, "exhook_gateway_notifications_dropped_total{provider=\"audit\",reason=\"queue_full\"}"),
            Some(1.0)
        );
        assert_eq!(value(&text, "exhook_gateway_provider_breaker_state{provider=\"auth\"}"), Some(2.0));
        assert_eq!(value(&text, "exhook_gateway_notifications_queued{provider=\"auth\"}"), Some(7.0));
        assert_eq!(value(&text, "exhook_gateway_config_reloads_total{result=\"success\"}"), Some(1.0));
        assert!(text.contains("exhook_gateway_build_info{version=\""));
        // Every limit exists from the first scrape; the gauge too.
        for l in Limit::ALL {
            let series = format!("exhook_gateway_limit_exceeded_total{{limit=\"{}\"}}", l.as_str());
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        assert_eq!(value(&text, "exhook_gateway_connections"), Some(0.0));
        m.limit_exceeded(Limit::ReplyBytes);
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        let after = m.encode();
        assert_eq!(value(&after, "exhook_gateway_limit_exceeded_total{limit=\"reply_bytes\"}"), Some(1.0));
        assert_eq!(value(&after, "exhook_gateway_connections"), Some(1.0));
        // Every exported family is in METRIC_NAMES and the other way round.
        let mut exported: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        exported.sort();
        let mut names = METRIC_NAMES.iter().chain(OPTIONAL_METRIC_NAMES).copied().collect::<Vec<_>>();
        names.sort();
        assert_eq!(exported, names);
        h.forget_provider("auth");
        assert!(!m.encode().contains("exhook_gateway_provider_up{provider=\"auth\"}"));
    }

    #[test]
    fn optional_families_appear_only_when_configured() {
        let m = Metrics::new();
        let _h = m.handles(&["default"], &["auth"]);
        let text = m.encode();
        for name in OPTIONAL_METRIC_NAMES {
            assert!(!text.contains(name), "{name} without a shadow or cache");
        }
    }

    #[test]
    fn shadow_and_cache_series_exist_from_the_start() {
        let m = Metrics::new();
        let h = m.handles(&["default"], &["auth", "auth-v2"]);
        h.declare_shadow(0, Hook::ClientAuthenticate, 1);
        h.declare_cache(0, &[Hook::ClientAuthenticate]);
        let text = m.encode();
        for v in ShadowVerdict::ALL {
            let series = format!(
                "exhook_gateway_shadow_comparisons_total{{hook=\"client.authenticate\",provider=\"auth-v2\",tenant=\"default\",verdict=\"{}\"}}",
                v.as_str()
            );
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        for r in CacheEviction::ALL {
            let series = format!("exhook_gateway_cache_evictions_total{{provider=\"auth\",reason=\"{}\"}}", r.as_str());
            assert_eq!(value(&text, &series), Some(0.0), "{series}");
        }
        assert_eq!(value(&text, "exhook_gateway_cache_entries{provider=\"auth\"}"), Some(0.0));
        assert_eq!(
            value(
                &text,
                "exhook_gateway_shadow_dropped_total{hook=\"client.authenticate\",provider=\"auth-v2\",tenant=\"default\"}"
            ),
            Some(0.0)
        );
        h.cache_lookup(0, Hook::ClientAuthenticate, CacheLookup::Hit);
        h.cache_evicted(0, CacheEviction::Api, 3);
        h.shadow(0, Hook::ClientAuthenticate, 1, ShadowVerdict::Agree);
        // The log keeps the newest DISAGREEMENTS_KEPT, newest first.
        for i in 0..DISAGREEMENTS_KEPT + 5 {
            h.disagreement(0, Hook::ClientAuthenticate, 1, &format!("c{i}"), "allow".into(), "deny".into());
        }
        let log = m.disagreements();
        assert_eq!(log.len(), DISAGREEMENTS_KEPT);
        assert_eq!(log[0].clientid, format!("c{}", DISAGREEMENTS_KEPT + 4));
        assert_eq!(
            (log[0].hook, log[0].provider.as_str(), log[0].chain.as_str()),
            ("client.authenticate", "auth-v2", "allow")
        );
        let text = m.encode();
        assert_eq!(
            value(
                &text,
                "exhook_gateway_cache_lookups_total{hook=\"client.authenticate\",provider=\"auth\",result=\"hit\"}"
            ),
            Some(1.0)
        );
        assert_eq!(value(&text, "exhook_gateway_cache_evictions_total{provider=\"auth\",reason=\"api\"}"), Some(3.0));
        assert_eq!(
            value(
                &text,
                "exhook_gateway_shadow_comparisons_total{hook=\"client.authenticate\",provider=\"auth-v2\",tenant=\"default\",verdict=\"disagree\"}"
            ),
            Some((DISAGREEMENTS_KEPT + 5) as f64)
        );
        // Clientids are in the log only, never in a label.
        assert!(!text.contains("c104"));
    }

    #[test]
    fn handles_survive_a_new_configuration() {
        let m = Metrics::new();
        m.handles(&["default"], &["a"]).request(0, Hook::SessionCreated, Outcome::Ack, Duration::ZERO);
        m.handles(&["default"], &["b", "a"]).request(0, Hook::SessionCreated, Outcome::Ack, Duration::ZERO);
        assert_eq!(
            value(
                &m.encode(),
                "exhook_gateway_requests_total{hook=\"session.created\",outcome=\"ack\",tenant=\"default\"}"
            ),
            Some(2.0)
        );
    }

    #[test]
    fn out_of_range_indices_are_ignored() {
        let m = Metrics::new();
        let h = m.handles(&["default"], &["a"]);
        h.provider_call(5, Hook::SessionCreated, CallResult::Ok, None);
        h.request(3, Hook::SessionCreated, Outcome::Ack, Duration::ZERO);
        h.set_gauges(9, ProviderGauges::default());
        assert!(!m.encode().contains("session.created"));
    }
}
