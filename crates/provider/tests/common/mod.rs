//! Harness for the kit's tests: the examples as real processes, a real exhook-gateway in
//! front of them, and a client playing EMQX (exhook-sim), all on loopback ports.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use exhook_config::Config;
use exhook_provider::Version;
use exhook_provider::model;
use exhook_server::{Gateway, Listeners, NoopObserver};
use exhook_sim::EmqxClient;
use tokio::io::AsyncBufReadExt as _;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

pub use exhook_sim::sample::{loaded_request, meta};

pub const ALL_VERSIONS: [Version; 3] = [Version::V1, Version::V2, Version::V3];

/// An example's binary, built by `cargo test`/`cargo nextest run` next to the test binaries
/// (`target/debug/examples/NAME`; cargo builds a package's examples whenever it builds its
/// tests). Cargo gives tests no `CARGO_BIN_EXE_` for examples, hence the path from our own.
/// A binary older than its source means a stale build: refused rather than tested.
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/debug/deps/<test> → target/debug/examples/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    let binary = dir.join("examples").join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(format!("{name}.rs"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(&binary), modified(&source)) {
        (Some(built), Some(written)) if built >= written => binary,
        (None, _) => panic!(
            "{} is missing: run the tests with cargo test / cargo nextest run -p exhook-provider (they build the examples)",
            binary.display()
        ),
        _ => panic!(
            "{} is older than its source: rebuild with cargo build -p exhook-provider --examples",
            binary.display()
        ),
    }
}

/// An example running as a process; killed when dropped.
pub struct Example {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Example {
    /// Starts example `name` on a fresh loopback port with `args`, and waits for its
    /// `listening on ADDR` line (never a sleep).
    pub async fn start(name: &str, args: &[&str]) -> Example {
        let mut child = Command::new(example_binary(name))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let line = lines.next_line().await.expect("stdout").expect("the example ended before listening");
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return addr.trim().parse().expect("the readiness line's address");
                }
            }
        })
        .await
        .expect("the example did not start listening");
        Example { child, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGTERM, then waits for the process to exit (after its graceful drain); its exit
    /// status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM");
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the example did not stop after SIGTERM")
            .expect("wait")
    }
}

/// A gateway on a loopback port, its providers loaded; stops when dropped.
pub struct TestGateway {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl TestGateway {
    pub async fn start(toml: &str) -> TestGateway {
        let config = Config::parse(toml, Path::new("<test>")).expect("test config must be valid");
        let gateway = Gateway::new(config, Arc::new(NoopObserver)).expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, rx) = oneshot::channel::<()>();
        let g = gateway.clone();
        tokio::spawn(async move {
            let _ = g
                .serve_on(Listeners::plaintext(listener), async {
                    let _ = rx.await;
                })
                .await;
        });
        gateway.start_loading();
        let providers = gateway.providers();
        tokio::time::timeout(Duration::from_secs(10), async {
            for p in &providers {
                p.wait_loaded(0).await;
            }
        })
        .await
        .expect("the providers did not load");
        TestGateway { gateway, addr, _stop: stop }
    }

    /// A client playing EMQX of `version`'s line, after OnProviderLoaded.
    pub async fn emqx(&self, version: Version) -> EmqxClient {
        let c = EmqxClient::connect(&format!("http://{}", self.addr), version).await.expect("connect to the gateway");
        c.loaded(&loaded_request(version, "emqxcl")).await.expect("OnProviderLoaded");
        c
    }
}

/// One `[[providers]]` entry.
pub fn provider(name: &str, url: &str, protocol: &str, failed_action: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nurl = \"{url}\"\nprotocol = \"{protocol}\"\ntimeout = \"2s\"\nfailed_action = \"{failed_action}\"\n"
    )
}

pub fn client_info(clientid: &str, username: &str) -> Option<model::ClientInfo> {
    exhook_sim::sample::client_info(clientid, username, "s3cret-pw")
}

pub fn authn(clientid: &str, username: &str, result: bool, version: Version) -> model::ClientAuthenticateRequest {
    model::ClientAuthenticateRequest {
        clientinfo: client_info(clientid, username),
        result,
        meta: meta(version, "emqxcl"),
    }
}

pub fn authz(username: &str, topic: &str, version: Version) -> model::ClientAuthorizeRequest {
    model::ClientAuthorizeRequest {
        clientinfo: client_info("c-authz", username),
        r#type: model::client_authorize_request::AuthorizeReqType::Publish as i32,
        topic: topic.into(),
        result: true,
        meta: meta(version, "emqxcl"),
    }
}

pub fn message(from: &str, topic: &str, payload: &str) -> model::Message {
    let mut m = exhook_sim::sample::message(from, topic, payload);
    m.headers.insert("username".into(), "alice".into());
    m.headers.insert("protocol".into(), "mqtt".into());
    m
}

pub fn publish(from: &str, topic: &str, payload: &str, version: Version) -> model::MessagePublishRequest {
    model::MessagePublishRequest {
        message: Some(message(from, topic, payload)),
        meta: meta(version, "emqxcl"),
        ..Default::default()
    }
}
