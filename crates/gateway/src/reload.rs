//! Reloading the configuration: one path for every trigger, and the file watcher.
//!
//! **One path.** SIGHUP, `POST /api/v1/reload` and the watcher all call [`Reloader::reload`]:
//! read the file → parse and validate ([`Config::parse`]) → `Gateway::reload` (diff, keep
//! unchanged providers, swap atomically) → `metrics().reload(ok)` → `AdminState::set_config`
//! → one log line. Reloads are serialized (one at a time); an invalid file is reported, counted
//! as a failure, and the running configuration stays.
//!
//! **Watching** (`run --watch`). The *directory* holding the file (and each directory its
//! `include` patterns look in) is watched (inotify through
//! the `notify` crate), not the file: editors replace the file by renaming a new one over it,
//! and Kubernetes mounts a ConfigMap as `gateway.toml -> ..data/gateway.toml` where `..data`
//! is itself a symlink swapped atomically to a new timestamped directory; in both cases the
//! watched inode of the file never changes, but the directory sees the rename. Any event in
//! a watched directory only arms a [`Debounce`] (quiet period [`DEBOUNCE`], at most
//! [`DEBOUNCE_MAX`] after the first event); when it fires, the file is read and its SHA-256
//! compared with the last content tried (the main file and every included file, re-expanded:
//! a new team file counts): only new content is reloaded, so unrelated files,
//! `touch`, or the several events of one swap cost one read and no reload. A file that cannot
//! be read (mid-deletion, directory gone) is skipped until the next event.
//!
//! **The directory itself** may disappear or be replaced: every [`REWATCH_TICK`] its identity
//! (device and inode) is compared with the watched one ([`rewatch`], pure); when it changed the
//! old watch is removed and the new directory watched (then its file checked), when it is gone
//! the watch is removed and the process keeps serving the running configuration. One watcher
//! per process, one watch per directory: nothing accumulates however often it comes and goes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use exhook_admin::{AdminState, ConfigInfo};
use exhook_config::{Config, ConfigError, Sources};
use exhook_server::{Gateway, ReloadReport};
use sha2::Digest as _;
use tokio::time::Instant;

/// Quiet period after the last event in the watched directory before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Events arriving without pause never delay a read longer than this after the first one.
pub const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// How often the watched directory's identity is checked (it may disappear or be replaced).
pub const REWATCH_TICK: Duration = Duration::from_secs(1);

/// The one reload path (see the module doc).
pub struct Reloader {
    path: PathBuf,
    gateway: Gateway,
    admin: Arc<AdminState>,
    /// Serializes reloads; holds the SHA-256 of the last content tried (valid or not).
    last: tokio::sync::Mutex<Option<[u8; 32]>>,
    /// The directories to watch: the main file's and those `include` looks in.
    dirs: std::sync::Mutex<Vec<PathBuf>>,
}

impl Reloader {
    /// A reloader of the file at `path` (running as `sources`) into `gateway`, reported to `admin`.
    pub fn new(path: PathBuf, sources: &Sources, gateway: Gateway, admin: Arc<AdminState>) -> Arc<Reloader> {
        Arc::new(Reloader {
            dirs: std::sync::Mutex::new(watch_dirs(&path, sources)),
            path,
            gateway,
            admin,
            last: tokio::sync::Mutex::new(Some(sha256(sources.digest_text().as_bytes()))),
        })
    }

    /// The directories to watch (they change when `include` does).
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.dirs.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Re-reads the files and applies them; `trigger` (`sighup`, `api`, `watch`) goes into the
    /// log. The error is the reason the running configuration stays (file and key named).
    pub async fn reload(&self, trigger: &'static str) -> Result<ReloadReport, String> {
        let mut last = self.last.lock().await;
        let sources = Sources::read(&self.path).map_err(|e| e.to_string());
        self.reload_locked(&mut last, trigger, sources).await
    }

    /// The watcher's check: reloads only when the files' content differs from the last tried.
    /// A main file that cannot be read is skipped (it is being replaced, or its directory is
    /// gone); an included file that cannot be read is a failed reload (once per error).
    pub async fn reload_if_changed(&self) -> Option<Result<ReloadReport, String>> {
        let mut last = self.last.lock().await;
        let sources = match Sources::read(&self.path) {
            Ok(s) => Ok(s),
            Err(ConfigError::Read { path, source }) if path == self.path => {
                tracing::debug!(config = %self.path.display(), error = %source, "configuration file not readable; waiting for the next change");
                return None;
            }
            Err(e) => Err(e.to_string()),
        };
        let digest = match &sources {
            Ok(s) => sha256(s.digest_text().as_bytes()),
            Err(e) => sha256(e.as_bytes()),
        };
        if *last == Some(digest) {
            return None;
        }
        Some(self.reload_locked(&mut last, "watch", sources).await)
    }

    async fn reload_locked(
        &self,
        last: &mut Option<[u8; 32]>,
        trigger: &'static str,
        sources: Result<Sources, String>,
    ) -> Result<ReloadReport, String> {
        let result = match sources {
            Ok(sources) => {
                let text = sources.digest_text();
                *last = Some(sha256(text.as_bytes()));
                if let Ok(mut dirs) = self.dirs.lock() {
                    *dirs = watch_dirs(&self.path, &sources);
                }
                match Config::from_sources(&sources) {
                    Ok((config, _)) => {
                        self.gateway.reload(config).await.map(|r| (r, text)).map_err(|e| format!("{e:#}"))
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => {
                *last = Some(sha256(e.as_bytes()));
                Err(e)
            }
        };
        match result {
            Ok((report, text)) => {
                self.gateway.metrics().reload(true);
                self.admin.set_config(ConfigInfo::new(Some(&self.path), &text));
                tracing::info!(trigger, added = ?report.added, kept = ?report.kept, removed = ?report.removed, "configuration reloaded");
                if !report.not_replaced.is_empty() {
                    tracing::warn!(providers = ?report.not_replaced, "changed providers not loaded in time: their running instances stay");
                }
                if !report.needs_restart.is_empty() {
                    tracing::warn!(settings = ?report.needs_restart, "these changes take effect after a restart");
                }
                Ok(report)
            }
            Err(e) => {
                self.gateway.metrics().reload(false);
                tracing::error!(trigger, error = %e, "configuration NOT reloaded; the running one stays");
                Err(e)
            }
        }
    }
}

/// The main file's directory, then each directory `include` looks in (no duplicates).
fn watch_dirs(path: &Path, sources: &Sources) -> Vec<PathBuf> {
    let mut dirs = vec![dir_of(path)];
    for d in &sources.include_dirs {
        if !dirs.contains(d) {
            dirs.push(d.clone());
        }
    }
    dirs
}

impl exhook_admin::Reload for Reloader {
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<ReloadReport, String>> + Send + '_>> {
        Box::pin(Reloader::reload(self, "api"))
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// When to read the file after a burst of directory events: `quiet` after the last event, but
/// never later than `max` after the first. Pure: the caller supplies the clock.
#[derive(Debug, Clone)]
pub struct Debounce {
    quiet: Duration,
    max: Duration,
    /// First and last event of the pending burst.
    pending: Option<(Instant, Instant)>,
}

impl Debounce {
    /// A debouncer with nothing pending.
    pub fn new(quiet: Duration, max: Duration) -> Debounce {
        Debounce { quiet, max, pending: None }
    }

    /// Records an event at `now`.
    pub fn event(&mut self, now: Instant) {
        self.pending = Some(match self.pending {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }

    /// When the pending burst is due (`None`: nothing pending).
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.map(|(first, last)| (last + self.quiet).min(first + self.max))
    }

    /// True (and nothing pending any more) when the burst is due at `now`.
    pub fn fire(&mut self, now: Instant) -> bool {
        let due = self.deadline().is_some_and(|d| d <= now);
        if due {
            self.pending = None;
        }
        due
    }
}

/// A directory's identity: device and inode (a replaced directory has a new one).
pub type DirId = (u64, u64);

/// What to do with the watch on a directory, given what is watched and what is there now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewatch {
    /// The watched directory is still the one there.
    Keep,
    /// Watch the directory now there (removing the old watch first, if any), then check the file.
    Watch(DirId),
    /// The directory is gone: remove the watch; keep serving.
    Drop,
    /// Nothing watched, nothing there.
    Wait,
}

/// Pure: compares the watched directory's identity with the current one.
pub fn rewatch(watched: Option<DirId>, current: Option<DirId>) -> Rewatch {
    match (watched, current) {
        (Some(w), Some(c)) if w == c => Rewatch::Keep,
        (_, Some(c)) => Rewatch::Watch(c),
        (Some(_), None) => Rewatch::Drop,
        (None, None) => Rewatch::Wait,
    }
}

#[cfg(unix)]
fn dir_id(dir: &Path) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(dir).ok().filter(|m| m.is_dir()).map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn dir_id(dir: &Path) -> Option<DirId> {
    std::fs::metadata(dir).ok().filter(|m| m.is_dir()).map(|_| (0, 0))
}

/// The directory to watch for `file` (its parent; `.` for a bare file name).
fn dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Watches the configuration's directories until `stop` is set (see the module doc).
/// Never fails the process: a watcher that cannot be created is logged and watching ends.
pub fn spawn_watch(
    reloader: Arc<Reloader>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use notify::Watcher as _;
        let events = Arc::new(tokio::sync::Notify::new());
        let signal = Arc::clone(&events);
        let mut watcher = match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Err(e) = &event {
                tracing::debug!(error = %e, "configuration watcher event error");
            }
            // An error may hide a change: check the files either way (the hash decides).
            signal.notify_one();
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the configuration file; reload with SIGHUP or POST /api/v1/reload");
                return;
            }
        };
        // Each directory watched and the identity it had when its watch was added.
        let mut watched: Vec<(PathBuf, DirId)> = Vec::new();
        let mut debounce = Debounce::new(DEBOUNCE, DEBOUNCE_MAX);
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + REWATCH_TICK;
                let dirs = reloader.dirs();
                // Directories no longer part of the configuration.
                watched.retain(|(d, _)| {
                    let keep = dirs.contains(d);
                    if !keep {
                        let _ = watcher.unwatch(d);
                    }
                    keep
                });
                for dir in &dirs {
                    let at = watched.iter().position(|(d, _)| d == dir);
                    match rewatch(at.map(|i| watched[i].1), dir_id(dir)) {
                        Rewatch::Keep | Rewatch::Wait => {}
                        Rewatch::Watch(id) => {
                            if let Some(i) = at {
                                let _ = watcher.unwatch(dir);
                                watched.swap_remove(i);
                                tracing::info!(dir = %dir.display(), "configuration directory replaced: watching the new one");
                            }
                            match watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                                Ok(()) => {
                                    watched.push((dir.clone(), id));
                                    // Changes made while unwatched: check now.
                                    debounce.event(now);
                                }
                                Err(e) => {
                                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the configuration directory; retrying");
                                }
                            }
                        }
                        Rewatch::Drop => {
                            let _ = watcher.unwatch(dir);
                            if let Some(i) = at {
                                watched.swap_remove(i);
                            }
                            tracing::warn!(dir = %dir.display(), "configuration directory gone: the running configuration stays; watching for it to come back");
                        }
                    }
                }
            }
            if debounce.fire(now) {
                let _ = reloader.reload_if_changed().await;
                // `include` may name new directories: look at once.
                if reloader.dirs().iter().any(|d| !watched.iter().any(|(w, _)| w == d)) {
                    next_tick = Instant::now();
                }
            }
            let wake = debounce.deadline().map_or(next_tick, |d| d.min(next_tick));
            tokio::select! {
                _ = events.notified() => debounce.event(Instant::now()),
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        for (dir, _) in &watched {
            let _ = watcher.unwatch(dir);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_fires_once_after_the_quiet_period() {
        let t0 = Instant::now();
        let mut d = Debounce::new(200 * MS, 2000 * MS);
        assert!(!d.fire(t0) && d.deadline().is_none());
        d.event(t0);
        d.event(t0 + 50 * MS);
        assert_eq!(d.deadline(), Some(t0 + 250 * MS));
        assert!(!d.fire(t0 + 249 * MS));
        assert!(d.fire(t0 + 250 * MS));
        assert!(!d.fire(t0 + 251 * MS), "fires once per burst");
        assert!(d.deadline().is_none());
    }

    #[test]
    fn continuous_events_fire_by_the_maximum_delay() {
        let t0 = Instant::now();
        let mut d = Debounce::new(200 * MS, 1000 * MS);
        let mut t = t0;
        while t < t0 + 1500 * MS {
            d.event(t);
            if d.fire(t) {
                break;
            }
            t += 100 * MS;
        }
        assert_eq!(t, t0 + 1000 * MS, "never starved beyond the maximum");
    }

    #[test]
    fn rewatch_follows_the_directory() {
        assert_eq!(rewatch(Some((1, 2)), Some((1, 2))), Rewatch::Keep);
        assert_eq!(rewatch(Some((1, 2)), Some((1, 3))), Rewatch::Watch((1, 3)));
        assert_eq!(rewatch(None, Some((1, 3))), Rewatch::Watch((1, 3)));
        assert_eq!(rewatch(Some((1, 2)), None), Rewatch::Drop);
        assert_eq!(rewatch(None, None), Rewatch::Wait);
    }

    #[test]
    fn the_watched_directory_is_the_parent() {
        assert_eq!(dir_of(Path::new("gateway.toml")), PathBuf::from("."));
        assert_eq!(dir_of(Path::new("/etc/exhook/gateway.toml")), PathBuf::from("/etc/exhook"));
    }
}
