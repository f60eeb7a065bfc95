//! exhook-gateway's benchmarks.
//!
//! * `compare` (binary): measures, in one run and on one machine, EMQX → provider directly,
//!   through nginx, through haproxy and through the gateway, in alternating rounds, and
//!   writes a table, JSON and an SVG chart under `target/bench-report/`
//!   (`scripts/bench.sh` builds and runs it).
//! * `benches/*.rs` (criterion): the fold, package conversion and topic-filter matching,
//!   without I/O.
//!
//! This library holds the runner's parts: [`procs`] (child processes that never outlive the
//! runner), [`proxies`] (nginx and haproxy), [`scenarios`] and [`report`].
#![warn(missing_docs)]

pub mod curves;
pub mod procs;
pub mod proxies;
pub mod report;
pub mod scenarios;
