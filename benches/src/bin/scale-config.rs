//! `scale-config`: issue 14 part 5, the configuration at scale — 100 providers × 50 tenants ×
//! 100,000 registered topic filters — measured in one run on this machine:
//!
//! 1. the generated configuration (main file with the shared providers + one `teams.d/*.toml`
//!    per tenant) loaded and validated in-process (`exhook_config::Config::load`): time and the
//!    heap the resolved configuration holds;
//! 2. where registered topic filters' memory goes (`Registration::from_response` for one
//!    provider's 1,000 filters, counted by this binary's allocator);
//! 3. the real gateway in front of 100 `exhook-bench-provider` providers (one process, 1,000
//!    filters each): time to `/readyz` 200 and to every provider loaded, RSS, the status API,
//!    reloads (`POST /api/v1/reload`, then the status API until the changed chain shows);
//! 4. per-call cost: `exhook-loadgen` against the big configuration and a small one (1
//!    provider, 1 tenant, the same measured tenant), alternating, authenticate and publish.
//!
//! ```text
//! cargo build --release -p exhook-gateway -p exhook-loadgen -p exhook-benches
//! target/release/scale-config            # ~1 min; report in target/bench-report/scale-config.txt
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use exhook_benches::procs::{Bins, Guard, ProviderProcess, free_port, log_tail, wait_tcp};
use exhook_hooks::{Hook, Version};
use exhook_loadgen::procstat;
use exhook_loadgen::run::per_10k;
use exhook_loadgen::{Answer, LoadResult, Mix, ProviderSpec};

/// Counts the bytes and blocks this process holds on the heap (requested sizes: malloc's own
/// per-block overhead, ~8–16 bytes, comes on top).
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator with the same arguments and only adds
// relaxed counter updates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `(bytes, blocks)` live on the heap now.
fn heap() -> (usize, usize) {
    (LIVE_BYTES.load(Ordering::Relaxed), LIVE_BLOCKS.load(Ordering::Relaxed))
}

/// Heap bytes and blocks `make`'s result holds (measured while it is alive).
fn held<T>(make: impl FnOnce() -> T) -> (T, usize, usize) {
    let (b0, n0) = heap();
    let value = make();
    let (b1, n1) = heap();
    (value, b1.saturating_sub(b0), n1.saturating_sub(n0))
}

#[derive(Parser, Debug)]
#[command(name = "scale-config", about = "The gateway with 100 providers x 50 tenants x 100,000 topic filters")]
struct Cli {
    /// Shared providers (the main file's; each tenant reaches two of them).
    #[arg(long, default_value_t = 10)]
    shared: usize,
    /// Tenants (one `teams.d/*.toml` each, with one or two own providers).
    #[arg(long, default_value_t = 50)]
    tenants: usize,
    /// Providers in all (shared + own; the first tenants get two own providers until this many).
    #[arg(long, default_value_t = 100)]
    providers: usize,
    /// Topic filters each provider registers for the `message.*` hooks.
    #[arg(long, default_value_t = 1000)]
    filters: usize,
    /// Rounds of the per-call comparison (odd rounds big first, even rounds small first).
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Measured window of each load run, in seconds.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Reloads after the two measured ones (POST only), for their cost and the RSS trend.
    #[arg(long, default_value_t = 20)]
    extra_reloads: u32,
    /// Where the report goes (default: <target dir>/bench-report/scale-config.txt).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the temp dir (configurations and logs).
    #[arg(long)]
    keep_temp: bool,
}

/// The generated configuration's shape.
#[derive(Debug, Clone)]
struct Shape {
    /// The main file's providers, reached by several tenants.
    shared: Vec<String>,
    /// Per tenant: its name, its cluster name and its own providers.
    tenants: Vec<(String, String, Vec<String>)>,
}

/// The tenant whose calls the load generator makes (`RequestMeta.cluster_name` "emqxcl"); its
/// authenticate and publish chains are its own first provider alone, in both configurations.
const MEASURED: &str = "t00";
/// The tenant whose chain the reload changes.
fn reload_tenant(shape: &Shape) -> &str {
    &shape.tenants.last().expect("at least one tenant").0
}

impl Shape {
    fn big(shared: usize, tenants: usize, providers: usize) -> Shape {
        let own_total = providers.saturating_sub(shared).max(tenants);
        let tenants = (0..tenants)
            .map(|t| {
                // Spread the own providers: the first `own_total % tenants` tenants get one more.
                let n = own_total / tenants + usize::from(t < own_total % tenants);
                let own = (0..n).map(|k| format!("t{t:02}-{}", (b'a' + k as u8) as char)).collect();
                let cluster = if t == 0 { "emqxcl".to_owned() } else { format!("emqx-t{t:02}") };
                (format!("t{t:02}"), cluster, own)
            })
            .collect();
        Shape { shared: (0..shared).map(|i| format!("shared-{i:02}")).collect(), tenants }
    }

    /// 1 provider, 1 tenant: the measured tenant alone.
    fn small() -> Shape {
        Shape {
            shared: Vec::new(),
            tenants: vec![(MEASURED.to_owned(), "emqxcl".to_owned(), vec!["t00-a".to_owned()])],
        }
    }

    fn provider_names(&self) -> Vec<String> {
        self.shared.iter().chain(self.tenants.iter().flat_map(|t| t.2.iter())).cloned().collect()
    }

    /// The two shared providers tenant `t` reaches.
    fn shared_of(&self, t: usize) -> Option<(&str, &str)> {
        let n = self.shared.len();
        (n > 0).then(|| (self.shared[t % n].as_str(), self.shared[(t + 1) % n].as_str()))
    }

    /// Tenant `t`'s chains (hook, members as TOML); `swapped`: the reload's change.
    fn chains(&self, t: usize, swapped: bool) -> Vec<(&'static str, String)> {
        let q = |n: &str| format!("\"{n}\"");
        let (name, _, own) = &self.tenants[t];
        let a = &own[0];
        let mut out = Vec::new();
        match self.shared_of(t) {
            _ if name == MEASURED => {
                out.push(("client.authenticate", q(a)));
                out.push(("message.publish", q(a)));
                if let Some((s1, _)) = self.shared_of(t) {
                    out.push(("client.authorize", format!("{}, {}", q(a), q(s1))));
                    out.push(("message.delivered", q(s1)));
                }
            }
            Some((s1, s2)) => {
                let auth = if swapped { format!("{}, {}", q(s1), q(a)) } else { format!("{}, {}", q(a), q(s1)) };
                out.push(("client.authenticate", auth));
                out.push(("client.authorize", format!("{}, {}", q(s1), q(a))));
                out.push(("message.publish", format!("{}, {{ name = \"{s2}\", mode = \"observe\" }}", q(a))));
                out.push(("message.delivered", q(s2)));
                if let Some(b) = own.get(1) {
                    out.push(("session.created", format!("{}, {}", q(b), q(s2))));
                }
            }
            None => out.push(("client.authenticate", q(a))),
        }
        out
    }

    /// The providers' specs for `exhook-bench-provider`: the measured tenant's first provider
    /// answers STOP_AND_RETURN and has one filter matching the workload's topics; every other
    /// provider answers CONTINUE; all register `filters` filters for the `message.*` hooks.
    fn specs(&self, filters: usize) -> Vec<ProviderSpec> {
        self.provider_names()
            .into_iter()
            .map(|n| {
                let measured = n == "t00-a";
                let mut s = ProviderSpec::new(&n, Version::V3, if measured { Answer::Stop } else { Answer::Continue });
                s.filters = filters;
                if measured {
                    s.matching = vec!["bench/raw/+".to_owned()];
                }
                s
            })
            .collect()
    }
}

fn provider_toml(name: &str, addr: SocketAddr) -> String {
    format!(
        "\n[[providers]]\nname = \"{name}\"\nurl = \"http://{addr}\"\nprotocol = \"v3\"\ntimeout = \"5s\"\nconnect_timeout = \"2s\"\nfailed_action = \"deny\"\n"
    )
}

/// Writes `dir/gateway.toml` (server, admin, the shared providers) and `dir/teams.d/tNN.toml`
/// (one team each); `swapped`: the reload tenant's authenticate chain reversed.
fn write_config(
    dir: &Path,
    shape: &Shape,
    listen: SocketAddr,
    admin: SocketAddr,
    addrs: &HashMap<String, SocketAddr>,
    swapped: bool,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("teams.d"))?;
    let mut main = format!(
        "# generated by exhook-benches scale-config\ninclude = [\"teams.d/*.toml\"]\n\n[server]\nlisten = \"{listen}\"\ndefault_deadline = \"10s\"\nunknown_cluster = \"reject\"\n\n[admin]\nlisten = \"{admin}\"\n"
    );
    for s in &shape.shared {
        main.push_str(&provider_toml(s, addrs[s]));
    }
    let path = dir.join("gateway.toml");
    std::fs::write(&path, main)?;
    for (t, (name, cluster, own)) in shape.tenants.iter().enumerate() {
        let mut team = format!("# team {name}\n");
        for p in own {
            team.push_str(&provider_toml(p, addrs[p]));
        }
        let mut reach: Vec<String> = own.iter().map(|p| format!("\"{p}\"")).collect();
        if let Some((s1, s2)) = shape.shared_of(t) {
            reach.push(format!("\"{s1}\""));
            reach.push(format!("\"{s2}\""));
        }
        let _ = write!(
            team,
            "\n[[tenants]]\nname = \"{name}\"\ncluster_names = [\"{cluster}\"]\nproviders = [{}]\n[tenants.chains]\n",
            reach.join(", ")
        );
        for (hook, members) in shape.chains(t, swapped && name == reload_tenant(shape)) {
            let _ = writeln!(team, "\"{hook}\" = [{members}]");
        }
        write_atomically(&dir.join("teams.d").join(format!("{name}.toml")), &team)?;
    }
    Ok(path)
}

/// Writes through a temporary file and a rename, as an editor or a ConfigMap swap would.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// One HTTP/1.0 request to the admin listener: `(status, body)`.
fn http(addr: SocketAddr, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).with_context(|| format!("{addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head.split_whitespace().nth(1).context("no status")?.parse()?;
    let body = &raw[split + 4..];
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body)? } else { body.to_vec() };
    Ok((status, String::from_utf8(body)?))
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol])?.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(eol + 2..eol + 2 + size).context("short chunk")?);
        b = b.get(eol + 4 + size..).unwrap_or_default();
    }
}

/// A running gateway and its admin address.
struct Gateway {
    guard: Guard,
    listen: SocketAddr,
    admin: SocketAddr,
    /// Start → EMQX listener accepting; → `/readyz` 200; → every provider up.
    accepting: Duration,
    ready: Duration,
    all_loaded: Duration,
}

fn start_gateway(
    bin: &Path,
    config: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    providers: usize,
    log: &Path,
) -> anyhow::Result<Gateway> {
    let t0 = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.arg("run").arg("--config").arg(config).env("RUST_LOG", "warn");
    let mut guard = Guard::spawn("exhook-gateway", &mut cmd, log, false)?;
    wait_tcp(listen, 1500, &mut guard)?;
    let accepting = t0.elapsed();
    let deadline = t0 + Duration::from_secs(60);
    let ready = loop {
        guard.check_alive()?;
        if let Ok((200, _)) = http(admin, "GET", "/readyz") {
            break t0.elapsed();
        }
        ensure!(Instant::now() < deadline, "gateway not ready in 60 s; log:\n{}", log_tail(log, 15));
        std::thread::sleep(Duration::from_millis(10));
    };
    let all_loaded = loop {
        guard.check_alive()?;
        let (_, metrics) = http(admin, "GET", "/metrics")?;
        let up = metrics
            .lines()
            .filter(|l| l.starts_with("exhook_gateway_provider_up{") && l.trim_end().ends_with(" 1"))
            .count();
        if up >= providers {
            break t0.elapsed();
        }
        ensure!(Instant::now() < deadline, "only {up}/{providers} providers up after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Gateway { guard, listen, admin, accepting, ready, all_loaded })
}

/// `(VmRSS, VmHWM)` in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let mib = |k: Option<u64>| k.unwrap_or(0) as f64 / 1024.0;
    (mib(procstat::rss_kib(pid)), mib(procstat::peak_rss_kib(pid)))
}

/// The status API once: `(time, bytes, JSON)`.
fn status(admin: SocketAddr) -> anyhow::Result<(Duration, usize, serde_json::Value)> {
    let t0 = Instant::now();
    let (code, body) = http(admin, "GET", "/api/v1/status")?;
    let took = t0.elapsed();
    ensure!(code == 200, "status API answered {code}: {body}");
    Ok((took, body.len(), serde_json::from_str(&body)?))
}

/// The providers of `tenant`'s chain for `hook` in the status JSON.
fn chain_in_status(v: &serde_json::Value, tenant: &str, hook: &str) -> Option<Vec<String>> {
    let t = v.get("tenants")?.as_array()?.iter().find(|t| t.get("name").and_then(|n| n.as_str()) == Some(tenant))?;
    let c = t.get("chains")?.as_array()?.iter().find(|c| c.get("hook").and_then(|h| h.as_str()) == Some(hook))?;
    Some(c.get("providers")?.as_array()?.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect())
}

/// Rewrites the configuration (`swapped`: the reload tenant's chain reversed) and reloads it
/// with `POST /api/v1/reload`: the time until the 200 answer (checked: reloaded, every provider
/// kept).
fn post_reload(
    gw: &Gateway,
    dir: &Path,
    shape: &Shape,
    addrs: &HashMap<String, SocketAddr>,
    swapped: bool,
) -> anyhow::Result<Duration> {
    write_config(dir, shape, gw.listen, gw.admin, addrs, swapped)?;
    let t0 = Instant::now();
    let (code, body) = http(gw.admin, "POST", "/api/v1/reload")?;
    let answered = t0.elapsed();
    ensure!(code == 200, "reload answered {code}: {body}");
    let report: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(report["reloaded"] == true, "reload refused: {body}");
    let kept = report["kept"].as_array().map_or(0, Vec::len);
    ensure!(kept == shape.provider_names().len(), "reload kept {kept} providers: {body}");
    Ok(answered)
}

/// One reload: `(POST answered, changed chain visible in the status API, status polls)`.
fn reload(
    gw: &Gateway,
    dir: &Path,
    shape: &Shape,
    addrs: &HashMap<String, SocketAddr>,
    swapped: bool,
) -> anyhow::Result<(Duration, Duration, u32)> {
    let tenant = reload_tenant(shape).to_owned();
    let t = shape.tenants.len() - 1;
    let want: Vec<String> = shape.chains(t, swapped)[0].1.split(", ").map(|s| s.trim_matches('"').to_owned()).collect();
    let t0 = Instant::now();
    let answered = post_reload(gw, dir, shape, addrs, swapped)?;
    let mut polls = 0;
    loop {
        polls += 1;
        let (_, _, v) = status(gw.admin)?;
        if chain_in_status(&v, &tenant, "client.authenticate").as_deref() == Some(&want[..]) {
            return Ok((answered, t0.elapsed(), polls));
        }
        ensure!(t0.elapsed() < Duration::from_secs(10), "changed chain not visible after 10 s");
    }
}

/// One `exhook-loadgen` run against `gw` (8 connections × 16 in flight).
fn load(bins: &Bins, gw: &Gateway, mix: Mix, seconds: f64, log: &Path) -> anyhow::Result<LoadResult> {
    let mut cmd = Command::new(&bins.loadgen);
    cmd.arg("--json")
        .args(["--package", "v3", "--mix", &mix.to_string(), "--connections", "8", "--inflight", "16"])
        .args(["--duration", &format!("{}ms", (seconds * 1000.0) as u64), "--warmup", "500ms"])
        .args(["--watch", &format!("middle={}", gw.guard.pid())])
        .args(["--target", &format!("http://{}", gw.listen)]);
    let mut lg = Guard::spawn("exhook-loadgen", &mut cmd, log, true)?;
    let mut stdout = lg.child_mut().stdout.take().context("loadgen stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let status = lg.wait_exit(Duration::from_secs_f64(seconds) + Duration::from_secs(60))?;
    let out = reader.join().unwrap_or_default();
    ensure!(status.success(), "exhook-loadgen failed ({status}):\n{}", log_tail(log, 10));
    let r: LoadResult = serde_json::from_str(out.trim()).context("parsing exhook-loadgen's JSON")?;
    ensure!(r.errors + r.warmup_errors == 0, "{} errors: {}", r.errors + r.warmup_errors, r.error_samples.join("; "));
    let a = &r.answers;
    ensure!(
        r.calls > 0 && a.stop == a.continued + a.ignore + a.stop + a.other,
        "expected STOP_AND_RETURN for every call: {a:?}"
    );
    Ok(r)
}

/// One measured load run's numbers.
#[derive(Debug, Clone, Copy)]
struct Point {
    calls_s: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_10k: f64,
    /// The same without the gateway's idle background CPU (measured with no calls).
    net_10k: f64,
    /// Cores busy with other processes during the window (other agents on the machine).
    other: f64,
}

impl Point {
    fn of(r: &LoadResult, idle_cores: f64) -> Point {
        let cpu = r.watched.iter().find(|w| w.name == "middle").map_or(0.0, |w| w.cpu_seconds);
        Point {
            calls_s: r.throughput,
            p50_us: r.latency.p50_us,
            p99_us: r.latency.p99_us,
            cpu_10k: per_10k(cpu, r.calls),
            net_10k: per_10k((cpu - idle_cores * r.seconds).max(0.0), r.calls),
            other: r.other_load_cores,
        }
    }

    fn mean(points: &[Point]) -> Point {
        let n = points.len().max(1) as f64;
        let avg = |f: fn(&Point) -> f64| points.iter().map(f).sum::<f64>() / n;
        Point {
            calls_s: avg(|p| p.calls_s),
            p50_us: avg(|p| p.p50_us),
            p99_us: avg(|p| p.p99_us),
            cpu_10k: avg(|p| p.cpu_10k),
            net_10k: avg(|p| p.net_10k),
            other: avg(|p| p.other),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let started = Instant::now();
    let cli = Cli::parse();
    let bins = Bins::locate()?;
    let tmp = std::env::temp_dir().join(format!("exhook-scale-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let big = Shape::big(cli.shared, cli.tenants, cli.providers);
    let small = Shape::small();
    let names = big.provider_names();
    let mut r = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        r,
        "exhook-gateway configuration at scale (issue 14 part 5): {} providers ({} shared) x {} tenants x {} topic filters registered ({} per provider, for each of the 4 message.* hooks); {cores} cores; temp {}",
        names.len(),
        big.shared.len(),
        big.tenants.len(),
        names.len() * cli.filters,
        cli.filters,
        tmp.display()
    );
    eprintln!("{r}");

    // The providers: one process, one listener each.
    let specs: Vec<String> = big.specs(cli.filters).iter().map(ToString::to_string).collect();
    let t0 = Instant::now();
    let providers = ProviderProcess::start(&bins.provider, &specs, None, None, &tmp.join("providers.log"))?;
    let providers_up = t0.elapsed();
    let addrs: HashMap<String, SocketAddr> = providers.addrs.iter().cloned().collect();
    ensure!(addrs.len() == names.len(), "{} providers listening, expected {}", addrs.len(), names.len());

    // 1. The configuration, loaded and validated in-process.
    let (big_listen, big_admin) =
        (SocketAddr::from(([127, 0, 0, 1], free_port()?)), SocketAddr::from(([127, 0, 0, 1], free_port()?)));
    let (small_listen, small_admin) =
        (SocketAddr::from(([127, 0, 0, 1], free_port()?)), SocketAddr::from(([127, 0, 0, 1], free_port()?)));
    let big_dir = tmp.join("big");
    let small_dir = tmp.join("small");
    let big_conf = write_config(&big_dir, &big, big_listen, big_admin, &addrs, false)?;
    let small_conf = write_config(&small_dir, &small, small_listen, small_admin, &addrs, false)?;
    let file_bytes: u64 = std::fs::read_dir(big_dir.join("teams.d"))?
        .flatten()
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum::<u64>()
        + std::fs::metadata(&big_conf)?.len();
    let mut reads = Vec::new();
    let mut resolves = Vec::new();
    let mut totals = Vec::new();
    let mut config_heap = (0, 0);
    let mut metrics_heap = (0, 0, 0, 0, 0, 0);
    for i in 0..7 {
        let t0 = Instant::now();
        let sources = exhook_config::Sources::read(&big_conf).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t1 = Instant::now();
        let (resolved, bytes, blocks) =
            held(|| exhook_config::Config::from_sources(&sources).map_err(|e| anyhow::anyhow!("{e}")));
        let (config, _origins) = resolved?;
        let t2 = Instant::now();
        ensure!(config.providers.len() == names.len() && config.tenants.len() == big.tenants.len() + 1); // + default
        if i == 0 {
            config_heap = (bytes, blocks);
            // The metric handles a runtime of this configuration builds (at start and on every
            // reload), as `build_runtime` in crates/server does.
            let (metrics, new_bytes, _) = held(exhook_metrics::Metrics::new);
            let tenants: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
            let providers: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
            let (handles, handles_bytes, handles_blocks) = held(|| metrics.handles(&tenants, &providers));
            let ((), chains_bytes, chains_blocks) = held(|| {
                for (t, tenant) in config.tenants.iter().enumerate() {
                    for hook in tenant.explicit.iter() {
                        let valued = hook.kind() == exhook_hooks::HookKind::Valued;
                        handles.declare_chain(t, hook, tenant.chain(hook), valued);
                    }
                }
            });
            let series = metrics.encode().lines().filter(|l| !l.starts_with('#')).count();
            metrics_heap = (new_bytes, handles_bytes, handles_blocks, chains_bytes, chains_blocks, series);
        }
        drop(sources);
        reads.push(t1 - t0);
        resolves.push(t2 - t1);
        totals.push(t2 - t0);
    }
    let small_heap = {
        let sources = exhook_config::Sources::read(&small_conf).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (c, bytes, blocks) = held(|| exhook_config::Config::from_sources(&sources));
        drop(c);
        (bytes, blocks)
    };
    let _ = writeln!(
        r,
        "\n1. configuration: {} files, {:.0} KiB of TOML\n   load + validate (Config::load: read every file, parse, resolve), median of 7: {:.2} ms (read {:.2} ms, parse + resolve {:.2} ms; first run {:.2} ms)\n   resolved Config on the heap: {:.0} KiB in {} blocks (small configuration: {:.1} KiB in {} blocks)
   its metrics, as a runtime of it builds them (at start and again on every reload; crates/server build_runtime): Metrics::new {:.0} KiB; Metrics::handles (dense slot tables + per-provider series) {:.1} MiB in {} blocks; declare_chain for every explicit chain {:.1} MiB in {} blocks; {} series at 0 in /metrics",
        big.tenants.len() + 1,
        file_bytes as f64 / 1024.0,
        ms(median(totals.clone())),
        ms(median(reads)),
        ms(median(resolves)),
        ms(totals[0]),
        config_heap.0 as f64 / 1024.0,
        config_heap.1,
        small_heap.0 as f64 / 1024.0,
        small_heap.1,
        metrics_heap.0 as f64 / 1024.0,
        metrics_heap.1 as f64 / (1024.0 * 1024.0),
        metrics_heap.2,
        metrics_heap.3 as f64 / (1024.0 * 1024.0),
        metrics_heap.4,
        metrics_heap.5,
    );

    // 2. Where one provider's registered filters go.
    let filters = big.specs(cli.filters)[0].topic_filters();
    let response = exhook_proto::model::LoadedResponse {
        hooks: Hook::hookpoints()
            .filter_map(|h| {
                Some(exhook_proto::model::HookSpec {
                    name: h.hookpoint(Version::V3)?.to_owned(),
                    topics: if h.is_message_hook() { filters.clone() } else { Vec::new() },
                })
            })
            .collect(),
    };
    let message_hooks = response.hooks.iter().filter(|h| !h.topics.is_empty()).count();
    let (_strings, str_bytes, str_blocks) = held(|| filters.clone());
    let (_set, set_bytes, set_blocks) = held(|| exhook_topic::FilterSet::from_filters(&filters));
    let (_reg, reg_bytes, reg_blocks) = held(|| exhook_upstream::Registration::from_response(Version::V3, &response));
    let per_filter = |b: usize| b as f64 / cli.filters as f64;
    let _ = writeln!(
        r,
        "\n2. one provider's registration ({} filters for each of {message_hooks} message.* hooks), heap held:\n   the filter strings alone: {:.0} KiB ({:.0} B/filter, {} blocks)\n   one FilterSet (trie + strings): {:.0} KiB ({:.0} B/filter, {} blocks)\n   Registration::from_response: {:.0} KiB ({:.0} B/filter registered, {} blocks) -> x{} providers = {:.1} MiB
   (one FilterSet per message.* hook although all {message_hooks} lists are the same: one shared set would hold {:.0} KiB, x{} providers = {:.1} MiB)",
        cli.filters,
        str_bytes as f64 / 1024.0,
        per_filter(str_bytes),
        str_blocks,
        set_bytes as f64 / 1024.0,
        per_filter(set_bytes),
        set_blocks,
        reg_bytes as f64 / 1024.0,
        per_filter(reg_bytes),
        reg_blocks,
        names.len(),
        (reg_bytes * names.len()) as f64 / (1024.0 * 1024.0),
        set_bytes as f64 / 1024.0,
        names.len(),
        (set_bytes * names.len()) as f64 / (1024.0 * 1024.0),
    );

    // 3. The gateway: start, ready, memory, status API, reload.
    let mut gw_big =
        start_gateway(&bins.gateway, &big_conf, big_listen, big_admin, names.len(), &tmp.join("gateway-big.log"))?;
    std::thread::sleep(Duration::from_millis(500));
    let big_rss_loaded = rss_mib(gw_big.guard.pid());
    let gw_small =
        start_gateway(&bins.gateway, &small_conf, small_listen, small_admin, 1, &tmp.join("gateway-small.log"))?;
    std::thread::sleep(Duration::from_millis(500));
    let small_rss_loaded = rss_mib(gw_small.guard.pid());
    let (status_time, status_bytes, status_json) = status(gw_big.admin)?;
    let topics: usize = status_json["providers"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["topics"].as_object())
                .flat_map(|t| t.values())
                .filter_map(|v| v.as_array())
                .map(Vec::len)
                .sum()
        })
        .unwrap_or(0);
    let loaded =
        status_json["providers"].as_array().map_or(0, |ps| ps.iter().filter(|p| p["state"] == "loaded").count());
    ensure!(loaded == names.len(), "status API: {loaded}/{} providers loaded", names.len());
    drop(status_json);
    let big_rss_status = rss_mib(gw_big.guard.pid());
    let provider_rss = rss_mib(providers.guard.pid());
    let _ = writeln!(
        r,
        "\n3. the gateway (release build, default worker threads) in front of {} providers in one exhook-bench-provider process (listening {:.0} ms after start, RSS {:.0} MiB)\n                                   big config      small config (1 provider, 1 tenant)\n   EMQX listener accepting       {:>8.0} ms     {:>8.0} ms\n   /readyz 200                   {:>8.0} ms     {:>8.0} ms\n   every provider loaded (up)    {:>8.0} ms     {:>8.0} ms\n   RSS when loaded (VmRSS)       {:>8.1} MiB    {:>8.1} MiB   -> {:.1} MiB more, {:.0} B per registered filter (x4 hooks: {:.0} B per filter and hook)\n   peak RSS so far (VmHWM)       {:>8.1} MiB    {:>8.1} MiB",
        names.len(),
        ms(providers_up),
        provider_rss.0,
        ms(gw_big.accepting),
        ms(gw_small.accepting),
        ms(gw_big.ready),
        ms(gw_small.ready),
        ms(gw_big.all_loaded),
        ms(gw_small.all_loaded),
        big_rss_loaded.0,
        small_rss_loaded.0,
        big_rss_loaded.0 - small_rss_loaded.0,
        (big_rss_loaded.0 - small_rss_loaded.0) * 1024.0 * 1024.0 / (names.len() * cli.filters) as f64,
        (big_rss_loaded.0 - small_rss_loaded.0) * 1024.0 * 1024.0 / (names.len() * cli.filters * message_hooks) as f64,
        big_rss_loaded.1,
        small_rss_loaded.1,
    );
    let _ = writeln!(
        r,
        "   status API (GET /api/v1/status): {:.0} ms, {:.1} MiB of JSON ({topics} topic filters listed); RSS after it {:.1} MiB (peak {:.1} MiB)",
        ms(status_time),
        status_bytes as f64 / (1024.0 * 1024.0),
        big_rss_status.0,
        big_rss_status.1,
    );
    let mut reloads = Vec::new();
    for swapped in [true, false] {
        let (answered, visible, polls) = reload(&gw_big, &big_dir, &big, &addrs, swapped)?;
        reloads.push((answered, visible));
        let _ = writeln!(
            r,
            "   reload {} ({}'s client.authenticate chain {}): POST /api/v1/reload answered 200 in {:.0} ms (all {} providers kept); new chain in the status API after {:.0} ms ({polls} status read(s))",
            reloads.len(),
            reload_tenant(&big),
            if swapped { "reversed" } else { "restored" },
            ms(answered),
            names.len(),
            ms(visible),
        );
    }
    let big_rss_reloaded = rss_mib(gw_big.guard.pid());
    let _ = writeln!(r, "   RSS after the reloads: {:.1} MiB (peak {:.1} MiB)", big_rss_reloaded.0, big_rss_reloaded.1);
    // More reloads without status reads: their cost, and whether memory grows with them.
    let mut posts = Vec::new();
    let mut rss_trend = Vec::new();
    for i in 0..cli.extra_reloads {
        posts.push(post_reload(&gw_big, &big_dir, &big, &addrs, i % 2 == 0)?);
        if (i + 1) % 5 == 0 {
            std::thread::sleep(Duration::from_millis(100));
            rss_trend.push(format!("{:.0}", rss_mib(gw_big.guard.pid()).0));
        }
    }
    if !posts.is_empty() {
        let worst = posts.iter().max().copied().unwrap_or_default();
        let _ = writeln!(
            r,
            "   {} more reloads (POST only, chain alternating): median {:.1} ms, slowest {:.1} ms; RSS every 5 reloads: {} MiB",
            posts.len(),
            ms(median(posts.clone())),
            ms(worst),
            rss_trend.join(", ")
        );
    }
    // Background CPU with no calls (health checks, the admin plane's samplers): the part of a
    // per-call difference that is not per call. The admin plane samples every 2 s: 6 s windows.
    let idle = |pid: u32, secs: u64| -> f64 {
        let a = procstat::cpu_seconds(pid).unwrap_or(0.0);
        std::thread::sleep(Duration::from_secs(secs));
        (procstat::cpu_seconds(pid).unwrap_or(0.0) - a) / secs as f64
    };
    let (idle_big, idle_small) = (idle(gw_big.guard.pid(), 6), idle(gw_small.guard.pid(), 2));
    let _ = writeln!(
        r,
        "   idle CPU (no calls; big over 6 s, small over 2 s): big {:.1} ms/s, small {:.1} ms/s of one core",
        idle_big * 1000.0,
        idle_small * 1000.0
    );
    eprint!("{r}");

    // 4. Per-call cost, big against small, alternating.
    let mut points: HashMap<(String, bool), Vec<Point>> = HashMap::new();
    let mut lines = String::new();
    for round in 1..=cli.rounds {
        for mix in [Mix::Auth, Mix::Publish] {
            let order = if round % 2 == 1 { [true, false] } else { [false, true] };
            for is_big in order {
                let gw = if is_big { &gw_big } else { &gw_small };
                let tag = format!("r{round}-{mix}-{}", if is_big { "big" } else { "small" });
                let res = load(&bins, gw, mix, cli.seconds, &tmp.join(format!("loadgen-{tag}.log")))
                    .with_context(|| format!("load run {tag}"))?;
                let p = Point::of(&res, if is_big { idle_big } else { idle_small });
                let line = format!(
                    "   [round {round}] {:<8} {:<5} {:>8.0} calls/s  p50 {:>7.1} µs  p99 {:>7.1} µs  gateway CPU {:.3} s per 10k calls  (other load {:.2} cores)",
                    mix.to_string(),
                    if is_big { "big" } else { "small" },
                    p.calls_s,
                    p.p50_us,
                    p.p99_us,
                    p.cpu_10k,
                    p.other
                );
                eprintln!("{line}");
                let _ = writeln!(lines, "{line}");
                points.entry((mix.to_string(), is_big)).or_default().push(p);
            }
        }
    }
    let mut goal_percall = true;
    let _ = writeln!(
        r,
        "\n4. per-call cost: exhook-loadgen (v3, 8 connections x 16 in flight, {:.1} s + 0.5 s warm-up per run) as tenant {MEASURED} (cluster emqxcl, chain = its own provider, STOP_AND_RETURN; publish topic matches 1 of its {} filters); big and small gateways alternate\n{lines}   mean over {} rounds       calls/s (big/small)        p50 µs (big/small)       gateway CPU s/10k calls (big/small)    same without idle background (big/small)    other load, cores (big/small)",
        cli.seconds, cli.filters, cli.rounds
    );
    for mix in [Mix::Auth, Mix::Publish] {
        let b = Point::mean(&points[&(mix.to_string(), true)]);
        let s = Point::mean(&points[&(mix.to_string(), false)]);
        let cpu_ratio = b.cpu_10k / s.cpu_10k;
        goal_percall &= cpu_ratio <= 1.10;
        let _ = writeln!(
            r,
            "   {:<8}            {:>7.0} / {:>7.0} = {:.3}    {:>6.1} / {:>6.1} = {:.3}    {:.3} / {:.3} = {:.3}    {:.3} / {:.3} = {:.3}    {:.2} / {:.2}",
            mix.to_string(),
            b.calls_s,
            s.calls_s,
            b.calls_s / s.calls_s,
            b.p50_us,
            s.p50_us,
            b.p50_us / s.p50_us,
            b.cpu_10k,
            s.cpu_10k,
            cpu_ratio,
            b.net_10k,
            s.net_10k,
            b.net_10k / s.net_10k,
            b.other,
            s.other
        );
    }
    let after_load = rss_mib(gw_big.guard.pid());
    let _ =
        writeln!(r, "   big gateway RSS after the load runs: {:.1} MiB (peak {:.1} MiB)", after_load.0, after_load.1);
    gw_big.guard.check_alive()?;

    let worst_reload = reloads.iter().map(|(_, v)| *v).max().unwrap_or_default();
    let goal_reload = worst_reload < Duration::from_secs(1);
    let _ = writeln!(
        r,
        "\ngoals: reload under 1 s: {} (slowest: {:.0} ms until the new chain showed); per-call cost within 10 % of the small configuration (gateway CPU per call): {}\nrun took {:.1} s",
        if goal_reload { "MET" } else { "MISSED" },
        ms(worst_reload),
        if goal_percall { "MET" } else { "MISSED" },
        started.elapsed().as_secs_f64()
    );
    println!("{r}");
    let out = cli.out.clone().unwrap_or_else(|| {
        bins.profile_dir
            .parent()
            .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
            .join("bench-report")
            .join("scale-config.txt")
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &r).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("scale-config: wrote {}", out.display());
    drop(gw_small);
    drop(gw_big);
    drop(providers);
    if cli.keep_temp {
        eprintln!("scale-config: configurations and logs kept in {}", tmp.display());
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}
