//! Conformance tester for ExHook providers (`exhook-gateway conformance --provider URL`).
//!
//! Drives any provider, in any language, the way EMQX does — `OnProviderLoaded`, every hook it
//! registers with a realistic request, `OnProviderUnloaded` — and checks what EMQX relies on
//! (`proto/contract/contract.md`; `docs/conformance.md` explains each check):
//!
//! | check | holds when |
//! |---|---|
//! | `package` | it serves the package of its EMQX line (`emqx.exhook.v1`/`v2`/`v3`) |
//! | `provider loaded` | `OnProviderLoaded` is answered with hook names valid for that line |
//! | `topic filters` | the `message.*` hooks' topics are valid MQTT filters |
//! | `valued answers` | authenticate/authorize/publish are answered, never with an error |
//! | `value kinds` | CONTINUE/STOP_AND_RETURN carry a bool (authn/authz) or a message (publish) |
//! | `message kept` | a returned publish Message keeps id, from, qos, timestamp, headers |
//! | `notifications` | every notification is answered `EmptySuccess`, never an error |
//! | `deadline` | every call is answered within the deadline (`--timeout`, EMQX's 5 s) |
//! | `provider unloaded` | `OnProviderUnloaded` is answered without an error |
//!
//! Hooks a provider did not register are not called: EMQX never calls them.
//!
//! The crate has two halves: [`check`], pure functions from what was sent and received to a
//! [`Verdict`] with a reason (and [`Report`], the table), and the driver ([`run`]) that does
//! the I/O. [`cli`] holds the subcommand's flags.
//!
//! ```no_run
//! # async fn demo() -> Result<(), exhook_conformance::Error> {
//! let report = exhook_conformance::run(&exhook_conformance::Target::new("http://127.0.0.1:9000")).await?;
//! print!("{}", report.table());
//! std::process::exit(report.exit_code().into());
//! # }
//! ```
#![warn(missing_docs)]

pub mod check;
pub mod cli;
mod driver;
mod report;
mod samples;

pub use check::{Answer, CheckId, Exchange, Outcome, Verdict};
pub use driver::{DEFAULT_TIMEOUT, Error, Target, TlsFiles, run};
pub use report::Report;
