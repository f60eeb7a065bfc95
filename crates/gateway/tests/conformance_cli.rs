//! `exhook-gateway conformance` end to end: the binary against real providers on loopback,
//! its table and its exit codes (0 conforms, 1 a check failed, 2 cannot connect).

use exhook_hooks::{Hook, Version};
use exhook_proto::model::valued_response::ResponsedType;
use exhook_sim::{Reply, SimProvider};

async fn conformance(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_exhook-gateway"))
        .arg("conformance")
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn row<'a>(table: &'a str, check: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split('|').next().is_some_and(|c| c.trim() == check))
        .unwrap_or_else(|| panic!("no row {check:?} in\n{table}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conforming_provider_exits_0_with_every_row_passing() {
    let provider = SimProvider::builder(Version::V2)
        .all_hooks()
        .script(|call| match call.hook {
            Hook::ClientAuthenticate | Hook::ClientAuthorize => Reply::bool(ResponsedType::Continue, true),
            _ => Reply::Default,
        })
        .start()
        .await
        .unwrap();
    let (code, table, stderr) = conformance(&["--provider", &provider.url()]).await;
    assert_eq!(code, 0, "{table}{stderr}");
    println!("{table}");
    assert!(
        table
            .starts_with(&format!("conformance of {} in emqx.exhook.v2 (EMQX 5.0-5.8), deadline 5s\n", provider.url()))
    );
    assert!(table.contains("check             | result | reason\n"), "{table}");
    for check in [
        "package",
        "provider loaded",
        "topic filters",
        "valued answers",
        "value kinds",
        "notifications",
        "deadline",
        "provider unloaded",
    ] {
        assert!(row(&table, check).contains("| pass   |"), "{check}: {table}");
    }
    assert!(row(&table, "message kept").contains("| skip   | no message.publish answer returned a message"), "{table}");
    assert!(table.trim_end().ends_with("9 checks: 8 pass, 0 fail, 1 skip: CONFORMS"), "{table}");

    // --json: the same verdicts for machines.
    let (code, json, _) = conformance(&["--provider", &provider.url(), "--package", "v2", "--json"]).await;
    assert_eq!(code, 0, "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["package"], "v2");
    assert_eq!(json["passed"], true);
    assert_eq!(json["checks"].as_array().map(Vec::len), Some(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_exits_1_and_names_the_cause() {
    // Errors on a notification, answers publish late, and is asked for the wrong package.
    let provider = SimProvider::builder(Version::V3)
        .all_hooks()
        .script(|call| match call.hook {
            Hook::SessionCreated => Reply::Status(tonic::Status::internal("db down")),
            Hook::MessagePublish => Reply::ignore().after(std::time::Duration::from_secs(2)),
            _ => Reply::Default,
        })
        .start()
        .await
        .unwrap();
    let (code, table, stderr) =
        conformance(&["--provider", &provider.url(), "--package", "v2", "--timeout", "300ms"]).await;
    assert_eq!(code, 1, "{table}{stderr}");
    println!("{table}");
    assert!(row(&table, "package").contains("| FAIL   | does not serve emqx.exhook.v2"), "{table}");
    assert!(row(&table, "package").contains("it speaks emqx.exhook.v3"), "{table}");
    assert!(row(&table, "notifications").contains("| FAIL   | session.created: INTERNAL \"db down\""), "{table}");
    assert!(
        row(&table, "deadline").contains("| FAIL   | message.publish (t/1 qos 1): no answer within 300ms"),
        "{table}"
    );
    assert!(table.trim_end().ends_with("DOES NOT CONFORM"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_provider_exits_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, stdout, stderr) = conformance(&["--provider", &url, "--timeout", "1s"]).await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.starts_with(&format!("error: cannot connect to {url}")), "{stderr}");
    let (code, _, stderr) = conformance(&["--provider", "ftp://x:1"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("the scheme must be http:// or https://"), "{stderr}");
    // A bad flag is clap's usage error (exit 2 as well), naming the flag.
    let (code, _, stderr) = conformance(&["--provider", &url, "--package", "v4"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--package"), "{stderr}");
}
