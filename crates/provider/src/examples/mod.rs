//! The providers of the kit's examples, as a library (cargo feature `examples`).
//!
//! Each module holds one provider type; the binaries in `crates/provider/examples/` are thin
//! mains over them (`cargo run -p exhook-provider --example NAME -- --listen ADDR ...`: the
//! command line, the log subscriber and `serve`), and `exhook-gateway demo` runs three of them
//! in-process behind the gateway. Read them as the kit's worked examples: each shows one kind
//! of answer and what it does to the fold of a chain.
//!
//! | module | hooks | answers |
//! |---|---|---|
//! | [`deny_list`] | `client.authenticate` | `deny()` for listed names, else `ignore()` |
//! | [`tenant_topics`] | `client.authorize` | `allow()` (passes on) under the tenant's prefix, else `deny()` |
//! | [`payload_rewriter`] | `message.publish` on its filters | `rewrite().payload(..)`: a JSON envelope |
//! | [`audit_log`] | `client.authenticate` and notifications | `ignore()`; writes JSON lines, never the password |
//! | [`rate_limit`] | `message.publish` | `stop_publish()` over a per-client token bucket, else `ignore()` |

pub mod audit_log;
pub mod deny_list;
pub mod payload_rewriter;
pub mod rate_limit;
pub mod tenant_topics;
