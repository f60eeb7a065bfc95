//! Writes the seed corpus to `fuzz/corpus/<target>/` (replacing what is there), from the
//! contract's sample sessions and `config/gateway.toml`.
//!
//! Usage: `cargo run -p exhook-fuzz --bin exhook-fuzz-seeds [workspace root]`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = std::env::args_os().nth(1).map(PathBuf::from).unwrap_or_else(exhook_fuzz::seeds::workspace_root);
    let seeds = match exhook_fuzz::seeds::build(&root) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("exhook-fuzz-seeds: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (target, _) in exhook_fuzz::TARGETS {
        let dir = exhook_fuzz::seeds::corpus_dir(&root, target);
        // Only the seeds are checked in: start from an empty directory.
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("exhook-fuzz-seeds: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    for s in &seeds {
        let path = exhook_fuzz::seeds::corpus_dir(&root, s.target).join(&s.name);
        if let Err(e) = std::fs::write(&path, &s.data) {
            eprintln!("exhook-fuzz-seeds: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("{} seeds written under {}", seeds.len(), root.join("fuzz/corpus").display());
    ExitCode::SUCCESS
}
