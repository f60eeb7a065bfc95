//! `exhook-gateway`: run the gateway, check a configuration, test a provider's conformance, or
//! run the demo (feature `demo`, on by default).

#[cfg(feature = "demo")]
mod demo;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use exhook_admin::{AdminState, ConfigInfo};
use exhook_config::Config;
use exhook_server::Gateway;

#[derive(Parser)]
#[command(
    name = "exhook-gateway",
    version,
    about = "One EMQX ExHook endpoint in front of ordered chains of team providers"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve EMQX with the providers and chains of a configuration file.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
        /// Watch the configuration file's directory and reload when the file's content changes
        /// (editors' rename-over, Kubernetes ConfigMap `..data` swaps); SIGHUP and
        /// `POST /api/v1/reload` work either way.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a configuration file and print the resolved chains per tenant.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// Check a provider (any language) against what EMQX relies on, before it joins a chain.
    ///
    /// Drives it through every hook it registers and prints a check | result | reason table
    /// (docs/conformance.md). Exit code 0: conforms; 1: a check failed; 2: cannot connect.
    Conformance(exhook_conformance::cli::Args),
    /// Follow a live decision trace: every hook the gateway receives for the matching clients,
    /// each provider's answer, latency and outcome, and what EMQX got back (one line each).
    Trace {
        /// The admin listener, e.g. http://127.0.0.1:9100.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        admin: String,
        /// The clientid to follow.
        #[arg(long)]
        clientid: Option<String>,
        /// The username to follow.
        #[arg(long)]
        username: Option<String>,
        /// A topic or topic filter (`a/#`) to follow.
        #[arg(long)]
        topic: Option<String>,
        /// A file with the admin bearer token (as `[admin] token_file`).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Start built-in example providers and the gateway on loopback, drive an EMQX-like
    /// session through it and print every hook, each provider's answer and the result.
    #[cfg(feature = "demo")]
    Demo {
        /// The package the simulated EMQX speaks.
        #[arg(long, default_value = "v3", value_parser = parse_version)]
        emqx: exhook_hooks::Version,
        /// The password the simulated clients authenticate with: forwarded to the providers,
        /// never printed (a demo value: command lines are visible to other local users).
        #[arg(long, default_value = "not-shown")]
        password: String,
        /// Also serve the admin plane (`/metrics`, `/api/v1/status`, the status page) here,
        /// e.g. 127.0.0.1:9100, and stay up after the session until Ctrl-C or SIGTERM.
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
}

#[cfg(feature = "demo")]
fn parse_version(s: &str) -> Result<exhook_hooks::Version, String> {
    s.parse().map_err(|e: exhook_hooks::ParseVersionError| e.to_string())
}

/// `[server] worker_threads` of the file `run` will serve (read before the runtime starts;
/// errors are reported by the real load just after).
fn worker_threads(cli: &Cli) -> Option<usize> {
    let Command::Run { config, .. } = &cli.command else { return None };
    Config::load(config).ok()?.server.worker_threads
}

fn init_logs(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// mimalloc instead of glibc's malloc: a call allocates a few dozen small buffers (HTTP/2
/// frames, headers, the decoded request) and frees them on another task; callgrind counted
/// 8 % fewer instructions per call with it (136.8k -> 125.6k, `scripts/callgrind.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads(&cli) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        Command::Conformance(args) => return runtime.block_on(exhook_conformance::cli::main(args)),
        other => other,
    };
    let result = runtime.block_on(async {
        match command {
            Command::Run { config, watch } => {
                init_logs(cli.log_format, "info");
                run(config, watch).await
            }
            Command::Check { config } => check(config),
            Command::Trace { admin, clientid, username, topic, token_file } => {
                let filter = exhook_admin::TraceFilter { clientid, username, topic };
                let token = token_file
                    .map(|f| exhook_admin::read_token_file(&f).with_context(|| format!("cannot read {}", f.display())))
                    .transpose()?;
                let token = token.as_ref().map(|t| t.expose().as_str());
                Ok(exhook_admin::sse::print_trace(&admin, &filter, token, std::io::stdout().lock()).await?)
            }
            // Answered above, with its own exit codes (0 conforms, 1 a check failed, 2 cannot connect).
            Command::Conformance(_) => Ok(()),
            #[cfg(feature = "demo")]
            Command::Demo { emqx, password, admin } => {
                init_logs(cli.log_format, "warn");
                demo::run(demo::Options { emqx, password: exhook_proto::Secret::new(password), admin }).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    let sources = exhook_config::Sources::read(&path)?;
    let (config, origins) = Config::from_sources(&sources)?;
    println!("{}: OK ({} providers, {} tenants)", path.display(), config.providers.len(), config.tenants.len());
    if !sources.included.is_empty() {
        println!("defined in:");
        for (p, file) in config.providers.iter().zip(&origins.providers) {
            println!("  provider {:<24} {}", p.name, file.display());
        }
        for (t, file) in config.tenants.iter().zip(&origins.tenants).skip(1) {
            println!("  tenant   {:<24} {}", t.name, file.display());
        }
    }
    print!("{}", exhook_config::render_chains(&config));
    Ok(())
}

async fn run(path: PathBuf, watch: bool) -> anyhow::Result<()> {
    let sources = exhook_config::Sources::read(&path)?;
    let (config, _) = Config::from_sources(&sources)?;
    let text = sources.digest_text();
    let admin = config.admin.clone();
    let drain_timeout = config.server.drain_timeout;
    let listeners = exhook_server::Listeners::bind(&config).await?;
    // The live trace hub is the gateway's observer: with no trace open it costs each call
    // one atomic load (benches/benches/trace.rs).
    let trace = Arc::new(exhook_admin::TraceHub::default());
    let gateway = Gateway::new(config, Arc::clone(&trace) as Arc<dyn exhook_server::Observer>)?;
    let token = match &admin.token_file {
        Some(f) => Some(
            exhook_admin::read_token_file(f)
                .with_context(|| format!("admin.token_file: cannot read {}", f.display()))?,
        ),
        None => None,
    };
    let admin_state = AdminState::new(gateway.clone(), token, ConfigInfo::new(Some(&path), &text));
    admin_state.set_trace(trace);
    let reloader = reload::Reloader::new(path.clone(), &sources, gateway.clone(), Arc::clone(&admin_state));
    admin_state.set_reload(Arc::clone(&reloader) as Arc<dyn exhook_admin::Reload>);
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    // The admin plane outlives the drain: load balancers and Kubernetes see /readyz answer 503
    // while the last calls finish (not a refused connection), and metrics stay scrapable.
    let (admin_stop_tx, admin_stop) = tokio::sync::watch::channel(false);
    let mut admin_task = None;
    if admin.enabled {
        let admin_listener = tokio::net::TcpListener::bind(admin.listen)
            .await
            .with_context(|| format!("admin.listen: cannot bind {}", admin.listen))?;
        tracing::info!(listen = %admin_listener.local_addr()?, "admin listener (metrics, health, status page)");
        let mut stop = admin_stop.clone();
        let stop = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        admin_task = Some(match &admin.tls {
            Some(files) => {
                let build = files.clone();
                let tls = exhook_tls::Watched::new("admin.tls", files.paths(), move || {
                    exhook_tls::server_config(&build, &[b"http/1.1"])
                })
                .map_err(|e| anyhow::anyhow!("admin.tls.{e}"))?;
                tls.spawn_watch(exhook_server::TLS_POLL);
                tokio::spawn(exhook_admin::serve_tls(admin_listener, tls, Arc::clone(&admin_state), stop))
            }
            None => tokio::spawn(exhook_admin::serve(admin_listener, Arc::clone(&admin_state), stop)),
        });
    }
    // Install the SIGHUP handler before announcing readiness: until then a HUP would kill us.
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("SIGHUP handler")?;
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(hup, Arc::clone(&reloader)));
    let watch_task = watch.then(|| reload::spawn_watch(Arc::clone(&reloader), stopping.clone()));
    let addrs = listeners.addrs();
    for (key, addr) in &addrs {
        tracing::info!(listener = %key, %addr, "EMQX-facing listener");
    }
    // `listen`: the first EMQX-facing address (the plaintext one when there is one).
    let first = addrs.first().map(|(_, a)| a.to_string()).unwrap_or_default();
    tracing::info!(listen = %first, config = %path.display(), providers = gateway.providers().len(), "exhook-gateway serving");
    admin_state.set_listener_up(true);
    gateway.start_loading();
    let draining = Arc::clone(&admin_state);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            ?drain_timeout,
            "stopping: not ready; finishing calls in flight, closing connections gracefully"
        );
        draining.set_listener_up(false);
        let _ = stopping_tx.send(true);
    });

    let mut wait_stop = stopping.clone();
    let serve = gateway.serve_on(listeners, async move {
        let _ = wait_stop.wait_for(|s| *s).await;
    });
    tokio::pin!(serve);
    let mut wait_stop = stopping.clone();
    let drain_started = tokio::select! {
        r = &mut serve => { r?; tokio::time::Instant::now() }
        _ = wait_stop.wait_for(|s| *s) => {
            let started = tokio::time::Instant::now();
            match tokio::time::timeout(drain_timeout, &mut serve).await {
                Ok(r) => r?,
                Err(_) => tracing::warn!("drain timeout: some EMQX connections did not close in time"),
            }
            started
        }
    };
    admin_state.set_listener_up(false);
    let left = gateway.drain(drain_timeout.saturating_sub(drain_started.elapsed())).await;
    if left > 0 {
        tracing::warn!(
            undelivered = left,
            "notifications still queued at shutdown (counted as dropped, reason shutdown)"
        );
    }
    let _ = admin_stop_tx.send(true);
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    if let Some(t) = watch_task {
        let _ = t.await;
    }
    tracing::info!("exhook-gateway stopped");
    Ok(())
}

/// SIGHUP: re-read the file through the one reload path ([`reload::Reloader`]): a valid file
/// replaces the running configuration atomically (unchanged providers keep their connections
/// and breaker state); an invalid one is reported and the running configuration stays.
#[cfg(unix)]
async fn reload_on_sighup(mut hup: tokio::signal::unix::Signal, reloader: Arc<reload::Reloader>) {
    while hup.recv().await.is_some() {
        let _ = reloader.reload("sighup").await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
