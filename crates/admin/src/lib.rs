//! exhook-gateway's admin plane, on its own listener (loopback by default):
//!
//! | path | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition |
//! | `GET /healthz` | 200 while the process runs (never needs the token) |
//! | `GET /readyz` | 200 when ready to serve EMQX (see [`readiness`]), else 503 with the reasons |
//! | `GET /api/v1/status` | JSON: build, config, tenants and chains, providers and their state |
//! | `GET /` | the live status page (HTML and a little JavaScript, no external assets) |
//!
//! With `[admin] token_file`, every path but `/healthz` and the page itself needs
//! `Authorization: Bearer <token>` (the page asks for it and sends it).
//! Nothing here ever includes request contents: no passwords, no client data.
#![warn(missing_docs)]

mod status;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use exhook_server::Gateway;
use sha2::Digest;

pub use status::{ProviderStatus, Readiness, StatusReport, readiness, status_report};

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

/// Shared state of the admin listener.
pub struct AdminState {
    gateway: Gateway,
    token: Option<String>,
    config: ArcSwap<ConfigInfo>,
    listener_up: AtomicBool,
}

impl AdminState {
    /// State for `gateway`; `token` from `[admin] token_file` (already read).
    pub fn new(gateway: Gateway, token: Option<String>, config: ConfigInfo) -> Arc<AdminState> {
        Arc::new(AdminState {
            gateway,
            token: token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
            config: ArcSwap::from_pointee(config),
            listener_up: AtomicBool::new(false),
        })
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
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), require_token));
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/", get(page)).merge(protected).with_state(state)
}

/// Serves the admin routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
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
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Constant-time comparison: the token guards the admin plane.
        let ok = given.is_some_and(|g| {
            g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
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
    axum::Json(status_report(&state.gateway, &config, state.listener_up.load(Ordering::Acquire)))
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}
