//! [`EtcdRegistry`]: resolves and watches the instances of a service.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use ligand_runtime::{Endpoint, ProviderContext, ProviderError, ServiceRegistry};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Connection, EtcdConfig, EtcdConfigError, Settings};
use crate::entry::{Parsed, decode, service_prefix};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Resolves SPIFFE IDs to the instances registered in etcd (see the [key
/// layout](crate#key-layout)), skipping unhealthy and malformed entries.
///
/// [`watch`](ServiceRegistry::watch) keeps one etcd watch per service for as long as someone
/// holds its receiver. When etcd cannot be reached the last known endpoints stay in place; the
/// watch reconnects with jittered backoff and resumes from the last revision it saw (or
/// re-lists, when etcd has compacted that revision away).
#[derive(Debug)]
pub struct EtcdRegistry {
    settings: Settings,
    client: Connection,
    watches: Mutex<HashMap<String, watch::Sender<Vec<Endpoint>>>>,
    stop: CancellationToken,
}

impl EtcdRegistry {
    /// The registry `config` describes. Connects in [`start`](ServiceRegistry::start) (or at
    /// first use), so a bad configuration fails here and an unreachable etcd fails `init`.
    pub fn from_config(config: &EtcdConfig) -> Result<Self, EtcdConfigError> {
        Ok(Self {
            settings: config.validate()?,
            client: Connection::default(),
            watches: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        })
    }

    async fn client(&self) -> Result<Client, ProviderError> {
        if self.stop.is_cancelled() {
            return Err(ProviderError::Closed);
        }
        self.client.get(&self.settings).await
    }
}

#[async_trait]
impl ServiceRegistry for EtcdRegistry {
    async fn resolve(&self, spiffe_id: &str) -> Result<Vec<Endpoint>, ProviderError> {
        let mut client = self.client().await?;
        let listing = list(&self.settings, &mut client, spiffe_id).await?;
        Ok(listing.endpoints())
    }

    async fn watch(
        &self,
        spiffe_id: &str,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ProviderError> {
        {
            let watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(sender) = watches.get(spiffe_id).filter(|s| !s.is_closed()) {
                return Ok(sender.subscribe());
            }
        }
        let mut client = self.client().await?;
        let listing = list(&self.settings, &mut client, spiffe_id).await?;
        let mut watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        // Another caller may have started the same watch while this one listed.
        if let Some(sender) = watches.get(spiffe_id).filter(|s| !s.is_closed()) {
            return Ok(sender.subscribe());
        }
        let (sender, receiver) = watch::channel(listing.endpoints());
        watches.insert(spiffe_id.to_owned(), sender.clone());
        let follower = Follower {
            settings: self.settings.clone(),
            client,
            spiffe_id: spiffe_id.to_owned(),
            listing,
            sender,
            stop: self.stop.child_token(),
        };
        tokio::spawn(follower.run());
        Ok(receiver)
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let _ = context;
        self.client().await.map(drop)
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.stop.cancel();
        self.watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }
}

/// The instances of one service as of one revision.
#[derive(Debug, Default)]
struct Listing {
    /// Key → healthy endpoint; unhealthy and malformed keys are absent.
    entries: BTreeMap<Vec<u8>, Endpoint>,
    revision: i64,
}

impl Listing {
    fn endpoints(&self) -> Vec<Endpoint> {
        self.entries.values().cloned().collect()
    }

    /// Applies the value of `kv` (a put); returns whether the set changed.
    fn put(&mut self, spiffe_id: &str, kv: &KeyValue) -> bool {
        match decode(spiffe_id, kv.key(), kv.value()) {
            Ok(Parsed::Healthy(endpoint)) => {
                self.entries.insert(kv.key().to_vec(), endpoint.clone()) != Some(endpoint)
            }
            Ok(Parsed::Unhealthy) => self.entries.remove(kv.key()).is_some(),
            Err(reason) => {
                tracing::warn!(
                    key = %String::from_utf8_lossy(kv.key()),
                    %reason,
                    "skipping a registry entry"
                );
                self.entries.remove(kv.key()).is_some()
            }
        }
    }
}

/// A range get of every instance of `spiffe_id`.
async fn list(
    settings: &Settings,
    client: &mut Client,
    spiffe_id: &str,
) -> Result<Listing, ProviderError> {
    let prefix = service_prefix(&settings.prefix, spiffe_id);
    let response = settings
        .deadline(
            "listing a service in etcd",
            client.get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?
        .map_err(|e| ProviderError::backend("listing a service in etcd", e))?;
    let mut listing = Listing {
        entries: BTreeMap::new(),
        revision: response.header().map_or(0, |h| h.revision()),
    };
    for kv in response.kvs() {
        listing.put(spiffe_id, kv);
    }
    Ok(listing)
}

/// Follows one service: an etcd watch from the listing's revision on, re-established after
/// any failure, until every receiver is gone or the registry closes.
struct Follower {
    settings: Settings,
    client: Client,
    spiffe_id: String,
    listing: Listing,
    sender: watch::Sender<Vec<Endpoint>>,
    stop: CancellationToken,
}

/// Why one watch stream ended.
enum Ended {
    /// Stopped: the registry closed or nobody watches any more.
    Stopped,
    /// The revision to resume from was compacted: list again.
    Compacted,
    /// A failure; retry after a pause.
    Failed(String),
}

impl Follower {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut relist = false;
        loop {
            if relist {
                match list(&self.settings, &mut self.client, &self.spiffe_id).await {
                    Ok(listing) => {
                        self.listing = listing;
                        self.publish();
                        relist = false;
                    }
                    Err(error) => {
                        tracing::warn!(spiffe_id = %self.spiffe_id, %error, "re-listing a service failed; keeping the last known endpoints");
                        if !self.pause(&mut backoff).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            match self.follow(&mut backoff).await {
                Ended::Stopped => return,
                Ended::Compacted => relist = true,
                Ended::Failed(error) => {
                    tracing::warn!(spiffe_id = %self.spiffe_id, %error, "registry watch failed; keeping the last known endpoints");
                    if !self.pause(&mut backoff).await {
                        return;
                    }
                }
            }
        }
    }

    /// Watches from the revision after the listing's until the stream ends.
    async fn follow(&mut self, backoff: &mut Duration) -> Ended {
        let prefix = service_prefix(&self.settings.prefix, &self.spiffe_id);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.listing.revision + 1);
        let (stop, sender) = (self.stop.clone(), self.sender.clone());
        let opened = tokio::select! {
            () = stopped(&stop, &sender) => return Ended::Stopped,
            opened = self.settings.deadline("opening an etcd watch", self.client.watch(prefix, Some(options))) => opened,
        };
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Ended::Failed(error.to_string()),
            Err(error) => return Ended::Failed(error.to_string()),
        };
        loop {
            let message = tokio::select! {
                () = stopped(&stop, &sender) => return Ended::Stopped,
                message = stream.message() => message,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => return Ended::Failed("the watch stream ended".into()),
                Err(error) => return Ended::Failed(error.to_string()),
            };
            if response.compact_revision() > 0 {
                tracing::info!(spiffe_id = %self.spiffe_id, revision = self.listing.revision, compacted = response.compact_revision(), "registry revision compacted; re-listing");
                return Ended::Compacted;
            }
            if response.canceled() {
                return Ended::Failed(format!(
                    "etcd cancelled the watch: {}",
                    response.cancel_reason()
                ));
            }
            *backoff = MIN_BACKOFF;
            let mut changed = false;
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                changed |= match event.event_type() {
                    EventType::Put => self.listing.put(&self.spiffe_id, kv),
                    EventType::Delete => self.listing.entries.remove(kv.key()).is_some(),
                };
                self.listing.revision = self.listing.revision.max(kv.mod_revision());
            }
            if changed {
                self.publish();
            }
        }
    }

    /// Replaces the endpoint set; callers read the latest set at each call, so calls in
    /// flight keep the endpoint they chose.
    fn publish(&self) {
        let endpoints = self.listing.endpoints();
        self.sender.send_if_modified(|current| {
            if *current == endpoints {
                return false;
            }
            *current = endpoints;
            true
        });
    }

    /// Waits a jittered `backoff` (then doubles it); false when stopped meanwhile.
    async fn pause(&self, backoff: &mut Duration) -> bool {
        let jittered = backoff.mul_f64(0.5 + fastrand::f64());
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        tokio::select! {
            () = stopped(&self.stop, &self.sender) => false,
            () = tokio::time::sleep(jittered) => true,
        }
    }
}

/// Resolves when the registry closes or nobody watches any more.
async fn stopped(stop: &CancellationToken, sender: &watch::Sender<Vec<Endpoint>>) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = sender.closed() => {}
    }
}
