//! Structured fuzzing of every decoder the network reaches (issue 9, part 4).
//!
//! One pure function per target, `fn(&[u8])`: the cargo-fuzz project in `fuzz/` wraps each in
//! a one-line `fuzz_target!`, and the normal test suite (`tests/smoke.rs`) runs the same
//! functions on stable over the checked-in corpus plus a deterministic stream of mutations.
//! A target returns normally for any input; a broken property panics, which is how libFuzzer
//! (and the smoke test) report it.
//!
//! | target | subject | properties |
//! |---|---|---|
//! | [`requests`] | every RPC request of every package → model → each package → back | the model keeps every field a package has; each package decodes what the gateway sends it; the round trip is stable; dispatch key, topic and `RequestMeta` survive |
//! | [`grpc_frame`] | `exhook_proto::codec::decode_unary_frame` | `Ok` exactly for one well-formed frame within the limit, and it is the message; otherwise the right error |
//! | [`server`] | the EMQX-facing `HookService` of each package, in-process, raw HTTP bodies and `grpc-timeout` | a clean gRPC status or a valid reply; a body that is not one decodable message never reaches a provider |
//! | [`grpc_timeout`] | `parse_grpc_timeout` | no panic or overflow; exactly the valid values parse, to the right duration |
//! | [`replies`] | provider replies: `LoadedResponse` → `Registration` → EMQX's `LoadedResponse`, `ValuedResponse` → the fold, `EmptySuccess` | registration and fold agree with a second reading of the rules |
//! | [`config`] | `exhook_config::Config::parse` | no panic; every error names its key (`key: reason`) or a TOML line and column |
//! | [`topic`] | `exhook_topic` filters and matching | the trie agrees with the reference matcher; a filter matches every topic made from it |
//!
//! [`seeds`] builds the seed corpus from the contract's sample sessions and
//! `config/gateway.toml`; [`smoke`] is the bounded run the test suite does.
#![warn(missing_docs)]

mod config_target;
mod frames;
mod replies;
mod requests;
mod server_target;
mod timeout;
mod topic_target;
mod types;

pub mod seeds;
pub mod smoke;

pub use requests::{select as request_selector_of, selector as request_selector};
pub use server_target::{STRICT_SINGLE_MESSAGE, ServerInput, run_with as server_with};

/// A fuzz target: one pure function of the input bytes.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` call it.
pub const TARGETS: [(&str, Target); 7] = [
    ("requests", requests),
    ("grpc_frame", grpc_frame),
    ("server", server),
    ("grpc_timeout", grpc_timeout),
    ("replies", replies),
    ("config", config),
    ("topic", topic),
];

/// Every RPC request of every package: byte 0 picks the RPC and package (see
/// [`request_selector`]), the rest is the request as EMQX would send it.
///
/// Decoded as the package's own type and as the model (the model must keep every field the
/// package has); then as the gateway does (v1's `OnProviderLoaded` by hand, everything else
/// straight into the model, normalised from the caller's package), and sent to a provider
/// of each package: the provider's type decodes it, the trip back is stable, and the
/// dispatch key, message topic and `RequestMeta` survive. v3 (the canonical shape) loses
/// nothing but the fields it does not have.
pub fn requests(data: &[u8]) {
    requests::run(data)
}

/// `exhook_proto::codec::decode_unary_frame`: byte 0 picks the limit, the rest is the body.
/// `Ok` exactly when the body is one uncompressed frame within the limit (the slice is the
/// message); otherwise the first applicable error in the documented order.
pub fn grpc_frame(data: &[u8]) {
    frames::run(data)
}

/// The EMQX-facing server path: a [`exhook_server::Gateway`] built in-process from a config
/// with one counting provider (a real `exhook-sim` provider on loopback registering every
/// hook, `notify = "after-delivery"` so every delivery happens inside the call), driven as
/// a tower service with an `http::Request` whose path, `grpc-timeout`, `grpc-encoding` and
/// body come from the input (see [`ServerInput`]).
///
/// Never panics; the answer is a clean gRPC status, or for one decodable message of a known
/// RPC a valid reply (`grpc-status: 0` and a decodable answer). A body that is not exactly
/// one decodable message never reaches the chain nor the provider (observer events and
/// provider-side call counts unchanged).
pub fn server(data: &[u8]) {
    server_target::run(data)
}

/// `grpc-timeout` parsing (`exhook_server::parse_grpc_timeout`, the same function as
/// `exhook_proto::codec::parse_grpc_timeout`): exactly 1–8 digits and a unit parse, to
/// `digits × unit` without overflow; the deadline built from it does not overflow `Instant`.
pub fn grpc_timeout(data: &[u8]) {
    timeout::run(data)
}

/// Provider replies: byte 0 picks the kind (`LoadedResponse`, `ValuedResponse` of one of
/// the three valued hooks, `EmptySuccess`) and package; the rest is one or more replies.
///
/// `LoadedResponse` → `exhook_upstream::Registration::from_response` → EMQX's
/// `LoadedResponse` (`exhook_server::loaded_response`): the registration agrees with a
/// second reading of the rules, and the answer to EMQX only names hookpoints in the
/// caller's spelling with valid filters. `ValuedResponse`s → `exhook_chain::Fold`: the fold
/// agrees with a second reading of EMQX's rules, undecodable replies count as failures.
/// Each package's type and the model agree on every reply.
pub fn replies(data: &[u8]) {
    replies::run(data)
}

/// The TOML config (`exhook_config::Config::parse`): never panics; an error is either a TOML
/// error with a line and column, or a list of problems each `key: reason` with a key under
/// one of the file's tables.
pub fn config(data: &[u8]) {
    config_target::run(data)
}

/// Topic filters and matching (`exhook_topic`): lines are filters, the last line a topic.
/// Validation and insertion agree; the trie agrees with the reference matcher; every valid
/// filter matches topics made from it by filling in its wildcards.
pub fn topic(data: &[u8]) {
    topic_target::run(data)
}
