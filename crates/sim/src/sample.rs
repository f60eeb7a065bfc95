//! EMQX-shaped sample values (as EMQX fills them, see the contract's §4.1), for the demo,
//! tests and benchmarks.

use exhook_hooks::Version;
use exhook_proto::model;

/// The EMQX release a package stands for in samples.
pub fn emqx_release(version: Version) -> &'static str {
    match version {
        Version::V1 => "4.4.19",
        Version::V2 => "5.8.9",
        Version::V3 => "5.10.4",
    }
}

/// `RequestMeta` of an EMQX node of `version`'s line in cluster `cluster`.
pub fn meta(version: Version, cluster: &str) -> Option<model::RequestMeta> {
    Some(model::RequestMeta {
        node: "emqx@127.0.0.1".into(),
        version: emqx_release(version).into(),
        sysdescr: "EMQX".into(),
        cluster_name: cluster.into(),
    })
}

/// `OnProviderLoaded` as EMQX sends it (uptime 1 h 2 min 3 s).
pub fn loaded_request(version: Version, cluster: &str) -> model::ProviderLoadedRequest {
    model::ProviderLoadedRequest {
        broker: Some(model::BrokerInfo {
            version: emqx_release(version).into(),
            sysdescr: "EMQX".into(),
            uptime: 3_723_000,
            datetime: "2026-11-22T03:29:11.797134876+00:00".into(),
        }),
        meta: meta(version, cluster),
    }
}

/// A logged-in MQTT client.
pub fn client_info(clientid: &str, username: &str, password: &str) -> Option<model::ClientInfo> {
    Some(model::ClientInfo {
        node: "emqx@127.0.0.1".into(),
        clientid: clientid.into(),
        username: username.into(),
        password: password.into(),
        peerhost: "127.0.0.1".into(),
        peerport: 50000,
        sockport: 1883,
        protocol: "mqtt".into(),
        ..Default::default()
    })
}

/// A QoS 1 message published by `from`.
pub fn message(from: &str, topic: &str, payload: &str) -> model::Message {
    model::Message {
        node: "emqx@127.0.0.1".into(),
        id: "0005F1A2B3C4D5E6F7000000000001".into(),
        qos: 1,
        from: from.into(),
        topic: topic.into(),
        payload: payload.as_bytes().to_vec().into(),
        timestamp: 1_795_318_150_087,
        headers: Default::default(),
    }
}
