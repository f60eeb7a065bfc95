//! Validation and resolution: raw file → [`Config`], collecting every problem as `key: reason`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use exhook_hooks::{Hook, HookKind, HookSet, Version};

use std::path::PathBuf;

use crate::raw::{RawBreaker, RawCache, RawClientTls, RawConfig, RawMember, RawProvider, RawServerTls, RawTenant};
use crate::{
    AdminConfig, BreakerSettings, CacheSettings, ClientFiles, Config, FailedAction, MemberMode, NotifyMode,
    ProviderConfig, ProviderTls, ServerConfig, ServerFiles, ServerTls, TenantConfig, TenantListener, UnknownClient,
    UnknownCluster,
};

const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_QUEUE_SIZE: usize = 1024;
const DEFAULT_QUEUE_SHARDS: usize = 8;
const MAX_QUEUE_SIZE: i64 = 1 << 20;
const MAX_QUEUE_SHARDS: i64 = 256;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9100";
const DEFAULT_CONNECTIONS: usize = 2;
const MAX_CONNECTIONS: i64 = 64;
const DEFAULT_MAX_INFLIGHT: usize = 1024;
const MAX_INFLIGHT: i64 = 1 << 20;
const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_EJECT_AFTER: u32 = 5;
const DEFAULT_EJECT_FOR: Duration = Duration::from_secs(10);
const MIB: i64 = 1024 * 1024;
/// 4 MiB, tonic's own default message limit (EMQX's largest default MQTT packet is 1 MiB).
const DEFAULT_MESSAGE_BYTES: usize = exhook_proto::codec::DEFAULT_MAX_MESSAGE_BYTES;
const MAX_MESSAGE_BYTES: i64 = 256 * MIB;
/// 64 MiB of queued notifications per provider with the defaults (8 shards x 1024 entries
/// could otherwise hold 8192 x 4 MiB).
const DEFAULT_QUEUE_BYTES: usize = 64 << 20;
const MAX_QUEUE_BYTES: i64 = 16 * 1024 * MIB;
/// EMQX opens `pool_size` connections per node (default: its scheduler count); 1024 covers a
/// 32-node cluster of 32-core nodes.
const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Per EMQX connection; EMQX's hook calls on one connection are bounded by its client processes.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;
/// Decisions cached per provider by default: at ~100 bytes an entry (hashed keys, no
/// strings), about 10 MiB.
const DEFAULT_CACHE_ENTRIES: usize = 100_000;
const MAX_CACHE_ENTRIES: i64 = 10_000_000;

struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: impl std::fmt::Display, reason: impl std::fmt::Display) {
        self.0.push(format!("{key}: {reason}"));
    }
}

fn duration(p: &mut Problems, key: &str, value: Option<&str>, default: Duration) -> Duration {
    let Some(text) = value else { return default };
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => {
            p.add(key, format!("{text:?} must be greater than zero"));
            default
        }
        Ok(d) => d,
        Err(e) => {
            p.add(key, format!("{text:?} is not a duration ({e}); write e.g. \"300ms\" or \"5s\""));
            default
        }
    }
}

fn valid_name(name: &str) -> bool {
    // EMQX's own rule for exhook server names: ^[A-Za-z0-9]+[A-Za-z0-9-_]*$
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 256
}

fn check_url(p: &mut Problems, key: &str, url: &str) {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return p.add(key, format!("{url:?} is not a URL ({e})")),
    };
    // Not echoed: `user:password@` would put a credential in every message, log line and status
    // report that names the URL (and the gateway sends providers no credentials anyway).
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return p.add(key, "a user or password in the URL is not allowed (URLs are logged and shown)");
    }
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return p.add(key, format!("{url:?} must start with http:// (h2c) or https:// (TLS)")),
    }
    let Some(auth) = uri.authority() else { return p.add(key, format!("{url:?} has no host")) };
    if auth.host().is_empty() {
        p.add(key, format!("{url:?} has no host"));
    }
    if auth.port_u16().is_none() {
        p.add(key, format!("{url:?} has no port (write e.g. http://127.0.0.1:9001)"));
    }
    if !matches!(uri.path(), "" | "/") {
        p.add(key, format!("{url:?}: a path is not allowed (gRPC paths are fixed by the package)"));
    }
}

fn provider(p: &mut Problems, i: usize, r: &RawProvider) -> ProviderConfig {
    let key = |k: &str| format!("providers[{i}] ({}).{k}", r.name);
    if !valid_name(&r.name) {
        p.add(key("name"), format!("{:?} must match ^[A-Za-z0-9][A-Za-z0-9_-]*$ (at most 256 bytes)", r.name));
    }
    let urls: Vec<String> = match (&r.url, &r.urls) {
        (Some(u), None) => vec![u.clone()],
        (None, Some(us)) if !us.is_empty() => us.clone(),
        (None, Some(_)) => {
            p.add(key("urls"), "must list at least one URL");
            Vec::new()
        }
        (None, None) => {
            p.add(key("url"), "missing: set url (one endpoint) or urls (replicas)");
            Vec::new()
        }
        (Some(_), Some(_)) => {
            p.add(key("urls"), "set either url or urls, not both");
            Vec::new()
        }
    };
    for (j, u) in urls.iter().enumerate() {
        let k = if r.urls.is_some() { key(&format!("urls[{j}]")) } else { key("url") };
        check_url(p, &k, u);
        if urls[..j].contains(u) {
            p.add(k, format!("{u:?} is listed twice"));
        }
    }
    let protocol = match r.protocol.as_deref() {
        None | Some("auto") => None,
        Some(s) => match s.parse::<Version>() {
            Ok(v) => Some(v),
            Err(_) => {
                p.add(key("protocol"), format!("{s:?} must be one of v1, v2, v3, auto"));
                None
            }
        },
    };
    let failed_action = match r.failed_action.as_deref() {
        None | Some("deny") => FailedAction::Deny,
        Some("ignore") => FailedAction::Ignore,
        Some(s) => {
            p.add(key("failed_action"), format!("{s:?} must be deny or ignore"));
            FailedAction::Deny
        }
    };
    let notify = match r.notify.as_deref() {
        None | Some("queue") => NotifyMode::Queue,
        Some("after-delivery") => NotifyMode::AfterDelivery,
        Some(s) => {
            p.add(key("notify"), format!("{s:?} must be queue or after-delivery"));
            NotifyMode::Queue
        }
    };
    let mut bounded = |k: &str, v: Option<i64>, max: i64, default: usize| match v {
        None => default,
        Some(n) if (1..=max).contains(&n) => n as usize,
        Some(n) => {
            p.add(key(k), format!("{n} must be between 1 and {max}"));
            default
        }
    };
    let queue_size = bounded("queue_size", r.queue_size, MAX_QUEUE_SIZE, DEFAULT_QUEUE_SIZE);
    let queue_shards = bounded("queue_shards", r.queue_shards, MAX_QUEUE_SHARDS, DEFAULT_QUEUE_SHARDS);
    let connections = bounded("connections", r.connections, MAX_CONNECTIONS, DEFAULT_CONNECTIONS);
    let max_inflight = bounded("max_inflight", r.max_inflight, MAX_INFLIGHT, DEFAULT_MAX_INFLIGHT);
    let eject_after = bounded("eject_after", r.eject_after, 1_000_000, DEFAULT_EJECT_AFTER as usize) as u32;
    let queue_bytes = byte_size(p, &key("queue_bytes"), r.queue_bytes, 1024, MAX_QUEUE_BYTES, DEFAULT_QUEUE_BYTES);
    let max_reply_bytes =
        byte_size(p, &key("max_reply_bytes"), r.max_reply_bytes, 1024, MAX_MESSAGE_BYTES, DEFAULT_MESSAGE_BYTES);
    let tls = provider_tls(p, &key("tls"), r.tls.as_ref(), &urls);
    ProviderConfig {
        name: r.name.clone(),
        urls,
        protocol,
        timeout: duration(p, &key("timeout"), r.timeout.as_deref(), DEFAULT_TIMEOUT),
        failed_action,
        notify,
        queue_size,
        queue_shards,
        queue_bytes,
        max_reply_bytes,
        connect_timeout: duration(p, &key("connect_timeout"), r.connect_timeout.as_deref(), DEFAULT_CONNECT_TIMEOUT),
        connections,
        max_inflight,
        health_interval: duration(p, &key("health_interval"), r.health_interval.as_deref(), DEFAULT_HEALTH_INTERVAL),
        eject_after,
        eject_for: duration(p, &key("eject_for"), r.eject_for.as_deref(), DEFAULT_EJECT_FOR),
        breaker: breaker(p, &key("breaker"), r.breaker.as_ref()),
        tls,
        cache: r.cache.as_ref().map(|c| cache(p, &key("cache"), c)),
    }
}

/// `[providers.cache]`: `ttl` is required (how long a decision may be reused is the
/// operator's call, not a default's); `negative_ttl` defaults to it.
fn cache(p: &mut Problems, key: &str, r: &RawCache) -> CacheSettings {
    const FALLBACK: Duration = Duration::from_secs(30);
    let ttl = match &r.ttl {
        Some(t) => duration(p, &format!("{key}.ttl"), Some(t), FALLBACK),
        None => {
            p.add(format!("{key}.ttl"), "missing: how long a decision is reused, e.g. \"30s\"");
            FALLBACK
        }
    };
    let negative_ttl = duration(p, &format!("{key}.negative_ttl"), r.negative_ttl.as_deref(), ttl);
    let max_entries = match r.max_entries {
        None => DEFAULT_CACHE_ENTRIES,
        Some(n) if (1..=MAX_CACHE_ENTRIES).contains(&n) => n as usize,
        Some(n) => {
            p.add(format!("{key}.max_entries"), format!("{n} must be between 1 and {MAX_CACHE_ENTRIES}"));
            DEFAULT_CACHE_ENTRIES
        }
    };
    CacheSettings { ttl, negative_ttl, max_entries }
}

/// `[providers.tls]`: checked by building the client configuration (files readable, key
/// matching its certificate, CA usable), so that `check` reports what `run` would hit.
fn provider_tls(p: &mut Problems, key: &str, raw: Option<&RawClientTls>, urls: &[String]) -> Option<ProviderTls> {
    let https = urls.iter().any(|u| u.starts_with("https://"));
    let Some(r) = raw else {
        return https.then(|| {
            if let Err(e) = exhook_tls::client_config(&ClientFiles::default()) {
                p.add(format!("{key}.{}", e.key), e.reason());
            }
            ProviderTls::default()
        });
    };
    if !https {
        p.add(key, "is set but no URL is https://");
    }
    if urls.iter().any(|u| u.starts_with("http://")) && https {
        p.add(key, "mixes http:// and https:// replicas; use one scheme for all");
    }
    let files = ClientFiles {
        ca_file: r.ca_file.as_ref().map(PathBuf::from),
        cert_file: r.cert_file.as_ref().map(PathBuf::from),
        key_file: r.key_file.as_ref().map(PathBuf::from),
    };
    if let Some(name) = &r.server_name
        && exhook_tls::ServerName::try_from(name.as_str()).is_err()
    {
        p.add(format!("{key}.server_name"), format!("{name:?} is not a DNS name or IP address"));
    }
    if let Err(e) = exhook_tls::client_config(&files) {
        p.add(format!("{key}.{}", e.key), e.reason());
    }
    Some(ProviderTls { files, server_name: r.server_name.clone() })
}

/// `[server.tls]`, `[tenants.tls]` or `[admin.tls]`: the files, checked by building the
/// server configuration. `listen` and `unknown_client` are read by the callers that allow them.
fn server_files(p: &mut Problems, key: &str, r: &RawServerTls) -> Option<ServerFiles> {
    let mut need = |k: &str, v: &Option<String>| {
        if v.is_none() {
            p.add(format!("{key}.{k}"), "missing (a PEM file)");
        }
        v.as_ref().map(PathBuf::from)
    };
    let (cert_file, key_file) = (need("cert_file", &r.cert_file), need("key_file", &r.key_file));
    let files = ServerFiles {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file: r.client_ca_file.as_ref().map(PathBuf::from),
    };
    if let Err(e) = exhook_tls::server_config(&files, &[exhook_tls::ALPN_H2]) {
        p.add(format!("{key}.{}", e.key), e.reason());
    }
    Some(files)
}

/// A size in bytes within `min..=max`.
fn byte_size(p: &mut Problems, key: &str, value: Option<i64>, min: i64, max: i64, default: usize) -> usize {
    match value {
        None => default,
        Some(n) if (min..=max).contains(&n) => n as usize,
        Some(n) => {
            p.add(key, format!("{n} must be between {min} and {max} (bytes)"));
            default
        }
    }
}

fn address(p: &mut Problems, key: &str, text: &str) -> Option<SocketAddr> {
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(e) => {
            p.add(key, format!("{text:?} is not an address:port ({e})"));
            None
        }
    }
}

fn server_tls(p: &mut Problems, r: &RawServerTls) -> Option<ServerTls> {
    let listen = match &r.listen {
        Some(l) => address(p, "server.tls.listen", l),
        None => {
            p.add("server.tls.listen", "missing (the TLS listener's address:port, e.g. \"0.0.0.0:9443\")");
            None
        }
    };
    let unknown_client = match r.unknown_client.as_deref() {
        None | Some("reject") => UnknownClient::Reject,
        Some("default") => UnknownClient::Default,
        Some(s) => {
            p.add("server.tls.unknown_client", format!("{s:?} must be reject or default"));
            UnknownClient::Reject
        }
    };
    if r.unknown_client.is_some() && r.client_ca_file.is_none() {
        p.add("server.tls.unknown_client", "applies to client certificates: set client_ca_file (mTLS) too");
    }
    let files = server_files(p, "server.tls", r)?;
    Some(ServerTls { listen: listen?, files, unknown_client })
}

fn breaker(p: &mut Problems, key: &str, raw: Option<&RawBreaker>) -> BreakerSettings {
    let d = BreakerSettings::default();
    let Some(r) = raw else { return d };
    let failure_rate = match r.failure_rate {
        None => d.failure_rate,
        Some(x) if x > 0.0 && x <= 1.0 => x,
        Some(x) => {
            p.add(format!("{key}.failure_rate"), format!("{x} must be greater than 0 and at most 1"));
            d.failure_rate
        }
    };
    let mut count = |k: &str, v: Option<i64>, min: i64, default: u32| match v {
        None => default,
        Some(n) if (min..=1_000_000).contains(&n) => n as u32,
        Some(n) => {
            p.add(format!("{key}.{k}"), format!("{n} must be between {min} and 1000000"));
            default
        }
    };
    let minimum_calls = count("minimum_calls", r.minimum_calls, 1, d.minimum_calls);
    let consecutive_failures = count("consecutive_failures", r.consecutive_failures, 0, d.consecutive_failures);
    let half_open_probes = count("half_open_probes", r.half_open_probes, 1, d.half_open_probes);
    BreakerSettings {
        failure_rate,
        minimum_calls,
        window: duration(p, &format!("{key}.window"), r.window.as_deref(), d.window),
        consecutive_failures,
        open_duration: duration(p, &format!("{key}.open_duration"), r.open_duration.as_deref(), d.open_duration),
        half_open_probes,
    }
}

fn names_to_indices(p: &mut Problems, key: &str, names: &[String], index: &HashMap<&str, usize>) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        match index.get(n.as_str()) {
            None => p.add(key, format!("names unknown provider {n:?}")),
            Some(&i) if !seen.insert(i) => p.add(key, format!("names provider {n:?} twice")),
            Some(&i) => out.push(i),
        }
    }
    out
}

/// A chain's members: provider indices and modes. A member is a name (decisive) or
/// `{ name = "...", mode = "decisive" | "shadow" | "observe" }`; shadow and observe members
/// only make sense where there is an answer to fold (valued hooks).
fn members(
    p: &mut Problems,
    key: &str,
    hook: Hook,
    raw: &[RawMember],
    index: &HashMap<&str, usize>,
) -> (Vec<usize>, Vec<MemberMode>) {
    let mut names = Vec::with_capacity(raw.len());
    let mut modes = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let (name, mode) = match m {
            RawMember::Name(n) => (n.clone(), MemberMode::Decisive),
            RawMember::Entry(table) => {
                let at = format!("{key}[{i}]");
                for k in table.keys().filter(|k| !matches!(k.as_str(), "name" | "mode")) {
                    p.add(&at, format!("unknown key {k:?} (a member table has name and mode)"));
                }
                let name = match table.get("name") {
                    Some(toml::Value::String(n)) => n.clone(),
                    Some(v) => {
                        p.add(format!("{at}.name"), format!("{v} must be a provider name (a string)"));
                        continue;
                    }
                    None => {
                        p.add(format!("{at}.name"), "missing: the provider's name");
                        continue;
                    }
                };
                let mode = match table.get("mode") {
                    None => MemberMode::Decisive,
                    Some(v) => match MemberMode::ALL.into_iter().find(|m| v.as_str() == Some(m.as_str())) {
                        Some(mode) => mode,
                        None => {
                            p.add(format!("{at}.mode"), format!("{v} must be decisive, shadow or observe"));
                            continue;
                        }
                    },
                };
                if mode != MemberMode::Decisive && hook.kind() != HookKind::Valued {
                    p.add(
                        format!("{at}.mode"),
                        format!(
                            "{:?} applies to valued hooks (client.authenticate, client.authorize, message.publish); {} is a notification, its members are all notified",
                            mode.as_str(),
                            hook.name()
                        ),
                    );
                    continue;
                }
                (name, mode)
            }
        };
        names.push(name);
        modes.push(mode);
    }
    // Names are checked (unknown, twice) as for plain chains; a member dropped there drops
    // its mode too, and the configuration is refused anyway.
    let mut out = Vec::with_capacity(names.len());
    let mut out_modes = Vec::with_capacity(names.len());
    let mut seen = HashSet::new();
    for (n, mode) in names.iter().zip(modes) {
        match index.get(n.as_str()) {
            None => p.add(key, format!("names unknown provider {n:?}")),
            Some(&i) if !seen.insert(i) => p.add(key, format!("names provider {n:?} twice")),
            Some(&i) => {
                out.push(i);
                out_modes.push(mode);
            }
        }
    }
    (out, out_modes)
}

/// What a tenant reaches when it does not list `providers`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ImplicitProviders {
    /// Every provider: the default tenant of a configuration without `[[tenants]]`.
    All,
    /// None: only the members of its explicit chains (isolation between tenants).
    None,
}

/// The routing table of one tenant (the caller fills in identity: certificate names, own
/// listener). Isolation: a tenant reaches the providers it lists and the members of its
/// explicit chains, nothing else. `prefix` leads its chains' keys, `own` its other keys.
#[allow(clippy::too_many_arguments)]
fn tenant(
    p: &mut Problems,
    (prefix, own): (&str, &str),
    name: &str,
    cluster_names: &[String],
    providers: Option<&[String]>,
    implicit: ImplicitProviders,
    max_inflight: Option<i64>,
    chains: &BTreeMap<String, Vec<RawMember>>,
    index: &HashMap<&str, usize>,
) -> TenantConfig {
    let providers = match (providers, implicit) {
        (None, ImplicitProviders::All) => (0..index.len()).collect(),
        (None, ImplicitProviders::None) => Vec::new(),
        (Some(names), _) => {
            let mut v = names_to_indices(p, &format!("{own}providers"), names, index);
            v.sort_unstable(); // [[providers]] order
            v
        }
    };
    let mut explicit = HookSet::EMPTY;
    let mut chain_by_hook: Vec<Option<Vec<usize>>> = vec![None; Hook::ALL.len()];
    let mut modes: Vec<Vec<MemberMode>> = vec![Vec::new(); Hook::ALL.len()];
    for (hook_name, members) in chains {
        let key = format!("{prefix}chains.{hook_name:?}");
        let hook = match Hook::from_hookpoint(hook_name) {
            Some(h) if h.kind() != HookKind::Lifecycle => h,
            _ => {
                p.add(&key, format!("unknown hook {hook_name:?} (expected an EMQX hookpoint such as client.authenticate, client.authorize, message.publish, session.created)"));
                continue;
            }
        };
        if explicit.contains(hook) {
            p.add(&key, format!("{} is configured twice (an alias and its 5.x name)", hook.name()));
            continue;
        }
        explicit.insert(hook);
        let (chain, member_modes) = self::members(p, &key, hook, members, index);
        chain_by_hook[hook.index()] = Some(chain);
        modes[hook.index()] = member_modes;
    }
    let mut reachable = providers.clone();
    for c in chain_by_hook.iter().flatten() {
        reachable.extend_from_slice(c);
    }
    reachable.sort_unstable();
    reachable.dedup();
    let chains = Hook::ALL
        .into_iter()
        .zip(chain_by_hook)
        .map(|(h, c)| match (h.kind(), c) {
            (HookKind::Lifecycle, _) => reachable.clone(),
            (_, Some(c)) => c,
            (_, None) => providers.clone(),
        })
        .collect::<Vec<Vec<usize>>>();
    // Implicit chains (and lifecycle hooks) are all decisive.
    for (h, m) in modes.iter_mut().enumerate() {
        if m.len() != chains[h].len() {
            *m = vec![MemberMode::Decisive; chains[h].len()];
        }
    }
    let max_inflight = match max_inflight {
        None => None,
        Some(n) if (1..=MAX_INFLIGHT).contains(&n) => Some(n as usize),
        Some(n) => {
            p.add(format!("{own}max_inflight"), format!("{n} must be between 1 and {MAX_INFLIGHT}"));
            None
        }
    };
    TenantConfig {
        name: name.to_owned(),
        cluster_names: cluster_names.to_vec(),
        client_cert_names: Vec::new(),
        listener: None,
        providers,
        reachable,
        explicit,
        max_inflight,
        chains,
        modes,
    }
}

pub(crate) fn resolve(raw: RawConfig) -> Result<Config, Vec<String>> {
    let mut p = Problems(Vec::new());
    let tls = raw.server.tls.as_ref().and_then(|t| server_tls(&mut p, t));
    // The plaintext listener may be omitted when a TLS one is configured.
    let listen = match (raw.server.listen.as_deref(), &raw.server.tls) {
        (Some(text), _) => address(&mut p, "server.listen", text),
        (None, None) => Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
        (None, Some(_)) => None,
    };
    let default_deadline =
        duration(&mut p, "server.default_deadline", raw.server.default_deadline.as_deref(), DEFAULT_DEADLINE);
    let drain_timeout =
        duration(&mut p, "server.drain_timeout", raw.server.drain_timeout.as_deref(), DEFAULT_DRAIN_TIMEOUT);
    let worker_threads = match raw.server.worker_threads {
        None => None,
        Some(n) if (1..=1024).contains(&n) => Some(n as usize),
        Some(n) => {
            p.add("server.worker_threads", format!("{n} must be between 1 and 1024"));
            None
        }
    };
    let unknown_cluster = match raw.server.unknown_cluster.as_deref() {
        None | Some("reject") => UnknownCluster::Reject,
        Some("default") => UnknownCluster::Default,
        Some(s) => {
            p.add("server.unknown_cluster", format!("{s:?} must be reject or default"));
            UnknownCluster::Reject
        }
    };
    let mut count = |k: &str, v: Option<i64>, default: usize| match v {
        None => default,
        Some(n) if (1..=1_000_000).contains(&n) => n as usize,
        Some(n) => {
            p.add(format!("server.{k}"), format!("{n} must be between 1 and 1000000"));
            default
        }
    };
    let max_connections = count("max_connections", raw.server.max_connections, DEFAULT_MAX_CONNECTIONS);
    let max_concurrent_streams =
        count("max_concurrent_streams", raw.server.max_concurrent_streams, DEFAULT_MAX_CONCURRENT_STREAMS as usize)
            as u32;
    let max_request_bytes = byte_size(
        &mut p,
        "server.max_request_bytes",
        raw.server.max_request_bytes,
        1024,
        MAX_MESSAGE_BYTES,
        DEFAULT_MESSAGE_BYTES,
    );
    let admin_text = raw.admin.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let admin_listen = admin_text.parse::<SocketAddr>().unwrap_or_else(|e| {
        p.add("admin.listen", format!("{admin_text:?} is not an address:port ({e})"));
        SocketAddr::from(([127, 0, 0, 1], 9100))
    });
    let admin = AdminConfig {
        enabled: raw.admin.enabled.unwrap_or(true),
        listen: admin_listen,
        token_file: raw.admin.token_file.as_ref().map(std::path::PathBuf::from),
        tls: raw.admin.tls.as_ref().and_then(|t| {
            for (k, set) in [("listen", t.listen.is_some()), ("unknown_client", t.unknown_client.is_some())] {
                if set {
                    p.add(
                        format!("admin.tls.{k}"),
                        "not an admin.tls key (admin.listen is the address; it serves HTTPS when admin.tls is set)",
                    );
                }
            }
            server_files(&mut p, "admin.tls", t)
        }),
    };
    if let Some(t) = &admin.token_file {
        match std::fs::read_to_string(t) {
            Ok(s) if s.trim().is_empty() => p.add("admin.token_file", format!("{} is empty", t.display())),
            Ok(_) => {}
            Err(e) => p.add("admin.token_file", format!("cannot read {}: {e}", t.display())),
        }
    }

    let providers: Vec<ProviderConfig> =
        raw.providers.iter().enumerate().map(|(i, r)| provider(&mut p, i, r)).collect();
    let mut index = HashMap::new();
    for (i, pr) in providers.iter().enumerate() {
        if index.insert(pr.name.as_str(), i).is_some() {
            p.add(format!("providers[{i}].name"), format!("duplicate provider name {:?}", pr.name));
        }
    }

    // Without [[tenants]] the default tenant is everyone and owns every provider (single-team
    // use needs no routing configuration); with tenants it owns only what it names.
    let implicit = if raw.tenants.is_empty() { ImplicitProviders::All } else { ImplicitProviders::None };
    let default_tenant = tenant(
        &mut p,
        ("", "default_tenant."),
        "default",
        &[],
        raw.default_tenant.providers.as_deref(),
        implicit,
        raw.default_tenant.max_inflight,
        &raw.chains,
        &index,
    );
    let mut tenants = vec![default_tenant];
    let mut cluster_owner: HashMap<&str, &str> = HashMap::new();
    let mut cert_owner: HashMap<&str, &str> = HashMap::new();
    let mtls = raw.server.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
    for (i, rt) in raw.tenants.iter().enumerate() {
        let RawTenant { name, cluster_names, providers: tp, max_inflight, chains, .. } = rt;
        let prefix = format!("tenants[{i}] ({name}).");
        if !valid_name(name) {
            p.add(format!("{prefix}name"), format!("{name:?} must match ^[A-Za-z0-9][A-Za-z0-9_-]*$"));
        }
        if name == "default" || raw.tenants[..i].iter().any(|t| &t.name == name) {
            p.add(
                format!("{prefix}name"),
                format!("duplicate tenant name {name:?} (\"default\" is the [chains] tenant)"),
            );
        }
        if cluster_names.is_empty() && rt.client_cert_names.is_empty() && rt.listen.is_none() {
            p.add(
                format!("{prefix}cluster_names"),
                "the tenant is unreachable: list a RequestMeta.cluster_name, set client_cert_names (mTLS) or listen",
            );
        }
        if !rt.client_cert_names.is_empty() && !mtls {
            p.add(
                format!("{prefix}client_cert_names"),
                "needs mTLS on the EMQX listener: set [server.tls] client_ca_file",
            );
        }
        for c in &rt.client_cert_names {
            if let Some(other) = cert_owner.insert(c.as_str(), name.as_str()) {
                p.add(format!("{prefix}client_cert_names"), format!("{c:?} already names tenant {other:?}"));
            }
        }
        let listener = match (&rt.listen, &rt.tls) {
            (Some(l), tls) => address(&mut p, &format!("{prefix}listen"), l).map(|listen| TenantListener {
                listen,
                tls: tls.as_ref().and_then(|t| {
                    for (k, set) in [("listen", t.listen.is_some()), ("unknown_client", t.unknown_client.is_some())] {
                        if set {
                            p.add(
                                format!("{prefix}tls.{k}"),
                                "not a tenants.tls key (the tenant's listen is the address)",
                            );
                        }
                    }
                    server_files(&mut p, &format!("{prefix}tls"), t)
                }),
            }),
            (None, Some(_)) => {
                p.add(format!("{prefix}tls"), "needs the tenant's own listen address");
                None
            }
            (None, None) => None,
        };
        for c in cluster_names {
            if let Some(other) = cluster_owner.insert(c.as_str(), name.as_str()) {
                p.add(format!("{prefix}cluster_names"), format!("{c:?} already selects tenant {other:?}"));
            }
        }
        let mut t = tenant(
            &mut p,
            (&prefix, &prefix),
            name,
            cluster_names,
            tp.as_deref(),
            ImplicitProviders::None,
            *max_inflight,
            chains,
            &index,
        );
        if t.reachable.is_empty() && !providers.is_empty() {
            p.add(
                format!("{prefix}providers"),
                "the tenant reaches no provider: list its providers (or name them in its chains)",
            );
        }
        t.client_cert_names = rt.client_cert_names.clone();
        t.listener = listener;
        tenants.push(t);
    }

    // Every listener its own address (port 0 asks the system for a fresh one each).
    let mut addresses: Vec<(String, SocketAddr)> = Vec::new();
    addresses.extend(listen.map(|a| ("server.listen".to_owned(), a)));
    addresses.extend(tls.as_ref().map(|t| ("server.tls.listen".to_owned(), t.listen)));
    if raw.admin.enabled.unwrap_or(true) {
        addresses.push(("admin.listen".to_owned(), admin.listen));
    }
    for (i, t) in tenants.iter().enumerate().skip(1) {
        if let Some(l) = &t.listener {
            addresses.push((format!("tenants[{}] ({}).listen", i - 1, t.name), l.listen));
        }
    }
    for (j, (key, a)) in addresses.iter().enumerate() {
        if a.port() != 0
            && let Some((other, _)) = addresses[..j].iter().find(|(_, b)| b == a)
        {
            p.add(key, format!("{a} is already {other}"));
        }
    }

    if p.0.is_empty() {
        Ok(Config {
            server: ServerConfig {
                listen,
                tls,
                default_deadline,
                drain_timeout,
                worker_threads,
                unknown_cluster,
                max_connections,
                max_concurrent_streams,
                max_request_bytes,
            },
            providers,
            tenants,
            admin,
        })
    } else {
        Err(p.0)
    }
}

/// The resolved chains, one tenant after another, as `exhook-gateway check` prints them.
pub fn render_chains(config: &Config) -> String {
    let mut out = String::new();
    let name = |i: &usize| config.providers[*i].name.as_str();
    for t in &config.tenants {
        let clusters = match (t.cluster_names.is_empty(), config.tenants.len(), config.server.unknown_cluster) {
            (false, _, _) => t.cluster_names.join(", "),
            (true, 1, _) => "any".to_owned(),
            (true, _, UnknownCluster::Default) => "any no other tenant claims".to_owned(),
            (true, _, UnknownCluster::Reject) => "none: unknown clusters are refused".to_owned(),
        };
        let _ = write!(out, "tenant {} (cluster_name: {clusters}", t.name);
        if !t.client_cert_names.is_empty() {
            let _ = write!(out, "; client certificate: {}", t.client_cert_names.join(", "));
        }
        if let Some(l) = &t.listener {
            let _ = write!(out, "; own listener: {}{}", l.listen, if l.tls.is_some() { " (TLS)" } else { "" });
        }
        let _ = writeln!(out, ")");
        let reaches: Vec<&str> = t.reachable.iter().map(name).collect();
        if reaches.is_empty() {
            let _ = writeln!(out, "  reaches no provider");
        } else {
            let _ = writeln!(out, "  reaches {} (and no other provider)", reaches.join(", "));
        }
        for hook in Hook::hookpoints() {
            let members: Vec<String> = t
                .members(hook)
                .map(|(i, mode)| match mode {
                    MemberMode::Decisive => name(&i).to_owned(),
                    other => format!("{} ({})", name(&i), other.as_str()),
                })
                .collect();
            let how = if t.explicit.contains(hook) { "chain" } else { "registered" };
            let list = if members.is_empty() { "(none)".to_owned() } else { members.join(" -> ") };
            let _ = writeln!(out, "  {:<22} {how:<10} {list}", hook.name());
        }
    }
    out
}
