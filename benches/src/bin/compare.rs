//! `compare`: EMQX → provider directly, through nginx, through haproxy and through the
//! gateway, measured side by side in one run (alternating rounds), on this machine.
//!
//! ```text
//! cargo build --release -p exhook-gateway -p exhook-loadgen -p exhook-benches
//! target/release/compare                 # 3 rounds × 3 s per scenario and shape
//! target/release/compare --smoke         # CI: every scenario ~1 s, fails on any error
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use exhook_benches::procs::{Bins, Guard, ProviderProcess, free_port, wait_tcp};
use exhook_benches::proxies::{self, Proxies};
use exhook_benches::report::{self, RunRecord};
use exhook_benches::scenarios::{self, Middle, Scenario, Shape};
use exhook_hooks::Version;
use exhook_loadgen::LoadResult;
use exhook_loadgen::provider::parse_duration;

#[derive(Parser, Debug)]
#[command(name = "compare", about = "The gateway against direct calls, nginx and haproxy, side by side")]
struct Cli {
    /// CI mode: 1 round, ~1 s per scenario and shape (debug builds are fine); exits non-zero
    /// if any scenario has errors or no throughput.
    #[arg(long)]
    smoke: bool,
    /// Rounds (every scenario once per round and shape, in order A, B, B', C, …).
    #[arg(long)]
    rounds: Option<u32>,
    /// Measured window per run.
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Unmeasured warm-up per run.
    #[arg(long, value_parser = duration)]
    warmup: Option<Duration>,
    /// Load shapes, comma-separated: throughput, latency.
    #[arg(long, value_delimiter = ',', default_values_t = [Shape::Throughput, Shape::Latency])]
    shapes: Vec<Shape>,
    /// Only these scenario ids, comma-separated (A, B, B', C, AT, CT, D0, D, E0, E, F0, F, F0~, F~, S0, S).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The package EMQX (the load generator) speaks.
    #[arg(long, default_value = "v3", value_parser = version)]
    package: Version,
    /// The package the providers speak.
    #[arg(long, default_value = "v3", value_parser = version)]
    provider_package: Version,
    /// Do not apt-get install missing proxies (their scenarios are skipped).
    #[arg(long)]
    no_install: bool,
    /// Where results go (default: <target dir>/bench-report).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tokio worker threads of the load generator (default: one per core).
    #[arg(long)]
    loadgen_threads: Option<usize>,
    /// Tokio worker threads of the provider process (default: one per core).
    #[arg(long)]
    provider_threads: Option<usize>,
    /// The gateway's `[server] worker_threads` (default: one per core)
    #[arg(long)]
    gateway_threads: Option<usize>,
    /// Issue 11's cost curves instead of the scenarios: payload bytes, EMQX connections, chain
    /// length, topic filters and provider connections, each point the gateway against the
    /// providers called directly (throughput shape only; report in curves.txt / curves.svg).
    #[arg(long)]
    curves: bool,
    /// Keep the temp dir (configs and logs) even when everything passed.
    #[arg(long)]
    keep_temp: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 500ms, 3s)"))
}

fn version(s: &str) -> Result<Version, String> {
    s.parse().map_err(|e: exhook_hooks::ParseVersionError| e.to_string())
}

struct Ctx {
    cli: Cli,
    bins: Bins,
    proxies: Proxies,
    tmp: PathBuf,
    duration: Duration,
    warmup: Duration,
}

/// Runs one scenario once: providers, the middle, the load generator; every process is
/// killed when this returns (guards), also on errors.
fn run_once(ctx: &Ctx, sc: &Scenario, shape: Shape, round: u32) -> anyhow::Result<(LoadResult, Option<u64>)> {
    let tag: String = format!("r{round}-{shape}-{}", sc.id)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { 'x' })
        .collect();
    let dir = ctx.tmp.join(tag);
    std::fs::create_dir_all(&dir)?;
    let specs: Vec<String> = sc.providers.iter().map(|p| p.to_string()).collect();
    // TLS scenarios: a fresh CA and one certificate for 127.0.0.1 (providers and gateway).
    let tls = sc.tls.then(|| {
        let ca = exhook_testpki::Ca::new("bench CA");
        let files = ca.issue(&exhook_testpki::Leaf::new(&["127.0.0.1"])).write(&dir, "server");
        scenarios::BenchTls { ca: ca.write(&dir, "ca"), cert: files.cert, key: files.key }
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut providers = ProviderProcess::start(
        &ctx.bins.provider,
        &specs,
        ctx.cli.provider_threads,
        tls.as_ref(),
        &dir.join("providers.log"),
    )?;
    let first = providers.addrs[0].1;
    let mut middle: Option<Guard> = None;
    let targets: Vec<String> = match sc.middle {
        Middle::Direct => providers.addrs.iter().map(|(_, a)| format!("{scheme}://{a}")).collect(),
        Middle::Nginx => {
            let (g, addr) = proxies::start_nginx(&ctx.proxies.nginx, &dir, first)?;
            middle = Some(g);
            vec![format!("http://{addr}")]
        }
        Middle::Haproxy => {
            let (g, addr) = proxies::start_haproxy(&ctx.proxies.haproxy, &dir, first)?;
            middle = Some(g);
            vec![format!("http://{addr}")]
        }
        Middle::Gateway => {
            let listen = ([127, 0, 0, 1], free_port()?).into();
            let conf = dir.join("gateway.toml");
            let admin = ([127, 0, 0, 1], free_port()?).into();
            std::fs::write(
                &conf,
                scenarios::gateway_toml(listen, admin, sc, &providers.addrs, ctx.cli.gateway_threads, tls.as_ref()),
            )?;
            let mut cmd = Command::new(&ctx.bins.gateway);
            cmd.arg("run").arg("--config").arg(&conf).env("RUST_LOG", "warn");
            let mut g = Guard::spawn("exhook-gateway", &mut cmd, &dir.join("gateway.log"), false)?;
            wait_tcp(listen, 250, &mut g)?;
            middle = Some(g);
            vec![format!("{scheme}://{listen}")]
        }
    };
    let (connections, inflight) = sc.load.unwrap_or(shape.load());
    let mut cmd = Command::new(&ctx.bins.loadgen);
    if let Some(n) = sc.clients {
        cmd.args(["--clients", &n.to_string()]);
    }
    if let Some(n) = sc.payload_bytes {
        cmd.args(["--payload-bytes", &n.to_string()]);
    }
    cmd.arg("--json")
        .args(["--package", ctx.cli.package.as_str()])
        .args(["--mix", &sc.mix.to_string()])
        .args(["--connections", &connections.to_string()])
        .args(["--inflight", &inflight.to_string()])
        .args(["--duration", &format!("{}us", ctx.duration.as_micros())])
        .args(["--warmup", &format!("{}us", ctx.warmup.as_micros())])
        .args(["--watch", &format!("provider={}", providers.guard.pid())]);
    if let Some(m) = &middle {
        cmd.args(["--watch", &format!("middle={}", m.pid())]);
    }
    if let Some(t) = ctx.cli.loadgen_threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    for t in &targets {
        cmd.args(["--target", t]);
    }
    if let Some(t) = &tls {
        cmd.arg("--ca-file").arg(&t.ca);
    }
    let log = dir.join("loadgen.log");
    let mut loadgen = Guard::spawn("exhook-loadgen", &mut cmd, &log, true)?;
    let mut stdout = loadgen.child_mut().stdout.take().context("loadgen stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let status = loadgen.wait_exit(ctx.warmup + ctx.duration + Duration::from_secs(60))?;
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        bail!("exhook-loadgen failed ({status}):\n{}", exhook_benches::procs::log_tail(loadgen.log(), 10));
    }
    let result: LoadResult = serde_json::from_str(out.trim()).context("parsing exhook-loadgen's JSON")?;
    if let Some(m) = middle.as_mut() {
        m.check_alive().context("the middle died during the run")?;
    }
    let provider_calls = providers.settled_total(Duration::from_secs(3)).ok();
    Ok((result, provider_calls))
}

/// What makes a finished run wrong.
fn judge(sc: &Scenario, r: &LoadResult) -> Option<String> {
    let mut problems = Vec::new();
    if r.errors + r.warmup_errors > 0 {
        problems.push(format!("{} errors ({} in warm-up): {}", r.errors, r.warmup_errors, r.error_samples.join("; ")));
    }
    if r.calls == 0 || r.throughput <= 0.0 {
        problems.push("zero throughput".to_owned());
    }
    if let Some(expect) = sc.expect {
        let a = &r.answers;
        let (good, total) = (
            match expect.responsed_type() {
                0 => a.continued,
                1 => a.ignore,
                _ => a.stop,
            },
            a.continued + a.ignore + a.stop + a.other,
        );
        if good != total {
            problems.push(format!(
                "unexpected answers: expected {expect} for all, got continue {} ignore {} stop {} other {}",
                a.continued, a.ignore, a.stop, a.other
            ));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// `<target>/bench-report` (`…/bench-report/smoke` for smoke runs, so CI never overwrites a
/// real report).
fn report_dir(cli: &Cli, bins: &Bins) -> PathBuf {
    cli.out.clone().unwrap_or_else(|| {
        let dir =
            bins.profile_dir.parent().map_or_else(|| PathBuf::from("target"), Path::to_path_buf).join("bench-report");
        if cli.smoke { dir.join("smoke") } else { dir }
    })
}

/// `git describe --always --dirty` of the working tree, if git is there (read-only).
fn source_revision() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<bool> {
    let started = Instant::now();
    let cli = Cli::parse();
    let bins = Bins::locate()?;
    let (rounds, duration, warmup) = if cli.smoke {
        (
            cli.rounds.unwrap_or(1),
            cli.duration.unwrap_or(Duration::from_millis(600)),
            cli.warmup.unwrap_or(Duration::from_millis(150)),
        )
    } else {
        (
            cli.rounds.unwrap_or(3),
            cli.duration.unwrap_or(Duration::from_secs(3)),
            cli.warmup.unwrap_or(Duration::from_millis(500)),
        )
    };
    let mut all =
        if cli.curves { scenarios::curves(cli.provider_package) } else { scenarios::all(cli.provider_package) };
    if !cli.only.is_empty() {
        all.retain(|s| cli.only.iter().any(|o| o == s.id));
        if all.is_empty() {
            bail!("--only {:?} selects no scenario", cli.only);
        }
    }
    let needs = |m: Middle| all.iter().any(|s| s.middle == m);
    let proxies = if needs(Middle::Nginx) || needs(Middle::Haproxy) {
        Proxies::detect(!cli.no_install)
    } else {
        Proxies::detect(false)
    };
    let mut skipped = Vec::new();
    for (m, p) in [(Middle::Nginx, &proxies.nginx), (Middle::Haproxy, &proxies.haproxy)] {
        if let Err(why) = &p.binary
            && needs(m)
        {
            let ids: Vec<&str> = all.iter().filter(|s| s.middle == m).map(|s| s.id).collect();
            let msg = format!("{} ({}): {why}", ids.join(", "), m.name());
            eprintln!("bench: SKIPPING {msg}");
            skipped.push(msg);
        }
    }
    let tmp = std::env::temp_dir().join(format!("exhook-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let out_dir = report_dir(&cli, &bins);
    eprintln!(
        "bench: {} rounds × {} shapes × {} scenarios, {:?} + {:?} warm-up each; EMQX {} → providers {}; {} cores; {} | {}; temp {}",
        rounds,
        cli.shapes.len(),
        all.len(),
        duration,
        warmup,
        cli.package,
        cli.provider_package,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if proxies.nginx.version.is_empty() { "no nginx" } else { &proxies.nginx.version },
        if proxies.haproxy.version.is_empty() { "no haproxy" } else { &proxies.haproxy.version },
        tmp.display()
    );
    let ctx = Ctx { cli, bins, proxies, tmp, duration, warmup };
    let mut records: Vec<RunRecord> = Vec::new();
    for round in 1..=rounds {
        for &shape in &ctx.cli.shapes {
            for sc in &all {
                if sc.latency_only && shape != Shape::Latency {
                    continue;
                }
                let available = match sc.middle {
                    Middle::Nginx => ctx.proxies.nginx.binary.is_ok(),
                    Middle::Haproxy => ctx.proxies.haproxy.binary.is_ok(),
                    _ => true,
                };
                if !available {
                    continue;
                }
                let t0 = Instant::now();
                let (result, provider_calls, error) = match run_once(&ctx, sc, shape, round) {
                    Ok((r, calls)) => {
                        let err = judge(sc, &r);
                        (Some(r), calls, err)
                    }
                    Err(e) => (None, None, Some(format!("{e:#}"))),
                };
                match (&result, &error) {
                    (Some(r), _) => eprintln!(
                        "[round {round} {shape:<10}] {:<4} {:<40} {:>9.0} calls/s  p50 {:>8.1} µs  p99 {:>8.1} µs  errors {}  ({:.1} s){}",
                        sc.id,
                        sc.title,
                        r.throughput,
                        r.latency.p50_us,
                        r.latency.p99_us,
                        r.errors + r.warmup_errors,
                        t0.elapsed().as_secs_f64(),
                        error.as_ref().map(|e| format!("\n    ERROR: {e}")).unwrap_or_default()
                    ),
                    (None, e) => eprintln!(
                        "[round {round} {shape:<10}] {:<4} {:<40} ERROR: {}",
                        sc.id,
                        sc.title,
                        e.clone().unwrap_or_default()
                    ),
                }
                records.push(RunRecord {
                    scenario: sc.id.to_owned(),
                    title: sc.title.to_owned(),
                    shape,
                    round,
                    middle: sc.middle.name().to_owned(),
                    error,
                    result,
                    provider_calls,
                    fanout: sc.fanout,
                });
            }
        }
    }
    let summary = report::summarize(&records);
    let ratios = report::ratios(&summary);
    let targets = report::targets(&summary);
    let table = report::table(&summary, &ratios, &targets, &skipped);
    println!("{table}");
    let failures: Vec<&RunRecord> = records.iter().filter(|r| r.error.is_some()).collect();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let json = serde_json::json!({
        "meta": {
            "smoke": ctx.cli.smoke,
            "rounds": rounds,
            "duration_s": duration.as_secs_f64(),
            "warmup_s": warmup.as_secs_f64(),
            "package": ctx.cli.package.as_str(),
            "provider_package": ctx.cli.provider_package.as_str(),
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "nginx": ctx.proxies.nginx.version,
            "haproxy": ctx.proxies.haproxy.version,
            "profile_dir": ctx.bins.profile_dir,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "source_revision": source_revision(),
        },
        "skipped": skipped,
        "summary": summary,
        "ratios": ratios,
        "targets": targets,
        "runs": records,
    });
    std::fs::write(out_dir.join("results.json"), serde_json::to_string_pretty(&json)?)?;
    let title = format!(
        "exhook-gateway vs direct, nginx, haproxy ({} rounds, {} s per run, EMQX {} → providers {})",
        rounds,
        duration.as_secs_f64(),
        ctx.cli.package,
        ctx.cli.provider_package
    );
    if ctx.cli.curves {
        let points = exhook_benches::curves::points(&all, &summary);
        let text = exhook_benches::curves::table(&points);
        println!("{text}");
        std::fs::write(out_dir.join("curves.txt"), &text)?;
        let title = format!("exhook-gateway cost curves ({rounds} rounds, {} s per run)", duration.as_secs_f64());
        std::fs::write(out_dir.join("curves.svg"), exhook_benches::curves::svg(&points, &title))?;
    } else {
        std::fs::write(out_dir.join("chart.svg"), report::svg(&summary, &title))?;
        std::fs::write(out_dir.join("report.txt"), &table)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("bench: wrote {}/{{results.json,chart.svg,report.txt}} in {elapsed:.1} s", out_dir.display());
    if failures.is_empty() && !ctx.cli.keep_temp {
        let _ = std::fs::remove_dir_all(&ctx.tmp);
    } else {
        eprintln!("bench: configs and logs kept in {}", ctx.tmp.display());
    }
    if ctx.cli.smoke && elapsed >= 60.0 {
        eprintln!("bench: WARNING: smoke run took {elapsed:.1} s (budget: 60 s)");
    }
    if !failures.is_empty() {
        eprintln!("bench: {} run(s) failed:", failures.len());
        for f in &failures {
            eprintln!("  {} [{}] round {}: {}", f.scenario, f.shape, f.round, f.error.as_deref().unwrap_or(""));
        }
        return Ok(false);
    }
    Ok(true)
}
