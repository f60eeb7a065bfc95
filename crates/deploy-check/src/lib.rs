//! Test-only crate: `tests/deploy.rs` checks the files under `deploy/`.
//!
//! * `deploy/grafana/exhook-gateway.json`: structure (uid, variables, panel ids, data source,
//!   layout, queries), every metric it queries is exported (`exhook_metrics::METRIC_NAMES`) and
//!   every exported metric is shown somewhere.
//! * `deploy/prometheus/alerts.yml`: only exported metrics; `promtool check rules` passes; the
//!   alerts fire as intended (`promtool test rules tests/alerts_test.yml`).
//! * Every dashboard query parses (`promtool check rules` on a generated recording-rule file).
//!
//! `tests/kubernetes.rs` checks `deploy/kubernetes/` (kustomize, kubernetes-validate, checkov,
//! yamllint, the ConfigMap's gateway.toml) and `deploy/emqx/`.
//!
//! It also owns [`require_tool`] (and [`require_pip_tool`]), the one rule for tests that drive an external tool
//! (promtool, Chromium): a missing tool is a failure, unless the run names it in
//! `EXHOOK_SKIP_TOOLS` — then the test says loudly that it skipped.

use std::io::Write as _;
use std::path::PathBuf;

/// The environment variable that lets a run skip tests needing named tools, e.g.
/// `EXHOOK_SKIP_TOOLS=promtool,chromium`.
pub const SKIP_TOOLS: &str = "EXHOOK_SKIP_TOOLS";

/// The path of `name` on `PATH`. Missing: the calling test fails (`scripts/test.sh` installs
/// Debian's `package`), unless [`SKIP_TOOLS`] lists `name`: then `None`, announced on stderr
/// so the run says what it did not check.
pub fn require_tool(test: &str, name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_default();
    if found.is_some() {
        return found;
    }
    let skipped = std::env::var(SKIP_TOOLS).is_ok_and(|v| v.split(',').any(|t| t.trim() == name));
    assert!(
        skipped,
        "{test}: {name} is not on PATH. Install it (Debian: apt-get install -y {package}; scripts/test.sh does) \
         or skip this check explicitly with {SKIP_TOOLS}={name}"
    );
    // Straight to stderr, not eprintln!: the test harness would capture (hide) that on success.
    let bar = "!".repeat(80);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!!! {test}: SKIPPED the {name} checks ({SKIP_TOOLS} names {name}).\n{bar}\n"
    );
    None
}

/// Where `scripts/test.sh` installs the Python tools the Kubernetes checks drive
/// (`kubernetes-validate`, `yamllint`, `checkov`): virtual environments under
/// `<workspace>/target/deploy-tools/`, one per tool set.
pub fn python_tools_dirs() -> Vec<PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/deploy-tools");
    ["venv", "checkov-venv"].iter().map(|v| root.join(v).join("bin")).collect()
}

/// Like [`require_tool`], for a tool from PyPI: found on `PATH` or in the virtual environments
/// `scripts/test.sh` makes ([`python_tools_dirs`]). Missing: the calling test fails, unless
/// [`SKIP_TOOLS`] lists `name` (then `None`, announced on stderr).
pub fn require_pip_tool(test: &str, name: &str, pip_package: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_default();
    if let Some(found) = on_path.or_else(|| python_tools_dirs().into_iter().map(|d| d.join(name)).find(|p| p.is_file()))
    {
        return Some(found);
    }
    let skipped = std::env::var(SKIP_TOOLS).is_ok_and(|v| v.split(',').any(|t| t.trim() == name));
    assert!(
        skipped,
        "{test}: {name} is neither on PATH nor in target/deploy-tools/. Run bash scripts/test.sh (it installs it: \
         pip install {pip_package} into a venv under target/deploy-tools/) or skip this check explicitly with \
         {SKIP_TOOLS}={name}"
    );
    let bar = "!".repeat(80);
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\n!!! {test}: SKIPPED the {name} checks ({SKIP_TOOLS} names {name}).\n{bar}\n"
    );
    None
}
