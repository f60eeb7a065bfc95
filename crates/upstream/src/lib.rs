//! The client side of the gateway: everything about talking to one upstream provider.
//!
//! * [`Provider`]: the provider's HTTP/2 channel, its resolved package, its registration
//!   (hooks and topic filters from its last `OnProviderLoaded`), and counters.
//! * [`Provider::call`]: one unary call with a timeout; failures are typed ([`CallError`]).
//! * [`Provider::load`]: `OnProviderLoaded`, probing packages newest first for `auto`.
//! * [`queue`]: bounded, clientid-sharded notification queues with one delivery task per shard.
//! * [`share`]: each tenant's share of a provider's `max_inflight` and queues.
//! * replicas (`urls`), several HTTP/2 connections per replica, outlier ejection, a circuit
//!   breaker ([`exhook_breaker`]), a concurrency limit, and periodic health checks that
//!   re-load a provider coming back from an outage.
#![warn(missing_docs)]

mod conn;
mod endpoint;
mod health;
mod provider;
pub mod queue;
mod registration;
pub mod share;

pub use conn::TlsClient;
pub use endpoint::{EndpointStatus, hash_key};
pub use exhook_breaker::{BreakerSnapshot, BreakerState};
pub use health::spawn_health_checker;
pub use provider::{Backoff, CallError, LoadError, MetricsSlot, Provider, ProviderState, Route};
pub use registration::Registration;
