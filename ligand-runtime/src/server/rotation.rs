//! Background loops: SVID rotation (with the identity grace period), policy bundle watches and
//! the policy engine's own source watch.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::Server;
use crate::bundle::{BundleFetcher, BundleUpdate};
use crate::error::ProviderError;
use crate::health::{Monitor, ProviderKind, State};
use crate::identity::{WorkloadIdentity, X509ContextUpdate};
use crate::policy::{PolicyEngine, PolicyUpdate};
use crate::telemetry::{MetricsSnapshot, Telemetry};
use crate::tls::IdentityState;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Server {
    pub(super) async fn start_watches(&self) {
        let inner = &*self.inner;
        let rotation = IdentityLoop {
            identity: inner.identity.clone(),
            tls: inner.tls.clone(),
            monitor: inner.monitor.clone(),
            grace: inner.settings.identity_grace_period,
            stop: inner.watches.clone(),
            deadline: None,
        };
        let mut tasks = inner.watch_tasks.lock().await;
        tasks.push(tokio::spawn(rotation.run()));
        if let Some(cache) = &inner.secrets_cache {
            tasks.push(tokio::spawn(cache.clone().watch_revocations()));
        }
        let metrics = MetricsLoop {
            telemetry: inner.telemetry.clone(),
            audit: inner.audit.clone(),
            tls: inner.tls.clone(),
            secrets: inner.secrets_cache.clone(),
            interval: inner.settings.metrics_interval,
            stop: inner.watches.clone(),
        };
        tasks.push(tokio::spawn(metrics.run()));
        if let Some(fetcher) = &inner.bundle_fetcher {
            let bundles = BundleLoop {
                fetcher: fetcher.clone(),
                policy: inner.policy.clone(),
                monitor: inner.monitor.clone(),
                stop: inner.watches.clone(),
            };
            tasks.push(tokio::spawn(bundles.run()));
        }
        if let Some(updates) = source_watch(&*inner.policy, "policy") {
            let policy = PolicyWatchLoop {
                updates,
                monitor: Some(inner.monitor.clone()),
                stop: inner.watches.clone(),
            };
            tasks.push(tokio::spawn(policy.run()));
        }
        if let Some(shadow) = &inner.shadow {
            if let Some(updates) = source_watch(&**shadow.engine(), "shadow policy") {
                let watch = PolicyWatchLoop {
                    updates,
                    monitor: None,
                    stop: inner.watches.clone(),
                };
                tasks.push(tokio::spawn(watch.run()));
            }
            tasks.push(tokio::spawn(shadow.clone().run(inner.watches.clone())));
        }
    }
}

/// The engine's own source watch, when it has one.
fn source_watch(engine: &dyn PolicyEngine, what: &str) -> Option<watch::Receiver<PolicyUpdate>> {
    match engine.watch() {
        Ok(updates) => Some(updates),
        Err(ProviderError::NotSupported) => None,
        Err(error) => {
            tracing::warn!(%error, "{what} changes will not be picked up without a restart");
            None
        }
    }
}

/// Sleeps for `duration` unless `stop` fires first; returns false when stopped.
async fn pause(stop: &CancellationToken, duration: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = sleep(duration) => true,
    }
}

struct IdentityLoop {
    identity: Arc<dyn WorkloadIdentity>,
    tls: Arc<IdentityState>,
    monitor: Arc<Monitor>,
    grace: Option<Duration>,
    stop: CancellationToken,
    /// Set while rotation is failing: when identity becomes Unavailable.
    deadline: Option<Instant>,
}

impl IdentityLoop {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        while !self.stop.is_cancelled() {
            match self.identity.watch_x509_context().await {
                Ok(rx) => {
                    backoff = MIN_BACKOFF;
                    if !self.follow(rx).await {
                        return;
                    }
                    self.failed("identity watch ended".into());
                }
                Err(ProviderError::NotSupported) => {
                    self.poll().await;
                    return;
                }
                Err(error) => self.failed(error.to_string()),
            }
            if !self.wait(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Follows one watch until it ends (true) or the loop is stopped (false).
    async fn follow(&mut self, mut rx: watch::Receiver<X509ContextUpdate>) -> bool {
        let first = rx.borrow_and_update().clone();
        self.apply(first);
        loop {
            let deadline = self.deadline;
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => self.expire(),
                changed = rx.changed() => {
                    if changed.is_err() {
                        return true;
                    }
                    let update = rx.borrow_and_update().clone();
                    self.apply(update);
                }
            }
        }
    }

    /// Without a watch, fetches again at half the current SVID's remaining lifetime.
    async fn poll(&mut self) {
        loop {
            let remaining = self
                .tls
                .not_after()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let interval = (remaining / 2).clamp(Duration::from_secs(1), Duration::from_secs(300));
            if !self.wait(interval).await {
                return;
            }
            let update = self
                .identity
                .fetch_x509_context()
                .await
                .map_err(|e| e.to_string());
            self.apply(update);
        }
    }

    /// Waits, still honouring the grace deadline; false when stopped.
    async fn wait(&mut self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        loop {
            let deadline = self.deadline.filter(|d| *d < until);
            tokio::select! {
                () = self.stop.cancelled() => return false,
                () = sleep_until(until) => return true,
                () = sleep_until(deadline.unwrap_or(until)), if deadline.is_some() => self.expire(),
            }
        }
    }

    fn apply(&mut self, update: X509ContextUpdate) {
        let rotated =
            update.and_then(|context| self.tls.rotate(&context).map_err(|e| error_chain(&e)));
        match rotated {
            Ok(()) => {
                if self.deadline.take().is_some() {
                    tracing::info!("SVID rotation recovered");
                }
                tracing::debug!(spiffe_id = %self.tls.spiffe_id(), not_after = ?self.tls.not_after(), "SVID in force");
                self.monitor.set(ProviderKind::Identity, State::Ready, None);
            }
            Err(error) => self.failed(error),
        }
    }

    /// A rotation error: the last SVID stays in use (Degraded) until it expires or the grace
    /// period ends, whichever is first; then identity is Unavailable.
    fn failed(&mut self, cause: String) {
        if self.deadline.is_none() {
            let remaining = self
                .tls
                .not_after()
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let window = self.grace.map_or(remaining, |g| g.min(remaining));
            self.deadline = Some(Instant::now() + window);
            tracing::warn!(%cause, ?window, "SVID rotation failed; grace period started");
        }
        if self.monitor.provider(ProviderKind::Identity) != Some(State::Unavailable) {
            self.monitor
                .set(ProviderKind::Identity, State::Degraded, Some(cause));
        }
    }

    fn expire(&mut self) {
        self.deadline = Some(Instant::now() + Duration::from_secs(3600 * 24 * 365));
        self.monitor.set(
            ProviderKind::Identity,
            State::Unavailable,
            Some("identity grace period expired without SVID renewal".into()),
        );
    }
}

struct BundleLoop {
    fetcher: Arc<dyn BundleFetcher>,
    policy: Arc<dyn PolicyEngine>,
    monitor: Arc<Monitor>,
    stop: CancellationToken,
}

impl BundleLoop {
    /// Follows the fetcher's watch, reloading the policy on each bundle. The last good policy
    /// stays in force for as long as the fetcher fails.
    async fn run(self) {
        let mut backoff = MIN_BACKOFF;
        while !self.stop.is_cancelled() {
            match self.fetcher.watch().await {
                Ok(mut rx) => loop {
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        changed = rx.changed() => {
                            if changed.is_err() {
                                self.unavailable("bundle watch ended".into());
                                break;
                            }
                            let update: BundleUpdate = rx.borrow_and_update().clone();
                            match update {
                                Ok(bundle) => match self.policy.reload(&bundle.bytes).await {
                                    Ok(()) => {
                                        backoff = MIN_BACKOFF;
                                        tracing::info!(revision = ?bundle.revision, "policy bundle loaded");
                                        self.monitor.set(ProviderKind::BundleFetcher, State::Ready, None);
                                    }
                                    Err(error) => {
                                        tracing::warn!(%error, "policy bundle rejected; previous policy stays");
                                        self.unavailable(error.to_string());
                                    }
                                },
                                Err(error) => self.unavailable(error),
                            }
                        }
                    }
                },
                Err(error) => self.unavailable(error.to_string()),
            }
            if !pause(&self.stop, backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn unavailable(&self, cause: String) {
        self.monitor
            .set(ProviderKind::BundleFetcher, State::Unavailable, Some(cause));
    }
}

/// Follows the reloads a policy engine makes from its own source (a watched folder): the
/// enforced policy is Degraded while its latest change is refused (the previous policy stays
/// in force and traffic is served), Ready again once a change loads. A shadow policy has no
/// health of its own. Dropping the receiver at close stops the engine's watch.
struct PolicyWatchLoop {
    updates: watch::Receiver<PolicyUpdate>,
    /// `None` for the shadow policy, which has no health of its own.
    monitor: Option<Arc<Monitor>>,
    stop: CancellationToken,
}

impl PolicyWatchLoop {
    async fn run(mut self) {
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let update = self.updates.borrow_and_update().clone();
                    self.apply(update);
                }
            }
        }
    }

    /// The engine logs each reload and refusal itself (it knows the folder); the monitor logs
    /// the health transition with its cause.
    fn apply(&self, update: PolicyUpdate) {
        let Some(monitor) = &self.monitor else {
            return;
        };
        match update {
            Ok(_) => monitor.set(ProviderKind::Policy, State::Ready, None),
            Err(cause) => monitor.set(ProviderKind::Policy, State::Degraded, Some(cause)),
        }
    }
}

struct MetricsLoop {
    telemetry: Arc<dyn Telemetry>,
    audit: Arc<crate::telemetry::AuditQueue>,
    tls: Arc<IdentityState>,
    secrets: Option<Arc<crate::secrets::SecretsCache>>,
    interval: Duration,
    stop: CancellationToken,
}

impl MetricsLoop {
    /// Sends a snapshot every interval until stopped, or until telemetry says it does not
    /// take metrics.
    async fn run(self) {
        while pause(&self.stop, self.interval).await {
            let now = SystemTime::now();
            let snapshot = MetricsSnapshot {
                svid_age: now.duration_since(self.tls.not_before()).ok(),
                svid_time_to_expiry: self.tls.not_after().duration_since(now).ok(),
                secrets_cache_hits: self.secrets.as_ref().map_or(0, |c| c.hits()),
                secrets_cache_misses: self.secrets.as_ref().map_or(0, |c| c.misses()),
                audit_dropped: self.audit.lost(),
                audit_queued: self.audit.queued(),
                ..MetricsSnapshot::default()
            };
            match self.telemetry.record_metrics(&snapshot) {
                Ok(()) => {}
                Err(ProviderError::NotSupported) => return,
                Err(error) => tracing::debug!(%error, "metrics not recorded"),
            }
        }
    }
}

/// `error` and its sources, joined: the health cause must say why, not only what.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
