//! `exhook-gateway conformance`: the flags and the exit code, for the gateway binary to mount
//! as a subcommand.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use exhook_hooks::Version;

use crate::driver::{Target, TlsFiles};

/// Exit code when the provider could not be reached (or the URL / TLS files are unusable).
pub const EXIT_CANNOT_CONNECT: u8 = 2;

/// Drive a provider (any language) through every hook it registers and check what EMQX
/// relies on; prints a `check | result | reason` table. Exit code 0: conforms; 1: a check
/// failed; 2: cannot connect.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The provider's URL: http://host:port or https://host:port.
    #[arg(long)]
    pub provider: String,
    /// The package to speak: v1 (EMQX 4.x), v2 (5.0-5.8), v3 (5.9+), or auto (probe v3, v2, v1).
    #[arg(long, default_value = "auto", value_parser = parse_package)]
    pub package: Package,
    /// The deadline of every call (EMQX's request_timeout, sent as grpc-timeout), e.g. 5s, 500ms.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// https: PEM CA certificates to trust (default: the system's root store).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// https: PEM client certificate (mTLS), with --key.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// https: PEM private key of --cert.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `--package`: one package, or auto-detect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Package {
    /// Probe v3, v2, v1 in that order.
    Auto,
    /// This package.
    Only(Version),
}

fn parse_package(s: &str) -> Result<Package, String> {
    match s {
        "auto" => Ok(Package::Auto),
        other => other.parse().map(Package::Only).map_err(|e: exhook_hooks::ParseVersionError| e.to_string()),
    }
}

impl Args {
    /// The [`Target`] these flags describe.
    pub fn target(&self) -> Target {
        Target {
            url: self.provider.clone(),
            package: match self.package {
                Package::Auto => None,
                Package::Only(v) => Some(v),
            },
            timeout: self.timeout,
            tls: TlsFiles { ca: self.ca.clone(), cert: self.cert.clone(), key: self.key.clone() },
        }
    }
}

/// Runs the tester, prints the report (stdout) or the reason it could not run (stderr), and
/// returns the exit code: 0 conforms, 1 a check failed, 2 cannot connect.
pub async fn main(args: Args) -> ExitCode {
    match crate::run(&args.target()).await {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.table());
            }
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CANNOT_CONNECT)
        }
    }
}
