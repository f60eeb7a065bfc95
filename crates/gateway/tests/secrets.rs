//! Secrets never reach text: the clients' passwords, the admin token and TLS private keys are
//! absent from every log line (at `trace`), from `/metrics`, `/api/v1/status`, `/readyz`, the
//! status page and the demo's printed decision trace, in every form a careless `Debug`,
//! `{:x}` or base64 of the bytes would produce — while the password still reaches the providers.

mod common;

use common::gateway_process;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// Unusual enough that any occurrence is a leak; only characters that no log format escapes.
const PASSWORD: &str = "Zq7-hunter2-ORCHID-x41";
/// The admin token of the `run` test, and a wrong one of the same length.
const TOKEN: &str = "tok-8c1f-LANTERN-55e2";
const WRONG_TOKEN: &str = "tok-8c1f-LANTERN-55e3";

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

/// Every text form of `secret` to look for: itself, hex (both cases), and base64 (standard
/// and URL-safe) at each of the three alignments it can have inside a larger encoded buffer
/// (such as a protobuf message): only the characters that depend on the secret's bytes alone,
/// so a base64 of the whole request would be caught too.
fn forms(secret: &str) -> Vec<(String, String)> {
    let bytes = secret.as_bytes();
    let mut out = vec![
        ("raw".to_owned(), secret.to_owned()),
        ("hex".to_owned(), bytes.iter().map(|b| format!("{b:02x}")).collect()),
        ("HEX".to_owned(), bytes.iter().map(|b| format!("{b:02X}")).collect()),
    ];
    for (name, alphabet) in [("base64", STANDARD), ("base64url", URL_SAFE)] {
        for offset in 0..3 {
            let mut buf = vec![0xA5u8; offset];
            buf.extend_from_slice(bytes);
            let encoded = base64(&buf, alphabet);
            let start = if offset == 0 { 0 } else { 4 };
            let core = encoded[start..encoded.len() - 4].to_owned();
            assert!(core.len() >= 16, "{secret} is too short to find its base64 reliably");
            out.push((format!("{name} at offset {offset}"), core));
        }
    }
    out
}

fn assert_absent(secret: &str, place: &str, text: &str) {
    for (form, value) in forms(secret) {
        if let Some(at) = text.find(&value) {
            let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("a secret leaked into {place} ({form}): {}", &text[from..to]);
        }
    }
}

#[test]
fn the_leak_detector_knows_its_encodings() {
    // The detector must be able to fail: check it against known answers and a planted leak.
    assert_eq!(base64(b"hello", STANDARD), "aGVsbG8=");
    assert_eq!(base64(b"\xfb\xff", URL_SAFE), "-_8=");
    let planted = format!("body={}", base64(format!("\x12\x16{PASSWORD}\x2a").as_bytes(), STANDARD));
    assert!(std::panic::catch_unwind(|| assert_absent(PASSWORD, "a planted log line", &planted)).is_err());
    let hex: String = PASSWORD.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(std::panic::catch_unwind(|| assert_absent(PASSWORD, "a planted hex dump", &hex)).is_err());
    assert_absent(PASSWORD, "clean text", "password: <redacted>");
}

/// Reads `stderr` to the end in a task.
fn collect(mut stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("still running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
}

/// Every admin path, with what it answered.
async fn scrape(admin: SocketAddr, token: Option<&str>) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for path in ["/metrics", "/api/v1/status", "/readyz", "/healthz", "/"] {
        let (code, body) = common::get(admin, path, token).await;
        out.push((path.to_owned(), code, body));
    }
    out
}

#[cfg(feature = "demo")]
struct DemoRun {
    stdout: String,
    logs: String,
    scraped: Vec<(String, u16, String)>,
}

/// `exhook-gateway demo` at `RUST_LOG=trace` with `--admin`: the printed trace, every log
/// line, and the admin plane scraped once the session is done.
#[cfg(feature = "demo")]
async fn run_demo(emqx: &str, log_format: &str) -> DemoRun {
    let args = ["--log-format", log_format, "demo", "--emqx", emqx, "--password", PASSWORD, "--admin", "127.0.0.1:0"];
    let mut child = gateway_process(&args, None, Some("trace"));
    let logs = collect(child.stderr.take().unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let mut admin = None;
    // The demo's own lines are the readiness signals: the admin address, then "session done".
    loop {
        let Some(line) = lines.next_line().await.unwrap() else {
            let _ = child.wait().await;
            panic!("the demo ended before its session was done:\n{stdout}\n{}", logs.await.unwrap());
        };
        stdout.push_str(&line);
        stdout.push('\n');
        if let Some(rest) = line.strip_prefix("admin plane: http://") {
            admin = rest.split('/').next().and_then(|a| a.parse::<SocketAddr>().ok());
        }
        if line.starts_with("session done") {
            break;
        }
    }
    let admin = admin.unwrap_or_else(|| panic!("no admin address printed:\n{stdout}"));
    let scraped = scrape(admin, None).await;
    sigterm(&child);
    while let Some(line) = lines.next_line().await.unwrap() {
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = child.wait().await.unwrap();
    let logs = logs.await.unwrap();
    assert!(status.success(), "demo exited with {status}:\n{stdout}\n{logs}");
    DemoRun { stdout, logs, scraped }
}

#[tokio::test]
#[cfg(feature = "demo")]
async fn the_demo_forwards_the_password_and_never_shows_it() {
    for (emqx, log_format) in [("v3", "human"), ("v1", "json"), ("v2", "human")] {
        let run = tokio::time::timeout(Duration::from_secs(120), run_demo(emqx, log_format))
            .await
            .unwrap_or_else(|_| panic!("emqx {emqx}: the demo did not finish"));
        let what = format!("emqx {emqx}, {log_format} logs");

        // Nowhere, in no form.
        assert_absent(PASSWORD, &format!("{what}: the demo's output"), &run.stdout);
        assert_absent(PASSWORD, &format!("{what}: the logs"), &run.logs);
        for (path, code, body) in &run.scraped {
            assert_eq!(*code, 200, "{what}: GET {path}: {body}");
            assert_absent(PASSWORD, &format!("{what}: GET {path}"), body);
        }

        // Authentication really ran, and the provider got the password as sent.
        for expected in [
            "=> OnClientAuthenticate alice",
            "denylist   [v3] IGNORE",
            "<= EMQX gets STOP_AND_RETURN false",
            "received the password EMQX sent in each of its 2 authenticate calls: yes",
        ] {
            assert!(run.stdout.contains(expected), "{what}: missing {expected:?} in\n{}", run.stdout);
        }
        // The requests carrying it were logged, by the simulated EMQX and by both providers
        // of the chain: the redaction, not the absence of logging, keeps it out.
        for source in
            ["simulated EMQX sends OnClientAuthenticate alice", "denylist [v3] received", "audit [v1] received"]
        {
            let logged: Vec<&str> =
                run.logs.lines().filter(|l| l.contains(source) && l.contains("ClientAuthenticateRequest")).collect();
            assert!(!logged.is_empty(), "{what}: no {source:?} log line with the request");
            for line in logged {
                assert!(line.contains("password: <redacted>"), "{what}: {line}");
            }
        }
        assert!(run.logs.lines().count() > 100, "{what}: RUST_LOG=trace should log much more than this");

        let body = |p: &str| run.scraped.iter().find(|(path, ..)| path == p).map(|(.., b)| b.as_str()).unwrap();
        // The scrapes saw the session, so they had the chance to leak it.
        assert!(
            body("/metrics")
                .lines()
                .any(|l| l.starts_with("exhook_gateway_requests_total") && l.contains("authenticate")),
            "{what}: /metrics has no authenticate requests:\n{}",
            body("/metrics")
        );
        assert!(body("/api/v1/status").contains("\"denylist\""), "{what}: {}", body("/api/v1/status"));
    }
}

#[tokio::test]
async fn the_admin_token_is_never_logged_nor_served() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = {:?}\n",
            token_file.display().to_string()
        ),
    )
    .unwrap();
    let mut child = gateway_process(&["--log-format", "json", "run"], Some(&config), Some("trace"));
    let stdout = collect(child.stdout.take().unwrap());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut logs = String::new();
    let mut admin = None;
    // Readiness: the "serving" log line comes after the admin listener's.
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            logs.push_str(&line);
            logs.push('\n');
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            let message = event["fields"]["message"].as_str().unwrap_or_default();
            if message.starts_with("admin listener") {
                admin = event["fields"]["listen"].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
            }
            if message == "exhook-gateway serving" {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(ready, Ok(true)), "the gateway did not start:\n{logs}");
    let admin = admin.unwrap_or_else(|| panic!("no admin listener logged:\n{logs}"));

    let mut scraped = scrape(admin, Some(TOKEN)).await;
    for (path, code, body) in &scraped {
        // Let in; /readyz may still say 503 (the "serving" line comes just before readiness).
        let ok = *code == 200 || (path == "/readyz" && *code == 503);
        assert!(ok, "GET {path} with the token: {code} {body}");
    }
    for token in [Some(WRONG_TOKEN), None] {
        let (code, body) = common::get(admin, "/api/v1/status", token).await;
        assert_eq!(code, 401, "{token:?}: {body}");
        scraped.push((format!("/api/v1/status with {token:?}"), code, body));
    }
    sigterm(&child);
    while let Some(line) = lines.next_line().await.unwrap() {
        logs.push_str(&line);
        logs.push('\n');
    }
    let status = child.wait().await.unwrap();
    let stdout = stdout.await.unwrap();
    assert!(status.success(), "{status}:\n{logs}");
    assert!(logs.contains("exhook-gateway stopped"), "{logs}");
    for secret in [TOKEN, WRONG_TOKEN] {
        assert_absent(secret, "the logs", &logs);
        assert_absent(secret, "stdout", &stdout);
        for (path, _, body) in &scraped {
            assert_absent(secret, &format!("GET {path}"), body);
        }
    }
}

#[test]
fn tls_private_keys_never_print() {
    let dir = tempfile::tempdir().unwrap();
    let ca = exhook_testpki::Ca::new("secrets-test CA");
    let issued = ca.issue(&exhook_testpki::Leaf::new(&["localhost", "127.0.0.1"]));
    let files = issued.write(dir.path(), "server");
    // The key's PEM body lines, and every 16 bytes of its DER that are not public (a PKCS#8
    // EC key also holds the public key, which the certificate shows): none may show anywhere.
    let key_lines: Vec<&str> = issued.key_pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).collect();
    assert!(!key_lines.is_empty());
    let der = match exhook_tls::load_private_key("key_file", &files.key) {
        Ok(rustls_pki_types::PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
        other => panic!("expected a PKCS#8 key, got {other:?}"),
    };
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let public: String =
        exhook_tls::load_certificates("cert_file", &files.cert).unwrap().iter().map(|c| hex(c)).collect();
    let secret_windows: Vec<&[u8]> = der.windows(16).filter(|w| !public.contains(&hex(w))).collect();
    assert!(secret_windows.len() >= 16, "the private scalar must be among them");
    let check = |place: &str, text: &str| {
        for line in &key_lines {
            assert!(!text.contains(line), "{place} prints the key: {text}");
        }
        for w in &secret_windows {
            assert!(!text.contains(&hex(w)), "{place} prints the key in hex: {text}");
            let list: Vec<String> = w.iter().map(u8::to_string).collect();
            assert!(!text.contains(&list.join(", ")), "{place} prints the key's bytes: {text}");
        }
    };
    // The check must be able to fail.
    assert!(std::panic::catch_unwind(|| check("a planted hex dump", &hex(&der))).is_err());
    assert!(std::panic::catch_unwind(|| check("a planted Debug", &format!("{der:?}"))).is_err());

    let key = exhook_tls::load_private_key("key_file", &files.key).unwrap();
    check("PrivateKeyDer's Debug", &format!("{key:?} {key:#?}"));
    let certified = exhook_tls::certified_key(&files.cert, &files.key).unwrap();
    check("CertifiedKey's Debug", &format!("{certified:?}"));
    let server = exhook_tls::server_config(
        &exhook_tls::ServerFiles { cert_file: files.cert.clone(), key_file: files.key.clone(), client_ca_file: None },
        &[b"h2"],
    )
    .unwrap();
    check("ServerConfig's Debug", &format!("{server:?}"));

    // A damaged key file: the error names the file and the kind of damage, never its lines.
    for (name, damaged) in [
        ("no-end.key", issued.key_pem.lines().filter(|l| !l.starts_with("-----END")).collect::<Vec<_>>().join("\n")),
        ("bad-base64.key", issued.key_pem.replacen(key_lines[0], &format!("{}!!", key_lines[0]), 1)),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, damaged).unwrap();
        let err = exhook_tls::load_private_key("key_file", &path).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
        check(&format!("the error for {name}"), &format!("{err} {err:?}"));
    }
}

#[test]
fn credentials_in_a_provider_url_are_refused_without_being_echoed() {
    // A `user:password@` URL would be logged (health changes) and served (/api/v1/status).
    for url in [format!("http://alice:{PASSWORD}@127.0.0.1:9001"), format!("https://{PASSWORD}@127.0.0.1:9001")] {
        let toml = format!("[[providers]]\nname = \"auth\"\nurl = \"{url}\"\n");
        let err = exhook_config::Config::parse(&toml, std::path::Path::new("creds.toml")).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("providers[0] (auth).url: a user or password in the URL is not allowed"), "{text}");
        assert_absent(PASSWORD, "the configuration error", &text);
    }
    let fine = "[[providers]]\nname = \"auth\"\nurl = \"http://127.0.0.1:9001\"\n";
    assert!(exhook_config::Config::parse(fine, std::path::Path::new("fine.toml")).is_ok());
}
