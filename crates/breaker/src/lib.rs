//! A per-provider circuit breaker for the EMQX ExHook gateway.
//!
//! EMQX denies logins while its exhook server fails, so a sick upstream provider must fail
//! fast instead of making every call wait for its timeout. tower has no circuit breaker;
//! this crate is a small one: the gateway's call path takes an explicit [`Permit`] per call
//! (its phases are spelled out in `exhook_upstream::Provider::call`), so there is no tower
//! middleware to maintain.
//!
//! * [`Breaker`] — the shared state machine (closed → open → half-open → closed), with a
//!   rolling failure-rate window of constant size, a consecutive-failure trip, hot-reloadable
//!   [`BreakerConfig`], [`snapshot`](Breaker::snapshot)s for status pages and a `watch`
//!   channel of [`BreakerState`] transitions for metrics and logs;
//! * [`Permit`] — one admitted call; resolved as success, failure or neutral (dropping it is
//!   neutral, so a cancelled call never leaks a half-open probe slot).
//!
//! Time is [`tokio::time::Instant`], so all timing is testable in paused time.
//!
//! ```
//! use exhook_breaker::{Breaker, BreakerConfig, BreakerState};
//!
//! let breaker = Breaker::new(BreakerConfig { consecutive_failures: 2, ..BreakerConfig::default() });
//! breaker.try_acquire()?.failure();
//! breaker.try_acquire()?.failure();
//! assert_eq!(breaker.state(), BreakerState::Open);
//! let rejected = breaker.try_acquire().unwrap_err();
//! assert!(rejected.retry_after <= breaker.config().open_duration);
//! # Ok::<(), exhook_breaker::BreakerOpen>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod breaker;
mod config;
mod window;

pub use breaker::{Breaker, BreakerOpen, BreakerSnapshot, BreakerState, Outcome, Permit};
pub use config::BreakerConfig;
pub use window::WINDOW_BUCKETS;
