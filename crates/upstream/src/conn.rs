//! A lean unary gRPC client on one HTTP/2 connection (the `h2` crate), used for every provider
//! call.
//!
//! tonic's `Channel` routes each request through a `tower::buffer` worker task before the
//! HTTP/2 connection task, and hyper's client spawns two more tasks per request (one piping
//! the request body, one for the response): task hops and wake-ups per call, and a single
//! task all callers queue behind. So calls go straight to `h2`'s `SendRequest` -- the HTTP/2
//! implementation hyper itself uses -- with a pre-encoded body sent in the same step as the
//! headers, and the reply is read in one piece in the caller's own task (callgrind: the
//! hyper client layer was about a tenth of a call's instructions). The connection is opened
//! lazily, re-opened after it closes, and opened by one caller at a time; an idle connection
//! is pinged every 30 s and dropped when a ping is not answered within 10 s.
//!
//! A reply is bounded while it arrives ([`ReplyLimit`], the provider's `max_reply_bytes`):
//! the length in its message prefix is checked on the first data frame, and a reply that
//! announces more, or sends more than it announced, is dropped at once, which resets the
//! stream (RST_STREAM CANCEL). The gateway holds at most the limit plus the 5-byte prefix
//! of it, and HTTP/2 flow control (a 2 MiB stream window) bounds what is in transit.
//!
//! `https` URLs get TLS (rustls) under the HTTP/2 connection: ALPN `h2`, the configured
//! server name (or the URL's host) verified and sent as SNI. The TLS files are re-read when
//! a connection is opened (by content; see `exhook_tls::Watched`), so a rotated client
//! certificate or CA is used by the next connection without a reload; established
//! connections keep theirs. A handshake failure is a transport failure (UNAVAILABLE) that
//! names its cause: unknown CA, expired, name mismatch, timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{BufMut, Bytes, BytesMut};
use exhook_metrics::Limit;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Uri, header};
use rustls_pki_types::ServerName;
use tonic::{Code, Status};

/// HTTP/2 flow-control windows offered to the provider (hyper's client defaults, kept when
/// the client moved to `h2`): a reply of up to 2 MiB arrives without waiting for an update.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// Keep-alive: an idle connection is pinged this often, and dropped when the pong is late.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The open connection's request handle; `closed` is set when its connection task ends.
#[derive(Clone)]
struct Sender {
    send: h2::client::SendRequest<Bytes>,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("closed", &self.is_closed()).finish()
    }
}

impl Sender {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// gRPC's message prefix: a compression flag and a 4-byte big-endian length.
const PREFIX: usize = 5;

/// The largest reply message a call accepts, and where a larger one is counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyLimit<'a> {
    /// The provider's `max_reply_bytes`, read per call (a reload may change it).
    pub(crate) max: usize,
    /// The provider's metrics (`limit_exceeded_total{limit="reply_bytes"}`), once set.
    pub(crate) metrics: Option<&'a ArcSwapOption<crate::MetricsSlot>>,
}

impl ReplyLimit<'_> {
    /// The default limit, counted nowhere (loading and health probes).
    pub(crate) const DEFAULT: ReplyLimit<'static> =
        ReplyLimit { max: exhook_proto::codec::DEFAULT_MAX_MESSAGE_BYTES, metrics: None };

    /// The refusal of a reply of `size` bytes (counted).
    fn exceeded(&self, size: usize, authority: &Authority, path: &str) -> Status {
        if let Some(slot) = self.metrics.and_then(|m| m.load_full()) {
            slot.handles.metrics().limit_exceeded(Limit::ReplyBytes);
        }
        tracing::warn!(%authority, path, size, max = self.max, "provider reply larger than max_reply_bytes refused");
        Status::resource_exhausted(format!(
            "provider reply of {size} bytes exceeds its max_reply_bytes ({} bytes)",
            self.max
        ))
    }
}

/// A reply's data frames as they arrive: the first one kept as is (no copy in the usual
/// one-frame case), later ones appended.
#[derive(Default)]
struct Received {
    first: Bytes,
    more: Option<BytesMut>,
}

impl Received {
    fn len(&self) -> usize {
        self.more.as_ref().map_or(self.first.len(), BytesMut::len)
    }

    /// Adds a data frame; `Err(size)` when the reply is now known to exceed `max`: announced
    /// larger, or carrying more than the prefix and `max`. The frame is not kept then.
    fn push(&mut self, data: Bytes, max: usize) -> Result<(), usize> {
        if data.is_empty() {
            return Ok(());
        }
        let total = self.len().saturating_add(data.len());
        if total > max.saturating_add(PREFIX) {
            return Err(self.announced_with(&data).map_or(total - PREFIX, |a| a.max(total - PREFIX)));
        }
        match (&mut self.more, self.first.is_empty()) {
            (None, true) => self.first = data,
            (None, false) => {
                let mut buf = BytesMut::with_capacity(total);
                buf.extend_from_slice(&self.first);
                buf.extend_from_slice(&data);
                self.first = Bytes::new();
                self.more = Some(buf);
            }
            (Some(buf), _) => buf.extend_from_slice(&data),
        }
        match self.announced_with(&[]) {
            Some(announced) if announced > max => Err(announced),
            _ => Ok(()),
        }
    }

    /// The length the message prefix announces, once its 5 bytes are here (with `next`).
    fn announced_with(&self, next: &[u8]) -> Option<usize> {
        let have: &[u8] = self.more.as_deref().unwrap_or(&self.first);
        let mut prefix = [0u8; PREFIX];
        let from_have = have.len().min(PREFIX);
        prefix[..from_have].copy_from_slice(&have[..from_have]);
        let from_next = (PREFIX - from_have).min(next.len());
        prefix[from_have..from_have + from_next].copy_from_slice(&next[..from_next]);
        (from_have + from_next == PREFIX)
            .then(|| u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize)
    }

    fn into_bytes(self) -> Bytes {
        self.more.map_or(self.first, BytesMut::freeze)
    }
}

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
        // Boxed: the dial (TCP, TLS, HTTP/2 handshake) is a future of kilobytes that every
        // call's state machine would otherwise carry -- and copy when it is boxed -- although
        // it runs once per connection (callgrind: about a tenth of a call's instructions
        // were that memcpy).
        let sender = Box::pin(self.connect()).await?;
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
fn describe_send_error(e: &h2::Error, host: &str) -> String {
    if let Some(io) = e.get_io() {
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
    format!("send: {e}")
}

/// The HTTP/2 client handshake on a connected stream; the connection task is spawned.
async fn handshake<IO>(io: IO) -> Result<Sender, Status>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| unavailable("HTTP/2 handshake", e))?;
    let closed = Arc::new(AtomicBool::new(false));
    let ping = connection.ping_pong();
    let flag = Arc::clone(&closed);
    tokio::spawn(async move {
        drive(connection, ping).await;
        flag.store(true, Ordering::Release);
    });
    Ok(Sender { send, closed })
}

/// Drives the connection until it ends; pings it every [`KEEPALIVE_INTERVAL`] and drops it
/// (which closes it) when the pong does not come within [`KEEPALIVE_TIMEOUT`]: a provider
/// host gone without a FIN or RST would otherwise hold calls until their timeouts.
async fn drive<IO>(connection: h2::client::Connection<IO, Bytes>, mut ping: Option<h2::PingPong>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::pin!(connection);
    let ended = |r: Result<(), h2::Error>| {
        if let Err(e) = r {
            tracing::debug!(error = %e, "provider connection closed");
        }
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE_INTERVAL, KEEPALIVE_INTERVAL);
    loop {
        tokio::select! {
            r = &mut connection => return ended(r),
            _ = tick.tick() => {}
        }
        let Some(p) = ping.as_mut() else { continue };
        // The pong arrives through the connection, so it keeps being driven meanwhile.
        let pong = tokio::time::timeout(KEEPALIVE_TIMEOUT, p.ping(h2::Ping::opaque()));
        tokio::select! {
            r = &mut connection => return ended(r),
            r = pong => if !matches!(r, Ok(Ok(_))) {
                tracing::debug!("provider connection: keep-alive ping unanswered; closing it");
                return;
            }
        }
    }
}

impl Connection {
    /// One unary call with its reply decoded as `D`, bounded by `timeout` as a whole (also
    /// sent as `grpc-timeout`): the one sequence every caller uses (provider calls, loads,
    /// health probes). The provider enforcing the `grpc-timeout` we sent (tonic answers
    /// CANCELLED, others DEADLINE_EXCEEDED) is the same timeout, seen from the other side.
    pub(crate) async fn call<D>(
        &self,
        path: &'static str,
        message: Bytes,
        timeout: Duration,
        limit: ReplyLimit<'_>,
    ) -> Result<D, crate::CallError>
    where
        D: prost::Message + Default,
    {
        use crate::CallError;
        let call = async {
            let reply = self.unary_limited(path, message, timeout, limit).await.map_err(CallError::Status)?;
            D::decode(reply).map_err(|e| CallError::Status(Status::internal(format!("undecodable reply: {e}"))))
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Err(CallError::Status(s))) if matches!(s.code(), Code::Cancelled | Code::DeadlineExceeded) => {
                Err(CallError::Timeout(timeout))
            }
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    /// One unary call: `message` (an encoded protobuf message) to `path`; the reply's
    /// encoded message, or the gRPC status. A reply message larger than `limit.max` fails the
    /// call with `RESOURCE_EXHAUSTED` (counted) as soon as that is known, without buffering it.
    pub(crate) async fn unary_limited(
        &self,
        path: &'static str,
        message: Bytes,
        timeout: Duration,
        limit: ReplyLimit<'_>,
    ) -> Result<Bytes, Status> {
        let sender = self.sender().await?;
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
            .body(())
            .map_err(|e| Status::internal(format!("request: {e}")))?;
        let failed = |e: h2::Error| {
            // A dead connection is replaced on the next call.
            if sender.is_closed() || e.is_io() || e.is_go_away() {
                self.sender.store(None);
            }
            Status::unavailable(describe_send_error(&e, self.authority.host()))
        };
        // Waits while the provider's SETTINGS_MAX_CONCURRENT_STREAMS are all in use.
        let mut send = sender.send.clone().ready().await.map_err(failed)?;
        let (response, mut stream) = send.send_request(request, false).map_err(failed)?;
        // Queued behind the headers and written with them: no task pipes the body.
        stream.send_data(frame.freeze(), true).map_err(failed)?;
        let response = response.await.map_err(failed)?;
        let (parts, mut body) = response.into_parts();
        // Trailers-only answer (an error without a message): the status is in the headers.
        if let Some(status) = Status::from_header_map(&parts.headers).filter(|s| s.code() != Code::Ok) {
            return Err(status);
        }
        if parts.status != http::StatusCode::OK {
            return Err(Status::new(Code::Unknown, format!("HTTP status {}", parts.status)));
        }
        let mut received = Received::default();
        while let Some(data) = body.data().await {
            let data = data.map_err(|e| unavailable("receive", e))?;
            // The window refills as replies are taken: what is in transit stays bounded.
            let _ = body.flow_control().release_capacity(data.len());
            // Returning drops `body` and `stream`: h2 resets the stream (CANCEL), and what it
            // had buffered of it is released.
            received.push(data, limit.max).map_err(|size| limit.exceeded(size, &self.authority, path))?;
        }
        let trailers = body.trailers().await.map_err(|e| unavailable("receive", e))?;
        if let Some(status) = trailers.as_ref().and_then(Status::from_header_map).filter(|s| s.code() != Code::Ok) {
            return Err(status);
        }
        exhook_proto::codec::decode_unary_frame(&received.into_bytes(), limit.max).map_err(|e| match e {
            exhook_proto::codec::FrameError::TooLarge { announced, .. } => {
                limit.exceeded(announced, &self.authority, path)
            }
            e => Status::internal(e.to_string()),
        })
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

    fn frame(announced: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&announced.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn replies_are_bounded_while_they_arrive() {
        // One frame: kept without a copy.
        let one = Bytes::from(frame(3, b"abc"));
        let mut r = Received::default();
        r.push(one.clone(), 3).unwrap();
        assert_eq!(r.into_bytes().as_ptr(), one.as_ptr());
        // The prefix split over frames, announcing one byte too many: refused on the frame
        // that completes the prefix, before any payload.
        let big = frame(1025, &[]);
        let mut r = Received::default();
        r.push(Bytes::copy_from_slice(&big[..2]), 1024).unwrap();
        assert_eq!(r.push(Bytes::copy_from_slice(&big[2..]), 1024), Err(1025));
        // A reply sending more than it announced: refused once past the limit and the prefix.
        let mut r = Received::default();
        r.push(Bytes::from(frame(10, &[7; 10])), 16).unwrap();
        r.push(Bytes::from_static(&[7; 6]), 16).unwrap();
        assert_eq!(r.push(Bytes::from_static(&[7; 1]), 16), Err(17));
        // Exactly at the limit, in pieces: accepted and joined.
        let exact = frame(16, &[1; 16]);
        let mut r = Received::default();
        for piece in exact.chunks(4) {
            r.push(Bytes::copy_from_slice(piece), 16).unwrap();
        }
        r.push(Bytes::new(), 16).unwrap();
        assert_eq!(&r.into_bytes()[..], &exact[..]);
    }

    #[test]
    fn needs_host_and_port() {
        assert!(Connection::new("http://127.0.0.1:1", Duration::from_secs(1), None).is_ok());
        assert!(Connection::new("/just/a/path", Duration::from_secs(1), None).is_err());
    }
}
