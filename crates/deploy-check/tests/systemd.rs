//! `deploy/systemd/exhook-gateway.service`: the hardening the project promises is in the file,
//! the stop timeout outlasts the drain, `systemd-analyze verify` accepts it without a warning and
//! `systemd-analyze security --offline=true` rates its exposure at most 2.0 ("OK").
//!
//! Needs systemd-analyze (Debian: systemd) unless `EXHOOK_SKIP_TOOLS=systemd-analyze`. No running
//! systemd is needed (both commands read the file offline); `security --offline` needs systemd 250
//! or later: an older one is reported loudly and only `verify` runs.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use exhook_deploy_check::require_tool;

const UNIT: &str = "deploy/systemd/exhook-gateway.service";
const README: &str = "deploy/systemd/README.md";
/// The highest exposure `systemd-analyze security` may give the unit.
const MAX_EXPOSURE: f64 = 2.0;
/// Where the unit expects the binary.
const BINARY: &str = "/usr/local/bin/exhook-gateway";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn say(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

fn banner(text: &str) {
    let bar = "!".repeat(80);
    say(&format!("\n{bar}\n!!! {text}\n{bar}\n"));
}

fn unit() -> String {
    std::fs::read_to_string(workspace_root().join(UNIT)).unwrap()
}

/// Every `Key=value` of the unit, in order (comments and sections left out).
fn settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A `[server] drain_timeout` value or a unit's time span: "10s", "1m", "1min 30s", "500ms".
fn duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    for part in text.split_whitespace() {
        let split = part.find(|c: char| !c.is_ascii_digit()).unwrap_or(part.len());
        let (n, unit) = part.split_at(split);
        let n: u64 = n.parse().unwrap_or_else(|_| panic!("not a duration: {text}"));
        total += match unit {
            "ms" => Duration::from_millis(n),
            "" | "s" | "sec" => Duration::from_secs(n),
            "m" | "min" => Duration::from_secs(60 * n),
            "h" => Duration::from_secs(3600 * n),
            _ => panic!("unknown unit in {text}"),
        };
    }
    total
}

#[test]
fn unit_is_hardened() {
    let text = unit();
    let settings = settings(&text);
    let values = |key: &str| settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
    for (key, value) in [
        ("Type", "exec"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("ConfigurationDirectory", "exhook-gateway"),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert!(values(key).contains(&value), "{UNIT}: {key}={value} (has {:?})", values(key));
    }
    for key in ["MemoryMax", "LimitNOFILE", "TasksMax"] {
        assert!(!values(key).is_empty(), "{UNIT}: sets {key}");
    }
    let exec = values("ExecStart");
    assert_eq!(exec.len(), 1, "{UNIT}: one ExecStart");
    assert!(
        exec[0].starts_with(BINARY) && exec[0].ends_with("run --config /etc/exhook-gateway/gateway.toml"),
        "{UNIT}: ExecStart runs {BINARY} on /etc/exhook-gateway/gateway.toml: {}",
        exec[0]
    );

    // The stop timeout outlasts the longest drain of the shipped configurations.
    let stop = duration(values("TimeoutStopSec").first().expect("TimeoutStopSec"));
    for config in ["config/gateway.toml", "deploy/container/gateway.toml"] {
        let toml = std::fs::read_to_string(workspace_root().join(config)).unwrap();
        let drain = toml
            .lines()
            .find_map(|l| l.trim().strip_prefix("drain_timeout"))
            .and_then(|rest| rest.split('"').nth(1))
            .map(duration)
            .unwrap_or(Duration::from_secs(10)); // the documented default
        assert!(stop > drain, "{UNIT}: TimeoutStopSec ({stop:?}) must exceed {config}'s drain_timeout ({drain:?})");
    }

    let readme = std::fs::read_to_string(workspace_root().join(README)).unwrap();
    for needle in ["systemctl reload", "DynamicUser", "systemd-analyze security", "TimeoutStopSec"] {
        assert!(readme.contains(needle), "{README} mentions {needle}");
    }
}

/// systemd's version number ("systemd 252 (252.38-1~deb12u1)" → 252).
fn systemd_version(analyze: &Path) -> Option<u32> {
    let out = Command::new(analyze).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn systemd_analyze_accepts_the_unit() {
    const TEST: &str = "systemd_analyze_accepts_the_unit";
    let Some(analyze) = require_tool(TEST, "systemd-analyze", "systemd") else { return };

    // `verify` also checks that ExecStart's binary is executable, which is a fact of the machine
    // it is installed on, not of the unit: point a copy of the unit at an executable stand-in.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("systemd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stand_in = dir.join("exhook-gateway");
    std::fs::copy("/bin/true", &stand_in).expect("copy /bin/true as the stand-in binary");
    let copy = dir.join("exhook-gateway.service");
    std::fs::write(&copy, unit().replace(BINARY, stand_in.to_str().unwrap())).unwrap();

    let verify = Command::new(&analyze).arg("verify").arg(&copy).output().expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {UNIT}: {}\n{stderr}",
        verify.status
    );

    let version = systemd_version(&analyze);
    let shown = version.map_or_else(|| "of an unknown version".to_string(), |v| v.to_string());
    say(&format!("\n== systemd ({TEST}): systemd {shown}; systemd-analyze verify {UNIT}: OK, no warnings"));
    if version.is_none_or(|v| v < 250) {
        banner(&format!(
            "{TEST}: NOT CHECKED: the exposure score. systemd-analyze security --offline needs systemd >= 250, \
             this machine's is {shown}"
        ));
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let security = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        security.status.success(),
        "systemd-analyze security --offline=true {UNIT}: {}\n{report}\n{}",
        security.status,
        String::from_utf8_lossy(&security.stderr)
    );
    let overall = report.lines().find(|l| l.contains("Overall exposure level")).expect("an overall exposure line");
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in {overall:?}"));
    let open: Vec<&str> = report.lines().filter(|l| l.starts_with('✗')).map(str::trim_end).collect();
    say(&format!(
        "  systemd-analyze security --offline=true: exposure {score} (at most {MAX_EXPOSURE})\n  \
         settings it still counts against the unit:\n    {}\n",
        open.join("\n    ")
    ));
    assert!(score <= MAX_EXPOSURE, "{UNIT}: exposure {score} > {MAX_EXPOSURE}:\n{report}");
}
