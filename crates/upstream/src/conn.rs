//! A lean unary gRPC client on one HTTP/2 connection (hyper), used for every provider call.
//!
//! tonic's `Channel` routes each request through a `tower::buffer` worker task before the
//! HTTP/2 connection task: one more task hop (a cross-thread wake-up) per call, and a single
//! task all callers queue behind. Profiling the gateway showed that hop and tonic's streaming
//! codec machinery among the largest costs of a call, so calls go straight to hyper's HTTP/2
//! `SendRequest` with a pre-encoded body, and the reply is read in one piece. The connection is
//! opened lazily, re-opened after it closes, and opened by one caller at a time.
//!
//! `https` URLs get TLS (rustls) under the HTTP/2 connection: ALPN `h2`, the configured
//! server name (or the URL's host) verified and sent as SNI. The TLS files are re-read when
//! a connection is opened (by content; see `exhook_tls::Watched`), so a rotated client
//! certificate or CA is used by the next connection without a reload; established
//! connections keep theirs. A handshake failure is a transport failure (UNAVAILABLE) that
//! names its cause: unknown CA, expired, name mismatch, timeout.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{BufMut, Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tonic::{Code, Status};

type Sender = SendRequest<Full<Bytes>>;

/// A provider's TLS client side, shared by all its connections.
#[derive(Debug)]
pub struct TlsClient {
    config: Arc<exhook_tls::Watched<rustls::ClientConfig>>,
    /// `[providers.tls] server_name`: verified and sent as SNI instead of the URL's host.
    server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    /// Loads the provider's TLS files (an error names the key and file).
    pub fn new(provider: &str, tls: &exhook_config::ProviderTls) -> Result<TlsClient, exhook_tls::TlsError> {
        let files = tls.files.clone();
        let config = exhook_tls::Watched::new(format!("provider {provider}"), files.paths(), move || {
            exhook_tls::client_config(&files)
        })?;
        let server_name = match &tls.server_name {
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|e| exhook_tls::TlsError {
                key: "server_name",
                path: n.into(),
                problem: format!("not a DNS name or IP address ({e})"),
            })?),
            None => None,
        };
        Ok(TlsClient { config, server_name })
    }
}

/// One HTTP/2 connection to one replica.
#[derive(Debug)]
pub(crate) struct Connection {
    scheme: Scheme,
    authority: Authority,
    connect_timeout: Duration,
    tls: Option<Arc<TlsClient>>,
    sender: ArcSwapOption<Sender>,
    connecting: tokio::sync::Mutex<()>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("{what}: {e}"))
}

/// `grpc-timeout` for a duration (at most 8 digits, so the finest unit that fits).
fn grpc_timeout(d: Duration) -> HeaderValue {
    let micros = d.as_micros();
    let text = if micros < 100_000_000 {
        format!("{}u", micros.max(1))
    } else if d.as_millis() < 100_000_000 {
        format!("{}m", d.as_millis())
    } else {
        format!("{}S", d.as_secs().min(99_999_999))
    };
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("99999999S"))
}

impl Connection {
    pub(crate) fn new(url: &str, connect_timeout: Duration, tls: Option<Arc<TlsClient>>) -> Result<Connection, Status> {
        let uri: Uri = url.parse().map_err(|e| Status::invalid_argument(format!("{url}: {e}")))?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(Status::invalid_argument(format!("{url}: needs scheme, host and port")));
        };
        let tls = if scheme == Scheme::HTTPS {
            Some(tls.ok_or_else(|| Status::invalid_argument(format!("{url}: https without TLS settings")))?)
        } else {
            None
        };
        Ok(Connection {
            scheme,
            authority,
            connect_timeout,
            tls,
            sender: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// The open connection's sender, connecting first if there is none (or it closed).
    async fn sender(&self) -> Result<Sender, Status> {
        if let Some(s) = self.sender.load().as_deref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        // One caller connects; the others wait for its result instead of dialling too.
        let _turn = self.connecting.lock().await;
        if let Some(s) = self.sender.load().as_deref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let sender = self.connect().await?;
        self.sender.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }

    /// TCP (and TLS) within `connect_timeout`, then the HTTP/2 handshake.
    async fn connect(&self) -> Result<Sender, Status> {
        let started = tokio::time::Instant::now();
        let host = self.authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = self.authority.port_u16().unwrap_or(if self.scheme == Scheme::HTTPS { 443 } else { 80 });
        let stream = tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| unavailable("connect", format!("timed out after {:?}", self.connect_timeout)))?
            .map_err(|e| unavailable("connect", e))?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else { return handshake(stream).await };
        // Re-read the files if they changed (rotation): the new connection uses them.
        tls.config.refresh();
        let name = match &tls.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_owned())
                .map_err(|e| unavailable("TLS", format!("{host:?} cannot be verified as a server name ({e})")))?,
        };
        let shown = name.to_str().into_owned();
        let connector = tokio_rustls::TlsConnector::from(tls.config.current());
        let left = self.connect_timeout.saturating_sub(started.elapsed());
        let stream = tokio::time::timeout(left, connector.connect(name, stream))
            .await
            .map_err(|_| unavailable("TLS handshake", format!("timed out after {:?}", self.connect_timeout)))?
            .map_err(|e| Status::unavailable(exhook_tls::describe_handshake_error(&e, &shown)))?;
        handshake(stream).await
    }
}

/// A failed send, with the TLS cause when there is one: with TLS 1.3 a server that refuses
/// the client certificate says so only after the client's handshake completed, so the
/// alert surfaces on the first request.
fn describe_send_error(e: &hyper::Error, host: &str) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|i| i.is::<rustls::Error>()) {
                return exhook_tls::describe_handshake_error(io, host);
            }
            // tokio-rustls reports a received alert as text.
            if io.to_string().contains("fatal alert") {
                return format!(
                    "TLS: the provider refused the connection ({io}; a client certificate missing or not trusted?)"
                );
            }
        }
        source = s.source();
    }
    format!("send: {e}")
}

/// The HTTP/2 client handshake on a connected stream; the connection task is spawned.
async fn handshake<IO>(io: IO) -> Result<Sender, Status>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| unavailable("HTTP/2 handshake", e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "provider connection closed");
            }
        });
        Ok(sender)
    }
}

impl Connection {
    /// One unary call: `message` (an encoded protobuf message) to `path`; the reply's
    /// encoded message, or the gRPC status.
    pub(crate) async fn unary(&self, path: &'static str, message: Bytes, timeout: Duration) -> Result<Bytes, Status> {
        let mut sender = self.sender().await?;
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(0); // not compressed
        frame.put_u32(u32::try_from(message.len()).map_err(|_| Status::resource_exhausted("message too large"))?);
        frame.put_slice(&message);
        let uri = Uri::from_parts({
            let mut p = http::uri::Parts::default();
            p.scheme = Some(self.scheme.clone());
            p.authority = Some(self.authority.clone());
            p.path_and_query = Some(PathAndQuery::from_static(path));
            p
        })
        .map_err(|e| Status::internal(format!("uri: {e}")))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"))
            .header(header::TE, HeaderValue::from_static("trailers"))
            .header("grpc-timeout", grpc_timeout(timeout))
            .body(Full::new(frame.freeze()))
            .map_err(|e| Status::internal(format!("request: {e}")))?;
        let response = sender.send_request(request).await.map_err(|e| {
            // A dead connection is replaced on the next call.
            if sender.is_closed() {
                self.sender.store(None);
            }
            Status::unavailable(describe_send_error(&e, self.authority.host()))
        })?;
        let (parts, body) = response.into_parts();
        // Trailers-only answer (an error without a message): the status is in the headers.
        if let Some(status) = Status::from_header_map(&parts.headers).filter(|s| s.code() != Code::Ok) {
            return Err(status);
        }
        if parts.status != http::StatusCode::OK {
            return Err(Status::new(Code::Unknown, format!("HTTP status {}", parts.status)));
        }
        let collected = body.collect().await.map_err(|e| unavailable("receive", e))?;
        if let Some(status) = collected.trailers().and_then(Status::from_header_map).filter(|s| s.code() != Code::Ok) {
            return Err(status);
        }
        let data = collected.to_bytes();
        if data.len() < 5 {
            return Err(Status::internal("reply without a message"));
        }
        if data[0] != 0 {
            return Err(Status::internal("compressed reply (the gateway asks for identity)"));
        }
        let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
        if data.len() < 5 + len {
            return Err(Status::internal("truncated reply"));
        }
        Ok(data.slice(5..5 + len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_header_fits_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(300)), "300000u");
        assert_eq!(grpc_timeout(Duration::ZERO), "1u");
        assert_eq!(grpc_timeout(Duration::from_secs(5)), "5000000u");
        assert_eq!(grpc_timeout(Duration::from_secs(1000)), "1000000m");
        assert_eq!(grpc_timeout(Duration::from_secs(10_000_000)), "10000000S");
        for d in [Duration::from_nanos(1), Duration::from_secs(99), Duration::from_secs(1 << 40)] {
            let v = grpc_timeout(d);
            assert!(v.len() <= 9, "{v:?}");
            assert!(exhook_proto::codec::parse_grpc_timeout(v.to_str().unwrap()).is_some());
        }
    }

    #[test]
    fn needs_host_and_port() {
        assert!(Connection::new("http://127.0.0.1:1", Duration::from_secs(1), None).is_ok());
        assert!(Connection::new("/just/a/path", Duration::from_secs(1), None).is_err());
    }
}
