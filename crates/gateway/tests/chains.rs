//! The fold over real gRPC: EMQX-like callers of every package, providers of every package.

mod common;

use std::time::{Duration, Instant};

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::{self, ValuedResponse, valued_response::ResponsedType, valued_response::Value};
use exhook_sim::{Reply, SimProvider, valued};

fn bool_answer(kind: ResponsedType, v: bool) -> ValuedResponse {
    ValuedResponse { r#type: kind as i32, value: Some(Value::BoolResult(v)) }
}

fn ignore() -> ValuedResponse {
    ValuedResponse { r#type: ResponsedType::Ignore as i32, value: None }
}

/// p1 (v1), p2 (v2), p3 (v3), all registering client.authenticate, chained in that order.
async fn three_authenticators() -> (SimProvider, SimProvider, SimProvider, TestGateway) {
    let p1 = SimProvider::builder(Version::V1).hook("client.authenticate").start().await.unwrap();
    let p2 = SimProvider::builder(Version::V2).hook("client.authenticate").start().await.unwrap();
    let p3 = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let toml = format!(
        "{}{}{}[chains]\n\"client.authenticate\" = [\"p1\", \"p2\", \"p3\"]\n",
        provider("p1", &p1.url(), "v1", "1s", "deny"),
        provider("p2", &p2.url(), "auto", "1s", "deny"),
        provider("p3", &p3.url(), "v3", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    (p1, p2, p3, gw)
}

fn results_seen(p: &SimProvider) -> Vec<bool> {
    p.calls_of(Hook::ClientAuthenticate)
        .iter()
        .map(|c| c.request::<model::ClientAuthenticateRequest>().result)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fold_rules_for_every_caller_package() {
    let (p1, p2, p3, gw) = three_authenticators().await;
    for caller in ALL_VERSIONS {
        let (emqx, _) = gw.loaded_emqx(caller).await;
        let id = format!("c-{caller}");

        // CONTINUE replaces the value and the next provider sees it; IGNORE keeps it.
        p1.set_script(valued(|_| Reply::bool(ResponsedType::Continue, false)));
        p2.set_script(valued(|_| Reply::bool(ResponsedType::Ignore, true)));
        p3.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true)));
        let before = (results_seen(&p1).len(), results_seen(&p2).len(), results_seen(&p3).len());
        let r = emqx.valued(&authn(&id, true, caller)).await.unwrap();
        assert_eq!(r, bool_answer(ResponsedType::Continue, true), "caller {caller}");
        assert_eq!(results_seen(&p1)[before.0..], [true], "p1 sees EMQX's value");
        assert_eq!(results_seen(&p2)[before.1..], [false], "p2 sees p1's CONTINUE value");
        assert_eq!(results_seen(&p3)[before.2..], [false], "p3 sees it too: p2's IGNORE kept it");

        // STOP_AND_RETURN ends the chain: later providers are not called.
        p1.set_script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, false)));
        let n2 = results_seen(&p2).len();
        let r = emqx.valued(&authn(&id, true, caller)).await.unwrap();
        assert_eq!(r, bool_answer(ResponsedType::StopAndReturn, false));
        assert_eq!(results_seen(&p2).len(), n2, "p2 must not be called after a STOP_AND_RETURN");

        // All IGNORE: IGNORE, so EMQX keeps its own value.
        for p in [&p1, &p2, &p3] {
            p.set_script(valued(|_| Reply::ignore()));
        }
        assert_eq!(emqx.valued(&authn(&id, false, caller)).await.unwrap(), ignore());

        // A value of the wrong kind (a Message for a bool hook) is treated as IGNORE, even
        // with STOP_AND_RETURN; an unset value too.
        p1.set_script(valued(|_| Reply::message(ResponsedType::StopAndReturn, message("x", "y"))));
        p2.set_script(valued(|_| {
            Reply::Valued(ValuedResponse { r#type: ResponsedType::Continue as i32, value: None })
        }));
        p3.set_script(valued(|_| Reply::bool(ResponsedType::Continue, false)));
        let n3 = results_seen(&p3).len();
        let r = emqx.valued(&authn(&id, true, caller)).await.unwrap();
        assert_eq!(r, bool_answer(ResponsedType::Continue, false));
        assert_eq!(results_seen(&p3)[n3..], [true], "p3 sees the original value");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_is_check_acl_on_v1() {
    let old = SimProvider::builder(Version::V1).hook("client.check_acl").start().await.unwrap();
    let new = SimProvider::builder(Version::V3).hook("client.authorize").start().await.unwrap();
    old.set_script(valued(|_| Reply::bool(ResponsedType::Continue, false)));
    new.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true)));
    let toml = format!(
        "{}{}[chains]\n\"client.check_acl\" = [\"old\", \"new\"]\n",
        provider("old", &old.url(), "v1", "1s", "deny"),
        provider("new", &new.url(), "v3", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    for caller in ALL_VERSIONS {
        let (emqx, loaded) = gw.loaded_emqx(caller).await;
        let names: Vec<&str> = loaded.hooks.iter().map(|h| h.name.as_str()).collect();
        let expected = if caller == Version::V1 { "client.check_acl" } else { "client.authorize" };
        assert_eq!(names, [expected], "caller {caller}");
        let req = model::ClientAuthorizeRequest {
            clientinfo: client_info("c1"),
            r#type: model::client_authorize_request::AuthorizeReqType::Subscribe as i32,
            topic: "t/#".into(),
            result: true,
            meta: meta(caller, "emqxcl"),
        };
        assert_eq!(emqx.valued(&req).await.unwrap(), bool_answer(ResponsedType::Continue, true));
    }
    let old_calls = old.calls_of(Hook::ClientAuthorize);
    let new_calls = new.calls_of(Hook::ClientAuthorize);
    assert_eq!((old_calls.len(), new_calls.len()), (3, 3));
    for c in &old_calls {
        // Decoded as the v1 type: it arrived on OnClientCheckAcl.
        let r: exhook_proto::v1::ClientCheckAclRequest = c.request();
        assert_eq!((r.r#type, r.topic.as_str(), r.result), (1, "t/#", true));
    }
    for c in &new_calls {
        let r: exhook_proto::v3::ClientAuthorizeRequest = c.request();
        assert_eq!((r.r#type, r.topic.as_str(), r.result), (1, "t/#", false), "new sees old's CONTINUE false");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_rewrite_rematches_topic_filters() {
    // rewriter: raw/# -> clean/#; raw_only: raw/# (must be skipped after the rewrite);
    // clean_reader: clean/# (must see the rewritten message).
    let rewriter = SimProvider::builder(Version::V3).hook_topics("message.publish", &["raw/#"]).start().await.unwrap();
    rewriter.set_script(valued(|c| {
        let mut m = c.request::<model::MessagePublishRequest>().message.unwrap_or_default();
        m.topic = m.topic.replacen("raw/", "clean/", 1);
        m.payload = format!("{}!", String::from_utf8_lossy(&m.payload)).into_bytes().into();
        Reply::message(ResponsedType::Continue, m)
    }));
    let raw_only = SimProvider::builder(Version::V1).hook_topics("message.publish", &["raw/#"]).start().await.unwrap();
    let clean_reader =
        SimProvider::builder(Version::V2).hook_topics("message.publish", &["clean/+"]).start().await.unwrap();
    clean_reader.set_script(valued(|_| Reply::ignore()));
    let toml = format!(
        "{}{}{}[chains]\n\"message.publish\" = [\"rewriter\", \"raw_only\", \"clean_reader\"]\n",
        provider("rewriter", &rewriter.url(), "v3", "1s", "deny"),
        provider("raw_only", &raw_only.url(), "v1", "1s", "deny"),
        provider("clean_reader", &clean_reader.url(), "v2", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    for caller in ALL_VERSIONS {
        let (emqx, loaded) = gw.loaded_emqx(caller).await;
        assert_eq!(loaded.hooks.len(), 1);
        assert_eq!(loaded.hooks[0].name, "message.publish");
        let mut topics = loaded.hooks[0].topics.clone();
        topics.sort();
        assert_eq!(topics, ["clean/+", "raw/#"], "union of the filters");

        let r = emqx.valued(&publish("raw/1", "21", caller)).await.unwrap();
        let mut expected = message("clean/1", "21!");
        expected.headers.insert("username".into(), "alice".into());
        assert_eq!(r.r#type, ResponsedType::Continue as i32);
        assert_eq!(r.value, Some(Value::Message(expected)), "complete folded message");

        // A topic no provider filters for: nobody is called, EMQX keeps its message.
        assert_eq!(emqx.valued(&publish("other/1", "x", caller)).await.unwrap(), ignore());
    }
    assert_eq!(rewriter.calls_of(Hook::MessagePublish).len(), 3);
    assert!(raw_only.calls_of(Hook::MessagePublish).is_empty(), "filter must be matched against the new topic");
    let seen = clean_reader.calls_of(Hook::MessagePublish);
    assert_eq!(seen.len(), 3);
    let m = seen[0].request::<model::MessagePublishRequest>().message.unwrap();
    assert_eq!((m.topic.as_str(), &m.payload[..]), ("clean/1", &b"21!"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_action_ignore_skips_and_deny_stops() {
    let broken =
        SimProvider::builder(Version::V3).hooks(&["client.authenticate", "message.publish"]).start().await.unwrap();
    broken.set_script(valued(|_| Reply::Status(tonic::Status::internal("boom"))));
    let refusing =
        SimProvider::builder(Version::V2).hooks(&["client.authenticate", "message.publish"]).start().await.unwrap();
    refusing.set_script(valued(|_| Reply::Status(tonic::Status::unavailable("down for maintenance"))));
    let last =
        SimProvider::builder(Version::V3).hooks(&["client.authenticate", "message.publish"]).start().await.unwrap();
    last.set_script(valued(|c| match c.hook {
        Hook::MessagePublish => Reply::message(ResponsedType::Continue, message("never", "never")),
        _ => Reply::bool(ResponsedType::Continue, true),
    }));
    let rewriter = SimProvider::builder(Version::V3).hook("message.publish").start().await.unwrap();
    rewriter.set_script(valued(|_| Reply::message(ResponsedType::Continue, message("rewritten", "p"))));
    let toml = format!(
        "{}{}{}{}[chains]\n\"client.authenticate\" = [\"broken\", \"refusing\", \"last\"]\n\"message.publish\" = [\"rewriter\", \"broken\", \"refusing\", \"last\"]\n",
        provider("broken", &broken.url(), "v3", "1s", "ignore"),
        provider("refusing", &refusing.url(), "v2", "1s", "deny"),
        provider("last", &last.url(), "v3", "1s", "deny"),
        provider("rewriter", &rewriter.url(), "v3", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    // broken fails and is skipped (ignore); refusing fails and denies; last is never called.
    let r = emqx.valued(&authn("c1", true, Version::V3)).await.unwrap();
    assert_eq!(r, bool_answer(ResponsedType::StopAndReturn, false));
    assert_eq!(broken.calls_of(Hook::ClientAuthenticate).len(), 1);
    assert_eq!(refusing.calls_of(Hook::ClientAuthenticate).len(), 1);
    assert!(last.calls_of(Hook::ClientAuthenticate).is_empty());
    // publish: a deny stops the chain with the *current* message (the rewritten one).
    let r = emqx.valued(&publish("orig", "o", Version::V3)).await.unwrap();
    assert_eq!(r.r#type, ResponsedType::StopAndReturn as i32);
    assert_eq!(r.value, Some(Value::Message(message("rewritten", "p"))));
    assert!(last.calls_of(Hook::MessagePublish).is_empty());

    // The deny-er recovers: the chain runs to the end.
    refusing.set_script(valued(|_| Reply::ignore()));
    assert_eq!(emqx.valued(&authn("c1", true, Version::V3)).await.unwrap(), bool_answer(ResponsedType::Continue, true));
    assert_eq!(gw.gateway.metrics().provider_summary("broken").failed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_that_dies_after_loading_applies_failed_action() {
    let gone = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let kept = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    kept.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true)));
    let toml = format!(
        "{}{}[chains]\n\"client.authenticate\" = [\"gone\", \"kept\"]\n",
        provider("gone", &gone.url(), "v3", "300ms", "deny"),
        provider("kept", &kept.url(), "v3", "300ms", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V2).await;
    assert_eq!(emqx.valued(&authn("c", true, Version::V2)).await.unwrap(), bool_answer(ResponsedType::Continue, true));
    gone.stopped().await;
    let started = Instant::now();
    let r = emqx.valued(&authn("c", true, Version::V2)).await.unwrap();
    assert_eq!(r, bool_answer(ResponsedType::StopAndReturn, false), "deny on transport failure");
    assert!(started.elapsed() < Duration::from_secs(2), "answered within the provider's timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_chain_stays_inside_emqx_deadline() {
    // slow: answers CONTINUE false after 100 ms; slower: after 2 s. Provider timeouts are
    // generous (5 s); EMQX's request_timeout (grpc-timeout) of 200 ms must bound the chain.
    let slow = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    slow.set_script(valued(|_| Reply::bool(ResponsedType::Continue, false).after(Duration::from_millis(100))));
    let slower = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    slower.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true).after(Duration::from_secs(2))));
    let toml = format!(
        "{}{}[chains]\n\"client.authenticate\" = [\"slow\", \"slower\"]\n",
        provider("slow", &slow.url(), "v3", "5s", "deny"),
        provider("slower", &slower.url(), "v3", "5s", "ignore"),
    );
    let gw = TestGateway::start(&toml).await;
    let (mut emqx, _) = gw.loaded_emqx(Version::V3).await;
    emqx.request_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let r = emqx.valued(&authn("c", true, Version::V3)).await.expect("answered before EMQX's deadline");
    let took = started.elapsed();
    // slow's CONTINUE false stands; slower ran out of time and is ignored (its failed_action).
    assert_eq!(r, bool_answer(ResponsedType::Continue, false));
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_millis(200), "answered after EMQX's deadline: {took:?}");
    // Each provider was given what was left of the budget, not its own 5 s.
    let t1 = slow.calls_of(Hook::ClientAuthenticate)[0].grpc_timeout.unwrap();
    let t2 = slower.wait_for(Hook::ClientAuthenticate, 1, Duration::from_secs(1)).await[0].grpc_timeout.unwrap();
    assert!(t1 <= Duration::from_millis(200) && t1 > Duration::from_millis(150), "{t1:?}");
    assert!(t2 <= Duration::from_millis(100), "{t2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_provider_timeout_applies_failed_action() {
    let stuck = SimProvider::builder(Version::V1).hook("client.authenticate").start().await.unwrap();
    stuck.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true).after(Duration::from_secs(3))));
    for (action, expected) in [("ignore", ignore()), ("deny", bool_answer(ResponsedType::StopAndReturn, false))] {
        let gw = TestGateway::start(&provider("stuck", &stuck.url(), "v1", "50ms", action)).await;
        let (emqx, _) = gw.loaded_emqx(Version::V1).await;
        let started = Instant::now();
        assert_eq!(emqx.valued(&authn("c", true, Version::V1)).await.unwrap(), expected, "{action}");
        assert!(started.elapsed() < Duration::from_secs(1), "timeout of 50ms not applied: {:?}", started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_is_selected_by_cluster_name() {
    let a =
        SimProvider::builder(Version::V3).hooks(&["client.authenticate", "client.connected"]).start().await.unwrap();
    let b = SimProvider::builder(Version::V2).hooks(&["client.authenticate", "session.created"]).start().await.unwrap();
    a.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true)));
    b.set_script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, false)));
    // The default tenant (any other cluster, as unknown_cluster = "default" says) owns `a`;
    // factory-a owns `b` and names `a` in one chain only.
    let toml = format!(
        "[server]\nunknown_cluster = \"default\"\n{}{}[default_tenant]\nproviders = [\"a\"]\n[chains]\n\"client.authenticate\" = [\"a\"]\n\n[[tenants]]\nname = \"factory-a\"\ncluster_names = [\"emqx-factory-a\"]\nproviders = [\"b\"]\n[tenants.chains]\n\"client.authenticate\" = [\"b\", \"a\"]\n",
        provider("a", &a.url(), "v3", "1s", "deny"),
        provider("b", &b.url(), "v2", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    let emqx = gw.emqx(Version::V3).await;
    // Each tenant's OnProviderLoaded answer covers its own chains and providers only: a
    // provider named in one explicit chain does not leak its other hooks into the tenant.
    let default = emqx.loaded(&loaded_request(Version::V3, "emqxcl")).await.unwrap();
    let factory = emqx.loaded(&loaded_request(Version::V3, "emqx-factory-a")).await.unwrap();
    let names = |r: &model::LoadedResponse| r.hooks.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&default), ["client.connected", "client.authenticate"]);
    assert_eq!(names(&factory), ["client.authenticate", "session.created"]);
    // The default tenant's notifications never reach factory-a's `b`: the same client's
    // events (one queue shard, in order) from both clusters; `b` gets factory-a's only.
    for cluster in ["emqxcl", "emqx-factory-a"] {
        let created = model::SessionCreatedRequest {
            clientinfo: Some(model::ClientInfo { clientid: "c".into(), ..Default::default() }),
            meta: meta(Version::V3, cluster),
        };
        emqx.notify(&created).await.unwrap();
    }
    let got = b.wait_for(Hook::SessionCreated, 1, Duration::from_secs(5)).await;
    let first = <model::SessionCreatedRequest as prost::Message>::decode(got[0].body.clone()).unwrap();
    assert_eq!(first.meta.unwrap().cluster_name, "emqx-factory-a", "the other tenant's event came first");

    let mut req = authn("c", true, Version::V3);
    assert_eq!(emqx.valued(&req).await.unwrap(), bool_answer(ResponsedType::Continue, true));
    req.meta = meta(Version::V3, "emqx-factory-a");
    assert_eq!(emqx.valued(&req).await.unwrap(), bool_answer(ResponsedType::StopAndReturn, false));
    assert_eq!(a.calls_of(Hook::ClientAuthenticate).len(), 1);
    assert_eq!(b.calls_of(Hook::ClientAuthenticate).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_providers_are_skipped_unloaded_deny_providers_deny() {
    // `picky` (failed_action deny) did not register client.authenticate: EMQX 5.x would apply
    // its failed_action; the gateway skips it. `down` never loaded: with failed_action deny it
    // cannot say whether it takes the hook, so it fails closed; with ignore it is skipped.
    let picky = SimProvider::builder(Version::V3).hook("client.connected").start().await.unwrap();
    let ok = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    ok.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true)));
    let down = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let down_url = down.url();
    drop(down);
    let toml = format!(
        "{}{}{}[chains]\n\"client.authenticate\" = [\"down\", \"picky\", \"ok\"]\n",
        provider("down", &down_url, "v3", "200ms", "deny"),
        provider("picky", &picky.url(), "v3", "1s", "deny"),
        provider("ok", &ok.url(), "v3", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, loaded) = gw.loaded_emqx(Version::V3).await;
    assert!(loaded.hooks.iter().any(|h| h.name == "client.authenticate"));
    assert_eq!(
        emqx.valued(&authn("c", true, Version::V3)).await.unwrap(),
        bool_answer(ResponsedType::StopAndReturn, false)
    );
    assert!(ok.calls_of(Hook::ClientAuthenticate).is_empty(), "the chain stopped at the unloaded deny provider");
    let text = gw.gateway.metrics().encode();
    assert!(
        text.contains(
            r#"exhook_gateway_chain_decisions_total{decided_by="down",hook="client.authenticate",tenant="default"} 1"#
        ),
        "{text}"
    );
    let toml = format!(
        "{}{}{}[chains]\n\"client.authenticate\" = [\"down\", \"picky\", \"ok\"]\n",
        provider("down", &down_url, "v3", "200ms", "ignore"),
        provider("picky", &picky.url(), "v3", "1s", "deny"),
        provider("ok", &ok.url(), "v3", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    assert_eq!(emqx.valued(&authn("c", true, Version::V3)).await.unwrap(), bool_answer(ResponsedType::Continue, true));
    assert!(picky.calls_of(Hook::ClientAuthenticate).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn package_differences_are_converted() {
    // A 4.x broker's shared subscription and subscribe QoS reach a 5.10 provider in 5.x form,
    // and the reverse; fields the provider's package lacks are dropped.
    let new = SimProvider::builder(Version::V3)
        .hooks(&["session.subscribed", "client.subscribe", "client.connect"])
        .start()
        .await
        .unwrap();
    let old = SimProvider::builder(Version::V1)
        .hooks(&["session.subscribed", "client.subscribe", "client.connect"])
        .start()
        .await
        .unwrap();
    let toml = format!(
        "{}{}",
        provider("new", &new.url(), "v3", "1s", "ignore"),
        provider("old", &old.url(), "v1", "1s", "ignore")
    );
    let gw = TestGateway::start(&toml).await;
    let (v1_emqx, _) = gw.loaded_emqx(Version::V1).await;
    let (v3_emqx, _) = gw.loaded_emqx(Version::V3).await;

    let sub_v1 = model::SessionSubscribedRequest {
        clientinfo: client_info("c1"),
        topic: "t/1".into(),
        subopts: Some(model::SubOpts { qos: 1, share: "g".into(), ..Default::default() }),
        meta: meta(Version::V1, "emqxcl"),
    };
    // What a 4.x broker puts on the wire: no peerport (v1 has none), share in SubOpts.
    let mut wire_v1 = sub_v1.clone();
    wire_v1.clientinfo.as_mut().unwrap().peerport = 0;
    v1_emqx
        .call_raw::<model::EmptySuccess>(Hook::SessionSubscribed, prost::Message::encode_to_vec(&wire_v1).into())
        .await
        .unwrap();
    let sub_v3 = model::SessionSubscribedRequest {
        clientinfo: client_info("c2"),
        topic: "$share/g2/t/2".into(),
        subopts: Some(model::SubOpts { qos: 2, ..Default::default() }),
        meta: meta(Version::V3, "emqxcl"),
    };
    v3_emqx.notify(&sub_v3).await.unwrap();
    let subscribe = model::ClientSubscribeRequest {
        clientinfo: client_info("c3"),
        topic_filters: vec![model::TopicFilter {
            name: "a/+".into(),
            qos: 0,
            subopts: Some(model::SubOpts { qos: 2, ..Default::default() }),
        }],
        user_props: vec![model::Property { name: "k".into(), value: "v".into() }],
        meta: meta(Version::V3, "emqxcl"),
        ..Default::default()
    };
    v3_emqx.notify(&subscribe).await.unwrap();

    let at_new = new.wait_for(Hook::SessionSubscribed, 2, Duration::from_secs(5)).await;
    let at_old = old.wait_for(Hook::SessionSubscribed, 2, Duration::from_secs(5)).await;
    let new_by_client = |id: &str| {
        at_new
            .iter()
            .map(|c| c.request::<exhook_proto::v3::SessionSubscribedRequest>())
            .find(|r| r.clientinfo.as_ref().unwrap().clientid == id)
            .unwrap()
    };
    let old_by_client = |id: &str| {
        at_old
            .iter()
            .map(|c| c.request::<exhook_proto::v1::SessionSubscribedRequest>())
            .find(|r| r.clientinfo.as_ref().unwrap().clientid == id)
            .unwrap()
    };
    assert_eq!(new_by_client("c1").topic, "$share/g/t/1", "4.x share joined into the 5.4+ form");
    assert_eq!(new_by_client("c1").subopts.unwrap().qos, 1);
    let o = old_by_client("c1");
    assert_eq!((o.topic.as_str(), o.subopts.as_ref().unwrap().share.as_str()), ("t/1", "g"), "same package: unchanged");
    let o = old_by_client("c2");
    assert_eq!(
        (o.topic.as_str(), o.subopts.as_ref().unwrap().share.as_str(), o.subopts.as_ref().unwrap().qos),
        ("t/2", "g2", 2)
    );
    assert_eq!(new_by_client("c2").clientinfo.unwrap().peerport, 50000);

    let sub_old = old.wait_for(Hook::ClientSubscribe, 1, Duration::from_secs(5)).await;
    let r: exhook_proto::v1::ClientSubscribeRequest = sub_old[0].request();
    assert_eq!(
        (r.topic_filters[0].name.as_str(), r.topic_filters[0].qos),
        ("a/+", 2),
        "subopts.qos -> TopicFilter.qos"
    );
    // Fields v1 lacks are dropped (decoding the model would show them if they had been sent).
    let raw: model::ClientSubscribeRequest = sub_old[0].request();
    assert!(raw.user_props.is_empty());
    assert_eq!(raw.clientinfo.unwrap().peerport, 0);
    assert!(raw.topic_filters[0].subopts.is_none());
    let sub_new = new.wait_for(Hook::ClientSubscribe, 1, Duration::from_secs(5)).await;
    let r: exhook_proto::v3::ClientSubscribeRequest = sub_new[0].request();
    assert_eq!(r.user_props.len(), 1);
    assert_eq!(r.topic_filters[0].subopts.as_ref().unwrap().qos, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_properties_are_converted_and_unparseable_ones_counted() {
    // A 5.8 (v2) caller's User-Property string reaches a 5.10 (v3) provider as user_props; a
    // string EMQX would never print passes unchanged, counted; a v1 uptime that is not 4.x's
    // text is counted too.
    let p3 = SimProvider::builder(Version::V3).hook("client.connect").start().await.unwrap();
    let gw = TestGateway::start(&provider("p3", &p3.url(), "v3", "1s", "ignore")).await;
    let (emqx, _) = gw.loaded_emqx(Version::V2).await;
    let connect = |value: &str| model::ClientConnectRequest {
        conninfo: Some(model::ConnInfo { clientid: "c".into(), ..Default::default() }),
        props: vec![model::Property { name: "User-Property".into(), value: value.into() }],
        meta: meta(Version::V2, "emqxcl"),
        ..Default::default()
    };
    emqx.notify(&connect(r#"[{<<"app">>,<<"a, \"b\"">>},{<<"k">>,<<"v">>}]"#)).await.unwrap();
    emqx.notify(&connect("not an erlang term")).await.unwrap();
    let calls = p3.wait_for(Hook::ClientConnect, 2, Duration::from_secs(5)).await;
    let first: model::ClientConnectRequest = calls[0].request();
    let pairs: Vec<(String, String)> = first.user_props.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
    assert_eq!(pairs, [("app".to_owned(), "a, \"b\"".to_owned()), ("k".to_owned(), "v".to_owned())]);
    assert!(first.props.iter().all(|p| p.name != "User-Property"), "moved out of props");
    let second: model::ClientConnectRequest = calls[1].request();
    assert!(second.user_props.is_empty());
    assert_eq!(second.props[0].value, "not an erlang term", "passed on unchanged");
    let v1 = gw.emqx(Version::V1).await;
    let loaded = exhook_proto::v1::ProviderLoadedRequest {
        broker: Some(exhook_proto::v1::BrokerInfo { uptime: "a while".into(), ..Default::default() }),
        meta: Some(exhook_proto::v1::RequestMeta { cluster_name: "emqxcl".into(), ..Default::default() }),
    };
    v1.call_raw::<exhook_proto::v1::LoadedResponse>(
        Hook::ProviderLoaded,
        prost::Message::encode_to_vec(&loaded).into(),
    )
    .await
    .unwrap();
    let text = gw.gateway.metrics().encode();
    for series in [
        r#"exhook_gateway_conversion_issues_total{issue="user_property",package="v2"} 1"#,
        r#"exhook_gateway_conversion_issues_total{issue="uptime",package="v1"} 1"#,
        r#"exhook_gateway_conversion_issues_total{issue="uptime",package="v3"} 0"#,
    ] {
        assert!(text.lines().any(|l| l == series), "missing {series}:\n{text}");
    }
}
