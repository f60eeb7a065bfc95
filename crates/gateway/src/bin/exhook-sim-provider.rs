//! A stand-alone example provider process (for fault-injection tests and manual trials):
//! registers the given hooks in one package and answers valued hooks as told.
//!
//! `exhook-sim-provider --package v3 --listen 127.0.0.1:0 --hook client.authenticate --answer continue-true --delay-ms 0`
//!
//! Prints `listening on <addr>` on stdout once it accepts connections.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use exhook_proto::model::valued_response::ResponsedType;
use exhook_sim::{Reply, SimProvider, valued};

#[derive(Parser)]
struct Args {
    /// The package it speaks.
    #[arg(long, default_value = "v3")]
    package: String,
    /// Where to listen (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Hooks to register (EMQX hookpoint names, in the package's spelling).
    #[arg(long = "hook", required = true)]
    hooks: Vec<String>,
    /// How to answer valued hooks.
    #[arg(long, value_enum, default_value_t = Answer::ContinueTrue)]
    answer: Answer,
    /// Delay before every answer.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Answer {
    ContinueTrue,
    StopFalse,
    Ignore,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let version = args.package.parse().map_err(|e| anyhow::anyhow!("--package: {e}"))?;
    let delay = Duration::from_millis(args.delay_ms);
    let answer = args.answer;
    let names: Vec<&str> = args.hooks.iter().map(String::as_str).collect();
    let provider = SimProvider::builder(version)
        .hooks(&names)
        .record(false)
        .script(valued(move |_| {
            let reply = match answer {
                Answer::ContinueTrue => Reply::bool(ResponsedType::Continue, true),
                Answer::StopFalse => Reply::bool(ResponsedType::StopAndReturn, false),
                Answer::Ignore => Reply::ignore(),
            };
            if delay.is_zero() { reply } else { reply.after(delay) }
        }))
        .start_on(&args.listen)
        .await?;
    println!("listening on {}", provider.addr());
    std::future::pending::<()>().await;
    Ok(())
}
