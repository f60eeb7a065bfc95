//! The admin plane against known traffic: exact metric counts, promtool, status API,
//! readiness, the bearer token, and the status page rendered in headless Chromium.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use exhook_hooks::{Hook, Version};
use exhook_proto::model;
use exhook_sim::SimProvider;

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in:\n{metrics}"))
}

/// auth (v3): CONTINUE true for alice, STOP false for mallory; publisher (v2): rewrites a/#;
/// audit (v1): session.created, queued.
async fn scenario() -> (SimProvider, SimProvider, SimProvider, TestGateway) {
    let auth = mallory_denier().await;
    let publisher = echo_publisher().await;
    let audit = SimProvider::builder(Version::V1).hook("session.created").start().await.unwrap();
    let toml = format!(
        "{}{}{}",
        provider("auth", &auth.url(), "v3", "1s", "deny"),
        provider("publisher", &publisher.url(), "v2", "1s", "ignore"),
        provider("audit", &audit.url(), "v1", "1s", "ignore"),
    );
    let gw = TestGateway::start(&toml).await;
    (auth, publisher, audit, gw)
}

async fn drive(gw: &TestGateway, audit: &SimProvider) {
    let (emqx, _) = gw.loaded_emqx(Version::V3).await;
    for i in 0..3 {
        emqx.valued(&authn(&format!("alice-{i}"), true, Version::V3)).await.unwrap();
    }
    for i in 0..2 {
        emqx.valued(&authn(&format!("mallory-{i}"), true, Version::V3)).await.unwrap();
    }
    for topic in ["a/1", "a/2", "b/1"] {
        emqx.valued(&publish(topic, "x", Version::V3)).await.unwrap();
    }
    for i in 0..4 {
        let req = model::SessionCreatedRequest {
            clientinfo: client_info(&format!("c{i}")),
            meta: meta(Version::V3, "emqxcl"),
        };
        emqx.notify(&req).await.unwrap();
    }
    assert_eq!(audit.wait_for(Hook::SessionCreated, 4, Duration::from_secs(5)).await.len(), 4);
    // The delivery counter is bumped after the provider's answer arrives: wait for it.
    let p = gw.gateway.provider("audit").unwrap();
    p.drain(tokio::time::Instant::now() + Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_exactly() {
    let (_auth, _publisher, audit, gw) = scenario().await;
    let admin = start_admin(&gw, None).await;
    drive(&gw, &audit).await;
    let (code, m) = get(admin.addr, "/metrics", None).await;
    assert_eq!(code, 200);
    let req = |hook: &str, outcome: &str| {
        value(&m, &format!("exhook_gateway_requests_total{{hook=\"{hook}\",outcome=\"{outcome}\",tenant=\"default\"}}"))
    };
    let call = |p: &str, hook: &str, result: &str| {
        value(
            &m,
            &format!("exhook_gateway_provider_calls_total{{hook=\"{hook}\",provider=\"{p}\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(req("client.authenticate", "continue"), 3.0);
    assert_eq!(req("client.authenticate", "stop"), 2.0);
    assert_eq!(req("message.publish", "continue"), 2.0);
    assert_eq!(req("message.publish", "ignore"), 1.0);
    assert_eq!(req("session.created", "ack"), 4.0);
    assert_eq!(call("auth", "client.authenticate", "continue"), 3.0);
    assert_eq!(call("auth", "client.authenticate", "stop"), 2.0);
    assert_eq!(call("publisher", "message.publish", "continue"), 2.0);
    assert_eq!(call("publisher", "message.publish", "filtered"), 1.0);
    assert_eq!(call("audit", "session.created", "ok"), 4.0);
    let decided = |by: &str| {
        value(
            &m,
            &format!(
                "exhook_gateway_chain_decisions_total{{decided_by=\"{by}\",hook=\"client.authenticate\",tenant=\"default\"}}"
            ),
        )
    };
    assert_eq!(decided("auth"), 2.0);
    assert_eq!(decided("none"), 3.0);
    assert_eq!(
        value(&m, "exhook_gateway_request_duration_seconds_count{hook=\"client.authenticate\",tenant=\"default\"}"),
        5.0
    );
    assert_eq!(
        value(
            &m,
            "exhook_gateway_provider_call_duration_seconds_count{hook=\"client.authenticate\",provider=\"auth\"}"
        ),
        5.0
    );
    for p in ["auth", "publisher", "audit"] {
        assert_eq!(value(&m, &format!("exhook_gateway_provider_up{{provider=\"{p}\"}}")), 1.0, "{p}");
        assert_eq!(value(&m, &format!("exhook_gateway_provider_breaker_state{{provider=\"{p}\"}}")), 0.0);
        assert_eq!(value(&m, &format!("exhook_gateway_provider_inflight{{provider=\"{p}\"}}")), 0.0);
        assert_eq!(value(&m, &format!("exhook_gateway_notifications_queued{{provider=\"{p}\"}}")), 0.0);
    }
    assert!(m.contains("exhook_gateway_build_info{version=\""));
    for secret in ["s3cret", "alice-", "mallory-"] {
        assert!(!m.contains(secret), "metrics must not carry request data ({secret})");
    }
    promtool_check_metrics(&m);
}

/// The tool, or a failure unless the run skips it explicitly (`EXHOOK_SKIP_TOOLS`).
fn require(name: &str, package: &str) -> Option<PathBuf> {
    exhook_deploy_check::require_tool("exhook-gateway admin tests", name, package)
}

fn promtool_check_metrics(text: &str) {
    let Some(promtool) = require("promtool", "prometheus") else { return };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_api_readiness_and_token() {
    let (_auth, _publisher, audit, gw) = scenario().await;
    let admin = start_admin(&gw, Some("t0ken")).await;
    assert_eq!(get(admin.addr, "/healthz", None).await, (200, "ok\n".to_string()));
    assert_eq!(get(admin.addr, "/metrics", None).await.0, 401);
    assert_eq!(get(admin.addr, "/metrics", Some("wrong")).await.0, 401);
    assert_eq!(get(admin.addr, "/api/v1/status", None).await.0, 401);
    // Nothing loaded yet (no EMQX, no background loading): not ready, with the reason.
    let (code, body) = get(admin.addr, "/readyz", Some("t0ken")).await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no provider is loaded yet"), "{body}");
    drive(&gw, &audit).await;
    assert_eq!(get(admin.addr, "/readyz", Some("t0ken")).await.0, 200);
    let (code, body) = get(admin.addr, "/api/v1/status", Some("t0ken")).await;
    assert_eq!(code, 200);
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    let providers = s["providers"].as_array().unwrap();
    assert_eq!(providers.len(), 3);
    let auth = &providers[0];
    assert_eq!(auth["name"], "auth");
    assert_eq!(auth["state"], "loaded");
    assert_eq!(auth["breaker"], "closed");
    assert_eq!(auth["version"], "v3");
    assert_eq!(auth["hooks"], serde_json::json!(["client.authenticate"]));
    assert_eq!(auth["calls_ok"], 5, "5 authenticate calls (OnProviderLoaded is not counted)");
    let publisher = &providers[1];
    assert_eq!(publisher["topics"]["message.publish"], serde_json::json!(["a/#"]));
    assert_eq!(publisher["topic_counts"]["message.publish"], 1);
    assert_eq!(publisher["protocol"], "v2");
    let chains = s["tenants"][0]["chains"].as_array().unwrap();
    assert!(chains.iter().any(|c| c["hook"] == "session.created" && c["providers"] == serde_json::json!(["audit"])));
    assert!(!body.contains("s3cret"), "the status API must never include passwords");
    let (code, page) = get(admin.addr, "/", None).await;
    assert_eq!(code, 200);
    assert!(page.contains("<table id=\"providers\">"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_status_page_renders_in_chromium() {
    let Some(chromium) = require("chromium", "chromium") else { return };
    let (_auth, _publisher, audit, gw) = scenario().await;
    let admin = start_admin(&gw, None).await;
    drive(&gw, &audit).await;
    // Live traffic while the page renders, so the rates and latencies move.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let emqx = gw.emqx(Version::V3).await;
    let traffic = tokio::spawn(async move {
        for i in 0..20_000u32 {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            let _ = emqx.valued(&authn(&format!("alice-{}", i % 50), true, Version::V3)).await;
            let _ = emqx.valued(&publish(if i % 3 == 0 { "b/1" } else { "a/1" }, "x", Version::V3)).await;
        }
    });
    let url = format!("http://{}/", admin.addr);
    let profile = std::env::temp_dir().join(format!("exhook-chromium-{}", std::process::id()));
    let common = |extra: &[&str]| {
        let mut c = Command::new(&chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url);
        c
    };
    // Chromium blocks; run it off the async workers.
    let dom = tokio::task::spawn_blocking({
        let mut c = common(&["--dump-dom"]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    for name in ["auth", "publisher", "audit"] {
        assert!(html.contains(&format!("data-provider=\"{name}\"")), "row for {name} missing in:\n{html}");
    }
    assert!(html.contains(">loaded<"), "{html}");
    assert!(html.contains("data-hook=\"message.publish\""), "{html}");
    assert!(html.contains("<div id=\"error\"></div>"), "the page reported an error:\n{html}");
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status-page.png");
    let out = tokio::task::spawn_blocking({
        let mut c = common(&["--window-size=1400,600", &format!("--screenshot={}", shot.display())]);
        move || c.output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "screenshot not written");
    let _ = stop_tx.send(());
    traffic.await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_gateway_exports_every_family_from_the_first_scrape() {
    // No EMQX call, no provider answer, no reload yet: every family the dashboard and the
    // alert rules query (all of METRIC_NAMES, checked against deploy/ by exhook-deploy-check)
    // is already there, at 0, with the label values the configuration makes known.
    let toml = format!(
        "{}{}[chains]\n\"client.authenticate\" = [\"auth\", \"audit\"]\n\"session.created\" = [\"audit\"]\n",
        provider("auth", "http://127.0.0.1:1", "v3", "1s", "deny"),
        provider("audit", "http://127.0.0.1:2", "v1", "1s", "ignore"),
    );
    let gw = TestGateway::start(&toml).await;
    let admin = start_admin(&gw, None).await;
    let (code, m) = get(admin.addr, "/metrics", None).await;
    assert_eq!(code, 200);
    let families: std::collections::BTreeSet<&str> =
        m.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let missing: Vec<_> = exhook_metrics::METRIC_NAMES.iter().filter(|n| !families.contains(**n)).collect();
    assert!(missing.is_empty(), "families missing from the first scrape: {missing:?}\n{m}");
    for series in [
        r#"exhook_gateway_config_reloads_total{result="failure"} 0"#,
        r#"exhook_gateway_notifications_dropped_total{provider="audit",reason="queue_full"} 0"#,
        r#"exhook_gateway_notifications_dropped_total{provider="auth",reason="queue_bytes"} 0"#,
        r#"exhook_gateway_requests_total{hook="client.authenticate",outcome="denied_by_failure",tenant="default"} 0"#,
        r#"exhook_gateway_requests_total{hook="session.created",outcome="ack",tenant="default"} 0"#,
        r#"exhook_gateway_chain_decisions_total{decided_by="audit",hook="client.authenticate",tenant="default"} 0"#,
        r#"exhook_gateway_provider_calls_total{hook="client.authenticate",provider="auth",result="timeout"} 0"#,
        r#"exhook_gateway_provider_calls_total{hook="session.created",provider="audit",result="ok"} 0"#,
        r#"exhook_gateway_provider_breaker_state{provider="auth"} 0"#,
        r#"exhook_gateway_limit_exceeded_total{limit="request_bytes"} 0"#,
    ] {
        assert!(m.lines().any(|l| l == series), "missing {series}");
    }
    // Only what can happen: no "ok" result for a valued hook, no "continue" for a notification.
    assert!(!m.contains(r#"hook="client.authenticate",provider="auth",result="ok""#));
    assert!(!m.contains(r#"hook="session.created",provider="audit",result="continue""#));
    promtool_check_metrics(&m);
}

/// A provider registering thousands of filters: the status report lists the first
/// `TOPICS_SHOWN` of each hook and counts them all (the page polls it every second).
#[tokio::test]
async fn status_report_bounds_listed_topic_filters() {
    let filters: Vec<String> = (0..150).map(|i| format!("fleet/{i}/#")).collect();
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    let publisher = SimProvider::builder(Version::V3).hook_topics("message.publish", &refs).start().await.unwrap();
    let gw = TestGateway::start(&provider("publisher", &publisher.url(), "v3", "1s", "ignore")).await;
    let _ = gw.loaded_emqx(Version::V3).await;
    let admin = start_admin(&gw, None).await;
    let (code, body) = get(admin.addr, "/api/v1/status", None).await;
    assert_eq!(code, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    let p = &s["providers"][0];
    assert_eq!(p["topic_counts"]["message.publish"], 150);
    let listed = p["topics"]["message.publish"].as_array().unwrap();
    assert_eq!(listed.len(), exhook_admin::TOPICS_SHOWN);
    assert_eq!(listed[0], "fleet/0/#");
}
