//! Every example, run as a process (`cargo run --example NAME -- --listen ...`, as a team
//! would run it), behind a real exhook-gateway, called by a client playing EMQX. A second
//! provider (exhook-sim, recording what it receives) sits after the example in the chain, to
//! show what the example's answer does to the fold: deny stops the chain, allow and rewrite
//! pass the new value on, ignore leaves the value as it was.
//!
//! Packages: the examples are loaded as v1 (deny_list, rate_limit), v2 (tenant_topics), v3
//! (payload_rewriter) and auto (audit_log); EMQX calls as v1, v2 and v3.

mod common;

use common::*;
use exhook_provider::model::valued_response::{ResponsedType, Value};
use exhook_provider::model::{self, ValuedResponse};
use exhook_provider::{Hook, Version};
use exhook_sim::{Reply, SimProvider, valued};

fn kind(r: &ValuedResponse) -> ResponsedType {
    ResponsedType::try_from(r.r#type).expect("a known ResponsedType")
}

fn bool_value(r: &ValuedResponse) -> Option<bool> {
    match r.value {
        Some(Value::BoolResult(b)) => Some(b),
        _ => None,
    }
}

fn message_value(r: &ValuedResponse) -> model::Message {
    match &r.value {
        Some(Value::Message(m)) => m.clone(),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_list_denies_and_stops_the_chain_else_leaves_the_value() {
    let example = Example::start("deny_list", &["--deny", "mallory", "--deny", "banned-client"]).await;
    let next = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let toml = format!(
        "{}{}",
        provider("denylist", &example.url(), "v1", "deny"),
        provider("next", &next.url(), "v3", "deny")
    );
    let gw = TestGateway::start(&toml).await;
    let emqx = gw.emqx(Version::V3).await;

    // Listed by username, and by clientid: denied, and the next provider is never asked.
    for (clientid, username) in [("c1", "mallory"), ("banned-client", "bob")] {
        let r = emqx.valued(&authn(clientid, username, true, Version::V3)).await.unwrap();
        assert_eq!((kind(&r), bool_value(&r)), (ResponsedType::StopAndReturn, Some(false)), "{username}");
    }
    assert!(next.calls_of(Hook::ClientAuthenticate).is_empty(), "deny stops the chain");

    // Not listed: no opinion, so the next provider sees EMQX's value unchanged, either way.
    for result in [true, false] {
        emqx.valued(&authn("c2", "alice", result, Version::V3)).await.unwrap();
        let seen =
            next.calls_of(Hook::ClientAuthenticate).last().unwrap().request::<model::ClientAuthenticateRequest>();
        assert_eq!(seen.result, result, "ignore leaves the value");
    }
    assert_eq!(next.calls_of(Hook::ClientAuthenticate).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_topics_allows_own_prefix_and_passes_on_denies_the_rest() {
    let example =
        Example::start("tenant_topics", &["--tenant", "acme=acme/", "--tenant", "globex=tenants/globex/"]).await;
    // The next provider denies one topic of its own: an allow() does not stop it.
    let next = SimProvider::builder(Version::V1).hook("client.check_acl").start().await.unwrap();
    next.set_script(valued(|call| {
        let r = call.request::<model::ClientAuthorizeRequest>();
        if r.topic == "acme/secret" { Reply::bool(ResponsedType::StopAndReturn, false) } else { Reply::ignore() }
    }));
    let toml =
        format!("{}{}", provider("tenants", &example.url(), "v2", "deny"), provider("next", &next.url(), "v1", "deny"));
    let gw = TestGateway::start(&toml).await;
    // EMQX 4.x: OnClientCheckAcl, reaching the example as client_authorize.
    let emqx = gw.emqx(Version::V1).await;

    let r = emqx.valued(&authz("alice@acme", "acme/sensors/1", Version::V1)).await.unwrap();
    assert_eq!((kind(&r), bool_value(&r)), (ResponsedType::Continue, Some(true)));
    let seen = next.calls_of(Hook::ClientAuthorize);
    assert_eq!(seen.len(), 1, "allow passes on");
    assert!(seen[0].request::<model::ClientAuthorizeRequest>().result);

    let r = emqx.valued(&authz("alice@acme", "acme/secret", Version::V1)).await.unwrap();
    assert_eq!(bool_value(&r), Some(false), "a later provider may still deny");

    let r = emqx.valued(&authz("g@globex", "tenants/globex/a", Version::V1)).await.unwrap();
    assert_eq!(bool_value(&r), Some(true));

    let before = next.calls_of(Hook::ClientAuthorize).len();
    for (user, topic) in [("alice@acme", "tenants/globex/a"), ("eve@unknown", "acme/x"), ("no-tenant", "acme/x")] {
        let r = emqx.valued(&authz(user, topic, Version::V1)).await.unwrap();
        assert_eq!((kind(&r), bool_value(&r)), (ResponsedType::StopAndReturn, Some(false)), "{user} {topic}");
    }
    assert_eq!(next.calls_of(Hook::ClientAuthorize).len(), before, "deny stops the chain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_rewriter_rewrites_matching_topics_and_echoes_the_whole_message() {
    let example = Example::start("payload_rewriter", &["--topic", "sensors/#"]).await;
    let next = SimProvider::builder(Version::V2).hook("message.publish").start().await.unwrap();
    let toml = format!(
        "{}{}",
        provider("rewriter", &example.url(), "v3", "deny"),
        provider("next", &next.url(), "v2", "deny")
    );
    let gw = TestGateway::start(&toml).await;
    let emqx = gw.emqx(Version::V2).await;

    let request = publish("dev-7", "sensors/t1", "21.5", Version::V2);
    let original = request.message.clone().unwrap();
    let r = emqx.valued(&request).await.unwrap();
    assert_eq!(kind(&r), ResponsedType::Continue);
    let out = message_value(&r);
    let envelope: serde_json::Value = serde_json::from_slice(&out.payload).expect("a JSON envelope");
    assert_eq!(envelope, serde_json::json!({ "from": "dev-7", "ts": original.timestamp, "data": "21.5" }));
    // Everything but the payload is echoed.
    assert_eq!(model::Message { payload: original.payload.clone(), ..out.clone() }, original);
    // The next provider saw the rewritten message.
    let seen = next.calls_of(Hook::MessagePublish);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].request::<model::MessagePublishRequest>().message.unwrap(), out);

    // A topic outside the filter: the rewriter is not called (not registered for it), the
    // next provider sees the message as published.
    let r = emqx.valued(&publish("dev-7", "other/t1", "raw", Version::V2)).await.unwrap();
    assert_ne!(kind(&r), ResponsedType::StopAndReturn);
    let seen = next.calls_of(Hook::MessagePublish);
    assert_eq!(seen.len(), 2);
    assert_eq!(&seen[1].request::<model::MessagePublishRequest>().message.unwrap().payload[..], b"raw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_writes_json_lines_in_order_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let example = Example::start("audit_log", &["--file", file.to_str().unwrap()]).await;
    // after-delivery: the gateway answers EMQX once the example acknowledged each event.
    let toml = format!("{}notify = \"after-delivery\"\n", provider("audit", &example.url(), "auto", "ignore"));
    let gw = TestGateway::start(&toml).await;
    let emqx = gw.emqx(Version::V3).await;

    let m = meta(Version::V3, "emqxcl");
    let ci = client_info("c-audit", "alice");
    let r = emqx.valued(&authn("c-audit", "alice", true, Version::V3)).await.unwrap();
    assert_eq!(kind(&r), ResponsedType::Ignore, "the audit has no opinion");
    emqx.notify(&model::ClientConnectedRequest { clientinfo: ci.clone(), meta: m.clone() }).await.unwrap();
    emqx.notify(&model::SessionCreatedRequest { clientinfo: ci.clone(), meta: m.clone() }).await.unwrap();
    emqx.notify(&model::MessageDeliveredRequest {
        clientinfo: ci.clone(),
        message: Some(message("c-other", "chat/1", "hi")),
        meta: m.clone(),
    })
    .await
    .unwrap();
    emqx.notify(&model::ClientDisconnectedRequest { clientinfo: ci.clone(), reason: "normal".into(), meta: m.clone() })
        .await
        .unwrap();

    // A graceful stop runs every acknowledged notification before the process exits.
    let status = example.terminate().await;
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("s3cret-pw"), "the password must never be written: {text}");
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["authenticate", "connected", "session_created", "delivered", "disconnected"]);
    assert!(lines.iter().all(|l| l["clientid"] == "c-audit" && l["username"] == "alice"));
    assert_eq!(lines[3]["extra"]["topic"], "chat/1");
    assert_eq!(lines[4]["extra"]["reason"], "normal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_stops_publishes_over_the_bucket_per_client() {
    // A bucket of 2 that refills once in 1000 s: the third publish is over, deterministically.
    let example = Example::start("rate_limit", &["--rate", "0.001", "--burst", "2"]).await;
    let gw = TestGateway::start(&provider("ratelimit", &example.url(), "v1", "deny")).await;
    let emqx = gw.emqx(Version::V3).await;

    for _ in 0..2 {
        let r = emqx.valued(&publish("chatty", "t/1", "x", Version::V3)).await.unwrap();
        assert_eq!(kind(&r), ResponsedType::Ignore, "within the bucket: no opinion");
    }
    let request = publish("chatty", "t/1", "x", Version::V3);
    let r = emqx.valued(&request).await.unwrap();
    assert_eq!(kind(&r), ResponsedType::StopAndReturn);
    let out = message_value(&r);
    assert_eq!(out.headers.get("allow_publish").map(String::as_str), Some("false"));
    // The whole message is echoed, with the one header added.
    let mut expected = request.message.unwrap();
    expected.headers.insert("allow_publish".into(), "false".into());
    assert_eq!(out, expected);

    // Another client has its own bucket.
    let r = emqx.valued(&publish("quiet", "t/1", "x", Version::V3)).await.unwrap();
    assert_eq!(kind(&r), ResponsedType::Ignore);
}
