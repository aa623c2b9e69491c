//! The watch task: long polls in a loop, publishing bundles and errors.

use std::time::Duration;

use ligand_runtime::BundleUpdate;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::client::{Client, Fetched};

pub(crate) struct Poller {
    pub(crate) client: Client,
    pub(crate) updates: watch::Sender<BundleUpdate>,
    /// The ETag of the bundle in force; `None` makes the next request unconditional.
    pub(crate) etag: Option<String>,
    pub(crate) wait: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) stop: CancellationToken,
}

impl Poller {
    pub(crate) async fn run(mut self) {
        loop {
            let result = tokio::select! {
                () = self.stop.cancelled() => return,
                result = self.client.get(self.etag.as_deref(), Some(self.wait)) => result,
            };
            let delay = match result {
                Ok(Fetched::Bundle(bundle)) => {
                    self.backoff.reset();
                    tracing::debug!(revision = ?bundle.revision, "new policy bundle");
                    self.etag.clone_from(&bundle.etag);
                    let _previous = self.updates.send_replace(Ok(bundle));
                    // Ask again at once: a long-polling server holds the next request, and a
                    // plain server answers it with a 304 that is then paced below.
                    None
                }
                Ok(Fetched::NotModified { long_poll }) => {
                    self.backoff.reset();
                    (!long_poll).then_some(self.poll_interval)
                }
                Err(error) => {
                    let delay = self.backoff.next();
                    tracing::warn!(error = %error_chain(&error), retry_in = ?delay, "policy bundle fetch failed");
                    let _previous = self.updates.send_replace(Err(error_chain(&error)));
                    // The next answer must be a bundle, not a 304, so that recovery is visible
                    // even when the policy did not change while the server was unreachable.
                    self.etag = None;
                    Some(delay)
                }
            };
            if let Some(delay) = delay {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
