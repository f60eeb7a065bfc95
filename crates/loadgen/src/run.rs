//! The load loop: connections, in-flight calls, closed or open loop, HDR histograms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use exhook_hooks::Version;
use exhook_proto::codec::RawCodec;
use exhook_proto::model::{EmptySuccess, LoadedResponse, ValuedResponse};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::client::Grpc;
use tonic::transport::{Channel, Endpoint};

use crate::procstat::{ProcUsage, TreeSample};
use crate::workload::{Mix, Op, Workload};

/// How to load a target.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http://host:port` of each target. With several, every operation calls them one after
    /// another (each on its own connections) and its latency is the whole sequence's.
    pub targets: Vec<String>,
    /// The package spoken.
    pub version: Version,
    /// The hooks called.
    pub mix: Mix,
    /// HTTP/2 connections per target.
    pub connections: usize,
    /// Calls in flight per connection.
    pub inflight: usize,
    /// The measured window.
    pub duration: Duration,
    /// Load before the window, not measured.
    pub warmup: Duration,
    /// Open loop: operations per second over all connections (`None`: closed loop, each
    /// in-flight slot sends its next call as soon as the previous one is answered).
    pub rate: Option<f64>,
    /// Per call, also sent as `grpc-timeout` (EMQX's `request_timeout`).
    pub timeout: Duration,
    /// Distinct virtual clients (clientids) cycled through.
    pub clients: usize,
    /// Bytes of each publish's payload (`None`: a small JSON reading).
    pub payload_bytes: Option<usize>,
    /// Processes (trees) whose CPU and peak RSS are reported: `(name, pid)`.
    pub watch: Vec<(String, u32)>,
    /// Call `OnProviderLoaded` on every target first, as EMQX does (a gateway then loads its
    /// providers before answering).
    pub load_first: bool,
    /// Bounded attempts to connect (and to load), 20 ms apart.
    pub attempts: u32,
    /// For `https://` targets: the CA their certificates chain to (EMQX's `ssl.cacertfile`).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            targets: Vec::new(),
            version: Version::V3,
            mix: Mix::Auth,
            connections: 1,
            inflight: 1,
            duration: Duration::from_secs(3),
            warmup: Duration::from_millis(500),
            rate: None,
            timeout: Duration::from_secs(5),
            clients: 1024,
            payload_bytes: None,
            watch: Vec::new(),
            load_first: true,
            attempts: 250,
            ca_file: None,
        }
    }
}

/// Latency percentiles of the measured window, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Calls recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
}

impl Latency {
    /// Percentiles of a histogram of nanoseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// How the valued calls were answered (the last target's answer, for several targets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answers {
    /// `CONTINUE`.
    #[serde(rename = "continue")]
    pub continued: u64,
    /// `IGNORE`.
    pub ignore: u64,
    /// `STOP_AND_RETURN`.
    pub stop: u64,
    /// Anything else.
    pub other: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    /// The targets.
    pub targets: Vec<String>,
    /// The package.
    pub package: String,
    /// The hook mix.
    pub mix: String,
    /// Connections per target.
    pub connections: usize,
    /// In flight per connection.
    pub inflight: usize,
    /// Open-loop rate, if any.
    pub rate: Option<f64>,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Operations completed without error that started in the window.
    pub calls: u64,
    /// Operations started in the window that failed.
    pub errors: u64,
    /// Operations that failed during the warm-up.
    pub warmup_errors: u64,
    /// Every operation sent, warm-up included.
    pub total_calls: u64,
    /// A few distinct error messages.
    pub error_samples: Vec<String>,
    /// `calls / seconds`.
    pub throughput: f64,
    /// Latency of every recorded operation (open loop: from its intended start, so a stall
    /// counts against every call it delayed).
    pub latency: Latency,
    /// Latency per hook (session mix).
    pub per_hook: BTreeMap<String, Latency>,
    /// Answers of the valued calls.
    pub answers: Answers,
    /// Watched processes during the window.
    pub watched: Vec<ProcUsage>,
    /// The load generator itself during the window.
    pub loadgen: ProcUsage,
    /// CPU seconds the whole machine was busy during the window (all processes).
    pub machine_cpu_seconds: f64,
    /// Cores' worth of CPU used during the window by processes neither watched nor the load
    /// generator (other work on a shared machine: it skews the comparison).
    pub other_load_cores: f64,
}

impl LoadResult {
    /// One human-readable paragraph.
    pub fn summary(&self) -> String {
        let l = &self.latency;
        let mut s = format!(
            "{} {} via {} ({}x{}{}): {:.0} calls/s, {} calls, {} errors ({} in warm-up)\n  latency µs: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}\n  answers: continue {} ignore {} stop {} other {}\n",
            self.mix,
            self.package,
            self.targets.join(" -> "),
            self.connections,
            self.inflight,
            self.rate.map(|r| format!(", open loop {r:.0}/s")).unwrap_or_default(),
            self.throughput,
            self.calls,
            self.errors,
            self.warmup_errors,
            l.p50_us,
            l.p90_us,
            l.p99_us,
            l.p999_us,
            l.max_us,
            l.mean_us,
            self.answers.continued,
            self.answers.ignore,
            self.answers.stop,
            self.answers.other
        );
        for (hook, l) in &self.per_hook {
            s.push_str(&format!("    {hook:<22} p50 {:>8.1}  p99 {:>8.1}  ({} calls)\n", l.p50_us, l.p99_us, l.count));
        }
        for w in self.watched.iter().chain(std::iter::once(&self.loadgen)) {
            s.push_str(&format!(
                "  {} (pid {}, {} processes): {:.3} CPU s, {:.3} s per 10k calls, peak RSS {:.1} MiB\n",
                w.name,
                w.pid,
                w.processes,
                w.cpu_seconds,
                per_10k(w.cpu_seconds, self.calls),
                w.peak_rss_kib as f64 / 1024.0
            ));
        }
        s.push_str(&format!(
            "  machine: {:.3} CPU s busy in the window; other processes: {:.2} cores\n",
            self.machine_cpu_seconds, self.other_load_cores
        ));
        for e in &self.error_samples {
            s.push_str(&format!("  error: {e}\n"));
        }
        s
    }
}

/// CPU seconds per 10,000 calls.
pub fn per_10k(cpu_seconds: f64, calls: u64) -> f64 {
    if calls == 0 { 0.0 } else { cpu_seconds * 10_000.0 / calls as f64 }
}

type Tls = (Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>);

/// An HTTP/2 connection to `url`; over TLS (as EMQX with an `ssl` block) for `https://`.
async fn connect(url: &str, attempts: u32, ca_file: Option<&std::path::Path>) -> anyhow::Result<Channel> {
    let uri: http::Uri = url.parse().with_context(|| format!("bad target url {url:?}"))?;
    let authority = uri.authority().map(|a| a.as_str().to_owned()).unwrap_or_default();
    let tls: Option<Tls> = if uri.scheme_str() == Some("https") {
        let files = exhook_tls::ClientFiles { ca_file: ca_file.map(Into::into), ..Default::default() };
        let config = exhook_tls::client_config(&files)?;
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        Some((Arc::new(config), rustls_pki_types::ServerName::try_from(host)?))
    } else {
        None
    };
    let tls = tls.as_ref();
    // The channel's own URL is only the :authority header; the connector makes the connection.
    let url = url.replacen("https://", "http://", 1);
    let endpoint = Endpoint::from_shared(url.clone())
        .with_context(|| format!("bad target url {url:?}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1));
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let connected = match tls {
            None => endpoint.connect().await,
            Some((config, name)) => {
                let (addr, connector) = (authority.clone(), tokio_rustls::TlsConnector::from(Arc::clone(config)));
                let name = name.clone();
                endpoint
                    .connect_with_connector(tower::service_fn(move |_| {
                        let (addr, connector, name) = (addr.clone(), connector.clone(), name.clone());
                        async move {
                            let tcp = tokio::net::TcpStream::connect(addr).await?;
                            tcp.set_nodelay(true)?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(connector.connect(name, tcp).await?))
                        }
                    }))
                    .await
            }
        };
        match connected {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(anyhow::anyhow!(
        "cannot connect to {url} after {attempts} attempts: {}",
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

async fn load(grpc: &mut Grpc<Channel>, version: Version, timeout: Duration, attempts: u32) -> anyhow::Result<usize> {
    let (path, body) = Workload::loaded_request(version);
    let mut last = None;
    for _ in 0..attempts.max(1) {
        let result = async {
            grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let mut request = tonic::Request::new(body.clone());
            request.set_timeout(timeout);
            grpc.unary(request, path.clone(), RawCodec::<LoadedResponse>::default()).await
        }
        .await;
        match result {
            Ok(r) => return Ok(r.into_inner().hooks.len()),
            // Not there yet (a proxy whose upstream is still connecting): try again.
            Err(e) if matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled) => {
                last = Some(e)
            }
            Err(e) => anyhow::bail!("OnProviderLoaded: {}: {}", e.code(), e.message()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = last.map_or_else(String::new, |e| format!("{}: {}", e.code(), e.message()));
    Err(anyhow::anyhow!("OnProviderLoaded failed {attempts} times; last: {last}"))
}

/// One call; `Some(type)` for a valued answer.
async fn call(grpc: &mut Grpc<Channel>, op: &Op, timeout: Duration) -> Result<Option<i32>, tonic::Status> {
    let fut = async {
        grpc.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(Bytes::clone(&op.body));
        request.set_timeout(timeout);
        if op.valued {
            let r = grpc.unary(request, op.path.clone(), RawCodec::<ValuedResponse>::default()).await?;
            Ok(Some(r.into_inner().r#type))
        } else {
            grpc.unary(request, op.path.clone(), RawCodec::<EmptySuccess>::default()).await?;
            Ok(None)
        }
    };
    match tokio::time::timeout(timeout + Duration::from_millis(100), fut).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!("no answer within {timeout:?}"))),
    }
}

fn histogram() -> Histogram<u64> {
    // Auto-resizing, 3 significant digits, nanoseconds.
    Histogram::new(3).expect("3 significant digits is valid")
}

/// Records (the histogram grows as needed; `saturating_record` alone would not grow it).
fn record(h: &mut Histogram<u64>, ns: u64) {
    if h.record(ns).is_err() {
        h.saturating_record(ns);
    }
}

#[derive(Clone, Copy)]
struct Timing {
    measure_from: Instant,
    end: Instant,
}

struct OpenLoop {
    start: Instant,
    rate: f64,
    next: AtomicU64,
}

#[derive(Default)]
struct WorkerOut {
    hist: Option<Histogram<u64>>,
    per_step: Vec<Histogram<u64>>,
    calls: u64,
    errors: u64,
    warmup_errors: u64,
    total: u64,
    samples: Vec<String>,
    answers: Answers,
}

async fn worker(
    id: usize,
    stride: usize,
    mut grpcs: Vec<Grpc<Channel>>,
    workload: Arc<Workload>,
    timing: Timing,
    open: Option<Arc<OpenLoop>>,
    timeout: Duration,
) -> WorkerOut {
    let steps = workload.clients[0].len();
    let mut out = WorkerOut {
        hist: Some(histogram()),
        per_step: if steps > 1 { (0..steps).map(|_| histogram()).collect() } else { Vec::new() },
        ..WorkerOut::default()
    };
    let hist = out.hist.as_mut().expect("set above");
    let n_clients = workload.clients.len();
    let (mut client, mut step) = (id % n_clients, 0usize);
    loop {
        let start = match &open {
            None => {
                let now = Instant::now();
                if now >= timing.end {
                    break;
                }
                now
            }
            Some(ol) => {
                let i = ol.next.fetch_add(1, Ordering::Relaxed);
                let intended = ol.start + Duration::from_secs_f64(i as f64 / ol.rate);
                if intended >= timing.end {
                    break;
                }
                let now = Instant::now();
                if intended > now {
                    // Idle until the slot: a late wake-up is the timer's, not the target's.
                    tokio::time::sleep_until(intended).await;
                    Instant::now()
                } else {
                    // Behind schedule: the delay counts (no coordinated omission).
                    intended
                }
            }
        };
        let op = &workload.clients[client][step];
        let mut answer = None;
        let mut failed = None;
        for grpc in grpcs.iter_mut() {
            match call(grpc, op, timeout).await {
                Ok(a) => answer = a,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let elapsed = start.elapsed();
        out.total += 1;
        let measured = start >= timing.measure_from;
        match failed {
            Some(e) => {
                if measured {
                    out.errors += 1;
                } else {
                    out.warmup_errors += 1;
                }
                if out.samples.len() < 3 {
                    let msg = format!("{}: {}: {}", op.hook, e.code(), e.message());
                    if !out.samples.contains(&msg) {
                        out.samples.push(msg);
                    }
                }
            }
            None if measured => {
                out.calls += 1;
                let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
                record(hist, ns);
                if let Some(h) = out.per_step.get_mut(step) {
                    record(h, ns);
                }
                match answer {
                    None => {}
                    Some(0) => out.answers.continued += 1,
                    Some(1) => out.answers.ignore += 1,
                    Some(2) => out.answers.stop += 1,
                    Some(_) => out.answers.other += 1,
                }
            }
            None => {}
        }
        step += 1;
        if step == steps {
            step = 0;
            client = (client + stride) % n_clients;
        }
    }
    out
}

/// Runs the load described by `config` and reports what it measured. Every phase is
/// bounded in time: connecting and loading by `attempts`, the load by `warmup + duration`
/// plus one call timeout.
pub async fn run(config: &LoadConfig) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(!config.targets.is_empty(), "no target");
    anyhow::ensure!(config.connections > 0 && config.inflight > 0, "connections and inflight must be > 0");
    if let Some(rate) = config.rate {
        anyhow::ensure!(rate.is_finite() && rate > 0.0, "rate must be > 0");
    }
    // Connections: per target, `connections` HTTP/2 connections.
    let mut channels: Vec<Vec<Channel>> = Vec::new();
    for url in &config.targets {
        let mut per = Vec::new();
        for _ in 0..config.connections {
            per.push(connect(url, config.attempts, config.ca_file.as_deref()).await?);
        }
        channels.push(per);
    }
    if config.load_first {
        for (url, per) in config.targets.iter().zip(&channels) {
            let mut grpc = Grpc::new(per[0].clone());
            load(&mut grpc, config.version, config.timeout, config.attempts)
                .await
                .with_context(|| format!("loading {url}"))?;
        }
    }
    let workload = Arc::new(Workload::with_payload(config.mix, config.version, config.clients, config.payload_bytes));
    let start = Instant::now();
    let timing = Timing { measure_from: start + config.warmup, end: start + config.warmup + config.duration };
    let open = config.rate.map(|rate| Arc::new(OpenLoop { start, rate, next: AtomicU64::new(0) }));
    let workers = config.connections * config.inflight;

    // CPU and memory of the watched processes over exactly the measured window.
    let watch = config.watch.clone();
    let sampler = tokio::spawn(async move {
        let me = std::process::id();
        let snap = move |watch: Vec<(String, u32)>| {
            tokio::task::spawn_blocking(move || {
                (
                    watch.iter().map(|(_, pid)| TreeSample::take(*pid)).collect::<Vec<_>>(),
                    TreeSample::take(me),
                    crate::procstat::machine_busy_seconds().unwrap_or(0.0),
                )
            })
        };
        tokio::time::sleep_until(timing.measure_from).await;
        let before = snap(watch.clone()).await.unwrap_or_default();
        tokio::time::sleep_until(timing.end).await;
        let after = snap(watch.clone()).await.unwrap_or_default();
        let watched = watch
            .iter()
            .zip(before.0.iter().zip(&after.0))
            .map(|((name, pid), (b, a))| ProcUsage::between(name, *pid, b, a))
            .collect::<Vec<_>>();
        (watched, ProcUsage::between("loadgen", me, &before.1, &after.1), (after.2 - before.2).max(0.0))
    });

    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let grpcs = channels.iter().map(|per| Grpc::new(per[w % per.len()].clone())).collect();
        tasks.push(tokio::spawn(worker(
            w,
            workers,
            grpcs,
            Arc::clone(&workload),
            timing,
            open.clone(),
            config.timeout,
        )));
    }
    let mut hist = histogram();
    let steps = workload.clients[0].len();
    let mut per_step: Vec<Histogram<u64>> = (0..steps).map(|_| histogram()).collect();
    let mut result = LoadResult {
        targets: config.targets.clone(),
        package: config.version.to_string(),
        mix: config.mix.to_string(),
        connections: config.connections,
        inflight: config.inflight,
        rate: config.rate,
        seconds: config.duration.as_secs_f64(),
        ..LoadResult::default()
    };
    let bound = config.warmup + config.duration + config.timeout + Duration::from_secs(5);
    let joined = tokio::time::timeout(bound, futures_join(tasks)).await.context("load did not stop in time")?;
    for out in joined {
        let out = out.context("worker panicked")?;
        if let Some(h) = &out.hist {
            hist.add(h).context("merging histograms")?;
        }
        for (acc, h) in per_step.iter_mut().zip(&out.per_step) {
            acc.add(h).context("merging histograms")?;
        }
        result.calls += out.calls;
        result.errors += out.errors;
        result.warmup_errors += out.warmup_errors;
        result.total_calls += out.total;
        result.answers.continued += out.answers.continued;
        result.answers.ignore += out.answers.ignore;
        result.answers.stop += out.answers.stop;
        result.answers.other += out.answers.other;
        for s in out.samples {
            if result.error_samples.len() < 5 && !result.error_samples.contains(&s) {
                result.error_samples.push(s);
            }
        }
    }
    result.throughput = result.calls as f64 / config.duration.as_secs_f64();
    result.latency = Latency::from_histogram(&hist);
    if steps > 1 {
        for (hook, h) in config.mix.hooks().iter().zip(&per_step) {
            result.per_hook.insert(hook.name().to_owned(), Latency::from_histogram(h));
        }
    }
    let (watched, me, machine) = sampler.await.context("sampler")?;
    let ours: f64 = watched.iter().map(|w| w.cpu_seconds).sum::<f64>() + me.cpu_seconds;
    result.machine_cpu_seconds = machine;
    result.other_load_cores = ((machine - ours) / config.duration.as_secs_f64()).max(0.0);
    result.watched = watched;
    result.loadgen = me;
    Ok(result)
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{Answer, BenchProvider, ProviderSpec};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_and_open_loop_against_a_bench_provider() {
        for (version, mix, answer) in [
            (Version::V3, Mix::Auth, Answer::Stop),
            (Version::V1, Mix::Session, Answer::Continue),
            (Version::V2, Mix::Publish, Answer::Rewrite),
        ] {
            let p = BenchProvider::start(ProviderSpec::new("p", version, answer)).await.unwrap();
            let config = LoadConfig {
                targets: vec![p.url()],
                version,
                mix,
                connections: 2,
                inflight: 2,
                duration: Duration::from_millis(300),
                warmup: Duration::from_millis(50),
                watch: vec![("self".into(), std::process::id())],
                ..LoadConfig::default()
            };
            let r = run(&config).await.unwrap();
            assert_eq!(r.errors + r.warmup_errors, 0, "{}", r.summary());
            assert!(r.calls > 10, "{}", r.summary());
            assert!(r.latency.p50_us > 1.0 && r.latency.p50_us <= r.latency.p99_us, "{}", r.summary());
            let valued = r.answers.continued + r.answers.stop;
            assert!(valued > 0, "{}", r.summary());
            assert_eq!(r.answers.ignore + r.answers.other, 0);
            assert_eq!(p.calls(), r.total_calls, "every call reached the provider");
            if mix == Mix::Session {
                assert_eq!(r.per_hook.len(), 7);
            }
            assert_eq!(r.watched.len(), 1);

            let open = run(&LoadConfig { rate: Some(2000.0), ..config }).await.unwrap();
            assert_eq!(open.errors, 0);
            // 300 ms at 2000/s: about 600 calls in the window.
            assert!((400..=700).contains(&open.calls), "{}", open.summary());
        }
    }
}
