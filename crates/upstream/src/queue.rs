//! Notification delivery: a bounded queue per provider, split into shards by clientid.
//!
//! EMQX blocks the MQTT client until a notification hook is answered, so the gateway answers
//! at once and delivers here. A clientid always hashes to the same shard, and each shard has
//! one task delivering in order, so one client's events reach the provider in the order EMQX
//! sent them. A full shard drops the event and counts it: EMQX is never blocked and memory
//! never grows past `shards × capacity` events, nor past `queue_bytes` of encoded events
//! (each tenant's share of both is enforced by [`crate::share`] before an event gets here).
//!
//! **Per-client order across hook kinds.** EMQX runs one client's hooks one after another, so
//! a provider behind EMQX sees `client.connected` before that client's next
//! `client.authorize`. Queued notifications are answered before they are delivered, so a
//! valued call for the same client could overtake them. The rule: a valued call for client X
//! to this provider first waits ([`NotifyQueues::wait_turn`]) until every notification of X
//! queued before it has been delivered (or has failed), bounded by the call's own budget.
//! The bookkeeping is two counters per *slot* (`key_hash % 1024`): events queued and events
//! done. With nothing of X pending the check is two atomic loads, no wait. Slots are shared by
//! clients whose hashes collide: then a call may also wait for another client's pending
//! events of that slot — later, never out of order.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::EmptySuccess;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::{Provider, Route};

/// One event waiting for delivery. Its `Debug` shows the body's length only: the encoded
/// request may carry a password (`ClientInfo.password`), and bytes print as text.
pub struct Notification {
    /// The hook.
    pub hook: Hook,
    /// The package the body is encoded in.
    pub version: Version,
    /// The encoded request.
    pub body: Bytes,
    /// [`crate::hash_key`] of the clientid: picks the shard, the replica and the connection.
    pub key_hash: u64,
    /// The tenant's room for it (see [`crate::share`]), given back when it is delivered,
    /// fails or is dropped.
    pub ticket: crate::share::QueueTicket,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification")
            .field("hook", &self.hook)
            .field("version", &self.version)
            .field("body_len", &self.body.len())
            .field("key_hash", &self.key_hash)
            .finish_non_exhaustive()
    }
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    /// The shard (or the tenant's share of it) is full: dropped and counted.
    #[error("queue full")]
    Full,
    /// The tenant's share of `queue_bytes` is used up: dropped and counted.
    #[error("queue bytes used up")]
    Bytes,
    /// The queue is shut down.
    #[error("queue closed")]
    Closed,
}

/// What [`NotifyQueues::wait_turn`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Nothing of the client was pending: no wait (the usual case).
    Free,
    /// The client's earlier notifications were delivered while it waited.
    Waited,
    /// They were still pending at the deadline.
    TimedOut,
}

/// Slots of the per-client order bookkeeping (see the module doc): 16 KiB per provider.
const ORDER_SLOTS: usize = 1024;

/// Events queued and done per slot; a slot's `done` catches up with its `queued` when all of
/// its events queued so far have been delivered, failed or dropped.
#[derive(Debug)]
struct Turns {
    queued: Box<[AtomicU64]>,
    done: Box<[AtomicU64]>,
}

impl Turns {
    fn new() -> Turns {
        let slots = || (0..ORDER_SLOTS).map(|_| AtomicU64::new(0)).collect();
        Turns { queued: slots(), done: slots() }
    }

    fn slot(key_hash: u64) -> usize {
        (key_hash % ORDER_SLOTS as u64) as usize
    }

    fn finish(&self, key_hash: u64) {
        self.done[Self::slot(key_hash)].fetch_add(1, Ordering::AcqRel);
    }
}

/// The shards of one provider.
#[derive(Debug)]
pub struct NotifyQueues {
    shards: Vec<mpsc::Sender<Notification>>,
    capacity: usize,
    turns: std::sync::Arc<Turns>,
    /// Deliveries taken off a queue and not finished yet.
    delivering: std::sync::Arc<AtomicUsize>,
    /// Signalled after every delivery, for [`NotifyQueues::drain`].
    progress: std::sync::Arc<Notify>,
}

impl NotifyQueues {
    pub(crate) fn new(provider: Weak<Provider>, shards: usize, capacity: usize) -> NotifyQueues {
        let delivering = std::sync::Arc::new(AtomicUsize::new(0));
        let progress = std::sync::Arc::new(Notify::new());
        let turns = std::sync::Arc::new(Turns::new());
        let shards = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                let task = Delivery {
                    provider: provider.clone(),
                    delivering: delivering.clone(),
                    progress: progress.clone(),
                    turns: turns.clone(),
                };
                tokio::spawn(task.run(rx));
                tx
            })
            .collect();
        NotifyQueues { shards, capacity, turns, delivering, progress }
    }

    /// Waits until every notification of `key_hash`'s client queued so far has been
    /// delivered (or failed), or until `until`. Free (two atomic loads) when nothing of the
    /// client is pending.
    pub async fn wait_turn(&self, key_hash: u64, until: Instant) -> Turn {
        let slot = Turns::slot(key_hash);
        let target = self.turns.queued[slot].load(Ordering::Acquire);
        let caught_up = || self.turns.done[slot].load(Ordering::Acquire) >= target;
        if caught_up() {
            return Turn::Free;
        }
        loop {
            let progressed = self.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            if caught_up() {
                return Turn::Waited;
            }
            if tokio::time::timeout_at(until, progressed).await.is_err() {
                return if caught_up() { Turn::Waited } else { Turn::TimedOut };
            }
        }
    }

    /// The shard for a key hash. Stable for the life of the process.
    pub fn shard_of(&self, key_hash: u64) -> usize {
        (key_hash % self.shards.len() as u64) as usize
    }

    /// Queues an event without waiting; never blocks.
    pub fn enqueue(&self, notification: Notification) -> Result<(), EnqueueError> {
        let key_hash = notification.key_hash;
        // Counted before it is visible to the delivery task, so `done` never passes `queued`.
        self.turns.queued[Turns::slot(key_hash)].fetch_add(1, Ordering::AcqRel);
        let result = match self.shards[self.shard_of(key_hash)].try_send(notification) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(EnqueueError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EnqueueError::Closed),
        };
        self.turns.finish(key_hash);
        self.progress.notify_waiters();
        result
    }

    /// Events waiting in all shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| self.capacity - s.capacity()).sum()
    }

    /// True if nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every queued event is delivered (or failed) or `deadline` passes; returns
    /// how many are still waiting.
    pub async fn drain(&self, deadline: Instant) -> usize {
        loop {
            let progressed = self.progress.notified();
            if self.is_empty() && self.delivering.load(Ordering::Acquire) == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, progressed).await.is_err() {
                return self.len();
            }
        }
    }
}

/// One shard's delivery task.
struct Delivery {
    provider: Weak<Provider>,
    delivering: std::sync::Arc<AtomicUsize>,
    progress: std::sync::Arc<Notify>,
    turns: std::sync::Arc<Turns>,
}

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<Notification>) {
        while let Some(n) = rx.recv().await {
            let key_hash = n.key_hash;
            self.delivering.fetch_add(1, Ordering::AcqRel);
            let alive = deliver_one(&self.provider, n).await;
            self.turns.finish(key_hash);
            self.delivering.fetch_sub(1, Ordering::AcqRel);
            self.progress.notify_waiters();
            if !alive {
                break;
            }
        }
    }
}

/// Delivers one event; false once the provider is gone (the task then ends: the provider
/// owns the senders, so nothing more can arrive).
/// Delivers one event; false once the provider is gone (the task then ends: the provider
/// owns the senders, so nothing more can arrive). The call records its own result.
async fn deliver_one(provider: &Weak<Provider>, n: Notification) -> bool {
    let Some(p) = provider.upgrade() else { return false };
    let timeout = p.config().timeout;
    let result = p.call::<EmptySuccess>(n.hook, n.version, n.body, timeout, n.key_hash, Route::Queued).await;
    drop(n.ticket);
    if let Err(e) = result {
        tracing::debug!(provider = %p.name(), hook = %n.hook, error = %e, "notification not delivered");
        p.record_drop(exhook_metrics::DropReason::DeliveryFailed);
    }
    true
}
