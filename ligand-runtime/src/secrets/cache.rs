//! The framework's secrets cache: the only path between application code and a backend.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use secrecy::SecretSlice;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::typed::SecretError;
use super::{SecretValue, Secrets};
use crate::chain::Chain;
use crate::error::ProviderError;
use crate::health::{Monitor, ProviderKind, State};
use crate::request_id::RequestId;
use crate::telemetry::{SecretAccess, SecretAccessEvent, Telemetry};

/// A cached secret.
struct Cached {
    value: Arc<SecretSlice<u8>>,
    /// `None`: no expiry.
    expires_at: Option<Instant>,
    lease_id: Option<String>,
}

/// One secret name's slot: the value, a lock that makes cold reads single-flight, and the
/// renewal task.
struct Entry {
    name: String,
    cached: ArcSwapOption<Cached>,
    fetch: tokio::sync::Mutex<()>,
    renewal: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Entry {
    fn valid(&self, now: Instant) -> Option<Arc<SecretSlice<u8>>> {
        let cached = self.cached.load();
        let cached = cached.as_ref()?;
        match cached.expires_at {
            Some(at) if at <= now => None,
            _ => Some(cached.value.clone()),
        }
    }
}

/// Caches secrets per name with single-flight cold reads, TTL expiry, proactive renewal at
/// `min(lead, ttl/2)` before expiry, and eviction plus re-fetch on revocation. Every access is
/// audited (name, caller chain, outcome; never the value).
///
/// Failure modes follow the Go original: while the backend is down, cached values are served
/// until each one's TTL ends, then reads fail; `secrets` is Unavailable while the backend
/// fails, Ready when it answers again, and Degraded while a revoked entry is re-fetched.
pub struct SecretsCache {
    backend: Arc<dyn Secrets>,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    lead: Duration,
    monitor: Arc<Monitor>,
    telemetry: Arc<dyn Telemetry>,
    hits: AtomicU64,
    misses: AtomicU64,
    stop: CancellationToken,
    this: Weak<SecretsCache>,
}

impl fmt::Debug for SecretsCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsCache")
            .field(
                "entries",
                &self.entries.read().map(|e| e.len()).unwrap_or(0),
            )
            .field("hits", &self.hits())
            .field("misses", &self.misses())
            .finish_non_exhaustive()
    }
}

impl SecretsCache {
    pub(crate) fn new(
        backend: Arc<dyn Secrets>,
        lead: Duration,
        monitor: Arc<Monitor>,
        telemetry: Arc<dyn Telemetry>,
        stop: CancellationToken,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            backend,
            entries: RwLock::default(),
            lead,
            monitor,
            telemetry,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stop,
            this: this.clone(),
        })
    }

    /// Reads served from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Reads that went to the backend.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// The secret at `name`, from the cache when an unexpired value is there, else from the
    /// backend (one backend call however many readers arrive at once). `chain` and
    /// `request_id` identify the caller in the audit event.
    pub async fn get(
        &self,
        name: &str,
        chain: Option<&Chain>,
        request_id: Option<RequestId>,
    ) -> Result<Arc<SecretSlice<u8>>, SecretError> {
        let entry = self.entry(name);
        if let Some(value) = entry.valid(Instant::now()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.audit(name, chain, request_id, SecretAccess::Hit, None);
            return Ok(value);
        }
        let _single_flight = entry.fetch.lock().await;
        // Another reader may have fetched while this one waited.
        if let Some(value) = entry.valid(Instant::now()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            self.audit(name, chain, request_id, SecretAccess::Hit, None);
            return Ok(value);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        match self.fetch(&entry).await {
            Ok(value) => {
                self.audit(name, chain, request_id, SecretAccess::Miss, None);
                Ok(value)
            }
            Err(source) => {
                self.audit(
                    name,
                    chain,
                    request_id,
                    SecretAccess::Error,
                    Some(source.to_string()),
                );
                Err(SecretError::Unavailable {
                    name: name.to_owned(),
                    source,
                })
            }
        }
    }

    fn entry(&self, name: &str) -> Arc<Entry> {
        if let Some(entry) = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return entry.clone();
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Entry {
                    name: name.to_owned(),
                    cached: ArcSwapOption::empty(),
                    fetch: tokio::sync::Mutex::new(()),
                    renewal: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Fetches from the backend and stores the value; the caller holds the entry's fetch lock.
    async fn fetch(&self, entry: &Arc<Entry>) -> Result<Arc<SecretSlice<u8>>, ProviderError> {
        match self.backend.get(&entry.name).await {
            Ok(secret) => {
                self.monitor.set(ProviderKind::Secrets, State::Ready, None);
                Ok(self.store(entry, secret))
            }
            Err(error) => {
                self.monitor.set(
                    ProviderKind::Secrets,
                    State::Unavailable,
                    Some(error.to_string()),
                );
                Err(error)
            }
        }
    }

    fn store(&self, entry: &Arc<Entry>, secret: SecretValue) -> Arc<SecretSlice<u8>> {
        let SecretValue {
            value,
            ttl,
            lease_id,
        } = secret;
        let value = Arc::new(value);
        let now = Instant::now();
        entry.cached.store(Some(Arc::new(Cached {
            value: value.clone(),
            expires_at: ttl.map(|ttl| now + ttl),
            lease_id,
        })));
        if let Some(ttl) = ttl {
            self.schedule_renewal(entry, ttl);
        }
        value
    }

    /// Renews at `ttl - min(lead, ttl/2)`, then again for each new value; on failure retries
    /// with backoff until the value expires.
    fn schedule_renewal(&self, entry: &Arc<Entry>, ttl: Duration) {
        let renew_at = Instant::now() + ttl - self.lead.min(ttl / 2);
        let cache = self.this.clone();
        let target = entry.clone();
        let stop = self.stop.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => return,
                () = sleep_until(renew_at) => {}
            }
            let Some(cache) = cache.upgrade() else { return };
            cache.renew(&target).await;
        });
        if let Some(previous) = entry
            .renewal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            previous.abort();
        }
    }

    async fn renew(&self, entry: &Arc<Entry>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            let attempt = {
                let _single_flight = entry.fetch.lock().await;
                self.backend.get(&entry.name).await
            };
            match attempt {
                Ok(secret) => {
                    self.monitor.set(ProviderKind::Secrets, State::Ready, None);
                    // Storing schedules the next renewal on a new task, which replaces (and
                    // aborts) this one; nothing may follow the store.
                    self.audit(&entry.name, None, None, SecretAccess::Renewal, None);
                    self.store(entry, secret);
                    return;
                }
                Err(error) => {
                    self.monitor.set(
                        ProviderKind::Secrets,
                        State::Unavailable,
                        Some(error.to_string()),
                    );
                    self.audit(
                        &entry.name,
                        None,
                        None,
                        SecretAccess::Error,
                        Some(error.to_string()),
                    );
                    let expires_at = entry.cached.load().as_ref().and_then(|c| c.expires_at);
                    let now = Instant::now();
                    if expires_at.is_none_or(|at| at <= now) {
                        return;
                    }
                    let wait = backoff.min(expires_at.map_or(backoff, |at| at - now));
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Evicts every entry holding `lease_id` and fetches it again.
    pub(crate) async fn revoke(&self, lease_id: &str) {
        let affected: Vec<Arc<Entry>> = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|e| {
                e.cached.load().as_ref().and_then(|c| c.lease_id.as_deref()) == Some(lease_id)
            })
            .cloned()
            .collect();
        for entry in affected {
            self.monitor.set(
                ProviderKind::Secrets,
                State::Degraded,
                Some(format!("lease of {} revoked", entry.name)),
            );
            let _single_flight = entry.fetch.lock().await;
            entry.cached.store(None);
            self.audit(&entry.name, None, None, SecretAccess::Revocation, None);
            // A failed re-fetch has already marked the backend Unavailable.
            let _ = self.fetch(&entry).await;
        }
    }

    /// Follows the backend's revocation events until stopped.
    pub(crate) async fn watch_revocations(self: Arc<Self>) {
        let mut events = match self.backend.watch_revocations().await {
            Ok(events) => events,
            Err(ProviderError::NotSupported) => return,
            Err(error) => {
                tracing::warn!(%error, "secret revocations unavailable; relying on TTLs");
                return;
            }
        };
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return,
                event = events.recv() => match event {
                    Some(revocation) => self.revoke(&revocation.lease_id).await,
                    None => return,
                },
            }
        }
    }

    fn audit(
        &self,
        name: &str,
        chain: Option<&Chain>,
        request_id: Option<RequestId>,
        access: SecretAccess,
        error: Option<String>,
    ) {
        let event = SecretAccessEvent {
            timestamp: SystemTime::now(),
            name: name.to_owned(),
            chain: chain.cloned(),
            request_id,
            access,
            error,
        };
        let _ = self.telemetry.record_secret_access(&event);
    }
}
