//! The [`Provider`] trait: one method per hook, each with a default that has no opinion.

use std::future::Future;

use exhook_hooks::Hook;
use exhook_proto::model::{
    ClientAuthenticateRequest, ClientAuthorizeRequest, ClientConnackRequest, ClientConnectRequest,
    ClientConnectedRequest, ClientDisconnectedRequest, ClientInfo, ClientSubscribeRequest, ClientUnsubscribeRequest,
    Message, MessageAckedRequest, MessageDeliveredRequest, MessageDroppedRequest, MessagePublishRequest,
    ProviderLoadedRequest, ProviderUnloadedRequest, SessionCreatedRequest, SessionDiscardedRequest,
    SessionResumedRequest, SessionSubscribedRequest, SessionTakenoverRequest, SessionTerminatedRequest,
    SessionUnsubscribedRequest,
};

use crate::answer::{Decision, Publish, ignore};

macro_rules! notifications {
    ($( $method:ident($req:ident): $doc:literal; )*) => {$(
        #[doc = concat!("`", $doc, "` (a notification). The kit answers EMQX at once and runs this ")]
        #[doc = "afterwards, in the client's order; the default does nothing."]
        fn $method(&self, _request: &$req) -> impl Future<Output = ()> + Send {
            async {}
        }
    )*};
}

/// An ExHook provider: implement the hooks you need, on `#[exhook_provider::provider]`.
///
/// Every request is the version-neutral model (the v3 package's shape whatever package EMQX or
/// the gateway calls in: 4.x's `client.check_acl` arrives as [`Provider::client_authorize`],
/// User-Property pairs as `user_props`, shared subscriptions as `$share/<group>/<topic>`).
///
/// The attribute writes [`Provider::HOOKS`] from the methods the block implements: those are
/// the hooks registered in `OnProviderLoaded`, so EMQX never calls a hook you did not write.
/// The four `message.*` hooks are registered with [`Provider::topics`].
///
/// ```
/// use exhook_provider::model::{ClientAuthorizeRequest, SessionCreatedRequest};
/// use exhook_provider::{Decision, Hook, Provider, RequestExt, allow, deny};
///
/// struct OwnTopics;
///
/// #[exhook_provider::provider]
/// impl Provider for OwnTopics {
///     async fn client_authorize(&self, r: &ClientAuthorizeRequest) -> Decision {
///         let own = format!("clients/{}/", r.client().clientid);
///         if r.topic.starts_with(&own) { allow() } else { deny() }
///     }
///     async fn session_created(&self, r: &SessionCreatedRequest) {
///         println!("session of {}", r.client().clientid);
///     }
/// }
///
/// assert_eq!(OwnTopics::HOOKS, [Hook::ClientAuthorize, Hook::SessionCreated]);
/// ```
///
/// A method that is not a hook is refused when compiling:
///
/// ```compile_fail
/// # use exhook_provider::Provider;
/// struct Typo;
/// #[exhook_provider::provider]
/// impl Provider for Typo {
///     async fn client_authenticated(&self) {}
/// }
/// ```
pub trait Provider: Send + Sync + 'static {
    /// The hooks this provider registers (not the two lifecycle RPCs). Written by
    /// `#[exhook_provider::provider]` from the methods implemented; writing it by hand is
    /// possible but then keeping it in step with the methods is up to you.
    const HOOKS: &'static [Hook];

    /// Topic filters for the `message.*` hooks (MQTT filters, wildcards allowed); empty, the
    /// default, means every topic. Read once, when the server binds; a filter that is not a
    /// valid MQTT filter makes binding fail.
    fn topics(&self) -> Vec<String> {
        Vec::new()
    }

    /// `OnProviderLoaded`: EMQX (or the gateway) loads this provider. Answered with the
    /// registration after this returns; the default does nothing.
    fn provider_loaded(&self, _request: &ProviderLoadedRequest) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// `OnProviderUnloaded`; the default does nothing.
    fn provider_unloaded(&self, _request: &ProviderUnloadedRequest) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// `client.authenticate`: `request.result` is the value so far. The default: [`ignore()`].
    fn client_authenticate(&self, _request: &ClientAuthenticateRequest) -> impl Future<Output = Decision> + Send {
        async { ignore() }
    }

    /// `client.authorize` (4.x: `client.check_acl`): may the client publish / subscribe to
    /// `request.topic` (`request.r#type`)? The default: [`ignore()`].
    fn client_authorize(&self, _request: &ClientAuthorizeRequest) -> impl Future<Output = Decision> + Send {
        async { ignore() }
    }

    /// `message.publish`, for topics matching [`Provider::topics`]: answer with
    /// [`rewrite()`](crate::rewrite), [`stop_publish()`](crate::stop_publish) or the default,
    /// [`ignore()`].
    fn message_publish(&self, _request: &MessagePublishRequest) -> impl Future<Output = Publish> + Send {
        async { ignore() }
    }

    notifications! {
        client_connect(ClientConnectRequest): "client.connect";
        client_connack(ClientConnackRequest): "client.connack";
        client_connected(ClientConnectedRequest): "client.connected";
        client_disconnected(ClientDisconnectedRequest): "client.disconnected";
        client_subscribe(ClientSubscribeRequest): "client.subscribe";
        client_unsubscribe(ClientUnsubscribeRequest): "client.unsubscribe";
        session_created(SessionCreatedRequest): "session.created";
        session_subscribed(SessionSubscribedRequest): "session.subscribed";
        session_unsubscribed(SessionUnsubscribedRequest): "session.unsubscribed";
        session_resumed(SessionResumedRequest): "session.resumed";
        session_discarded(SessionDiscardedRequest): "session.discarded";
        session_takenover(SessionTakenoverRequest): "session.takenover";
        session_terminated(SessionTerminatedRequest): "session.terminated";
        message_delivered(MessageDeliveredRequest): "message.delivered";
        message_dropped(MessageDroppedRequest): "message.dropped";
        message_acked(MessageAckedRequest): "message.acked";
    }
}

/// Shortcuts to the parts of a request most hooks look at, without `Option` juggling: EMQX
/// always fills them, and a request that lacks one (not EMQX) reads as an empty value.
pub trait RequestExt {
    /// The client (`clientinfo`): an empty `ClientInfo` when absent or not carried (publish and
    /// dropped carry none; connect and connack carry `conninfo` and do not implement this).
    fn client(&self) -> &ClientInfo;
    /// The message of the `message.*` hooks: an empty `Message` when absent or not a message hook.
    fn msg(&self) -> &Message;
}

static EMPTY_CLIENT: std::sync::LazyLock<ClientInfo> = std::sync::LazyLock::new(ClientInfo::default);
static EMPTY_MESSAGE: std::sync::LazyLock<Message> = std::sync::LazyLock::new(Message::default);

macro_rules! request_ext {
    ($($ty:ident: $client:tt, $msg:tt;)*) => {$(
        impl RequestExt for $ty {
            fn client(&self) -> &ClientInfo {
                request_ext!(@client self, $client)
            }
            fn msg(&self) -> &Message {
                request_ext!(@msg self, $msg)
            }
        }
    )*};
    (@client $s:ident, yes) => { $s.clientinfo.as_ref().unwrap_or(&EMPTY_CLIENT) };
    (@client $s:ident, no) => { &EMPTY_CLIENT };
    (@msg $s:ident, yes) => { $s.message.as_ref().unwrap_or(&EMPTY_MESSAGE) };
    (@msg $s:ident, no) => { &EMPTY_MESSAGE };
}

request_ext! {
    ClientConnectedRequest: yes, no;
    ClientDisconnectedRequest: yes, no;
    ClientAuthenticateRequest: yes, no;
    ClientAuthorizeRequest: yes, no;
    ClientSubscribeRequest: yes, no;
    ClientUnsubscribeRequest: yes, no;
    SessionCreatedRequest: yes, no;
    SessionSubscribedRequest: yes, no;
    SessionUnsubscribedRequest: yes, no;
    SessionResumedRequest: yes, no;
    SessionDiscardedRequest: yes, no;
    SessionTakenoverRequest: yes, no;
    SessionTerminatedRequest: yes, no;
    MessagePublishRequest: no, yes;
    MessageDeliveredRequest: yes, yes;
    MessageDroppedRequest: no, yes;
    MessageAckedRequest: yes, yes;
}
