//! Real ExHook peers on loopback, for tests, the demo and benchmarks.
//!
//! * [`SimProvider`]: a provider written the way a third party writes one: with the
//!   generated `HookProvider` server of its package (v1, v2 or v3). What it registers and how
//!   it answers each call is a script; it records every call it receives.
//! * [`EmqxClient`]: plays EMQX: sends requests of the internal model, shaped for the chosen
//!   package, to the package's gRPC paths, with a `grpc-timeout` like EMQX's.
//!
//! Feature `tls` (off by default; tests and the load generator turn it on): providers serving
//! `https` (`SimProviderBuilder::start_tls`) and EMQX calling over TLS (`EmqxClient::connect_tls`).
//! Without it the crate is what `exhook-gateway demo` links: plaintext peers only.
#![warn(missing_docs)]

mod client;
mod provider;
pub mod sample;
#[cfg(feature = "tls")]
pub mod tls;

pub use client::EmqxClient;
pub use provider::{Call, Reply, Script, SimProvider, SimProviderBuilder, notifications, valued};
