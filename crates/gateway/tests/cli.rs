//! The binary: `check`, `run` with a bad configuration, and the demo.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_exhook-gateway"))
}

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exhook-gateway-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_prints_resolved_chains_of_the_shipped_config() {
    let out = bin().args(["check", "--config"]).arg(repo_file("config/gateway.toml")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OK (3 providers, 4 tenants)"), "{stdout}");
    // Which file defined which provider and tenant (config/teams.d/ holds one team).
    let main = repo_file("config/gateway.toml").display().to_string();
    let team = repo_file("config/teams.d/factory-c.toml").display().to_string();
    for (line, file) in [
        ("provider auth ", &main),
        ("provider factory-c-rules ", &team),
        ("tenant   factory-a ", &main),
        ("tenant   factory-c ", &team),
    ] {
        let found = stdout.lines().find(|l| l.trim_start().starts_with(line));
        assert!(found.is_some_and(|l| l.trim_end().ends_with(file.as_str())), "{line}in {file}: {stdout}");
    }
    assert!(stdout.contains("tenant default (cluster_name: none: unknown clusters are refused)"), "{stdout}");
    assert!(stdout.contains("tenant factory-a (cluster_name: emqx-factory-a)"), "{stdout}");
    // Exactly which providers each tenant can reach.
    let reaches: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("reaches ")).collect();
    assert_eq!(
        reaches,
        [
            "  reaches no provider",
            "  reaches auth, audit (and no other provider)",
            "  reaches audit (and no other provider)",
            "  reaches audit, factory-c-rules (and no other provider)"
        ],
        "{stdout}"
    );
    let authn: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("client.authenticate")).collect();
    assert_eq!(authn.len(), 4, "{stdout}");
    assert!(authn[0].ends_with("(none)"), "{}", authn[0]);
    assert!(authn[1].contains("chain") && authn[1].ends_with("auth -> audit"), "{}", authn[1]);
    assert!(authn[2].contains("registered") && authn[2].ends_with("audit"), "{}", authn[2]);
    assert!(authn[3].contains("chain") && authn[3].ends_with("factory-c-rules"), "{}", authn[3]);
}

#[test]
fn bad_config_is_refused_with_every_key_named() {
    let path = temp_config(
        "bad.toml",
        r#"
[[providers]]
name = "auth"
url = "http://127.0.0.1"
timeout = "fast"

[chains]
"client.authenticate" = ["auth", "ghost"]
"client.nonsense" = ["auth"]
"#,
    );
    for cmd in ["check", "run"] {
        let out = bin().args([cmd, "--config"]).arg(&path).stdin(Stdio::null()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{cmd} must fail: {stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{cmd}: names the file: {stderr}");
        for key in [
            "providers[0] (auth).url",
            "providers[0] (auth).timeout: \"fast\"",
            "names unknown provider \"ghost\"",
            "chains.\"client.nonsense\": unknown hook",
        ] {
            assert!(stderr.contains(key), "{cmd}: missing {key:?} in {stderr}");
        }
    }
    let unknown_key = temp_config("unknown.toml", "[server]\nlisten = \"127.0.0.1:0\"\nlistn = 1\n");
    let out = bin().args(["check", "--config"]).arg(&unknown_key).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listn"));
    let out = bin().args(["check", "--config", "/nonexistent/gateway.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/gateway.toml: cannot read"));
}

#[test]
#[cfg(feature = "demo")]
fn demo_runs_a_session_through_three_packages() {
    for emqx in ["v1", "v3"] {
        let out = bin().args(["demo", "--emqx", emqx]).stdin(Stdio::null()).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        for expected in [
            "denylist   [v3] IGNORE",
            "<= EMQX gets STOP_AND_RETURN false",
            r#"rewriter   [v2] CONTINUE topic="sensors/raw/1" payload="{\"data\":\"21.5C\""#,
            "rewriter   [v2] skipped (topic filter does not match)",
            "audit [v1] received, in order:",
        ] {
            assert!(stdout.contains(expected), "emqx {emqx}: missing {expected:?} in\n{stdout}");
        }
        assert!(!stdout.contains("not-shown"), "the demo must not print passwords");
    }
}
