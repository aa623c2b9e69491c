//! The folder watch: a `notify` watcher on the policy folder, debounced, reloads the whole
//! folder on any change and publishes each reload's outcome.
//!
//! `notify` (inotify, FSEvents, ReadDirectoryChanges) rather than polling: a change shows in
//! a few milliseconds plus the debounce, and an idle service reads nothing. The folder is
//! watched, not its files, so an editor that writes a temporary file and renames it over the
//! original, or a Kubernetes ConfigMap's symbolic-link swap, is seen like an in-place write.
//! Any change reads every file: the folder is small, and a partial view of an edit spread
//! over several files is never compiled on its own. What was read is compared with what was
//! last loaded (or refused), so an event that changed nothing the policy is made of (a
//! `touch`, an editor's swap file: dotfiles are not part of a policy) neither recompiles nor
//! empties the decision cache. The first check runs as the watch starts, so an edit made
//! between the initial load and the watch is not missed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ligand_runtime::PolicyUpdate;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout_at};

use ligand_opa_bundle::Bundle;

use crate::engine::Inner;
use crate::error::LoadError;
use crate::loader::Loader;

/// How long the folder must stay quiet before it is reloaded: an editor's save, a `git
/// checkout` or a `cp -r` is a burst of events that should make one reload.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(250);

/// Starts watching `dir` for `inner`; the watch runs until every receiver is dropped.
pub(crate) fn start(
    inner: &Arc<Inner>,
    dir: PathBuf,
    loaded: Option<Bundle>,
) -> Result<watch::Receiver<PolicyUpdate>, LoadError> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let _open = events_tx.send(());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the folder (this watch's own reloads) must not trigger a reload.
        // An error may mean lost events: reload to be sure.
        let changed = match &event {
            Ok(event) => is_change(&event.kind),
            Err(_) => true,
        };
        if changed {
            let _closed = events_tx.send(());
        }
    })
    .map_err(|e| watch_error(&dir, e))?;
    watcher
        .watch(&dir, RecursiveMode::Recursive)
        .map_err(|e| watch_error(&dir, e))?;
    let (updates, rx) = watch::channel(Ok(inner.version()));
    tokio::spawn(run(inner.clone(), dir, loaded, watcher, events, updates));
    Ok(rx)
}

/// What [`check`] read (`None` after a read error, so that the next read always loads) and
/// the outcome: `None` when nothing changed, else the revision loaded or why it was refused.
type Checked = (Option<Bundle>, Option<Result<Option<String>, String>>);

/// Reads the folder and, when it differs from `previous`, loads it.
fn check(inner: &Inner, dir: &Path, previous: Option<Bundle>) -> Checked {
    match Loader::read_folder(dir) {
        Err(error) => (None, Some(Err(error.to_string()))),
        Ok(files) if previous.as_ref() == Some(&files) => (previous, None),
        Ok(files) => {
            let outcome = inner.reload_folder(&files, dir).map_err(|e| e.to_string());
            (Some(files), Some(outcome))
        }
    }
}

fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn watch_error(dir: &Path, error: notify::Error) -> LoadError {
    LoadError::Config(format!("watching {}: {error}", dir.display()))
}

async fn run(
    inner: Arc<Inner>,
    dir: PathBuf,
    mut last: Option<Bundle>,
    // Held for as long as the watch runs: dropping it stops the OS watch.
    _watcher: notify::RecommendedWatcher,
    mut events: mpsc::UnboundedReceiver<()>,
    updates: watch::Sender<PolicyUpdate>,
) {
    loop {
        tokio::select! {
            () = updates.closed() => return,
            event = events.recv() => if event.is_none() { return },
        }
        // Wait for a quiet period, but never longer than ten of them in total, so that a
        // folder written without pause still gets reloaded.
        let give_up = Instant::now() + DEBOUNCE * 10;
        loop {
            let quiet = (Instant::now() + DEBOUNCE).min(give_up);
            match timeout_at(quiet, events.recv()).await {
                Ok(Some(())) if Instant::now() < give_up => {}
                Ok(None) => return,
                Ok(Some(())) | Err(_) => break,
            }
        }
        if inner.is_closed() {
            return;
        }
        let loading = inner.clone();
        let folder = dir.clone();
        let previous = last.take();
        let checked = tokio::task::spawn_blocking(move || check(&loading, &folder, previous)).await;
        let outcome = match checked {
            Ok((read, outcome)) => {
                last = read;
                outcome
            }
            Err(error) => Some(Err(format!("policy load task failed: {error}"))),
        };
        let update = match outcome {
            None => continue,
            Some(Ok(revision)) => Ok(revision),
            Some(Err(error)) => {
                tracing::warn!(
                    folder = %dir.display(),
                    %error,
                    "policy change refused; the previous policy stays"
                );
                Err(error)
            }
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}
