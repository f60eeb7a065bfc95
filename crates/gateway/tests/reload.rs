//! Live reload of the `run` process: a Kubernetes ConfigMap-style `..data` symlink swap under
//! continuous EMQX-like traffic (`run --watch`), an invalid file replacing the valid one, the
//! directory disappearing and coming back, and `POST /api/v1/reload` with and without the
//! admin token. Every wait is on a readiness signal (a log line, the status API's config
//! SHA-256, the reload counter, an answer), bounded by a timeout.
//!
//! Run with `--nocapture` to see the measured figures (`RELOAD ...` lines).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::valued_response::{ResponsedType, Value};
use exhook_sim::{EmqxClient, Reply, SimProvider};
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "reload-test-token-31c7";

/// A provider rewriting every published payload to `payload` (IGNORE elsewhere).
async fn rewriter(payload: &'static str) -> SimProvider {
    SimProvider::builder(Version::V3)
        .hook("message.publish")
        .script(move |call| {
            if call.hook == Hook::MessagePublish {
                Reply::message(ResponsedType::StopAndReturn, message("t/1", payload))
            } else {
                Reply::Default
            }
        })
        .start()
        .await
        .unwrap()
}

/// Providers `a` and `b` (failed_action `ignore`: a failure leaves the payload `orig`), the
/// publish chain `[chain]`, admin on a fresh port (with a token file when given).
fn config_text(a: &SimProvider, b: &SimProvider, chain: &str, token_file: Option<&Path>) -> String {
    let token = token_file.map(|f| format!("token_file = {:?}\n", f.display().to_string())).unwrap_or_default();
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{token}{}{}[chains]\n\"message.publish\" = [\"{chain}\"]\n",
        provider("a", &a.url(), "v3", "1s", "ignore"),
        provider("b", &b.url(), "v3", "1s", "ignore"),
    )
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exhook-reload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `exhook-gateway run`, its log messages as a channel.
struct Process {
    child: tokio::process::Child,
    messages: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    admin: SocketAddr,
    listen: String,
}

impl Process {
    async fn start(config: &Path, watch: bool) -> Process {
        let mut args = vec!["--log-format", "json", "run"];
        if watch {
            args.push("--watch");
        }
        let mut child = gateway_process(&args, Some(config), None);
        let (tx, messages) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
        let mut logs = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = logs.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    let _ = tx.send(v["fields"].clone());
                }
            }
        });
        let mut p = Process { child, messages, admin: "127.0.0.1:0".parse().unwrap(), listen: String::new() };
        p.admin = p.wait_for("admin listener (metrics, health, status page)").await["listen"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        p.listen = p.wait_for("exhook-gateway serving").await["listen"].as_str().unwrap().to_string();
        p
    }

    /// The next log message `message` (its fields).
    async fn wait_for(&mut self, message: &str) -> serde_json::Value {
        loop {
            let v =
                tokio::time::timeout(Duration::from_secs(10), self.messages.recv()).await.expect(message).expect("log");
            if v["message"] == message {
                return v;
            }
        }
    }

    async fn config_sha(&self) -> String {
        let (code, body) = get(self.admin, "/api/v1/status", Some(TOKEN)).await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["config"]["sha256"].as_str().unwrap().to_string()
    }

    /// Polls the status API until the running configuration's SHA-256 is `sha` (bounded).
    async fn wait_config(&self, sha: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.config_sha().await != sha {
            assert!(Instant::now() < deadline, "configuration {sha} not running after 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `exhook_gateway_config_reloads_total{result}`.
    async fn reloads(&self, result: &str) -> u64 {
        let (_, metrics) = get(self.admin, "/metrics", Some(TOKEN)).await;
        let series = format!("exhook_gateway_config_reloads_total{{result=\"{result}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&series)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    /// Polls the reload counter until `result` reaches `n` (bounded).
    async fn wait_reloads(&self, result: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.reloads(result).await < n {
            assert!(Instant::now() < deadline, "{result} reloads did not reach {n} in 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The published payload the gateway answers (`Err`: the call failed).
async fn publish_payload(emqx: &EmqxClient) -> Result<String, tonic::Status> {
    let r = emqx.valued(&publish("t/1", "orig", Version::V3)).await?;
    match r.value {
        Some(Value::Message(m)) => Ok(String::from_utf8_lossy(&m.payload).into_owned()),
        other => Ok(format!("{other:?}")),
    }
}

/// Connects as EMQX and waits until the chain answers `payload` (the providers load in the
/// background).
async fn emqx_answering(listen: &str, payload: &str) -> EmqxClient {
    let emqx = EmqxClient::connect(&format!("http://{listen}"), Version::V3).await.unwrap();
    emqx.loaded(&loaded_request(Version::V3, "emqxcl")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while publish_payload(&emqx).await.ok().as_deref() != Some(payload) {
        assert!(Instant::now() < deadline, "the chain does not answer {payload:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    emqx
}

/// Kubernetes' ConfigMap volume layout: `<dir>/gateway.toml -> ..data/gateway.toml`,
/// `..data -> ..<version>`; [`ConfigMap::swap`] publishes a new version as the kubelet does.
struct ConfigMap {
    dir: PathBuf,
    version: u32,
}

impl ConfigMap {
    fn new(dir: &Path, text: &str) -> ConfigMap {
        let mut m = ConfigMap { dir: dir.to_owned(), version: 0 };
        m.write_version(text);
        std::os::unix::fs::symlink(m.version_dir(), dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/gateway.toml", dir.join("gateway.toml")).unwrap();
        m
    }

    fn version_dir(&self) -> String {
        format!("..2026_12_01_12_00_00.{}", self.version)
    }

    fn write_version(&mut self, text: &str) {
        self.version += 1;
        let d = self.dir.join(self.version_dir());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("gateway.toml"), text).unwrap();
    }

    /// New timestamped directory, `..data_tmp` symlink to it, renamed over `..data`
    /// (atomic), old directory removed.
    fn swap(&mut self, text: &str) {
        let old = self.dir.join(self.version_dir());
        self.write_version(text);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(self.version_dir(), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        std::fs::remove_dir_all(old).unwrap();
    }

    fn path(&self) -> PathBuf {
        self.dir.join("gateway.toml")
    }
}

/// An editor's save: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_swap_under_load_switches_chains_without_a_failed_call() {
    let (a, b) = (rewriter("from-a").await, rewriter("from-b").await);
    let dir = temp_dir("configmap");
    let token_file = std::env::temp_dir().join(format!("exhook-reload-token-cm-{}", std::process::id()));
    std::fs::write(&token_file, TOKEN).unwrap();
    let mut map = ConfigMap::new(&dir, &config_text(&a, &b, "a", Some(&token_file)));
    let mut gw = Process::start(&map.path(), true).await;
    let emqx = emqx_answering(&gw.listen, "from-a").await;

    // EMQX-like load: 4 callers publishing back to back; every answer kept with its start time.
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (emqx, stop) = (emqx.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    answers.push((started, publish_payload(&emqx).await));
                }
                answers
            })
        })
        .collect();
    // Some load before the swap.
    a.wait_for(Hook::MessagePublish, 200, Duration::from_secs(10)).await;

    let new_text = config_text(&a, &b, "b", Some(&token_file));
    let swapped = Instant::now();
    map.swap(&new_text);
    gw.wait_config(&sha256_hex(&new_text)).await;
    let running = swapped.elapsed();
    let report = gw.wait_for("configuration reloaded").await;
    assert_eq!(report["trigger"], "watch", "{report}");
    let b_before = b.calls_of(Hook::MessagePublish).len();
    // Some load after the swap, on the new chain.
    b.wait_for(Hook::MessagePublish, 200 + b_before, Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for c in callers {
        answers.extend(c.await.unwrap());
    }

    let failed: Vec<_> = answers.iter().filter(|(_, r)| !matches!(r.as_deref(), Ok("from-a" | "from-b"))).collect();
    assert!(failed.is_empty(), "{} failed calls during the swap: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    let first_b = answers
        .iter()
        .filter(|(_, r)| matches!(r.as_deref(), Ok("from-b")))
        .map(|(t, _)| *t)
        .min()
        .expect("the new chain answered");
    let to_new_chain = first_b.saturating_duration_since(swapped);
    assert!(to_new_chain < Duration::from_secs(1), "the new chain answered after {to_new_chain:?}");
    // Once the status API shows the new file, no call started later reaches the old chain.
    let stale = answers.iter().filter(|(t, r)| *t >= swapped + running && matches!(r.as_deref(), Ok("from-a"))).count();
    assert_eq!(stale, 0, "calls started after the reload answered by the old chain");
    assert_eq!(gw.reloads("success").await, 1);
    assert_eq!(gw.reloads("failure").await, 0);
    eprintln!(
        "RELOAD configmap swap: calls={} failed=0 first new-chain answer {to_new_chain:?} after the swap; status API showed the new sha after {running:?}",
        answers.len()
    );
    let _ = gw.child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&token_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_keeps_the_running_configuration() {
    let (a, b) = (rewriter("from-a").await, rewriter("from-b").await);
    let dir = temp_dir("bad");
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let path = dir.join("gateway.toml");
    let good = config_text(&a, &b, "a", Some(&token_file));
    std::fs::write(&path, &good).unwrap();
    let mut gw = Process::start(&path, true).await;
    let emqx = emqx_answering(&gw.listen, "from-a").await;

    replace(&path, &good.replace("timeout = \"1s\"", "timeout = \"fast\""));
    gw.wait_reloads("failure", 1).await;
    let error = gw.wait_for("configuration NOT reloaded; the running one stays").await;
    let error = error["error"].as_str().unwrap();
    assert!(error.contains(&path.display().to_string()) && error.contains("providers[0] (a).timeout"), "{error}");
    assert_eq!(gw.config_sha().await, sha256_hex(&good));
    assert_eq!(publish_payload(&emqx).await.unwrap(), "from-a");

    // The same bad content again (an unrelated event, a touch): not re-tried, not re-counted;
    // then a good file: applied.
    std::fs::write(dir.join("unrelated"), "x").unwrap();
    let fixed = config_text(&a, &b, "b", Some(&token_file));
    replace(&path, &fixed);
    gw.wait_config(&sha256_hex(&fixed)).await;
    assert_eq!(publish_payload(&emqx).await.unwrap(), "from-b");
    assert_eq!((gw.reloads("failure").await, gw.reloads("success").await), (1, 1));
    let _ = gw.child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The inotify watches the process holds (`/proc/<pid>/fdinfo`: one `inotify wd:` line each).
#[cfg(target_os = "linux")]
fn inotify_watches(pid: u32) -> usize {
    let mut n = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap().flatten() {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        n += info.lines().filter(|l| l.starts_with("inotify wd:")).count();
    }
    n
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_can_disappear_and_come_back() {
    let (a, b) = (rewriter("from-a").await, rewriter("from-b").await);
    let dir = temp_dir("vanish");
    let token_file = std::env::temp_dir().join(format!("exhook-reload-token-vanish-{}", std::process::id()));
    std::fs::write(&token_file, TOKEN).unwrap();
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config_text(&a, &b, "a", Some(&token_file))).unwrap();
    let mut gw = Process::start(&path, true).await;
    let pid = gw.child.id().unwrap();
    let emqx = emqx_answering(&gw.listen, "from-a").await;
    let mut max_watches = 0;
    for round in 0..3 {
        std::fs::remove_dir_all(&dir).unwrap();
        gw.wait_for("configuration directory gone: the running configuration stays; watching for it to come back")
            .await;
        assert_eq!(get(gw.admin, "/healthz", None).await.0, 200);
        max_watches = max_watches.max(inotify_watches(pid));
        std::fs::create_dir_all(&dir).unwrap();
        let text = config_text(&a, &b, if round % 2 == 0 { "b" } else { "a" }, Some(&token_file));
        std::fs::write(&path, &text).unwrap();
        gw.wait_config(&sha256_hex(&text)).await;
        max_watches = max_watches.max(inotify_watches(pid));
    }
    assert!(gw.child.try_wait().unwrap().is_none(), "the process exited");
    assert_eq!(publish_payload(&emqx).await.unwrap(), "from-b");
    assert!(max_watches <= 1, "{max_watches} inotify watches: leaked");
    assert_eq!(gw.reloads("failure").await, 0);
    eprintln!(
        "RELOAD directory removed and recreated 3 times: process up, reloaded each time, inotify watches <= {max_watches}"
    );
    let _ = gw.child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&token_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_needs_the_token_and_reports() {
    let (a, b) = (rewriter("from-a").await, rewriter("from-b").await);
    let dir = temp_dir("api");
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let path = dir.join("gateway.toml");
    let first = config_text(&a, &b, "a", Some(&token_file));
    std::fs::write(&path, &first).unwrap();
    // Not watching: only the API reloads.
    let gw = Process::start(&path, false).await;
    let emqx = emqx_answering(&gw.listen, "from-a").await;
    let second = config_text(&a, &b, "b", Some(&token_file));
    std::fs::write(&path, &second).unwrap();

    for token in [None, Some("wrong")] {
        let (code, _) = post(gw.admin, "/api/v1/reload", token).await;
        assert_eq!(code, 401, "token {token:?}");
    }
    assert_eq!(gw.config_sha().await, sha256_hex(&first), "refused requests must not reload");
    assert_eq!(publish_payload(&emqx).await.unwrap(), "from-a");

    let (code, body) = post(gw.admin, "/api/v1/reload", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["reloaded"], true, "{body}");
    assert_eq!(report["kept"], serde_json::json!(["a", "b"]), "{body}");
    assert_eq!(report["errors"], serde_json::json!([]), "{body}");
    assert_eq!(gw.config_sha().await, sha256_hex(&second));
    assert_eq!(publish_payload(&emqx).await.unwrap(), "from-b");

    std::fs::write(&path, second.replace("[chains]", "[chainz]")).unwrap();
    let (code, body) = post(gw.admin, "/api/v1/reload", Some(TOKEN)).await;
    assert_eq!(code, 422, "{body}");
    let refused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["reloaded"], false, "{body}");
    let errors = refused["errors"].to_string();
    assert!(errors.contains(&path.display().to_string()) && errors.contains("chainz"), "{body}");
    assert_eq!(gw.config_sha().await, sha256_hex(&second));
    assert_eq!((gw.reloads("success").await, gw.reloads("failure").await), (1, 1));
    let mut child = gw.child;
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn included_team_files_are_watched_and_reloaded() {
    let (a, b) = (rewriter("from-a").await, rewriter("from-b").await);
    let dir = temp_dir("teams");
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    std::fs::create_dir_all(dir.join("teams.d")).unwrap();
    let path = dir.join("gateway.toml");
    let team_file = dir.join("teams.d/team-x.toml");
    // The team's tenant (cluster emqx-x) publishes through its own provider.
    let team = |provider: &SimProvider, chain_to: &str| {
        format!(
            "{}[[tenants]]\nname = \"team-x\"\ncluster_names = [\"emqx-x\"]\n[tenants.chains]\n\"message.publish\" = [\"{chain_to}\"]\n",
            provider_entry("x", provider)
        )
    };
    let main = format!(
        "include = [\"teams.d/*.toml\"]\n[server]\nlisten = \"127.0.0.1:0\"\nunknown_cluster = \"default\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n{}[chains]\n\"message.publish\" = [\"a\"]\n",
        token_file.display().to_string(),
        provider("a", &a.url(), "v3", "1s", "ignore"),
    );
    std::fs::write(&path, &main).unwrap();
    std::fs::write(&team_file, team(&a, "x")).unwrap();
    let mut gw = Process::start(&path, true).await;
    // EMQX cluster emqx-x: the team's tenant.
    let emqx = EmqxClient::connect(&format!("http://{}", gw.listen), Version::V3).await.unwrap();
    emqx.loaded(&loaded_request(Version::V3, "emqx-x")).await.unwrap();
    let team_publish = |emqx: EmqxClient| async move {
        let mut req = publish("t/1", "orig", Version::V3);
        req.meta = meta(Version::V3, "emqx-x");
        match emqx.valued(&req).await.map(|r| r.value) {
            Ok(Some(Value::Message(m))) => String::from_utf8_lossy(&m.payload).into_owned(),
            other => format!("{other:?}"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while team_publish(emqx.clone()).await != "from-a" {
        assert!(Instant::now() < deadline, "team-x's chain does not answer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The team edits its own file (an editor's rename): its provider now points at b.
    replace(&team_file, &team(&b, "x"));
    let report = gw.wait_for("configuration reloaded").await;
    assert!(report["added"].as_str().unwrap().contains("\"x\""), "{report}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while team_publish(emqx.clone()).await != "from-b" {
        assert!(Instant::now() < deadline, "team-x's new provider does not answer");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A new team file with a key outside its tenant: refused, naming both files; the running
    // configuration stays.
    let sha = gw.config_sha().await;
    let bad = dir.join("teams.d/team-y.toml");
    std::fs::write(&bad, "[server]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let error = gw.wait_for("configuration NOT reloaded; the running one stays").await;
    let error = error["error"].as_str().unwrap();
    assert!(
        error.contains(&bad.display().to_string()) && error.contains(&format!("included by {}", path.display())),
        "{error}"
    );
    assert_eq!(gw.config_sha().await, sha);
    assert_eq!(team_publish(emqx.clone()).await, "from-b");
    std::fs::remove_file(&bad).unwrap();
    // Back to the files that run: differs from the last tried (the bad one), applied again.
    gw.wait_reloads("success", 2).await;
    assert_eq!(gw.config_sha().await, sha);
    assert_eq!((gw.reloads("success").await, gw.reloads("failure").await), (2, 1));
    let _ = gw.child.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `[[providers]]` entry named `name` for `p` (failed_action `ignore`).
fn provider_entry(name: &str, p: &SimProvider) -> String {
    provider(name, &p.url(), "v3", "1s", "ignore")
}
