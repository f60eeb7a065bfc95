//! proptest properties for the structured paths: arbitrary (well-formed) values, where the
//! fuzzers mostly see broken bytes. Each property feeds the same target function the fuzzer
//! runs, so the assertions are the targets' own.

use std::time::Duration;

use exhook_fuzz::request_selector;
use exhook_hooks::{Hook, Version};
use exhook_proto::codec::decode_unary_frame;
use exhook_proto::model::{
    self, ClientInfo, ConnInfo, Message, Property, RequestMeta, SubOpts, TopicFilter, ValuedResponse,
    valued_response::Value,
};
use proptest::prelude::*;
use prost::Message as _;

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::NEWEST_FIRST.to_vec())
}

fn text() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "a", "c1", "$share/g/t", "$share/g", "$share//t", "é/+/#", "x/y/z"])
        .prop_map(String::from)
}

fn meta() -> impl Strategy<Value = Option<RequestMeta>> {
    prop::option::of((text(), text()).prop_map(|(node, cluster_name)| RequestMeta {
        node,
        cluster_name,
        version: "5.8.0".into(),
        sysdescr: "EMQX".into(),
    }))
}

fn clientinfo() -> impl Strategy<Value = Option<ClientInfo>> {
    prop::option::of((text(), any::<u32>(), any::<bool>()).prop_map(|(clientid, peerport, anonymous)| ClientInfo {
        clientid,
        peerport,
        anonymous,
        ..Default::default()
    }))
}

fn conninfo() -> impl Strategy<Value = Option<ConnInfo>> {
    prop::option::of((text(), any::<u32>()).prop_map(|(clientid, peerport)| ConnInfo {
        clientid,
        peerport,
        ..Default::default()
    }))
}

fn props() -> impl Strategy<Value = Vec<Property>> {
    prop::collection::vec((text(), text()).prop_map(|(name, value)| Property { name, value }), 0..3)
}

fn subopts() -> impl Strategy<Value = Option<SubOpts>> {
    prop::option::of((0u32..4, 0u32..2, text()).prop_map(|(qos, nl, share)| SubOpts {
        qos,
        nl,
        share,
        ..Default::default()
    }))
}

fn filters() -> impl Strategy<Value = Vec<TopicFilter>> {
    prop::collection::vec(
        (text(), 0u32..4, subopts()).prop_map(|(name, qos, subopts)| TopicFilter { name, qos, subopts }),
        0..4,
    )
}

fn message() -> impl Strategy<Value = Message> {
    (text(), text(), 0u32..3).prop_map(|(from, topic, qos)| Message {
        from,
        topic,
        qos,
        payload: b"p".to_vec().into(),
        ..Default::default()
    })
}

/// An arbitrary request of one of the RPCs whose shape differs between packages, as
/// `(hook, encoded model request)`.
fn request() -> impl Strategy<Value = (Hook, Vec<u8>)> {
    prop_oneof![
        (clientinfo(), props(), filters(), meta()).prop_map(|(clientinfo, user_props, topic_filters, meta)| (
            Hook::ClientSubscribe,
            model::ClientSubscribeRequest { clientinfo, props: Vec::new(), user_props, topic_filters, meta }
                .encode_to_vec()
        )),
        (clientinfo(), props(), filters(), meta()).prop_map(|(clientinfo, user_props, topic_filters, meta)| (
            Hook::ClientUnsubscribe,
            model::ClientUnsubscribeRequest { clientinfo, props: Vec::new(), user_props, topic_filters, meta }
                .encode_to_vec()
        )),
        (clientinfo(), text(), subopts(), meta()).prop_map(|(clientinfo, topic, subopts, meta)| (
            Hook::SessionSubscribed,
            model::SessionSubscribedRequest { clientinfo, topic, subopts, meta }.encode_to_vec()
        )),
        (conninfo(), props(), meta()).prop_map(|(conninfo, user_props, meta)| (
            Hook::ClientConnect,
            model::ClientConnectRequest { conninfo, props: Vec::new(), user_props, meta }.encode_to_vec()
        )),
        (clientinfo(), any::<bool>(), meta()).prop_map(|(clientinfo, result, meta)| (
            Hook::ClientAuthenticate,
            model::ClientAuthenticateRequest { clientinfo, result, meta }.encode_to_vec()
        )),
        (prop::option::of(message()), props(), props(), meta()).prop_map(|(message, props, user_props, meta)| (
            Hook::MessagePublish,
            model::MessagePublishRequest { message, props, user_props, meta }.encode_to_vec()
        )),
        (any::<i64>(), meta()).prop_map(|(uptime, meta)| (
            Hook::ProviderLoaded,
            model::ProviderLoadedRequest {
                broker: Some(model::BrokerInfo { uptime, version: "5.8.0".into(), ..Default::default() }),
                meta
            }
            .encode_to_vec()
        )),
    ]
}

fn valued_reply() -> impl Strategy<Value = ValuedResponse> {
    (
        0i32..5,
        prop::option::of(prop_oneof![any::<bool>().prop_map(Value::BoolResult), message().prop_map(Value::Message)]),
    )
        .prop_map(|(r#type, value)| ValuedResponse { r#type, value })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Arbitrary model requests, arriving in any package, to every package and back.
    #[test]
    fn model_requests_survive_every_package((hook, bytes) in request(), from in version()) {
        let mut input = vec![request_selector(hook, from)];
        input.extend_from_slice(&bytes);
        exhook_fuzz::requests(&input);
    }

    /// A well-formed frame of any message within the limit is that message; anything
    /// appended or cut off is refused.
    #[test]
    fn frames(message in prop::collection::vec(any::<u8>(), 0..300), extra in prop::collection::vec(any::<u8>(), 1..8), max_sel in any::<u8>()) {
        let mut framed = vec![0];
        framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
        framed.extend_from_slice(&message);
        let body = bytes::Bytes::from(framed.clone());
        prop_assert_eq!(decode_unary_frame(&body, usize::MAX).ok(), Some(bytes::Bytes::from(message.clone())));
        let longer = bytes::Bytes::from([framed.clone(), extra].concat());
        prop_assert!(decode_unary_frame(&longer, usize::MAX).is_err());
        let shorter = body.slice(..body.len() - 1);
        prop_assert!(decode_unary_frame(&shorter, usize::MAX).is_err());
        let mut input = vec![max_sel];
        input.extend_from_slice(&framed);
        exhook_fuzz::grpc_frame(&input);
    }

    /// Arbitrary byte strings as frames, with every limit.
    #[test]
    fn arbitrary_frames(data in prop::collection::vec(any::<u8>(), 0..64)) {
        exhook_fuzz::grpc_frame(&data);
    }

    /// Every valid grpc-timeout parses to digits x unit.
    #[test]
    fn valid_grpc_timeouts(n in 0u64..100_000_000, unit in prop::sample::select(vec!['H', 'M', 'S', 'm', 'u', 'n'])) {
        let value = format!("{n}{unit}");
        let want = match unit {
            'H' => Duration::from_secs(n * 3600),
            'M' => Duration::from_secs(n * 60),
            'S' => Duration::from_secs(n),
            'm' => Duration::from_millis(n),
            'u' => Duration::from_micros(n),
            _ => Duration::from_nanos(n),
        };
        prop_assert_eq!(exhook_server::parse_grpc_timeout(&value), Some(want));
        exhook_fuzz::grpc_timeout(value.as_bytes());
    }

    /// Arbitrary strings (any Unicode) as grpc-timeout values.
    #[test]
    fn arbitrary_grpc_timeouts(value in "\\PC{0,12}|[0-9]{0,10}[HMSmunh€]?") {
        exhook_fuzz::grpc_timeout(value.as_bytes());
    }

    /// Arbitrary filter sets and topics.
    #[test]
    fn topic_filters(
        filters in prop::collection::vec(prop::collection::vec(prop::sample::select(vec!["a", "b", "", "$x", "+", "#", "a+", "é"]), 1..5), 0..8),
        topic in prop::collection::vec(prop::sample::select(vec!["a", "b", "", "$x", "+", "#", "é"]), 1..6),
    ) {
        let mut lines: Vec<String> = filters.iter().map(|f| f.join("/")).collect();
        lines.push(topic.join("/"));
        exhook_fuzz::topic(lines.join("\n").as_bytes());
    }

    /// Arbitrary chains of provider answers through the fold, for each valued hook.
    #[test]
    fn folds(replies in prop::collection::vec(valued_reply(), 0..6), hook in 0u8..3, v in 0u8..3, garbage in any::<bool>()) {
        let mut input = vec![3 + hook * 3 + v];
        for r in &replies {
            let bytes = r.encode_to_vec();
            input.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
            input.extend_from_slice(&bytes);
        }
        if garbage {
            // An undecodable reply: a failed call.
            input.extend_from_slice(&[2, 0xff, 0xff]);
        }
        exhook_fuzz::replies(&input);
    }

    /// Arbitrary registrations: hook names of every line, valid and invalid filters.
    #[test]
    fn registrations(
        specs in prop::collection::vec((
            prop::sample::select(vec!["client.check_acl", "client.authorize", "message.publish", "message.acked", "session.takeovered", "client.bogus", ""]),
            prop::collection::vec(prop::sample::select(vec!["a/#", "+/b", "#/x", "a+", "$SYS/#", ""]), 0..3),
        ), 0..6),
        v in 0u8..3,
    ) {
        let response = model::LoadedResponse {
            hooks: specs.into_iter().map(|(name, topics)| model::HookSpec {
                name: name.into(),
                topics: topics.into_iter().map(String::from).collect(),
            }).collect(),
        };
        let mut input = vec![v];
        input.extend_from_slice(&response.encode_to_vec());
        exhook_fuzz::replies(&input);
    }
}
