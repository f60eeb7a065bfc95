//! The file as written: strings where the validated config has types, so that validation can
//! name the key of every bad value.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// Included team files (expanded by `include.rs`).
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    #[serde(default)]
    pub chains: BTreeMap<String, Vec<RawMember>>,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    #[serde(default)]
    pub default_tenant: RawDefaultTenant,
    #[serde(default)]
    pub admin: RawAdmin,
}

/// `[default_tenant]`: the providers of the tenant `[chains]` configures.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDefaultTenant {
    pub providers: Option<Vec<String>>,
    pub max_inflight: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
    pub token_file: Option<String>,
    pub tls: Option<RawServerTls>,
}

/// `[server.tls]`, `[tenants.tls]`, `[admin.tls]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    pub listen: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_ca_file: Option<String>,
    pub unknown_client: Option<String>,
}

/// `[providers.tls]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientTls {
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub server_name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub default_deadline: Option<String>,
    pub drain_timeout: Option<String>,
    pub worker_threads: Option<i64>,
    pub tls: Option<RawServerTls>,
    pub unknown_cluster: Option<String>,
    pub max_connections: Option<i64>,
    pub max_concurrent_streams: Option<i64>,
    pub max_request_bytes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: String,
    pub url: Option<String>,
    pub urls: Option<Vec<String>>,
    pub protocol: Option<String>,
    pub timeout: Option<String>,
    pub failed_action: Option<String>,
    pub notify: Option<String>,
    pub queue_size: Option<i64>,
    pub queue_shards: Option<i64>,
    pub queue_bytes: Option<i64>,
    pub max_reply_bytes: Option<i64>,
    pub connect_timeout: Option<String>,
    pub connections: Option<i64>,
    pub max_inflight: Option<i64>,
    pub health_interval: Option<String>,
    pub eject_after: Option<i64>,
    pub eject_for: Option<String>,
    pub breaker: Option<RawBreaker>,
    pub tls: Option<RawClientTls>,
    pub cache: Option<RawCache>,
}

/// `[providers.cache]`: the decision cache of one provider.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCache {
    pub ttl: Option<String>,
    pub negative_ttl: Option<String>,
    pub max_entries: Option<i64>,
}

/// One member of a chain as written: a provider's name (decisive), or a table naming the
/// provider and its mode (`{ name = "auth-v2", mode = "shadow" }`). The table is kept as
/// written so that validation can name a missing, mistyped or unknown key.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a provider name or a table such as { name = \"auth-v2\", mode = \"shadow\" }")]
pub(crate) enum RawMember {
    Name(String),
    Entry(BTreeMap<String, toml::Value>),
}

impl RawMember {
    /// The provider it names, if it names one.
    pub fn name(&self) -> Option<&str> {
        match self {
            RawMember::Name(n) => Some(n),
            RawMember::Entry(t) => t.get("name").and_then(toml::Value::as_str),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub failure_rate: Option<f64>,
    pub minimum_calls: Option<i64>,
    pub window: Option<String>,
    pub consecutive_failures: Option<i64>,
    pub open_duration: Option<String>,
    pub half_open_probes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTenant {
    pub name: String,
    #[serde(default)]
    pub cluster_names: Vec<String>,
    pub providers: Option<Vec<String>>,
    pub max_inflight: Option<i64>,
    #[serde(default)]
    pub chains: BTreeMap<String, Vec<RawMember>>,
    #[serde(default)]
    pub client_cert_names: Vec<String>,
    pub listen: Option<String>,
    pub tls: Option<RawServerTls>,
}
