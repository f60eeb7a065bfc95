//! Checks `deploy/`: the Grafana dashboard and the Prometheus alert rules against the metrics the
//! gateway really exports (`exhook_metrics::METRIC_NAMES`), and their PromQL with `promtool`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use exhook_metrics::METRIC_NAMES;
use serde_json::{Value, json};

const DASHBOARD: &str = "deploy/grafana/exhook-gateway.json";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const README: &str = "deploy/README.md";
/// promtool unit tests of the alerts, next to this file.
const ALERTS_TEST: &str = "tests/alerts_test.yml";
/// The data-source reference every panel and query uses.
const DATASOURCE_UID: &str = "${datasource}";
/// Alerts the rule file must define.
const REQUIRED_ALERTS: &[&str] = &[
    "ExhookProviderDown",
    "ExhookBreakerOpen",
    "ExhookDeniedByFailure",
    "ExhookDeniedByFailureHigh",
    "ExhookLatencyP99High",
    "ExhookNotificationsDropped",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, including those nested in collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("dashboard has a panels array") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

fn panel_name(panel: &Value) -> String {
    format!("panel {} ({})", panel["id"], panel["title"].as_str().unwrap_or("untitled"))
}

/// (panel id, refId, expr) of every query of every panel.
fn dashboard_exprs(dashboard: &Value) -> Vec<(u64, String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("{} has no numeric id", panel_name(panel)));
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let ref_id = target["refId"].as_str().unwrap_or("?").to_string();
                out.push((id, ref_id, expr.to_string()));
            }
        }
    }
    out
}

/// Metric families referenced in `text`: identifiers `exhook_gateway_[a-z_]+`, with a histogram's
/// `_bucket`/`_sum`/`_count` suffix removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    const PREFIX: &str = "exhook_gateway_";
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = BTreeSet::new();
    for (start, _) in text.match_indices(PREFIX) {
        if text[..start].chars().next_back().is_some_and(is_ident) {
            continue; // inside a longer identifier
        }
        let rest = &text[start + PREFIX.len()..];
        let len = rest.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(rest.len());
        let name = &text[start..start + PREFIX.len() + len];
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(family.to_string());
    }
    out
}

fn assert_exported(what: &str, used: &BTreeSet<String>) {
    let unknown: Vec<_> = used.iter().filter(|m| !METRIC_NAMES.contains(&m.as_str())).collect();
    assert!(
        unknown.is_empty(),
        "{what} uses metrics the gateway does not export: {unknown:?} (known: {METRIC_NAMES:?})"
    );
}

/// `promtool`: required (see `exhook_deploy_check::require_tool`).
fn promtool(test: &str) -> Option<PathBuf> {
    exhook_deploy_check::require_tool(test, "promtool", "prometheus")
}

fn run_promtool(promtool: &Path, args: &[&str], dir: &Path) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", promtool.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    println!("promtool {args:?}:\n{stdout}{stderr}");
}

/// Names of the alerts in the rule file (`- alert: Name` lines).
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(|name| name.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
        .collect()
}

#[test]
fn dashboard_structure() {
    let d = dashboard();
    assert_eq!(d["uid"], "exhook-gateway");
    assert_eq!(d["title"], "exhook-gateway");
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion {}", d["schemaVersion"]);

    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().expect("variable name"), v))
        .collect();
    let ds = vars.get("datasource").expect("a datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for (name, metric_label) in [("tenant", "tenant)"), ("provider", "provider)")] {
        let v = vars.get(name).unwrap_or_else(|| panic!("template variable {name}"));
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["multi"], true, "{name} is multi-select");
        assert_eq!(v["includeAll"], true, "{name} includes All");
        assert_eq!(v["datasource"]["uid"], DATASOURCE_UID, "{name} queries ${{datasource}}");
        let query = v["definition"].as_str().expect("variable definition");
        assert!(query.starts_with("label_values(") && query.ends_with(metric_label), "{name}: {query}");
        let q = v["query"].as_str().or(v["query"]["query"].as_str()).expect("variable query");
        assert_eq!(q, query, "{name}: query and definition agree");
    }

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    let mut rows = 0;
    for panel in &all {
        let name = panel_name(panel);
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("{name}: no numeric id"));
        assert!(ids.insert(id), "{name}: duplicate id");
        let grid = &panel["gridPos"];
        for k in ["h", "w", "x", "y"] {
            assert!(grid[k].is_u64(), "{name}: gridPos.{k} missing");
        }
        let (x, w) = (grid["x"].as_u64().unwrap(), grid["w"].as_u64().unwrap());
        assert!(w > 0 && x + w <= 24, "{name}: gridPos outside the 24-column grid");
        assert!(panel["description"].as_str().is_some_and(|s| !s.trim().is_empty()), "{name}: no description");
        if is_row(panel) {
            rows += 1;
            continue;
        }
        assert!(panel["type"].as_str().is_some_and(|t| !t.is_empty()), "{name}: no type");
        // A panel's own data source, if set, must be the variable (else it inherits the default).
        if !panel["datasource"].is_null() {
            assert_eq!(panel["datasource"]["uid"], DATASOURCE_UID, "{name}: datasource");
        }
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{name}: no targets"));
        assert!(
            targets.iter().any(|t| t["expr"].as_str().is_some_and(|e| !e.trim().is_empty())),
            "{name}: no query with a non-empty expr"
        );
        for t in targets {
            if !t["datasource"].is_null() {
                assert_eq!(t["datasource"]["uid"], DATASOURCE_UID, "{name}: target datasource");
            } else {
                assert!(!panel["datasource"].is_null(), "{name}: a target without data source in a panel without one");
            }
        }
    }
    let row_titles: Vec<_> = all.iter().filter(|p| is_row(p)).filter_map(|p| p["title"].as_str()).collect();
    assert_eq!(row_titles, ["Overview", "Providers", "Notifications", "Load shedding", "Config"]);
    assert!(all.len() - rows >= 15, "expected at least 15 panels, found {}", all.len() - rows);

    // The breaker state is readable as words, not 0/1/2.
    let breaker = all
        .iter()
        .find(|p| p["targets"].to_string().contains("exhook_gateway_provider_breaker_state"))
        .expect("a breaker state panel");
    assert_eq!(breaker["type"], "state-timeline");
    let mappings = breaker["fieldConfig"]["defaults"]["mappings"].to_string();
    for word in ["closed", "half-open", "open"] {
        assert!(mappings.contains(&format!("\"{word}\"")), "breaker panel maps a value to {word}: {mappings}");
    }
}

#[test]
fn dashboard_metrics_are_exported() {
    let d = dashboard();
    let exprs = dashboard_exprs(&d);
    let mut used = BTreeSet::new();
    for (id, ref_id, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "panel {id} query {ref_id} uses no exhook_gateway_ metric: {expr}");
        used.extend(names);
    }
    for var in d["templating"]["list"].as_array().into_iter().flatten() {
        used.extend(metric_names(var["definition"].as_str().unwrap_or_default()));
    }
    assert_exported(DASHBOARD, &used);
    let unused: Vec<_> = METRIC_NAMES.iter().filter(|m| !used.contains(**m)).collect();
    assert!(unused.is_empty(), "metrics exported but shown on no dashboard panel: {unused:?}");

    // Selectors follow the variables, and rates the scrape interval.
    for (id, ref_id, expr) in &exprs {
        if expr.contains("rate(") || expr.contains("increase(") {
            assert!(expr.contains("[$__rate_interval]"), "panel {id} {ref_id}: use $__rate_interval: {expr}");
        }
        if metric_names(expr).iter().any(|m| m.starts_with("exhook_gateway_provider_") || m.contains("notifications")) {
            assert!(expr.contains(r#"provider=~"$provider""#), "panel {id} {ref_id}: filter on $provider: {expr}");
        }
        if metric_names(expr).iter().any(|m| m == "exhook_gateway_requests_total" || m.contains("request_duration")) {
            assert!(expr.contains(r#"tenant=~"$tenant""#), "panel {id} {ref_id}: filter on $tenant: {expr}");
        }
    }
}

#[test]
fn alerts_reference_exported_metrics() {
    let rules = read(ALERTS);
    let used = metric_names(&rules);
    assert!(!used.is_empty(), "{ALERTS} references no exhook_gateway_ metric");
    assert_exported(ALERTS, &used);

    let names = alert_names(&rules);
    for required in REQUIRED_ALERTS {
        assert!(names.iter().any(|n| n == required), "{ALERTS} lacks alert {required} (has {names:?})");
    }
    assert!(rules.contains("- name: exhook-gateway"), "{ALERTS}: group exhook-gateway");
    // Each alert block carries a severity and both annotations.
    for block in rules.split("- alert:").skip(1) {
        let name = block.lines().next().unwrap_or_default().trim();
        for key in ["expr:", "severity:", "summary:", "description:"] {
            assert!(block.contains(key), "alert {name} has no {key}");
        }
    }
}

#[test]
fn readme_lists_every_alert() {
    let readme = read(README);
    for name in alert_names(&read(ALERTS)) {
        assert!(readme.contains(&format!("`{name}`")), "{README} does not list alert `{name}`");
    }
    for needle in ["exhook-gateway.json", "alerts.yml", "/metrics", "127.0.0.1:9100", "scrape_configs"] {
        assert!(readme.contains(needle), "{README} does not mention {needle}");
    }
}

#[test]
fn promql_parses() {
    let Some(promtool) = promtool("promql_parses") else { return };

    // Every dashboard query as a recording rule, with Grafana's variables filled in.
    let rules: Vec<Value> = dashboard_exprs(&dashboard())
        .into_iter()
        .map(|(id, ref_id, expr)| {
            let expr = expr.replace("$__rate_interval", "5m").replace("$tenant", ".*").replace("$provider", ".*");
            assert!(!expr.contains('$'), "panel {id} {ref_id}: unknown variable left in {expr}");
            json!({ "record": format!("exhook_dashboard:panel_{id}:{}", ref_id.to_lowercase()), "expr": expr })
        })
        .collect();
    assert!(!rules.is_empty());
    // JSON is YAML: promtool reads it as a rule file.
    let file = json!({ "groups": [{ "name": "exhook-gateway-dashboard", "rules": rules }] });
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exhook-dashboard-rules.yml");
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).expect("writing the temp rules file");
    run_promtool(&promtool, &["check", "rules", path.to_str().unwrap()], &workspace_root());

    run_promtool(&promtool, &["check", "rules", ALERTS], &workspace_root());
}

#[test]
fn alerts_fire_as_intended() {
    let Some(promtool) = promtool("alerts_fire_as_intended") else { return };
    run_promtool(&promtool, &["test", "rules", ALERTS_TEST], Path::new(env!("CARGO_MANIFEST_DIR")));
}

#[test]
fn metric_name_extraction() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(exhook_gateway_request_duration_seconds_bucket{x="y"}[5m])))
           / exhook_gateway_requests_total + exhook_gateway_provider_call_duration_seconds_count
           + my_exhook_gateway_other + exhook_gateway_request_duration_seconds_sum"#,
    );
    let expected = [
        "exhook_gateway_provider_call_duration_seconds",
        "exhook_gateway_request_duration_seconds",
        "exhook_gateway_requests_total",
    ];
    assert_eq!(names.iter().map(String::as_str).collect::<Vec<_>>(), expected);
}
