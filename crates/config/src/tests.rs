use std::path::Path;
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("test.toml"))
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems,
        other => panic!("expected invalid config, got {other:?}"),
    }
}

const TWO: &str = r#"
[[providers]]
name = "auth"
url = "http://127.0.0.1:9001"
protocol = "v3"
timeout = "300ms"
failed_action = "deny"

[[providers]]
name = "audit"
url = "http://127.0.0.1:9002"
timeout = "100ms"
failed_action = "ignore"
notify = "after-delivery"
"#;

#[test]
fn shipped_example_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/gateway.toml");
    let c = Config::load(&path).expect("config/gateway.toml must be valid");
    assert!(!c.providers.is_empty());
}

#[test]
fn defaults_and_types() {
    let c = parse(TWO).unwrap();
    assert_eq!(c.server.listen.unwrap().to_string(), "127.0.0.1:9000");
    assert_eq!(c.server.default_deadline, Duration::from_secs(5));
    assert_eq!(c.providers[0].protocol, Some(exhook_hooks::Version::V3));
    assert_eq!(c.providers[1].protocol, None);
    assert_eq!(c.providers[0].timeout, Duration::from_millis(300));
    assert_eq!(c.providers[1].failed_action, FailedAction::Ignore);
    assert_eq!(c.providers[1].notify, NotifyMode::AfterDelivery);
    assert_eq!(c.providers[0].queue_size, 1024);
    assert_eq!(c.tenants.len(), 1);
    assert_eq!(c.tenants[0].chain(Hook::ClientAuthenticate), &[0, 1]);
}

#[test]
fn chains_and_tenants_resolve() {
    let text = format!(
        r#"{TWO}
[chains]
"client.authenticate" = ["audit", "auth"]
"client.check_acl" = ["auth"]
"message.publish" = []

[[tenants]]
name = "factory-a"
cluster_names = ["emqx-factory-a", "emqx-factory-a2"]
providers = ["audit"]
[tenants.chains]
"client.authenticate" = ["auth"]
"#
    );
    let c = parse(&text).unwrap();
    let d = &c.tenants[0];
    assert_eq!(d.chain(Hook::ClientAuthenticate), &[1, 0]);
    assert_eq!(d.chain(Hook::ClientAuthorize), &[0]);
    assert!(d.chain(Hook::MessagePublish).is_empty());
    // With [[tenants]] the default tenant owns only what it names: no implicit routing.
    assert!(d.chain(Hook::SessionCreated).is_empty());
    assert_eq!(d.reachable, [0, 1]);
    assert_eq!(d.chain(Hook::ProviderLoaded), &[0, 1]);
    assert!(d.explicit.contains(Hook::MessagePublish));
    assert!(!d.explicit.contains(Hook::SessionCreated));
    let f = &c.tenants[1];
    assert_eq!(f.chain(Hook::ClientAuthenticate), &[0]);
    assert_eq!(f.chain(Hook::SessionCreated), &[1]);
    assert_eq!(f.reachable, [0, 1], "its providers and its chains' members");
    let shown = render_chains(&c);
    assert!(shown.contains("client.authenticate"), "{shown}");
    assert!(shown.contains("audit -> auth"), "{shown}");
    assert!(shown.contains("tenant factory-a (cluster_name: emqx-factory-a, emqx-factory-a2)"), "{shown}");
    assert!(shown.contains("tenant default (cluster_name: none: unknown clusters are refused)"), "{shown}");
    assert!(shown.contains("  reaches auth, audit (and no other provider)"), "{shown}");
}

#[test]
fn isolation_is_the_default() {
    // No [[tenants]]: everything is the default tenant and reaches every provider.
    let c = parse(TWO).unwrap();
    assert_eq!(c.tenants[0].reachable, [0, 1]);
    assert_eq!(c.tenants[0].chain(Hook::ClientAuthorize), &[0, 1]);
    assert_eq!(c.server.unknown_cluster, UnknownCluster::Reject);
    // With tenants: a tenant reaches exactly what it names, the default tenant too.
    let text = format!(
        r#"{TWO}
[server]
unknown_cluster = "default"
[default_tenant]
providers = ["audit"]
max_inflight = 7
[[tenants]]
name = "a"
cluster_names = ["ca"]
[tenants.chains]
"client.authorize" = ["auth"]
[[tenants]]
name = "b"
cluster_names = ["cb"]
providers = ["audit"]
"#
    );
    let c = parse(&text).unwrap();
    assert_eq!(c.server.unknown_cluster, UnknownCluster::Default);
    let (d, a, b) = (&c.tenants[0], &c.tenants[1], &c.tenants[2]);
    assert_eq!((d.reachable.as_slice(), d.max_inflight), (&[1][..], Some(7)));
    assert_eq!(a.reachable, [0]);
    assert!(a.chain(Hook::MessagePublish).is_empty() && a.chain(Hook::SessionCreated).is_empty());
    assert_eq!(a.chain(Hook::ProviderLoaded), &[0]);
    assert_eq!(b.reachable, [1]);
    assert_eq!(b.chain(Hook::ClientAuthenticate), &[1]);
    // A tenant that names nothing reaches nothing: refused, as are bad values.
    let text = format!(
        "{TWO}\n[server]\nunknown_cluster = \"maybe\"\n[default_tenant]\nproviders = [\"ghost\"]\n[[tenants]]\nname = \"t\"\ncluster_names = [\"c\"]\n"
    );
    let e = parse(&text).unwrap_err().to_string();
    assert!(e.contains("server.unknown_cluster: \"maybe\" must be reject or default"), "{e}");
    assert!(e.contains("default_tenant.providers: names unknown provider \"ghost\""), "{e}");
    assert!(e.contains("tenants[0] (t).providers: the tenant reaches no provider"), "{e}");
}

#[test]
fn bounds_have_safe_defaults_and_named_errors() {
    let c = parse(TWO).unwrap();
    assert_eq!(c.server.max_connections, 1024);
    assert_eq!(c.server.max_concurrent_streams, 1024);
    assert_eq!(c.server.max_request_bytes, 4 << 20);
    assert_eq!(c.providers[0].max_reply_bytes, 4 << 20);
    assert_eq!(c.providers[0].queue_bytes, 64 << 20);
    let text = "[server]\nmax_connections = 0\nmax_concurrent_streams = 2000000\nmax_request_bytes = 10\n[[providers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\nqueue_bytes = -1\nmax_reply_bytes = 99999999999\n";
    let e = parse(text).unwrap_err().to_string();
    for key in [
        "server.max_connections: 0 must be between 1 and 1000000",
        "server.max_concurrent_streams: 2000000",
        "server.max_request_bytes: 10 must be between 1024",
        "providers[0] (a).queue_bytes: -1",
        "providers[0] (a).max_reply_bytes: 99999999999",
    ] {
        assert!(e.contains(key), "{key} in {e}");
    }
}

#[test]
fn unknown_keys_are_rejected_with_location() {
    let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlissten = 3\n").unwrap_err().to_string();
    assert!(e.contains("test.toml") && e.contains("lissten"), "{e}");
    let e = parse(&format!("{TWO}\ncolour = \"red\"\n")).unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
    let e = parse("[[providers]]\nname = \"a\"\n").unwrap_err().to_string();
    assert!(e.contains("url"), "{e}");
}

#[test]
fn every_bad_value_is_named() {
    let text = r#"
[server]
listen = "nowhere"
default_deadline = "soon"

[[providers]]
name = "a b"
url = "ftp://x:1"
protocol = "v9"
timeout = "0ms"
failed_action = "maybe"
notify = "never"
queue_size = 0
queue_shards = 1000

[[providers]]
name = "dup"
url = "http://127.0.0.1"

[[providers]]
name = "dup"
url = "http://127.0.0.1:443"

[chains]
"client.authenticate" = ["dup", "ghost", "dup"]
"client.nope" = ["dup"]
"OnProviderLoaded" = []
"client.authorize" = []
"client.check_acl" = []

[[tenants]]
name = "default"
cluster_names = []
"#;
    let p = problems(text);
    let all = p.join("\n");
    for needle in [
        "server.listen: \"nowhere\"",
        "server.default_deadline: \"soon\"",
        "providers[0] (a b).name",
        "providers[0] (a b).url: \"ftp://x:1\" must start with http:// (h2c) or https:// (TLS)",
        "providers[0] (a b).protocol: \"v9\"",
        "providers[0] (a b).timeout: \"0ms\" must be greater than zero",
        "providers[0] (a b).failed_action: \"maybe\"",
        "providers[0] (a b).notify: \"never\"",
        "providers[0] (a b).queue_size: 0 must be between",
        "providers[0] (a b).queue_shards: 1000 must be between",
        "providers[1] (dup).url: \"http://127.0.0.1\" has no port",
        "providers[2].name: duplicate provider name \"dup\"",
        "chains.\"client.authenticate\": names unknown provider \"ghost\"",
        "chains.\"client.authenticate\": names provider \"dup\" twice",
        "chains.\"client.nope\": unknown hook",
        "chains.\"OnProviderLoaded\": unknown hook",
        "configured twice",
        "tenants[0] (default).name: duplicate tenant name",
        "tenants[0] (default).cluster_names: the tenant is unreachable",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

#[test]
fn cluster_name_claimed_twice() {
    let text = format!(
        "{TWO}\n[[tenants]]\nname = \"a\"\ncluster_names = [\"x\"]\n[[tenants]]\nname = \"b\"\ncluster_names = [\"x\"]\n"
    );
    let all = problems(&text).join("\n");
    assert!(all.contains("tenants[1] (b).cluster_names: \"x\" already selects tenant \"a\""), "{all}");
}

#[test]
fn tenant_chain_names_unknown_provider() {
    let text = format!(
        "{TWO}\n[[tenants]]\nname = \"t\"\ncluster_names = [\"c\"]\nproviders = [\"nope\"]\n[tenants.chains]\n\"message.publish\" = [\"ghost\"]\n"
    );
    let all = problems(&text).join("\n");
    assert!(all.contains("tenants[0] (t).providers: names unknown provider \"nope\""), "{all}");
    assert!(all.contains("tenants[0] (t).chains.\"message.publish\": names unknown provider \"ghost\""), "{all}");
}

#[test]
fn missing_file_is_named() {
    let e = Config::load(Path::new("/nonexistent/gw.toml")).unwrap_err().to_string();
    assert!(e.starts_with("/nonexistent/gw.toml: cannot read"), "{e}");
}

#[test]
fn resilience_and_admin_keys() {
    let text = r#"
[server]
drain_timeout = "3s"
worker_threads = 1

[admin]
listen = "127.0.0.1:0"

[[providers]]
name = "auth"
urls = ["http://127.0.0.1:9001", "http://127.0.0.1:9002"]
connections = 4
max_inflight = 100
health_interval = "1s"
eject_after = 3
eject_for = "2s"
[providers.breaker]
failure_rate = 0.25
minimum_calls = 10
window = "30s"
consecutive_failures = 0
open_duration = "1s"
half_open_probes = 1

[[tenants]]
name = "t"
cluster_names = ["c"]
providers = ["auth"]
max_inflight = 50
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.server.drain_timeout, Duration::from_secs(3));
    assert_eq!(c.server.worker_threads, Some(1));
    assert!(c.admin.enabled);
    assert_eq!(c.admin.listen.port(), 0);
    let p = &c.providers[0];
    assert_eq!(p.urls.len(), 2);
    assert_eq!((p.connections, p.max_inflight, p.eject_after), (4, 100, 3));
    assert_eq!(p.breaker.failure_rate, 0.25);
    assert_eq!(p.breaker.consecutive_failures, 0);
    assert_eq!(p.breaker.window, Duration::from_secs(30));
    assert_eq!(c.tenants[1].max_inflight, Some(50));
    assert_eq!(c.tenants[0].max_inflight, None);
    // Defaults.
    let d = parse(TWO).unwrap();
    assert_eq!(d.admin.listen.to_string(), "127.0.0.1:9100");
    assert_eq!(d.providers[0].connections, 2);
    assert_eq!(d.providers[0].breaker, BreakerSettings::default());
}

#[test]
fn bad_resilience_values_are_named() {
    let text = r#"
[admin]
listen = "everywhere"
token_file = "/nonexistent/token"

[[providers]]
name = "a"
url = "http://127.0.0.1:1"
urls = ["http://127.0.0.1:2"]

[[providers]]
name = "b"
urls = ["http://127.0.0.1:1", "http://127.0.0.1:1", "nope"]
connections = 0
[providers.breaker]
failure_rate = 1.5
half_open_probes = 0
window = "0s"

[[providers]]
name = "c"
urls = []

[[providers]]
name = "d"
"#;
    let all = problems(text).join("\n");
    for needle in [
        "admin.listen: \"everywhere\"",
        "admin.token_file: cannot read /nonexistent/token",
        "providers[0] (a).urls: set either url or urls, not both",
        "providers[1] (b).urls[1]: \"http://127.0.0.1:1\" is listed twice",
        "providers[1] (b).urls[2]: \"nope\"",
        "providers[1] (b).connections: 0 must be between",
        "providers[1] (b).breaker.failure_rate: 1.5",
        "providers[1] (b).breaker.half_open_probes: 0",
        "providers[1] (b).breaker.window: \"0s\" must be greater than zero",
        "providers[2] (c).urls: must list at least one URL",
        "providers[3] (d).url: missing",
    ] {
        assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
    }
}

mod tls {
    use exhook_testpki::{Ca, Leaf};

    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().unwrap();
            let ca = Ca::new("emqx CA");
            ca.write(dir.path(), "ca");
            ca.issue(&Leaf::new(&["gw.example.com"])).write(dir.path(), "server");
            ca.issue(&Leaf::new(&["other.example.com"])).write(dir.path(), "other");
            Pki { dir }
        }
        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }
    }

    #[test]
    fn server_tls_tenants_by_certificate_and_listener() {
        let pki = Pki::new();
        let text = format!(
            r#"
[server.tls]
listen = "127.0.0.1:9443"
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{ca}"
unknown_client = "default"

[[providers]]
name = "auth"
url = "https://auth.team-a.svc:9001"
[providers.tls]
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"
server_name = "auth.team-a.svc"

[[tenants]]
name = "factory-a"
client_cert_names = ["emqx-factory-a.example.com"]
providers = ["auth"]

[[tenants]]
name = "factory-b"
providers = ["auth"]
listen = "127.0.0.1:9101"
[tenants.tls]
cert_file = "{cert}"
key_file = "{key}"
"#,
            cert = pki.path("server.crt"),
            key = pki.path("server.key"),
            ca = pki.path("ca.crt"),
        );
        let c = parse(&text).expect("valid");
        assert_eq!(c.server.listen, None, "no plaintext listener unless asked for");
        let tls = c.server.tls.as_ref().unwrap();
        assert_eq!(tls.listen.port(), 9443);
        assert_eq!(tls.unknown_client, UnknownClient::Default);
        assert!(tls.files.client_ca_file.is_some());
        assert_eq!(c.tenants[1].client_cert_names, ["emqx-factory-a.example.com"]);
        let l = c.tenants[2].listener.as_ref().unwrap();
        assert_eq!(l.listen.port(), 9101);
        assert!(l.tls.as_ref().unwrap().client_ca_file.is_none());
        let ptls = c.providers[0].tls.as_ref().unwrap();
        assert_eq!(ptls.server_name.as_deref(), Some("auth.team-a.svc"));
    }

    #[test]
    fn bad_files_are_errors_naming_the_key() {
        let pki = Pki::new();
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:9443"
[server.tls]
listen = "127.0.0.1:9443"
cert_file = "{cert}"
key_file = "{other_key}"
unknown_client = "maybe"

[admin.tls]
cert_file = "{missing}"
key_file = "{key}"

[[providers]]
name = "auth"
url = "http://127.0.0.1:9001"
[providers.tls]
ca_file = "{key}"
server_name = "not a name!"

[[tenants]]
name = "a"
client_cert_names = ["x"]
[tenants.tls]
cert_file = "{cert}"
key_file = "{key}"
"#,
            cert = pki.path("server.crt"),
            key = pki.path("server.key"),
            other_key = pki.path("other.key"),
            missing = pki.path("missing.crt"),
        );
        let all = problems(&text).join("\n");
        for needle in [
            "server.tls.key_file: ",
            "does not match the certificate",
            "server.tls.unknown_client: \"maybe\" must be reject or default",
            "server.tls.unknown_client: applies to client certificates",
            "admin.tls.cert_file: ",
            "missing.crt: cannot read",
            "providers[0] (auth).tls: is set but no URL is https://",
            "providers[0] (auth).tls.ca_file: ",
            "holds no certificate",
            "providers[0] (auth).tls.server_name: \"not a name!\"",
            "tenants[0] (a).client_cert_names: needs mTLS",
            "tenants[0] (a).tls: needs the tenant's own listen address",
            "server.tls.listen: 127.0.0.1:9443 is already server.listen",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }
}

mod include {
    use std::path::{Path, PathBuf};

    use super::*;

    const MAIN: &str = r#"
include = ["teams.d/*.toml"]

[[providers]]
name = "audit"
url = "http://127.0.0.1:9002"

[[tenants]]
name = "ops"
cluster_names = ["emqx-ops"]
providers = ["audit"]
"#;

    fn team(tenant: &str, provider: &str, extra: &str) -> String {
        format!(
            "[[providers]]\nname = \"{provider}\"\nurl = \"http://127.0.0.1:9011\"\n\n[[tenants]]\nname = \"{tenant}\"\ncluster_names = [\"emqx-{tenant}\"]\nproviders = [\"{provider}\", \"audit\"]\n{extra}"
        )
    }

    /// A main file and team files in a fresh directory; returns the main file's path.
    fn layout(dir: &tempfile::TempDir, main: &str, teams: &[(&str, &str)]) -> PathBuf {
        std::fs::create_dir_all(dir.path().join("teams.d")).unwrap();
        for (name, text) in teams {
            std::fs::write(dir.path().join("teams.d").join(name), text).unwrap();
        }
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, main).unwrap();
        path
    }

    fn load(path: &Path) -> Result<(Config, Origins), ConfigError> {
        Config::from_sources(&Sources::read(path)?)
    }

    fn error(path: &Path) -> String {
        load(path).expect_err("must be refused").to_string()
    }

    #[test]
    fn teams_are_merged_in_sorted_order_with_their_origins() {
        let dir = tempfile::tempdir().unwrap();
        let b = team("team-b", "rules-b", "");
        let a = team("team-a", "rules-a", "[tenants.chains]\n\"client.authenticate\" = [\"rules-a\"]\n");
        // Not matched: hidden files, other extensions, subdirectories.
        let path = layout(&dir, MAIN, &[("b.toml", &b), ("a.toml", &a), (".a.toml.swp", "x"), ("notes.txt", "x")]);
        std::fs::create_dir_all(dir.path().join("teams.d/sub.toml")).unwrap();
        let (config, origins) = load(&path).unwrap();
        let names: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["audit", "rules-a", "rules-b"]);
        let tenants: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(tenants, ["default", "ops", "team-a", "team-b"]);
        let teams = dir.path().join("teams.d");
        assert_eq!(origins.providers, [path.clone(), teams.join("a.toml"), teams.join("b.toml")]);
        assert_eq!(origins.tenants, [path.clone(), path.clone(), teams.join("a.toml"), teams.join("b.toml")]);
        assert_eq!(config.tenants[2].chain(Hook::ClientAuthenticate), [1]);
        let sources = Sources::read(&path).unwrap();
        assert_eq!(sources.include_dirs, [teams]);
        assert!(sources.digest_text().contains("a.toml"));
    }

    #[test]
    fn without_include_the_digest_is_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = layout(&dir, TWO, &[]);
        assert_eq!(Sources::read(&path).unwrap().digest_text(), TWO);
    }

    #[test]
    fn a_key_outside_the_team_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let bad = format!("[server]\nlisten = \"127.0.0.1:0\"\n{}", team("team-a", "rules-a", ""));
        let path = layout(&dir, MAIN, &[("a.toml", &bad)]);
        let e = error(&path);
        assert!(e.contains("teams.d/a.toml") && e.contains(&format!("included by {}", path.display())), "{e}");
        assert!(e.contains("server"), "{e}");
    }

    #[test]
    fn a_team_file_holds_exactly_one_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let two = format!("{}[[tenants]]\nname = \"x\"\ncluster_names = [\"x\"]\n", team("team-a", "rules-a", ""));
        let path = layout(&dir, MAIN, &[("a.toml", &two)]);
        let e = error(&path);
        assert!(e.contains("teams.d/a.toml") && e.contains("exactly one [[tenants]]") && e.contains("found 2"), "{e}");
        let none = "[[providers]]\nname = \"p\"\nurl = \"http://127.0.0.1:1\"\n";
        std::fs::write(dir.path().join("teams.d/a.toml"), none).unwrap();
        assert!(error(&path).contains("found 0"));
    }

    #[test]
    fn name_clashes_name_both_files() {
        let dir = tempfile::tempdir().unwrap();
        // rules-a twice (a and b), audit in a team file and in the main file, tenant team-a twice.
        let a = team("team-a", "rules-a", "");
        let b =
            format!("{}[[providers]]\nname = \"audit\"\nurl = \"http://127.0.0.1:1\"\n", team("team-a", "rules-a", ""));
        let path = layout(&dir, MAIN, &[("a.toml", &a), ("b.toml", &b)]);
        let e = error(&path);
        let (fa, fb) = (dir.path().join("teams.d/a.toml"), dir.path().join("teams.d/b.toml"));
        for needle in [
            format!("{}: providers[0] (rules-a).name: also defined in {}", fb.display(), fa.display()),
            format!("{}: providers[1] (audit).name: also defined in {}", fb.display(), path.display()),
            format!("{}: tenants[0] (team-a).name: also defined in {}", fb.display(), fa.display()),
        ] {
            assert!(e.contains(&needle), "missing {needle:?} in:\n{e}");
        }
    }

    #[test]
    fn a_team_never_names_another_teams_provider() {
        let dir = tempfile::tempdir().unwrap();
        let a = team("team-a", "rules-a", "[tenants.chains]\n\"client.authenticate\" = [\"rules-a\", \"rules-b\"]\n");
        let b = team("team-b", "rules-b", "");
        let path = layout(&dir, MAIN, &[("a.toml", &a), ("b.toml", &b)]);
        let e = error(&path);
        let needle = format!(
            "{}: tenants[0] (team-a).chains.\"client.authenticate\": provider \"rules-b\" belongs to another team ({})",
            dir.path().join("teams.d/a.toml").display(),
            dir.path().join("teams.d/b.toml").display()
        );
        assert!(e.contains(&needle), "missing {needle:?} in:\n{e}");
    }

    #[test]
    fn problems_of_a_team_carry_its_file_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let a = team("team-a", "rules-a", "")
            .replace("url = \"http://127.0.0.1:9011\"", "url = \"http://127.0.0.1:9011\"\ntimeout = \"fast\"");
        let path = layout(&dir, MAIN, &[("a.toml", &a)]);
        let e = error(&path);
        let needle =
            format!("{}: providers[0] (rules-a).timeout: \"fast\"", dir.path().join("teams.d/a.toml").display());
        assert!(e.contains(&needle), "missing {needle:?} in:\n{e}");
    }

    #[test]
    fn a_named_file_must_exist_and_inline_text_cannot_include() {
        let dir = tempfile::tempdir().unwrap();
        let path = layout(&dir, &MAIN.replace("teams.d/*.toml", "teams.d/missing.toml"), &[]);
        let e = error(&path);
        assert!(e.contains("teams.d/missing.toml") && e.contains("cannot read"), "{e}");
        let e = Config::parse(MAIN, Path::new("inline.toml")).unwrap_err().to_string();
        assert!(e.contains("inline.toml") && e.contains("include:"), "{e}");
        // An empty teams.d is fine.
        let path = layout(&dir, MAIN, &[]);
        assert_eq!(load(&path).unwrap().0.tenants.len(), 2);
    }
}

#[test]
fn chain_members_take_a_mode() {
    let c = parse(&format!(
        "{TWO}\n[[providers]]\nname = \"auth-v2\"\nurl = \"http://127.0.0.1:9003\"\n[chains]\n\"client.authenticate\" = [\"auth\", {{ name = \"auth-v2\", mode = \"shadow\" }}]\n\"message.publish\" = [{{ name = \"audit\", mode = \"observe\" }}, {{ name = \"auth\" }}]\n"
    ))
    .unwrap();
    let t = &c.tenants[0];
    let members: Vec<_> = t.members(Hook::ClientAuthenticate).collect();
    assert_eq!(members, [(0, MemberMode::Decisive), (2, MemberMode::Shadow)]);
    let members: Vec<_> = t.members(Hook::MessagePublish).collect();
    assert_eq!(members, [(1, MemberMode::Observe), (0, MemberMode::Decisive)]);
    assert!(t.has_side_members(Hook::MessagePublish));
    // Side members are chain members: they register the hook and are reachable.
    assert_eq!(t.chain(Hook::ClientAuthenticate), [0, 2]);
    assert!(t.reachable.contains(&2));
    // Implicit chains are all decisive.
    assert!(!t.has_side_members(Hook::SessionCreated));
    assert!(t.members(Hook::ClientAuthorize).all(|(_, m)| m == MemberMode::Decisive));
    let shown = render_chains(&c);
    assert!(shown.contains("auth -> auth-v2 (shadow)"), "{shown}");
    assert!(shown.contains("audit (observe) -> auth"), "{shown}");
}

#[test]
fn bad_chain_members_are_named() {
    let p = problems(&format!(
        "{TWO}\n[chains]\n\"client.authenticate\" = [\"auth\", {{ name = \"audit\", mode = \"mirror\" }}]\n\"client.authorize\" = [{{ mode = \"shadow\" }}, {{ name = \"auth\", mode = \"shadow\", weight = 2 }}]\n\"session.created\" = [{{ name = \"audit\", mode = \"observe\" }}]\n\"message.publish\" = [{{ name = 7 }}, {{ name = \"ghost\", mode = \"shadow\" }}, \"audit\", {{ name = \"audit\", mode = \"observe\" }}]\n"
    ));
    let has = |needle: &str| assert!(p.iter().any(|x| x.contains(needle)), "no {needle:?} in {p:#?}");
    has("chains.\"client.authenticate\"[1].mode: \"mirror\" must be decisive, shadow or observe");
    has("chains.\"client.authorize\"[0].name: missing");
    has("chains.\"client.authorize\"[1]: unknown key \"weight\"");
    has("chains.\"session.created\"[0].mode: \"observe\" applies to valued hooks");
    has("chains.\"message.publish\"[0].name: 7 must be a provider name");
    has("chains.\"message.publish\": names unknown provider \"ghost\"");
    has("chains.\"message.publish\": names provider \"audit\" twice");
    // Neither a name nor a table: toml's error, with the shape expected.
    let err = parse(&format!("{TWO}\n[chains]\n\"client.authenticate\" = [1]\n")).unwrap_err().to_string();
    assert!(err.contains("a provider name or a table such as"), "{err}");
}

#[test]
fn provider_cache_settings() {
    let c = parse(&format!("{TWO}\n[providers.cache]\nttl = \"30s\"\nmax_entries = 5000\nnegative_ttl = \"2s\"\n"))
        .unwrap();
    assert_eq!(c.providers[0].cache, None);
    assert_eq!(
        c.providers[1].cache,
        Some(CacheSettings { ttl: Duration::from_secs(30), negative_ttl: Duration::from_secs(2), max_entries: 5000 })
    );
    let c = parse(&format!("{TWO}\n[providers.cache]\nttl = \"10s\"\n")).unwrap();
    let cache = c.providers[1].cache.unwrap();
    assert_eq!((cache.negative_ttl, cache.max_entries), (Duration::from_secs(10), 100_000));
    let p = problems(&format!("{TWO}\n[providers.cache]\nmax_entries = 0\nnegative_ttl = \"soon\"\n"));
    let has = |needle: &str| assert!(p.iter().any(|x| x.contains(needle)), "no {needle:?} in {p:#?}");
    has("providers[1] (audit).cache.ttl: missing");
    has("providers[1] (audit).cache.max_entries: 0 must be between 1 and 10000000");
    has("providers[1] (audit).cache.negative_ttl: \"soon\" is not a duration");
    let err = parse(&format!("{TWO}\n[providers.cache]\nttl = \"1s\"\nsize = 3\n")).unwrap_err().to_string();
    assert!(err.contains("unknown field `size`"), "{err}");
}
