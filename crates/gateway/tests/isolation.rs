//! Tenants sharing one gateway: unknown clusters are refused, a shared provider keeps each
//! tenant's broker info and hears OnProviderUnloaded only from the last tenant, and one
//! tenant's burst (calls or 1 MiB notifications) cannot shed, drop or slow another's.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::{self, valued_response::ResponsedType, valued_response::Value};
use exhook_sim::{Call, Reply, SimProvider};

fn cluster_of(call: &Call) -> String {
    // Every request but v1's OnProviderLoaded decodes as the model; `meta` is field 2 or 3 —
    // decode the two shapes the tests use.
    match call.hook {
        Hook::ClientAuthenticate => call.request::<model::ClientAuthenticateRequest>().meta,
        Hook::MessageDelivered => call.request::<model::MessageDeliveredRequest>().meta,
        Hook::ProviderLoaded => call.request::<model::ProviderLoadedRequest>().meta,
        Hook::ProviderUnloaded => call.request::<model::ProviderUnloadedRequest>().meta,
        _ => None,
    }
    .map(|m| m.cluster_name)
    .unwrap_or_default()
}

fn authn_of(cluster: &str, clientid: &str) -> model::ClientAuthenticateRequest {
    let mut r = authn(clientid, true, Version::V3);
    r.meta = meta(Version::V3, cluster);
    r
}

fn allowed(r: &model::ValuedResponse) -> bool {
    r.r#type == ResponsedType::Continue as i32 && r.value == Some(Value::BoolResult(true))
}

/// Two tenants, `a` and `b`, sharing `shared`; `extra` lines go into the provider's table.
fn two_tenants(url: &str, extra: &str) -> String {
    format!(
        "{}{extra}\n[[tenants]]\nname = \"a\"\ncluster_names = [\"a\"]\nproviders = [\"shared\"]\n\n[[tenants]]\nname = \"b\"\ncluster_names = [\"b\"]\nproviders = [\"shared\"]\n",
        provider("shared", url, "v3", "1s", "deny"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_clusters_are_refused_counted_and_logged_once() {
    let p = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let gw = TestGateway::start(&two_tenants(&p.url(), "")).await;
    let emqx = gw.emqx(Version::V3).await;
    let e = emqx.loaded(&loaded_request(Version::V3, "intruder")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("\"intruder\""), "{e:?}");
    for _ in 0..3 {
        let e = emqx.valued(&authn_of("intruder", "x")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }
    let e = emqx.notify(&model::ProviderUnloadedRequest { meta: meta(Version::V3, "intruder") }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let text = gw.gateway.metrics().encode();
    assert!(text.contains(r#"exhook_gateway_caller_identity_total{event="rejected_unknown_cluster"} 5"#), "{text}");
    assert_eq!(p.count(), 0, "nothing of an unknown cluster reached a provider");
    // The configured tenants still work.
    emqx.loaded(&loaded_request(Version::V3, "a")).await.unwrap();
    assert_eq!(p.calls_of(Hook::ProviderLoaded).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_provider_keeps_each_tenants_broker_info_and_unloads_last() {
    let p = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let gw = TestGateway::start(&two_tenants(&p.url(), "health_interval = \"50ms\"\n")).await;
    let emqx = gw.emqx(Version::V3).await;
    emqx.loaded(&loaded_request(Version::V3, "a")).await.unwrap();
    emqx.loaded(&loaded_request(Version::V3, "b")).await.unwrap();
    let by_tenants = || -> Vec<String> {
        p.calls_of(Hook::ProviderLoaded).iter().map(cluster_of).filter(|c| !c.is_empty()).collect()
    };
    assert_eq!(by_tenants(), ["a", "b"]);
    let shared = gw.gateway.provider("shared").unwrap();
    assert_eq!(shared.loaded_tenants(), ["a", "b"]);

    // The provider restarts: the re-load replays both tenants' broker info, not just the last.
    gw.gateway.start_loading(); // health checks
    p.stopped().await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while shared.is_up() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the health check saw the outage");
    let before = shared.load_count();
    p.restart().await.unwrap();
    tokio::time::timeout(Duration::from_secs(15), shared.wait_loaded(before + 1)).await.expect("re-loaded with both");
    assert_eq!(by_tenants(), ["a", "b", "a", "b"], "both tenants' broker info replayed");

    // Unloaded by a: b still uses it, so the provider hears nothing; then by b: it does.
    emqx.notify(&model::ProviderUnloadedRequest { meta: meta(Version::V3, "a") }).await.unwrap();
    assert_eq!(shared.loaded_tenants(), ["b"]);
    emqx.notify(&model::ProviderUnloadedRequest { meta: meta(Version::V3, "b") }).await.unwrap();
    let unloads = p.wait_for(Hook::ProviderUnloaded, 1, Duration::from_secs(5)).await;
    assert_eq!(unloads.iter().map(cluster_of).collect::<Vec<_>>(), ["b"], "one unload, from the last tenant");
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

async fn timed_calls(emqx: &exhook_sim::EmqxClient, cluster: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let r = emqx.valued(&authn_of(cluster, &format!("{cluster}-{i}"))).await.unwrap();
        out.push(started.elapsed());
        assert!(allowed(&r), "tenant {cluster}'s call {i} was not allowed: {r:?}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_one_tenants_flood_neither_sheds_nor_slows_another_tenant() {
    // The provider takes 50 ms per call (its latency, not the gateway's CPU, is what an
    // unshared tenant sees); max_inflight 8 gives each tenant 4.
    let p = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .record(false)
        .script(exhook_sim::valued(|_| Reply::bool(ResponsedType::Continue, true).after(Duration::from_millis(50))))
        .start()
        .await
        .unwrap();
    let gw = TestGateway::start(&two_tenants(&p.url(), "max_inflight = 8\n")).await;
    let emqx_a = gw.emqx(Version::V3).await;
    let emqx_b = gw.emqx(Version::V3).await;
    emqx_a.loaded(&loaded_request(Version::V3, "a")).await.unwrap();
    emqx_b.loaded(&loaded_request(Version::V3, "b")).await.unwrap();
    let idle = p99(timed_calls(&emqx_b, "b", 40).await);

    // Tenant a: 32 callers without pause, far beyond its share.
    let stop = Arc::new(AtomicBool::new(false));
    let (a_allowed, a_denied) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flood: Vec<_> = (0..32)
        .map(|i| {
            let (emqx, stop) = (emqx_a.clone(), Arc::clone(&stop));
            let (ok, denied) = (Arc::clone(&a_allowed), Arc::clone(&a_denied));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = emqx.valued(&authn_of("a", &format!("a-{i}"))).await.unwrap();
                    let counter = if allowed(&r) { &ok } else { &denied };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Wait until the flood is on: a's share is in use and its excess is being shed.
    tokio::time::timeout(Duration::from_secs(10), async {
        while a_denied.load(Ordering::Relaxed) < 32 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the flood starts shedding");
    let flooded = p99(timed_calls(&emqx_b, "b", 40).await);
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        f.await.unwrap();
    }
    let (ok, denied) = (a_allowed.load(Ordering::Relaxed), a_denied.load(Ordering::Relaxed));
    eprintln!("ISOLATION flood: b p99 idle {idle:?}, during a's flood {flooded:?}; a allowed {ok}, shed {denied}");
    assert!(ok > 0 && denied > ok, "a's flood exceeded its share: allowed {ok}, shed {denied}");
    assert!(flooded <= idle * 2, "b's p99 {flooded:?} more than twice its idle p99 {idle:?}");
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("resident pages");
    pages * 4096
}

fn delivered(cluster: &str, payload: usize) -> model::MessageDeliveredRequest {
    model::MessageDeliveredRequest {
        clientinfo: client_info(&format!("{cluster}-client")),
        message: Some(model::Message {
            id: "1".into(),
            topic: "t/big".into(),
            payload: vec![7u8; payload].into(),
            ..Default::default()
        }),
        meta: meta(Version::V3, cluster),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_a_flood_of_1_mib_notifications_is_bounded_in_bytes_and_spares_other_tenants() {
    // A slow notification consumer (50 ms each) with room for 2 x 256 events but 8 MiB of them:
    // each tenant gets 4 MiB.
    let from_b = Arc::new(AtomicUsize::new(0));
    let seen_b = Arc::clone(&from_b);
    let p = SimProvider::builder(Version::V3)
        .hook("message.delivered")
        .record(false)
        .script(exhook_sim::notifications(move |call| {
            if cluster_of(call) == "b" {
                seen_b.fetch_add(1, Ordering::Relaxed);
            }
            Reply::Empty.after(Duration::from_millis(50))
        }))
        .start()
        .await
        .unwrap();
    let extra = "queue_size = 256\nqueue_shards = 2\nqueue_bytes = 8388608\n";
    let gw = TestGateway::start(&two_tenants(&p.url(), extra)).await;
    let emqx = gw.emqx(Version::V3).await;
    emqx.loaded(&loaded_request(Version::V3, "a")).await.unwrap();
    emqx.loaded(&loaded_request(Version::V3, "b")).await.unwrap();

    let rss_before = rss_bytes();
    // 200 MiB from tenant a, 8 senders at a time; every one answered at once.
    let mut senders = Vec::new();
    for s in 0..8 {
        let emqx = emqx.clone();
        senders.push(tokio::spawn(async move {
            for _ in 0..25 {
                let started = Instant::now();
                emqx.notify(&delivered("a", 1 << 20)).await.unwrap();
                assert!(started.elapsed() < Duration::from_secs(2), "sender {s} blocked");
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let rss_after = rss_bytes();
    // Tenant b's small events still have room.
    for _ in 0..3 {
        emqx.notify(&delivered("b", 100)).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        while from_b.load(Ordering::Relaxed) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("all of b's notifications delivered");
    let text = gw.gateway.metrics().encode();
    let dropped = text
        .lines()
        .find(|l| {
            l.starts_with(r#"exhook_gateway_notifications_dropped_total{provider="shared",reason="queue_bytes"}"#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!("ISOLATION bytes: 200 x 1 MiB from a: {dropped} dropped (queue_bytes), RSS +{} MiB", grown >> 20);
    assert!(dropped >= 150, "most of a's 200 MiB did not fit its 4 MiB share: {dropped} dropped");
    assert!(grown < 64 << 20, "RSS grew by {} MiB", grown >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emqx_loads_go_through_the_breaker_and_the_limit() {
    let p = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let toml = format!(
        "{}[providers.breaker]\nconsecutive_failures = 2\nopen_duration = \"1m\"\n",
        provider("auth", &p.url(), "v3", "1s", "deny")
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    assert_eq!(p.calls_of(Hook::ProviderLoaded).len(), 1);
    // Two failures open the breaker.
    p.set_script(exhook_sim::valued(|_| Reply::Status(tonic::Status::internal("sick"))));
    for _ in 0..2 {
        emqx.valued(&authn("c", true, Version::V3)).await.unwrap();
    }
    let auth = gw.gateway.provider("auth").unwrap();
    assert_eq!(auth.breaker_state(), exhook_upstream::BreakerState::Open);
    // EMQX re-loads the gateway: the open provider is not called (its health check re-loads
    // it when it is back), and the hook list still carries what it registered.
    let r = emqx.loaded(&loaded_request(Version::V3, "emqxcl")).await.unwrap();
    assert_eq!(p.calls_of(Hook::ProviderLoaded).len(), 1, "no load sent through an open breaker");
    assert!(r.hooks.iter().any(|h| h.name == "client.authenticate"));
    // OnProviderUnloaded too: refused by the open breaker, nothing sent.
    emqx.notify(&model::ProviderUnloadedRequest { meta: meta(Version::V3, "emqxcl") }).await.unwrap();
    let text = gw.gateway.metrics().encode();
    let unload_refused =
        r#"exhook_gateway_provider_calls_total{hook="OnProviderUnloaded",provider="auth",result="breaker_open"} 1"#;
    tokio::time::timeout(Duration::from_secs(5), async {
        while !gw.gateway.metrics().encode().contains(unload_refused) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{text}"));
    assert!(p.calls_of(Hook::ProviderUnloaded).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_added_by_a_reload_is_loaded_with_its_tenants_broker_info() {
    // EMQX 5.0–5.8 load the gateway once: a provider a reload adds must still learn the broker
    // info of the tenants that reach it, not only the gateway's own.
    let old = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let fresh = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let gw = TestGateway::start(&two_tenants(&old.url(), "")).await;
    let emqx = gw.emqx(Version::V3).await;
    emqx.loaded(&loaded_request(Version::V3, "a")).await.unwrap();
    let after = format!(
        "{}{}\n[[tenants]]\nname = \"a\"\ncluster_names = [\"a\"]\nproviders = [\"shared\", \"fresh\"]\n\n[[tenants]]\nname = \"b\"\ncluster_names = [\"b\"]\nproviders = [\"shared\"]\n",
        provider("shared", &old.url(), "v3", "1s", "deny"),
        provider("fresh", &fresh.url(), "v3", "1s", "deny"),
    );
    let config = exhook_config::Config::parse(&after, std::path::Path::new("<reload>")).unwrap();
    let report = gw.gateway.reload(config).await.unwrap();
    assert_eq!(report.added, ["fresh"]);
    let loads: Vec<String> = fresh.calls_of(Hook::ProviderLoaded).iter().map(cluster_of).collect();
    assert_eq!(loads, ["a"], "loaded before going live, with tenant a's broker info");
    assert_eq!(gw.gateway.provider("fresh").unwrap().loaded_tenants(), ["a"]);
}
