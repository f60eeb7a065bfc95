//! Shared harness for the gateway's integration tests: a real gateway on a loopback port,
//! real providers (exhook-sim, generated tonic servers), a client playing EMQX.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use exhook_config::Config;
use exhook_hooks::Version;
use exhook_proto::model;
use exhook_server::{Gateway, NoopObserver, Observer};
use exhook_sim::EmqxClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// A gateway serving on a loopback port; stops when dropped.
pub struct TestGateway {
    pub gateway: Gateway,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl TestGateway {
    /// Starts a gateway from TOML (`[server] listen` is ignored: a fresh port is used).
    pub async fn start(toml: &str) -> TestGateway {
        Self::start_observed(toml, Arc::new(NoopObserver)).await
    }

    /// Same, with an observer.
    pub async fn start_observed(toml: &str, observer: Arc<dyn Observer>) -> TestGateway {
        let config = Config::parse(toml, Path::new("<test>")).expect("test config must be valid");
        let gateway = Gateway::new(config, observer).expect("gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = serve_in_background(&gateway, exhook_server::Listeners::plaintext(listener));
        TestGateway { gateway, addr, stop: Some(stop) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client playing EMQX of `version`'s line.
    pub async fn emqx(&self, version: Version) -> EmqxClient {
        EmqxClient::connect(&self.url(), version).await.expect("connect to gateway")
    }

    /// Connects as EMQX and sends OnProviderLoaded, as EMQX does on start.
    pub async fn loaded_emqx(&self, version: Version) -> (EmqxClient, model::LoadedResponse) {
        let c = self.emqx(version).await;
        let r = c.loaded(&loaded_request(version, "emqxcl")).await.expect("OnProviderLoaded");
        (c, r)
    }
}

/// Serves `gateway` on `listeners` in a task until the returned sender is dropped or fired.
pub fn serve_in_background(gateway: &Gateway, listeners: exhook_server::Listeners) -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel::<()>();
    let g = gateway.clone();
    tokio::spawn(async move {
        let _ = g
            .serve_on(listeners, async {
                let _ = rx.await;
            })
            .await;
    });
    tx
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub use exhook_sim::sample::{loaded_request, meta};

pub fn client_info(clientid: &str) -> Option<model::ClientInfo> {
    let mut c = exhook_sim::sample::client_info(clientid, "alice", "s3cret");
    if let Some(c) = c.as_mut() {
        c.anonymous = false;
    }
    c
}

pub fn authn(clientid: &str, result: bool, version: Version) -> model::ClientAuthenticateRequest {
    model::ClientAuthenticateRequest { clientinfo: client_info(clientid), result, meta: meta(version, "emqxcl") }
}

pub fn message(topic: &str, payload: &str) -> model::Message {
    let mut m = exhook_sim::sample::message("pub-1", topic, payload);
    m.headers.insert("username".to_string(), "alice".to_string());
    m
}

pub fn publish(topic: &str, payload: &str, version: Version) -> model::MessagePublishRequest {
    model::MessagePublishRequest {
        message: Some(message(topic, payload)),
        meta: meta(version, "emqxcl"),
        ..Default::default()
    }
}

/// `[[providers]]` entry.
pub fn provider(name: &str, url: &str, protocol: &str, timeout: &str, failed_action: &str) -> String {
    format!(
        "[[providers]]\nname = \"{name}\"\nurl = \"{url}\"\nprotocol = \"{protocol}\"\ntimeout = \"{timeout}\"\nfailed_action = \"{failed_action}\"\n"
    )
}

/// Waits until every provider of the gateway is loaded (they load in the background).
pub async fn wait_loaded(gw: &TestGateway) {
    gw.gateway.start_loading();
    let providers = gw.gateway.providers();
    let all = futures_all(providers.iter().map(|p| p.wait_loaded(0)));
    tokio::time::timeout(Duration::from_secs(10), all).await.expect("providers did not load");
}

pub const ALL_VERSIONS: [Version; 3] = [Version::V1, Version::V2, Version::V3];

async fn futures_all<F: std::future::Future<Output = ()>>(fs: impl Iterator<Item = F>) {
    for f in fs {
        f.await;
    }
}

/// A plain HTTP/1.1 GET; returns status code and body.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    http_request(addr, "GET", path, token).await
}

/// A plain HTTP/1.1 POST with an empty body; returns status code and body.
pub async fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    http_request(addr, "POST", path, token).await
}

/// `DELETE path` with an optional bearer token: status and body.
pub async fn delete(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    http_request(addr, "DELETE", path, token).await
}

async fn http_request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("admin listener");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let length = if method == "GET" { "" } else { "Content-Length: 0\r\n" };
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}{length}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // Chunked bodies (axum streams /metrics): good enough to strip the chunk sizes.
    let body = if text.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(&body) } else { body };
    (code, body)
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The `exhook-gateway` binary as a process: `args`, stdin closed, stdout and stderr piped
/// (logs go to stderr), killed when dropped. `RUST_LOG` as given, else the binary's default.
pub fn gateway_process(args: &[&str], config: Option<&Path>, rust_log: Option<&str>) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_exhook-gateway"));
    command.args(args);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    if let Some(level) = rust_log {
        command.env("RUST_LOG", level);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start exhook-gateway")
}

/// Lines of a child's stdout.
pub type StdoutLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Waits (at most 10 s) for a provider process's readiness line `... listening on <addr>` on
/// its stdout (the test harness prints lines of its own first); the address, and the rest of
/// the lines.
pub async fn listening_addr(stdout: tokio::process::ChildStdout) -> (SocketAddr, StdoutLines) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines.next_line().await.unwrap().expect("provider process ended before listening");
            if let Some((_, addr)) = line.split_once("listening on ") {
                return addr.trim().parse().expect("readiness line");
            }
        }
    })
    .await
    .expect("provider process did not start");
    (addr, lines)
}

/// An admin listener serving a test gateway; stops when dropped.
pub struct Admin {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

/// The admin plane's state for `gw` (ready, with `token` if any), to adjust before serving it.
pub fn admin_state(gw: &TestGateway, token: Option<&str>) -> Arc<exhook_admin::AdminState> {
    let state = exhook_admin::AdminState::new(
        gw.gateway.clone(),
        token.map(|t| exhook_proto::Secret::new(t.to_owned())),
        exhook_admin::ConfigInfo::new(None, "test"),
    );
    state.set_listener_up(true);
    state
}

/// Serves `state` on a loopback port.
pub async fn serve_admin(state: Arc<exhook_admin::AdminState>) -> Admin {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let addr = listener.local_addr().expect("admin addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(exhook_admin::serve(listener, state, async {
        let _ = rx.await;
    }));
    Admin { addr, _stop: tx }
}

/// An admin listener for `gw`, with `token` if any.
pub async fn start_admin(gw: &TestGateway, token: Option<&str>) -> Admin {
    serve_admin(admin_state(gw, token)).await
}

/// An authenticator (v3): STOP_AND_RETURN false for clientids starting with `mallory`, CONTINUE
/// true for everyone else.
pub async fn mallory_denier() -> exhook_sim::SimProvider {
    use exhook_proto::model::valued_response::ResponsedType;
    exhook_sim::SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(exhook_sim::valued(|c| {
            let r: model::ClientAuthenticateRequest = c.request();
            if r.clientinfo.unwrap_or_default().clientid.starts_with("mallory") {
                exhook_sim::Reply::bool(ResponsedType::StopAndReturn, false)
            } else {
                exhook_sim::Reply::bool(ResponsedType::Continue, true)
            }
        }))
        .start()
        .await
        .expect("authenticator")
}

/// A publisher (v2) registered for `message.publish` on `a/#`, answering CONTINUE with the
/// message it was given.
pub async fn echo_publisher() -> exhook_sim::SimProvider {
    use exhook_proto::model::valued_response::ResponsedType;
    exhook_sim::SimProvider::builder(Version::V2)
        .hook_topics("message.publish", &["a/#"])
        .script(exhook_sim::valued(|c| {
            exhook_sim::Reply::message(
                ResponsedType::Continue,
                c.request::<model::MessagePublishRequest>().message.unwrap_or_default(),
            )
        }))
        .start()
        .await
        .expect("publisher")
}
