//! `exhook-loadgen`: plays EMQX against an ExHook endpoint and reports throughput, latency
//! percentiles, errors, and the CPU seconds and peak RSS of watched processes.
//!
//! ```text
//! exhook-loadgen --target http://127.0.0.1:9000 --package v3 --mix auth \
//!     --connections 8 --inflight 16 --duration 5s --watch gateway=$(pidof exhook-gateway)
//! ```

use std::time::Duration;

use clap::Parser;
use exhook_hooks::Version;
use exhook_loadgen::{LoadConfig, Mix, provider::parse_duration};

#[derive(Parser, Debug)]
#[command(name = "exhook-loadgen", version, about = "Plays EMQX against an ExHook endpoint and measures it")]
struct Cli {
    /// Target URL (repeat: every operation calls the targets one after another).
    #[arg(long, required = true)]
    target: Vec<String>,
    /// Package EMQX speaks: v1 (4.x), v2 (5.0-5.8), v3 (5.9+).
    #[arg(long, default_value = "v3", value_parser = parse_version)]
    package: Version,
    /// Hooks called: auth, publish, delivered, session (connect, authenticate, authorize,
    /// subscribe, publish, delivered, disconnected per virtual client).
    #[arg(long, default_value = "auth")]
    mix: Mix,
    /// HTTP/2 connections per target.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Calls in flight per connection.
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Measured window (e.g. 5s, 500ms).
    #[arg(long, default_value = "3s", value_parser = duration)]
    duration: Duration,
    /// Unmeasured load before the window.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    warmup: Duration,
    /// Open loop at this many operations per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Per-call timeout, also sent as grpc-timeout.
    #[arg(long, default_value = "5s", value_parser = duration)]
    timeout: Duration,
    /// Distinct clientids cycled through.
    #[arg(long, default_value_t = 1024)]
    clients: usize,
    /// Bytes of each publish's payload (default: a small JSON reading).
    #[arg(long)]
    payload_bytes: Option<usize>,
    /// Report CPU and peak RSS of a process tree over the window: NAME=PID (repeatable).
    #[arg(long, value_parser = parse_watch)]
    watch: Vec<(String, u32)>,
    /// Do not call OnProviderLoaded first.
    #[arg(long)]
    no_load: bool,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// For https:// targets: the CA their certificates chain to.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// Print the result as JSON on stdout (the human summary goes to stderr).
    #[arg(long)]
    json: bool,
}

fn parse_version(s: &str) -> Result<Version, String> {
    s.parse().map_err(|e: exhook_hooks::ParseVersionError| e.to_string())
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration (e.g. 500ms, 3s)"))
}

fn parse_watch(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=PID"))?;
    Ok((name.to_owned(), pid.parse().map_err(|e| format!("{s:?}: {e}"))?))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let config = LoadConfig {
        targets: cli.target,
        version: cli.package,
        mix: cli.mix,
        connections: cli.connections,
        inflight: cli.inflight,
        duration: cli.duration,
        warmup: cli.warmup,
        rate: cli.rate,
        timeout: cli.timeout,
        clients: cli.clients,
        payload_bytes: cli.payload_bytes,
        watch: cli.watch,
        ca_file: cli.ca_file.clone(),
        load_first: !cli.no_load,
        ..LoadConfig::default()
    };
    match runtime.block_on(exhook_loadgen::run(&config)) {
        Ok(result) => {
            if cli.json {
                eprint!("{}", result.summary());
                match serde_json::to_string(&result) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return std::process::ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", result.summary());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
