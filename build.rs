//! Compiles `proto/` into Rust for the `exhook-proto` crate (`crates/proto` names this file
//! as its build script, so all generated code lives in one crate).
//!
//! protox is a pure-Rust protobuf compiler: a fresh machine needs no system `protoc`.
//! The encoded descriptor set is written next to the generated code so the crate can
//! embed it and a test can compare every message, field, enum and RPC with the
//! contract's field tables.
//!
//! Messages that carry a secret (`ClientInfo.password`, in every package and the model) get no
//! generated `Debug`: `crates/proto/src/secret.rs` writes one that redacts it, so a
//! `tracing::debug!(?request)` anywhere cannot print a password.

use std::path::PathBuf;

/// Messages whose `Debug` is hand-written (redacting) in `crates/proto/src/secret.rs`; the
/// compiler keeps the two lists equal (a missing impl or a duplicate one does not build).
const REDACTED_DEBUG: [&str; 4] = [
    ".emqx.exhook.v1.ClientInfo",
    ".emqx.exhook.v2.ClientInfo",
    ".emqx.exhook.v3.ClientInfo",
    ".exhook.gateway.model.ClientInfo",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let files = [
        "emqx/exhook/v1/exhook.proto",
        "emqx/exhook/v2/exhook.proto",
        "emqx/exhook/v3/exhook.proto",
        "exhook/gateway/model.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(f).display());
    }
    // The generation options live here too (e.g. which messages redact their Debug): a change
    // to this file must regenerate, not only a change to the .proto files.
    println!("cargo:rerun-if-changed={}", manifest.join("../../build.rs").display());
    let fds = protox::compile(files, [&proto_root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("exhook_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        // The model carries payloads through folds and fan-out; `Bytes` clones are refcounts.
        .bytes(".exhook.gateway.model")
        .skip_debug(REDACTED_DEBUG)
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
