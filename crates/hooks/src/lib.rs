//! What the gateway knows about each ExHook RPC, independent of any I/O.
//!
//! * [`Version`]: the three protobuf packages EMQX speaks.
//! * [`Hook`]: the 21 RPCs, with their names per package (RPC, gRPC path, EMQX hookpoint) and
//!   their kind (lifecycle, notification, valued).
//! * [`HookRequest`]: one trait over every request type of the internal model, so the server
//!   and the chain executor have one generic path instead of 63 copies.
//! * [`convert`]: the few real differences between packages (uptime text, topic filter
//!   options, shared subscriptions, User-Property as `props` text or `user_props` pairs,
//!   fields a package does not have), and [`ConversionIssue`], what a caller sent that could
//!   not be converted.
#![warn(missing_docs)]

mod hook;
mod request;
mod version;

pub mod convert;

pub use convert::ConversionIssue;
pub use hook::{Hook, HookKind, HookSet, UnknownHook};
pub use request::{HookRequest, ValuedRequest};
pub use version::{ParseVersionError, Version};
