use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use exhook_hooks::{Hook, HookKind, Version};
use exhook_proto::model::{HookSpec, LoadedResponse, ValuedResponse, valued_response::ResponsedType};
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tonic::{Request, Response, Status};

/// One call a [`SimProvider`] received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The RPC.
    pub hook: Hook,
    /// The package it arrived in.
    pub version: Version,
    /// The request exactly as it came off the wire (the package's encoding; for every RPC but
    /// v1's `OnProviderLoaded` this decodes as the internal model too). Fields the provider's
    /// package does not define are still here, so tests can see what the gateway really sent.
    pub body: Bytes,
    /// The `grpc-timeout` it carried.
    pub grpc_timeout: Option<Duration>,
    /// When it arrived.
    pub received: Instant,
}

impl Call {
    /// Decodes the request as `R` (a model type, or a type of the call's package).
    pub fn request<R: prost::Message + Default>(&self) -> R {
        R::decode(self.body.clone()).unwrap_or_default()
    }
}

/// How a [`SimProvider`] answers a call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// What a permissive provider does: register the configured hooks, IGNORE valued hooks,
    /// acknowledge notifications.
    Default,
    /// A `ValuedResponse`.
    Valued(ValuedResponse),
    /// A `LoadedResponse`.
    Loaded(LoadedResponse),
    /// `EmptySuccess`.
    Empty,
    /// A gRPC error status.
    Status(Status),
    /// The reply, after a delay.
    After(Duration, Box<Reply>),
}

impl Reply {
    /// `ValuedResponse` of `kind` with a bool value.
    pub fn bool(kind: ResponsedType, value: bool) -> Reply {
        Reply::Valued(ValuedResponse {
            r#type: kind as i32,
            value: Some(exhook_proto::model::valued_response::Value::BoolResult(value)),
        })
    }

    /// `ValuedResponse` of `kind` with a message value.
    pub fn message(kind: ResponsedType, message: exhook_proto::model::Message) -> Reply {
        Reply::Valued(ValuedResponse {
            r#type: kind as i32,
            value: Some(exhook_proto::model::valued_response::Value::Message(message)),
        })
    }

    /// `IGNORE` without a value.
    pub fn ignore() -> Reply {
        Reply::Valued(ValuedResponse { r#type: ResponsedType::Ignore as i32, value: None })
    }

    /// This reply after `delay`.
    pub fn after(self, delay: Duration) -> Reply {
        Reply::After(delay, Box::new(self))
    }
}

/// Decides the reply to each call.
pub type Script = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

struct Inner {
    version: Version,
    loaded: LoadedResponse,
    script: RwLock<Script>,
    record: bool,
    calls: Mutex<Vec<Call>>,
    count: AtomicU64,
    changed: watch::Sender<u64>,
}

impl Inner {
    async fn handle<Q, A>(&self, hook: Hook, request: Request<Q>) -> Result<Response<A>, Status>
    where
        Q: prost::Message,
        A: prost::Message + Default,
    {
        let grpc_timeout = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(exhook_proto::codec::parse_grpc_timeout);
        let body = match request.extensions().get::<WireBytes>() {
            Some(WireBytes(b)) => b.clone(),
            None => request.get_ref().encode_to_vec().into(),
        };
        let call = Call { hook, version: self.version, body, grpc_timeout, received: Instant::now() };
        let script = self.script.read().map(|s| Arc::clone(&s)).unwrap_or_else(|e| Arc::clone(&e.into_inner()));
        let mut reply = script(&call);
        if self.record {
            self.calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
        }
        let n = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        self.changed.send_replace(n);
        loop {
            let encoded: Vec<u8> = match reply {
                Reply::After(d, r) => {
                    tokio::time::sleep(d).await;
                    reply = *r;
                    continue;
                }
                Reply::Status(s) => return Err(s),
                Reply::Default => match hook.kind() {
                    HookKind::Lifecycle if hook == Hook::ProviderLoaded => self.loaded.encode_to_vec(),
                    HookKind::Valued => {
                        ValuedResponse { r#type: ResponsedType::Ignore as i32, value: None }.encode_to_vec()
                    }
                    _ => Vec::new(),
                },
                Reply::Valued(v) => v.encode_to_vec(),
                Reply::Loaded(l) => l.encode_to_vec(),
                Reply::Empty => Vec::new(),
            };
            // The model and every package share the wire layout of these responses.
            return A::decode(encoded.as_slice())
                .map(Response::new)
                .map_err(|e| Status::internal(format!("sim provider reply: {e}")));
        }
    }
}

macro_rules! serve_package {
    ($pkg:ident, $server:ident, $authz:ident($authz_req:ident), $takeover:ident($takeover_req:ident)) => {
        struct $server(Arc<Inner>);

        #[async_trait::async_trait]
        impl exhook_proto::$pkg::hook_provider_server::HookProvider for $server {
            async fn on_provider_loaded(
                &self,
                r: Request<exhook_proto::$pkg::ProviderLoadedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::LoadedResponse>, Status> {
                self.0.handle(Hook::ProviderLoaded, r).await
            }
            async fn on_provider_unloaded(
                &self,
                r: Request<exhook_proto::$pkg::ProviderUnloadedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::ProviderUnloaded, r).await
            }
            async fn on_client_connect(
                &self,
                r: Request<exhook_proto::$pkg::ClientConnectRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::ClientConnect, r).await
            }
            async fn on_client_connack(
                &self,
                r: Request<exhook_proto::$pkg::ClientConnackRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::ClientConnack, r).await
            }
            async fn on_client_connected(
                &self,
                r: Request<exhook_proto::$pkg::ClientConnectedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::ClientConnected, r).await
            }
            async fn on_client_disconnected(
                &self,
                r: Request<exhook_proto::$pkg::ClientDisconnectedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::ClientDisconnected, r).await
            }
            async fn on_client_authenticate(
                &self,
                r: Request<exhook_proto::$pkg::ClientAuthenticateRequest>,
            ) -> Result<Response<exhook_proto::$pkg::ValuedResponse>, Status> {
                self.0.handle(Hook::ClientAuthenticate, r).await
            }
            async fn $authz(
                &self,
                r: Request<exhook_proto::$pkg::$authz_req>,
            ) -> Result<Response<exhook_proto::$pkg::ValuedResponse>, Status> {
                self.0.handle(Hook::ClientAuthorize, r).await
            }
            async fn on_client_subscribe(
                &self,
                r: Request<exhook_proto::$pkg::ClientSubscribeRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::ClientSubscribe, r).await
            }
            async fn on_client_unsubscribe(
                &self,
                r: Request<exhook_proto::$pkg::ClientUnsubscribeRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::ClientUnsubscribe, r).await
            }
            async fn on_session_created(
                &self,
                r: Request<exhook_proto::$pkg::SessionCreatedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::SessionCreated, r).await
            }
            async fn on_session_subscribed(
                &self,
                r: Request<exhook_proto::$pkg::SessionSubscribedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::SessionSubscribed, r).await
            }
            async fn on_session_unsubscribed(
                &self,
                r: Request<exhook_proto::$pkg::SessionUnsubscribedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::SessionUnsubscribed, r).await
            }
            async fn on_session_resumed(
                &self,
                r: Request<exhook_proto::$pkg::SessionResumedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::SessionResumed, r).await
            }
            async fn on_session_discarded(
                &self,
                r: Request<exhook_proto::$pkg::SessionDiscardedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::SessionDiscarded, r).await
            }
            async fn $takeover(
                &self,
                r: Request<exhook_proto::$pkg::$takeover_req>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::SessionTakenover, r).await
            }
            async fn on_session_terminated(
                &self,
                r: Request<exhook_proto::$pkg::SessionTerminatedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::SessionTerminated, r).await
            }
            async fn on_message_publish(
                &self,
                r: Request<exhook_proto::$pkg::MessagePublishRequest>,
            ) -> Result<Response<exhook_proto::$pkg::ValuedResponse>, Status> {
                self.0.handle(Hook::MessagePublish, r).await
            }
            async fn on_message_delivered(
                &self,
                r: Request<exhook_proto::$pkg::MessageDeliveredRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::MessageDelivered, r).await
            }
            async fn on_message_dropped(
                &self,
                r: Request<exhook_proto::$pkg::MessageDroppedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::MessageDropped, r).await
            }
            async fn on_message_acked(
                &self,
                r: Request<exhook_proto::$pkg::MessageAckedRequest>,
            ) -> Result<Response<exhook_proto::$pkg::EmptySuccess>, Status> {
                self.0.handle(Hook::MessageAcked, r).await
            }
        }
    };
}

use exhook_proto::v1::hook_provider_server::HookProviderServer as V1Server;
use exhook_proto::v2::hook_provider_server::HookProviderServer as V2Server;
use exhook_proto::v3::hook_provider_server::HookProviderServer as V3Server;

fn v1_server(s: ServerV1) -> V1Server<ServerV1> {
    V1Server::new(s)
}
fn v2_server(s: ServerV2) -> V2Server<ServerV2> {
    V2Server::new(s)
}
fn v3_server(s: ServerV3) -> V3Server<ServerV3> {
    V3Server::new(s)
}

serve_package!(
    v1,
    ServerV1,
    on_client_check_acl(ClientCheckAclRequest),
    on_session_takeovered(SessionTakeoveredRequest)
);
serve_package!(
    v2,
    ServerV2,
    on_client_authorize(ClientAuthorizeRequest),
    on_session_takenover(SessionTakenoverRequest)
);
serve_package!(
    v3,
    ServerV3,
    on_client_authorize(ClientAuthorizeRequest),
    on_session_takenover(SessionTakenoverRequest)
);

/// Configures a [`SimProvider`].
pub struct SimProviderBuilder {
    version: Version,
    hooks: Vec<HookSpec>,
    script: Script,
    record: bool,
}

impl SimProviderBuilder {
    /// Registers a hook (name as the provider's EMQX line spells it) for all topics.
    pub fn hook(mut self, name: &str) -> Self {
        self.hooks.push(HookSpec { name: name.to_owned(), topics: Vec::new() });
        self
    }

    /// Registers several hooks for all topics.
    pub fn hooks(mut self, names: &[&str]) -> Self {
        for n in names {
            self = self.hook(n);
        }
        self
    }

    /// Registers a hook with topic filters.
    pub fn hook_topics(mut self, name: &str, topics: &[&str]) -> Self {
        self.hooks.push(HookSpec { name: name.to_owned(), topics: topics.iter().map(|s| s.to_string()).collect() });
        self
    }

    /// Registers every hookpoint of its package, for all topics.
    pub fn all_hooks(mut self) -> Self {
        for h in Hook::hookpoints() {
            if let Some(name) = h.hookpoint(self.version) {
                self = self.hook(name);
            }
        }
        self
    }

    /// How to answer calls.
    pub fn script(mut self, script: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Self {
        self.script = Arc::new(script);
        self
    }

    /// Whether to keep every call (default true; benchmarks turn it off).
    pub fn record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Starts serving on a fresh loopback port.
    pub async fn start(self) -> std::io::Result<SimProvider> {
        self.start_on("127.0.0.1:0").await
    }

    /// Starts serving on `addr`.
    pub async fn start_on(self, addr: &str) -> std::io::Result<SimProvider> {
        let listener = TcpListener::bind(addr).await?;
        let provider = self.build(listener.local_addr()?);
        provider.serve(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)));
        Ok(provider)
    }

    /// Starts serving TLS (`https://`) on a fresh loopback port with `config` (its ALPN is
    /// set to `h2`).
    #[cfg(feature = "tls")]
    pub async fn start_tls(self, mut config: rustls::ServerConfig) -> std::io::Result<SimProvider> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let provider = self.build(listener.local_addr()?);
        config.alpn_protocols = vec![b"h2".to_vec()];
        provider.serve(crate::tls::incoming(listener, Arc::new(config)));
        Ok(provider)
    }

    fn build(self, addr: SocketAddr) -> SimProvider {
        let (changed, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            version: self.version,
            loaded: LoadedResponse { hooks: self.hooks },
            script: RwLock::new(self.script),
            record: self.record,
            calls: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            changed,
        });
        SimProvider { addr, inner, shutdown: Mutex::new(None), task: Mutex::new(None) }
    }
}

/// A running provider on loopback. Stops serving when dropped.
pub struct SimProvider {
    addr: SocketAddr,
    inner: Arc<Inner>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SimProvider {
    /// A provider of `version`'s package that registers nothing until told.
    pub fn builder(version: Version) -> SimProviderBuilder {
        SimProviderBuilder { version, hooks: Vec::new(), script: Arc::new(|_| Reply::Default), record: true }
    }

    fn serve<I, IO, E>(&self, incoming: I)
    where
        I: futures::Stream<Item = Result<IO, E>> + Send + 'static,
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (tx, rx) = oneshot::channel::<()>();
        let inner = Arc::clone(&self.inner);
        let mut builder = tonic::transport::Server::builder();
        let router = match self.inner.version {
            Version::V1 => builder.add_service(WireCapture(v1_server(ServerV1(inner)))),
            Version::V2 => builder.add_service(WireCapture(v2_server(ServerV2(inner)))),
            Version::V3 => builder.add_service(WireCapture(v3_server(ServerV3(inner)))),
        };
        let task = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        *self.shutdown.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts stopping: the port stops accepting and open connections are told to go away
    /// (HTTP/2 GOAWAY; calls in flight may still finish). See [`SimProvider::stopped`].
    pub fn stop(&self) {
        if let Some(tx) = self.shutdown.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = tx.send(());
        }
    }

    /// Stops and waits until every connection is closed: afterwards calls to it fail.
    pub async fn stopped(&self) {
        self.stop();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Serves again on the same port (after [`SimProvider::stop`]).
    pub async fn restart(&self) -> std::io::Result<()> {
        self.stopped().await;
        let listener = TcpListener::bind(self.addr).await?;
        self.serve(tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)));
        Ok(())
    }

    /// Replaces the script.
    pub fn set_script(&self, script: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        *self.inner.script.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(script);
    }

    /// Every call received so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The calls of one hook.
    pub fn calls_of(&self, hook: Hook) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.hook == hook).collect()
    }

    /// How many calls arrived (also when not recording).
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Acquire)
    }

    /// Waits until `n` calls of `hook` have arrived (or `timeout` passes) and returns the
    /// calls of that hook so far.
    pub async fn wait_for(&self, hook: Hook, n: usize, timeout: Duration) -> Vec<Call> {
        let mut rx = self.inner.changed.subscribe();
        let _ = tokio::time::timeout(timeout, async {
            loop {
                if self.calls_of(hook).len() >= n {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        self.calls_of(hook)
    }
}

impl Drop for SimProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wraps a script so it only decides the valued hooks (authenticate, authorize, publish);
/// every other call gets [`Reply::Default`] (so `OnProviderLoaded` still registers hooks).
pub fn valued(
    script: impl Fn(&Call) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Call) -> Reply + Send + Sync + 'static {
    move |call: &Call| if call.hook.kind() == HookKind::Valued { script(call) } else { Reply::Default }
}

/// Wraps a script so it only decides the notification hooks.
pub fn notifications(
    script: impl Fn(&Call) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Call) -> Reply + Send + Sync + 'static {
    move |call: &Call| if call.hook.kind() == HookKind::Notify { script(call) } else { Reply::Default }
}

/// The request message's bytes as received, before the generated server decoded them.
#[derive(Debug, Clone)]
struct WireBytes(Bytes);

/// Wraps a generated server: reads the whole (unary) request body, keeps the message bytes in a
/// request extension, and hands the server an identical body.
#[derive(Clone)]
struct WireCapture<S>(S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for WireCapture<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for WireCapture<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let mut inner = self.0.clone();
        Box::pin(async move {
            use http_body_util::BodyExt as _;
            let (mut parts, body) = req.into_parts();
            let framed = match body.collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => return Ok(Status::internal(format!("reading request: {e}")).into_http()),
            };
            // gRPC framing: 1 byte compression flag, 4 bytes length, then the message.
            if framed.len() >= 5 {
                let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
                if framed.len() >= 5 + len {
                    parts.extensions.insert(WireBytes(framed.slice(5..5 + len)));
                }
            }
            let req = http::Request::from_parts(parts, tonic::body::Body::new(http_body_util::Full::new(framed)));
            inner.call(req).await
        })
    }
}
