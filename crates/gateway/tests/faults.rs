//! Fault injection: sustained EMQX-like traffic through a real gateway while providers die,
//! hang, answer garbage, are overloaded or all go down, and while the gateway itself is
//! stopped. Every case asserts on what EMQX would see: an answer to every call, by the
//! deadline, with the right failed_action.
//!
//! Run with `--nocapture` to see the measured figures (`FAULT ...` lines).

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::{self, ValuedResponse, valued_response::ResponsedType, valued_response::Value};
use exhook_sim::{EmqxClient, Reply, SimProvider, valued};
use exhook_upstream::BreakerState;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The environment variable that makes this test binary a provider process (see
/// [`provider_process`]): the process's arguments, separated by spaces.
const PROVIDER_ARGS: &str = "EXHOOK_FAULTS_PROVIDER_ARGS";

/// A provider in its own process, so it can be killed for real: this test binary run again as
/// nothing but [`provider_process`] (works the same under `cargo test` and `cargo nextest`, and
/// needs no binary of another target).
struct ProviderProcess {
    child: tokio::process::Child,
    addr: SocketAddr,
    args: Vec<String>,
}

impl ProviderProcess {
    /// `args`: `--package v1|v2|v3`, `--hook <hookpoint>` (repeatable), `--delay-ms <n>`.
    async fn spawn(args: &[&str]) -> ProviderProcess {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Self::spawn_on("127.0.0.1:0", args).await
    }

    async fn spawn_on(listen: &str, args: Vec<String>) -> ProviderProcess {
        let test_binary = std::env::current_exe().expect("the test binary's path");
        let mut child = tokio::process::Command::new(test_binary)
            .args(["provider_process", "--exact", "--ignored", "--nocapture", "--quiet", "--test-threads=1"])
            .env(PROVIDER_ARGS, format!("--listen {listen} {}", args.join(" ")))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the provider process");
        let (addr, _) = listening_addr(child.stdout.take().unwrap()).await;
        ProviderProcess { child, addr, args }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: connections are reset, nothing is answered.
    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    async fn restart(&mut self) {
        *self = Self::spawn_on(&self.addr.to_string(), self.args.clone()).await;
    }
}

/// The provider process of [`ProviderProcess`], not a test (ignored; without [`PROVIDER_ARGS`]
/// it returns at once): registers the `--hook`s in one `--package`, answers valued hooks
/// CONTINUE true after `--delay-ms`, prints `listening on <addr>` and serves until killed.
#[test]
#[ignore = "the fault tests' provider process: runs only when they spawn it"]
fn provider_process() {
    let Ok(args) = std::env::var(PROVIDER_ARGS) else { return };
    let (mut version, mut listen, mut hooks, mut delay) = (Version::V3, "127.0.0.1:0", Vec::new(), Duration::ZERO);
    let mut args = args.split_whitespace();
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag {
            "--package" => version = value.parse().expect("--package"),
            "--listen" => listen = value,
            "--hook" => hooks.push(value),
            "--delay-ms" => delay = Duration::from_millis(value.parse().expect("--delay-ms")),
            _ => panic!("unknown argument {flag}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let provider = SimProvider::builder(version)
            .hooks(&hooks)
            .record(false)
            .script(valued(move |_| {
                let allow = Reply::bool(ResponsedType::Continue, true);
                if delay.is_zero() { allow } else { allow.after(delay) }
            }))
            .start_on(listen)
            .await
            .expect("listen");
        println!("listening on {}", provider.addr());
        std::future::pending::<()>().await
    })
}

fn bool_answer(kind: ResponsedType, v: bool) -> ValuedResponse {
    ValuedResponse { r#type: kind as i32, value: Some(Value::BoolResult(v)) }
}

fn ignore() -> ValuedResponse {
    ValuedResponse { r#type: ResponsedType::Ignore as i32, value: None }
}

type Outcome = (Duration, Result<ValuedResponse, tonic::Status>);

/// One task per EMQX connection sending authenticate calls until `stop`: back to back, or one
/// per `pace` (open loop: a fixed offered load, like MQTT clients logging in).
fn sustained_authenticate(
    emqx: Vec<EmqxClient>,
    stop: Arc<AtomicBool>,
    cluster: &'static str,
    pace: Option<Duration>,
) -> tokio::task::JoinHandle<Vec<Outcome>> {
    tokio::spawn(async move {
        let tasks: Vec<_> = emqx
            .into_iter()
            .enumerate()
            .map(|(w, c)| {
                let stop = Arc::clone(&stop);
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    let mut i = 0u32;
                    let mut ticks = pace.map(|p| {
                        let mut t = tokio::time::interval(p);
                        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        t
                    });
                    while !stop.load(Ordering::Relaxed) && i < 100_000 {
                        if let Some(t) = ticks.as_mut() {
                            t.tick().await;
                        }
                        let mut req = authn(&format!("w{w}-c{}", i % 16), true, c.version());
                        req.meta = meta(c.version(), cluster);
                        let started = Instant::now();
                        let r = c.valued(&req).await;
                        out.push((started.elapsed(), r));
                        i += 1;
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    })
}

async fn clients(gw: &TestGateway, n: usize, timeout: Duration) -> Vec<EmqxClient> {
    let mut v = Vec::new();
    for _ in 0..n {
        let mut c = gw.emqx(Version::V3).await;
        c.request_timeout = timeout;
        v.push(c);
    }
    v
}

/// A provider of `hook` (v3) answering CONTINUE true after `delay`; not recording.
async fn answering(hook: &str, delay: Duration) -> SimProvider {
    SimProvider::builder(Version::V3)
        .hook(hook)
        .record(false)
        .script(valued(move |_| {
            let allow = Reply::bool(ResponsedType::Continue, true);
            if delay.is_zero() { allow } else { allow.after(delay) }
        }))
        .start()
        .await
        .unwrap()
}

/// `n` calls one after another, each checked against `expected`; their latencies.
async fn latencies<R: exhook_hooks::HookRequest>(
    emqx: &EmqxClient,
    request: &R,
    n: usize,
    expected: &ValuedResponse,
) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        assert_eq!(&emqx.valued(request).await.unwrap(), expected);
        v.push(started.elapsed());
    }
    v
}

fn percentile(mut xs: Vec<Duration>, p: f64) -> Duration {
    xs.sort();
    xs.get(((xs.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

async fn wait_state(
    rx: &mut tokio::sync::watch::Receiver<BreakerState>,
    want: BreakerState,
    limit: Duration,
) -> Instant {
    tokio::time::timeout(limit, rx.wait_for(|s| *s == want))
        .await
        .unwrap_or_else(|_| panic!("breaker never {want:?}"))
        .unwrap();
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_provider_then_restarted() {
    let mut process = ProviderProcess::spawn(&["--package", "v3", "--hook", "client.authenticate"]).await;
    let toml = format!(
        "{}health_interval = \"100ms\"\n[providers.breaker]\nconsecutive_failures = 3\nminimum_calls = 10\nopen_duration = \"300ms\"\nhalf_open_probes = 1\n",
        provider("p", &process.url(), "v3", "200ms", "deny")
    );
    let gw = TestGateway::start(&toml).await;
    gw.gateway.start_loading();
    let _ = gw.loaded_emqx(Version::V3).await;
    let p = gw.gateway.provider("p").unwrap();
    let loads_before = p.load_count();
    let mut states = p.breaker().subscribe();
    let deadline = Duration::from_millis(500);

    let stop = Arc::new(AtomicBool::new(false));
    let load = sustained_authenticate(clients(&gw, 8, deadline).await, Arc::clone(&stop), "emqxcl", None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    process.kill().await;
    let opened = wait_state(&mut states, BreakerState::Open, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    process.restart().await;
    let restarted = Instant::now();
    let closed = wait_state(&mut states, BreakerState::Closed, Duration::from_secs(10)).await;
    tokio::time::timeout(Duration::from_secs(10), p.wait_loaded(loads_before))
        .await
        .expect("re-loaded after the outage");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();

    let errors: Vec<_> = outcomes.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(errors.is_empty(), "EMQX saw errors: {:?}", &errors[..errors.len().min(5)]);
    let late = outcomes.iter().filter(|(d, _)| *d > deadline).count();
    assert_eq!(late, 0, "answers after EMQX's deadline");
    let answers: Vec<&ValuedResponse> = outcomes.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
    let denied = answers.iter().filter(|a| **a == &bool_answer(ResponsedType::StopAndReturn, false)).count();
    let allowed = answers.iter().filter(|a| **a == &bool_answer(ResponsedType::Continue, true)).count();
    assert_eq!(denied + allowed, answers.len(), "only the provider's answer or failed_action's deny");
    assert!(denied > 0 && allowed > 0);
    assert!(p.breaker().snapshot().times_opened >= 1);
    assert_eq!(p.breaker_state(), BreakerState::Closed);
    let max = outcomes.iter().map(|(d, _)| *d).max().unwrap_or_default();
    eprintln!(
        "FAULT killed: calls={} answered={} lost=0 denied={denied} allowed={allowed} time_to_open={:?} time_to_recover={:?} max_latency={max:?}",
        outcomes.len(),
        answers.len(),
        opened - killed,
        closed - restarted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_provider_is_bounded_and_isolated() {
    let slow = answering("client.authenticate", Duration::from_millis(200)).await;
    let fast = answering("client.authorize", Duration::ZERO).await;
    let toml = format!(
        "{}{}",
        provider("slow", &slow.url(), "v3", "100ms", "ignore"),
        provider("fast", &fast.url(), "v3", "1s", "deny")
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    let authorize = model::ClientAuthorizeRequest {
        clientinfo: client_info("x"),
        r#type: 0,
        topic: "t".into(),
        result: true,
        meta: meta(Version::V3, "emqxcl"),
    };
    let allowed = bool_answer(ResponsedType::Continue, true);
    let alone = latencies(&emqx, &authorize, 200, &allowed).await;
    let stop = Arc::new(AtomicBool::new(false));
    // 8 callers, one login each per 20 ms (400/s offered).
    let load = sustained_authenticate(
        clients(&gw, 8, Duration::from_secs(1)).await,
        Arc::clone(&stop),
        "emqxcl",
        Some(Duration::from_millis(20)),
    );
    let beside = latencies(&emqx, &authorize, 200, &allowed).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    let bound = Duration::from_millis(100) + Duration::from_millis(50);
    for (d, r) in &outcomes {
        assert_eq!(r.as_ref().unwrap(), &ignore(), "slow provider ignored (failed_action)");
        assert!(*d <= bound, "answered after min(timeout, deadline) + slack: {d:?}");
    }
    let (p50_alone, p50_beside) = (percentile(alone, 0.5), percentile(beside, 0.5));
    assert!(
        p50_beside <= p50_alone * 4 + Duration::from_millis(2),
        "unrelated hook slowed: {p50_alone:?} -> {p50_beside:?}"
    );
    eprintln!(
        "FAULT slow: authenticate calls={} max={:?} (bound {bound:?}); authorize p50 alone={p50_alone:?} beside={p50_beside:?}; breaker opened {} times",
        outcomes.len(),
        outcomes.iter().map(|(d, _)| *d).max().unwrap_or_default(),
        gw.gateway.provider("slow").unwrap().breaker().snapshot().times_opened,
    );
    assert!(gw.gateway.provider("slow").unwrap().breaker().snapshot().times_opened >= 1, "timeouts trip the breaker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_are_failures() {
    // A wrong message type, UNIMPLEMENTED, and an unknown response type.
    let garbage = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let mut reset =
        ProviderProcess::spawn(&["--package", "v3", "--hook", "client.authenticate", "--delay-ms", "2000"]).await;
    let toml = format!(
        "[server]\nunknown_cluster = \"default\"\n{}[providers.breaker]\nconsecutive_failures = 0\nminimum_calls = 1000\n{}[chains]\n\"client.authenticate\" = [\"garbage\"]\n\n[[tenants]]\nname = \"r\"\ncluster_names = [\"reset\"]\n[tenants.chains]\n\"client.authenticate\" = [\"reset\"]\n",
        provider("garbage", &garbage.url(), "v3", "1s", "deny"),
        provider("reset", &reset.url(), "v3", "5s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    let emqx = gw.emqx(Version::V3).await;
    emqx.loaded(&loaded_request(Version::V3, "emqxcl")).await.unwrap();
    emqx.loaded(&loaded_request(Version::V3, "reset")).await.unwrap();
    let deny = bool_answer(ResponsedType::StopAndReturn, false);
    let cases: Vec<(&str, Reply, ValuedResponse)> = vec![
        (
            "wrong message",
            Reply::Loaded(model::LoadedResponse { hooks: vec![model::HookSpec { name: "x".into(), topics: vec![] }] }),
            deny.clone(),
        ),
        ("UNIMPLEMENTED", Reply::Status(tonic::Status::unimplemented("no")), deny.clone()),
        ("INTERNAL", Reply::Status(tonic::Status::internal("panic in provider")), deny.clone()),
        // Not a failure: EMQX treats an unknown type as IGNORE.
        ("unknown type", Reply::Valued(ValuedResponse { r#type: 7, value: Some(Value::BoolResult(true)) }), ignore()),
    ];
    for (name, reply, expected) in cases {
        garbage.set_script(valued(move |_| reply.clone()));
        assert_eq!(emqx.valued(&authn("c", true, Version::V3)).await.unwrap(), expected, "{name}");
    }
    // A stream reset: the provider process dies with calls in flight.
    let mut req = authn("c", true, Version::V3);
    req.meta = meta(Version::V3, "reset");
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (emqx, req) = (emqx.clone(), req.clone());
            tokio::spawn(async move { emqx.valued(&req).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    reset.kill().await;
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), deny, "reset stream applies failed_action");
    }
    assert!(killed.elapsed() < Duration::from_secs(1), "failed fast, not at the 5s timeout");
    // And the gateway is still fine.
    garbage.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true)));
    assert_eq!(emqx.valued(&authn("c", true, Version::V3)).await.unwrap(), bool_answer(ResponsedType::Continue, true));
    let m = gw.gateway.metrics().encode();
    assert!(
        m.contains(
            "exhook_gateway_provider_calls_total{hook=\"client.authenticate\",provider=\"garbage\",result=\"error\"} 3"
        ),
        "{m}"
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_and_other_tenants_are_unaffected() {
    // Tenant a's provider handles 4 calls at a time, 50 ms each (80 calls/s); it is offered
    // 800 calls/s (10x). Tenant b has its own fast provider.
    let busy = answering("client.authenticate", Duration::from_millis(50)).await;
    let other = answering("client.authenticate", Duration::ZERO).await;
    let toml = format!(
        "{}max_inflight = 4\n{}[[tenants]]\nname = \"a\"\ncluster_names = [\"a\"]\nproviders = [\"busy\"]\n[[tenants]]\nname = \"b\"\ncluster_names = [\"b\"]\nproviders = [\"other\"]\n",
        provider("busy", &busy.url(), "v3", "1s", "ignore"),
        provider("other", &other.url(), "v3", "1s", "deny"),
    );
    let gw = TestGateway::start(&toml).await;
    let emqx = gw.emqx(Version::V3).await;
    emqx.loaded(&loaded_request(Version::V3, "a")).await.unwrap();
    emqx.loaded(&loaded_request(Version::V3, "b")).await.unwrap();
    let mut b_req = authn("b-client", true, Version::V3);
    b_req.meta = meta(Version::V3, "b");
    let allowed = bool_answer(ResponsedType::Continue, true);
    let alone = latencies(&emqx, &b_req, 200, &allowed).await;
    let rss_before = rss_kib();
    let stop = Arc::new(AtomicBool::new(false));
    // 40 callers, one call each per 50 ms: 800 calls/s offered, 10x what `busy` can serve.
    let load = sustained_authenticate(
        clients(&gw, 40, Duration::from_secs(2)).await,
        Arc::clone(&stop),
        "a",
        Some(Duration::from_millis(50)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let beside = latencies(&emqx, &b_req, 200, &allowed).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_during = rss_kib();
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    assert!(outcomes.iter().all(|(_, r)| r.is_ok()), "every overloaded call is still answered");
    let shed = outcomes.iter().filter(|(_, r)| r.as_ref().unwrap() == &ignore()).count();
    let served = outcomes.len() - shed;
    assert!(shed > served, "most of the 10x load is shed: shed={shed} served={served}");
    let m = gw.gateway.metrics().encode();
    assert!(m.contains("result=\"shed\""), "shed calls are counted");
    assert_eq!(
        gw.gateway.provider("busy").unwrap().breaker_state(),
        BreakerState::Closed,
        "shedding is not a provider fault"
    );
    let (p50_alone, p50_beside) = (percentile(alone, 0.5), percentile(beside, 0.5));
    assert!(p50_beside <= p50_alone * 4 + Duration::from_millis(2), "tenant b slowed: {p50_alone:?} -> {p50_beside:?}");
    let growth = rss_during.saturating_sub(rss_before);
    assert!(growth < 64 * 1024, "memory grew by {growth} KiB under overload");
    eprintln!(
        "FAULT overload: calls={} served={served} shed={shed} tenant-b p50 alone={p50_alone:?} beside={p50_beside:?} rss_growth={growth}KiB",
        outcomes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_providers_down() {
    let strict =
        SimProvider::builder(Version::V3).hooks(&["client.authenticate", "session.created"]).start().await.unwrap();
    let lenient =
        SimProvider::builder(Version::V2).hooks(&["message.publish", "session.created"]).start().await.unwrap();
    let toml = format!(
        "{}{}",
        provider("strict", &strict.url(), "v3", "300ms", "deny"),
        provider("lenient", &lenient.url(), "v2", "300ms", "ignore")
    );
    let gw = TestGateway::start(&toml).await;
    let (mut emqx, _) = gw.loaded_emqx(Version::V3).await;
    strict.stopped().await;
    lenient.stopped().await;
    emqx.request_timeout = Duration::from_millis(500);
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(
            emqx.valued(&authn("c", true, Version::V3)).await.unwrap(),
            bool_answer(ResponsedType::StopAndReturn, false)
        );
        assert_eq!(emqx.valued(&publish("t", "p", Version::V3)).await.unwrap(), ignore());
        emqx.notify(&model::SessionCreatedRequest { clientinfo: client_info("c"), meta: meta(Version::V3, "emqxcl") })
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }
    for p in gw.gateway.providers() {
        p.drain(tokio::time::Instant::now() + Duration::from_secs(5)).await;
    }
    let m = gw.gateway.metrics().encode();
    for p in ["strict", "lenient"] {
        let series =
            format!("exhook_gateway_notifications_dropped_total{{provider=\"{p}\",reason=\"delivery_failed\"}} 5");
        assert!(m.contains(&series), "missing {series} in\n{m}");
    }
    assert!(m.contains(
        "exhook_gateway_requests_total{hook=\"client.authenticate\",outcome=\"denied_by_failure\",tenant=\"default\"} 5"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_no_call() {
    let slow = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|_| Reply::bool(ResponsedType::Continue, true).after(Duration::from_millis(400))))
        .start()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("exhook-graceful-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndrain_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            provider("slow", &slow.url(), "v3", "2s", "deny")
        ),
    )
    .unwrap();
    let mut gateway = gateway_process(&["--log-format", "json", "run"], Some(&config), None);
    let mut logs = BufReader::new(gateway.stderr.take().unwrap()).lines();
    let listen = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), logs.next_line())
            .await
            .expect("gateway start")
            .unwrap()
            .expect("log line");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "exhook-gateway serving" {
            break v["fields"]["listen"].as_str().unwrap().to_string();
        }
    };
    let keep_reading = tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    let emqx = EmqxClient::connect(&format!("http://{listen}"), Version::V3).await.unwrap();
    emqx.loaded(&loaded_request(Version::V3, "emqxcl")).await.unwrap();
    let calls: Vec<_> = (0..20)
        .map(|i| {
            let emqx = emqx.clone();
            tokio::spawn(async move { emqx.valued(&authn(&format!("c{i}"), true, Version::V3)).await })
        })
        .collect();
    slow.wait_for(Hook::ClientAuthenticate, 20, Duration::from_secs(5)).await;
    let pid = gateway.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopping = Instant::now();
    for c in calls {
        assert_eq!(c.await.unwrap().expect("in-flight call lost"), bool_answer(ResponsedType::Continue, true));
    }
    let status = tokio::time::timeout(Duration::from_secs(10), gateway.wait()).await.expect("exits").unwrap();
    assert!(status.success(), "exit status {status:?}");
    let _ = keep_reading.await;
    eprintln!("FAULT shutdown: in_flight=20 lost=0 exited_after={:?} status=0", stopping.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replica_is_ejected_and_the_others_serve() {
    let mut one =
        ProviderProcess::spawn(&["--package", "v3", "--hook", "client.authenticate", "--hook", "session.created"])
            .await;
    let two = SimProvider::builder(Version::V3)
        .hooks(&["client.authenticate", "session.created"])
        .script(valued(|_| Reply::bool(ResponsedType::Continue, true)))
        .start()
        .await
        .unwrap();
    let toml = format!(
        "[[providers]]\nname = \"team\"\nurls = [\"{}\", \"{}\"]\nprotocol = \"v3\"\ntimeout = \"300ms\"\nfailed_action = \"deny\"\neject_after = 2\neject_for = \"30s\"\n[providers.breaker]\nconsecutive_failures = 0\nminimum_calls = 1000\n",
        one.url(),
        two.url()
    );
    let gw = TestGateway::start(&toml).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    // Both replicas take calls while healthy.
    for i in 0..40 {
        emqx.valued(&authn(&format!("c{i}"), true, Version::V3)).await.unwrap();
    }
    let at_two_before = two.calls_of(Hook::ClientAuthenticate).len();
    assert!(at_two_before > 0 && at_two_before < 40, "calls spread over both replicas: {at_two_before}/40");
    one.kill().await;
    let mut denied = 0;
    for i in 0..100 {
        let r = emqx.valued(&authn(&format!("c{i}"), true, Version::V3)).await.unwrap();
        if r == bool_answer(ResponsedType::StopAndReturn, false) {
            denied += 1;
        }
    }
    // Calls that hit the dead replica are retried on the other (UNAVAILABLE is retryable):
    // EMQX sees no failure at all, and the dead replica is ejected after `eject_after`.
    assert_eq!(denied, 0);
    let status = gw.gateway.provider("team").unwrap().endpoints();
    assert!(status.iter().any(|e| e.ejected), "{status:?}");
    // Notifications for one client stay on one (live) replica.
    for _ in 0..10 {
        emqx.notify(&model::SessionCreatedRequest {
            clientinfo: client_info("sticky"),
            meta: meta(Version::V3, "emqxcl"),
        })
        .await
        .unwrap();
    }
    assert_eq!(two.wait_for(Hook::SessionCreated, 10, Duration::from_secs(5)).await.len(), 10);
    eprintln!(
        "FAULT replica: dead replica ejected; 100 of 100 calls served (0 denied), sticky notifications on the live replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_file_and_keeps_the_running_one_otherwise() {
    let p = SimProvider::builder(Version::V3).hook("client.authenticate").start().await.unwrap();
    let dir = std::env::temp_dir().join(format!("exhook-sighup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("gateway.toml");
    let write = |timeout: &str| {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}",
            provider("p", &p.url(), "v3", timeout, "deny")
        );
        std::fs::write(&config, text).unwrap();
    };
    write("1s");
    let mut gateway = gateway_process(&["--log-format", "json", "run"], Some(&config), None);
    // Every log message, in order: the readiness signals of this test.
    let (tx, mut messages) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let mut logs = BufReader::new(gateway.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = logs.next_line().await {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(v["fields"].clone());
            }
        }
    });
    let mut wait_for = async |message: &str| loop {
        let v = tokio::time::timeout(Duration::from_secs(10), messages.recv()).await.expect(message).expect("log");
        if v["message"] == message {
            return v;
        }
    };
    let admin: SocketAddr =
        wait_for("admin listener (metrics, health, status page)").await["listen"].as_str().unwrap().parse().unwrap();
    wait_for("exhook-gateway serving").await;
    let sha = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["config"]["sha256"].as_str().unwrap().to_string()
    };
    let before = sha(&get(admin, "/api/v1/status", None).await.1);
    let hup = || {
        assert!(
            std::process::Command::new("kill")
                .args(["-HUP", &gateway.id().unwrap().to_string()])
                .status()
                .unwrap()
                .success()
        )
    };

    write("fast"); // invalid: the running configuration stays
    hup();
    wait_for("configuration NOT reloaded; the running one stays").await;
    assert_eq!(sha(&get(admin, "/api/v1/status", None).await.1), before);
    write("2s");
    hup();
    let report = wait_for("configuration reloaded").await;
    assert!(report["kept"].as_str().unwrap().contains("\"p\""), "{report}");
    let (_, status) = get(admin, "/api/v1/status", None).await;
    assert_ne!(sha(&status), before);
    assert!(status.contains("\"timeout\":\"2s\""), "{status}");
    let (_, metrics) = get(admin, "/metrics", None).await;
    assert!(metrics.contains("exhook_gateway_config_reloads_total{result=\"failure\"} 1"), "{metrics}");
    assert!(metrics.contains("exhook_gateway_config_reloads_total{result=\"success\"} 1"), "{metrics}");
    let _ = gateway.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
