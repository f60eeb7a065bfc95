//! Shadow and observe members of a valued chain (issue 14 part 1): never decisive, never on
//! EMQX's critical path, compared (shadow) or only told (observe).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::{self, ValuedResponse, valued_response::ResponsedType, valued_response::Value};
use exhook_server::Observer;
use exhook_server::observe::{MemberMode, ShadowEvent, ShadowVerdict, StepEvent};
use exhook_sim::{Reply, SimProvider, valued};

fn bool_answer(kind: ResponsedType, v: bool) -> ValuedResponse {
    ValuedResponse { r#type: kind as i32, value: Some(Value::BoolResult(v)) }
}

fn value(metrics: &str, series: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(-1.0)
}

fn verdicts(gw: &TestGateway, provider: &str, hook: &str) -> [f64; 4] {
    let m = gw.gateway.metrics().encode();
    ShadowVerdict::ALL
        .iter()
        .map(|v| {
            value(
                &m,
                &format!(
                    "exhook_gateway_shadow_comparisons_total{{hook=\"{hook}\",provider=\"{provider}\",tenant=\"default\",verdict=\"{}\"}}",
                    v.as_str()
                ),
            )
        })
        .collect::<Vec<_>>()
        .try_into()
        .unwrap()
}

/// Waits until `f` holds (the shadow's verdict lands after EMQX got its answer).
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the observer saw: shadow steps and verdicts.
#[derive(Default)]
struct Seen {
    steps: Mutex<Vec<(String, MemberMode)>>,
    verdicts: Mutex<Vec<(String, ShadowVerdict)>>,
}

impl Observer for Seen {
    fn step(&self, e: &StepEvent<'_>) {
        self.steps.lock().unwrap().push((e.provider.to_owned(), e.mode));
    }
    fn shadow(&self, e: &ShadowEvent<'_>) {
        self.verdicts.lock().unwrap().push((e.provider.to_owned(), e.verdict));
    }
}

/// auth: STOP_AND_RETURN true for everyone. auth-v2 (the candidate): STOP_AND_RETURN false for
/// clients called `bad-*`, true for the others.
async fn auth_and_candidate() -> (SimProvider, SimProvider) {
    let auth = SimProvider::builder(Version::V3)
        .hooks(&["client.authenticate", "client.authorize"])
        .script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, true)))
        .start()
        .await
        .unwrap();
    let candidate = SimProvider::builder(Version::V2)
        .hooks(&["client.authenticate", "client.authorize"])
        .script(valued(|c| {
            let id = match c.hook {
                Hook::ClientAuthenticate => {
                    c.request::<model::ClientAuthenticateRequest>().clientinfo.unwrap_or_default().clientid
                }
                _ => c.request::<model::ClientAuthorizeRequest>().clientinfo.unwrap_or_default().clientid,
            };
            Reply::bool(ResponsedType::StopAndReturn, !id.starts_with("bad"))
        }))
        .start()
        .await
        .unwrap();
    (auth, candidate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_is_compared_and_never_decides() {
    let (auth, candidate) = auth_and_candidate().await;
    let toml = format!(
        "{}{}[chains]\n\"client.authenticate\" = [\"auth\", {{ name = \"auth-v2\", mode = \"shadow\" }}]\n\"client.authorize\" = [{{ name = \"auth-v2\", mode = \"shadow\" }}, \"auth\"]\n",
        provider("auth", &auth.url(), "v3", "1s", "deny"),
        provider("auth-v2", &candidate.url(), "auto", "1s", "deny"),
    );
    let seen = Arc::new(Seen::default());
    let gw = TestGateway::start_observed(&toml, seen.clone()).await;
    wait_loaded(&gw).await;
    // Every verdict exists at 0 before the first call.
    assert_eq!(verdicts(&gw, "auth-v2", "client.authenticate"), [0.0; 4]);
    let (emqx, loaded) = gw.loaded_emqx(Version::V3).await;
    assert!(loaded.hooks.iter().any(|h| h.name == "client.authenticate"));

    for id in ["good-1", "bad-1", "good-2"] {
        let r = emqx.valued(&authn(id, false, Version::V3)).await.unwrap();
        assert_eq!(r, bool_answer(ResponsedType::StopAndReturn, true), "the chain's answer, whatever the shadow says");
    }
    eventually("3 authenticate verdicts", || verdicts(&gw, "auth-v2", "client.authenticate")[..2] == [2.0, 1.0]).await;
    assert_eq!(verdicts(&gw, "auth-v2", "client.authenticate"), [2.0, 1.0, 0.0, 0.0]);
    // Placed after auth, the shadow got the request as the chain would have given it there:
    // with auth's `true` folded in (EMQX sent `false`).
    let seen_by_shadow: Vec<bool> = candidate
        .calls_of(Hook::ClientAuthenticate)
        .iter()
        .map(|c| c.request::<model::ClientAuthenticateRequest>().result)
        .collect();
    assert_eq!(seen_by_shadow, [true, true, true]);

    // In first position (authorize) it gets what EMQX sent, and is still not decisive.
    let authz = model::ClientAuthorizeRequest {
        clientinfo: client_info("bad-2"),
        r#type: 1,
        topic: "t/1".into(),
        result: true,
        meta: meta(Version::V3, "emqxcl"),
    };
    assert_eq!(emqx.valued(&authz).await.unwrap(), bool_answer(ResponsedType::StopAndReturn, true));
    eventually("the authorize verdict", || verdicts(&gw, "auth-v2", "client.authorize")[1] == 1.0).await;

    // The disagreement log: clientid, hook, both answers; never the password.
    let log = gw.gateway.metrics().disagreements();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].clientid.as_str(), log[0].hook, log[0].chain.as_str(), log[0].shadow.as_str()),
        ("bad-2", "client.authorize", "allow", "deny")
    );
    assert_eq!(
        (log[1].clientid.as_str(), log[1].hook, log[1].provider.as_str()),
        ("bad-1", "client.authenticate", "auth-v2")
    );
    let everything = format!("{log:?}{}", gw.gateway.metrics().encode());
    assert!(!everything.contains("s3cret"), "a password leaked into the log or the metrics");
    assert!(!gw.gateway.metrics().encode().contains("bad-1"), "clientids are never labels");
    // The observer saw the shadow's steps as shadow steps, and each verdict.
    let steps = seen.steps.lock().unwrap().clone();
    assert!(steps.iter().filter(|(p, _)| p == "auth-v2").all(|(_, m)| *m == MemberMode::Shadow));
    assert_eq!(seen.verdicts.lock().unwrap().len(), 4);
    // The shadow decided nothing: every decision is auth's.
    let m = gw.gateway.metrics().encode();
    assert_eq!(
        value(
            &m,
            "exhook_gateway_chain_decisions_total{decided_by=\"auth\",hook=\"client.authenticate\",tenant=\"default\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &m,
            "exhook_gateway_chain_decisions_total{decided_by=\"auth-v2\",hook=\"client.authenticate\",tenant=\"default\"}"
        ),
        0.0
    );
    // Its answers are counted as its calls.
    assert_eq!(
        value(
            &m,
            "exhook_gateway_provider_calls_total{hook=\"client.authenticate\",provider=\"auth-v2\",result=\"stop\"}"
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_down_shadow_costs_emqx_nothing() {
    let auth = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|_| Reply::bool(ResponsedType::Continue, true)))
        .start()
        .await
        .unwrap();
    // Sleeps far past its own timeout and past EMQX's deadline.
    let sleepy = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, false).after(Duration::from_secs(3))))
        .start()
        .await
        .unwrap();
    let toml = format!(
        "{}{}{}[chains]\n\"client.authenticate\" = [{{ name = \"sleepy\", mode = \"shadow\" }}, \"auth\", {{ name = \"down\", mode = \"shadow\" }}]\n",
        provider("auth", &auth.url(), "v3", "1s", "deny"),
        provider("sleepy", &sleepy.url(), "v3", "500ms", "deny"),
        // Nothing listens there: never loaded. failed_action = deny would deny a decisive member.
        provider("down", "http://127.0.0.1:1", "v3", "500ms", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    gw.gateway.start_loading();
    for name in ["auth", "sleepy"] {
        let p = gw.gateway.provider(name).unwrap();
        tokio::time::timeout(Duration::from_secs(10), p.wait_loaded(0)).await.expect("loaded");
    }
    let mut emqx = gw.emqx(Version::V3).await;
    emqx.request_timeout = Duration::from_secs(1); // EMQX's deadline: shorter than the sleep
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        let r = emqx.valued(&authn(&format!("c{i}"), false, Version::V3)).await.unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(r, bool_answer(ResponsedType::Continue, true), "auth decides; neither shadow can deny");
    }
    // Each answer came without waiting for the 3 s shadow (debug build, shared machine: a
    // generous bound that is still far below the shadow's sleep and its 500 ms timeout).
    assert!(slowest < Duration::from_millis(300), "slowest answer {slowest:?}");
    // The sleeper times out on its own time (once five have, its breaker may open and fail
    // the rest fast: errors), the down one is an error at once.
    eventually("20 sleepy verdicts", || {
        let [_, _, error, timeout] = verdicts(&gw, "sleepy", "client.authenticate");
        error + timeout == 20.0
    })
    .await;
    let [agree, disagree, _, timeout] = verdicts(&gw, "sleepy", "client.authenticate");
    assert_eq!((agree, disagree), (0.0, 0.0));
    assert!(timeout >= 5.0, "{timeout} timeouts");
    assert_eq!(verdicts(&gw, "down", "client.authenticate"), [0.0, 0.0, 20.0, 0.0]);
    let m = gw.gateway.metrics().encode();
    assert_eq!(
        value(
            &m,
            "exhook_gateway_requests_total{hook=\"client.authenticate\",outcome=\"continue\",tenant=\"default\"}"
        ),
        20.0
    );
    assert_eq!(
        value(
            &m,
            "exhook_gateway_requests_total{hook=\"client.authenticate\",outcome=\"denied_by_failure\",tenant=\"default\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_calls_beyond_the_bound_are_dropped_not_queued() {
    let auth = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, true)))
        .start()
        .await
        .unwrap();
    let slow = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, true).after(Duration::from_millis(800))))
        .start()
        .await
        .unwrap();
    let toml = format!(
        "{}{}max_inflight = 2\n[chains]\n\"client.authenticate\" = [\"auth\", {{ name = \"slow\", mode = \"shadow\" }}]\n",
        provider("auth", &auth.url(), "v3", "1s", "deny"),
        provider("slow", &slow.url(), "v3", "2s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    wait_loaded(&gw).await;
    let emqx = gw.emqx(Version::V3).await;
    for i in 0..10 {
        emqx.valued(&authn(&format!("c{i}"), false, Version::V3)).await.unwrap();
    }
    let dropped = |gw: &TestGateway| {
        value(
            &gw.gateway.metrics().encode(),
            "exhook_gateway_shadow_dropped_total{hook=\"client.authenticate\",provider=\"slow\",tenant=\"default\"}",
        )
    };
    // Two in flight (its max_inflight), the other eight not made: dropped and counted.
    eventually("2 agreements", || verdicts(&gw, "slow", "client.authenticate")[0] == 2.0).await;
    assert_eq!(dropped(&gw), 8.0);
    assert_eq!(slow.calls_of(Hook::ClientAuthenticate).len(), 2, "nothing was queued for later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_gets_publishes_through_its_queue_and_is_never_waited_for() {
    // The rewriter (decisive) changes the payload; the auditor (observe, after it) logs slowly.
    let rewriter = SimProvider::builder(Version::V3)
        .hook("message.publish")
        .script(valued(|c| {
            let mut m = c.request::<model::MessagePublishRequest>().message.unwrap_or_default();
            m.payload = b"rewritten".to_vec().into();
            Reply::message(ResponsedType::Continue, m)
        }))
        .start()
        .await
        .unwrap();
    let auditor = SimProvider::builder(Version::V1)
        .hook("message.publish")
        .script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, false).after(Duration::from_millis(200))))
        .start()
        .await
        .unwrap();
    let toml = format!(
        "{}{}[chains]\n\"message.publish\" = [\"rewriter\", {{ name = \"audit\", mode = \"observe\" }}]\n",
        provider("rewriter", &rewriter.url(), "v3", "1s", "deny"),
        provider("audit", &auditor.url(), "v1", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    wait_loaded(&gw).await;
    let emqx = gw.emqx(Version::V3).await;
    let started = Instant::now();
    for i in 0..10 {
        let r = emqx.valued(&publish("a/1", &format!("m{i}"), Version::V3)).await.unwrap();
        // The rewriter's answer: the auditor's STOP_AND_RETURN false is never folded.
        let Some(Value::Message(m)) = r.value else { panic!("{r:?}") };
        assert_eq!(&m.payload[..], b"rewritten");
        assert_eq!(r.r#type, ResponsedType::Continue as i32);
    }
    // Ten 200 ms audits would take 2 s if waited for.
    assert!(started.elapsed() < Duration::from_millis(1000), "took {:?}", started.elapsed());
    let calls = auditor.wait_for(Hook::MessagePublish, 10, Duration::from_secs(10)).await;
    // It saw the message as the chain gave it at its position: rewritten, in order.
    for c in &calls {
        assert_eq!(&c.request::<model::MessagePublishRequest>().message.unwrap().payload[..], b"rewritten");
    }
    let m = gw.gateway.metrics().encode();
    eventually("10 deliveries counted", || {
        value(
            &gw.gateway.metrics().encode(),
            "exhook_gateway_provider_calls_total{hook=\"message.publish\",provider=\"audit\",result=\"ok\"}",
        ) == 10.0
    })
    .await;
    assert!(!m.contains("exhook_gateway_shadow_comparisons_total"), "an observer is never compared");

    // An observe-only chain: EMQX is still told (the hook is registered) and gets IGNORE.
    let toml = format!(
        "{}[chains]\n\"message.publish\" = [{{ name = \"audit\", mode = \"observe\" }}]\n",
        provider("audit", &auditor.url(), "v1", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    wait_loaded(&gw).await;
    let (emqx, loaded) = gw.loaded_emqx(Version::V3).await;
    assert!(loaded.hooks.iter().any(|h| h.name == "message.publish"));
    let r = emqx.valued(&publish("a/1", "x", Version::V3)).await.unwrap();
    assert_eq!(r.r#type, ResponsedType::Ignore as i32);
    auditor.wait_for(Hook::MessagePublish, 11, Duration::from_secs(10)).await;
}
