//! `exhook-bench-provider`: serves one or more fast in-memory ExHook providers on loopback.
//!
//! ```text
//! exhook-bench-provider --provider name=auth,package=v3,answer=stop \
//!     --provider name=pub,package=v1,answer=rewrite,filters=1000,match=bench/raw/+
//! ```
//!
//! Prints `LISTENING <name> <addr>` per provider, then `READY`. With `--control-stdin` it
//! answers a `stats` line with `STATS <name> <calls>` per provider and `END`, and exits when
//! stdin closes (so it never outlives the process that started it); otherwise it serves until
//! interrupted.

use std::io::Write as _;

use clap::Parser;
use exhook_loadgen::{BenchProvider, ProviderSpec};
use tokio::io::AsyncBufReadExt as _;

#[derive(Parser, Debug)]
#[command(name = "exhook-bench-provider", version, about = "Fast in-memory ExHook providers for benchmarks")]
struct Cli {
    /// A provider: name=N,package=v1|v2|v3,answer=stop|continue|rewrite|ignore,filters=N,
    /// match=FILTER (repeatable),rewrite=FROM:TO,delay=2ms. Repeat for several.
    #[arg(long, required = true)]
    provider: Vec<ProviderSpec>,
    /// Listen on this port for the first provider (next ones: following ports); default: any.
    #[arg(long)]
    port: Option<u16>,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Serve TLS (https) with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Answer `stats` on stdin; exit when stdin closes.
    #[arg(long)]
    control_stdin: bool,
}

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let mut providers = Vec::new();
    for (i, spec) in cli.provider.into_iter().enumerate() {
        let port = cli.port.map_or(0, |p| p + i as u16);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let tls = match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => {
                let files =
                    exhook_tls::ServerFiles { cert_file: cert.clone(), key_file: key.clone(), client_ca_file: None };
                Some(exhook_tls::server_config(&files, &[exhook_tls::ALPN_H2])?)
            }
            _ => None,
        };
        providers.push(BenchProvider::start_with(spec, listener, tls)?);
    }
    {
        let mut out = std::io::stdout().lock();
        for p in &providers {
            writeln!(out, "LISTENING {} {}", p.spec().name, p.addr())?;
        }
        writeln!(out, "READY")?;
        out.flush()?;
    }
    if cli.control_stdin {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            if line.trim() == "stats" {
                let mut out = std::io::stdout().lock();
                for p in &providers {
                    writeln!(out, "STATS {} {}", p.spec().name, p.calls())?;
                }
                writeln!(out, "END")?;
                out.flush()?;
            }
        }
    } else {
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let result = builder.enable_all().build().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(serve(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
