//! Live decision traces end to end: a real gateway with the trace hub as its observer, real
//! providers, a client playing EMQX, and viewers on the admin API (`GET /api/v1/trace`) and
//! through the `exhook-gateway trace` command.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use exhook_admin::sse::{SseEvent, follow};
use exhook_admin::trace::TraceEvent;
use exhook_admin::{TraceFilter, TraceHub};
use exhook_hooks::Version;
use exhook_proto::model::{self, valued_response::ResponsedType};
use exhook_sim::{Reply, SimProvider, valued};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const TOKEN: &str = "tr4ce-t0ken";

struct Setup {
    gw: TestGateway,
    hub: Arc<TraceHub>,
    admin: SocketAddr,
    _providers: Vec<SimProvider>,
    _admin: Admin,
}

/// auth (v3): CONTINUE true, STOP false for `mallory*`; auth-v2 (v3), a shadow that denies
/// everyone; publisher (v2): message.publish on `a/#` only; audit (v1): session.created.
async fn setup(capacity: usize) -> Setup {
    let auth = mallory_denier().await;
    let candidate = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|_| Reply::bool(ResponsedType::StopAndReturn, false)))
        .start()
        .await
        .unwrap();
    let publisher = echo_publisher().await;
    let audit = SimProvider::builder(Version::V1).hook("session.created").start().await.unwrap();
    let toml = format!(
        "{}{}{}{}[chains]\n\"client.authenticate\" = [\"auth\", {{ name = \"auth-v2\", mode = \"shadow\" }}]\n\"message.publish\" = [\"publisher\"]\n\"session.created\" = [\"audit\"]\n",
        provider("auth", &auth.url(), "v3", "1s", "deny"),
        provider("auth-v2", &candidate.url(), "v3", "1s", "ignore"),
        provider("publisher", &publisher.url(), "v2", "1s", "ignore"),
        provider("audit", &audit.url(), "v1", "1s", "ignore"),
    );
    let hub = Arc::new(TraceHub::with_capacity(capacity));
    let gw = TestGateway::start_observed(&toml, Arc::clone(&hub) as Arc<dyn exhook_server::Observer>).await;
    let state = admin_state(&gw, Some(TOKEN));
    state.set_trace(Arc::clone(&hub));
    let served = serve_admin(state).await;
    let admin = served.addr;
    let _ = gw.loaded_emqx(Version::V3).await;
    Setup { gw, hub, admin, _providers: vec![auth, candidate, publisher, audit], _admin: served }
}

fn filter(clientid: &str) -> TraceFilter {
    TraceFilter { clientid: Some(clientid.to_owned()), ..TraceFilter::default() }
}

/// A viewer in a task (aborting it closes its connection): every SSE event it receives, once
/// it is open.
async fn viewer(
    admin: SocketAddr,
    filter: TraceFilter,
) -> (mpsc::UnboundedReceiver<SseEvent>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let url = format!("http://{admin}");
        let _ = follow(&url, &filter, Some(TOKEN), |e| tx.send(e).is_ok()).await;
    });
    let open = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("viewer opened").unwrap();
    assert_eq!(open.event, "open", "{open:?}");
    (rx, task)
}

/// The trace events received until `answers` answers to EMQX were seen (and then whatever
/// else arrives within `settle`: a shadow's verdict lands after EMQX's answer).
async fn collect(rx: &mut mpsc::UnboundedReceiver<SseEvent>, answers: usize, settle: Duration) -> Vec<TraceEvent> {
    let mut got = Vec::new();
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen < answers {
        let e = tokio::time::timeout_at(deadline, rx.recv()).await.expect("trace events in time").unwrap();
        if let Ok(t) = serde_json::from_str::<TraceEvent>(&e.data) {
            seen += usize::from(t.kind == "answer");
            got.push(t);
        }
    }
    while let Ok(Some(e)) = tokio::time::timeout(settle, rx.recv()).await {
        if let Ok(t) = serde_json::from_str::<TraceEvent>(&e.data) {
            got.push(t);
        }
    }
    got
}

fn session_created(clientid: &str) -> model::SessionCreatedRequest {
    model::SessionCreatedRequest { clientinfo: client_info(clientid), meta: meta(Version::V3, "emqxcl") }
}

fn publish_from(clientid: &str, topic: &str) -> model::MessagePublishRequest {
    let mut r = publish(topic, "hello", Version::V3);
    if let Some(m) = r.message.as_mut() {
        m.from = clientid.to_owned();
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_viewers_see_every_step_of_their_clients_and_nothing_else() {
    let s = setup(exhook_admin::trace::DEFAULT_CAPACITY).await;
    let (mut alice, t1) = viewer(s.admin, filter("alice-1")).await;
    let (mut second, t2) = viewer(s.admin, filter("alice-1")).await;
    let (mut by_topic, t3) = viewer(s.admin, TraceFilter { topic: Some("b/#".into()), ..TraceFilter::default() }).await;
    assert_eq!(s.hub.viewers(), 3);
    let emqx = s.gw.emqx(Version::V3).await;
    // Not alice-1: nobody traces these.
    emqx.valued(&authn("bob", true, Version::V3)).await.unwrap();
    emqx.valued(&authn("mallory-1", true, Version::V3)).await.unwrap();
    // alice-1: authenticate (auth continues, the shadow disagrees), two publishes (one outside
    // the publisher's filter), a session.created.
    emqx.valued(&authn("alice-1", true, Version::V3)).await.unwrap();
    emqx.valued(&publish_from("alice-1", "a/1")).await.unwrap();
    emqx.valued(&publish_from("alice-1", "b/1")).await.unwrap();
    emqx.notify(&session_created("alice-1")).await.unwrap();
    let got = collect(&mut alice, 4, Duration::from_millis(500)).await;
    let lines: Vec<String> = got.iter().map(TraceEvent::line).collect();
    let text = lines.join("\n");
    assert!(got.iter().all(|e| e.clientid == "alice-1"), "only alice-1's calls:\n{text}");
    let has = |kind: &str, hook: &str, provider: Option<&str>, outcome: &str| {
        got.iter().any(|e| {
            e.kind == kind && e.hook == hook && e.provider.as_deref() == provider && e.outcome.starts_with(outcome)
        })
    };
    assert!(has("received", "client.authenticate", None, ""), "{text}");
    assert!(has("step", "client.authenticate", Some("auth"), "continue"), "{text}");
    assert!(has("step", "client.authenticate", Some("auth-v2"), "stop"), "the shadow's own answer:\n{text}");
    assert!(has("shadow", "client.authenticate", Some("auth-v2"), "disagree"), "the shadow's verdict:\n{text}");
    assert!(has("answer", "client.authenticate", None, "CONTINUE allow"), "what EMQX got:\n{text}");
    assert!(has("step", "message.publish", Some("publisher"), "continue"), "{text}");
    assert!(has("step", "message.publish", Some("publisher"), "skipped: filter"), "b/1 is outside a/#:\n{text}");
    assert!(has("step", "session.created", Some("audit"), "queued"), "{text}");
    assert!(has("answer", "session.created", None, "ack"), "{text}");
    let answer = got.iter().find(|e| e.kind == "answer" && e.hook == "client.authenticate").unwrap();
    assert!(answer.elapsed_us.is_some_and(|us| us > 0), "{answer:?}");
    let step = got.iter().find(|e| e.provider.as_deref() == Some("auth")).unwrap();
    assert!(step.elapsed_us.is_some(), "a provider call's latency: {step:?}");
    // Every client sends the password "s3cret": never in a trace.
    assert!(!text.contains("s3cret") && !format!("{got:?}").contains("s3cret"), "{text}");
    // The second viewer saw the same calls.
    let other = collect(&mut second, 4, Duration::from_millis(500)).await;
    let key = |v: &[TraceEvent]| {
        let mut k: Vec<(String, String, Option<String>)> =
            v.iter().map(|e| (e.kind.to_string(), e.outcome.clone(), e.provider.clone())).collect();
        k.sort();
        k
    };
    assert_eq!(key(&got), key(&other));
    // The topic viewer saw the b/1 publish only.
    let topic = collect(&mut by_topic, 1, Duration::from_millis(200)).await;
    assert!(topic.iter().all(|e| e.hook == "message.publish"), "{topic:?}");
    assert_eq!(topic[0].topic.as_deref(), Some("b/1"));
    // Viewers leaving close their traces: back to one atomic load per call.
    for t in [t1, t2, t3] {
        t.abort();
    }
    drop((alice, second, by_topic));
    // A closed connection is noticed at the stream's next write: an event, or the keep-alive.
    let deadline = tokio::time::Instant::now() + exhook_admin::sse::KEEP_ALIVE * 2 + Duration::from_secs(2);
    while s.hub.viewers() > 0 {
        emqx.valued(&authn("alice-1", true, Version::V3)).await.unwrap();
        assert!(tokio::time::Instant::now() < deadline, "viewers not closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_needs_the_token_and_a_filter() {
    let s = setup(16).await;
    assert_eq!(get(s.admin, "/api/v1/trace?clientid=alice-1", None).await.0, 401);
    assert_eq!(get(s.admin, "/api/v1/trace?clientid=alice-1", Some("wrong")).await.0, 401);
    let (code, body) = get(s.admin, "/api/v1/trace", Some(TOKEN)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("at least one of clientid"), "{body}");
    assert_eq!(get(s.admin, "/api/v1/trace?client=x", Some(TOKEN)).await.0, 400, "a typo is refused");
    assert_eq!(s.hub.viewers(), 0);
    // The family exists from the first scrape.
    let (_, metrics) = get(s.admin, "/metrics", Some(TOKEN)).await;
    assert!(metrics.contains("exhook_gateway_trace_dropped_total 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_viewer_loses_events_counted_and_emqx_never_waits() {
    let s = setup(8).await;
    // A viewer that reads nothing for a while, through a tiny receive window.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(s.admin).await.unwrap();
    slow.write_all(
        format!(
            "GET /api/v1/trace?clientid=alice-1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.hub.viewers() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "viewer not open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Calls until the viewer's socket buffers (up to a few MiB) and its queue of 8 are full
    // and events are dropped; every call is answered meanwhile.
    let dropped = || {
        let metrics = s.gw.gateway.metrics().encode();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("exhook_gateway_trace_dropped_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no trace_dropped_total in:\n{metrics}"))
    };
    let started = std::time::Instant::now();
    let mut calls = 0;
    while dropped() == 0.0 {
        assert!(calls < 20_000, "a viewer reading nothing must lose events ({calls} calls)");
        let round = || async {
            let emqx = s.gw.emqx(Version::V3).await;
            for _ in 0..100 {
                let r = emqx.valued(&authn("alice-1", true, Version::V3)).await.unwrap();
                assert_eq!(r.r#type, ResponsedType::Continue as i32);
            }
        };
        tokio::join!(round(), round(), round(), round());
        calls += 400;
    }
    eprintln!("events dropped after {calls} calls in {:?}", started.elapsed());
    // What /metrics exports.
    let (_, metrics) = get(s.admin, "/metrics", Some(TOKEN)).await;
    assert!(!metrics.contains("exhook_gateway_trace_dropped_total 0\n"), "{metrics}");
    // Reading now: the viewer is told how many it lost.
    let mut reader = tokio::io::BufReader::new(&mut slow);
    let mut line = String::new();
    let told = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap() == 0 {
                return false;
            }
            if line.starts_with("event: dropped") {
                return true;
            }
        }
    })
    .await
    .expect("the dropped count within a keep-alive");
    assert!(told, "stream ended without telling the drops");
    line.clear();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("data: {\"dropped\":"), "{line}");
    drop(reader);
    let mut rest = [0u8; 1];
    let _ = tokio::time::timeout(Duration::from_millis(10), slow.read(&mut rest)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_command_prints_a_line_per_event() {
    let s = setup(exhook_admin::trace::DEFAULT_CAPACITY).await;
    let token_file = std::env::temp_dir().join(format!("exhook-trace-token-{}", std::process::id()));
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let admin = format!("http://{}", s.admin);
    let token_path = token_file.to_str().unwrap();
    // Without the token: refused, said so, non-zero exit.
    let refused = gateway_process(&["trace", "--admin", &admin, "--clientid", "alice-1"], None, None)
        .wait_with_output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"), "{refused:?}");
    let mut child =
        gateway_process(&["trace", "--admin", &admin, "--clientid", "alice-1", "--token-file", token_path], None, None);
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(first.starts_with("# tracing") && first.contains("alice-1"), "{first}");
    let emqx = s.gw.emqx(Version::V3).await;
    emqx.valued(&authn("bob", true, Version::V3)).await.unwrap();
    emqx.valued(&authn("alice-1", true, Version::V3)).await.unwrap();
    let mut printed = Vec::new();
    while !printed.iter().any(|l: &String| l.contains("→ EMQX")) {
        let l = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
        printed.push(l);
    }
    let text = printed.join("\n");
    assert!(text.contains("client.authenticate alice-1 ← EMQX username=alice"), "{text}");
    assert!(text.contains("auth: continue [allow]"), "{text}");
    assert!(text.contains("→ EMQX: CONTINUE allow [ran to the end]"), "{text}");
    assert!(!text.contains("bob") && !text.contains("s3cret"), "{text}");
    child.kill().await.unwrap();
    let _ = std::fs::remove_file(&token_file);
}
