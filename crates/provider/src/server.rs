//! Serving a provider: v1, v2, v3 and the health check on one port, plaintext (h2c) or TLS,
//! until a shutdown signal, then draining.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use exhook_hooks::{Hook, HookKind};
use futures::{FutureExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpIncoming};

use crate::Provider;
use crate::health::Health;
use crate::service::{HookService, Notifications, PackageV1, PackageV2, PackageV3, Registration, Shared};

/// Why a provider could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as given.
        addr: String,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A TLS file is unusable (names the key and file, never the content).
    #[error("TLS: {0}")]
    Tls(#[from] exhook_tls::TlsError),
    /// A filter of [`Provider::topics`] is not a valid MQTT topic filter.
    #[error("topic filter {filter:?}: {source}")]
    TopicFilter {
        /// The filter.
        filter: String,
        /// What is wrong with it.
        source: exhook_topic::FilterError,
    },
    /// The gRPC server failed.
    #[error("serving: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The shutdown signals (SIGINT, SIGTERM) could not be installed.
    #[error("cannot install the shutdown signal handler: {0}")]
    Signal(std::io::Error),
}

/// The files of a TLS listener: the same options as the gateway's `[server.tls]` (TLS 1.3 and
/// 1.2 with rustls and ring, ALPN `h2`, client certificates required when `client_ca_file` is
/// set).
pub type TlsFiles = exhook_tls::ServerFiles;

/// Serves `provider` on `addr` (v1, v2, v3 and the health check on one port, h2c) until
/// SIGINT or SIGTERM, then drains. [`Server`] has the options (TLS, drain timeout, queues).
pub async fn serve<P: Provider>(addr: impl ToSocketAddrs + std::fmt::Display, provider: P) -> Result<(), ServeError> {
    Server::new(provider).serve(addr).await
}

/// A provider server's options; [`Server::bind`] opens the port.
pub struct Server<P> {
    provider: P,
    tls: Option<Arc<exhook_tls::rustls::ServerConfig>>,
    drain_timeout: Duration,
    shards: usize,
    queue_depth: usize,
}

impl<P: Provider> Server<P> {
    /// Plaintext (h2c), 10 s to drain, 16 notification shards of 1024 handlers.
    pub fn new(provider: P) -> Self {
        Server { provider, tls: None, drain_timeout: Duration::from_secs(10), shards: 16, queue_depth: 1024 }
    }

    /// Serves TLS with the gateway's rustls options, from PEM files.
    pub fn tls(mut self, files: &TlsFiles) -> Result<Self, ServeError> {
        let config = exhook_tls::server_config(files, &[exhook_tls::ALPN_H2])?;
        self.tls = Some(Arc::new(config));
        Ok(self)
    }

    /// Serves TLS with a rustls configuration of your own; its ALPN is set to `h2` (gRPC).
    pub fn tls_config(mut self, mut config: exhook_tls::rustls::ServerConfig) -> Self {
        config.alpn_protocols = vec![exhook_tls::ALPN_H2.to_vec()];
        self.tls = Some(Arc::new(config));
        self
    }

    /// How long a shutdown waits for calls in flight and queued notifications (default 10 s).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Notification queues: `shards` (a client always uses the same one, so its
    /// notifications run in order) of `depth` handlers each; a full shard holds the
    /// acknowledgement back until there is room. Defaults 16 and 1024.
    pub fn notification_queues(mut self, shards: usize, depth: usize) -> Self {
        self.shards = shards.max(1);
        self.queue_depth = depth.max(1);
        self
    }

    /// Binds and serves until SIGINT or SIGTERM, then drains.
    pub async fn serve(self, addr: impl ToSocketAddrs + std::fmt::Display) -> Result<(), ServeError> {
        self.bind(addr).await?.run().await
    }

    /// Opens the port (`127.0.0.1:0` picks a free one; see [`Listening::local_addr`]) and
    /// checks the registration; nothing is served until [`Listening::run`].
    pub async fn bind(self, addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Listening<P>, ServeError> {
        let registration = registration(&self.provider)?;
        let shown = addr.to_string();
        let bind_error = |source| ServeError::Bind { addr: shown.clone(), source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        Ok(Listening { server: self, listener, local, registration })
    }
}

/// The registration from `HOOKS` and `topics()`, checked.
fn registration<P: Provider>(provider: &P) -> Result<Registration, ServeError> {
    let mut hooks: Vec<Hook> = Vec::new();
    for h in P::HOOKS.iter().copied().filter(|h| h.kind() != HookKind::Lifecycle) {
        if !hooks.contains(&h) {
            hooks.push(h);
        }
    }
    let topics = provider.topics();
    for filter in &topics {
        exhook_topic::validate_filter(filter)
            .map_err(|source| ServeError::TopicFilter { filter: filter.clone(), source })?;
    }
    if hooks.is_empty() {
        tracing::warn!("the provider implements no hook: EMQX will never call it");
    } else if !topics.is_empty() && !hooks.iter().any(|h| h.is_message_hook()) {
        tracing::warn!("topics() is set but no message.* hook is implemented: the filters apply to nothing");
    }
    Ok(Registration { hooks, topics })
}

/// A bound provider server.
pub struct Listening<P> {
    server: Server<P>,
    listener: TcpListener,
    local: SocketAddr,
    registration: Registration,
}

impl<P: Provider> Listening<P> {
    /// The address bound (the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The hooks registered in `OnProviderLoaded`.
    pub fn hooks(&self) -> &[Hook] {
        &self.registration.hooks
    }

    /// Serves until SIGINT or SIGTERM, then drains.
    pub async fn run(self) -> Result<(), ServeError> {
        let signal = shutdown_signal().map_err(ServeError::Signal)?;
        self.run_until(signal).await
    }

    /// Serves until `signal` completes, then drains: the health check turns NOT_SERVING, the
    /// port stops accepting, open connections are told to go away (HTTP/2 GOAWAY) and calls
    /// in flight finish, then queued notification handlers run; all within the drain timeout.
    pub async fn run_until(self, signal: impl Future<Output = ()> + Send + 'static) -> Result<(), ServeError> {
        let Listening { server, listener, local, registration } = self;
        let (notifications, shard_tasks) = Notifications::start(server.shards, server.queue_depth);
        let shared = Arc::new(Shared {
            provider: Arc::new(server.provider),
            registration,
            notifications,
            serving: AtomicBool::new(true),
        });
        let router = tonic::transport::Server::builder()
            .add_service(HookService::<P, PackageV1>::new(Arc::clone(&shared)))
            .add_service(HookService::<P, PackageV2>::new(Arc::clone(&shared)))
            .add_service(HookService::<P, PackageV3>::new(Arc::clone(&shared)))
            .add_service(Health::new(Arc::clone(&shared)));
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<Instant>();
        let health = Arc::clone(&shared);
        let stop = async move {
            signal.await;
            health.serving.store(false, Ordering::Release);
            tracing::info!("shutting down: draining calls in flight and queued notifications");
            let _ = stopping_tx.send(Instant::now());
        };
        tracing::info!(addr = %local, tls = server.tls.is_some(), "serving emqx.exhook.v1, v2, v3 and grpc.health.v1");
        // The service clones inside the router hold the notification queues open; they are
        // dropped when `serve` returns, which lets the shard tasks finish what is queued.
        drop(shared);
        let serving = async move {
            match server.tls {
                Some(config) => {
                    let incoming = exhook_tls::accept_tls(
                        listener,
                        move || Arc::clone(&config),
                        256,
                        Duration::from_secs(10),
                        |peer, failure| tracing::warn!(%peer, "{failure}"),
                    );
                    let incoming = tokio_stream::wrappers::ReceiverStream::new(incoming)
                        .map(|(stream, _)| Ok::<_, std::io::Error>(TlsIo(stream)));
                    router.serve_with_incoming_shutdown(incoming, stop).await
                }
                None => {
                    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                    router.serve_with_incoming_shutdown(incoming, stop).await
                }
            }
        };
        // One drain deadline from the signal for connections and queued handlers together.
        let drain = server.drain_timeout;
        let deadline = async move {
            match stopping_rx.await {
                Ok(at) => at + drain,
                // `serve` ended without the signal (an error): nothing left to wait for.
                Err(_) => Instant::now(),
            }
        };
        let deadline = deadline.shared();
        let result = tokio::select! {
            r = serving => r,
            _ = async { tokio::time::sleep_until(deadline.clone().await).await } => {
                tracing::warn!(?drain, "drain timeout: stopped waiting for the connections still open");
                Ok(())
            }
        };
        let queued = futures::future::join_all(shard_tasks);
        let at = deadline.now_or_never().unwrap_or_else(|| Instant::now() + drain);
        if tokio::time::timeout_at(at, queued).await.is_err() {
            tracing::warn!(?drain, "drain timeout: queued notifications were not all handled");
        }
        result.map_err(ServeError::from)
    }
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM (what Kubernetes and systemd send).
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// A server-side TLS connection tonic can serve (tonic's own TLS types are behind a feature
/// the workspace does not enable; the handshake is exhook-tls's, as in the gateway).
struct TlsIo(exhook_tls::tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsIo {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for TlsIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
