//! The EMQX-facing listeners and who is calling on each connection.
//!
//! A gateway serves on up to three kinds of listener, all into the one gRPC server:
//! * `[server] listen`: plaintext h2c; the tenant comes from `RequestMeta.cluster_name`.
//! * `[server.tls]`: TLS, or mTLS with `client_ca_file`; a verified client certificate whose
//!   names (DNS SANs, else CN) are some tenant's `client_cert_names` IS that tenant.
//! * `[[tenants]] listen` (plaintext or `[tenants.tls]`): every call is that tenant's.
//!
//! Each accepted connection carries a [`Caller`] (its listener's tenant, its certificate
//! names) that the connection puts into every request's extensions; the tenant is decided per call
//! from it against the running snapshot (see `exec::Runtime::tenant_of`).
//!
//! Every listener takes its connections under one [`ConnectionLimit`] of `server.max_connections`
//! (see [`connection_limit`]): at the limit the listeners stop accepting, and connections wait
//! in the kernel's backlog until one closes.
//!
//! TLS handshakes run in their own tasks (`exhook_tls::accept_tls`: a slow client never holds
//! up the accept loop), at most [`MAX_HANDSHAKES`] at once, each within [`HANDSHAKE_TIMEOUT`]. Certificate files
//! are re-read every [`TLS_POLL`] and used by new handshakes when they changed (see
//! `exhook_tls::Watched`); established connections keep theirs.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};
use std::time::Duration;

use exhook_config::{Config, ServerFiles, UnknownClient};
use exhook_metrics::{IdentityEvent, Limit, Metrics};
use exhook_tls::{ConnectionLimit, ConnectionPermit, LimitEvent, Watched};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// TLS handshakes in progress at most (per listener); further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;
/// A TLS handshake must finish within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often certificate files are checked for changes.
pub const TLS_POLL: Duration = Duration::from_secs(1);

/// Who is calling on one connection.
#[derive(Debug)]
pub struct CallerInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// The listener's own tenant (`[[tenants]] listen`).
    pub listener_tenant: Option<String>,
    /// Names of the verified client certificate (DNS SANs, else CN); `None` without one.
    pub cert_names: Option<Vec<String>>,
    /// What a certificate that names no tenant gets.
    pub unknown_client: UnknownClient,
    /// One warning per connection (a rejection or a `cluster_name` mismatch), not one per call.
    pub(crate) warned: AtomicBool,
}

/// The connection's identity, as a request extension.
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<CallerInfo>);

impl Caller {
    fn new(
        remote: Option<SocketAddr>,
        listener_tenant: Option<String>,
        cert_names: Option<Vec<String>>,
        unknown_client: UnknownClient,
    ) -> Caller {
        Caller(Arc::new(CallerInfo {
            remote,
            listener_tenant,
            cert_names,
            unknown_client,
            warned: AtomicBool::new(false),
        }))
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound.
    #[error("{key}: cannot bind {addr}: {source}")]
    Bind {
        /// The configuration key.
        key: String,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The TLS files do not load.
    #[error("{key}.{}", .source)]
    Tls {
        /// The configuration table (`server.tls`, `tenants[0] (a).tls`).
        key: String,
        /// What is wrong.
        source: exhook_tls::TlsError,
    },
}

struct Bound {
    key: String,
    listener: TcpListener,
    tls: Option<Arc<Watched<rustls::ServerConfig>>>,
    tenant: Option<String>,
    unknown_client: UnknownClient,
}

/// The bound EMQX-facing listeners of a configuration.
pub struct Listeners {
    bound: Vec<Bound>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.addrs()).finish()
    }
}

fn tls_config(key: &str, files: &ServerFiles) -> Result<Arc<Watched<rustls::ServerConfig>>, ListenError> {
    let build_files = files.clone();
    let watched = Watched::new(key.to_owned(), files.paths(), move || {
        exhook_tls::server_config(&build_files, &[exhook_tls::ALPN_H2])
    })
    .map_err(|source| ListenError::Tls { key: key.to_owned(), source })?;
    watched.spawn_watch(TLS_POLL);
    Ok(watched)
}

async fn bind(key: &str, addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|source| ListenError::Bind { key: key.to_owned(), addr, source })
}

impl Listeners {
    /// Binds every listener of `config` (`[server] listen`, `[server.tls]`, tenants' own).
    /// Needs a tokio runtime (the certificate watchers).
    pub async fn bind(config: &Config) -> Result<Listeners, ListenError> {
        let mut bound = Vec::new();
        if let Some(addr) = config.server.listen {
            bound.push(Bound {
                key: "server.listen".to_owned(),
                listener: bind("server.listen", addr).await?,
                tls: None,
                tenant: None,
                unknown_client: UnknownClient::Reject,
            });
        }
        if let Some(t) = &config.server.tls {
            bound.push(Bound {
                key: "server.tls.listen".to_owned(),
                listener: bind("server.tls.listen", t.listen).await?,
                tls: Some(tls_config("server.tls", &t.files)?),
                tenant: None,
                unknown_client: t.unknown_client,
            });
        }
        for (i, t) in config.tenants.iter().enumerate().skip(1) {
            let Some(l) = &t.listener else { continue };
            let prefix = format!("tenants[{}] ({})", i - 1, t.name);
            let key = format!("{prefix}.listen");
            bound.push(Bound {
                listener: bind(&key, l.listen).await?,
                key,
                tls: match &l.tls {
                    Some(files) => Some(tls_config(&format!("{prefix}.tls"), files)?),
                    None => None,
                },
                tenant: Some(t.name.clone()),
                unknown_client: UnknownClient::Default,
            });
        }
        Ok(Listeners { bound })
    }

    /// One plaintext listener (tests, and callers that bind themselves).
    pub fn plaintext(listener: TcpListener) -> Listeners {
        Listeners {
            bound: vec![Bound {
                key: "server.listen".to_owned(),
                listener,
                tls: None,
                tenant: None,
                unknown_client: UnknownClient::Reject,
            }],
        }
    }

    /// Each listener's configuration key and bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        self.bound.iter().filter_map(|b| Some((b.key.clone(), b.listener.local_addr().ok()?))).collect()
    }

    /// The bound address of the listener configured at `key` (`server.listen`,
    /// `server.tls.listen`, `tenants[0] (a).listen`).
    pub fn addr(&self, key: &str) -> Option<SocketAddr> {
        self.bound.iter().find(|b| b.key == key).and_then(|b| b.listener.local_addr().ok())
    }

    /// Starts the accept loops, every connection taking a place under `limit`; accepted (and
    /// TLS-established) connections arrive on the returned channel. The loops stop when the
    /// receiver is dropped.
    pub(crate) fn accept(
        self,
        metrics: Arc<Metrics>,
        limit: ConnectionLimit,
    ) -> mpsc::Receiver<io::Result<CallerStream>> {
        // Bounded: when the server does not take connections, the accept loops wait
        // (and the kernel's backlog holds the rest).
        let (tx, rx) = mpsc::channel(64);
        for b in self.bound {
            tokio::spawn(accept_loop(b, tx.clone(), Arc::clone(&metrics), limit.clone()));
        }
        rx
    }
}

/// `server.max_connections` over every EMQX-facing listener, reported to `metrics`: the
/// `exhook_gateway_connections` gauge, and `limit_exceeded_total{limit="connections"}` once
/// per accepted connection that had to wait for a place.
pub(crate) fn connection_limit(max: usize, metrics: Arc<Metrics>) -> ConnectionLimit {
    ConnectionLimit::new(max, move |event| match event {
        LimitEvent::Full => {
            metrics.limit_exceeded(Limit::Connections);
            tracing::debug!(max, "server.max_connections reached; new EMQX connections wait");
        }
        LimitEvent::Opened => metrics.connection_opened(),
        LimitEvent::Closed => metrics.connection_closed(),
    })
}

async fn accept_loop(
    b: Bound,
    tx: mpsc::Sender<io::Result<CallerStream>>,
    metrics: Arc<Metrics>,
    limit: ConnectionLimit,
) {
    let Bound { key, listener, tls, tenant, unknown_client } = b;
    let Some(tls) = tls else {
        loop {
            let (stream, remote) = tokio::select! {
                c = exhook_tls::accept_tcp(&listener) => c,
                () = tx.closed() => return,
            };
            // At the limit this waits, and the loop accepts nothing else meanwhile.
            let place = tokio::select! {
                p = limit.admit() => p,
                () = tx.closed() => return,
            };
            let caller = Caller::new(Some(remote), tenant.clone(), None, unknown_client);
            if tx.send(Ok(CallerStream { io: Io::Plain(stream), caller, _place: place })).await.is_err() {
                return;
            }
        }
    };
    let failed_key = key.clone();
    let mut ready = exhook_tls::accept_tls_limited(
        listener,
        move || tls.current(),
        MAX_HANDSHAKES,
        HANDSHAKE_TIMEOUT,
        limit,
        move |remote, e| {
            metrics.identity(IdentityEvent::HandshakeFailed);
            tracing::info!(listener = %failed_key, %remote, error = %e, "TLS connection not established");
        },
    );
    while let Some((stream, remote, place)) = ready.recv().await {
        let cert_names =
            stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(exhook_tls::certificate_names);
        let caller = Caller::new(Some(remote), tenant.clone(), cert_names, unknown_client);
        if tx.send(Ok(CallerStream { io: Io::Tls(Box::new(stream)), caller, _place: place })).await.is_err() {
            return;
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection and who is on it.
pub struct CallerStream {
    io: Io,
    caller: Caller,
    /// Its place under `server.max_connections`, freed when the connection is dropped.
    _place: ConnectionPermit,
}

impl CallerStream {
    /// Who is on this connection (put into every request's extensions).
    pub(crate) fn caller(&self) -> &Caller {
        &self.caller
    }
}

impl AsyncRead for CallerStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for CallerStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
