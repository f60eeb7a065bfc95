//! exhook-gateway's admin plane, on its own listener (loopback by default):
//!
//! | path | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /healthz` | 200 while the process runs (never needs the token) |
//! | `GET /readyz` | 200 when ready to serve EMQX (see [`readiness`]), else 503 with the reasons |
//! | `GET /api/v1/status` | JSON: build, config, tenants and chains, providers and their state |
//! | `POST /api/v1/reload` | re-read the configuration file: 200 with the [`ReloadReport`] as JSON, 422 with the configuration errors (see [`Reload`]) |
//! | `GET /api/v1/shadow/disagreements` | JSON: the newest shadow disagreements, newest first ([`DisagreementReport`]) |
//! | `DELETE /api/v1/cache?provider=P&clientid=C` | removes cached decisions (both parameters optional): 200 `{"evicted": n}`, 404 for an unknown provider, 409 for one without a cache |
//! | `GET /api/v1/trace?clientid=C&username=U&topic=T` | a live decision trace of the matching calls, as server-sent events (see [`trace`] and [`sse`]): 400 without a filter, 503 with [`trace::MAX_VIEWERS`] open, 501 without a [`TraceHub`] |
//! | `GET /` | the live status page (HTML and a little JavaScript, no external assets) |
//!
//! With `[admin] token_file`, every path but `/healthz` and the page itself needs
//! `Authorization: Bearer <token>` (the page asks for it and sends it). The token is read
//! into a [`Secret`] and kept only as its SHA-256 digest; a presented token is hashed the same
//! way and the two digests compared in constant time, so neither the token's bytes nor its
//! length shows in how long a refusal takes.
//! Nothing here ever includes request contents: no passwords, no payloads. The one place
//! with client data is the shadow disagreement log (clientids, behind the token like every
//! `/api` path), whose answers are described, never copied, and live traces (the same:
//! clientids, usernames and topics, never a password or a payload).
#![warn(missing_docs)]

pub mod history;
pub mod sse;
mod status;
pub mod trace;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use exhook_proto::Secret;
use exhook_server::{Gateway, ReloadReport};
use sha2::Digest;
use subtle::ConstantTimeEq;

pub use status::{
    ChainCounts, DisagreementReport, MemberReport, ProviderStatus, Readiness, StatusReport, TOPICS_SHOWN,
    disagreements, readiness, status_report,
};
pub use trace::{TraceFilter, TraceHub};

/// The status page.
const PAGE: &str = include_str!("../assets/status.html");

/// Which configuration file is running.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigInfo {
    /// Its path (`None` when built in, e.g. the demo).
    pub path: Option<PathBuf>,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// When it was loaded (RFC 3339).
    pub loaded_at: String,
}

impl ConfigInfo {
    /// Describes a configuration loaded from `text` (read from `path`).
    pub fn new(path: Option<&Path>, text: &str) -> ConfigInfo {
        let digest = sha2::Sha256::digest(text.as_bytes());
        ConfigInfo {
            path: path.map(Path::to_path_buf),
            sha256: digest.iter().map(|b| format!("{b:02x}")).collect(),
            loaded_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

/// Reads `[admin] token_file`: the token is the file's text without surrounding whitespace
/// (a trailing newline is not part of it). The error names the file, never its content.
pub fn read_token_file(path: &Path) -> std::io::Result<Secret<String>> {
    let text = Secret::new(std::fs::read_to_string(path)?);
    Ok(text.map(|t| t.trim().to_owned()))
}

/// The admin bearer token, held only as its SHA-256 digest.
struct Token {
    digest: Secret<[u8; 32]>,
}

impl Token {
    /// `None` for an empty (or all-whitespace) token: no token, no check.
    fn new(token: &Secret<String>) -> Option<Token> {
        let t = token.expose().trim();
        (!t.is_empty()).then(|| Token { digest: Secret::new(sha256(t.as_bytes())) })
    }

    /// True when `given` is the token. Both sides are hashed first and the 32-byte digests
    /// compared with `subtle` (no early exit), so the time taken depends on neither the
    /// expected token's bytes nor its length; `given`'s length only changes the time to hash
    /// what the caller sent, which the caller already knows.
    fn matches(&self, given: &[u8]) -> bool {
        sha256(given).ct_eq(self.digest.expose()).into()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// What `POST /api/v1/reload` runs: the binary's one reload path (re-read the file, validate,
/// diff and swap), so the admin plane needs no knowledge of where the configuration lives.
pub trait Reload: Send + Sync {
    /// Re-reads and applies the configuration: the report, or the configuration errors (every
    /// line naming its file and key) with the running configuration kept.
    fn reload(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ReloadReport, String>> + Send + '_>>;
}

/// The JSON answer of `POST /api/v1/reload`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadAnswer {
    /// Whether the new configuration runs.
    pub reloaded: bool,
    /// Providers created.
    pub added: Vec<String>,
    /// Providers kept with their connections and state.
    pub kept: Vec<String>,
    /// Providers no longer configured.
    pub removed: Vec<String>,
    /// Changed providers whose running instance stays (`name: why`).
    pub not_replaced: Vec<String>,
    /// Settings that take effect after a restart.
    pub needs_restart: Vec<String>,
    /// The configuration errors, one per line (empty when reloaded).
    pub errors: Vec<String>,
}

impl ReloadAnswer {
    /// The answer for a reload that ran.
    pub fn reloaded(report: ReloadReport) -> ReloadAnswer {
        ReloadAnswer {
            reloaded: true,
            added: report.added,
            kept: report.kept,
            removed: report.removed,
            not_replaced: report.not_replaced,
            needs_restart: report.needs_restart,
            errors: Vec::new(),
        }
    }

    /// The answer for a configuration refused with `error` (one problem per line).
    pub fn refused(error: &str) -> ReloadAnswer {
        ReloadAnswer {
            reloaded: false,
            added: Vec::new(),
            kept: Vec::new(),
            removed: Vec::new(),
            not_replaced: Vec::new(),
            needs_restart: Vec::new(),
            errors: error
                .lines()
                .map(|l| l.trim().trim_start_matches("- ").to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
        }
    }
}

/// Shared state of the admin listener.
pub struct AdminState {
    gateway: Gateway,
    token: Option<Token>,
    config: ArcSwap<ConfigInfo>,
    listener_up: AtomicBool,
    reload: std::sync::OnceLock<Arc<dyn Reload>>,
    trace: std::sync::OnceLock<Arc<TraceHub>>,
    history: history::History,
}

impl AdminState {
    /// State for `gateway`; `token` from `[admin] token_file` (see [`read_token_file`]); an
    /// empty one means no token.
    pub fn new(gateway: Gateway, token: Option<Secret<String>>, config: ConfigInfo) -> Arc<AdminState> {
        Arc::new(AdminState {
            gateway,
            token: token.as_ref().and_then(Token::new),
            config: ArcSwap::from_pointee(config),
            listener_up: AtomicBool::new(false),
            reload: std::sync::OnceLock::new(),
            trace: std::sync::OnceLock::new(),
            history: history::History::default(),
        })
    }

    /// Installs the trace hub behind `GET /api/v1/trace` (once): the same hub must be the
    /// gateway's observer. Its dropped events are counted in the gateway's metrics.
    pub fn set_trace(&self, hub: Arc<TraceHub>) {
        hub.attach_metrics(self.gateway.metrics());
        let _ = self.trace.set(hub);
    }

    /// Takes one sample of every provider for the status page's history (the admin listener
    /// does this every [`history::EVERY`]).
    pub fn sample_history(&self) {
        self.history.sample(&self.gateway);
    }

    /// Installs what `POST /api/v1/reload` runs (once; without it the route answers 501).
    pub fn set_reload(&self, reload: Arc<dyn Reload>) {
        let _ = self.reload.set(reload);
    }

    /// The running configuration file's description (path, SHA-256, load time).
    pub fn config(&self) -> Arc<ConfigInfo> {
        self.config.load_full()
    }

    /// Marks the EMQX-facing listener as bound (part of readiness).
    pub fn set_listener_up(&self, up: bool) {
        self.listener_up.store(up, Ordering::Release);
    }

    /// Records a reloaded configuration.
    pub fn set_config(&self, config: ConfigInfo) {
        self.config.store(Arc::new(config));
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }
}

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/shadow/disagreements", get(shadow_disagreements))
        .route("/api/v1/cache", delete(evict_cache))
        .route("/api/v1/trace", get(trace_events))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), require_token));
    // The probes stay open: a kubelet's httpGet probe cannot send a token from a Secret, and
    // they say only "ok" or why the gateway is not ready (no request data, no secrets).
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(page))
        .merge(protected)
        .with_state(state)
}

/// Serves the admin routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _sampler = sample_history_every(&state, history::EVERY);
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Samples the providers' history every `every` while the listener serves (the task ends
/// with the returned guard).
fn sample_history_every(state: &Arc<AdminState>, every: std::time::Duration) -> AbortOnDrop {
    let state = Arc::downgrade(state);
    AbortOnDrop(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { return };
            state.sample_history();
        }
    }))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// As [`serve`], over HTTPS: `tls` is the `[admin.tls]` configuration (re-read when its
/// files change; with `client_ca_file`, clients need a certificate signed by it).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<exhook_tls::Watched<exhook_tls::rustls::ServerConfig>>,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TlsListener::start(listener, tls)?;
    let _sampler = sample_history_every(&state, history::EVERY);
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// The `[admin.tls]` listener: handshakes by [`exhook_tls::accept_tls`] (at most 64 at once,
/// each within 10 s), established connections handed to axum.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::net::SocketAddr)>,
    addr: std::net::SocketAddr,
}

impl TlsListener {
    fn start(
        listener: tokio::net::TcpListener,
        tls: Arc<exhook_tls::Watched<exhook_tls::rustls::ServerConfig>>,
    ) -> std::io::Result<TlsListener> {
        let addr = listener.local_addr()?;
        let ready = exhook_tls::accept_tls(
            listener,
            move || tls.current(),
            64,
            std::time::Duration::from_secs(10),
            |remote, e| {
                tracing::debug!(%remote, error = %e, "admin TLS connection not established");
            },
        );
        Ok(TlsListener { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

async fn require_token(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        let ok = given.is_some_and(|g| token.matches(g));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    state.gateway.refresh_gauges();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.gateway.metrics().encode())
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let r = readiness(&state.gateway, state.listener_up.load(Ordering::Acquire));
    let code = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(r)).into_response()
}

async fn status(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let config = state.config.load_full();
    let mut report = status_report(&state.gateway, &config, state.listener_up.load(Ordering::Acquire));
    for p in &mut report.providers {
        p.history = state.history.of(&p.name);
    }
    axum::Json(report)
}

/// `GET /api/v1/trace`: the matching calls' events as server-sent events, until the client
/// leaves (see [`sse`]).
async fn trace_events(State(state): State<Arc<AdminState>>, RawQuery(query): RawQuery) -> Response {
    let Some(hub) = state.trace.get() else {
        return (StatusCode::NOT_IMPLEMENTED, "live traces are not available in this process\n").into_response();
    };
    let filter = match TraceFilter::parse(query.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, axum::Json(serde_json_object("error", e.to_string()))).into_response();
        }
    };
    let Some((guard, rx)) = hub.open(filter) else {
        let e = format!("{} live traces are open already", trace::MAX_VIEWERS);
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json_object("error", e))).into_response();
    };
    // Who watches which client is worth a line for the audit trail.
    tracing::info!(filter = ?guard.viewer().filter(), "live trace opened");
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        axum::body::Body::from_stream(sse::stream(guard, rx)),
    )
        .into_response()
}

async fn reload(State(state): State<Arc<AdminState>>) -> Response {
    let Some(reload) = state.reload.get() else {
        return (StatusCode::NOT_IMPLEMENTED, "no configuration file to reload\n").into_response();
    };
    match reload.reload().await {
        Ok(report) => (StatusCode::OK, axum::Json(ReloadAnswer::reloaded(report))).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(ReloadAnswer::refused(&e))).into_response(),
    }
}

async fn shadow_disagreements(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    axum::Json(serde_json_object("disagreements", disagreements(&state.gateway)))
}

/// `{"<key>": value}`.
fn serde_json_object<T: serde::Serialize>(key: &'static str, value: T) -> std::collections::BTreeMap<&'static str, T> {
    std::collections::BTreeMap::from([(key, value)])
}

/// `DELETE /api/v1/cache`'s parameters (`provider`, `clientid`; percent-decoded, `+` as a
/// space). Unknown parameters are refused rather than ignored: a typo must not widen an
/// eviction to every client.
#[derive(Debug, Default, PartialEq, Eq)]
struct EvictQuery {
    provider: Option<String>,
    clientid: Option<String>,
}

impl EvictQuery {
    fn parse(query: Option<&str>) -> Result<EvictQuery, String> {
        let mut q = EvictQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| format!("{k}: bad percent-encoding"))?;
            match k {
                "provider" => q.provider = Some(v),
                "clientid" => q.clientid = Some(v),
                other => return Err(format!("unknown parameter {other:?} (expected provider, clientid)")),
            }
        }
        Ok(q)
    }
}

/// `application/x-www-form-urlencoded` value decoding; `None` for invalid `%` escapes or UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

async fn evict_cache(State(state): State<Arc<AdminState>>, RawQuery(query): RawQuery) -> Response {
    use exhook_chain::cache::EvictError;
    let q = match EvictQuery::parse(query.as_deref()) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, axum::Json(serde_json_object("error", e))).into_response(),
    };
    match state.gateway.evict_cached(q.provider.as_deref(), q.clientid.as_deref()) {
        Ok(n) => {
            // Worth a line for the audit trail: which provider and client lost their decisions.
            tracing::info!(provider = ?q.provider, clientid = ?q.clientid, evicted = n, "cached decisions removed");
            (StatusCode::OK, axum::Json(serde_json_object("evicted", n))).into_response()
        }
        Err(e) => {
            let code = match e {
                EvictError::UnknownProvider(_) => StatusCode::NOT_FOUND,
                EvictError::NoCache(_) => StatusCode::CONFLICT,
            };
            (code, axum::Json(serde_json_object("error", e.to_string()))).into_response()
        }
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "4f1c-admin-token-9d2e";

    fn token() -> Token {
        Token::new(&Secret::new(format!("  {TOKEN}\n"))).unwrap()
    }

    #[test]
    fn only_the_exact_token_matches() {
        let t = token();
        assert!(t.matches(TOKEN.as_bytes()));
        for wrong in [
            "",
            "4",
            &TOKEN[..TOKEN.len() - 1],    // a prefix: the old check compared lengths first
            &format!("{TOKEN}x"),         // longer
            &format!("x{}", &TOKEN[1..]), // same length, first byte differs
            &format!("{}x", &TOKEN[..TOKEN.len() - 1]), // same length, last byte differs
            &format!(" {TOKEN}"),         // surrounding whitespace is not trimmed from requests
        ] {
            assert!(!t.matches(wrong.as_bytes()), "{wrong:?} must not match");
        }
    }

    #[test]
    fn the_token_is_held_only_as_a_digest() {
        // Every comparison is between two 32-byte digests, whatever the token's length.
        let t = token();
        assert_eq!(t.digest.expose(), &sha256(TOKEN.as_bytes()));
        assert_eq!(format!("{:?}", t.digest), "<redacted>");
    }

    #[test]
    fn eviction_parameters_are_decoded_and_typos_refused() {
        assert_eq!(EvictQuery::parse(None), Ok(EvictQuery::default()));
        assert_eq!(
            EvictQuery::parse(Some("provider=auth&clientid=dev%2F1+a%C3%A9")),
            Ok(EvictQuery { provider: Some("auth".into()), clientid: Some("dev/1 a\u{e9}".into()) })
        );
        assert!(EvictQuery::parse(Some("provider=auth&client=x")).unwrap_err().contains("unknown parameter"));
        assert!(EvictQuery::parse(Some("clientid=%zz")).is_err());
        assert!(EvictQuery::parse(Some("clientid=%ff")).is_err(), "not UTF-8");
    }

    #[test]
    fn an_empty_token_file_means_no_token() {
        assert!(Token::new(&Secret::new(" \n".to_owned())).is_none());
    }

    #[test]
    fn the_token_file_is_trimmed_and_redacted() {
        let path = std::env::temp_dir().join(format!("exhook-admin-token-{}", std::process::id()));
        std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
        let read = read_token_file(&path);
        std::fs::remove_file(&path).unwrap();
        let read = read.unwrap();
        assert_eq!(read.expose(), TOKEN);
        assert!(!format!("{read:?} {read}").contains(TOKEN));
        let missing = read_token_file(Path::new("/nonexistent/exhook-admin-token")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}
