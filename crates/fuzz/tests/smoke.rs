//! The bounded smoke of every fuzz target: its checked-in corpus, its regression inputs and a
//! deterministic stream of mutated and random inputs, on stable, in the normal test suite.

use exhook_fuzz::{TARGETS, seeds, smoke};

/// Generated inputs per target: enough to walk every decoder's error paths, small enough
/// that the whole smoke stays well under a minute in a debug build on two cores.
fn budget(target: &str) -> usize {
    match target {
        // Each accepted input is a real gRPC call to the loopback provider.
        "server" => 20_000,
        // Validation builds TLS configurations and resolves chains.
        "config" => 20_000,
        _ => 100_000,
    }
}

fn smoke(name: &str) {
    let (_, target) = TARGETS.iter().find(|(n, _)| *n == name).expect("a known target");
    let report = smoke::run(&seeds::workspace_root(), name, *target, budget(name), 0x5eed ^ name.len() as u64);
    assert!(report.files > 0, "{name}: no corpus under fuzz/corpus/{name}");
}

#[test]
fn requests() {
    smoke("requests");
}

#[test]
fn grpc_frame() {
    smoke("grpc_frame");
}

#[test]
fn server() {
    smoke("server");
}

#[test]
fn grpc_timeout() {
    smoke("grpc_timeout");
}

#[test]
fn replies() {
    smoke("replies");
}

#[test]
fn config() {
    smoke("config");
}

#[test]
fn topic() {
    smoke("topic");
}

/// The checked-in seeds are what the generator builds (rerun
/// `cargo run -p exhook-fuzz --bin exhook-fuzz-seeds` after the sessions or the example
/// config change).
#[test]
fn checked_in_seeds_are_current() {
    let root = seeds::workspace_root();
    let built = seeds::build(&root).expect("seeds build from the contract and config/gateway.toml");
    for s in &built {
        let path = seeds::corpus_dir(&root, s.target).join(&s.name);
        let mut on_disk = std::fs::read(&path).unwrap_or_default();
        let mut want = s.data.clone();
        // Protobuf maps (`Message.headers`) encode in hash order, which differs from run to
        // run: compare the bytes as a multiset.
        on_disk.sort_unstable();
        want.sort_unstable();
        assert!(on_disk == want, "{} is stale: rerun exhook-fuzz-seeds", path.display());
    }
    let total: usize = built.iter().map(|s| s.data.len()).sum();
    assert!(total < 1 << 20, "the seed corpus should stay under 1 MiB ({total} bytes)");
}
