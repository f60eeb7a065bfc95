//! A deliberately wrong provider fails every check, each for the right reason.
//!
//! Written with the generated tonic server of `emqx.exhook.v1` (what a team targeting EMQX 4.x
//! by mistake would have), driven as for EMQX 5.9+ (`--package v3`): the tester says so and
//! runs the other checks in the package it does speak.

use std::time::Duration;

use exhook_conformance::{CheckId, Outcome, Report, Target, run};
use exhook_proto::v1;
use exhook_proto::v1::valued_response::{ResponsedType, Value};
use tonic::{Request, Response, Status};

struct Wrong;

type Answer<T> = Result<Response<T>, Status>;

fn empty() -> Answer<v1::EmptySuccess> {
    Ok(Response::new(v1::EmptySuccess {}))
}

fn spec(name: &str, topics: &[&str]) -> v1::HookSpec {
    v1::HookSpec { name: name.into(), topics: topics.iter().map(|t| t.to_string()).collect() }
}

#[async_trait::async_trait]
impl v1::hook_provider_server::HookProvider for Wrong {
    async fn on_provider_loaded(&self, _: Request<v1::ProviderLoadedRequest>) -> Answer<v1::LoadedResponse> {
        Ok(Response::new(v1::LoadedResponse {
            hooks: vec![
                // The 5.x name on a 4.x package, and a name no EMQX has.
                spec("client.authorize", &[]),
                spec("client.nope", &[]),
                spec("client.connect", &[]),
                spec("client.authenticate", &[]),
                spec("client.check_acl", &[]),
                spec("session.created", &[]),
                // `#` in the middle.
                spec("message.publish", &["a/#/b", "t/#"]),
            ],
        }))
    }

    async fn on_provider_unloaded(&self, _: Request<v1::ProviderUnloadedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::internal("clean-up failed"))
    }

    async fn on_client_connect(&self, _: Request<v1::ClientConnectRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unavailable("backend down"))
    }

    async fn on_client_authenticate(&self, _: Request<v1::ClientAuthenticateRequest>) -> Answer<v1::ValuedResponse> {
        // A message where a bool is expected.
        Ok(Response::new(v1::ValuedResponse {
            r#type: ResponsedType::Continue as i32,
            value: Some(Value::Message(v1::Message::default())),
        }))
    }

    async fn on_client_check_acl(&self, _: Request<v1::ClientCheckAclRequest>) -> Answer<v1::ValuedResponse> {
        Err(Status::internal("acl store unreachable"))
    }

    async fn on_session_created(&self, _: Request<v1::SessionCreatedRequest>) -> Answer<v1::EmptySuccess> {
        // Slower than any deadline the test uses.
        tokio::time::sleep(Duration::from_secs(3)).await;
        empty()
    }

    async fn on_message_publish(&self, r: Request<v1::MessagePublishRequest>) -> Answer<v1::ValuedResponse> {
        let sent = r.into_inner().message.unwrap_or_default();
        let value = if sent.qos == 0 {
            // A bool where a message is expected.
            Value::BoolResult(false)
        } else {
            // A fresh Message: topic and payload only; id, from, qos, timestamp, headers lost.
            Value::Message(v1::Message { topic: sent.topic, payload: sent.payload, ..Default::default() })
        };
        let r#type = if sent.qos == 0 { ResponsedType::StopAndReturn } else { ResponsedType::Continue };
        Ok(Response::new(v1::ValuedResponse { r#type: r#type as i32, value: Some(value) }))
    }

    // Not registered: EMQX never calls these, and neither does the tester.
    async fn on_client_connack(&self, _: Request<v1::ClientConnackRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_client_connected(&self, _: Request<v1::ClientConnectedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_client_disconnected(&self, _: Request<v1::ClientDisconnectedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_client_subscribe(&self, _: Request<v1::ClientSubscribeRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_client_unsubscribe(&self, _: Request<v1::ClientUnsubscribeRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_session_subscribed(&self, _: Request<v1::SessionSubscribedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_session_unsubscribed(&self, _: Request<v1::SessionUnsubscribedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_session_resumed(&self, _: Request<v1::SessionResumedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_session_discarded(&self, _: Request<v1::SessionDiscardedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_session_takeovered(&self, _: Request<v1::SessionTakeoveredRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_session_terminated(&self, _: Request<v1::SessionTerminatedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_message_delivered(&self, _: Request<v1::MessageDeliveredRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_message_dropped(&self, _: Request<v1::MessageDroppedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
    async fn on_message_acked(&self, _: Request<v1::MessageAckedRequest>) -> Answer<v1::EmptySuccess> {
        Err(Status::unimplemented("not registered"))
    }
}

/// Serves [`Wrong`] on a fresh loopback port; returns its URL.
async fn start_wrong() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = v1::hook_provider_server::HookProviderServer::new(Wrong);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

fn assert_fails(report: &Report, check: CheckId, causes: &[&str]) {
    let v = report.verdict(check).unwrap_or_else(|| panic!("{check} missing\n{}", report.table()));
    assert_eq!(v.outcome, Outcome::Fail, "{check}: {}\n{}", v.reason, report.table());
    for cause in causes {
        assert!(v.reason.contains(cause), "{check}: {cause:?} not in {:?}", v.reason);
    }
}

#[tokio::test]
async fn wrong_provider_fails_every_check_for_the_right_reason() {
    let url = start_wrong().await;
    let timeout = Duration::from_millis(400);
    let target = Target { package: Some(exhook_hooks::Version::V3), timeout, ..Target::new(&url) };
    let report = run(&target).await.unwrap();
    let table = report.table();
    println!("{table}");

    // Every check fails, and the run says so.
    assert_eq!(report.verdicts.len(), CheckId::ALL.len(), "{table}");
    assert!(report.verdicts.iter().all(|v| v.outcome == Outcome::Fail), "{table}");
    assert_eq!(report.exit_code(), 1);
    assert!(table.contains("9 checks: 0 pass, 9 fail, 0 skip: DOES NOT CONFORM"), "{table}");

    assert_fails(
        &report,
        CheckId::Package,
        &["does not serve emqx.exhook.v3", "UNIMPLEMENTED", "never loads it", "it speaks emqx.exhook.v1 (EMQX 4.x)"],
    );
    assert_eq!(report.package, Some(exhook_hooks::Version::V1));
    assert_fails(
        &report,
        CheckId::ProviderLoaded,
        &[
            "\"client.authorize\" is not a hookpoint of EMQX 4.x (emqx.exhook.v1)",
            "register \"client.check_acl\"",
            "unknown hookpoint \"client.nope\"",
            "unknown_hookpoint",
        ],
    );
    assert_fails(
        &report,
        CheckId::TopicFilters,
        &["message.publish: invalid topic filter \"a/#/b\": '#' must be the whole last level"],
    );
    let filters = report.verdict(CheckId::TopicFilters).unwrap();
    assert!(!filters.reason.contains("t/#"), "{}", filters.reason);
    assert_fails(
        &report,
        CheckId::ValuedAnswers,
        &[
            "client.check_acl (SUBSCRIBE t/#): INTERNAL \"acl store unreachable\"",
            "client.check_acl (PUBLISH t/x): INTERNAL",
            "failed_action",
        ],
    );
    assert_fails(
        &report,
        CheckId::ValueKinds,
        &[
            "client.authenticate: CONTINUE with a message where a bool_result is expected",
            "message.publish (t/x qos 0): STOP_AND_RETURN with bool_result false where a message is expected",
        ],
    );
    assert_fails(
        &report,
        CheckId::MessageKept,
        &[
            "message.publish (t/x qos 1): dropped id, dropped from, qos 1 became 0, dropped timestamp, dropped headers peerhost, protocol, username",
        ],
    );
    // The qos 1 publish is the only one that returned a message.
    assert!(!report.verdict(CheckId::MessageKept).unwrap().reason.contains(';'));
    assert_fails(
        &report,
        CheckId::Notifications,
        &["client.connect: UNAVAILABLE \"backend down\"", "counts the call failed"],
    );
    let notifications = report.verdict(CheckId::Notifications).unwrap();
    assert!(!notifications.reason.contains("session.created"), "timeouts belong to deadline: {}", notifications.reason);
    assert_fails(&report, CheckId::Deadline, &["session.created: no answer within 400ms"]);
    assert!(!report.verdict(CheckId::Deadline).unwrap().reason.contains("client.connect"));
    assert_fails(&report, CheckId::ProviderUnloaded, &["INTERNAL \"clean-up failed\""]);

    // Hooks it did not register validly are not called (client.authorize and client.nope are
    // not v1 hookpoints; client.check_acl is, so authorize is driven under that name).
    assert_eq!(
        report.hook_names(),
        ["client.connect", "client.authenticate", "session.created", "client.check_acl", "message.publish"]
    );

    // JSON carries the same verdicts.
    let json = report.to_json();
    assert_eq!(json["passed"], false);
    assert_eq!(json["package"], "v1");
    assert_eq!(json["checks"][0]["check"], "package");
    assert_eq!(json["checks"][0]["result"], "fail");
}

/// Auto-detection finds the package it speaks: then `package` passes and the rest still fail.
#[tokio::test]
async fn auto_detects_the_package_of_a_wrong_provider() {
    let url = start_wrong().await;
    let report = run(&Target { timeout: Duration::from_millis(400), ..Target::new(&url) }).await.unwrap();
    let package = report.verdict(CheckId::Package).unwrap();
    assert_eq!(package.outcome, Outcome::Pass, "{}", report.table());
    assert_eq!(package.reason, "serves emqx.exhook.v1 (EMQX 4.x); not v3, v2");
    assert_eq!(report.verdicts.iter().filter(|v| v.outcome == Outcome::Fail).count(), 8, "{}", report.table());
}
