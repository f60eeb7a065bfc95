use exhook_proto::model::{self, RequestMeta, valued_response::Value};

use crate::{Hook, Version, convert, convert::ConversionIssue};

/// Every request type of the internal model implements this, so one generic path serves all
/// 21 RPCs of all three packages.
///
/// A request is held in the *canonical* shape (the v3 package's meaning of every field);
/// [`HookRequest::normalize`] converts a request received in an older package's shape, and
/// [`HookRequest::for_version`] produces a copy for a provider of another package.
pub trait HookRequest: prost::Message + Default + Clone + Send + Sync + 'static {
    /// The RPC this request belongs to.
    const HOOK: Hook;

    /// The `RequestMeta` EMQX attached (4.3.14+/4.4.3+/5.x always send one).
    fn meta(&self) -> Option<&RequestMeta>;

    /// The key EMQX dispatches a client's calls on, to keep them in order:
    /// `clientinfo.clientid`, else `conninfo.clientid`, else `message.from`, else `""`.
    fn dispatch_key(&self) -> &str;

    /// The message topic of the four `message.*` hooks (what topic filters match against).
    fn topic(&self) -> Option<&str>;

    /// Converts, in place, a request received in `from`'s package into the canonical shape.
    ///
    /// Returns what could not be converted (the part is then kept as received), for the server
    /// to count and log; the request is usable either way. Today only a v1/v2 `User-Property`
    /// entry of `props` that does not parse ([`ConversionIssue::UserProperty`]), on
    /// ClientConnect, ClientConnack, ClientSubscribe and ClientUnsubscribe. Idempotent: a
    /// second call changes nothing (and reports the same issue again).
    fn normalize(&mut self, from: Version) -> Option<ConversionIssue>;

    /// A copy shaped for a provider speaking `to`, or `None` when the canonical request is
    /// already right for it (the common case: no allocation). Cannot fail: everything the
    /// canonical shape holds is either expressible in `to`'s package or has no place there
    /// (and is dropped, see [`convert`]).
    fn for_version(&self, to: Version) -> Option<Self>;
}

/// The three hooks whose answers are folded: `client.authenticate`, `client.authorize`
/// (`client.check_acl`) and `message.publish`. The request itself is the accumulator, as in
/// EMQX: the next provider sees the value folded so far.
pub trait ValuedRequest: HookRequest {
    /// Applies a provider's CONTINUE/STOP_AND_RETURN value; `false` (and nothing changed) for
    /// a value of the wrong kind (EMQX logs it and treats the answer as IGNORE).
    fn apply_value(&mut self, value: Value) -> bool;

    /// The value to answer EMQX with: the folded bool, or the complete folded Message.
    fn answer(&self) -> Value;

    /// EMQX's hard-coded deny result: `false` for authenticate/authorize; for publish the
    /// current message unchanged (a deny cannot block a publish, it only stops the chain).
    fn deny(&self) -> Value;
}

macro_rules! key {
    (clientinfo, $s:ident) => {
        $s.clientinfo.as_ref().map_or("", |c| c.clientid.as_str())
    };
    (conninfo, $s:ident) => {
        $s.conninfo.as_ref().map_or("", |c| c.clientid.as_str())
    };
    (message, $s:ident) => {
        $s.message.as_ref().map_or("", |m| m.from.as_str())
    };
    (none, $s:ident) => {
        ""
    };
}

macro_rules! topic {
    (message, $s:ident) => {
        $s.message.as_ref().map(|m| m.topic.as_str())
    };
    (none, $s:ident) => {
        None
    };
}

// Each "part" names a field group that differs between packages; see `convert`.
macro_rules! differs {
    (clientinfo, $s:ident, $to:ident) => {
        convert::clientinfo_differs($s.clientinfo.as_ref(), $to)
    };
    (conninfo, $s:ident, $to:ident) => {
        convert::conninfo_differs($s.conninfo.as_ref(), $to)
    };
    (user_props, $s:ident, $to:ident) => {
        convert::user_props_differ(&$s.user_props, $to)
    };
    (publish_props, $s:ident, $to:ident) => {
        convert::publish_props_differ(&$s.props, &$s.user_props, $to)
    };
    (topic_filters, $s:ident, $to:ident) => {
        convert::topic_filters_differ(&$s.topic_filters, $to)
    };
    (shared_topic, $s:ident, $to:ident) => {
        convert::shared_topic_differs(&$s.topic, $to)
    };
}

macro_rules! reshape {
    (clientinfo, $s:ident, $to:ident) => {
        convert::reshape_clientinfo($s.clientinfo.as_mut(), $to)
    };
    (conninfo, $s:ident, $to:ident) => {
        convert::reshape_conninfo($s.conninfo.as_mut(), $to)
    };
    (user_props, $s:ident, $to:ident) => {
        convert::reshape_user_props(&mut $s.props, &mut $s.user_props, $to)
    };
    (publish_props, $s:ident, $to:ident) => {
        convert::reshape_publish_props(&mut $s.props, &mut $s.user_props, $to)
    };
    (topic_filters, $s:ident, $to:ident) => {
        convert::reshape_topic_filters(&mut $s.topic_filters, $to)
    };
    (shared_topic, $s:ident, $to:ident) => {
        convert::reshape_shared_topic(&mut $s.topic, &mut $s.subopts, $to)
    };
}

// Each evaluates to the part's `Option<ConversionIssue>`.
macro_rules! normalize {
    (topic_filters, $s:ident, $from:ident) => {{
        convert::normalize_topic_filters(&mut $s.topic_filters, $from, Self::HOOK);
        None
    }};
    (shared_topic, $s:ident, $from:ident) => {{
        convert::normalize_shared_topic(&mut $s.topic, &mut $s.subopts, $from);
        None
    }};
    (user_props, $s:ident, $from:ident) => {
        convert::normalize_user_props(&mut $s.props, &mut $s.user_props, $from)
    };
    ($other:ident, $s:ident, $from:ident) => {{
        let _ = ($from, &$s);
        None
    }};
}

macro_rules! requests {
    ($( $ty:ident => $hook:ident, key: $key:ident, topic: $topic:ident, parts: [$($part:ident),*]; )*) => {$(
        impl HookRequest for model::$ty {
            const HOOK: Hook = Hook::$hook;

            fn meta(&self) -> Option<&RequestMeta> {
                self.meta.as_ref()
            }

            fn dispatch_key(&self) -> &str {
                key!($key, self)
            }

            fn topic(&self) -> Option<&str> {
                topic!($topic, self)
            }

            #[allow(unused_variables)]
            fn normalize(&mut self, from: Version) -> Option<ConversionIssue> {
                // Every part is converted, in order; the last issue found is reported.
                let issues: &[Option<ConversionIssue>] = &[$( normalize!($part, self, from) ),*];
                issues.iter().flatten().last().copied()
            }

            #[allow(unused_variables, unused_mut)]
            fn for_version(&self, to: Version) -> Option<Self> {
                if false $( || differs!($part, self, to) )* {
                    let mut copy = self.clone();
                    $( reshape!($part, copy, to); )*
                    Some(copy)
                } else {
                    None
                }
            }
        }
    )*};
}

requests! {
    ProviderLoadedRequest => ProviderLoaded, key: none, topic: none, parts: [];
    ProviderUnloadedRequest => ProviderUnloaded, key: none, topic: none, parts: [];
    ClientConnectRequest => ClientConnect, key: conninfo, topic: none, parts: [conninfo, user_props];
    ClientConnackRequest => ClientConnack, key: conninfo, topic: none, parts: [conninfo, user_props];
    ClientConnectedRequest => ClientConnected, key: clientinfo, topic: none, parts: [clientinfo];
    ClientDisconnectedRequest => ClientDisconnected, key: clientinfo, topic: none, parts: [clientinfo];
    ClientAuthenticateRequest => ClientAuthenticate, key: clientinfo, topic: none, parts: [clientinfo];
    ClientAuthorizeRequest => ClientAuthorize, key: clientinfo, topic: none, parts: [clientinfo];
    ClientSubscribeRequest => ClientSubscribe, key: clientinfo, topic: none, parts: [clientinfo, user_props, topic_filters];
    ClientUnsubscribeRequest => ClientUnsubscribe, key: clientinfo, topic: none, parts: [clientinfo, user_props, topic_filters];
    SessionCreatedRequest => SessionCreated, key: clientinfo, topic: none, parts: [clientinfo];
    SessionSubscribedRequest => SessionSubscribed, key: clientinfo, topic: none, parts: [clientinfo, shared_topic];
    SessionUnsubscribedRequest => SessionUnsubscribed, key: clientinfo, topic: none, parts: [clientinfo];
    SessionResumedRequest => SessionResumed, key: clientinfo, topic: none, parts: [clientinfo];
    SessionDiscardedRequest => SessionDiscarded, key: clientinfo, topic: none, parts: [clientinfo];
    SessionTakenoverRequest => SessionTakenover, key: clientinfo, topic: none, parts: [clientinfo];
    SessionTerminatedRequest => SessionTerminated, key: clientinfo, topic: none, parts: [clientinfo];
    MessagePublishRequest => MessagePublish, key: message, topic: message, parts: [publish_props];
    MessageDeliveredRequest => MessageDelivered, key: clientinfo, topic: message, parts: [clientinfo];
    MessageDroppedRequest => MessageDropped, key: message, topic: message, parts: [];
    MessageAckedRequest => MessageAcked, key: clientinfo, topic: message, parts: [clientinfo];
}

macro_rules! bool_valued {
    ($($ty:ident),*) => {$(
        impl ValuedRequest for model::$ty {
            fn apply_value(&mut self, value: Value) -> bool {
                match value {
                    Value::BoolResult(b) => {
                        self.result = b;
                        true
                    }
                    Value::Message(_) => false,
                }
            }

            fn answer(&self) -> Value {
                Value::BoolResult(self.result)
            }

            fn deny(&self) -> Value {
                Value::BoolResult(false)
            }
        }
    )*};
}

bool_valued!(ClientAuthenticateRequest, ClientAuthorizeRequest);

impl ValuedRequest for model::MessagePublishRequest {
    fn apply_value(&mut self, value: Value) -> bool {
        match value {
            // Taken verbatim, as EMQX's merge does: the next provider sees it as returned.
            Value::Message(m) => {
                self.message = Some(m);
                true
            }
            Value::BoolResult(_) => false,
        }
    }

    fn answer(&self) -> Value {
        Value::Message(self.message.clone().unwrap_or_default())
    }

    fn deny(&self) -> Value {
        self.answer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exhook_proto::model::{ClientInfo, Message, Property, SubOpts, TopicFilter};

    fn ci(peerport: u32) -> Option<ClientInfo> {
        Some(ClientInfo { clientid: "c1".into(), peerport, ..Default::default() })
    }

    #[test]
    fn keys_and_topics() {
        let r = model::MessagePublishRequest {
            message: Some(Message { from: "pub".into(), topic: "a/b".into(), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(r.dispatch_key(), "pub");
        assert_eq!(r.topic(), Some("a/b"));
        let r = model::ClientConnectRequest {
            conninfo: Some(model::ConnInfo { clientid: "cc".into(), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(r.dispatch_key(), "cc");
        assert_eq!(r.topic(), None);
        assert_eq!(model::ProviderUnloadedRequest::default().dispatch_key(), "");
    }

    #[test]
    fn for_version_only_copies_when_needed() {
        let r = model::ClientAuthenticateRequest { clientinfo: ci(0), ..Default::default() };
        assert!(r.for_version(Version::V1).is_none());
        let r = model::ClientAuthenticateRequest { clientinfo: ci(5000), ..Default::default() };
        assert!(r.for_version(Version::V2).is_none());
        let v1 = r.for_version(Version::V1).expect("peerport dropped for v1");
        assert_eq!(v1.clientinfo.unwrap().peerport, 0);

        let p = model::MessagePublishRequest {
            props: vec![Property { name: "Content-Type".into(), value: "x".into() }],
            user_props: vec![Property { name: "a".into(), value: "b".into() }],
            ..Default::default()
        };
        assert!(p.for_version(Version::V3).is_none());
        let v2 = p.for_version(Version::V2).unwrap();
        assert!(v2.props.is_empty() && v2.user_props.is_empty());
    }

    #[test]
    fn subscribe_qos_round_trip() {
        // As a 4.x broker sends it.
        let mut r = model::ClientSubscribeRequest {
            clientinfo: ci(0),
            topic_filters: vec![TopicFilter { name: "t/#".into(), qos: 1, subopts: None }],
            ..Default::default()
        };
        r.normalize(Version::V1);
        assert_eq!(r.topic_filters[0].qos, 0);
        assert_eq!(r.topic_filters[0].subopts.as_ref().unwrap().qos, 1);
        assert!(r.for_version(Version::V3).is_none());
        let back = r.for_version(Version::V1).unwrap();
        assert_eq!(back.topic_filters[0], TopicFilter { name: "t/#".into(), qos: 1, subopts: None });
    }

    #[test]
    fn shared_subscription_round_trip() {
        let mut r = model::SessionSubscribedRequest {
            clientinfo: ci(0),
            topic: "t/1".into(),
            subopts: Some(SubOpts { qos: 1, share: "g".into(), ..Default::default() }),
            ..Default::default()
        };
        r.normalize(Version::V1);
        assert_eq!(r.topic, "$share/g/t/1");
        assert_eq!(r.subopts.as_ref().unwrap().share, "");
        let v1 = r.for_version(Version::V1).unwrap();
        assert_eq!(v1.topic, "t/1");
        assert_eq!(v1.subopts.as_ref().unwrap().share, "g");
        assert!(r.for_version(Version::V2).is_none());
    }

    #[test]
    fn merge_rules() {
        let mut a = model::ClientAuthenticateRequest { result: true, ..Default::default() };
        assert!(a.apply_value(Value::BoolResult(false)));
        assert!(!a.result);
        assert!(!a.apply_value(Value::Message(Message::default())));
        assert_eq!(a.deny(), Value::BoolResult(false));

        let m = Message { topic: "x".into(), ..Default::default() };
        let mut p = model::MessagePublishRequest { message: Some(m.clone()), ..Default::default() };
        assert!(!p.apply_value(Value::BoolResult(true)));
        assert_eq!(p.deny(), Value::Message(m));
        let n = Message { topic: "y".into(), ..Default::default() };
        assert!(p.apply_value(Value::Message(n.clone())));
        assert_eq!(p.answer(), Value::Message(n));
    }
}
