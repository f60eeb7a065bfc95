//! Load generation for exhook-gateway's benchmarks.
//!
//! * [`run`]: plays EMQX against any ExHook endpoint (a provider, a proxy, the gateway):
//!   one package (v1/v2/v3), a hook [`Mix`], N HTTP/2 connections × M calls in flight,
//!   closed loop (maximum throughput) or open loop (fixed rate; latency measured from each
//!   call's intended start, so it has no coordinated omission), latency in HDR histograms,
//!   and the CPU seconds and peak RSS of watched processes over the measured window.
//! * [`provider`]: [`BenchProvider`], a fast provider on the generated tonic servers that
//!   answers from memory; the upstream of every benchmark scenario.
//! * [`procstat`]: CPU and `VmHWM` from `/proc`.
//!
//! The binaries `exhook-loadgen` and `exhook-bench-provider` wrap them for the comparison
//! runner (`cargo run --release -p exhook-benches --bin compare`).
#![warn(missing_docs)]

pub mod procstat;
pub mod provider;
pub mod run;
pub mod workload;

pub use provider::{Answer, BenchProvider, ProviderSpec};
pub use run::{LoadConfig, LoadResult, run};
pub use workload::{Mix, Workload};
