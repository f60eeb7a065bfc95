//! The examples' shared command line: `--listen ADDR` (default 127.0.0.1:9001), optional TLS
//! (`--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]`), and each example's own
//! `--name value` options. Prints `listening on ADDR` once the port is bound, so a script or
//! test knows when to connect.

use std::io::Write as _;
use std::path::PathBuf;

use exhook_provider::{Provider, ServeError, Server, TlsFiles};

/// `--name value` pairs, in order.
pub struct Args(Vec<(String, String)>);

impl Args {
    /// The process's arguments; exits with a usage line on a malformed command line.
    pub fn parse(usage: &str) -> Args {
        let mut pairs = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(name) = it.next() {
            let (Some(name), Some(value)) = (name.strip_prefix("--"), it.next()) else {
                eprintln!("usage: {usage}");
                std::process::exit(2);
            };
            pairs.push((name.to_owned(), value));
        }
        Args(pairs)
    }

    /// Every value of `--name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
    }

    /// The last value of `--name`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.all(name).pop()
    }

    /// The last value of `--name`, parsed; exits naming the option when it does not parse.
    #[allow(dead_code)] // not every example has a numeric option
    pub fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        match self.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{name}: cannot read {v:?}");
                std::process::exit(2);
            }),
        }
    }
}

/// Serves `provider` as the command line says until SIGINT/SIGTERM.
pub async fn run<P: Provider>(args: &Args, provider: P) -> Result<(), ServeError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let mut server = Server::new(provider);
    if let (Some(cert), Some(key)) = (args.get("tls-cert"), args.get("tls-key")) {
        let client_ca_file = args.get("tls-client-ca").map(PathBuf::from);
        server = server.tls(&TlsFiles { cert_file: cert.into(), key_file: key.into(), client_ca_file })?;
    }
    let listening = server.bind(args.get("listen").unwrap_or_else(|| "127.0.0.1:9001".into())).await?;
    println!("listening on {}", listening.local_addr());
    // Piped stdout is block-buffered: without the flush the line waits for the buffer to fill.
    let _ = std::io::stdout().flush();
    listening.run().await
}
