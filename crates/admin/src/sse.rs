//! Server-sent events for live traces: the server side (a viewer's queue as an SSE body) and
//! the client side of `exhook-gateway trace` (HTTP/1.1 over a plain TCP stream, de-chunked,
//! parsed into events). No HTTP client crate: the client needs one GET and a streamed body.
//!
//! Frames the server sends, in order:
//! * `event: open` with `{"filter": …}` once the viewer is registered (a client may start
//!   the traffic it wants to see after this);
//! * a plain `data: {TraceEvent}` per event;
//! * `event: dropped` with `{"dropped": n, "total": t}` before the next event (or at the next
//!   keep-alive) when events were dropped because this viewer read too slowly;
//! * `: keep-alive` comments every [`KEEP_ALIVE`] while nothing happens.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::trace::{TraceEvent, TraceFilter, ViewerGuard};

/// How often an idle stream says it is alive (and reports drops without a following event).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A viewer's events as the frames of an SSE body; ends (and closes the viewer) when the
/// client goes away and the body is dropped.
pub fn stream(
    guard: ViewerGuard,
    rx: mpsc::Receiver<std::sync::Arc<TraceEvent>>,
) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
    futures::stream::unfold((guard, rx, tick, false), |(guard, mut rx, mut tick, opened)| async move {
        if !opened {
            let open = serde_json::json!({ "filter": guard.viewer().filter() });
            let frame = format!("event: open\ndata: {open}\n\n");
            return Some((Ok(Bytes::from(frame)), (guard, rx, tick, true)));
        }
        let frame = tokio::select! {
            event = rx.recv() => {
                let event = event?;
                let mut frame = dropped_frame(&guard);
                // Serializing plain data cannot fail.
                let json = serde_json::to_string(&*event).unwrap_or_default();
                frame.push_str(&format!("data: {json}\n\n"));
                frame
            }
            _ = tick.tick() => {
                let frame = dropped_frame(&guard);
                if frame.is_empty() { ": keep-alive\n\n".to_owned() } else { frame }
            }
        };
        Some((Ok(Bytes::from(frame)), (guard, rx, tick, true)))
    })
}

fn dropped_frame(guard: &ViewerGuard) -> String {
    match guard.viewer().take_dropped() {
        0 => String::new(),
        n => format!("event: dropped\ndata: {{\"dropped\":{n},\"total\":{}}}\n\n", guard.viewer().dropped_total()),
    }
}

/// One SSE event as parsed by the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// `event:` (empty for the default `message`).
    pub event: String,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// Incremental SSE parser: feed it lines, get events at blank lines.
#[derive(Debug, Default)]
pub struct SseParser {
    current: SseEvent,
    has_data: bool,
}

impl SseParser {
    /// Takes one line (without its line ending); an event when the line ends one.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let done = std::mem::take(&mut self.current);
            return std::mem::take(&mut self.has_data).then_some(done);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.current.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

/// Why the trace client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The admin URL is not `http://host:port`.
    #[error("admin URL {0:?}: expected http://host:port (https is not supported by this command)")]
    Url(String),
    /// Connecting, sending or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The gateway refused the trace (401: token, 400: filter, 503: too many viewers).
    #[error("the gateway answered {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Its explanation.
        body: String,
    },
    /// The stream ended (the gateway stopped).
    #[error("the gateway closed the trace")]
    Closed,
}

/// `host:port` of an `http://` admin URL (a trailing `/` or path is ignored).
pub fn authority(url: &str) -> Result<&str, ClientError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| ClientError::Url(url.to_owned()))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() { Err(ClientError::Url(url.to_owned())) } else { Ok(host) }
}

/// The query string for `filter` (percent-encoded).
pub fn query(filter: &TraceFilter) -> String {
    let parts = [("clientid", &filter.clientid), ("username", &filter.username), ("topic", &filter.topic)];
    parts
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", percent_encode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Follows a live trace at `admin` (the admin listener's `http://host:port`), calling `on`
/// with every SSE event until the stream ends or `on` returns `false`.
pub async fn follow(
    admin: &str,
    filter: &TraceFilter,
    token: Option<&str>,
    mut on: impl FnMut(SseEvent) -> bool,
) -> Result<(), ClientError> {
    let host = authority(admin)?;
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!(
        "GET /api/v1/trace?{} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n{auth}Connection: close\r\n\r\n",
        query(filter)
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status: u16 = line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(ClientError::Closed);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("transfer-encoding")
            && v.trim().eq_ignore_ascii_case("chunked")
        {
            chunked = true;
        }
    }
    if status != 200 {
        let mut body = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), reader.read_to_end(&mut body)).await;
        let body = String::from_utf8_lossy(&body).into_owned();
        let body = if chunked { dechunk(&body) } else { body };
        return Err(ClientError::Refused { status, body: body.trim().to_owned() });
    }
    let mut parser = SseParser::default();
    let mut pending = String::new();
    let mut chunk = Vec::new();
    loop {
        // The body's next piece: one chunk (chunked) or whatever arrives (not chunked).
        chunk.clear();
        if chunked {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Err(ClientError::Closed);
            }
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).unwrap_or(0);
            if size == 0 {
                return Err(ClientError::Closed);
            }
            chunk.resize(size + 2, 0);
            reader.read_exact(&mut chunk).await?;
            chunk.truncate(size);
        } else {
            let mut buf = [0u8; 4096];
            let n = reader.read(&mut buf).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            chunk.extend_from_slice(&buf[..n]);
        }
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let l: String = pending.drain(..=end).collect();
            if let Some(event) = parser.line(l.trim_end_matches(['\r', '\n']))
                && !on(event)
            {
                return Ok(());
            }
        }
    }
}

/// A whole chunked body, de-chunked (for short error answers).
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// What `exhook-gateway trace` prints for one SSE event (`None`: nothing to print).
pub fn render(event: &SseEvent) -> Option<String> {
    match event.event.as_str() {
        "open" => Some(format!("# tracing {}", event.data)),
        "dropped" => Some(format!("# viewer too slow: events dropped {}", event.data)),
        "" | "message" => Some(match serde_json::from_str::<TraceEvent>(&event.data) {
            Ok(e) => e.line(),
            Err(_) => event.data.clone(),
        }),
        _ => None,
    }
}

/// Prints a live trace to `out`, one line per event, until the gateway closes it.
pub async fn print_trace(
    admin: &str,
    filter: &TraceFilter,
    token: Option<&str>,
    mut out: impl std::io::Write,
) -> Result<(), ClientError> {
    follow(admin, filter, token, |event| {
        if let Some(line) = render(&event) {
            // A closed stdout (`| head`) ends the trace.
            return writeln!(out, "{line}").and_then(|_| out.flush()).is_ok();
        }
        true
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_parsed_across_lines_and_comments() {
        let mut p = SseParser::default();
        let mut got = Vec::new();
        for l in ["event: open", "data: {\"a\":1}", "", ": keep-alive", "", "data: x", "data: y", ""] {
            got.extend(p.line(l));
        }
        assert_eq!(
            got,
            [
                SseEvent { event: "open".into(), data: "{\"a\":1}".into() },
                SseEvent { event: String::new(), data: "x\ny".into() }
            ]
        );
    }

    #[test]
    fn urls_and_queries() {
        assert_eq!(authority("http://127.0.0.1:9100/").unwrap(), "127.0.0.1:9100");
        assert!(authority("https://h:1").is_err());
        assert!(authority("http://").is_err());
        let f = TraceFilter { clientid: Some("dev/1 a".into()), topic: Some("a/#".into()), username: None };
        assert_eq!(query(&f), "clientid=dev%2F1%20a&topic=a%2F%23");
        assert_eq!(TraceFilter::parse(Some(&query(&f))).unwrap(), f, "the server reads back what the client sends");
        assert_eq!(dechunk("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n"), "hello!");
    }

    #[test]
    fn rendered_lines() {
        let dropped = SseEvent { event: "dropped".into(), data: "{\"dropped\":3,\"total\":3}".into() };
        assert!(render(&dropped).unwrap().contains("dropped"));
        assert_eq!(render(&SseEvent { event: "ping".into(), data: String::new() }), None);
    }
}
