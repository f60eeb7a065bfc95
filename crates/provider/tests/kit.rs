//! The kit on its own, over real gRPC on loopback: a client playing EMQX of each package
//! talks straight to a provider served by `Server` (no gateway): registration per package,
//! answers, notification order and drain, a panicking handler, the health check, TLS.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use exhook_provider::health::{HealthCheckRequest, HealthCheckResponse, NOT_SERVING, SERVING};
use exhook_provider::model::valued_response::{ResponsedType, Value};
use exhook_provider::model::{self, HookSpec};
use exhook_provider::{Decision, Provider, Publish, RequestExt, ServeError, Server, TlsFiles, Version, rewrite};
use exhook_sim::EmqxClient;
use tokio::sync::{Semaphore, oneshot};

/// Authenticates everybody but `bad` (and panics for `panic`), authorizes `in/...`, moves
/// publishes from `in/` to `out/`.
struct Recorder;

#[exhook_provider::provider]
impl Provider for Recorder {
    fn topics(&self) -> Vec<String> {
        vec!["in/#".into()]
    }

    async fn client_authenticate(&self, r: &model::ClientAuthenticateRequest) -> Decision {
        if r.client().username == "panic" {
            panic!("a bug in a handler");
        }
        Decision::from(r.client().username != "bad")
    }

    async fn client_authorize(&self, r: &model::ClientAuthorizeRequest) -> Decision {
        Decision::from(r.topic.starts_with("in/"))
    }

    async fn message_publish(&self, r: &model::MessagePublishRequest) -> Publish {
        rewrite().topic(r.msg().topic.replace("in/", "out/"))
    }

    async fn session_created(&self, r: &model::SessionCreatedRequest) {
        tracing::debug!(clientid = r.client().clientid, "session created");
    }
}

/// Serves `provider` on a fresh port until the returned sender fires (or is dropped).
async fn start<P: Provider>(
    server: Server<P>,
) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<Result<(), ServeError>>) {
    let listening = server.bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listening.local_addr());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(listening.run_until(async {
        let _ = rx.await;
    }));
    (url, tx, task)
}

fn expected_hooks(version: Version) -> Vec<HookSpec> {
    let authz = if version == Version::V1 { "client.check_acl" } else { "client.authorize" };
    let spec = |name: &str, topics: &[&str]| HookSpec {
        name: name.into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
    };
    vec![
        spec("client.authenticate", &[]),
        spec(authz, &[]),
        spec("session.created", &[]),
        spec("message.publish", &["in/#"]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_package_on_one_port() {
    let (url, _stop, _task) = start(Server::new(Recorder)).await;
    for version in ALL_VERSIONS {
        let emqx = EmqxClient::connect(&url, version).await.unwrap();
        let loaded = emqx.loaded(&loaded_request(version, "c")).await.unwrap();
        assert_eq!(loaded.hooks, expected_hooks(version), "{version}");

        let r = emqx.valued(&authn("c1", "alice", false, version)).await.unwrap();
        assert_eq!((r.r#type, r.value), (ResponsedType::Continue as i32, Some(Value::BoolResult(true))), "{version}");
        let r = emqx.valued(&authn("c1", "bad", true, version)).await.unwrap();
        assert_eq!((r.r#type, r.value), (ResponsedType::StopAndReturn as i32, Some(Value::BoolResult(false))));
        let r = emqx.valued(&authz("u", "in/1", version)).await.unwrap();
        assert_eq!(r.value, Some(Value::BoolResult(true)), "{version}: authorize (v1: OnClientCheckAcl)");

        let request = publish("c1", "in/x", "p", version);
        let r = emqx.valued(&request).await.unwrap();
        let expected = model::Message { topic: "out/x".into(), ..request.message.unwrap() };
        assert_eq!((r.r#type, r.value), (ResponsedType::Continue as i32, Some(Value::Message(expected))), "{version}");
    }
}

/// Records each session.created after taking a permit of the gate: the test decides when
/// handlers may run.
struct Gated(Arc<Mutex<Vec<String>>>, Arc<Semaphore>);

#[exhook_provider::provider]
impl Provider for Gated {
    async fn session_created(&self, r: &model::SessionCreatedRequest) {
        if let Ok(permit) = self.1.acquire().await {
            permit.forget();
        }
        self.0.lock().unwrap().push(format!("{} {}", r.client().clientid, r.client().username));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_notifications_run_in_order_after_the_acknowledgement_and_before_exit() {
    let record = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(0));
    let provider = Gated(Arc::clone(&record), Arc::clone(&gate));
    let (url, stop, task) = start(Server::new(provider).notification_queues(1, 64)).await;
    let a = EmqxClient::connect(&url, Version::V3).await.unwrap();
    let b = EmqxClient::connect(&url, Version::V2).await.unwrap();
    let mut expected = Vec::new();
    for i in 0..10 {
        for (client, id) in [(&a, "a"), (&b, "b")] {
            let request = model::SessionCreatedRequest { clientinfo: client_info(id, &i.to_string()), meta: None };
            client.notify(&request).await.unwrap();
            expected.push(format!("{id} {i}"));
        }
    }
    assert!(record.lock().unwrap().is_empty(), "acknowledged before any handler ran");
    drop((a, b));
    stop.send(()).unwrap();
    gate.add_permits(expected.len());
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("drained").unwrap().unwrap();
    assert_eq!(*record.lock().unwrap(), expected, "every handler ran, in arrival order, before run_until returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_its_call_only() {
    let (url, _stop, _task) = start(Server::new(Recorder)).await;
    let emqx = EmqxClient::connect(&url, Version::V2).await.unwrap();
    let e = emqx.valued(&authn("c1", "panic", true, Version::V2)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal);
    let r = emqx.valued(&authn("c1", "alice", true, Version::V2)).await.unwrap();
    assert_eq!(r.value, Some(Value::BoolResult(true)));
}

async fn health(url: &str, service: &str) -> Result<HealthCheckResponse, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
    let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
    let request = tonic::Request::new(HealthCheckRequest { service: service.into() });
    grpc.unary(request, path, codec).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check() {
    let (url, _stop, _task) = start(Server::new(Recorder)).await;
    for service in ["", "emqx.exhook.v1.HookProvider", "emqx.exhook.v2.HookProvider", "emqx.exhook.v3.HookProvider"] {
        assert_eq!(health(&url, service).await.unwrap().status, SERVING, "{service:?}");
    }
    assert_ne!(SERVING, NOT_SERVING);
    assert_eq!(health(&url, "nope").await.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_gateways_options() {
    let dir = tempfile::tempdir().unwrap();
    let ca = exhook_testpki::Ca::new("team CA");
    let ca_file = ca.write(dir.path(), "ca");
    let leaf = ca.issue(&exhook_testpki::Leaf::new(&["localhost"])).write(dir.path(), "server");
    let files = TlsFiles { cert_file: leaf.cert, key_file: leaf.key, client_ca_file: None };
    let listening = Server::new(Recorder).tls(&files).unwrap().bind("127.0.0.1:0").await.unwrap();
    let addr = listening.local_addr();
    let (_stop, rx) = oneshot::channel::<()>();
    tokio::spawn(listening.run_until(async {
        let _ = rx.await;
    }));
    let client =
        exhook_tls::client_config(&exhook_tls::ClientFiles { ca_file: Some(ca_file), ..Default::default() }).unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let emqx = EmqxClient::connect_tls(addr, client, name, Version::V3).await.unwrap();
    let loaded = emqx.loaded(&loaded_request(Version::V3, "c")).await.unwrap();
    assert_eq!(loaded.hooks, expected_hooks(Version::V3));
    let r = emqx.valued(&authn("c1", "alice", true, Version::V3)).await.unwrap();
    assert_eq!(r.value, Some(Value::BoolResult(true)));
}

#[tokio::test]
async fn an_invalid_topic_filter_is_refused_at_bind() {
    struct BadFilter;
    #[exhook_provider::provider]
    impl Provider for BadFilter {
        fn topics(&self) -> Vec<String> {
            vec!["a/#/b".into()]
        }
    }
    let e = Server::new(BadFilter).bind("127.0.0.1:0").await.err().expect("refused");
    assert!(matches!(&e, ServeError::TopicFilter { filter, .. } if filter == "a/#/b"), "{e}");
}

/// Keeps the broker uptime of every OnProviderLoaded.
struct Uptimes(Arc<Mutex<Vec<i64>>>);

#[exhook_provider::provider]
impl Provider for Uptimes {
    async fn provider_loaded(&self, r: &model::ProviderLoadedRequest) {
        self.0.lock().unwrap().push(r.broker.as_ref().map_or(-1, |b| b.uptime));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_loaded_gets_the_model_whatever_the_package() {
    let uptimes = Arc::new(Mutex::new(Vec::new()));
    let (url, _stop, _task) = start(Server::new(Uptimes(Arc::clone(&uptimes)))).await;
    for version in ALL_VERSIONS {
        let emqx = EmqxClient::connect(&url, version).await.unwrap();
        let loaded = emqx.loaded(&loaded_request(version, "c")).await.unwrap();
        assert!(loaded.hooks.is_empty(), "it implements no hook");
    }
    // 4.x sends "1 hours, 2 minutes, 3 seconds"; the provider sees milliseconds, as from 5.x.
    assert_eq!(*uptimes.lock().unwrap(), [3_723_000; 3]);
}
