//! A configuration rebuilt when its files change.
//!
//! Rules:
//! - [`Watched::refresh`] reads every file; when their content differs from the last build's,
//!   it builds anew. Content, not timestamps: a Kubernetes Secret update swaps a `..data`
//!   symlink, and cert-manager may rewrite a file with the same size within one second.
//! - A build that fails keeps the running configuration and returns the error; it is tried
//!   again at the next refresh only if the files change again (one log line per bad rotation,
//!   not one per poll).
//! - Readers take [`Watched::current`]: an `Arc` of the configuration, lock-free. Connections
//!   already established keep the configuration they were made with.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::TlsError;

type Build<T> = Box<dyn Fn() -> Result<T, TlsError> + Send + Sync>;

/// What a refresh did.
#[derive(Debug)]
pub enum Refresh {
    /// The files are as they were.
    Unchanged,
    /// The files changed and the new configuration is in use.
    Rotated,
    /// The files changed but do not load: the previous configuration stays.
    Kept(TlsError),
}

/// A configuration and the files it is built from.
pub struct Watched<T> {
    what: String,
    files: Vec<PathBuf>,
    build: Build<T>,
    current: ArcSwap<T>,
    /// Fingerprint of the files' content at the last attempt (successful or not).
    seen: Mutex<u64>,
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").field("what", &self.what).field("files", &self.files).finish()
    }
}

fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        match std::fs::read(f) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Builds the first configuration (an error here is a configuration error).
    pub fn new(
        what: impl Into<String>,
        files: Vec<PathBuf>,
        build: impl Fn() -> Result<T, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Watched<T>>, TlsError> {
        let seen = fingerprint(&files);
        let first = build()?;
        Ok(Arc::new(Watched {
            what: what.into(),
            files,
            build: Box::new(build),
            current: ArcSwap::from_pointee(first),
            seen: Mutex::new(seen),
        }))
    }

    /// The configuration in use.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Rebuilds if the files changed (see the module rules).
    pub fn refresh(&self) -> Refresh {
        let now = fingerprint(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return Refresh::Unchanged;
            }
            *seen = now;
        }
        match (self.build)() {
            Ok(config) => {
                self.current.store(Arc::new(config));
                tracing::info!(what = %self.what, "TLS files changed: new handshakes use them");
                Refresh::Rotated
            }
            Err(e) => {
                tracing::error!(what = %self.what, error = %e, "TLS files changed but do not load: keeping the previous ones");
                Refresh::Kept(e)
            }
        }
    }

    /// Refreshes every `every` while anyone else holds this `Arc` (needs a tokio runtime).
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(watched) = weak.upgrade() else { return };
                // File reads are small and rare; keep them off the async workers anyway.
                let _ = tokio::task::spawn_blocking(move || watched.refresh()).await;
            }
        });
    }
}
