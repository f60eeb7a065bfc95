//! Accepting TLS connections without letting one slow client hold up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;

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
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Semaphore::new(max_handshakes.max(1)));
    let on_failure = Arc::new(on_failure);
    tokio::spawn(async move {
        loop {
            let (stream, remote) = tokio::select! {
                c = accept_tcp(&listener) => c,
                () = tx.closed() => return,
            };
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else { return };
            let acceptor = tokio_rustls::TlsAcceptor::from(config());
            let (tx, on_failure) = (tx.clone(), Arc::clone(&on_failure));
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send((s, remote)).await;
                    }
                    Ok(Err(e)) => on_failure(remote, HandshakeFailure::Refused(e)),
                    Err(_) => on_failure(remote, HandshakeFailure::TimedOut),
                }
            });
        }
    });
    rx
}
