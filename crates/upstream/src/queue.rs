//! Notification delivery: a bounded queue per provider, split into shards by clientid.
//!
//! EMQX blocks the MQTT client until a notification hook is answered, so the gateway answers
//! at once and delivers here. A clientid always hashes to the same shard, and each shard has
//! one task delivering in order, so one client's events reach the provider in the order EMQX
//! sent them. A full shard drops the event and counts it: EMQX is never blocked and memory
//! never grows past `shards × capacity` events.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Weak;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use exhook_hooks::{Hook, Version};
use exhook_proto::model::EmptySuccess;
use tokio::sync::mpsc;

use crate::Provider;

/// One event waiting for delivery.
#[derive(Debug)]
pub struct Notification {
    /// The hook.
    pub hook: Hook,
    /// The package the body is encoded in.
    pub version: Version,
    /// The encoded request.
    pub body: Bytes,
}

/// Why an event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    /// The shard is full: dropped and counted.
    #[error("queue full")]
    Full,
    /// The queue is shut down.
    #[error("queue closed")]
    Closed,
}

/// The shards of one provider.
#[derive(Debug)]
pub struct NotifyQueues {
    shards: Vec<mpsc::Sender<Notification>>,
    capacity: usize,
}

impl NotifyQueues {
    pub(crate) fn new(provider: Weak<Provider>, shards: usize, capacity: usize) -> NotifyQueues {
        let shards = (0..shards.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                tokio::spawn(deliver(provider.clone(), rx));
                tx
            })
            .collect();
        NotifyQueues { shards, capacity }
    }

    /// The shard for a dispatch key (clientid). Stable for the life of the process.
    pub fn shard_of(&self, key: &str) -> usize {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
        (h % self.shards.len() as u64) as usize
    }

    /// Queues an event without waiting; never blocks.
    pub fn enqueue(&self, key: &str, notification: Notification) -> Result<(), EnqueueError> {
        match self.shards[self.shard_of(key)].try_send(notification) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(EnqueueError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EnqueueError::Closed),
        }
    }

    /// Events waiting in all shards.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| self.capacity - s.capacity()).sum()
    }

    /// True if nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn deliver(provider: Weak<Provider>, mut rx: mpsc::Receiver<Notification>) {
    while let Some(n) = rx.recv().await {
        // The provider owns the senders: once it is gone, so is this task.
        let Some(p) = provider.upgrade() else { break };
        let result = p.call::<EmptySuccess>(n.hook, n.version, n.body, p.config.timeout).await;
        match result {
            Ok(_) => p.stats.notify_delivered.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                tracing::debug!(provider = %p.name(), hook = %n.hook, error = %e, "notification not delivered");
                p.stats.notify_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}
