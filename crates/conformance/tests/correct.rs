//! A correct provider passes: exhook-sim's `SimProvider` (written with the generated server of
//! each package, as a third party writes one) over real gRPC on loopback.

use std::time::Duration;

use exhook_conformance::{CheckId, Outcome, Target, TlsFiles, run};
use exhook_hooks::{Hook, Version};
use exhook_proto::model::{self, valued_response::ResponsedType};
use exhook_sim::{Reply, SimProvider};

/// Registers every hookpoint of its package (message hooks with filters) and decides the
/// valued hooks: allow, and rewrite the payload of a publish (keeping the rest of the Message).
async fn correct(version: Version) -> SimProvider {
    builder(version).start().await.unwrap()
}

fn builder(version: Version) -> exhook_sim::SimProviderBuilder {
    let mut b = SimProvider::builder(version);
    for h in Hook::hookpoints() {
        let name = h.hookpoint(version).unwrap();
        b = if h.is_message_hook() { b.hook_topics(name, &["sensors/+/temp", "t/#"]) } else { b.hook(name) };
    }
    b.script(|call| match call.hook {
        Hook::ClientAuthenticate => Reply::bool(ResponsedType::Continue, true),
        Hook::ClientAuthorize => Reply::bool(ResponsedType::StopAndReturn, true),
        Hook::MessagePublish => {
            let request: model::MessagePublishRequest = call.request();
            let mut message = request.message.unwrap_or_default();
            message.payload = b"rewritten".to_vec().into();
            message.headers.insert("allow_publish".into(), "true".into());
            Reply::message(ResponsedType::Continue, message)
        }
        _ => Reply::Default,
    })
}

fn assert_all_pass(report: &exhook_conformance::Report) {
    let table = report.table();
    assert_eq!(report.verdicts.len(), CheckId::ALL.len(), "{table}");
    for v in &report.verdicts {
        assert_eq!(v.outcome, Outcome::Pass, "{}: {}\n{table}", v.check, v.reason);
    }
    assert!(report.passed() && report.exit_code() == 0, "{table}");
    assert!(table.contains("9 checks: 9 pass, 0 fail, 0 skip: CONFORMS"), "{table}");
}

#[tokio::test]
async fn sim_provider_of_every_package_passes_every_check() {
    for version in Version::NEWEST_FIRST {
        let provider = correct(version).await;
        // Auto-detected, and asked for explicitly.
        for package in [None, Some(version)] {
            let report = run(&Target { package, ..Target::new(provider.url()) }).await.unwrap();
            println!("{}", report.table());
            assert_eq!(report.package, Some(version), "{}", report.table());
            assert_all_pass(&report);
            assert_eq!(report.hooks.len(), 19, "{}", report.table());
            let package = report.verdict(CheckId::Package).unwrap();
            assert!(package.reason.starts_with(&format!("serves {}", version.package())), "{}", package.reason);
        }
        // Every hookpoint was called in the provider's package, message hooks on a topic
        // its filter matches (EMQX would not call them otherwise).
        for h in Hook::hookpoints() {
            assert!(!provider.calls_of(h).is_empty(), "{version}: {h} not called");
        }
        for call in provider.calls_of(Hook::MessagePublish) {
            assert_eq!(call.version, version);
            let request: model::MessagePublishRequest = call.request();
            assert_eq!(request.message.unwrap().topic, "sensors/x/temp");
        }
        assert_eq!(provider.calls_of(Hook::ProviderUnloaded).len(), 2);
    }
}

/// `SimProvider`'s default answers (IGNORE every valued hook, no filters) conform too; the
/// checks about returned values have nothing to look at and say so.
#[tokio::test]
async fn ignoring_provider_passes_and_message_check_is_skipped() {
    let provider = SimProvider::builder(Version::V2).all_hooks().start().await.unwrap();
    let report = run(&Target::new(provider.url())).await.unwrap();
    let table = report.table();
    assert!(report.passed(), "{table}");
    let kept = report.verdict(CheckId::MessageKept).unwrap();
    assert_eq!(kept.outcome, Outcome::Skip, "{table}");
    assert_eq!(kept.reason, "no message.publish answer returned a message");
    assert_eq!(
        report.verdict(CheckId::ValueKinds).unwrap().reason,
        "0 CONTINUE/STOP_AND_RETURN with the right value, 5 IGNORE"
    );
    assert_eq!(
        report.verdict(CheckId::TopicFilters).unwrap().reason,
        "no topic filters: the message hooks get every topic"
    );
    // Only what it registered is called: a provider of two hooks gets two kinds of calls.
    let small = SimProvider::builder(Version::V3).hooks(&["client.connect", "message.acked"]).start().await.unwrap();
    let report = run(&Target::new(small.url())).await.unwrap();
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.hooks, vec![Hook::ClientConnect, Hook::MessageAcked]);
    assert_eq!(report.verdict(CheckId::ValuedAnswers).unwrap().outcome, Outcome::Skip);
    let called: Vec<Hook> = small.calls().iter().map(|c| c.hook).collect();
    assert_eq!(called, [Hook::ProviderLoaded, Hook::ClientConnect, Hook::MessageAcked, Hook::ProviderUnloaded]);
}

#[tokio::test]
async fn https_provider_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = exhook_testpki::Ca::new("conformance test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let server = ca.issue(&exhook_testpki::Leaf::new(&["localhost"])).write(dir.path(), "server");
    let files = exhook_tls::ServerFiles { cert_file: server.cert, key_file: server.key, client_ca_file: None };
    let config = exhook_tls::server_config(&files, &[b"h2"]).unwrap();
    let provider = builder(Version::V3).start_tls(config).await.unwrap();
    let url = format!("https://localhost:{}", provider.addr().port());
    let tls = TlsFiles { ca: Some(ca_file), ..TlsFiles::default() };
    let report = run(&Target { tls, ..Target::new(&url) }).await.unwrap();
    assert_all_pass(&report);
    // Without the CA the handshake fails: that is "cannot connect", not a failed check.
    let err = run(&Target::new(&url)).await.unwrap_err();
    assert!(matches!(err, exhook_conformance::Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("unknown CA"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_cannot_connect() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = Target { timeout: Duration::from_secs(2), ..Target::new(format!("http://127.0.0.1:{port}")) };
    let err = run(&target).await.unwrap_err();
    assert!(err.to_string().starts_with(&format!("cannot connect to http://127.0.0.1:{port}")), "{err}");
    for bad in ["ftp://127.0.0.1:1", "127.0.0.1:1", "http://"] {
        let err = run(&Target::new(bad)).await.unwrap_err();
        assert!(matches!(err, exhook_conformance::Error::Url { .. }), "{bad}: {err}");
    }
}
