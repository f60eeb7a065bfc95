//! EMQX's per-client order across hook kinds: a provider that registered valued hooks and
//! notifications sees each client's hooks in the order EMQX ran them, although the gateway
//! answers notifications at once and delivers them through its queue.

mod common;

use std::time::{Duration, Instant};

use common::*;
use exhook_hooks::{Hook, HookRequest, Version};
use exhook_proto::model;
use exhook_sim::{Call, EmqxClient, Reply, SimProvider};

/// One MQTT client's life, as EMQX runs its hooks (one after another).
const LIFE: [Hook; 13] = [
    Hook::ClientConnect,
    Hook::ClientAuthenticate,
    Hook::ClientConnack,
    Hook::ClientConnected,
    Hook::ClientAuthorize,
    Hook::ClientSubscribe,
    Hook::SessionSubscribed,
    Hook::ClientAuthorize,
    Hook::MessagePublish,
    Hook::MessageDelivered,
    Hook::MessageAcked,
    Hook::ClientDisconnected,
    Hook::SessionTerminated,
];

fn conninfo(clientid: &str) -> Option<model::ConnInfo> {
    Some(model::ConnInfo { clientid: clientid.into(), username: "alice".into(), ..Default::default() })
}

/// Plays one client's life against the gateway, each call after the previous one's answer.
async fn live(emqx: &EmqxClient, id: &str) {
    let m = || meta(Version::V3, "emqxcl");
    let ci = || client_info(id);
    let msg = || Some(exhook_sim::sample::message(id, &format!("t/{id}"), "hello"));
    let authz = || model::ClientAuthorizeRequest {
        clientinfo: ci(),
        r#type: 0,
        topic: format!("t/{id}"),
        result: true,
        meta: m(),
    };
    emqx.notify(&model::ClientConnectRequest { conninfo: conninfo(id), meta: m(), ..Default::default() })
        .await
        .unwrap();
    emqx.valued(&model::ClientAuthenticateRequest { clientinfo: ci(), result: true, meta: m() }).await.unwrap();
    emqx.notify(&model::ClientConnackRequest {
        conninfo: conninfo(id),
        result_code: "success".into(),
        meta: m(),
        ..Default::default()
    })
    .await
    .unwrap();
    emqx.notify(&model::ClientConnectedRequest { clientinfo: ci(), meta: m() }).await.unwrap();
    emqx.valued(&authz()).await.unwrap();
    let filter = model::TopicFilter { name: format!("t/{id}"), qos: 1, ..Default::default() };
    emqx.notify(&model::ClientSubscribeRequest {
        clientinfo: ci(),
        topic_filters: vec![filter],
        meta: m(),
        ..Default::default()
    })
    .await
    .unwrap();
    emqx.notify(&model::SessionSubscribedRequest {
        clientinfo: ci(),
        topic: format!("t/{id}"),
        meta: m(),
        ..Default::default()
    })
    .await
    .unwrap();
    emqx.valued(&authz()).await.unwrap();
    emqx.valued(&model::MessagePublishRequest { message: msg(), meta: m(), ..Default::default() }).await.unwrap();
    emqx.notify(&model::MessageDeliveredRequest { clientinfo: ci(), message: msg(), meta: m() }).await.unwrap();
    emqx.notify(&model::MessageAckedRequest { clientinfo: ci(), message: msg(), meta: m() }).await.unwrap();
    emqx.notify(&model::ClientDisconnectedRequest { clientinfo: ci(), reason: "normal".into(), meta: m() })
        .await
        .unwrap();
    emqx.notify(&model::SessionTerminatedRequest { clientinfo: ci(), reason: "normal".into(), meta: m() })
        .await
        .unwrap();
}

/// The clientid a call is about (every request but v1's OnProviderLoaded decodes as the model).
fn clientid(call: &Call) -> String {
    fn key<R: HookRequest>(call: &Call) -> String {
        call.request::<R>().dispatch_key().to_owned()
    }
    match call.hook {
        Hook::ClientConnect => key::<model::ClientConnectRequest>(call),
        Hook::ClientAuthenticate => key::<model::ClientAuthenticateRequest>(call),
        Hook::ClientConnack => key::<model::ClientConnackRequest>(call),
        Hook::ClientConnected => key::<model::ClientConnectedRequest>(call),
        Hook::ClientAuthorize => key::<model::ClientAuthorizeRequest>(call),
        Hook::ClientSubscribe => key::<model::ClientSubscribeRequest>(call),
        Hook::SessionSubscribed => key::<model::SessionSubscribedRequest>(call),
        Hook::MessagePublish => key::<model::MessagePublishRequest>(call),
        Hook::MessageDelivered => key::<model::MessageDeliveredRequest>(call),
        Hook::MessageAcked => key::<model::MessageAckedRequest>(call),
        Hook::ClientDisconnected => key::<model::ClientDisconnectedRequest>(call),
        Hook::SessionTerminated => key::<model::SessionTerminatedRequest>(call),
        _ => String::new(),
    }
}

/// A provider of `version` registering every hook of the life, slow (20 ms) on notifications.
async fn slow_on_notifications(version: Version) -> SimProvider {
    let mut names: Vec<&str> = LIFE.iter().filter_map(|h| h.hookpoint(version)).collect();
    names.dedup_by(|a, b| a == b);
    names.sort_unstable();
    names.dedup();
    SimProvider::builder(version)
        .hooks(&names)
        .script(|call: &Call| match call.hook.kind() {
            exhook_hooks::HookKind::Notify => Reply::Empty.after(Duration::from_millis(20)),
            _ => Reply::Default,
        })
        .start()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_each_provider_sees_every_clients_hooks_in_emqx_order() {
    const CLIENTS: usize = 50;
    let v1 = slow_on_notifications(Version::V1).await;
    let v2 = slow_on_notifications(Version::V2).await;
    let toml = format!(
        "{}{}",
        provider("v1", &v1.url(), "v1", "2s", "ignore"),
        provider("v2", &v2.url(), "v2", "2s", "ignore")
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    let started = Instant::now();
    let lives: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let emqx = emqx.clone();
            tokio::spawn(async move { live(&emqx, &format!("client-{c}")).await })
        })
        .collect();
    for l in lives {
        l.await.unwrap();
    }
    let took = started.elapsed();
    let per_provider = CLIENTS * LIFE.len();
    for (name, p) in [("v1", &v1), ("v2", &v2)] {
        p.wait_for(Hook::SessionTerminated, CLIENTS, Duration::from_secs(20)).await;
        let calls = p.calls();
        let calls: Vec<&Call> = calls.iter().filter(|c| c.hook != Hook::ProviderLoaded).collect();
        assert_eq!(calls.len(), per_provider, "{name}: every hook of every life delivered");
        for c in 0..CLIENTS {
            let id = format!("client-{c}");
            let seen: Vec<Hook> = calls.iter().filter(|call| clientid(call) == id).map(|call| call.hook).collect();
            assert_eq!(seen, LIFE, "{name}: {id}'s hooks out of EMQX's order");
        }
    }
    let text = gw.gateway.metrics().encode();
    assert!(!text.contains(r#"result="timeout""#), "a valued call ran out of time waiting: {text}");
    eprintln!(
        "ORDER: {CLIENTS} concurrent lives x {} hooks through 2 providers (20 ms per notification): {took:?}",
        LIFE.len()
    );
}
