//! Loading, unloading and notifications over real gRPC.

mod common;

use std::time::{Duration, Instant};

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model;
use exhook_sim::{Reply, SimProvider, notifications};

fn hook_names(r: &model::LoadedResponse) -> Vec<(String, Vec<String>)> {
    r.hooks.iter().map(|h| (h.name.clone(), h.topics.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loaded_response_is_the_union_in_the_callers_spelling() {
    let old = SimProvider::builder(Version::V1)
        .hooks(&["client.check_acl", "session.takeovered"])
        .hook_topics("message.publish", &["a/#"])
        .start()
        .await
        .unwrap();
    let new = SimProvider::builder(Version::V3)
        .hooks(&["client.authorize", "message.delivered"])
        .hook_topics("message.publish", &["b/+", "a/#"])
        .start()
        .await
        .unwrap();
    let toml = format!(
        "{}{}",
        provider("old", &old.url(), "auto", "1s", "deny"),
        provider("new", &new.url(), "auto", "1s", "deny")
    );
    let gw = TestGateway::start(&toml).await;
    for caller in ALL_VERSIONS {
        let (_, r) = gw.loaded_emqx(caller).await;
        let (authz, takeover) = match caller {
            Version::V1 => ("client.check_acl", "session.takeovered"),
            _ => ("client.authorize", "session.takenover"),
        };
        assert_eq!(
            hook_names(&r),
            vec![
                (authz.to_string(), vec![]),
                (takeover.to_string(), vec![]),
                ("message.publish".to_string(), vec!["a/#".to_string(), "b/+".to_string()]),
                ("message.delivered".to_string(), vec![]),
            ],
            "caller {caller}"
        );
    }
    // `auto` found each provider's package.
    assert_eq!(gw.gateway.provider("old").unwrap().version(), Some(Version::V1));
    assert_eq!(gw.gateway.provider("new").unwrap().version(), Some(Version::V3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emqx_broker_info_is_forwarded_in_the_providers_package() {
    let old = SimProvider::builder(Version::V1).hook("client.connected").start().await.unwrap();
    let new = SimProvider::builder(Version::V2).hook("client.connected").start().await.unwrap();
    let toml = format!(
        "{}{}",
        provider("old", &old.url(), "v1", "1s", "deny"),
        provider("new", &new.url(), "v2", "1s", "deny")
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    let at_old: exhook_proto::v1::ProviderLoadedRequest = old.calls_of(Hook::ProviderLoaded)[0].request();
    let b = at_old.broker.unwrap();
    assert_eq!((b.version.as_str(), b.uptime.as_str()), ("5.10.4", "1 hours, 2 minutes, 3 seconds"));
    assert_eq!(at_old.meta.unwrap().cluster_name, "emqxcl");
    let at_new: exhook_proto::v2::ProviderLoadedRequest = new.calls_of(Hook::ProviderLoaded)[0].request();
    assert_eq!(at_new.broker.unwrap().uptime, 3_723_000);

    // OnProviderUnloaded reaches every provider (in the background; EMQX ignores the reply).
    emqx.notify(&model::ProviderUnloadedRequest { meta: meta(Version::V3, "emqxcl") }).await.unwrap();
    assert_eq!(old.wait_for(Hook::ProviderUnloaded, 1, Duration::from_secs(5)).await.len(), 1);
    assert_eq!(new.wait_for(Hook::ProviderUnloaded, 1, Duration::from_secs(5)).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_provider_is_retried_and_the_hook_list_never_shrinks() {
    let auth = SimProvider::builder(Version::V3)
        .hooks(&["client.authenticate", "session.created"])
        .script(exhook_sim::valued(|_| {
            Reply::bool(exhook_proto::model::valued_response::ResponsedType::Continue, true)
        }))
        .start()
        .await
        .unwrap();
    auth.stopped().await;
    let toml = format!(
        "{}[chains]\n\"client.authenticate\" = [\"auth\"]\n",
        provider("auth", &auth.url(), "v3", "200ms", "deny")
    );
    let gw = TestGateway::start(&toml).await;
    gw.gateway.start_loading();
    // EMQX 5.0-5.8 load once: the explicit chain's hook must be in the answer already.
    let (emqx, r) = gw.loaded_emqx(Version::V2).await;
    assert_eq!(hook_names(&r), vec![("client.authenticate".to_string(), vec![])]);
    // Nobody loaded: the deny provider fails closed at once, without waiting for it.
    let deny = model::ValuedResponse {
        r#type: model::valued_response::ResponsedType::StopAndReturn as i32,
        value: Some(model::valued_response::Value::BoolResult(false)),
    };
    assert_eq!(emqx.valued(&authn("c", true, Version::V2)).await.unwrap(), deny);

    let p = gw.gateway.provider("auth").unwrap();
    let loads = p.load_count();
    auth.restart().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), p.wait_loaded(loads)).await.expect("reloaded in the background");
    let r = emqx.valued(&authn("c", true, Version::V2)).await.unwrap();
    assert_eq!(r.r#type, model::valued_response::ResponsedType::Continue as i32);
    // Now loaded: a new EMQX load also reports what it registered beyond the chain.
    let (_, r) = gw.loaded_emqx(Version::V2).await;
    assert_eq!(
        hook_names(&r),
        vec![("client.authenticate".to_string(), vec![]), ("session.created".to_string(), vec![])]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_keep_each_clients_order() {
    // Two shards for eight clients: clients share shards, and the provider answers some
    // calls slowly, so any reordering inside a shard would show.
    let p = SimProvider::builder(Version::V3)
        .hook("client.disconnected")
        .script(notifications(|c| {
            let r: model::ClientDisconnectedRequest = c.request();
            let n: u32 = r.reason.parse().unwrap_or(0);
            if n.is_multiple_of(7) { Reply::Empty.after(Duration::from_millis(2)) } else { Reply::Empty }
        }))
        .start()
        .await
        .unwrap();
    let toml = format!("{}queue_shards = 2\nqueue_size = 1000\n", provider("p", &p.url(), "v3", "1s", "ignore"));
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 40;
    for i in 0..PER_CLIENT {
        for c in 0..CLIENTS {
            let req = model::ClientDisconnectedRequest {
                clientinfo: client_info(&format!("client-{c}")),
                reason: format!("{}", i * CLIENTS + c),
                meta: meta(Version::V3, "emqxcl"),
            };
            emqx.notify(&req).await.unwrap();
        }
    }
    let calls = p.wait_for(Hook::ClientDisconnected, CLIENTS * PER_CLIENT, Duration::from_secs(20)).await;
    assert_eq!(calls.len(), CLIENTS * PER_CLIENT, "every notification delivered");
    for c in 0..CLIENTS {
        let id = format!("client-{c}");
        let seq: Vec<usize> = calls
            .iter()
            .map(|call| call.request::<model::ClientDisconnectedRequest>())
            .filter(|r| r.clientinfo.as_ref().unwrap().clientid == id)
            .map(|r| r.reason.parse().unwrap())
            .collect();
        let expected: Vec<usize> = (0..PER_CLIENT).map(|i| i * CLIENTS + c).collect();
        assert_eq!(seq, expected, "{id} out of order");
    }
    let summary = gw.gateway.metrics().provider_summary("p");
    assert_eq!(summary.answered, (CLIENTS * PER_CLIENT) as u64, "every one delivered");
    assert_eq!(summary.dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_full_queue_drops_and_counts_without_blocking_emqx() {
    // One shard of 4; the provider takes 300 ms per notification: the queue fills at once.
    let slow = SimProvider::builder(Version::V2)
        .hook("session.created")
        .script(notifications(|_| Reply::Empty.after(Duration::from_millis(300))))
        .start()
        .await
        .unwrap();
    let toml = format!("{}queue_shards = 1\nqueue_size = 4\n", provider("slow", &slow.url(), "v2", "1s", "ignore"));
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V2).await;
    let started = Instant::now();
    const SENT: u64 = 20;
    for i in 0..SENT {
        let req = model::SessionCreatedRequest {
            clientinfo: client_info(&format!("c{i}")),
            meta: meta(Version::V2, "emqxcl"),
        };
        emqx.notify(&req).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_millis(300), "EMQX was blocked: {:?}", started.elapsed());
    // Every notification is either queued (and delivered, below) or counted as dropped.
    let dropped = gw.gateway.metrics().provider_summary("slow").dropped;
    let enqueued = SENT - dropped;
    let text = gw.gateway.metrics().encode();
    let full =
        format!(r#"exhook_gateway_notifications_dropped_total{{provider="slow",reason="queue_full"}} {dropped}"#);
    assert!(text.lines().any(|l| l == full), "every drop is a full queue's: {full}\n{text}");
    // 4 waiting + at most 1 already taken by the delivery task.
    assert!((4..=5).contains(&enqueued), "enqueued {enqueued}");
    // Nothing queued is lost.
    let got = slow.wait_for(Hook::SessionCreated, enqueued as usize, Duration::from_secs(10)).await;
    assert_eq!(got.len() as u64, enqueued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_after_delivery_providers_are_awaited_queued_ones_are_not() {
    let waited = SimProvider::builder(Version::V3)
        .hook("client.connected")
        .script(notifications(|_| Reply::Empty.after(Duration::from_millis(150))))
        .start()
        .await
        .unwrap();
    let queued = SimProvider::builder(Version::V1)
        .hook("client.connected")
        .script(notifications(|_| Reply::Empty.after(Duration::from_secs(2))))
        .start()
        .await
        .unwrap();
    let toml = format!(
        "{}notify = \"after-delivery\"\n{}",
        provider("waited", &waited.url(), "v3", "1s", "ignore"),
        provider("queued", &queued.url(), "v1", "5s", "ignore")
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    let started = Instant::now();
    emqx.notify(&model::ClientConnectedRequest { clientinfo: client_info("c"), meta: meta(Version::V3, "emqxcl") })
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150), "after-delivery provider not awaited: {took:?}");
    assert!(took < Duration::from_secs(2), "queued provider must not be awaited: {took:?}");
    assert_eq!(waited.calls_of(Hook::ClientConnected).len(), 1);
    assert_eq!(gw.gateway.metrics().provider_summary("waited").answered, 1);

    // An after-delivery provider slower than EMQX's deadline does not make EMQX wait past it.
    waited.set_script(notifications(|_| Reply::Empty.after(Duration::from_secs(3))));
    let mut emqx = emqx;
    emqx.request_timeout = Duration::from_millis(200);
    let started = Instant::now();
    emqx.notify(&model::ClientConnectedRequest { clientinfo: client_info("c"), meta: meta(Version::V3, "emqxcl") })
        .await
        .expect("answered inside EMQX's deadline");
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_providers_and_their_breaker_state() {
    let a = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let b = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let c = SimProvider::builder(Version::V2).hook("client.authenticate").start().await.unwrap();
    let before = format!(
        "{}{}[chains]\n\"client.authenticate\" = [\"a\", \"b\"]\n",
        provider("a", &a.url(), "v3", "1s", "ignore"),
        provider("b", &b.url(), "v3", "1s", "ignore")
    );
    let gw = TestGateway::start(&before).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    let old_a = gw.gateway.provider("a").unwrap();
    let old_b = gw.gateway.provider("b").unwrap();
    // Trip a's breaker (5 consecutive failures by default).
    a.set_script(exhook_sim::valued(|_| Reply::Status(tonic::Status::internal("down"))));
    for _ in 0..5 {
        emqx.valued(&authn("x", true, Version::V3)).await.unwrap();
    }
    assert_eq!(old_a.breaker_state(), exhook_upstream::BreakerState::Open);

    // New file: a's timeout changes (kept in place), b moves to another replica URL
    // (re-created), c is new, and the chain changes.
    let after = format!(
        "{}{}{}[chains]\n\"client.authenticate\" = [\"c\", \"a\", \"b\"]\n",
        provider("a", &a.url(), "v3", "2s", "ignore"),
        provider("b", &c.url(), "v2", "1s", "ignore"),
        provider("c", &c.url(), "v2", "1s", "ignore")
    );
    let config = exhook_config::Config::parse(&after, std::path::Path::new("<reload>")).unwrap();
    let report = gw.gateway.reload(config).await.unwrap();
    assert_eq!(report.kept, ["a"]);
    assert_eq!(report.added, ["b", "c"]);
    assert!(report.removed.is_empty() && report.not_replaced.is_empty(), "{report:?}");
    // No window: the new b and c were loaded before they went live.
    assert!(gw.gateway.provider("b").unwrap().registration().is_some(), "re-created b loaded before the swap");
    assert!(gw.gateway.provider("c").unwrap().registration().is_some(), "new c loaded before the swap");
    let new_a = gw.gateway.provider("a").unwrap();
    assert!(std::sync::Arc::ptr_eq(&old_a, &new_a), "unchanged connection settings: the same provider");
    assert_eq!(new_a.breaker_state(), exhook_upstream::BreakerState::Open, "breaker state survives the reload");
    assert_eq!(new_a.config().timeout, Duration::from_secs(2), "soft settings applied in place");
    assert!(new_a.registration().is_some(), "registration kept");
    assert!(!std::sync::Arc::ptr_eq(&old_b, &gw.gateway.provider("b").unwrap()));
    // The new chain is live (c and the new b load on EMQX's next OnProviderLoaded).
    gw.loaded_emqx(Version::V3).await;
    c.set_script(exhook_sim::valued(|_| {
        Reply::bool(exhook_proto::model::valued_response::ResponsedType::StopAndReturn, false)
    }));
    let r = emqx.valued(&authn("x", true, Version::V3)).await.unwrap();
    assert_eq!(r.r#type, exhook_proto::model::valued_response::ResponsedType::StopAndReturn as i32);
    assert_eq!(c.calls_of(Hook::ClientAuthenticate).len(), 1);

    // A changed provider that cannot be loaded does not replace the running one.
    let dead = SimProvider::builder(Version::V3).start().await.unwrap();
    let dead_url = dead.url();
    drop(dead);
    let b_before = gw.gateway.provider("b").unwrap();
    let broken =
        after.replace(&format!("name = \"b\"\nurl = \"{}\"", c.url()), &format!("name = \"b\"\nurl = \"{dead_url}\""));
    assert_ne!(broken, after);
    let config = exhook_config::Config::parse(&broken, std::path::Path::new("<reload>")).unwrap();
    let report = gw.gateway.reload(config).await.unwrap();
    assert_eq!(report.not_replaced.len(), 1, "{report:?}");
    assert!(report.not_replaced[0].starts_with("b: "), "{report:?}");
    assert!(std::sync::Arc::ptr_eq(&b_before, &gw.gateway.provider("b").unwrap()), "the running b stays");
    assert_eq!(gw.gateway.snapshot().config().providers[1].urls, [c.url()], "with its running settings");

    // Removing a provider drops it from the snapshot.
    let config =
        exhook_config::Config::parse(&provider("a", &a.url(), "v3", "2s", "ignore"), std::path::Path::new("<reload>"))
            .unwrap();
    let report = gw.gateway.reload(config).await.unwrap();
    assert_eq!(report.removed, ["b", "c"]);
    assert!(gw.gateway.provider("c").is_none());
}
