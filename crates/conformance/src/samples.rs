//! The session the driver plays: realistic requests as EMQX fills them (contract §4.1; the
//! values follow `proto/contract/sample-session-*.jsonl`, recorded from real brokers), in the
//! order a broker sends them for one client, shaped for the provider's package.

use bytes::Bytes;
use exhook_hooks::{Hook, HookRequest, Version, convert};
use exhook_proto::model::{self, client_authorize_request::AuthorizeReqType};
use prost::Message as _;

/// One request to send.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub hook: Hook,
    /// Encoded for the provider's package.
    pub body: Bytes,
    /// The Message it carries (`message.*` hooks).
    pub message: Option<model::Message>,
    /// What it is about, when a hook is called twice (authorize: `SUBSCRIBE t/#`).
    pub about: String,
}

const NODE: &str = "emqx@127.0.0.1";
const CLIENT: &str = "conformance-client-1";
const OTHER: &str = "conformance-client-2";

/// The EMQX release a package stands for.
fn release(version: Version) -> &'static str {
    match version {
        Version::V1 => "4.4.19",
        Version::V2 => "5.8.9",
        Version::V3 => "5.10.4",
    }
}

fn meta(version: Version) -> Option<model::RequestMeta> {
    Some(model::RequestMeta {
        node: NODE.into(),
        version: release(version).into(),
        sysdescr: "EMQX".into(),
        cluster_name: "emqxcl".into(),
    })
}

/// `OnProviderLoaded` as EMQX of `version`'s line sends it (v1: uptime as text).
pub(crate) fn loaded(version: Version) -> Bytes {
    let request = model::ProviderLoadedRequest {
        broker: Some(model::BrokerInfo {
            version: release(version).into(),
            sysdescr: "EMQX".into(),
            uptime: 3_723_000,
            datetime: "2026-11-22T03:29:11.797134876+00:00".into(),
        }),
        meta: meta(version),
    };
    match version {
        Version::V1 => convert::loaded_request_to_v1(&request).encode_to_vec().into(),
        _ => request.encode_to_vec().into(),
    }
}

/// `OnProviderUnloaded`.
pub(crate) fn unloaded(version: Version) -> Bytes {
    encode(&model::ProviderUnloadedRequest { meta: meta(version) }, version)
}

fn encode<R: HookRequest>(request: &R, version: Version) -> Bytes {
    match request.for_version(version) {
        Some(shaped) => shaped.encode_to_vec().into(),
        None => request.encode_to_vec().into(),
    }
}

fn conn_info() -> Option<model::ConnInfo> {
    Some(model::ConnInfo {
        node: NODE.into(),
        clientid: CLIENT.into(),
        username: "alice".into(),
        peerhost: "127.0.0.1".into(),
        sockport: 1883,
        proto_name: "MQTT".into(),
        proto_ver: "5".into(),
        keepalive: 60,
        peerport: 50000,
    })
}

fn client_info(clientid: &str, password: &str) -> Option<model::ClientInfo> {
    Some(model::ClientInfo {
        node: NODE.into(),
        clientid: clientid.into(),
        username: "alice".into(),
        password: password.into(),
        peerhost: "127.0.0.1".into(),
        peerport: 50000,
        sockport: 1883,
        protocol: "mqtt".into(),
        anonymous: false,
        ..Default::default()
    })
}

fn message(id: &str, qos: u32, topic: &str, payload: &[u8], timestamp: u64) -> model::Message {
    model::Message {
        node: NODE.into(),
        id: id.into(),
        qos,
        from: CLIENT.into(),
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        timestamp,
        headers: [("username", "alice"), ("peerhost", "127.0.0.1"), ("protocol", "mqtt")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

/// A topic `filter` matches: `+` and `#` become a level `x` (`#` alone: `x`). EMQX only calls
/// a `message.*` hook whose filter matches, so the driver publishes where the provider listens.
pub(crate) fn topic_for(filter: &str) -> String {
    filter.split('/').map(|level| if level == "+" || level == "#" { "x" } else { level }).collect::<Vec<_>>().join("/")
}

/// The session: every hook in `hooks` (the valid ones the provider registered) in the order
/// EMQX calls them for one client (connect, authenticate, subscribe, publish and deliver,
/// a dropped publish, unsubscribe, disconnect, and a second client's resumed, taken over and
/// discarded sessions). `topic(hook)` is the topic for a `message.*` hook's messages (one its
/// filters match), `None` for the defaults.
pub(crate) fn session(version: Version, hooks: &[Hook], topic: impl Fn(Hook) -> Option<String>) -> Vec<Planned> {
    let topic_of = |hook: Hook, default: &str| topic(hook).unwrap_or_else(|| default.to_owned());
    let m = meta(version);
    let delivered = message(
        "D922CB5BFDC4B6E53D3DC3931F56FDF3",
        1,
        &topic_of(Hook::MessageDelivered, "t/1"),
        b"hello",
        1_795_318_151_848,
    );
    let acked = message(
        "D922CB5BFDC4B6E53D3DC3931F56FDF3",
        1,
        &topic_of(Hook::MessageAcked, "t/1"),
        b"hello",
        1_795_318_151_848,
    );
    let published = message(
        "D922CB5BFDC4B6E53D3DC3931F56FDF3",
        1,
        &topic_of(Hook::MessagePublish, "t/1"),
        b"hello",
        1_795_318_151_848,
    );
    let published0 = message(
        "1D27E3336A27C06D1A01CD1A22BCD931",
        0,
        &topic_of(Hook::MessagePublish, "nobody/listens"),
        b"x",
        1_795_318_151_865,
    );
    let dropped = message(
        "1D27E3336A27C06D1A01CD1A22BCD931",
        0,
        &topic_of(Hook::MessageDropped, "nobody/listens"),
        b"x",
        1_795_318_151_865,
    );
    let filter = model::TopicFilter {
        name: "t/#".into(),
        qos: 0,
        subopts: Some(model::SubOpts { qos: 1, ..Default::default() }),
    };
    let mut out = Vec::new();
    let mut push = |hook: Hook, body: Bytes, message: Option<model::Message>| {
        if hooks.contains(&hook) {
            out.push(Planned { hook, body, message, about: String::new() });
        }
    };
    let info = || client_info(CLIENT, "");
    push(
        Hook::ClientConnect,
        encode(
            &model::ClientConnectRequest {
                conninfo: conn_info(),
                props: vec![model::Property { name: "Session-Expiry-Interval".into(), value: "0".into() }],
                meta: m.clone(),
                user_props: vec![model::Property { name: "app".into(), value: "conformance".into() }],
            },
            version,
        ),
        None,
    );
    push(
        Hook::ClientAuthenticate,
        encode(
            &model::ClientAuthenticateRequest {
                clientinfo: client_info(CLIENT, "conformance-password"),
                result: true,
                meta: m.clone(),
            },
            version,
        ),
        None,
    );
    push(
        Hook::SessionCreated,
        encode(&model::SessionCreatedRequest { clientinfo: info(), meta: m.clone() }, version),
        None,
    );
    push(
        Hook::ClientConnack,
        encode(
            &model::ClientConnackRequest {
                conninfo: conn_info(),
                result_code: "success".into(),
                props: Vec::new(),
                meta: m.clone(),
                user_props: Vec::new(),
            },
            version,
        ),
        None,
    );
    push(
        Hook::ClientConnected,
        encode(&model::ClientConnectedRequest { clientinfo: info(), meta: m.clone() }, version),
        None,
    );
    let authorize = |ty: AuthorizeReqType, topic: &str| model::ClientAuthorizeRequest {
        clientinfo: info(),
        r#type: ty as i32,
        topic: topic.into(),
        result: true,
        meta: m.clone(),
    };
    push(Hook::ClientAuthorize, encode(&authorize(AuthorizeReqType::Subscribe, "t/#"), version), None);
    push(
        Hook::ClientSubscribe,
        encode(
            &model::ClientSubscribeRequest {
                clientinfo: info(),
                props: Vec::new(),
                topic_filters: vec![filter.clone()],
                meta: m.clone(),
                user_props: Vec::new(),
            },
            version,
        ),
        None,
    );
    push(
        Hook::SessionSubscribed,
        encode(
            &model::SessionSubscribedRequest {
                clientinfo: info(),
                topic: "t/#".into(),
                subopts: filter.subopts.clone(),
                meta: m.clone(),
            },
            version,
        ),
        None,
    );
    push(Hook::ClientAuthorize, encode(&authorize(AuthorizeReqType::Publish, &published.topic), version), None);
    let publish = |message: &model::Message| model::MessagePublishRequest {
        message: Some(message.clone()),
        meta: m.clone(),
        props: Vec::new(),
        user_props: Vec::new(),
    };
    push(Hook::MessagePublish, encode(&publish(&published), version), Some(published.clone()));
    push(
        Hook::MessageDelivered,
        encode(
            &model::MessageDeliveredRequest { clientinfo: info(), message: Some(delivered.clone()), meta: m.clone() },
            version,
        ),
        Some(delivered),
    );
    push(
        Hook::MessageAcked,
        encode(
            &model::MessageAckedRequest { clientinfo: info(), message: Some(acked.clone()), meta: m.clone() },
            version,
        ),
        Some(acked),
    );
    push(Hook::MessagePublish, encode(&publish(&published0), version), Some(published0));
    push(
        Hook::MessageDropped,
        encode(
            &model::MessageDroppedRequest {
                message: Some(dropped.clone()),
                reason: "no_subscribers".into(),
                meta: m.clone(),
            },
            version,
        ),
        Some(dropped),
    );
    push(
        Hook::ClientUnsubscribe,
        encode(
            &model::ClientUnsubscribeRequest {
                clientinfo: info(),
                props: Vec::new(),
                topic_filters: vec![model::TopicFilter { name: "t/#".into(), qos: 0, subopts: None }],
                meta: m.clone(),
                user_props: Vec::new(),
            },
            version,
        ),
        None,
    );
    push(
        Hook::SessionUnsubscribed,
        encode(
            &model::SessionUnsubscribedRequest { clientinfo: info(), topic: "t/#".into(), meta: m.clone() },
            version,
        ),
        None,
    );
    push(
        Hook::ClientDisconnected,
        encode(
            &model::ClientDisconnectedRequest { clientinfo: info(), reason: "normal".into(), meta: m.clone() },
            version,
        ),
        None,
    );
    push(
        Hook::SessionTerminated,
        encode(
            &model::SessionTerminatedRequest { clientinfo: info(), reason: "normal".into(), meta: m.clone() },
            version,
        ),
        None,
    );
    let other = || client_info(OTHER, "");
    push(
        Hook::SessionResumed,
        encode(&model::SessionResumedRequest { clientinfo: other(), meta: m.clone() }, version),
        None,
    );
    push(
        Hook::SessionTakenover,
        encode(&model::SessionTakenoverRequest { clientinfo: other(), meta: m.clone() }, version),
        None,
    );
    push(
        Hook::SessionDiscarded,
        encode(&model::SessionDiscardedRequest { clientinfo: other(), meta: m.clone() }, version),
        None,
    );
    // Authorize is called twice (subscribe, then publish): say which call a reason is about.
    let mut authorize_about = ["SUBSCRIBE t/#".to_owned(), format!("PUBLISH {}", published.topic)].into_iter();
    for planned in out.iter_mut().filter(|p| p.hook == Hook::ClientAuthorize) {
        planned.about = authorize_about.next().unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_their_filter() {
        for f in ["t/#", "#", "+/temp", "a/+/b/#", "plain"] {
            assert!(exhook_topic::filter_matches(f, &topic_for(f)), "{f} -> {}", topic_for(f));
        }
    }

    #[test]
    fn the_session_calls_every_hookpoint_and_only_registered_ones() {
        let all: Vec<Hook> = Hook::hookpoints().collect();
        let plan = session(Version::V3, &all, |_| None);
        for h in Hook::hookpoints() {
            assert!(plan.iter().any(|p| p.hook == h), "{h} not driven");
        }
        assert_eq!(plan.iter().filter(|p| p.hook == Hook::MessagePublish).count(), 2);
        let plan = session(Version::V1, &[Hook::MessagePublish], |_| Some("a/x".into()));
        assert_eq!(plan.len(), 2);
        assert!(plan.iter().all(|p| p.message.as_ref().is_some_and(|m| m.topic == "a/x")));
    }
}
