//! Test-only crate: `tests/deploy.rs` checks the files under `deploy/`.
//!
//! * `deploy/grafana/exhook-gateway.json`: structure (uid, variables, panel ids, data source,
//!   layout, queries), every metric it queries is exported (`exhook_metrics::METRIC_NAMES`) and
//!   every exported metric is shown somewhere.
//! * `deploy/prometheus/alerts.yml`: only exported metrics; `promtool check rules` passes; the
//!   alerts fire as intended (`promtool test rules tests/alerts_test.yml`).
//! * Every dashboard query parses (`promtool check rules` on a generated recording-rule file).
//!
//! `promtool` (Debian package `prometheus`) is required when `CI` is set; elsewhere the
//! promtool checks are skipped with a notice when it is missing.
