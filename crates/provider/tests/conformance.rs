//! Every example passes the conformance tester (`exhook_conformance::run`, what
//! `exhook-gateway conformance --provider URL` runs): each is started as a process, as
//! `tests/examples.rs` does, and checked in the package it detects (v3, printed) and in each
//! package explicitly (one port serves all three). Every check passes, except the skips listed
//! per example, each with the reason it has nothing to look at.
//!
//! `cargo nextest run -p exhook-provider --test conformance --no-capture` prints the tables.

mod common;

use common::*;
use exhook_conformance::{CheckId, Outcome, Report, Target, run};
use exhook_provider::Version;

/// An example, its arguments, and the checks it is expected to skip, with why.
struct Case {
    example: &'static str,
    args: &'static [&'static str],
    skips: &'static [(CheckId, &'static str)],
}

const NO_NOTIFICATIONS: (CheckId, &str) =
    (CheckId::Notifications, "registers no notification hook: EMQX never calls it for one");
const NO_PUBLISH: (CheckId, &str) = (CheckId::MessageKept, "registers no message.publish: no message to keep");

const CASES: [Case; 5] = [
    Case { example: "deny_list", args: &["--deny", "mallory"], skips: &[NO_PUBLISH, NO_NOTIFICATIONS] },
    Case { example: "tenant_topics", args: &["--tenant", "acme=acme/"], skips: &[NO_PUBLISH, NO_NOTIFICATIONS] },
    Case { example: "payload_rewriter", args: &["--topic", "sensors/#"], skips: &[NO_NOTIFICATIONS] },
    // `--file` is added by the test (a temporary directory).
    Case { example: "audit_log", args: &[], skips: &[NO_PUBLISH] },
    // A bucket of 1 that refills once in 1000 s: the session's second publish is stopped, so
    // `message kept` checks the echoed message of a `stop_publish()`.
    Case { example: "rate_limit", args: &["--rate", "0.001", "--burst", "1"], skips: &[NO_NOTIFICATIONS] },
];

fn assert_conforms(case: &Case, report: &Report) {
    let table = report.table();
    assert_eq!(report.verdicts.len(), CheckId::ALL.len(), "{}:\n{table}", case.example);
    for v in &report.verdicts {
        let expected = if case.skips.iter().any(|(c, _)| *c == v.check) { Outcome::Skip } else { Outcome::Pass };
        assert_eq!(v.outcome, expected, "{}: {}: {}\n{table}", case.example, v.check, v.reason);
    }
    assert!(report.passed() && report.exit_code() == 0, "{}:\n{table}", case.example);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_conforms_in_every_package() {
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    for case in &CASES {
        let mut args = case.args.to_vec();
        if case.example == "audit_log" {
            args.extend(["--file", audit_file.to_str().unwrap()]);
        }
        let example = Example::start(case.example, &args).await;

        // Detected: every example serves v3 first, as EMQX 5.9+ calls it.
        let report = run(&Target::new(example.url())).await.expect("the tester reaches the example");
        println!("{}: cargo run -p exhook-provider --example {} -- {}", case.example, case.example, args.join(" "));
        print!("{}", report.table());
        for (check, why) in case.skips {
            println!("  ({check} skipped: {why})");
        }
        println!();
        assert_eq!(report.package, Some(Version::V3), "{}:\n{}", case.example, report.table());
        assert_conforms(case, &report);

        // As EMQX 4.x and 5.0-5.8 call it (and the gateway with `protocol = "v1"`/`"v2"`).
        for version in Version::NEWEST_FIRST {
            let report = run(&Target { package: Some(version), ..Target::new(example.url()) }).await.unwrap();
            assert_eq!(report.package, Some(version), "{}:\n{}", case.example, report.table());
            assert_conforms(case, &report);
        }

        let status = example.terminate().await;
        assert!(status.success(), "{}: {status}", case.example);
    }
    // The sessions' authentications carried a password; the audit log never holds it.
    let audit = std::fs::read_to_string(&audit_file).unwrap();
    assert!(audit.lines().count() >= 4 * 4, "four sessions of audited events:\n{audit}");
    assert!(!audit.contains("conformance-password"), "{audit}");
}
