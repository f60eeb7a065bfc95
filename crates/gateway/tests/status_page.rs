//! The status page in headless Chromium, checked for its elements (not just rendered): per
//! provider the calls/s and p99 sparklines and the breaker timeline (inline SVG), the chains
//! drawn in order with each member's share of answers and its skips, the shadow
//! disagreements, and the live trace view following one client. Writes the screenshots
//! `status-page.png` and `status-trace.png` to `target/test-artifacts/`, and to `docs/` (the
//! README's pictures) when `EXHOOK_UPDATE_DOCS=1`: a test run never leaves the tree modified.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use exhook_admin::TraceHub;
use exhook_hooks::Version;
use exhook_proto::model::{self, valued_response::ResponsedType};
use exhook_sim::{Reply, SimProvider, valued};

const TOKEN: &str = "p4ge-t0ken";

fn require(name: &str, package: &str) -> Option<PathBuf> {
    exhook_deploy_check::require_tool("exhook-gateway status page tests", name, package)
}

fn authorize(clientid: &str, topic: &str) -> model::ClientAuthorizeRequest {
    model::ClientAuthorizeRequest {
        clientinfo: client_info(clientid),
        r#type: 1,
        topic: topic.to_owned(),
        result: true,
        meta: meta(Version::V3, "emqxcl"),
    }
}

/// Runs Chromium headless on `url` with `extra` arguments; its output (killed after 60 s).
async fn chromium(chromium: &PathBuf, profile: &std::path::Path, url: &str, extra: &[&str]) -> std::process::Output {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url);
    let mut c = tokio::process::Command::from(c);
    c.kill_on_drop(true).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("chromium finished").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_status_page_shows_history_chains_and_a_live_trace() {
    let Some(chromium_bin) = require("chromium", "chromium") else { return };
    let auth = mallory_denier().await;
    // A candidate that denies every 4th client: disagreements to show.
    let candidate = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(valued(|c| {
            let r: model::ClientAuthenticateRequest = c.request();
            let id = r.clientinfo.unwrap_or_default().clientid;
            let deny = id.ends_with('3') || id.starts_with("mallory");
            Reply::bool(ResponsedType::StopAndReturn, !deny)
        }))
        .start()
        .await
        .unwrap();
    let publisher = echo_publisher().await;
    // Authorize: too slow every other call for its 100 ms timeout, so its breaker opens.
    let flaky = SimProvider::builder(Version::V3)
        .hook("client.authorize")
        .script(valued(|c| {
            let r: model::ClientAuthorizeRequest = c.request();
            if r.topic.ends_with("slow") {
                Reply::ignore().after(Duration::from_millis(300))
            } else {
                Reply::bool(ResponsedType::StopAndReturn, true)
            }
        }))
        .start()
        .await
        .unwrap();
    let audit = SimProvider::builder(Version::V1).hook("session.created").start().await.unwrap();
    let toml = format!(
        "{}{}{}{}[providers.breaker]\nconsecutive_failures = 3\nminimum_calls = 1000\nopen_duration = \"400ms\"\nhalf_open_probes = 1\n{}[chains]\n\"client.authenticate\" = [\"auth\", {{ name = \"auth-v2\", mode = \"shadow\" }}]\n\"client.authorize\" = [\"flaky\"]\n\"message.publish\" = [\"publisher\", {{ name = \"audit\", mode = \"observe\" }}]\n\"session.created\" = [\"audit\"]\n",
        provider("auth", &auth.url(), "v3", "1s", "deny"),
        provider("auth-v2", &candidate.url(), "v3", "1s", "ignore"),
        provider("publisher", &publisher.url(), "v2", "1s", "ignore"),
        provider("flaky", &flaky.url(), "v3", "100ms", "ignore"),
        provider("audit", &audit.url(), "v1", "1s", "ignore"),
    );
    let hub = Arc::new(TraceHub::default());
    let gw = TestGateway::start_observed(&toml, Arc::clone(&hub) as Arc<dyn exhook_server::Observer>).await;
    let state = admin_state(&gw, Some(TOKEN));
    state.set_trace(Arc::clone(&hub));
    let served = serve_admin(Arc::clone(&state)).await;
    let admin = served.addr;
    let _ = gw.loaded_emqx(Version::V3).await;

    // Live traffic for the whole test: rates, latencies, decisions, skips, a breaker opening.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let emqx = gw.emqx(Version::V3).await;
    let traffic = tokio::spawn(async move {
        for i in 0..1_000_000u32 {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            let who = if i % 10 == 9 { format!("mallory-{}", i % 7) } else { format!("alice-{}", i % 8) };
            let _ = emqx.valued(&authn(&who, true, Version::V3)).await;
            let _ = emqx.valued(&publish(if i % 3 == 0 { "b/1" } else { "a/1" }, "x", Version::V3)).await;
            // Phases of slow answers: the breaker opens, probes, and opens again.
            let topic = if (i / 60) % 2 == 1 { "t/slow" } else { "t/fast" };
            let _ = emqx.valued(&authorize(&format!("alice-{}", i % 8), topic)).await;
            if i % 5 == 0 {
                let req = model::SessionCreatedRequest {
                    clientinfo: client_info(&format!("alice-{}", i % 8)),
                    meta: meta(Version::V3, "emqxcl"),
                };
                let _ = emqx.notify(&req).await;
            }
            // A steady trickle, not a flood: Chromium shares the two cores.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    // The history: a sample every 250 ms for 5 s (the listener's own sampler takes one every 2 s).
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        state.sample_history();
    }
    let profile = std::env::temp_dir().join(format!("exhook-chromium-page-{}", std::process::id()));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let docs = if std::env::var_os("EXHOOK_UPDATE_DOCS").is_some() {
        root.join("docs")
    } else {
        root.join("target/test-artifacts")
    };
    std::fs::create_dir_all(&docs).expect("screenshot directory");

    // The overview.
    let url = format!("http://{admin}/#token={TOKEN}");
    let dom = chromium(&chromium_bin, &profile, &url, &["--virtual-time-budget=3000", "--dump-dom"]).await;
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(html.contains("<div id=\"error\"></div>"), "the page reported an error:\n{html}");
    for name in ["auth", "auth-v2", "publisher", "flaky", "audit"] {
        assert!(html.contains(&format!("data-provider=\"{name}\"")), "row for {name} missing in:\n{html}");
    }
    let count = |needle: &str| html.matches(needle).count();
    assert_eq!(count("class=\"spark\" data-spark=\"calls\""), 5, "a calls/s sparkline per provider:\n{html}");
    assert_eq!(count("class=\"spark\" data-spark=\"p99\""), 5, "a p99 sparkline per provider");
    assert_eq!(count("class=\"timeline\" data-timeline=\"breaker\""), 5, "a breaker timeline per provider");
    assert!(count("<polyline") >= 10, "sparklines drawn from the history:\n{html}");
    assert!(html.contains("data-state=\"closed\""), "{html}");
    assert!(
        html.contains("data-state=\"open\"") || html.contains("data-state=\"half-open\""),
        "flaky's breaker opened:\n{html}"
    );
    // Chains drawn in order, members with their shares and skips.
    let chain = html
        .find("class=\"chain-row\" data-tenant=\"default\" data-hook=\"client.authenticate\"")
        .expect("authenticate chain");
    let auth_at = html[chain..].find("data-member=\"auth\"").expect("auth in the chain");
    let shadow_at =
        html[chain..].find("data-member=\"auth-v2\" data-mode=\"shadow\"").expect("the shadow in the chain");
    assert!(auth_at < shadow_at, "members in call order");
    assert!(html.contains("data-hook=\"message.publish\""), "{html}");
    assert!(html.contains("data-member=\"audit\" data-mode=\"observe\""), "{html}");
    for share in ["continue", "stop", "failed"] {
        assert!(html.contains(&format!("data-share=\"{share}\"")), "a {share} share drawn:\n{html}");
    }
    assert!(html.contains("filter "), "publisher's filter skips shown:\n{html}");
    assert!(html.contains("breaker open ") || html.contains("failed "), "flaky's failures shown:\n{html}");
    assert!(html.contains("data-decided=\""), "{html}");
    // Shadow disagreements.
    assert!(html.contains("data-disagreement=\"auth-v2\""), "disagreements listed:\n{html}");
    // The trace view is there, idle.
    assert!(html.contains("id=\"trace-events\"") && html.contains("not watching"), "{html}");
    assert!(!html.contains("s3cret"));
    let shot = docs.join("status-page.png");
    let out = chromium(
        &chromium_bin,
        &profile,
        &url,
        &["--virtual-time-budget=3000", "--window-size=1500,1250", &format!("--screenshot={}", shot.display())],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 20_000).unwrap_or(false), "screenshot not written");

    // The trace view: a page following alice-3 while the traffic runs (a never-ending stream
    // does not hold up Chromium's virtual-time budget: its chunks arrive as they are sent).
    // alice-3 calls often, so events arrive while Chromium looks (its virtual time runs ahead
    // of the wall clock when the page is idle); a dump without them (a loaded machine) is
    // taken again, at most three times.
    let url = format!("http://{admin}/?trace=alice-3#token={TOKEN}");
    let emqx = gw.emqx(Version::V3).await;
    let (stop_alice, mut alice_stop) = tokio::sync::oneshot::channel::<()>();
    let alice = tokio::spawn(async move {
        while alice_stop.try_recv().is_err() {
            let _ = emqx.valued(&authn("alice-3", true, Version::V3)).await;
            let _ = emqx.valued(&authorize("alice-3", "t/fast")).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let mut html = String::new();
    for _ in 0..3 {
        let dom = chromium(&chromium_bin, &profile, &url, &["--virtual-time-budget=3000", "--dump-dom"]).await;
        html = String::from_utf8_lossy(&dom.stdout).into_owned();
        if html.contains("auth-v2 (shadow) verdict") && html.contains("data-trace-kind=\"answer\"") {
            break;
        }
    }
    assert!(html.contains("watching {\"filter\":{\"clientid\":\"alice-3\"}}"), "the trace opened:\n{html}");
    for kind in ["received", "step", "answer"] {
        assert!(html.contains(&format!("data-trace-kind=\"{kind}\"")), "{kind} events shown:\n{html}");
    }
    assert!(html.contains("auth-v2 (shadow) verdict"), "the shadow's verdict in the trace:\n{html}");
    assert!(!html.contains("s3cret"), "never a password");
    let shot = docs.join("status-trace.png");
    let out = chromium(
        &chromium_bin,
        &profile,
        &url,
        &["--virtual-time-budget=3000", "--window-size=1500,900", &format!("--screenshot={}", shot.display())],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 20_000).unwrap_or(false), "trace screenshot not written");
    let _ = (stop_tx.send(()), stop_alice.send(()));
    traffic.await.unwrap();
    alice.await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}
