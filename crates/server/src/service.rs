//! The EMQX-facing gRPC service: one generic `HookProvider` per package, each a thin adapter
//! that decodes into the internal model and hands the call to the [`Runtime`].
//!
//! A request larger than `server.max_request_bytes` is answered `RESOURCE_EXHAUSTED` as soon
//! as its length prefix arrives ([`LimitedBody`]): none of it is buffered, and no provider
//! sees it.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use exhook_hooks::{Hook, HookRequest, ValuedRequest, Version, convert};
use exhook_metrics::{Limit, Metrics};
use exhook_proto::codec::FrameError;
use exhook_proto::model::{self, EmptySuccess, LoadedResponse, ValuedResponse};
use exhook_proto::v1;
use tokio::time::Instant;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::Shared;
use crate::deadline::deadline_for;
use crate::exec::Runtime;
use crate::listen::Caller;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A package the gateway serves; selects the gRPC service name.
pub trait Package: Send + Sync + 'static {
    /// The package.
    const VERSION: Version;
    /// `<package>.HookProvider`.
    const NAME: &'static str;
}

macro_rules! packages {
    ($($name:ident => $v:ident),*) => {$(
        #[doc = concat!("Marker for `", stringify!($v), "`.")]
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl Package for $name {
            const VERSION: Version = Version::$v;
            const NAME: &'static str = Version::$v.service();
        }
    )*};
}
packages!(PackageV1 => V1, PackageV2 => V2, PackageV3 => V3);

/// `HookProvider` of one package, backed by the shared runtime.
pub struct HookService<P> {
    shared: Arc<Shared>,
    _package: PhantomData<P>,
}

impl<P> HookService<P> {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        HookService { shared, _package: PhantomData }
    }
}

impl<P> Clone for HookService<P> {
    fn clone(&self) -> Self {
        HookService { shared: Arc::clone(&self.shared), _package: PhantomData }
    }
}

impl<P: Package> NamedService for HookService<P> {
    const NAME: &'static str = P::NAME;
}

impl<P, B> tower::Service<http::Request<B>> for HookService<P>
where
    P: Package,
    B: http_body::Body + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let received = Instant::now();
        let method = req.uri().path().rsplit('/').next().unwrap_or("");
        let Some(hook) = Hook::from_rpc(P::VERSION, method) else {
            return Box::pin(async { Ok(Answer::unimplemented().into_http()) });
        };
        // One snapshot per call: a reload never changes a chain half-way through.
        let runtime = self.shared.current();
        Box::pin(async move { Ok(route(runtime, P::VERSION, hook, received, req).await.into_http()) })
    }
}

/// What a call answers: its one encoded message (with the gRPC prefix), or a status.
pub(crate) enum Answer {
    /// `grpc-status: 0` with this message.
    Message(Bytes),
    /// An error: a trailers-only response.
    Status(Status),
}

impl Answer {
    /// The answer to a path that names no RPC of the three packages.
    pub(crate) fn unimplemented() -> Answer {
        Answer::Status(Status::unimplemented("Method not found!"))
    }

    /// The answer as an HTTP response (the tower service's form; the HTTP/2 server writes
    /// the same frames itself, see `connection.rs`).
    fn into_http(self) -> http::Response<Body> {
        match self {
            Answer::Message(message) => {
                let mut response = http::Response::new(Body::new(UnaryBody { data: Some(message), trailers: true }));
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
                response
            }
            Answer::Status(status) => status.into_http(),
        }
    }
}

/// The path's package and hook: `/emqx.exhook.v3.HookProvider/OnClientAuthenticate`.
pub(crate) fn hook_of_path(path: &str) -> Option<(Version, Hook)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let version = [Version::V1, Version::V2, Version::V3].into_iter().find(|v| v.service() == service)?;
    Some((version, Hook::from_rpc(version, method)?))
}

pub(crate) async fn route<B>(
    runtime: Arc<Runtime>,
    version: Version,
    hook: Hook,
    received: Instant,
    req: http::Request<B>,
) -> Answer
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    let (parts, body) = req.into_parts();
    if let Some(encoding) = parts.headers.get("grpc-encoding")
        && encoding != "identity"
    {
        return Answer::Status(Status::unimplemented(format!(
            "grpc-encoding {encoding:?} is not supported: the gateway accepts identity only"
        )));
    }
    // Read per call from the snapshot, so a reload changes it for the next call.
    let max = runtime.config.server.max_request_bytes;
    let body = LimitedBody::new(body, max, hook, Arc::clone(runtime.metrics.metrics()));
    let message = match read_message(body, max).await {
        Ok(message) => message,
        Err(status) => return Answer::Status(status),
    };
    // Decode the one message as `$ty`, run `$svc`, encode its answer.
    macro_rules! unary {
        ($ty:ty, $svc:expr) => {
            match <$ty as prost::Message>::decode(message) {
                Ok(m) => answer(UnaryService::call(&mut $svc, request_of(parts, m)).await),
                Err(e) => Answer::Status(Status::internal(format!("failed to decode Protobuf message: {e}"))),
            }
        };
    }
    macro_rules! valued {
        ($ty:ident) => {
            unary!(model::$ty, HookSvc::<model::$ty, Fold>::new(runtime, version, received))
        };
    }
    macro_rules! notify {
        ($ty:ident) => {
            unary!(model::$ty, HookSvc::<model::$ty, Deliver>::new(runtime, version, received))
        };
    }
    match hook {
        Hook::ProviderLoaded if version == Version::V1 => {
            unary!(v1::ProviderLoadedRequest, LoadedSvc { runtime, version, received })
        }
        Hook::ProviderLoaded => unary!(model::ProviderLoadedRequest, LoadedSvc { runtime, version, received }),
        Hook::ProviderUnloaded => unary!(model::ProviderUnloadedRequest, UnloadedSvc { runtime }),
        Hook::ClientAuthenticate => valued!(ClientAuthenticateRequest),
        Hook::ClientAuthorize => valued!(ClientAuthorizeRequest),
        Hook::MessagePublish => valued!(MessagePublishRequest),
        Hook::ClientConnect => notify!(ClientConnectRequest),
        Hook::ClientConnack => notify!(ClientConnackRequest),
        Hook::ClientConnected => notify!(ClientConnectedRequest),
        Hook::ClientDisconnected => notify!(ClientDisconnectedRequest),
        Hook::ClientSubscribe => notify!(ClientSubscribeRequest),
        Hook::ClientUnsubscribe => notify!(ClientUnsubscribeRequest),
        Hook::SessionCreated => notify!(SessionCreatedRequest),
        Hook::SessionSubscribed => notify!(SessionSubscribedRequest),
        Hook::SessionUnsubscribed => notify!(SessionUnsubscribedRequest),
        Hook::SessionResumed => notify!(SessionResumedRequest),
        Hook::SessionDiscarded => notify!(SessionDiscardedRequest),
        Hook::SessionTakenover => notify!(SessionTakenoverRequest),
        Hook::SessionTerminated => notify!(SessionTerminatedRequest),
        Hook::MessageDelivered => notify!(MessageDeliveredRequest),
        Hook::MessageDropped => notify!(MessageDroppedRequest),
        Hook::MessageAcked => notify!(MessageAckedRequest),
    }
}

/// The tonic request the services take: the HTTP request's headers as metadata (`grpc-timeout`)
/// and its extensions (the connection's [`Caller`]).
fn request_of<T>(parts: http::request::Parts, message: T) -> Request<T> {
    Request::from_parts(MetadataMap::from_headers(parts.headers), parts.extensions, message)
}

/// The one message of a unary request body, read whole (bounded by [`LimitedBody`]): the
/// first data frame kept as is (no copy in the usual one-frame case), later ones appended.
/// tonic's streaming decoder did the same work through a general stream machinery that cost
/// about a tenth of a call's instructions (callgrind, `scripts/callgrind.sh`).
async fn read_message<B>(mut body: LimitedBody<B>, max: usize) -> Result<Bytes, Status>
where
    B: http_body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt as _;
    let mut first = Bytes::new();
    let mut more: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| match e.downcast::<Status>() {
            Ok(status) => *status,
            Err(e) => Status::from_error(e),
        })?;
        let Ok(data) = frame.into_data() else { continue };
        match &mut more {
            Some(all) => all.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut all = BytesMut::with_capacity(first.len() + data.len());
                all.extend_from_slice(&first);
                all.extend_from_slice(&data);
                more = Some(all);
            }
        }
    }
    let whole = more.map_or(first, BytesMut::freeze);
    exhook_proto::codec::decode_unary_frame(&whole, max).map_err(|e| match e {
        FrameError::Empty => Status::internal("Missing request message."),
        FrameError::Compressed => {
            Status::unimplemented("compressed request: the gateway accepts identity only (grpc-encoding)")
        }
        FrameError::TooLarge { announced, max } => Status::resource_exhausted(format!(
            "request message of {announced} bytes exceeds the gateway's server.max_request_bytes ({max} bytes)"
        )),
        FrameError::Trailing(n) => {
            Status::invalid_argument(format!("a unary request carries one message: {n} bytes follow it"))
        }
        FrameError::InvalidFlag(_) | FrameError::Truncated { .. } => {
            Status::internal(format!("invalid request body: {e}"))
        }
    })
}

/// A unary answer: the message with its gRPC prefix, or the error status.
fn answer<M: prost::Message>(result: Result<Response<M>, Status>) -> Answer {
    let message = match result {
        Ok(response) => response.into_inner(),
        Err(status) => return Answer::Status(status),
    };
    let len = message.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    message.encode_raw(&mut buf);
    Answer::Message(buf.freeze())
}

/// The body of a successful unary answer: one data frame, then the trailers.
struct UnaryBody {
    data: Option<Bytes>,
    trailers: bool,
}

impl http_body::Body for UnaryBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
        }
        if std::mem::take(&mut this.trailers) {
            let mut trailers = http::HeaderMap::with_capacity(1);
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.trailers
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// gRPC's message prefix: a compression flag and a 4-byte big-endian length.
const PREFIX: usize = 5;

/// A request body that fails with `RESOURCE_EXHAUSTED` once it shows more than `max` bytes of
/// message: from the length in the first message's prefix, before its payload is read (so
/// an oversized request is never buffered), or, for a body carrying more than it announced,
/// as soon as its data passes `max` plus the prefix. [`read_message`] turns the error (a [`Status`] in
/// a box) into the call's answer.
struct LimitedBody<B> {
    inner: B,
    max: usize,
    /// Data bytes received so far.
    seen: usize,
    /// The first [`PREFIX`] bytes, as they arrive.
    prefix: [u8; PREFIX],
    hook: Hook,
    metrics: Arc<Metrics>,
    /// Refused: nothing more is read.
    refused: bool,
}

impl<B> LimitedBody<B> {
    fn new(inner: B, max: usize, hook: Hook, metrics: Arc<Metrics>) -> Self {
        LimitedBody { inner, max, seen: 0, prefix: [0; PREFIX], hook, metrics, refused: false }
    }

    /// Takes note of a data chunk; the refusal if the request is now known to be too large.
    fn check(&mut self, data: &Bytes) -> Option<Status> {
        let before = self.seen;
        self.seen = self.seen.saturating_add(data.len());
        if before < PREFIX {
            let n = (PREFIX - before).min(data.len());
            self.prefix[before..before + n].copy_from_slice(&data[..n]);
        }
        let announced = (self.seen >= PREFIX)
            .then(|| u32::from_be_bytes([self.prefix[1], self.prefix[2], self.prefix[3], self.prefix[4]]) as usize);
        let size = match announced {
            Some(n) if n > self.max => n,
            _ if self.seen > self.max.saturating_add(PREFIX) => self.seen - PREFIX,
            // A unary request is exactly one message: bytes after it (a second message,
            // garbage) make it malformed, and tonic would otherwise serve the first message.
            Some(n) if self.seen > n + PREFIX => {
                self.refused = true;
                return Some(Status::invalid_argument(format!(
                    "a unary request carries one message: {} bytes follow the {n}-byte message",
                    self.seen - n - PREFIX
                )));
            }
            _ => return None,
        };
        self.refused = true;
        self.metrics.limit_exceeded(Limit::RequestBytes);
        tracing::warn!(
            hook = self.hook.name(),
            size,
            max = self.max,
            "request larger than server.max_request_bytes refused"
        );
        Some(Status::resource_exhausted(format!(
            "request message of {size} bytes exceeds the gateway's server.max_request_bytes ({} bytes)",
            self.max
        )))
    }
}

impl<B> http_body::Body for LimitedBody<B>
where
    B: http_body::Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.refused {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            // Zero-copy for `Bytes` (what hyper delivers).
            Poll::Ready(Some(Ok(frame))) => frame.map_data(|mut d| d.copy_to_bytes(d.remaining())),
        };
        if let Some(status) = frame.data_ref().and_then(|data| this.check(data)) {
            return Poll::Ready(Some(Err(Box::new(status))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        if self.refused { http_body::SizeHint::with_exact(0) } else { self.inner.size_hint() }
    }
}

/// What a hook call runs: the fold (valued hooks) or the delivery (notifications).
trait Handler<R>: Send + 'static {
    /// The answer type.
    type Response: prost::Message + Default + Send + 'static;
    /// Runs the call on a snapshot.
    fn run(
        runtime: Arc<Runtime>,
        tenant: usize,
        request: R,
        deadline: Instant,
        received: Instant,
    ) -> impl Future<Output = Self::Response> + Send + 'static;
}

/// Valued hooks: the fold.
struct Fold;
/// Notification hooks: queued (or awaited) delivery.
struct Deliver;

impl<R: ValuedRequest> Handler<R> for Fold {
    type Response = ValuedResponse;
    async fn run(
        runtime: Arc<Runtime>,
        tenant: usize,
        request: R,
        deadline: Instant,
        received: Instant,
    ) -> ValuedResponse {
        runtime.valued(tenant, request, deadline, received).await
    }
}

impl<R: HookRequest> Handler<R> for Deliver {
    type Response = EmptySuccess;
    async fn run(
        runtime: Arc<Runtime>,
        tenant: usize,
        request: R,
        deadline: Instant,
        received: Instant,
    ) -> EmptySuccess {
        runtime.notify(tenant, request, deadline, received).await
    }
}

/// One hook call: decode into the model (done by the codec), normalise from the caller's
/// package, take the deadline from `grpc-timeout`, run the handler.
struct HookSvc<R, H> {
    runtime: Arc<Runtime>,
    version: Version,
    received: Instant,
    _r: PhantomData<fn() -> (R, H)>,
}

impl<R, H> HookSvc<R, H> {
    fn new(runtime: Arc<Runtime>, version: Version, received: Instant) -> Self {
        HookSvc { runtime, version, received, _r: PhantomData }
    }
}

impl<R: HookRequest, H: Handler<R>> UnaryService<R> for HookSvc<R, H> {
    type Response = H::Response;
    type Future = BoxFuture<Result<Response<H::Response>, Status>>;

    fn call(&mut self, request: Request<R>) -> Self::Future {
        let deadline = deadline_for(request.metadata(), self.runtime.config.server.default_deadline, self.received);
        let tenant = match tenant_of(&self.runtime, &request, request.get_ref().meta()) {
            Ok(t) => t,
            Err(status) => return Box::pin(async move { Err(status) }),
        };
        let mut request = request.into_inner();
        if let Some(issue) = request.normalize(self.version) {
            self.runtime.conversion_issue(self.version, issue);
        }
        // A live trace (GET /api/v1/trace) of this call, if one matches: one atomic load
        // when no trace is open (benches/benches/trace.rs).
        let tenant_name = &self.runtime.config.tenants[tenant].name;
        let scope = crate::observe::trace_scope(&*self.runtime.observer, tenant_name, &request);
        // One allocation per call: this box (tonic's UnaryService needs a nameable future).
        let run = crate::observe::in_scope(
            scope,
            H::run(Arc::clone(&self.runtime), tenant, request, deadline, self.received),
        );
        Box::pin(async move { Ok(Response::new(run.await)) })
    }
}

/// The call's tenant from its connection's identity ([`Caller`], put into the request's
/// extensions by the listener) and its `RequestMeta`.
fn tenant_of<T>(runtime: &Runtime, request: &Request<T>, meta: Option<&model::RequestMeta>) -> Result<usize, Status> {
    let caller = request.extensions().get::<Caller>();
    runtime.tenant_of(caller.map(|c| &*c.0), meta)
}

/// A `ProviderLoadedRequest` of any package: v1's (text uptime) or the model's.
trait IntoLoadedRequest: prost::Message + Default + Send + 'static {
    fn into_model(self) -> (model::ProviderLoadedRequest, Option<convert::ConversionIssue>);
}

impl IntoLoadedRequest for v1::ProviderLoadedRequest {
    fn into_model(self) -> (model::ProviderLoadedRequest, Option<convert::ConversionIssue>) {
        convert::loaded_request_from_v1_checked(&self)
    }
}

impl IntoLoadedRequest for model::ProviderLoadedRequest {
    fn into_model(self) -> (model::ProviderLoadedRequest, Option<convert::ConversionIssue>) {
        (self, None)
    }
}

struct LoadedSvc {
    runtime: Arc<Runtime>,
    version: Version,
    received: Instant,
}

impl<Q: IntoLoadedRequest> UnaryService<Q> for LoadedSvc {
    type Response = LoadedResponse;
    type Future = BoxFuture<Result<Response<LoadedResponse>, Status>>;

    fn call(&mut self, request: Request<Q>) -> Self::Future {
        let deadline = deadline_for(request.metadata(), self.runtime.config.server.default_deadline, self.received);
        let caller = request.extensions().get::<Caller>().cloned();
        let (request, issue) = request.into_inner().into_model();
        if let Some(issue) = issue {
            self.runtime.conversion_issue(self.version, issue);
        }
        let tenant = match self.runtime.tenant_of(caller.as_ref().map(|c| &*c.0), request.meta.as_ref()) {
            Ok(t) => t,
            Err(status) => return Box::pin(async move { Err(status) }),
        };
        let runtime = Arc::clone(&self.runtime);
        let version = self.version;
        Box::pin(async move { Ok(Response::new(runtime.provider_loaded(tenant, version, request, deadline).await)) })
    }
}

struct UnloadedSvc {
    runtime: Arc<Runtime>,
}

impl UnaryService<model::ProviderUnloadedRequest> for UnloadedSvc {
    type Response = EmptySuccess;
    type Future = BoxFuture<Result<Response<EmptySuccess>, Status>>;

    fn call(&mut self, request: Request<model::ProviderUnloadedRequest>) -> Self::Future {
        let tenant = match tenant_of(&self.runtime, &request, request.get_ref().meta.as_ref()) {
            Ok(t) => t,
            Err(status) => return Box::pin(async move { Err(status) }),
        };
        let reply = self.runtime.provider_unloaded(tenant, request.into_inner());
        Box::pin(async move { Ok(Response::new(reply)) })
    }
}
