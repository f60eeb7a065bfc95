//! exhook-gateway's configuration: one TOML file (see `config/gateway.toml`), parsed strictly
//! (unknown keys are errors), validated with every error naming its key and reason, and
//! resolved into per-tenant chains. `include = ["teams.d/*.toml"]` adds one file per team
//! (rules in [`include`]'s module doc). Pure: no I/O beyond [`Sources::read`] (and
//! [`Config::load`]) reading the files.
#![warn(missing_docs)]

pub mod include;
mod raw;
mod resolve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exhook_hooks::{Hook, HookSet, Version};

pub use include::{Source, Sources};
pub use resolve::render_chains;

/// A problem with the configuration. Every variant says where and what.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file (or `<inline>`).
        path: PathBuf,
        /// toml's message, with line, column and key.
        message: String,
    },
    /// One or more values are invalid; each entry is `key: reason`.
    #[error("{path}: invalid configuration:\n  - {}", .problems.join("\n  - "))]
    Invalid {
        /// The file (or `<inline>`).
        path: PathBuf,
        /// Every problem found, as `key: reason`.
        problems: Vec<String>,
    },
    /// An included file breaks the include rules or is not valid TOML.
    #[error("{path} (included by {main}): {message}")]
    Included {
        /// The included file.
        path: PathBuf,
        /// The main file that includes it.
        main: PathBuf,
        /// What is wrong, with line, column and key when toml gives them.
        message: String,
    },
}

/// Which file defined each provider and tenant (`check` prints it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origins {
    /// Per [`Config::providers`] entry: its file.
    pub providers: Vec<PathBuf>,
    /// Per [`Config::tenants`] entry (the default tenant: the main file): its file.
    pub tenants: Vec<PathBuf>,
}

pub use exhook_chain::FailedAction;

/// How notification hooks reach a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NotifyMode {
    /// Answer EMQX at once; deliver through the provider's bounded queue (default).
    #[default]
    Queue,
    /// Wait for this provider (bounded by its timeout) before answering EMQX.
    AfterDelivery,
}

pub use exhook_tls::{ClientFiles, ServerFiles};

/// How a member of a valued chain takes part (`{ name = "...", mode = "..." }` in a chain;
/// a plain name is [`MemberMode::Decisive`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MemberMode {
    /// Called in turn; its answer is folded (the default).
    #[default]
    Decisive,
    /// Called in parallel, off the answer's path, with the request the chain gives it at its
    /// position; its answer is only compared with the chain's and counted.
    Shadow,
    /// Sent the request at its position through its notification queue (acknowledged at
    /// once); its answer is neither folded nor compared.
    Observe,
}

impl MemberMode {
    /// Every mode, as written in the file.
    pub const ALL: [MemberMode; 3] = [MemberMode::Decisive, MemberMode::Shadow, MemberMode::Observe];

    /// `decisive`, `shadow` or `observe`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberMode::Decisive => "decisive",
            MemberMode::Shadow => "shadow",
            MemberMode::Observe => "observe",
        }
    }
}

/// `[providers.cache]`: reuse the provider's `client.authenticate` and `client.authorize`
/// answers for a while instead of calling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long an answer is reused.
    pub ttl: Duration,
    /// How long a negative answer (`false`: not authenticated, deny) is reused.
    pub negative_ttl: Duration,
    /// Answers kept at most (older ones are evicted first).
    pub max_entries: usize,
}

/// What happens to a caller whose verified client certificate names no tenant
/// (`[server.tls] unknown_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownClient {
    /// Its calls are answered `PERMISSION_DENIED` (default).
    #[default]
    Reject,
    /// It is the default tenant.
    Default,
}

/// What happens to a call whose `RequestMeta.cluster_name` no tenant claims, when tenants
/// are configured (`[server] unknown_cluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownCluster {
    /// `OnProviderLoaded` fails (EMQX logs it), every other call is `PERMISSION_DENIED` (default).
    #[default]
    Reject,
    /// It is the default tenant.
    Default,
}

/// `[server.tls]`: the TLS (or mTLS) listener for EMQX.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTls {
    /// Its address.
    pub listen: SocketAddr,
    /// Certificate, key and (for mTLS) the client CA.
    pub files: ServerFiles,
    /// Who a verified caller whose certificate names no tenant is.
    pub unknown_client: UnknownClient,
}

/// `[[tenants]] listen` (with optional `[tenants.tls]`): a listener whose every call belongs
/// to the tenant, whatever its `cluster_name`.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantListener {
    /// Its address.
    pub listen: SocketAddr,
    /// TLS (or mTLS) on it; `None`: plaintext h2c.
    pub tls: Option<ServerFiles>,
}

/// `[providers.tls]`: how the gateway verifies (and authenticates to) an `https` provider.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProviderTls {
    /// CA, client certificate and key files.
    pub files: ClientFiles,
    /// The name to verify and send as SNI (default: each URL's host).
    pub server_name: Option<String>,
}

/// The `[server]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Where EMQX's exhook URL points (plaintext h2c); `None` when only `[server.tls]` serves.
    pub listen: Option<SocketAddr>,
    /// `[server.tls]`.
    pub tls: Option<ServerTls>,
    /// The chain deadline when EMQX sends no `grpc-timeout`.
    pub default_deadline: Duration,
    /// On SIGTERM: how long in-flight calls and queued notifications may take to finish.
    pub drain_timeout: Duration,
    /// Async runtime worker threads (`None`: one per CPU core).
    pub worker_threads: Option<usize>,
    /// A `cluster_name` no tenant claims (only when `[[tenants]]` exist).
    pub unknown_cluster: UnknownCluster,
    /// EMQX-facing connections open at most, over every listener; beyond it new connections
    /// wait in the kernel's accept backlog.
    pub max_connections: usize,
    /// HTTP/2 streams (calls) in flight per EMQX connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// The largest request message EMQX may send, in bytes (larger: `RESOURCE_EXHAUSTED`).
    pub max_request_bytes: usize,
}

/// The `[admin]` table: metrics, health, status API and page.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Whether the admin listener runs.
    pub enabled: bool,
    /// Its address (loopback by default).
    pub listen: SocketAddr,
    /// A file holding a bearer token required by every endpoint but `/healthz`.
    pub token_file: Option<PathBuf>,
    /// `[admin.tls]`: HTTPS (optionally with client certificates) for every endpoint.
    pub tls: Option<ServerFiles>,
}

/// `[providers.breaker]`: when a provider's circuit opens and how it recovers (the breaker's
/// own configuration type, validated here key by key).
pub use exhook_breaker::BreakerConfig as BreakerSettings;

/// One `[[providers]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// Unique name, used in chains, logs and metrics.
    pub name: String,
    /// `http://host:port` (h2c) of each of the provider's replicas (`url` or `urls`).
    pub urls: Vec<String>,
    /// The package it speaks; `None` for `auto` (probed newest first).
    pub protocol: Option<Version>,
    /// Per-call timeout (further bounded by the caller's deadline).
    pub timeout: Duration,
    /// What a failure does to a valued chain.
    pub failed_action: FailedAction,
    /// How notifications are delivered.
    pub notify: NotifyMode,
    /// Capacity of each notification queue shard.
    pub queue_size: usize,
    /// Bytes of encoded notifications queued at most (over every shard and tenant); beyond it
    /// notifications are dropped (reason `queue_bytes`).
    pub queue_bytes: usize,
    /// The largest reply message accepted from the provider, in bytes (larger: the call fails).
    pub max_reply_bytes: usize,
    /// Number of notification queue shards (one delivery task each; a clientid always maps
    /// to the same shard, so its events stay in order).
    pub queue_shards: usize,
    /// Connect timeout for the provider's HTTP/2 connections.
    pub connect_timeout: Duration,
    /// HTTP/2 connections per replica; one clientid's calls always use the same one.
    pub connections: usize,
    /// Calls in flight at most; beyond it calls fail fast (`shed`) with `failed_action`.
    pub max_inflight: usize,
    /// How often each replica is probed (gRPC health check).
    pub health_interval: Duration,
    /// A replica failing this many calls in a row is ejected (not chosen) for `eject_for`.
    pub eject_after: u32,
    /// How long an ejected replica sits out.
    pub eject_for: Duration,
    /// The circuit breaker.
    pub breaker: BreakerSettings,
    /// `[providers.tls]`, for `https://` URLs (`None`: the system's roots, the URL's host).
    pub tls: Option<ProviderTls>,
    /// `[providers.cache]`: its decision cache (`None`: every call goes to the provider).
    pub cache: Option<CacheSettings>,
}

/// A tenant: which EMQX clusters it serves and its routing table.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantConfig {
    /// Unique name; the first tenant is always `default`.
    pub name: String,
    /// `RequestMeta.cluster_name` values that select this tenant.
    pub cluster_names: Vec<String>,
    /// Names (DNS SAN, else CN) of verified client certificates that ARE this tenant.
    pub client_cert_names: Vec<String>,
    /// The tenant's own listener.
    pub listener: Option<TenantListener>,
    /// The tenant's providers (indices into [`Config::providers`], in `[[providers]]` order):
    /// hooks without an explicit chain go to those of them that registered the hook.
    pub providers: Vec<usize>,
    /// Every provider the tenant can reach: `providers` and every member of its explicit
    /// chains, in `[[providers]]` order. Its OnProviderLoaded/Unloaded go to these; no
    /// other provider ever sees one of its calls.
    pub reachable: Vec<usize>,
    /// Hooks with an explicit chain.
    pub explicit: HookSet,
    /// EMQX calls of this tenant in flight at most (`None`: unlimited); beyond it every
    /// provider of the chain counts as shed (its `failed_action` applies).
    pub max_inflight: Option<usize>,
    /// The resolved chain per hook (indexed by [`Hook::index`]): the explicit chain, or
    /// the tenant's providers (lifecycle hooks: every reachable provider). Shadow and observe
    /// members are in it at their written positions (they register the hook with EMQX like
    /// any member); [`TenantConfig::modes`] says how each takes part.
    pub chains: Vec<Vec<usize>>,
    /// Per hook, the mode of each member of [`TenantConfig::chains`] (same positions). Only
    /// valued hooks' explicit chains have other modes than [`MemberMode::Decisive`].
    pub modes: Vec<Vec<MemberMode>>,
}

impl TenantConfig {
    /// The chain for `hook`: provider indices in call order.
    pub fn chain(&self, hook: Hook) -> &[usize] {
        &self.chains[hook.index()]
    }

    /// The chain for `hook` with each member's mode, in call order.
    pub fn members(&self, hook: Hook) -> impl Iterator<Item = (usize, MemberMode)> + '_ {
        let modes = &self.modes[hook.index()];
        self.chains[hook.index()].iter().enumerate().map(move |(i, &p)| (p, modes.get(i).copied().unwrap_or_default()))
    }

    /// True when `hook`'s chain has a shadow or observe member.
    pub fn has_side_members(&self, hook: Hook) -> bool {
        self.modes[hook.index()].iter().any(|m| *m != MemberMode::Decisive)
    }
}

/// The validated, resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[[providers]]`, in file order.
    pub providers: Vec<ProviderConfig>,
    /// The default tenant (index 0, from `[chains]`) followed by `[[tenants]]`.
    pub tenants: Vec<TenantConfig>,
    /// `[admin]`.
    pub admin: AdminConfig,
}

impl Config {
    /// Reads and validates a file and the files its `include` names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::read(path)?).map(|(c, _)| c)
    }

    /// Parses and validates TOML text; `origin` names it in errors. An `include` in it is an
    /// error: included files are read by [`Config::load`] / [`Sources::read`].
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::inline(text, origin)).map(|(c, _)| c)
    }

    /// Validates every file of a configuration together (pure): the configuration and where
    /// each provider and tenant was defined.
    pub fn from_sources(sources: &Sources) -> Result<(Config, Origins), ConfigError> {
        let origin = &sources.main.path;
        let raw: raw::RawConfig = toml::from_str(&sources.main.text)
            .map_err(|e| ConfigError::Parse { path: origin.to_owned(), message: e.to_string() })?;
        let merged = include::merge(sources, raw)?;
        let file = |f: usize| sources.files().nth(f).map(|s| s.path.clone()).unwrap_or_default();
        let origins = Origins {
            providers: merged.providers.iter().map(|(f, _)| file(*f)).collect(),
            tenants: std::iter::once(origin.clone()).chain(merged.tenants.iter().map(|(f, _)| file(*f))).collect(),
        };
        let include::Merged { raw, providers, tenants } = merged;
        resolve::resolve(raw).map(|c| (c, origins)).map_err(|problems| ConfigError::Invalid {
            path: origin.to_owned(),
            problems: problems.into_iter().map(|p| include::attribute(p, sources, &providers, &tenants)).collect(),
        })
    }
}

#[cfg(test)]
mod tests;
