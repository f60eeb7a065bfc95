//! Bounds on the wire (issue 9, part 3): the provider reply size (`max_reply_bytes`), EMQX
//! connections over every listener (`server.max_connections`), HTTP/2 streams per EMQX
//! connection (`server.max_concurrent_streams`) and the EMQX request size
//! (`server.max_request_bytes`). Each is enforced with a clear error and counted in
//! `exhook_gateway_limit_exceeded_total{limit}`; the memory tests run the gateway as its own
//! process and read its resident set from `/proc`.
//!
//! Run with `--nocapture` to see the measured figures (`BOUND ...` lines).

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use exhook_config::Config;
use exhook_hooks::{Hook, Version};
use exhook_proto::codec::RawCodec;
use exhook_proto::model::valued_response::{ResponsedType, Value};
use exhook_proto::model::{HookSpec, LoadedResponse, ValuedResponse};
use exhook_server::{Gateway, Listeners, NoopObserver};
use exhook_sim::{EmqxClient, Reply, SimProvider, valued};
use exhook_testpki::{Ca, Leaf};
use exhook_tls::ServerName;
use exhook_tls::rustls::{ClientConfig, RootCertStore};
use prost::Message as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::codegen::http;

/// KiB in a MiB (`/proc` reports KiB).
const MIB: u64 = 1024;

fn bool_answer(kind: ResponsedType, v: bool) -> ValuedResponse {
    ValuedResponse { r#type: kind as i32, value: Some(Value::BoolResult(v)) }
}

fn allowed() -> ValuedResponse {
    bool_answer(ResponsedType::Continue, true)
}

fn denied() -> ValuedResponse {
    bool_answer(ResponsedType::StopAndReturn, false)
}

/// The value of one series in a Prometheus text exposition.
fn series(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)).and_then(|rest| rest.trim().parse().ok())
}

fn limit_series(limit: &str) -> String {
    format!("exhook_gateway_limit_exceeded_total{{limit=\"{limit}\"}} ")
}

/// The gateway binary in its own process (so its memory is its own), with the JSON log lines
/// as readiness signals.
struct GatewayProcess {
    child: tokio::process::Child,
    listen: SocketAddr,
    admin: SocketAddr,
    logs: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    /// `server` goes into `[server]` (after `listen`), `rest` after `[admin]`.
    async fn start(server: &str, rest: &str) -> GatewayProcess {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!("[server]\nlisten = \"127.0.0.1:0\"\n{server}[admin]\nlisten = \"127.0.0.1:0\"\n{rest}"),
        )
        .unwrap();
        let mut child = gateway_process(&["--log-format", "json", "run"], Some(&config), None);
        let (tx, logs) = tokio::sync::mpsc::unbounded_channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v["fields"].clone());
                }
            }
        });
        let mut g = GatewayProcess {
            child,
            listen: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            logs,
            _dir: dir,
        };
        g.admin =
            g.log("admin listener (metrics, health, status page)").await["listen"].as_str().unwrap().parse().unwrap();
        g.listen = g.log("exhook-gateway serving").await["listen"].as_str().unwrap().parse().unwrap();
        g
    }

    /// Waits for the next log line with `message` (earlier other lines are skipped).
    async fn log(&mut self, message: &str) -> serde_json::Value {
        loop {
            let v = tokio::time::timeout(Duration::from_secs(20), self.logs.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line {message:?}"))
                .expect("gateway exited");
            if v["message"] == message {
                return v;
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// A line of `/proc/<pid>/status`, in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, key: &str) -> u64 {
        let pid = self.child.id().expect("gateway running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{key} not in /proc/{pid}/status"))
    }

    /// Resets the peak resident set (`VmHWM`) to the current one (Linux `clear_refs` 5); the
    /// peak then covers only what follows. Returns the resident set now.
    fn reset_peak(&self) -> u64 {
        let pid = self.child.id().expect("gateway running");
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak resident set");
        self.status_kib("VmRSS")
    }

    async fn metrics(&self) -> String {
        let (code, body) = get(self.admin, "/metrics", None).await;
        assert_eq!(code, 200);
        body
    }
}

/// A `ValuedResponse` carrying a message of `payload` bytes.
fn huge_reply(payload: usize) -> Reply {
    let mut m = message("t", "");
    m.payload = vec![b'x'; payload].into();
    Reply::message(ResponsedType::Continue, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_provider_reply_is_refused_while_it_arrives() {
    const HUGE: usize = 64 << 20;
    let big = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .record(false)
        .script(valued(|_| Reply::bool(ResponsedType::Continue, true)))
        .start()
        .await
        .unwrap();
    // One connection to the provider: the calls after the refused replies use the same one.
    let mut gw =
        GatewayProcess::start("", &format!("{}connections = 1\n", provider("big", &big.url(), "v3", "10s", "deny")))
            .await;
    let mut emqx = EmqxClient::connect(&gw.url(), Version::V3).await.unwrap();
    emqx.request_timeout = Duration::from_secs(20);
    emqx.loaded(&loaded_request(Version::V3, "emqxcl")).await.unwrap();
    for i in 0..50 {
        assert_eq!(emqx.valued(&authn(&format!("warm-{i}"), true, Version::V3)).await.unwrap(), allowed());
    }
    let before = gw.reset_peak();

    big.set_script(valued(|_| huge_reply(HUGE)));
    let mut took = Vec::new();
    for i in 0..3 {
        let started = Instant::now();
        let answer = emqx.valued(&authn(&format!("huge-{i}"), true, Version::V3)).await.unwrap();
        took.push(started.elapsed());
        assert_eq!(answer, denied(), "a refused reply is a provider failure: failed_action = deny");
        let log = gw.log("provider reply larger than max_reply_bytes refused").await;
        assert_eq!(log["max"], 4 << 20, "{log}");
        assert!(log["size"].as_u64().unwrap() > HUGE as u64, "the announced size is reported: {log}");
    }
    let peak = gw.status_kib("VmHWM");

    big.set_script(valued(|_| Reply::bool(ResponsedType::Continue, true)));
    for i in 0..20 {
        assert_eq!(
            emqx.valued(&authn(&format!("after-{i}"), true, Version::V3)).await.unwrap(),
            allowed(),
            "normal calls work again on the same connection"
        );
    }
    let m = gw.metrics().await;
    assert_eq!(series(&m, &limit_series("reply_bytes")), Some(3.0), "{m}");
    assert_eq!(
        series(
            &m,
            "exhook_gateway_provider_calls_total{hook=\"client.authenticate\",provider=\"big\",result=\"error\"} "
        ),
        Some(3.0),
        "{m}"
    );
    assert!(!m.contains("result=\"timeout\""), "refused at once, not timed out: {m}");
    let growth = peak.saturating_sub(before);
    assert!(growth < 16 * MIB, "a 64 MiB reply grew the gateway by {growth} KiB");
    eprintln!(
        "BOUND reply_bytes: 3 replies of 64 MiB refused (max_reply_bytes 4 MiB) in {took:?}; gateway RSS {before} KiB, peak {peak} KiB (+{growth} KiB)"
    );
}

/// A v3 provider that registers `client.authenticate`, answers it after `delay`, and records
/// how many calls it is handling at once (the most ever, and the total).
#[derive(Clone)]
struct Probe(Arc<ProbeState>);

struct ProbeState {
    delay: Duration,
    now: AtomicUsize,
    most: AtomicUsize,
    calls: AtomicUsize,
}

impl tonic::server::NamedService for Probe {
    const NAME: &'static str = "emqx.exhook.v3.HookProvider";
}

/// Answers every call with the same encoded message.
struct Fixed(Bytes);

impl tonic::server::UnaryService<()> for Fixed {
    type Response = Bytes;
    type Future = std::future::Ready<Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, _: tonic::Request<()>) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new(self.0.clone())))
    }
}

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for Probe {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let state = Arc::clone(&self.0);
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let reply: Bytes = if path.ends_with("/OnProviderLoaded") {
                LoadedResponse { hooks: vec![HookSpec { name: "client.authenticate".into(), topics: vec![] }] }
                    .encode_to_vec()
                    .into()
            } else if path.ends_with("/OnClientAuthenticate") {
                let now = state.now.fetch_add(1, Ordering::SeqCst) + 1;
                state.most.fetch_max(now, Ordering::SeqCst);
                state.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(state.delay).await;
                state.now.fetch_sub(1, Ordering::SeqCst);
                allowed().encode_to_vec().into()
            } else {
                Bytes::new() // EmptySuccess
            };
            Ok(tonic::server::Grpc::new(RawCodec::<()>::default()).unary(Fixed(reply), req).await)
        })
    }
}

impl Probe {
    async fn start(delay: Duration) -> (Probe, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let probe = Probe(Arc::new(ProbeState {
            delay,
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
        }));
        let server = tonic::transport::Server::builder().add_service(probe.clone());
        tokio::spawn(server.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
        (probe, url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_on_one_connection_stay_within_max_concurrent_streams() {
    const CALLS: usize = 10_000;
    const STREAMS: usize = 100;
    let (probe, url) = Probe::start(Duration::from_millis(20)).await;
    let gw = GatewayProcess::start(
        &format!("max_concurrent_streams = {STREAMS}\n"),
        &provider("probe", &url, "v3", "10s", "deny"),
    )
    .await;
    // One HTTP/2 connection: the client queues what the gateway's SETTINGS do not let it open.
    let mut emqx = EmqxClient::connect(&gw.url(), Version::V3).await.unwrap();
    emqx.request_timeout = Duration::from_secs(60);
    emqx.loaded(&loaded_request(Version::V3, "emqxcl")).await.unwrap();
    for i in 0..50 {
        assert_eq!(emqx.valued(&authn(&format!("warm-{i}"), true, Version::V3)).await.unwrap(), allowed());
    }
    let before = gw.reset_peak();
    let started = Instant::now();
    let calls: Vec<_> = (0..CALLS)
        .map(|i| {
            let emqx = emqx.clone();
            tokio::spawn(async move { emqx.valued(&authn(&format!("c{i}"), true, Version::V3)).await })
        })
        .collect();
    // The gateway's own in-flight gauge, scraped while the calls run.
    let done = Arc::new(AtomicBool::new(false));
    let scraper = tokio::spawn({
        let (admin, done) = (gw.admin, Arc::clone(&done));
        async move {
            let mut most = 0.0f64;
            let mut scrapes = 0;
            while !done.load(Ordering::Relaxed) {
                let (_, m) = get(admin, "/metrics", None).await;
                most = most.max(series(&m, "exhook_gateway_provider_inflight{provider=\"probe\"} ").unwrap_or(0.0));
                scrapes += 1;
                // Sampling, not waiting for a signal: leave the two cores to the calls.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (most, scrapes)
        }
    });
    for c in calls {
        assert_eq!(c.await.unwrap().expect("every call answered"), allowed());
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (gauge_most, scrapes) = scraper.await.unwrap();
    let peak = gw.status_kib("VmHWM");
    let most = probe.0.most.load(Ordering::SeqCst);
    assert_eq!(probe.0.calls.load(Ordering::SeqCst), CALLS + 50);
    assert!(most <= STREAMS, "{most} calls in flight at once, more than max_concurrent_streams = {STREAMS}");
    assert!(most >= STREAMS / 2, "the limit was not even approached ({most}): the test proves nothing");
    assert!(gauge_most <= STREAMS as f64, "the gateway's in-flight gauge saw {gauge_most}");
    let growth = peak.saturating_sub(before);
    assert!(growth < 32 * MIB, "{CALLS} calls on one connection grew the gateway by {growth} KiB");
    eprintln!(
        "BOUND streams: {CALLS} concurrent calls on one connection, max_concurrent_streams {STREAMS}: at most {most} in flight at the provider, gauge max {gauge_most} ({scrapes} scrapes), {elapsed:?}; gateway RSS {before} KiB, peak {peak} KiB (+{growth} KiB)"
    );
}

/// A TLS client configuration trusting `ca`.
fn trusting(ca: &Ca) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap()).unwrap();
    ClientConfig::builder_with_provider(exhook_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn metric(gateway: &Gateway, name: &str) -> f64 {
    series(&gateway.metrics().encode(), name).unwrap_or(-1.0)
}

/// Waits until `name` reads `value` (the gateway's own counters are the readiness signal).
async fn wait_metric(gateway: &Gateway, name: &str, value: f64) {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while metric(gateway, name) != value {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{name} stayed at {} (expected {value})", metric(gateway, name));
}

/// Asserts that `call` has not finished within 300 ms (it is waiting for a place).
async fn still_waiting<T>(call: &mut tokio::task::JoinHandle<T>, what: &str) {
    assert!(tokio::time::timeout(Duration::from_millis(300), call).await.is_err(), "{what} did not wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_for_a_place_on_every_listener() {
    let auth = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|_| Reply::bool(ResponsedType::Continue, true)))
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("bounds CA");
    let server = ca.issue(&Leaf::new(&["gw.example.com"])).write(dir.path(), "server");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 2\nunknown_cluster = \"default\"\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{}[chains]\n\"client.authenticate\" = [\"auth\"]\n[[tenants]]\nname = \"own\"\nlisten = \"127.0.0.1:0\"\n[tenants.chains]\n\"client.authenticate\" = [\"auth\"]\n",
        server.cert.display(),
        server.key.display(),
        provider("auth", &auth.url(), "v3", "2s", "deny"),
    );
    let config = Config::parse(&toml, Path::new("<bounds test>")).expect("valid test config");
    let listeners = Listeners::bind(&config).await.expect("bind");
    let (plain, tls, own) = (
        listeners.addr("server.listen").unwrap(),
        listeners.addr("server.tls.listen").unwrap(),
        listeners.addr("tenants[0] (own).listen").unwrap(),
    );
    let gateway = Gateway::new(config, Arc::new(NoopObserver)).expect("gateway");
    gateway.start_loading();
    for p in gateway.providers() {
        tokio::time::timeout(Duration::from_secs(10), p.wait_loaded(0)).await.expect("provider loaded");
    }
    let _stop = serve_in_background(&gateway, listeners);
    let connect_tls = move || {
        let config = trusting(&ca);
        tokio::spawn(async move {
            let name = ServerName::try_from("gw.example.com").unwrap();
            EmqxClient::connect_tls(tls, config, name, Version::V3).await.expect("TLS connection")
        })
    };
    let call = |c: EmqxClient| tokio::spawn(async move { c.valued(&authn("c", true, Version::V3)).await.unwrap() });
    let open = "exhook_gateway_connections ";
    let waited = limit_series("connections");
    assert_eq!(metric(&gateway, &waited), 0.0, "exists from the start");

    // Two connections, on two listeners: the limit is reached.
    let a = EmqxClient::connect(&format!("http://{plain}"), Version::V3).await.unwrap();
    assert_eq!(call(a.clone()).await.unwrap(), allowed());
    let b = connect_tls().await.unwrap();
    assert_eq!(call(b.clone()).await.unwrap(), allowed());
    assert_eq!(metric(&gateway, open), 2.0);

    // A third, on the tenant's own listener, waits (HTTP/2 connects: the kernel completed the
    // TCP handshake; the gateway holds it unserved).
    let c = EmqxClient::connect(&format!("http://{own}"), Version::V3).await.unwrap();
    let mut c_call = call(c.clone());
    wait_metric(&gateway, &waited, 1.0).await;
    still_waiting(&mut c_call, "a connection beyond max_connections").await;
    // A fourth, over TLS: its handshake waits too (a place is taken before the handshake).
    let mut d_connect = connect_tls();
    wait_metric(&gateway, &waited, 2.0).await;
    still_waiting(&mut d_connect, "a TLS connection beyond max_connections").await;
    assert_eq!(metric(&gateway, open), 2.0, "never more than max_connections open");

    // One closes: the first waiting one gets its place and its call is answered.
    drop(a);
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), c_call).await.expect("c admitted").unwrap(), allowed());
    still_waiting(&mut d_connect, "the TLS connection while the others are open").await;
    // Another closes: the TLS connection gets in.
    drop(b);
    let d = tokio::time::timeout(Duration::from_secs(10), d_connect).await.expect("d admitted").unwrap();
    assert_eq!(call(d).await.unwrap(), allowed());
    assert_eq!(metric(&gateway, open), 2.0);
    eprintln!(
        "BOUND connections: max_connections 2 over plaintext, TLS and a tenant listener; 2 waited (counted), each got in when one closed"
    );
}

/// A publish request whose encoding is exactly `size` bytes.
fn publish_of_size(size: usize, version: Version) -> Bytes {
    let mut request = publish("t/1", "", version);
    let base = request.encoded_len();
    let mut payload = size.saturating_sub(base + 8);
    loop {
        request.message.as_mut().unwrap().payload = vec![b'p'; payload].into();
        let len = request.encoded_len();
        if len >= size {
            assert_eq!(len, size, "no payload length gives exactly {size} bytes");
            return request.encode_to_vec().into();
        }
        payload += size - len;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_max_request_bytes_is_refused_before_any_provider() {
    const MAX: usize = 4 << 20; // the default
    let p = SimProvider::builder(Version::V3).hook("message.publish").start().await.unwrap();
    let gw = TestGateway::start(&provider("p", &p.url(), "v3", "2s", "deny")).await;
    for version in ALL_VERSIONS {
        let (emqx, _) = gw.loaded_emqx(version).await;
        let refused = emqx
            .call_raw::<ValuedResponse>(Hook::MessagePublish, publish_of_size(MAX + 1, version))
            .await
            .expect_err("one byte over the limit");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{version}: {refused:?}");
        assert!(refused.message().contains("server.max_request_bytes (4194304 bytes)"), "{}", refused.message());
        assert!(refused.message().contains(&(MAX + 1).to_string()), "{}", refused.message());
        // Exactly at the limit: served (the provider answers IGNORE).
        let ok = emqx.call_raw::<ValuedResponse>(Hook::MessagePublish, publish_of_size(MAX, version)).await;
        assert_eq!(ok.unwrap().r#type, ResponsedType::Ignore as i32, "{version}");
    }
    let seen = p.calls_of(Hook::MessagePublish);
    assert_eq!(seen.len(), 3, "only the requests within the limit reached the provider");
    assert!(seen.iter().all(|c| c.body.len() <= MAX));
    assert_eq!(metric(&gw.gateway, &limit_series("request_bytes")), 3.0);
    eprintln!("BOUND request_bytes: {} bytes refused RESOURCE_EXHAUSTED in v1, v2, v3; {MAX} bytes served", MAX + 1);
}
