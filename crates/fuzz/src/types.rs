//! The request types of every RPC in the model and in each package, as one table, so each
//! target is written once, generically, and instantiated for all 21 RPCs.

/// Calls `$f::<Model, V1, V2, V3>($args)` with the request types of `$hook`'s RPC.
macro_rules! with_request_types {
    ($hook:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        with_request_types!(@table $hook, $f, ($($arg),*);
            ProviderLoaded => ProviderLoadedRequest, ProviderLoadedRequest;
            ProviderUnloaded => ProviderUnloadedRequest, ProviderUnloadedRequest;
            ClientConnect => ClientConnectRequest, ClientConnectRequest;
            ClientConnack => ClientConnackRequest, ClientConnackRequest;
            ClientConnected => ClientConnectedRequest, ClientConnectedRequest;
            ClientDisconnected => ClientDisconnectedRequest, ClientDisconnectedRequest;
            ClientAuthenticate => ClientAuthenticateRequest, ClientAuthenticateRequest;
            ClientAuthorize => ClientAuthorizeRequest, ClientCheckAclRequest;
            ClientSubscribe => ClientSubscribeRequest, ClientSubscribeRequest;
            ClientUnsubscribe => ClientUnsubscribeRequest, ClientUnsubscribeRequest;
            SessionCreated => SessionCreatedRequest, SessionCreatedRequest;
            SessionSubscribed => SessionSubscribedRequest, SessionSubscribedRequest;
            SessionUnsubscribed => SessionUnsubscribedRequest, SessionUnsubscribedRequest;
            SessionResumed => SessionResumedRequest, SessionResumedRequest;
            SessionDiscarded => SessionDiscardedRequest, SessionDiscardedRequest;
            SessionTakenover => SessionTakenoverRequest, SessionTakeoveredRequest;
            SessionTerminated => SessionTerminatedRequest, SessionTerminatedRequest;
            MessagePublish => MessagePublishRequest, MessagePublishRequest;
            MessageDelivered => MessageDeliveredRequest, MessageDeliveredRequest;
            MessageDropped => MessageDroppedRequest, MessageDroppedRequest;
            MessageAcked => MessageAckedRequest, MessageAckedRequest;
        )
    };
    (@table $hook:expr, $f:ident, $args:tt; $($variant:ident => $ty:ident, $v1:ident;)*) => {
        match $hook {
            $( exhook_hooks::Hook::$variant => with_request_types!(@call $f, $ty, $v1, $args), )*
        }
    };
    (@call $f:ident, $ty:ident, $v1:ident, ($($arg:expr),*)) => {
        $f::<
            exhook_proto::model::$ty,
            exhook_proto::v1::$v1,
            exhook_proto::v2::$ty,
            exhook_proto::v3::$ty,
        >($($arg),*)
    };
}

pub(crate) use with_request_types;
