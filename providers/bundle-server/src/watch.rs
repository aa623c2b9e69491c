//! Rebuilding bundles when the repository changes: filesystem events (debounced) plus a
//! periodic rescan for the changes events miss (network filesystems, a replaced root,
//! exhausted inotify watches).

use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::store::{BundleStore, error_chain};

/// How long the repository must be quiet after a change before bundles are rebuilt.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);
/// How often the repository is rescanned even without filesystem events.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(30);

/// When the repository is read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// The quiet period after the last filesystem event before a rebuild.
    pub debounce: Duration,
    /// The period of the fallback rescan.
    pub rescan_interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            debounce: DEFAULT_DEBOUNCE,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
        }
    }
}

/// A running repository watch; dropping it (or [`RepoWatch::stop`]) ends it.
#[derive(Debug)]
pub struct RepoWatch {
    stop: CancellationToken,
    _watcher: Option<RecommendedWatcher>,
}

impl RepoWatch {
    /// Stops watching.
    pub fn stop(self) {}
}

impl Drop for RepoWatch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Starts watching `store`'s repository: each burst of filesystem events triggers one rescan
/// after `options.debounce` of quiet, and a rescan runs every `options.rescan_interval`
/// regardless. If filesystem events are unavailable the periodic rescan still runs (logged).
/// Must be called inside a Tokio runtime.
pub fn watch(store: Arc<BundleStore>, options: WatchOptions) -> RepoWatch {
    let events = Arc::new(Notify::new());
    let watcher = filesystem_events(&store, events.clone());
    let stop = CancellationToken::new();
    tokio::spawn(run(store, options, events, stop.clone()));
    RepoWatch {
        stop,
        _watcher: watcher,
    }
}

fn filesystem_events(store: &BundleStore, events: Arc<Notify>) -> Option<RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| match event {
        // Our own reads raise access events; only changes matter.
        Ok(event) if is_change(&event.kind) => events.notify_one(),
        Ok(_) => {}
        // An error may mean lost events: rescan to be sure.
        Err(_) => events.notify_one(),
    };
    let watcher = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(store.root(), RecursiveMode::Recursive)?;
        Ok(watcher)
    });
    match watcher {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(root = ?store.root(), %error, "filesystem events unavailable; relying on the periodic rescan");
            None
        }
    }
}

fn is_change(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

async fn run(
    store: Arc<BundleStore>,
    options: WatchOptions,
    events: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut next_rescan = Instant::now() + options.rescan_interval;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = events.notified() => {
                // Debounce: wait until no event arrived for a whole quiet period.
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = events.notified() => {}
                        () = tokio::time::sleep(options.debounce) => break,
                    }
                }
            }
            () = sleep_until(next_rescan) => {}
        }
        rescan(&store).await;
        next_rescan = Instant::now() + options.rescan_interval;
    }
}

async fn rescan(store: &Arc<BundleStore>) {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.rescan()).await {
        Ok(Ok(report)) => {
            if report.changed() {
                tracing::debug!(updated = ?report.updated, removed = ?report.removed, "repository rescanned");
            }
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error_chain(&error), "repository rescan failed; bundles unchanged");
        }
        Err(error) => tracing::warn!(%error, "repository rescan did not complete"),
    }
}
