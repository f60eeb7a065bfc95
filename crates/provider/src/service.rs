//! The gRPC side: one generic `HookProvider` service per package, all backed by one provider.
//!
//! Every call is decoded straight into the internal model (a wire superset of v1, v2 and v3;
//! v1's `ProviderLoadedRequest` is converted for its text uptime), normalised to the canonical
//! shape with `exhook-hooks`, and handed to the provider. Answers share one wire layout in
//! every package; only the hookpoint names in `LoadedResponse` differ (4.x spells two of them
//! differently), so the registration is written per call's package.

use std::convert::Infallible;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use exhook_hooks::{Hook, HookKind, HookRequest, Version, convert};
use exhook_proto::model::{self, EmptySuccess, HookSpec, LoadedResponse, ValuedResponse};
use exhook_proto::v1;
use futures::FutureExt as _;
use tokio::sync::mpsc;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::Provider;

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the provider registers, fixed when the server binds.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) hooks: Vec<Hook>,
    pub(crate) topics: Vec<String>,
}

impl Registration {
    /// The `LoadedResponse` in `version`'s spelling; topics only on the `message.*` hooks
    /// (EMQX ignores them elsewhere).
    fn loaded(&self, version: Version) -> LoadedResponse {
        let hooks = self
            .hooks
            .iter()
            .filter_map(|h| {
                let name = h.hookpoint(version)?;
                let topics = if h.is_message_hook() { self.topics.clone() } else { Vec::new() };
                Some(HookSpec { name: name.to_owned(), topics })
            })
            .collect();
        LoadedResponse { hooks }
    }
}

/// Notification handlers waiting to run: one queue and one task per shard, a client always in
/// the same shard, so a client's notifications run in the order EMQX sent them (the gateway
/// keeps that order on the wire; spawning a task per call would lose it).
pub(crate) struct Notifications {
    shards: Vec<mpsc::Sender<BoxFuture<()>>>,
}

impl Notifications {
    /// `shards` queues of `depth` handlers each, and the tasks running them (to await on drain).
    pub(crate) fn start(shards: usize, depth: usize) -> (Notifications, Vec<tokio::task::JoinHandle<()>>) {
        let mut senders = Vec::with_capacity(shards.max(1));
        let mut tasks = Vec::with_capacity(shards.max(1));
        for _ in 0..shards.max(1) {
            let (tx, mut rx) = mpsc::channel::<BoxFuture<()>>(depth.max(1));
            senders.push(tx);
            tasks.push(tokio::spawn(async move {
                while let Some(handler) = rx.recv().await {
                    // A panicking handler must not take the shard (and every later
                    // notification of its clients) down with it.
                    if AssertUnwindSafe(handler).catch_unwind().await.is_err() {
                        tracing::error!("a notification handler panicked");
                    }
                }
            }));
        }
        (Notifications { shards: senders }, tasks)
    }

    /// Queues `handler` behind `key`'s earlier notifications. Waits while the shard is full:
    /// the acknowledgement to EMQX then waits too, which bounds memory and tells the gateway
    /// (its own queue bounds what happens next) instead of dropping silently.
    async fn push(&self, key: &str, handler: BoxFuture<()>) -> Result<(), Status> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let shard = &self.shards[(h.finish() % self.shards.len() as u64) as usize];
        shard.send(handler).await.map_err(|_| Status::unavailable("provider is shutting down"))
    }
}

/// Shared by the three package services and the health service.
pub(crate) struct Shared<P> {
    pub(crate) provider: Arc<P>,
    pub(crate) registration: Registration,
    pub(crate) notifications: Notifications,
    pub(crate) serving: AtomicBool,
}

/// The `HookProvider` service of one package.
pub(crate) struct HookService<P, V> {
    shared: Arc<Shared<P>>,
    _package: PhantomData<fn() -> V>,
}

impl<P, V> HookService<P, V> {
    pub(crate) fn new(shared: Arc<Shared<P>>) -> Self {
        HookService { shared, _package: PhantomData }
    }
}

impl<P, V> Clone for HookService<P, V> {
    fn clone(&self) -> Self {
        HookService { shared: Arc::clone(&self.shared), _package: PhantomData }
    }
}

/// A package marker: selects the gRPC service name.
pub(crate) trait Package: Send + Sync + 'static {
    const VERSION: Version;
}

macro_rules! packages {
    ($($name:ident => $v:ident),*) => {$(
        pub(crate) struct $name;
        impl Package for $name {
            const VERSION: Version = Version::$v;
        }
        impl<P> NamedService for HookService<P, $name> {
            const NAME: &'static str = Version::$v.service();
        }
    )*};
}
packages!(PackageV1 => V1, PackageV2 => V2, PackageV3 => V3);

impl<P: Provider, V: Package> tower::Service<http::Request<Body>> for HookService<P, V> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("");
        let Some(hook) = Hook::from_rpc(V::VERSION, method) else {
            return Box::pin(async { Ok(Status::unimplemented("Method not found!").into_http()) });
        };
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { Ok(route(shared, V::VERSION, hook, req).await) })
    }
}

async fn route<P: Provider>(
    shared: Arc<Shared<P>>,
    version: Version,
    hook: Hook,
    req: http::Request<Body>,
) -> http::Response<Body> {
    macro_rules! unary {
        ($resp:ty, $req:ty, $svc:expr) => {
            Grpc::new(ProstCodec::<$resp, $req>::default()).unary($svc, req).await
        };
    }
    macro_rules! valued {
        ($ty:ident) => {
            unary!(ValuedResponse, model::$ty, Call::<P, model::$ty>::new(shared, version))
        };
    }
    macro_rules! notify {
        ($ty:ident) => {
            unary!(EmptySuccess, model::$ty, Call::<P, model::$ty>::new(shared, version))
        };
    }
    match hook {
        Hook::ProviderLoaded if version == Version::V1 => {
            unary!(LoadedResponse, v1::ProviderLoadedRequest, Loaded { shared, version })
        }
        Hook::ProviderLoaded => unary!(LoadedResponse, model::ProviderLoadedRequest, Loaded { shared, version }),
        Hook::ProviderUnloaded => unary!(EmptySuccess, model::ProviderUnloadedRequest, Unloaded { shared }),
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

/// How one request type reaches its provider method.
pub(crate) trait Dispatch<P: Provider>: HookRequest {
    /// The gRPC answer type.
    type Answer: prost::Message + Default + Send + 'static;
    /// Runs the call: a valued hook awaits the provider; a notification is queued.
    fn dispatch(self, shared: Arc<Shared<P>>) -> BoxFuture<Result<Self::Answer, Status>>;
}

/// A valued hook's answer, or INTERNAL when the handler panicked (the gateway then applies
/// the provider's `failed_action`, as for any failure).
async fn guarded<T>(f: impl Future<Output = T> + Send) -> Result<T, Status> {
    AssertUnwindSafe(f).catch_unwind().await.map_err(|_| {
        tracing::error!("a hook handler panicked");
        Status::internal("the provider's handler failed")
    })
}

macro_rules! valued_dispatch {
    ($($ty:ident => $method:ident;)*) => {$(
        impl<P: Provider> Dispatch<P> for model::$ty {
            type Answer = ValuedResponse;
            fn dispatch(self, shared: Arc<Shared<P>>) -> BoxFuture<Result<ValuedResponse, Status>> {
                Box::pin(async move {
                    let decision = guarded(shared.provider.$method(&self)).await?;
                    Ok(decision.into_response())
                })
            }
        }
    )*};
}

valued_dispatch! {
    ClientAuthenticateRequest => client_authenticate;
    ClientAuthorizeRequest => client_authorize;
}

impl<P: Provider> Dispatch<P> for model::MessagePublishRequest {
    type Answer = ValuedResponse;
    fn dispatch(self, shared: Arc<Shared<P>>) -> BoxFuture<Result<ValuedResponse, Status>> {
        Box::pin(async move {
            let answer = guarded(shared.provider.message_publish(&self)).await?;
            // The request's own message is what gets echoed, edits applied.
            Ok(answer.into_response(self.message.as_ref()))
        })
    }
}

macro_rules! notify_dispatch {
    ($($ty:ident => $method:ident;)*) => {$(
        impl<P: Provider> Dispatch<P> for model::$ty {
            type Answer = EmptySuccess;
            fn dispatch(self, shared: Arc<Shared<P>>) -> BoxFuture<Result<EmptySuccess, Status>> {
                Box::pin(async move {
                    let provider = Arc::clone(&shared.provider);
                    let key = self.dispatch_key().to_owned();
                    let handler: BoxFuture<()> = Box::pin(async move { provider.$method(&self).await });
                    shared.notifications.push(&key, handler).await?;
                    Ok(EmptySuccess {})
                })
            }
        }
    )*};
}

notify_dispatch! {
    ClientConnectRequest => client_connect;
    ClientConnackRequest => client_connack;
    ClientConnectedRequest => client_connected;
    ClientDisconnectedRequest => client_disconnected;
    ClientSubscribeRequest => client_subscribe;
    ClientUnsubscribeRequest => client_unsubscribe;
    SessionCreatedRequest => session_created;
    SessionSubscribedRequest => session_subscribed;
    SessionUnsubscribedRequest => session_unsubscribed;
    SessionResumedRequest => session_resumed;
    SessionDiscardedRequest => session_discarded;
    SessionTakenoverRequest => session_takenover;
    SessionTerminatedRequest => session_terminated;
    MessageDeliveredRequest => message_delivered;
    MessageDroppedRequest => message_dropped;
    MessageAckedRequest => message_acked;
}

/// One hook call of request type `R`.
struct Call<P, R> {
    shared: Arc<Shared<P>>,
    version: Version,
    _r: PhantomData<fn() -> R>,
}

impl<P, R> Call<P, R> {
    fn new(shared: Arc<Shared<P>>, version: Version) -> Self {
        Call { shared, version, _r: PhantomData }
    }
}

impl<P: Provider, R: Dispatch<P>> UnaryService<R> for Call<P, R> {
    type Response = R::Answer;
    type Future = BoxFuture<Result<Response<R::Answer>, Status>>;

    fn call(&mut self, request: Request<R>) -> Self::Future {
        let mut request = request.into_inner();
        // What could not be converted stays as received: the call is still served.
        if let Some(issue) = request.normalize(self.version) {
            tracing::debug!(hook = R::HOOK.name(), %issue, "request not fully converted");
        }
        debug_assert!(R::HOOK.kind() != HookKind::Lifecycle);
        let run = request.dispatch(Arc::clone(&self.shared));
        Box::pin(async move { run.await.map(Response::new) })
    }
}

/// `ProviderLoadedRequest` of v1 (text uptime) or of the model.
trait IntoLoaded: prost::Message + Default + Send + 'static {
    fn into_model(self) -> model::ProviderLoadedRequest;
}

impl IntoLoaded for v1::ProviderLoadedRequest {
    fn into_model(self) -> model::ProviderLoadedRequest {
        convert::loaded_request_from_v1(&self)
    }
}

impl IntoLoaded for model::ProviderLoadedRequest {
    fn into_model(self) -> model::ProviderLoadedRequest {
        self
    }
}

struct Loaded<P> {
    shared: Arc<Shared<P>>,
    version: Version,
}

impl<P: Provider, Q: IntoLoaded> UnaryService<Q> for Loaded<P> {
    type Response = LoadedResponse;
    type Future = BoxFuture<Result<Response<LoadedResponse>, Status>>;

    fn call(&mut self, request: Request<Q>) -> Self::Future {
        let request = request.into_inner().into_model();
        let (shared, version) = (Arc::clone(&self.shared), self.version);
        Box::pin(async move {
            guarded(shared.provider.provider_loaded(&request)).await?;
            tracing::info!(%version, hooks = shared.registration.hooks.len(), "loaded");
            Ok(Response::new(shared.registration.loaded(version)))
        })
    }
}

struct Unloaded<P> {
    shared: Arc<Shared<P>>,
}

impl<P: Provider> UnaryService<model::ProviderUnloadedRequest> for Unloaded<P> {
    type Response = EmptySuccess;
    type Future = BoxFuture<Result<Response<EmptySuccess>, Status>>;

    fn call(&mut self, request: Request<model::ProviderUnloadedRequest>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            guarded(shared.provider.provider_unloaded(request.get_ref())).await?;
            Ok(Response::new(EmptySuccess {}))
        })
    }
}

impl<P> Shared<P> {
    pub(crate) fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_per_package() {
        let r = Registration { hooks: vec![Hook::ClientAuthorize, Hook::MessagePublish], topics: vec!["a/#".into()] };
        let v1 = r.loaded(Version::V1);
        assert_eq!(v1.hooks[0], HookSpec { name: "client.check_acl".into(), topics: vec![] });
        assert_eq!(v1.hooks[1], HookSpec { name: "message.publish".into(), topics: vec!["a/#".into()] });
        assert_eq!(r.loaded(Version::V3).hooks[0].name, "client.authorize");
    }
}
