//! One EMQX connection, served on HTTP/2 by the `h2` crate directly.
//!
//! Each call of the connection runs inside the connection's own task (a `FuturesUnordered`
//! beside the connection's I/O), from its request headers to the provider call and its
//! answer: no task is spawned per call and no channel sits between EMQX's request and the
//! provider call. hyper's server (under tonic's) spawned a task per stream and routed it
//! through tonic's and axum's layers; callgrind put that machinery at about a tenth of a
//! call's instructions (`scripts/callgrind.sh`). The HTTP/2 protocol itself stays `h2`'s,
//! the implementation hyper uses.
//!
//! The rules of a connection's life:
//! * a stream whose path is no RPC of the three packages is answered `UNIMPLEMENTED`;
//! * a stream EMQX resets (its `request_timeout` passed) is dropped with its call, as
//!   hyper did: the provider call in flight is cancelled (its stream reset) too;
//! * at shutdown the connection is closed gracefully: GOAWAY (h2 sends the two-step form,
//!   so requests already on the wire are still taken), every accepted call answered, then
//!   the connection ends when EMQX has nothing left on it; a connection that arrives while
//!   draining is served the same way (GOAWAY right after its handshake), never dropped with
//!   its first requests on it;
//! * the connection ends when EMQX closes it or on a protocol error (h2 sends GOAWAY).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use http::{HeaderMap, HeaderValue};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Status;

use crate::Shared;
use crate::listen::{CallerStream, HANDSHAKE_TIMEOUT};
use crate::service::{Answer, hook_of_path, route};

/// Flow-control windows offered to EMQX (hyper's server defaults, which the gateway used
/// before it served on `h2` directly): 1 MiB per stream and per connection.
const WINDOW: u32 = 1024 * 1024;
/// Largest header block accepted (hyper's default): EMQX sends a handful of short headers.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Serves `io` until EMQX closes it, a protocol error ends it, or `stopping` turns true
/// (then gracefully: see the module doc).
pub(crate) async fn serve_connection(
    shared: Arc<Shared>,
    io: CallerStream,
    max_streams: u32,
    mut stopping: watch::Receiver<bool>,
) {
    let caller = io.caller().clone();
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(max_streams)
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .handshake::<_, Bytes>(io);
    // Not cut short by `stopping`: a connection that arrives while draining carries requests
    // already, and is served (with GOAWAY at once) like the others.
    let mut connection = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "EMQX connection: HTTP/2 handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(timeout = ?HANDSHAKE_TIMEOUT, "EMQX connection: no HTTP/2 preface in time");
            return;
        }
    };
    let mut calls = FuturesUnordered::new();
    let mut closing = *stopping.borrow();
    if closing {
        connection.graceful_shutdown();
    }
    loop {
        tokio::select! {
            accepted = connection.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    let mut request = request;
                    request.extensions_mut().insert(caller.clone());
                    calls.push(call(Arc::clone(&shared), request, respond));
                }
                // h2 reports only connection-level errors here (a stream's errors reach its
                // call): the connection is over.
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "EMQX connection ended");
                    break;
                }
                // Closed by EMQX, or gracefully after the last call.
                None => break,
            },
            Some(()) = calls.next(), if !calls.is_empty() => {}
            _ = stopping.wait_for(|s| *s), if !closing => {
                closing = true;
                connection.graceful_shutdown();
            }
        }
    }
}

/// One call: the request through [`route`] (raced with EMQX resetting the stream), then the
/// answer written as HEADERS, DATA and trailers, or as one trailers-only HEADERS.
async fn call(
    shared: Arc<Shared>,
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let received = Instant::now();
    let answer = match hook_of_path(request.uri().path()) {
        None => Answer::unimplemented(),
        Some((version, hook)) => {
            // One snapshot per call: a reload never changes a chain half-way through.
            let runtime = shared.current();
            let request = request.map(RequestBody::new);
            let routed = route(runtime, version, hook, received, request);
            tokio::select! {
                answer = routed => answer,
                // EMQX gave up on the call (reset): drop it, and the provider call with it.
                _ = std::future::poll_fn(|cx| respond.poll_reset(cx)) => return,
            }
        }
    };
    // Errors here mean the stream or the connection is gone: nothing is left to tell EMQX.
    match answer {
        Answer::Message(message) => {
            let Ok(mut stream) = respond.send_response(response_head(None), false) else { return };
            if stream.send_data(message, false).is_ok() {
                let mut trailers = HeaderMap::with_capacity(1);
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                let _ = stream.send_trailers(trailers);
            }
        }
        Answer::Status(status) => {
            let _ = respond.send_response(response_head(Some(&status)), true);
        }
    }
}

/// `200`, `content-type: application/grpc`, and for an error its `grpc-status` and
/// `grpc-message` (a trailers-only response).
fn response_head(status: Option<&Status>) -> http::Response<()> {
    let mut head = http::Response::new(());
    let headers = head.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    if let Some(status) = status
        && let Err(e) = status.add_header(headers)
    {
        tracing::debug!(error = %e, "a status that cannot be written as headers; answering UNKNOWN");
        headers.insert("grpc-status", HeaderValue::from_static("2"));
    }
    head
}

/// An HTTP/2 request stream as an `http_body::Body`: data frames (each one's room given back
/// to EMQX's flow-control window as it is taken), then the trailers.
struct RequestBody {
    stream: h2::RecvStream,
    data_done: bool,
}

impl RequestBody {
    fn new(stream: h2::RecvStream) -> Self {
        RequestBody { stream, data_done: false }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match this.stream.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = this.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => this.data_done = true,
            }
        }
        match this.stream.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }
}
