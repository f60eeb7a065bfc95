//! The `server` target with the several-messages check on, over its regression inputs: tonic's
//! unary server drains messages after the first, so a body of two complete messages (or a
//! message and a dangling prefix) reached the provider with the first, until the EMQX-facing
//! body (`LimitedBody`) refused bytes after the one message.

use exhook_fuzz::{seeds, smoke};

#[test]
fn several_messages_never_reach_a_provider() {
    let root = seeds::workspace_root();
    for (path, data) in smoke::load_dir(&smoke::regressions_dir(&root, "server")) {
        eprintln!("{}", path.display());
        exhook_fuzz::server_with(&data, true);
    }
}
