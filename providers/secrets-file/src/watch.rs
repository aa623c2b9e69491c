//! Change detection: a `notify` watcher on the root, debounced, re-reads every secret handed
//! out and revokes the leases whose content changed or vanished.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ligand_runtime::SecretRevocation;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::error::FileSecretsError;
use crate::provider::{Shared, lock};

/// A running watch: the OS watcher and the task that turns its events into revocations.
pub(crate) struct Watch {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Watch {
    pub(crate) fn start(shared: &Arc<Shared>) -> Result<Self, FileSecretsError> {
        let (events_tx, events) = mpsc::unbounded_channel();
        // Only the fact of a change matters: every secret handed out is re-read afterwards,
        // which also covers symbolic-link swaps whose event paths name no secret.
        let mut watcher =
            notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
                let _closed = events_tx.send(());
            })
            .map_err(FileSecretsError::Watch)?;
        watcher
            .watch(&shared.root, RecursiveMode::Recursive)
            .map_err(FileSecretsError::Watch)?;
        let task = tokio::spawn(run(Arc::downgrade(shared), events, shared.debounce));
        Ok(Self {
            _watcher: watcher,
            task,
        })
    }

    pub(crate) fn stop(self) {
        self.task.abort();
    }
}

async fn run(shared: Weak<Shared>, mut events: mpsc::UnboundedReceiver<()>, debounce: Duration) {
    while events.recv().await.is_some() {
        // Wait for a quiet period, but never longer than ten of them in total, so that a
        // constantly written directory still gets checked.
        let give_up = Instant::now() + debounce * 10;
        loop {
            let quiet = (Instant::now() + debounce).min(give_up);
            match timeout_at(quiet, events.recv()).await {
                Ok(Some(())) if Instant::now() < give_up => {}
                Ok(None) => return,
                Ok(Some(())) | Err(_) => break,
            }
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        rescan(&shared).await;
    }
}

/// Re-reads every secret handed out; a lease whose content changed (or that can no longer be
/// read) is revoked, so the framework evicts it and reads again.
async fn rescan(shared: &Arc<Shared>) {
    for (name, lease) in shared.leases() {
        let current = shared
            .read(&name)
            .await
            .ok()
            .map(|bytes| shared.lease_id(&name, &bytes));
        if current.as_deref() == Some(lease.as_str()) {
            continue;
        }
        tracing::debug!(secret = %name, "file secret changed; revoking its lease");
        shared.forget(&name, &lease);
        let subscribers: Vec<_> = {
            let mut subscribers = lock(&shared.subscribers);
            subscribers.retain(|s| !s.is_closed());
            subscribers.clone()
        };
        for subscriber in subscribers {
            let revocation = SecretRevocation {
                lease_id: lease.clone(),
            };
            let _closed = subscriber.send(revocation).await;
        }
    }
}
