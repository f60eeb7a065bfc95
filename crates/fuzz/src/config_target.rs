//! `config`: the TOML configuration, parsed and validated.

use std::path::Path;

use exhook_config::{Config, ConfigError};

/// The tables a problem's key can start with (`providers[0] (auth).timeout`, `chains."x"`).
const ROOTS: [&str; 7] = ["include", "server", "admin", "providers", "tenants", "chains", "default_tenant"];

/// Inputs that would make validation read an endless or blocking file (`/dev/zero`,
/// `/proc/self/fd/0`): validation reads the token and TLS files a config names, which is
/// fine for an operator's file but not for a fuzzer's. TOML `\u` escapes could spell the
/// same paths, so they are skipped too.
fn reads_special_files(text: &str) -> bool {
    ["dev", "proc", "sys", "\\u", "\\U"].iter().any(|s| text.contains(s))
}

pub(crate) fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if reads_special_files(text) {
        return;
    }
    match Config::parse(text, Path::new("<fuzz>")) {
        Ok(config) => {
            // A valid config is resolved: the default tenant first, chains per hook.
            assert_eq!(config.tenants.first().map(|t| t.name.as_str()), Some("default"));
            for t in &config.tenants {
                assert_eq!(t.chains.len(), exhook_hooks::Hook::ALL.len());
                assert!(t.chains.iter().flatten().all(|&i| i < config.providers.len()));
            }
        }
        Err(ConfigError::Parse { message, .. }) => {
            assert!(message.contains("line ") && message.contains("column "), "no line/column in {message:?}");
        }
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty(), "invalid without a problem");
            for problem in &problems {
                let named = ROOTS.iter().any(|r| problem.starts_with(r));
                let reason = problem.split_once(": ").is_some_and(|(k, r)| !k.is_empty() && !r.is_empty());
                assert!(named && reason, "problem does not name its key: {problem:?}");
            }
        }
        Err(e) => panic!("parse returned an error of another kind: {e}"),
    }
}
