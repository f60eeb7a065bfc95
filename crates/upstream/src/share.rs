//! A tenant's share of a provider: what one tenant's burst may take of a provider that
//! several tenants reach, so that it cannot shed or drop another tenant's calls.
//!
//! The rules (pure counting; the configuration decides `tenants`, the number of tenants that
//! reach the provider):
//! - **Calls in flight** (valued calls and `after-delivery` notifications): each tenant gets
//!   `max_inflight / tenants` (at least 1). Beyond it the tenant's call is shed
//!   (`failed_action` applies) while the other tenants' shares stay free. The shares add up
//!   to at most `max_inflight`, so the provider-wide limit never sheds a tenant within its
//!   share.
//! - **Queued notifications**: each tenant gets `queue_size / tenants` entries (at least 1)
//!   in every shard, so a tenant flooding one shard never fills it for the others, and
//!   `queue_bytes / tenants` bytes of encoded events over all shards. Beyond either the
//!   event is dropped and counted (`queue_full` or `queue_bytes`).
//! - Slots and tickets give their room back when dropped (a call ends; an event is delivered,
//!   fails or is dropped), also after a reload replaced the shares: a ticket holds its share.
//!
//! A single tenant (no `[[tenants]]`) gets the whole provider: the same limits as before
//! sharing existed, for the price of one more atomic add per call.
//!
//! ```
//! use exhook_upstream::share::{ShareFull, TenantShare};
//! let share = TenantShare::new(4, 2, 10, 1000, 2); // max_inflight 4, 2 shards x 10, 1000 B; 2 tenants
//! let a = share.try_call().unwrap();
//! let b = share.try_call().unwrap();
//! assert!(share.try_call().is_none()); // 4 / 2 tenants
//! drop((a, b));
//! let t = share.try_queue(0, 400).unwrap();
//! assert_eq!(share.try_queue(1, 200).err(), Some(ShareFull::Bytes)); // 400 + 200 > 1000 / 2
//! drop(t);
//! assert!(share.try_queue(1, 200).is_ok());
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Which part of a tenant's queue share is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ShareFull {
    /// Its entries in the event's shard.
    #[error("the tenant's share of the queue shard is full")]
    Count,
    /// Its bytes.
    #[error("the tenant's share of queue_bytes is used up")]
    Bytes,
}

/// One tenant's share of one provider.
#[derive(Debug)]
pub struct TenantShare {
    max_inflight: usize,
    max_queued: usize,
    max_bytes: usize,
    inflight: AtomicUsize,
    queued: Box<[AtomicUsize]>,
    bytes: AtomicUsize,
}

impl TenantShare {
    /// The share of one of `tenants` tenants of a provider with these limits.
    pub fn new(
        max_inflight: usize,
        shards: usize,
        queue_size: usize,
        queue_bytes: usize,
        tenants: usize,
    ) -> Arc<TenantShare> {
        let n = tenants.max(1);
        Arc::new(TenantShare {
            max_inflight: (max_inflight / n).max(1),
            max_queued: (queue_size / n).max(1),
            max_bytes: queue_bytes / n,
            inflight: AtomicUsize::new(0),
            queued: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            bytes: AtomicUsize::new(0),
        })
    }

    /// The calls in flight this tenant may have.
    pub fn max_inflight(&self) -> usize {
        self.max_inflight
    }

    /// Takes a call slot, or `None` when the tenant's share is in use.
    pub fn try_call(&self) -> Option<CallSlot<'_>> {
        let before = self.inflight.fetch_add(1, Ordering::Relaxed);
        let slot = CallSlot(&self.inflight);
        (before < self.max_inflight).then_some(slot)
    }

    /// Reserves room for one queued event of `bytes` bytes in `shard`.
    pub fn try_queue(self: &Arc<Self>, shard: usize, bytes: usize) -> Result<QueueTicket, ShareFull> {
        let shard = shard % self.queued.len();
        let count = &self.queued[shard];
        if count.fetch_add(1, Ordering::Relaxed) >= self.max_queued {
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(ShareFull::Count);
        }
        if self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes > self.max_bytes {
            self.bytes.fetch_sub(bytes, Ordering::Relaxed);
            count.fetch_sub(1, Ordering::Relaxed);
            return Err(ShareFull::Bytes);
        }
        Ok(QueueTicket { share: Arc::clone(self), shard, bytes })
    }

    /// Events this tenant has queued (all shards) and their bytes.
    pub fn queued(&self) -> (usize, usize) {
        let n = self.queued.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        (n, self.bytes.load(Ordering::Relaxed))
    }
}

/// A call in flight; frees its slot when dropped.
#[derive(Debug)]
pub struct CallSlot<'a>(&'a AtomicUsize);

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Room for one queued event; given back when the event is delivered, fails or is dropped.
#[derive(Debug)]
pub struct QueueTicket {
    share: Arc<TenantShare>,
    shard: usize,
    bytes: usize,
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.share.queued[self.shard].fetch_sub(1, Ordering::Relaxed);
        self.share.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tenant_gets_everything() {
        let s = TenantShare::new(3, 1, 2, 100, 1);
        let calls: Vec<_> = (0..3).map(|_| s.try_call().unwrap()).collect();
        assert!(s.try_call().is_none());
        drop(calls);
        assert!(s.try_call().is_some());
        let a = s.try_queue(0, 60).unwrap();
        let b = s.try_queue(0, 40).unwrap();
        assert_eq!(s.try_queue(0, 0).err(), Some(ShareFull::Count));
        assert_eq!(s.queued(), (2, 100));
        drop((a, b));
        assert_eq!(s.queued(), (0, 0));
    }

    #[test]
    fn shares_are_independent_and_never_zero() {
        let a = TenantShare::new(2, 2, 2, 10, 3);
        let b = TenantShare::new(2, 2, 2, 10, 3);
        assert_eq!(a.max_inflight(), 1);
        let _held = a.try_call().unwrap();
        assert!(a.try_call().is_none());
        assert!(b.try_call().is_some(), "b's share is its own");
        // Per shard: a's shard 0 full does not touch its shard 1.
        let _t = a.try_queue(0, 1).unwrap();
        assert_eq!(a.try_queue(0, 1).err(), Some(ShareFull::Count));
        assert!(a.try_queue(1, 1).is_ok());
        // An event larger than the byte share is refused, and gives its room back.
        assert_eq!(b.try_queue(0, 4).err(), Some(ShareFull::Bytes));
        assert_eq!(b.queued(), (0, 0));
    }
}
