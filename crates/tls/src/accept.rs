//! Accepting TLS connections without letting one slow client hold up the others, and holding
//! the number of open connections under a limit shared by several listeners.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};
use tokio_rustls::server::TlsStream;

/// What a [`ConnectionLimit`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitEvent {
    /// A connection was accepted while the limit was reached: it waits for a place, and its
    /// listener accepts nothing else meanwhile (later connections wait in the kernel's backlog).
    Full,
    /// A connection got a place.
    Opened,
    /// A connection with a place closed (its [`ConnectionPermit`] was dropped).
    Closed,
}

struct LimitInner {
    places: Arc<Semaphore>,
    events: Box<dyn Fn(LimitEvent) + Send + Sync>,
}

/// Open connections at most, over every listener it is given to.
///
/// At the limit a listener stops accepting instead of accepting and closing: the connection
/// it already accepted waits for a place, the following ones wait in the kernel's accept
/// backlog, and each gets in when another closes. EMQX treats a refused or closed connection as
/// a failed exhook server (its `failed_action`, `deny` by default, then applies to every
/// client), while a connection that waits is served as soon as there is room, within EMQX's
/// own request timeout.
#[derive(Clone)]
pub struct ConnectionLimit {
    inner: Arc<LimitInner>,
}

impl std::fmt::Debug for ConnectionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimit").field("free", &self.inner.places.available_permits()).finish()
    }
}

impl ConnectionLimit {
    /// At most `max` connections open at once (at least 1); `events` hears every [`LimitEvent`].
    pub fn new(max: usize, events: impl Fn(LimitEvent) + Send + Sync + 'static) -> ConnectionLimit {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionLimit {
            inner: Arc::new(LimitInner { places: Arc::new(Semaphore::new(max)), events: Box::new(events) }),
        }
    }

    /// A place for one accepted connection, waiting for one to free up when there is none
    /// (reported once as [`LimitEvent::Full`]). Cancel-safe.
    pub async fn admit(&self) -> ConnectionPermit {
        let places = Arc::clone(&self.inner.places);
        let permit = match Arc::clone(&places).try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                (self.inner.events)(LimitEvent::Full);
                match places.acquire_owned().await {
                    Ok(p) => p,
                    // Never closed (it is private to the limit); were it, nobody would get in.
                    Err(_) => std::future::pending().await,
                }
            }
        };
        (self.inner.events)(LimitEvent::Opened);
        ConnectionPermit { _place: permit, limit: Arc::clone(&self.inner) }
    }

    /// Places free now.
    pub fn free(&self) -> usize {
        self.inner.places.available_permits()
    }
}

/// One open connection's place under a [`ConnectionLimit`]: keep it as long as the connection
/// lives; dropping it frees the place (and reports [`LimitEvent::Closed`]).
pub struct ConnectionPermit {
    _place: OwnedSemaphorePermit,
    limit: Arc<LimitInner>,
}

impl std::fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionPermit")
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        (self.limit.events)(LimitEvent::Closed);
    }
}

/// Why a TLS connection was not established.
#[derive(Debug)]
pub enum HandshakeFailure {
    /// The handshake failed (no, expired or untrusted client certificate; no shared ALPN …).
    Refused(std::io::Error),
    /// It did not finish within the timeout.
    TimedOut,
}

impl std::fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeFailure::Refused(e) => write!(f, "TLS handshake refused: {e}"),
            HandshakeFailure::TimedOut => f.write_str("TLS handshake timed out"),
        }
    }
}

/// The next TCP connection on `listener`, with TCP_NODELAY set (Nagle's algorithm meets the
/// peer's delayed ACKs otherwise: 40 ms stalls). Accept errors (out of file descriptors and the
/// like) are logged and retried after 50 ms instead of spinning.
pub async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                return (stream, remote);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts TCP connections on `listener` (TCP_NODELAY set) and completes each TLS handshake
/// in its own task, with the configuration `config()` returns at that moment (so a rotation
/// applies to the next handshake), at most `max_handshakes` at once, each within `timeout`.
/// Established connections arrive on the returned channel (bounded: when nobody takes them,
/// accepting waits); failures go to `on_failure`. Everything stops when the receiver is dropped.
pub fn accept_tls(
    listener: TcpListener,
    config: impl Fn() -> Arc<rustls::ServerConfig> + Send + 'static,
    max_handshakes: usize,
    timeout: Duration,
    on_failure: impl Fn(SocketAddr, HandshakeFailure) + Send + Sync + 'static,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    spawn_accept(listener, config, max_handshakes, timeout, None, on_failure, |stream, remote, _| {
        Some((stream, remote))
    })
}

/// As [`accept_tls`], each connection taking a place under `limit` as soon as it is accepted
/// (before its handshake: a handshake holds a socket too). The place travels with the
/// established connection; a failed handshake frees it.
pub fn accept_tls_limited(
    listener: TcpListener,
    config: impl Fn() -> Arc<rustls::ServerConfig> + Send + 'static,
    max_handshakes: usize,
    timeout: Duration,
    limit: ConnectionLimit,
    on_failure: impl Fn(SocketAddr, HandshakeFailure) + Send + Sync + 'static,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr, ConnectionPermit)> {
    spawn_accept(listener, config, max_handshakes, timeout, Some(limit), on_failure, |stream, remote, permit| {
        // `limit` is set, so every connection has a place.
        permit.map(|p| (stream, remote, p))
    })
}

/// The accept loop behind [`accept_tls`] and [`accept_tls_limited`]; `deliver` shapes what
/// goes on the channel (`None`: nothing).
fn spawn_accept<T: Send + 'static>(
    listener: TcpListener,
    config: impl Fn() -> Arc<rustls::ServerConfig> + Send + 'static,
    max_handshakes: usize,
    timeout: Duration,
    limit: Option<ConnectionLimit>,
    on_failure: impl Fn(SocketAddr, HandshakeFailure) + Send + Sync + 'static,
    deliver: fn(TlsStream<TcpStream>, SocketAddr, Option<ConnectionPermit>) -> Option<T>,
) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Semaphore::new(max_handshakes.max(1)));
    let on_failure = Arc::new(on_failure);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = tokio::select! {
                c = accept_tcp(&listener) => c,
                () = tx.closed() => return,
            };
            let place = match &limit {
                Some(limit) => tokio::select! {
                    p = limit.admit() => Some(p),
                    () = tx.closed() => return,
                },
                None => None,
            };
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
            let acceptor = tokio_rustls::TlsAcceptor::from(config());
            let (tx, on_failure) = (tx.clone(), Arc::clone(&on_failure));
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        if let Some(item) = deliver(s, remote, place) {
                            let _ = tx.send(item).await;
                        }
                    }
                    Ok(Err(e)) => on_failure(remote, HandshakeFailure::Refused(e)),
                    Err(_) => on_failure(remote, HandshakeFailure::TimedOut),
                }
            });
        }
    });
    rx
}

#[cfg(test)]
mod limit_tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn a_connection_waits_for_a_place_and_gets_the_next_one() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&events);
        let limit = ConnectionLimit::new(1, move |e| seen.lock().unwrap().push(e));
        let first = limit.admit().await;
        assert_eq!(limit.free(), 0);
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.admit().await }
        });
        // The waiting one has reported itself before it parks: that is the signal.
        while !events.lock().unwrap().contains(&LimitEvent::Full) {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        assert_eq!(limit.free(), 0);
        drop(second);
        assert_eq!(limit.free(), 1);
        use LimitEvent::*;
        assert_eq!(*events.lock().unwrap(), [Opened, Full, Closed, Opened, Closed]);
    }
}
