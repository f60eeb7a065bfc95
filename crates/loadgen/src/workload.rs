//! What the load generator sends: EMQX-shaped requests, encoded once per package up front so
//! the hot loop only clones [`Bytes`].

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use exhook_hooks::{Hook, HookKind, HookRequest, Version};
use exhook_proto::model::{
    self, ClientInfo, ConnInfo, Message, Property, RequestMeta, SubOpts, TopicFilter,
    client_authorize_request::AuthorizeReqType,
};
use http::uri::PathAndQuery;
use prost::Message as _;
use serde::{Deserialize, Serialize};

/// Which hooks a run calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// `client.authenticate` only (the login path).
    Auth,
    /// `message.publish` only (the publish path).
    Publish,
    /// `message.delivered` only (a notification: EMQX waits for the acknowledgement).
    Delivered,
    /// A realistic session per virtual client: connect, authenticate, authorize, subscribe,
    /// publish, delivered, disconnected (7 calls).
    Session,
}

impl Mix {
    /// The hooks of one virtual client's cycle, in order.
    pub fn hooks(self) -> &'static [Hook] {
        match self {
            Mix::Auth => &[Hook::ClientAuthenticate],
            Mix::Publish => &[Hook::MessagePublish],
            Mix::Delivered => &[Hook::MessageDelivered],
            Mix::Session => &[
                Hook::ClientConnect,
                Hook::ClientAuthenticate,
                Hook::ClientAuthorize,
                Hook::ClientSubscribe,
                Hook::MessagePublish,
                Hook::MessageDelivered,
                Hook::ClientDisconnected,
            ],
        }
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auth" => Ok(Mix::Auth),
            "publish" => Ok(Mix::Publish),
            "delivered" => Ok(Mix::Delivered),
            "session" => Ok(Mix::Session),
            other => Err(format!("unknown mix {other:?} (expected auth, publish, delivered or session)")),
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mix::Auth => "auth",
            Mix::Publish => "publish",
            Mix::Delivered => "delivered",
            Mix::Session => "session",
        })
    }
}

/// One pre-encoded call.
#[derive(Debug, Clone)]
pub struct Op {
    /// The RPC.
    pub hook: Hook,
    /// Its gRPC path in the run's package.
    pub path: PathAndQuery,
    /// The request, encoded in the run's package.
    pub body: Bytes,
    /// True for valued hooks (the answer is a `ValuedResponse`).
    pub valued: bool,
}

/// Every call of a run: per virtual client, its cycle of [`Op`]s.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The mix.
    pub mix: Mix,
    /// The package.
    pub version: Version,
    /// `clients[c][step]`.
    pub clients: Vec<Vec<Op>>,
}

/// The topic virtual client `c` publishes to (matched by the filter `bench/raw/+`).
pub fn topic_of(c: usize) -> String {
    format!("{}c{c}", crate::provider::REWRITE_FROM)
}

fn meta() -> Option<RequestMeta> {
    Some(RequestMeta {
        node: "emqx@127.0.0.1".into(),
        version: "5.8.6".into(),
        sysdescr: "EMQX".into(),
        cluster_name: "emqxcl".into(),
    })
}

fn clientinfo(c: usize) -> Option<ClientInfo> {
    Some(ClientInfo {
        node: "emqx@127.0.0.1".into(),
        clientid: format!("bench-client-{c}"),
        username: format!("user-{c}"),
        password: "s3cr3t-password".into(),
        peerhost: "127.0.0.1".into(),
        sockport: 1883,
        protocol: "mqtt".into(),
        mountpoint: String::new(),
        is_superuser: false,
        anonymous: false,
        cn: String::new(),
        dn: String::new(),
        peerport: 40_000 + (c % 20_000) as u32,
    })
}

fn conninfo(c: usize) -> Option<ConnInfo> {
    Some(ConnInfo {
        node: "emqx@127.0.0.1".into(),
        clientid: format!("bench-client-{c}"),
        username: format!("user-{c}"),
        peerhost: "127.0.0.1".into(),
        sockport: 1883,
        proto_name: "MQTT".into(),
        proto_ver: "5".into(),
        keepalive: 60,
        peerport: 40_000 + (c % 20_000) as u32,
    })
}

/// The publish payload when none is chosen: a small JSON reading.
const DEFAULT_PAYLOAD: &[u8] = b"{\"temp\":21.5,\"hum\":40,\"ts\":1731974400000,\"seq\":123456}";

fn message(c: usize, payload: &Bytes) -> Option<Message> {
    Some(Message {
        node: "emqx@127.0.0.1".into(),
        id: format!("0006{c:012X}F3A2C4E0000B0F"),
        qos: 1,
        from: format!("bench-client-{c}"),
        topic: topic_of(c),
        payload: payload.clone(),
        timestamp: 1_731_974_400_000,
        headers: [("peerhost".to_owned(), "127.0.0.1".to_owned())].into_iter().collect(),
    })
}

fn encode<R: HookRequest>(request: R, version: Version) -> Op {
    let body = match request.for_version(version) {
        Some(shaped) => shaped.encode_to_vec(),
        None => request.encode_to_vec(),
    };
    Op {
        hook: R::HOOK,
        path: PathAndQuery::from_static(R::HOOK.path(version)),
        body: body.into(),
        valued: R::HOOK.kind() == HookKind::Valued,
    }
}

fn op(hook: Hook, c: usize, version: Version, payload: &Bytes) -> Op {
    match hook {
        Hook::ClientConnect => encode(
            model::ClientConnectRequest {
                conninfo: conninfo(c),
                props: vec![Property { name: "Session-Expiry-Interval".into(), value: "0".into() }],
                meta: meta(),
                user_props: Vec::new(),
            },
            version,
        ),
        Hook::ClientAuthenticate => {
            encode(model::ClientAuthenticateRequest { clientinfo: clientinfo(c), result: true, meta: meta() }, version)
        }
        Hook::ClientAuthorize => encode(
            model::ClientAuthorizeRequest {
                clientinfo: clientinfo(c),
                r#type: AuthorizeReqType::Publish as i32,
                topic: topic_of(c),
                result: true,
                meta: meta(),
            },
            version,
        ),
        Hook::ClientSubscribe => encode(
            model::ClientSubscribeRequest {
                clientinfo: clientinfo(c),
                props: Vec::new(),
                topic_filters: vec![TopicFilter {
                    name: format!("bench/cmd/{c}/#"),
                    qos: 0,
                    subopts: Some(SubOpts { qos: 1, ..Default::default() }),
                }],
                meta: meta(),
                user_props: Vec::new(),
            },
            version,
        ),
        Hook::MessagePublish => encode(
            model::MessagePublishRequest {
                message: message(c, payload),
                meta: meta(),
                props: Vec::new(),
                user_props: Vec::new(),
            },
            version,
        ),
        Hook::MessageDelivered => encode(
            model::MessageDeliveredRequest {
                clientinfo: clientinfo(c + 1),
                message: message(c, payload),
                meta: meta(),
            },
            version,
        ),
        Hook::ClientDisconnected => encode(
            model::ClientDisconnectedRequest { clientinfo: clientinfo(c), reason: "normal".into(), meta: meta() },
            version,
        ),
        other => unreachable!("no workload op for {other}"),
    }
}

impl Workload {
    /// Encodes `clients` virtual clients' cycles of `mix` in `version`'s package.
    pub fn new(mix: Mix, version: Version, clients: usize) -> Workload {
        Self::with_payload(mix, version, clients, None)
    }

    /// The same, with publishes (and deliveries) carrying `payload_bytes` bytes (`None`: a
    /// small JSON reading). Every client's operations are encoded up front: mind
    /// `clients × payload_bytes`.
    pub fn with_payload(mix: Mix, version: Version, clients: usize, payload_bytes: Option<usize>) -> Workload {
        let payload = match payload_bytes {
            Some(n) => Bytes::from((0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>()),
            None => Bytes::from_static(DEFAULT_PAYLOAD),
        };
        let clients =
            (0..clients.max(1)).map(|c| mix.hooks().iter().map(|&h| op(h, c, version, &payload)).collect()).collect();
        Workload { mix, version, clients }
    }

    /// The request `OnProviderLoaded` is called with first, as EMQX does, encoded for the package.
    pub fn loaded_request(version: Version) -> (PathAndQuery, Bytes) {
        let request = model::ProviderLoadedRequest {
            broker: Some(model::BrokerInfo {
                version: "5.8.6".into(),
                sysdescr: "EMQX".into(),
                uptime: 3_723_000,
                datetime: "2026-11-22T04:00:00+00:00".into(),
            }),
            meta: meta(),
        };
        let body = match version {
            Version::V1 => exhook_hooks::convert::loaded_request_to_v1(&request).encode_to_vec(),
            _ => request.encode_to_vec(),
        };
        (PathAndQuery::from_static(Hook::ProviderLoaded.path(version)), body.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cycle_decodes_as_the_model_in_every_package() {
        for v in Version::NEWEST_FIRST {
            let w = Workload::new(Mix::Session, v, 3);
            assert_eq!(w.clients.len(), 3);
            assert_eq!(w.clients[2].len(), 7);
            let publish = &w.clients[2][4];
            assert_eq!(publish.hook, Hook::MessagePublish);
            assert!(publish.valued);
            let m = model::MessagePublishRequest::decode(publish.body.clone()).unwrap();
            assert_eq!(m.message.unwrap().topic, "bench/raw/c2");
            let auth = model::ClientAuthenticateRequest::decode(w.clients[2][1].body.clone()).unwrap();
            assert_eq!(auth.clientinfo.unwrap().peerport != 0, v != Version::V1);
        }
        assert_eq!(
            Workload::new(Mix::Auth, Version::V1, 1).clients[0][0].path,
            "/emqx.exhook.v1.HookProvider/OnClientAuthenticate"
        );
    }
}
