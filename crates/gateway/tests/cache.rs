//! The decision cache (issue 14 part 2): reuse, keys, TTLs, bounds, invalidation, the admin
//! API's eviction; and the admin plane's shadow disagreement log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::{self, ValuedResponse, valued_response::ResponsedType, valued_response::Value};
use exhook_server::Observer;
use exhook_server::observe::StepEvent;
use exhook_sim::{Reply, SimProvider, valued};

fn bool_answer(kind: ResponsedType, v: bool) -> ValuedResponse {
    ValuedResponse { r#type: kind as i32, value: Some(Value::BoolResult(v)) }
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(-1.0)
}

fn lookups(gw: &TestGateway, hook: &str) -> (f64, f64) {
    let m = gw.gateway.metrics().encode();
    let of = |r: &str| {
        value(&m, &format!("exhook_gateway_cache_lookups_total{{hook=\"{hook}\",provider=\"auth\",result=\"{r}\"}}"))
    };
    (of("hit"), of("miss"))
}

fn evictions(gw: &TestGateway, reason: &str) -> f64 {
    value(
        &gw.gateway.metrics().encode(),
        &format!("exhook_gateway_cache_evictions_total{{provider=\"auth\",reason=\"{reason}\"}}"),
    )
}

fn authn_with(clientid: &str, password: &str) -> model::ClientAuthenticateRequest {
    let mut r = authn(clientid, false, Version::V3);
    r.clientinfo.as_mut().unwrap().password = password.into();
    r
}

/// Cache hits as the observer sees them.
#[derive(Default)]
struct Hits(Mutex<Vec<String>>);

impl Observer for Hits {
    fn step(&self, e: &StepEvent<'_>) {
        if e.cached {
            self.0.lock().unwrap().push(e.provider.to_owned());
        }
    }
}

/// auth: allows every password but "wrong"; allows subscribing to everything but `secret/#`.
async fn auth_provider() -> SimProvider {
    SimProvider::builder(Version::V3)
        .hooks(&["client.authenticate", "client.authorize"])
        .script(valued(|c| match c.hook {
            Hook::ClientAuthenticate => {
                let r: model::ClientAuthenticateRequest = c.request();
                Reply::bool(ResponsedType::StopAndReturn, r.clientinfo.unwrap_or_default().password != "wrong")
            }
            _ => {
                let r: model::ClientAuthorizeRequest = c.request();
                Reply::bool(ResponsedType::StopAndReturn, !r.topic.starts_with("secret/"))
            }
        }))
        .start()
        .await
        .unwrap()
}

fn cached_config(url: &str, cache: &str) -> String {
    format!(
        "{}[providers.cache]\n{cache}\n[chains]\n\"client.authenticate\" = [\"auth\"]\n\"client.authorize\" = [\"auth\"]\n",
        provider("auth", url, "v3", "1s", "deny")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_answer_is_reused_without_a_call() {
    let auth = auth_provider().await;
    let hits = Arc::new(Hits::default());
    let gw =
        TestGateway::start_observed(&cached_config(&auth.url(), "ttl = \"30s\"\nmax_entries = 1000"), hits.clone())
            .await;
    wait_loaded(&gw).await;
    assert_eq!(lookups(&gw, "client.authenticate"), (0.0, 0.0), "series exist at 0 before any call");
    let emqx = gw.emqx(Version::V3).await;
    for _ in 0..5 {
        let r = emqx.valued(&authn_with("c1", "pw")).await.unwrap();
        assert_eq!(r, bool_answer(ResponsedType::StopAndReturn, true));
    }
    assert_eq!(auth.calls_of(Hook::ClientAuthenticate).len(), 1, "one call, four hits");
    assert_eq!(lookups(&gw, "client.authenticate"), (4.0, 1.0));
    assert_eq!(hits.0.lock().unwrap().len(), 4, "the observer sees each hit as a cached step");
    // Every deciding field is in the key: another password, client or peerhost is a miss.
    assert_eq!(
        emqx.valued(&authn_with("c1", "wrong")).await.unwrap(),
        bool_answer(ResponsedType::StopAndReturn, false)
    );
    emqx.valued(&authn_with("c2", "pw")).await.unwrap();
    let mut other_host = authn_with("c1", "pw");
    other_host.clientinfo.as_mut().unwrap().peerhost = "10.9.9.9".into();
    emqx.valued(&other_host).await.unwrap();
    assert_eq!(auth.calls_of(Hook::ClientAuthenticate).len(), 4);
    // A cached "wrong" answer is reused too (a negative answer, within negative_ttl = ttl).
    assert_eq!(
        emqx.valued(&authn_with("c1", "wrong")).await.unwrap(),
        bool_answer(ResponsedType::StopAndReturn, false)
    );
    assert_eq!(auth.calls_of(Hook::ClientAuthenticate).len(), 4);
    // Authorize: action and topic are in the key.
    let authz = |topic: &str, kind: i32| model::ClientAuthorizeRequest {
        clientinfo: client_info("c1"),
        r#type: kind,
        topic: topic.into(),
        result: true,
        meta: meta(Version::V3, "emqxcl"),
    };
    for (topic, kind, allowed) in
        [("a/1", 1, true), ("a/1", 1, true), ("a/1", 0, true), ("secret/x", 1, false), ("secret/x", 1, false)]
    {
        assert_eq!(emqx.valued(&authz(topic, kind)).await.unwrap(), bool_answer(ResponsedType::StopAndReturn, allowed));
    }
    assert_eq!(auth.calls_of(Hook::ClientAuthorize).len(), 3);
    assert_eq!(lookups(&gw, "client.authorize"), (2.0, 3.0));
    let m = gw.gateway.metrics().encode();
    assert_eq!(value(&m, "exhook_gateway_cache_entries{provider=\"auth\"}"), 7.0);
    // A hit is no provider call: provider_calls_total counts the 7 real ones only.
    assert_eq!(
        value(
            &m,
            "exhook_gateway_provider_calls_total{hook=\"client.authenticate\",provider=\"auth\",result=\"stop\"}"
        ),
        4.0
    );
    assert!(!m.contains("s3cret") && !m.contains("\"pw\""), "no password in the metrics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_bounds_and_invalidation() {
    let auth = auth_provider().await;
    let gw =
        TestGateway::start(&cached_config(&auth.url(), "ttl = \"30s\"\nnegative_ttl = \"300ms\"\nmax_entries = 2"))
            .await;
    wait_loaded(&gw).await;
    let emqx = gw.emqx(Version::V3).await;
    let calls = || auth.calls_of(Hook::ClientAuthenticate).len();

    // A negative answer lives negative_ttl.
    emqx.valued(&authn_with("n", "wrong")).await.unwrap();
    emqx.valued(&authn_with("n", "wrong")).await.unwrap();
    assert_eq!(calls(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    emqx.valued(&authn_with("n", "wrong")).await.unwrap();
    assert_eq!(calls(), 2, "expired: asked again");
    assert_eq!(evictions(&gw, "expired"), 1.0);

    // max_entries = 2 (one per shard here): a third client evicts an older one.
    emqx.valued(&authn_with("a", "pw")).await.unwrap();
    emqx.valued(&authn_with("b", "pw")).await.unwrap();
    assert!(evictions(&gw, "capacity") >= 1.0);
    let m = gw.gateway.metrics().encode();
    let entries = value(&m, "exhook_gateway_cache_entries{provider=\"auth\"}");
    assert!((1.0..=2.0).contains(&entries), "{entries} entries");

    // The provider re-loaded (its rules may have changed): its cache is emptied.
    let before = calls();
    emqx.valued(&authn_with("b", "pw")).await.unwrap();
    assert_eq!(calls(), before, "b is cached");
    let p = gw.gateway.provider("auth").unwrap();
    p.load(&loaded_request(Version::V3, "emqxcl"), Duration::from_secs(1)).await.unwrap();
    emqx.valued(&authn_with("b", "pw")).await.unwrap();
    assert_eq!(calls(), before + 1, "re-loaded: asked again");
    assert!(evictions(&gw, "invalidated") >= 1.0);

    // A new configuration starts with empty caches.
    emqx.valued(&authn_with("b", "pw")).await.unwrap();
    assert_eq!(calls(), before + 1);
    let config = exhook_config::Config::parse(
        &cached_config(&auth.url(), "ttl = \"31s\"\nmax_entries = 2"),
        std::path::Path::new("<test>"),
    )
    .unwrap();
    gw.gateway.reload(config).await.unwrap();
    emqx.valued(&authn_with("b", "pw")).await.unwrap();
    assert_eq!(calls(), before + 2, "new configuration: asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_evicts_and_shows_disagreements() {
    let auth = auth_provider().await;
    // A candidate that denies everyone: every authentication is a disagreement.
    let strict = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, false)))
        .start()
        .await
        .unwrap();
    let toml = format!(
        "{}[providers.cache]\nttl = \"30s\"\n{}[chains]\n\"client.authenticate\" = [\"auth\", {{ name = \"strict\", mode = \"shadow\" }}]\n",
        provider("auth", &auth.url(), "v3", "1s", "deny"),
        provider("strict", &strict.url(), "v3", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    wait_loaded(&gw).await;
    let admin = start_admin(&gw, Some("tok")).await;
    let emqx = gw.emqx(Version::V3).await;
    for id in ["x1", "x1", "x2"] {
        emqx.valued(&authn_with(id, "pa55-word-never-shown")).await.unwrap();
    }
    assert_eq!(auth.calls_of(Hook::ClientAuthenticate).len(), 2);

    // Evict one client's decisions: its next login asks the provider again, the other's not.
    assert_eq!(delete(admin.addr, "/api/v1/cache?provider=auth&clientid=x1", None).await.0, 401, "needs the token");
    let (code, body) = delete(admin.addr, "/api/v1/cache?provider=auth&clientid=x1", Some("tok")).await;
    assert_eq!((code, body.as_str()), (200, "{\"evicted\":1}"));
    emqx.valued(&authn_with("x1", "pa55-word-never-shown")).await.unwrap();
    emqx.valued(&authn_with("x2", "pa55-word-never-shown")).await.unwrap();
    assert_eq!(auth.calls_of(Hook::ClientAuthenticate).len(), 3);
    assert_eq!(evictions(&gw, "api"), 1.0);
    // Errors are named: an unknown provider, one without a cache, a mistyped parameter.
    assert_eq!(delete(admin.addr, "/api/v1/cache?provider=ghost", Some("tok")).await.0, 404);
    let (code, body) = delete(admin.addr, "/api/v1/cache?provider=strict", Some("tok")).await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("no decision cache"), "{body}");
    assert_eq!(delete(admin.addr, "/api/v1/cache?provder=auth", Some("tok")).await.0, 400);
    // Without parameters: every cache, every client.
    let (code, body) = delete(admin.addr, "/api/v1/cache", Some("tok")).await;
    assert_eq!((code, body.as_str()), (200, "{\"evicted\":2}"));

    // The disagreement log, through the API and in the status report; never the password.
    let strict_calls = strict.wait_for(Hook::ClientAuthenticate, 5, Duration::from_secs(10)).await.len();
    assert_eq!(strict_calls, 5, "the shadow is called on cache hits too");
    let mut body = String::new();
    for _ in 0..100 {
        let (code, b) = get(admin.addr, "/api/v1/shadow/disagreements", Some("tok")).await;
        assert_eq!(code, 200);
        body = b;
        if serde_json::from_str::<serde_json::Value>(&body).unwrap()["disagreements"].as_array().unwrap().len() == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let newest = &v["disagreements"][0];
    assert_eq!(newest["clientid"], "x2");
    assert_eq!((newest["chain"].as_str(), newest["shadow"].as_str()), (Some("allow"), Some("deny")));
    assert_eq!((newest["hook"].as_str(), newest["provider"].as_str()), (Some("client.authenticate"), Some("strict")));
    let (code, status) = get(admin.addr, "/api/v1/status", Some("tok")).await;
    assert_eq!(code, 200);
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["disagreements"].as_array().unwrap().len(), 5);
    assert_eq!(s["providers"][0]["cache_entries"], 0, "emptied above");
    assert_eq!(s["providers"][1]["cache_entries"], serde_json::Value::Null);
    assert_eq!(s["tenants"][0]["chains"][0]["modes"], serde_json::json!(["decisive", "shadow"]));
    let (_, metrics) = get(admin.addr, "/metrics", Some("tok")).await;
    for text in [&body, &status, &metrics] {
        assert!(!text.contains("pa55-word") && !text.contains("s3cret"), "a password leaked:\n{text}");
    }
    let (_, page) = get(admin.addr, "/", None).await;
    assert!(page.contains("<table id=\"disagreements\">"));
}
