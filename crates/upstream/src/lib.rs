//! The client side of the gateway: everything about talking to one upstream provider.
//!
//! * [`Provider`]: the provider's HTTP/2 channel, its resolved package, its registration
//!   (hooks and topic filters from its last `OnProviderLoaded`), and counters.
//! * [`Provider::call`]: one unary call with a timeout; failures are typed ([`CallError`]).
//! * [`Provider::load`]: `OnProviderLoaded`, probing packages newest first for `auto`.
//! * [`queue`]: bounded, clientid-sharded notification queues with one delivery task per shard.
#![warn(missing_docs)]

mod provider;
pub mod queue;
mod registration;

pub use provider::{CallError, LoadError, Provider, ProviderState, ProviderStats};
pub use registration::Registration;
