//! `exhook-gateway`: run the gateway, check a configuration, or run the demo.

mod demo;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use exhook_config::Config;
use exhook_server::{Gateway, NoopObserver};

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
    },
    /// Validate a configuration file and print the resolved chains per tenant.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "config/gateway.toml")]
        config: PathBuf,
    },
    /// Start built-in example providers and the gateway on loopback, drive an EMQX-like
    /// session through it and print every hook, each provider's answer and the result.
    Demo {
        /// The package the simulated EMQX speaks.
        #[arg(long, default_value = "v3", value_parser = parse_version)]
        emqx: exhook_hooks::Version,
    },
}

fn parse_version(s: &str) -> Result<exhook_hooks::Version, String> {
    s.parse().map_err(|e: exhook_hooks::ParseVersionError| e.to_string())
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => {
                init_logs(cli.log_format, "info");
                run(config).await
            }
            Command::Check { config } => check(config),
            Command::Demo { emqx } => {
                init_logs(cli.log_format, "warn");
                demo::run(emqx).await
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
    let config = Config::load(&path)?;
    println!("{}: OK ({} providers, {} tenants)", path.display(), config.providers.len(), config.tenants.len());
    print!("{}", exhook_config::render_chains(&config));
    Ok(())
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let listen = config.server.listen;
    let gateway = Gateway::new(config, Arc::new(NoopObserver))?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("server.listen: cannot bind {listen}"))?;
    tracing::info!(%listen, config = %path.display(), providers = gateway.providers().len(), "exhook-gateway serving");
    gateway.start_loading();
    gateway.serve(listener, shutdown_signal()).await?;
    tracing::info!("exhook-gateway stopped");
    Ok(())
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
