//! TLS and mTLS on both sides, with real handshakes on loopback and certificates generated
//! per test (exhook-testpki): EMQX-side listener (mTLS accepted/refused, tenants by
//! certificate name, unknown_client, per-tenant listener, IP and absent SNI, rotation),
//! provider side (own CA, client certificate, name mismatch).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{authn, provider};
use exhook_config::Config;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::valued_response::{ResponsedType, Value};
use exhook_server::{Gateway, Listeners, NoopObserver};
use exhook_sim::{EmqxClient, Reply, SimProvider};
use exhook_testpki::{Ca, Files, Leaf};
use exhook_tls::ServerName;
use exhook_tls::rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new(name: &str) -> Pki {
        Pki { dir: tempfile::tempdir().unwrap(), ca: Ca::new(name) }
    }
    fn ca_file(&self) -> String {
        self.ca.write(self.dir.path(), "ca").display().to_string()
    }
    fn issue(&self, name: &str, leaf: Leaf) -> Files {
        self.ca.issue(&leaf).write(self.dir.path(), name)
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A client configuration trusting `ca`, with an optional client certificate.
fn client_config(ca: &Pki, cert: Option<&Files>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.ca.cert_pem.as_bytes()).unwrap()).unwrap();
    let b = ClientConfig::builder_with_provider(exhook_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match cert {
        None => b.with_no_client_auth(),
        Some(f) => {
            let certs = CertificateDer::pem_file_iter(&f.cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&f.key).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
    }
}

/// A gateway on every listener of `toml` (addresses with port 0 get fresh ports).
struct TlsGateway {
    gateway: Gateway,
    listeners: Vec<(String, std::net::SocketAddr)>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TlsGateway {
    async fn start(toml: &str) -> TlsGateway {
        let config = Config::parse(toml, Path::new("<tls test>")).expect("valid test config");
        let listeners = Listeners::bind(&config).await.expect("bind");
        let addrs = listeners.addrs();
        let gateway = Gateway::new(config, Arc::new(NoopObserver)).expect("gateway");
        gateway.start_loading();
        for pr in gateway.providers() {
            tokio::time::timeout(Duration::from_secs(10), pr.wait_loaded(0)).await.expect("provider loaded");
        }
        let stop = common::serve_in_background(&gateway, listeners);
        TlsGateway { gateway, listeners: addrs, _stop: stop }
    }

    fn addr(&self, key: &str) -> std::net::SocketAddr {
        self.listeners.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no listener {key}")).1
    }

    async fn client(&self, key: &str, config: ClientConfig) -> Result<EmqxClient, tonic::transport::Error> {
        let name = ServerName::try_from("gw.example.com").unwrap();
        EmqxClient::connect_tls(self.addr(key), config, name, Version::V3).await
    }

    fn identity_count(&self, event: &str) -> f64 {
        let text = self.gateway.metrics().encode();
        let needle = format!("exhook_gateway_caller_identity_total{{event=\"{event}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&needle)).and_then(|v| v.trim().parse().ok()).unwrap_or(-1.0)
    }
}

/// A provider that answers every authenticate with STOP and `allow`.
async fn answering(allow: bool) -> SimProvider {
    SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(move |c| {
            if c.hook == Hook::ClientAuthenticate {
                Reply::bool(ResponsedType::StopAndReturn, allow)
            } else {
                Reply::Default
            }
        })
        .start()
        .await
        .unwrap()
}

/// The authenticate verdict through `client` (cluster_name "emqxcl").
async fn verdict(client: &EmqxClient) -> Result<bool, tonic::Status> {
    let r = client.valued(&authn("c1", false, Version::V3)).await?;
    Ok(matches!(r.value, Some(Value::BoolResult(true))))
}

/// Two tenants, each bound to a certificate name, each with a provider that gives its
/// own answer; the default tenant answers nothing (IGNORE → false).
fn mtls_config(emqx: &Pki, server: &Files, allow_url: &str, deny_url: &str, unknown: &str) -> String {
    format!(
        r#"
[server.tls]
listen = "127.0.0.1:0"
cert_file = "{cert}"
key_file = "{key}"
client_ca_file = "{ca}"
unknown_client = "{unknown}"

{allow}{deny}
[chains]
"client.authenticate" = []

[[tenants]]
name = "factory-a"
cluster_names = ["emqxcl"]
client_cert_names = ["emqx-factory-a.example.com"]
providers = ["allow"]

[[tenants]]
name = "factory-b"
client_cert_names = ["emqx-factory-b.example.com"]
providers = ["deny"]
"#,
        cert = p(&server.cert),
        key = p(&server.key),
        ca = emqx.ca_file(),
        allow = provider("allow", allow_url, "v3", "1s", "deny"),
        deny = provider("deny", deny_url, "v3", "1s", "deny"),
    )
}

#[tokio::test]
async fn mtls_accepts_the_right_certificate_and_refuses_none_another_ca_and_expired() {
    let emqx = Pki::new("EMQX CA");
    let server = emqx.issue("server", Leaf::new(&["gw.example.com"]));
    let (allow, deny) = (answering(true).await, answering(false).await);
    let gw = TlsGateway::start(&mtls_config(&emqx, &server, &allow.url(), &deny.url(), "reject")).await;
    let key = "server.tls.listen";

    let a = emqx.issue("a", Leaf::new(&["emqx-factory-a.example.com"]));
    let client = gw.client(key, client_config(&emqx, Some(&a))).await.expect("mTLS with the right certificate");
    assert!(verdict(&client).await.unwrap());

    // No client certificate, one from another CA, an expired one: no connection, no call.
    let other = Pki::new("another CA");
    let stranger = other.issue("stranger", Leaf::new(&["emqx-factory-a.example.com"]));
    let expired = emqx.issue("expired", Leaf::new(&["emqx-factory-a.example.com"]).expired());
    for (what, config) in [
        ("no client certificate", client_config(&emqx, None)),
        ("another CA", client_config(&emqx, Some(&stranger))),
        ("expired", client_config(&emqx, Some(&expired))),
    ] {
        // TLS 1.3 clients learn of the refusal on the first read: a call must fail.
        let refused = match gw.client(key, config).await {
            Err(_) => true,
            Ok(c) => verdict(&c).await.is_err(),
        };
        assert!(refused, "{what}: must be refused");
    }
    assert!(gw.identity_count("tls_handshake_failed") >= 3.0);
    let authn_calls = |p: &SimProvider| p.calls().iter().filter(|c| c.hook == Hook::ClientAuthenticate).count();
    assert_eq!(authn_calls(&allow) + authn_calls(&deny), 1, "only the accepted caller reached a provider");
}

#[tokio::test]
async fn the_certificate_not_cluster_name_chooses_the_tenant_and_unknown_client_both_ways() {
    let emqx = Pki::new("EMQX CA");
    let server = emqx.issue("server", Leaf::new(&["gw.example.com"]));
    let (allow, deny) = (answering(true).await, answering(false).await);
    let b = emqx.issue("b", Leaf::new(&["emqx-factory-b.example.com"]));
    let nobody = emqx.issue("nobody", Leaf::new(&["emqx-nobody.example.com"]));

    let gw = TlsGateway::start(&mtls_config(&emqx, &server, &allow.url(), &deny.url(), "reject")).await;
    // factory-b's certificate, but cluster_name "emqxcl" claims factory-a: the certificate wins.
    let client = gw.client("server.tls.listen", client_config(&emqx, Some(&b))).await.unwrap();
    assert!(!verdict(&client).await.unwrap(), "factory-b's provider answered");
    assert!(!verdict(&client).await.unwrap());
    assert_eq!(allow.calls().iter().filter(|c| c.hook == Hook::ClientAuthenticate).count(), 0);
    assert_eq!(gw.identity_count("cluster_name_mismatch"), 2.0);

    // A verified certificate that names no tenant: rejected by default...
    let client = gw.client("server.tls.listen", client_config(&emqx, Some(&nobody))).await.unwrap();
    let e = verdict(&client).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert_eq!(gw.identity_count("rejected_unknown_client"), 1.0);
    drop(gw);

    // ... or the default tenant (whose empty chain answers IGNORE: not authenticated).
    let gw = TlsGateway::start(&mtls_config(&emqx, &server, &allow.url(), &deny.url(), "default")).await;
    let client = gw.client("server.tls.listen", client_config(&emqx, Some(&nobody))).await.unwrap();
    let r = client.valued(&authn("c1", false, Version::V3)).await.unwrap();
    assert_eq!(r.r#type, ResponsedType::Ignore as i32, "default tenant: {r:?}");
}

#[tokio::test]
async fn a_tenant_listener_owns_every_call_and_sni_may_be_an_ip_or_absent() {
    let emqx = Pki::new("EMQX CA");
    let server = emqx.issue("server", Leaf::new(&["gw.example.com", "127.0.0.1"]));
    let (allow, deny) = (answering(true).await, answering(false).await);
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
unknown_cluster = "default"
{allow}{deny}
[chains]
"client.authenticate" = ["allow"]

[[tenants]]
name = "factory-b"
listen = "127.0.0.1:0"
providers = ["deny"]
[tenants.tls]
cert_file = "{cert}"
key_file = "{key}"
"#,
        allow = provider("allow", &allow.url(), "v3", "1s", "deny"),
        deny = provider("deny", &deny.url(), "v3", "1s", "deny"),
        cert = p(&server.cert),
        key = p(&server.key),
    );
    let gw = TlsGateway::start(&toml).await;
    let key = "tenants[0] (factory-b).listen";
    // A DNS name as SNI; an IP address (what EMQX's Erlang ssl sends for an IP URL; rustls
    // clients send none for an IP and verify the IP SAN); SNI switched off.
    let mut no_sni = client_config(&emqx, None);
    no_sni.enable_sni = false;
    for (what, config, name) in [
        ("dns", client_config(&emqx, None), ServerName::try_from("gw.example.com").unwrap()),
        ("ip", client_config(&emqx, None), ServerName::try_from("127.0.0.1").unwrap()),
        ("none", no_sni, ServerName::try_from("gw.example.com").unwrap()),
    ] {
        let client = EmqxClient::connect_tls(gw.addr(key), config, name, Version::V3).await.expect(what);
        // cluster_name "emqxcl" is nobody's here; the listener decides: factory-b.
        assert!(!verdict(&client).await.unwrap(), "{what}");
    }
    // The shared plaintext listener: an unknown cluster_name is the default tenant here
    // (unknown_cluster = "default").
    let plain = EmqxClient::connect(&format!("http://{}", gw.addr("server.listen")), Version::V3).await.unwrap();
    assert!(verdict(&plain).await.unwrap());
}

#[tokio::test]
async fn the_ip_literal_sni_and_tls12_suites_that_emqx_uses_are_accepted() {
    // Erlang's ssl sends "127.0.0.1" as SNI for an IP URL (RFC 6066 forbids it). rustls never
    // sends an IP as SNI, so this handshake is made by openssl s_client (scripts/test.sh
    // installs it; without it this test fails). It also checks the TLS 1.2 suites EMQX offers.
    let out = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .expect("openssl s_client is needed for the IP-literal SNI and TLS 1.2 checks: apt-get install openssl");
    assert!(out.status.success());
    let emqx = Pki::new("EMQX CA");
    let server = emqx.issue("server", Leaf::new(&["gw.example.com", "127.0.0.1"]));
    let toml = format!(
        "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        p(&server.cert),
        p(&server.key)
    );
    let gw = TlsGateway::start(&toml).await;
    let addr = gw.addr("server.tls.listen");
    let ca = emqx.ca_file();
    let s_client = |extra: &'static [&'static str]| {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("openssl")
                .args(["s_client", "-connect", &addr.to_string(), "-servername", "127.0.0.1", "-alpn", "h2,http/1.1"])
                .args(["-CAfile", &ca, "-verify_return_error"])
                .args(extra)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        })
    };
    let text = s_client(&[]).await.unwrap();
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("ALPN protocol: h2"), "h2 must be selected (EMQX 4.4 falls back otherwise): {text}");
    assert!(text.contains("TLSv1.3"), "{text}");
    // TLS 1.2 with the ECDHE-ECDSA/RSA-AES-GCM suites EMQX shares with rustls (the test
    // certificate is ECDSA).
    let text =
        s_client(&["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"]).await.unwrap();
    assert!(text.contains("Verify return code: 0 (ok)"), "TLS 1.2: {text}");
    assert!(text.contains("TLSv1.2") && text.contains("ECDHE-ECDSA-AES"), "TLS 1.2 suite: {text}");
    assert!(text.contains("ALPN protocol: h2"), "TLS 1.2 ALPN: {text}");
}

#[tokio::test]
async fn rotation_reaches_new_connections_without_failing_a_call_and_a_bad_one_keeps_the_old() {
    let emqx = Pki::new("EMQX CA");
    let server = emqx.issue("server", Leaf::new(&["gw.example.com"]).serial(1));
    let allow = answering(true).await;
    let toml = format!(
        "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{}",
        p(&server.cert),
        p(&server.key),
        provider("allow", &allow.url(), "v3", "1s", "deny"),
    );
    let gw = TlsGateway::start(&toml).await;
    let addr = gw.addr("server.tls.listen");
    let serial_seen = || {
        let ca = client_config(&emqx, None);
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(ca))
                .connect(ServerName::try_from("gw.example.com").unwrap(), tcp)
                .await
                .unwrap();
            let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
            serial_of(&cert)
        }
    };
    assert_eq!(serial_seen().await, 1);

    // A client keeps calling on one connection throughout.
    let client = Arc::new(gw.client("server.tls.listen", client_config(&emqx, None)).await.unwrap());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let caller = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !*stop_rx.borrow_and_update() {
                match verdict(&client).await {
                    Ok(true) => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };

    // Rotate (as cert-manager does: new files in place).
    emqx.issue("server", Leaf::new(&["gw.example.com"]).serial(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while serial_seen().await != 2 {
        assert!(tokio::time::Instant::now() < deadline, "rotation not picked up within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A bad rotation (a certificate whose key is not there): the serial-2 pair stays.
    let half = emqx.ca.issue(&Leaf::new(&["gw.example.com"]).serial(3));
    std::fs::write(&server.cert, &half.cert_pem).unwrap();
    tokio::time::sleep(exhook_server::TLS_POLL * 3).await;
    assert_eq!(serial_seen().await, 2, "a mismatched key must keep the running certificate");

    stop_tx.send(true).unwrap();
    let (ok, failed) = caller.await.unwrap();
    assert_eq!(failed, 0, "no call failed during the rotations");
    assert!(ok > 0);
}

fn serial_of(cert: &CertificateDer<'_>) -> u64 {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).unwrap();
    c.tbs_certificate.serial.to_u64_digits().first().copied().unwrap_or(0)
}

#[tokio::test]
async fn https_providers_with_their_own_ca_a_client_certificate_and_name_checks() {
    let team = Pki::new("team CA");
    let server_cert = team.issue("provider", Leaf::new(&["auth.team-a.svc"]));
    let gw_client = team.issue("gateway-client", Leaf::new(&["exhook-gateway.example.com"]));
    // The provider requires a client certificate from the team CA.
    let files = exhook_tls::ServerFiles {
        cert_file: server_cert.cert.clone(),
        key_file: server_cert.key.clone(),
        client_ca_file: Some(team.ca_file().into()),
    };
    let provider_tls = exhook_tls::server_config(&files, &[exhook_tls::ALPN_H2]).unwrap();
    let prov = SimProvider::builder(Version::V3)
        .hook("client.authenticate")
        .script(|c| {
            if c.hook == Hook::ClientAuthenticate {
                Reply::bool(ResponsedType::StopAndReturn, true)
            } else {
                Reply::Default
            }
        })
        .start_tls(provider_tls)
        .await
        .unwrap();
    let url = format!("https://127.0.0.1:{}", prov.addr().port());
    let tls_block = |server_name: &str, with_cert: bool| {
        let cert = if with_cert {
            format!("cert_file = \"{}\"\nkey_file = \"{}\"\n", p(&gw_client.cert), p(&gw_client.key))
        } else {
            String::new()
        };
        format!(
            "[[providers]]\nname = \"auth\"\nurl = \"{url}\"\nprotocol = \"v3\"\ntimeout = \"2s\"\nfailed_action = \"deny\"\n[providers.tls]\nca_file = \"{}\"\nserver_name = \"{server_name}\"\n{cert}",
            team.ca_file()
        )
    };

    // Right CA, right name, client certificate: the provider answers.
    let gw = common::TestGateway::start(&tls_block("auth.team-a.svc", true)).await;
    common::wait_loaded(&gw).await;
    let emqx = gw.emqx(Version::V3).await;
    assert!(verdict(&emqx).await.unwrap());

    // Name mismatch and missing client certificate: transport failures → deny, with the cause.
    // A CA the provider's certificate does not chain to: unknown CA.
    let stranger = Pki::new("stranger CA");
    let unknown_ca = tls_block("auth.team-a.svc", true).replace(&team.ca_file(), &stranger.ca_file());
    for (name, toml, cause) in [
        ("name mismatch", tls_block("other.team-a.svc", true), "name mismatch"),
        ("no client certificate", tls_block("auth.team-a.svc", false), "refused"),
        ("unknown CA", unknown_ca, "unknown CA"),
    ] {
        let config = Config::parse(&toml, Path::new("<t>")).unwrap();
        let provider = exhook_upstream::Provider::new(config.providers[0].clone()).unwrap();
        let e = provider.load(&common::loaded_request(Version::V3, "emqxcl"), Duration::from_secs(2)).await;
        let text = format!("{:?}", e.expect_err(name));
        assert!(text.contains(cause), "{name}: {text}");
    }
}

#[tokio::test]
async fn the_admin_plane_over_https_requires_a_client_certificate_when_configured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new("ops CA");
    let server = pki.issue("admin", Leaf::new(&["gw.example.com"]));
    let scraper = pki.issue("scraper", Leaf::new(&["prometheus.example.com"]));
    let files = exhook_tls::ServerFiles {
        cert_file: server.cert.clone(),
        key_file: server.key.clone(),
        client_ca_file: Some(pki.ca_file().into()),
    };
    let tls =
        exhook_tls::Watched::new("admin.tls", files.paths(), move || exhook_tls::server_config(&files, &[b"http/1.1"]))
            .unwrap();
    let gw = common::TestGateway::start("").await;
    let state = exhook_admin::AdminState::new(gw.gateway.clone(), None, exhook_admin::ConfigInfo::new(None, "test"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(exhook_admin::serve_tls(listener, tls, state, std::future::pending()));

    let get = |config: ClientConfig| async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("gw.example.com").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(out)
    };
    let ok = get(client_config(&pki, Some(&scraper))).await.expect("HTTPS with a client certificate");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("exhook_gateway_build_info"));
    assert!(get(client_config(&pki, None)).await.is_err(), "no client certificate: refused");
}
