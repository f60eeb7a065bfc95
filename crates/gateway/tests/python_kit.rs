//! The Python kit (`sdk/python`) for real: its unit tests, its committed generated code against
//! `proto/`, and its example provider (`sdk/python/examples/deny_and_rewrite.py`) in its own
//! process behind the gateway, spoken to in each package (v1, v2, v3) on both sides: EMQX of
//! each line calls the gateway, which calls the provider in each package.
//!
//! The Python is the venv `target/python-kit/venv` that `scripts/test.sh` makes (grpcio,
//! protobuf and the kit installed from `sdk/python`). Without it the tests fail and say how to
//! make it, unless `EXHOOK_SKIP_TOOLS` names `python-kit`: then they say loudly they skipped.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::{self, valued_response::ResponsedType, valued_response::Value};
use exhook_server::Observer;
use exhook_server::observe::{StepEvent, StepResult};
use prost_reflect::{DescriptorPool, Kind};
use tokio::io::AsyncReadExt;

const VENV: &str = "target/python-kit/venv";
const PINS: &str = "grpcio==1.85.3 protobuf==7.36.2";
const TOOL: &str = "python-kit";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("workspace root")
}

/// The venv's Python with the kit installed from the current `sdk/python`. Missing or stale:
/// the test fails naming the command, unless `EXHOOK_SKIP_TOOLS` names `python-kit` (`None`).
fn python(test: &str) -> Option<PathBuf> {
    let root = workspace();
    let python = root.join(VENV).join("bin/python");
    let make = format!(
        "bash scripts/test.sh does it; alone: python3 -m venv {VENV} && {VENV}/bin/pip install {PINS} ./sdk/python"
    );
    if !python.is_file() {
        let skipped =
            std::env::var(exhook_deploy_check::SKIP_TOOLS).is_ok_and(|v| v.split(',').any(|t| t.trim() == TOOL));
        assert!(
            skipped,
            "{test}: no Python venv at {VENV} ({make}), or skip the Python kit's tests explicitly with {}={TOOL}",
            exhook_deploy_check::SKIP_TOOLS
        );
        let bar = "!".repeat(80);
        let _ = writeln!(
            std::io::stderr(),
            "\n{bar}\n!!! {test}: SKIPPED ({} names {TOOL}).\n{bar}\n",
            exhook_deploy_check::SKIP_TOOLS
        );
        return None;
    }
    // The installed kit must be the one in the tree (pip copies it at install time).
    let out = std::process::Command::new(&python)
        .args(["-c", "import exhook_provider, os; print(os.path.dirname(exhook_provider.__file__))"])
        .current_dir(&root)
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "{test}: the kit is not installed in {VENV} ({make}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let installed = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let tree = root.join("sdk/python/exhook_provider");
    for dir in ["", "_pb"] {
        for entry in std::fs::read_dir(tree.join(dir)).unwrap().map(Result::unwrap) {
            let file = Path::new(dir).join(entry.file_name());
            if file.extension().is_none_or(|x| x != "py") {
                continue;
            }
            let source = std::fs::read(entry.path()).unwrap();
            assert!(
                std::fs::read(installed.join(&file)).is_ok_and(|i| i == source),
                "{test}: the kit in {VENV} is older than sdk/python/exhook_provider/{}: reinstall it \
                 ({VENV}/bin/pip install ./sdk/python; {make})",
                file.display()
            );
        }
    }
    Some(python)
}

/// Every provider step the gateway takes: (hook, provider, what happened).
#[derive(Default)]
struct Steps(Mutex<Vec<(Hook, String, &'static str)>>);

impl Observer for Steps {
    fn step(&self, e: &StepEvent<'_>) {
        let result = match e.result {
            StepResult::SkippedNotLoaded => "not loaded",
            StepResult::SkippedNotRegistered => "not registered",
            StepResult::SkippedFiltered => "filtered",
            StepResult::Answered(..) => "answered",
            StepResult::Delivered => "delivered",
            StepResult::Queued => "queued",
            StepResult::Dropped => "dropped",
            StepResult::Failed(..) => "failed",
        };
        self.0.lock().unwrap().push((e.hook, e.provider.to_string(), result));
    }
}

impl Steps {
    /// What happened to the provider in the steps of `hook` since the last call.
    fn take(&self, hook: Hook) -> Vec<&'static str> {
        let mut steps = self.0.lock().unwrap();
        let of_hook = steps.iter().filter(|s| s.0 == hook).map(|s| s.2).collect();
        steps.retain(|s| s.0 != hook);
        of_hook
    }
}

/// The example provider in its own process, ready (its `listening on` line read); its stderr
/// (the log) is collected until it ends.
struct Example {
    child: tokio::process::Child,
    url: String,
    log: tokio::task::JoinHandle<String>,
}

impl Example {
    async fn start(python: &Path, args: &[&str]) -> Example {
        let mut child = tokio::process::Command::new(python)
            .arg("sdk/python/examples/deny_and_rewrite.py")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(workspace())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the example provider");
        let mut stderr = child.stderr.take().unwrap();
        let log = tokio::spawn(async move {
            let mut log = String::new();
            let _ = stderr.read_to_string(&mut log).await;
            log
        });
        let (addr, _) = listening_addr(child.stdout.take().unwrap()).await;
        Example { child, url: addr.to_string(), log }
    }

    /// SIGTERM; the process must end by itself (successfully) within 10 s. Its log.
    async fn terminate(mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("the provider did not stop after SIGTERM")
            .unwrap();
        let log = self.log.await.unwrap();
        assert!(status.success(), "exit status {status} after SIGTERM; log:\n{log}");
        log
    }
}

fn provider_toml(url: &str, protocol: Version) -> String {
    provider("python", url, protocol.as_str(), "2s", "deny") + "notify = \"after-delivery\"\n"
}

fn client_info(clientid: &str, username: &str) -> Option<model::ClientInfo> {
    exhook_sim::sample::client_info(clientid, username, "s3cret")
}

#[tokio::test]
async fn unit_tests_pass() {
    let Some(python) = python("unit_tests_pass") else { return };
    let out = tokio::process::Command::new(python)
        .args(["-m", "unittest", "discover", "-s", "tests", "-v"])
        .current_dir(workspace().join("sdk/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && report.trim_end().ends_with("OK"), "python -m unittest failed:\n{report}");
    let ran = report.lines().find(|l| l.starts_with("Ran ")).unwrap_or_default();
    eprintln!("sdk/python/tests: {ran}, OK");
}

/// The committed generated code (`exhook_provider/_pb`) describes exactly what `proto/` does:
/// every message, field (number, type, cardinality), enum value and RPC, per package.
#[tokio::test]
async fn committed_generated_code_matches_the_protos() {
    let Some(python) = python("committed_generated_code_matches_the_protos") else { return };
    let script = "import sys\nfrom google.protobuf import descriptor_pb2\nfrom exhook_provider import PACKAGES\n\
                  s = descriptor_pb2.FileDescriptorSet()\n\
                  [s.file.add().MergeFromString(pb.DESCRIPTOR.serialized_pb) for pb in PACKAGES.values()]\n\
                  sys.stdout.write(s.SerializeToString().hex())";
    // From sdk/python: the files in the tree, not the installed copy.
    let out = tokio::process::Command::new(python)
        .args(["-c", script])
        .current_dir(workspace().join("sdk/python"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hex = String::from_utf8(out.stdout).unwrap();
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let committed = DescriptorPool::decode(bytes.as_slice()).expect("descriptors of the committed code");
    let protos = DescriptorPool::decode(exhook_proto::FILE_DESCRIPTOR_SET).unwrap();
    for package in ["emqx.exhook.v1", "emqx.exhook.v2", "emqx.exhook.v3"] {
        let want = describe(&protos, package);
        assert!(want.len() > 100, "{package}: {} lines", want.len());
        assert_eq!(
            describe(&committed, package),
            want,
            "{package}: sdk/python/exhook_provider/_pb is not current: run sdk/python/scripts/gen_pb.py"
        );
    }
}

fn describe(pool: &DescriptorPool, package: &str) -> Vec<String> {
    let prefix = format!("{package}.");
    let kind = |k: Kind| match k {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        other => format!("{other:?}"),
    };
    let mut lines = Vec::new();
    for m in pool.all_messages().filter(|m| m.full_name().starts_with(&prefix)) {
        lines.push(format!("message {}", m.full_name()));
        for f in m.fields() {
            lines.push(format!(
                "{} {} = {} {} {:?}",
                m.full_name(),
                f.name(),
                f.number(),
                kind(f.kind()),
                f.cardinality()
            ));
        }
        for o in m.oneofs() {
            let fields: Vec<_> = o.fields().map(|f| f.name().to_owned()).collect();
            lines.push(format!("{} oneof {} {fields:?}", m.full_name(), o.name()));
        }
    }
    for e in pool.all_enums().filter(|e| e.full_name().starts_with(&prefix)) {
        for v in e.values() {
            lines.push(format!("enum {} {} = {}", e.full_name(), v.name(), v.number()));
        }
    }
    for s in pool.services().filter(|s| s.full_name().starts_with(&prefix)) {
        for m in s.methods() {
            let (input, output) = (m.input(), m.output());
            lines.push(format!("rpc {}/{}({}) -> {}", s.full_name(), m.name(), input.full_name(), output.full_name()));
        }
    }
    lines.sort();
    lines
}

/// The example behind the gateway: the gateway speaks each package to it in turn, EMQX of each
/// line speaks to the gateway. Deny → denied, others allowed; legacy/# rewritten with the rest
/// of the message echoed; other topics not sent (filter); client.authorize and session.created
/// not registered, so never called; client.connected acknowledged. Then SIGTERM stops it.
#[tokio::test]
async fn example_provider_behind_the_gateway_in_each_package() {
    let Some(python) = python("example_provider_behind_the_gateway_in_each_package") else { return };
    let example = Example::start(&python, &[]).await;
    for protocol in ALL_VERSIONS {
        let steps = Arc::new(Steps::default());
        let gw =
            TestGateway::start_observed(&provider_toml(&format!("http://{}", example.url), protocol), steps.clone())
                .await;
        wait_loaded(&gw).await;
        for version in ALL_VERSIONS {
            check_through_gateway(&gw, protocol, version, &steps).await;
        }
    }
    let log = example.terminate().await;
    for protocol in ALL_VERSIONS {
        for version in ALL_VERSIONS {
            assert!(
                log.contains(&format!("connected: c-{protocol}-{version}")),
                "{protocol}/{version} not logged:\n{log}"
            );
        }
    }
    assert!(log.contains("exhook_provider: stopped"), "no clean stop in the log:\n{log}");
    assert!(!log.contains("s3cret"), "the provider's log shows a password:\n{log}");
}

async fn check_through_gateway(gw: &TestGateway, protocol: Version, version: Version, steps: &Steps) {
    let case = format!("gateway→provider {protocol}, EMQX {version}");
    let (emqx, loaded) = gw.loaded_emqx(version).await;
    let mut hooks: Vec<_> = loaded.hooks.iter().map(|h| (h.name.as_str(), h.topics.clone())).collect();
    hooks.sort();
    let name = |h: Hook| h.hookpoint(version).unwrap();
    let mut want = vec![
        (name(Hook::ClientAuthenticate), vec![]),
        (name(Hook::ClientConnected), vec![]),
        (name(Hook::MessagePublish), vec!["legacy/#".to_string()]),
    ];
    want.sort();
    assert_eq!(hooks, want, "{case}: registered hooks");
    let meta = meta(version, "emqxcl");

    // client.authenticate: the deny list.
    for (user, allowed) in [("mallory", false), ("alice", true)] {
        let request =
            model::ClientAuthenticateRequest { clientinfo: client_info("c1", user), result: true, meta: meta.clone() };
        let answer = emqx.valued(&request).await.unwrap();
        assert_eq!(answer.value, Some(Value::BoolResult(allowed)), "{case}: {user}");
        let kind = if allowed { ResponsedType::Continue } else { ResponsedType::StopAndReturn };
        assert_eq!(answer.r#type, kind as i32, "{case}: {user}");
        assert_eq!(steps.take(Hook::ClientAuthenticate), ["answered"], "{case}");
    }

    // message.publish on legacy/#: topic and payload rewritten, the rest echoed.
    let request = publish("legacy/room1/temp", "twenty", version);
    let answer = emqx.valued(&request).await.unwrap();
    assert_eq!(answer.r#type, ResponsedType::Continue as i32, "{case}");
    let Some(Value::Message(got)) = answer.value else { panic!("{case}: no message in {answer:?}") };
    let mut want = request.message.clone().unwrap();
    want.topic = "sensors/room1/temp".into();
    want.payload = "TWENTY".as_bytes().to_vec().into();
    assert_eq!(got, want, "{case}: only topic and payload change");
    assert_eq!(got.headers.get("username").map(String::as_str), Some("alice"), "{case}");
    assert_eq!(steps.take(Hook::MessagePublish), ["answered"], "{case}");

    // Outside its topic filter: not called, nothing changes.
    let answer = emqx.valued(&publish("other/t", "x", version)).await.unwrap();
    assert_eq!(answer.r#type, ResponsedType::Ignore as i32, "{case}: {answer:?}");
    assert_eq!(steps.take(Hook::MessagePublish), ["filtered"], "{case}");

    // client.authorize is not implemented by the class: not registered, never called.
    let request = model::ClientAuthorizeRequest {
        clientinfo: client_info("c1", "alice"),
        r#type: 0,
        topic: "legacy/x".into(),
        result: true,
        meta: meta.clone(),
    };
    let answer = emqx.valued(&request).await.unwrap();
    assert_eq!(answer.r#type, ResponsedType::Ignore as i32, "{case}: {answer:?}");
    assert_eq!(steps.take(Hook::ClientAuthorize), ["not registered"], "{case}");

    // Notifications: client.connected delivered and acknowledged (after-delivery: the gateway
    // answered EMQX after the provider did); session.created not registered.
    let clientid = format!("c-{protocol}-{version}");
    let request = model::ClientConnectedRequest { clientinfo: client_info(&clientid, "alice"), meta: meta.clone() };
    emqx.notify(&request).await.unwrap();
    assert_eq!(steps.take(Hook::ClientConnected), ["delivered"], "{case}");
    let request = model::SessionCreatedRequest { clientinfo: client_info(&clientid, "alice"), meta: meta.clone() };
    emqx.notify(&request).await.unwrap();
    assert_eq!(steps.take(Hook::SessionCreated), ["not registered"], "{case}");
}

/// `--tls-cert/--tls-key/--tls-client-ca`: the example over mutual TLS, the gateway presenting
/// a client certificate of the provider's CA.
#[tokio::test]
async fn example_provider_over_mutual_tls() {
    use exhook_testpki::{Ca, Leaf};
    let Some(python) = python("example_provider_over_mutual_tls") else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("python kit test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let server = ca.issue(&Leaf::new(&["provider.test"])).write(dir.path(), "provider");
    let client = ca.issue(&Leaf::new(&["exhook-gateway.test"])).write(dir.path(), "gateway");
    let p = |path: &Path| path.display().to_string();
    let (cert, key, client_ca) = (p(&server.cert), p(&server.key), p(&ca_file));
    let example =
        Example::start(&python, &["--tls-cert", &cert, "--tls-key", &key, "--tls-client-ca", &client_ca]).await;
    let url = format!("https://{}", example.url);
    let tls = format!(
        "[providers.tls]\nca_file = \"{}\"\nserver_name = \"provider.test\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        p(&ca_file),
        p(&client.cert),
        p(&client.key)
    );
    let gw = TestGateway::start(&(provider("python", &url, "v3", "2s", "deny") + &tls)).await;
    wait_loaded(&gw).await;
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    for (user, allowed) in [("eve", false), ("bob", true)] {
        let request = model::ClientAuthenticateRequest {
            clientinfo: client_info("c1", user),
            result: true,
            meta: meta(Version::V3, "emqxcl"),
        };
        assert_eq!(emqx.valued(&request).await.unwrap().value, Some(Value::BoolResult(allowed)), "{user}");
    }
    example.terminate().await;
}
