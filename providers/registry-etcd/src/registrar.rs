//! [`EtcdRegistrar`]: publishes this instance under a lease and keeps the lease alive.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
};
use ligand_runtime::{
    ProviderContext, ProviderError, Registration, RegistrationState, ServiceRegistrar,
};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Connection, EtcdConfig, EtcdConfigError, Settings};
use crate::entry::{encode, instance_key};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Publishes this instance in etcd (see the [key layout](crate#key-layout)) under a lease that
/// it renews every third of the TTL.
///
/// When renewals fail, it keeps retrying with jittered backoff; once they have failed for
/// longer than the grace period it reports the registration [lost](RegistrationState::Lost)
/// (the service turns Degraded), and when etcd answers again it renews the lease or, if the
/// lease expired meanwhile, registers again under a new one.
/// [`set_unhealthy`](ServiceRegistrar::set_unhealthy) rewrites the entry with
/// `health = "unhealthy"`; [`deregister`](ServiceRegistrar::deregister) deletes it and revokes
/// the lease.
#[derive(Debug)]
pub struct EtcdRegistrar {
    shared: Arc<Shared>,
    client: Connection,
    /// The keep-alive loop of the current registration.
    keeper: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

#[derive(Debug)]
struct Shared {
    settings: Settings,
    /// What is published, and under which lease; writes hold the lock, so a re-registration
    /// and `set_unhealthy` never interleave.
    published: Mutex<Option<Published>>,
    state: watch::Sender<RegistrationState>,
}

#[derive(Debug, Clone)]
struct Published {
    registration: Registration,
    healthy: bool,
    /// `None` while the lease is lost and not yet replaced.
    lease: Option<i64>,
}

impl EtcdRegistrar {
    /// The registrar `config` describes. Connects in [`start`](ServiceRegistrar::start) (or
    /// at first use), so a bad configuration fails here and an unreachable etcd fails `init`.
    pub fn from_config(config: &EtcdConfig) -> Result<Self, EtcdConfigError> {
        Ok(Self {
            shared: Arc::new(Shared {
                settings: config.validate()?,
                published: Mutex::new(None),
                state: watch::Sender::new(RegistrationState::Unregistered),
            }),
            client: Connection::default(),
            keeper: Mutex::new(None),
        })
    }

    async fn client(&self) -> Result<Client, ProviderError> {
        self.client.get(&self.shared.settings).await
    }

    async fn stop_keeper(&self) {
        if let Some((stop, task)) = self.keeper.lock().await.take() {
            stop.cancel();
            let _ = task.await;
        }
    }
}

#[async_trait]
impl ServiceRegistrar for EtcdRegistrar {
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let _ = context;
        self.client().await.map(drop)
    }

    async fn register(&self, registration: &Registration) -> Result<(), ProviderError> {
        let mut client = self.client().await?;
        // A second registration replaces the first.
        self.deregister_current(&mut client).await;
        let lease = self
            .shared
            .publish(&mut client, registration, true, None)
            .await?;
        *self.shared.published.lock().await = Some(Published {
            registration: registration.clone(),
            healthy: true,
            lease: Some(lease),
        });
        self.shared
            .state
            .send_replace(RegistrationState::Registered);
        let stop = CancellationToken::new();
        let keeper = KeepAlive {
            shared: self.shared.clone(),
            client,
            stop: stop.clone(),
        };
        *self.keeper.lock().await = Some((stop, tokio::spawn(keeper.run())));
        Ok(())
    }

    async fn set_unhealthy(&self, registration: &Registration) -> Result<(), ProviderError> {
        let mut client = self.client().await?;
        let mut published = self.shared.published.lock().await;
        let Some(current) = published
            .as_mut()
            .filter(|p| p.registration == *registration)
        else {
            return Ok(());
        };
        current.healthy = false;
        let Some(lease) = current.lease else {
            // Lost: the keep-alive loop writes the unhealthy entry when it re-registers.
            return Ok(());
        };
        let settings = &self.shared.settings;
        let key = instance_key(
            &settings.prefix,
            &registration.spiffe_id,
            &registration.address,
        );
        // Only while the key is still ours (attached to this lease).
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::put(
                key,
                encode(registration, false),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        settings
            .deadline("marking the registration unhealthy", client.txn(txn))
            .await?
            .map_err(|e| ProviderError::backend("marking the registration unhealthy", e))?;
        Ok(())
    }

    async fn deregister(&self, registration: &Registration) -> Result<(), ProviderError> {
        let matches = self
            .shared
            .published
            .lock()
            .await
            .as_ref()
            .is_some_and(|p| p.registration == *registration);
        if !matches {
            return Ok(());
        }
        let mut client = self.client().await?;
        self.deregister_current(&mut client)
            .await
            .map_or(Ok(()), Err)
    }

    fn state(&self) -> watch::Receiver<RegistrationState> {
        self.shared.state.subscribe()
    }

    async fn close(&self) -> Result<(), ProviderError> {
        // A registration still published expires with its lease.
        self.stop_keeper().await;
        Ok(())
    }
}

impl EtcdRegistrar {
    /// Stops renewing, deletes the current entry (if still attached to its lease) and revokes
    /// the lease. Returns the first failure; the lease expires by itself in any case.
    async fn deregister_current(&self, client: &mut Client) -> Option<ProviderError> {
        self.stop_keeper().await;
        let published = self.shared.published.lock().await.take()?;
        self.shared
            .state
            .send_replace(RegistrationState::Unregistered);
        let lease = published.lease?;
        let settings = &self.shared.settings;
        let registration = &published.registration;
        let key = instance_key(
            &settings.prefix,
            &registration.spiffe_id,
            &registration.address,
        );
        let txn = Txn::new()
            .when([Compare::lease(key.clone(), CompareOp::Equal, lease)])
            .and_then([TxnOp::delete(key, None)]);
        let deleted = match settings
            .deadline("deleting the registration", client.txn(txn))
            .await
        {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(ProviderError::backend("deleting the registration", e)),
            Err(e) => Some(e),
        };
        let revoked = match settings
            .deadline(
                "revoking the registration lease",
                client.lease_revoke(lease),
            )
            .await
        {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(ProviderError::backend("revoking the registration lease", e)),
            Err(e) => Some(e),
        };
        deleted.or(revoked)
    }
}

impl Shared {
    /// Writes `registration` under `lease`, or under a new lease when `None`; returns the lease.
    async fn publish(
        &self,
        client: &mut Client,
        registration: &Registration,
        healthy: bool,
        lease: Option<i64>,
    ) -> Result<i64, ProviderError> {
        let settings = &self.settings;
        let lease = match lease {
            Some(lease) => lease,
            None => {
                let ttl = i64::try_from(settings.lease_ttl.as_secs()).unwrap_or(i64::MAX);
                settings
                    .deadline(
                        "granting a registration lease",
                        client.lease_grant(ttl, None),
                    )
                    .await?
                    .map_err(|e| ProviderError::backend("granting a registration lease", e))?
                    .id()
            }
        };
        let key = instance_key(
            &settings.prefix,
            &registration.spiffe_id,
            &registration.address,
        );
        let put = client.put(
            key,
            encode(registration, healthy),
            Some(PutOptions::new().with_lease(lease)),
        );
        settings
            .deadline("writing the registration", put)
            .await?
            .map_err(|e| ProviderError::backend("writing the registration", e))?;
        Ok(lease)
    }
}

/// Renews the lease every third of its TTL; re-registers when it has expired.
struct KeepAlive {
    shared: Arc<Shared>,
    client: Client,
    stop: CancellationToken,
}

impl KeepAlive {
    async fn run(mut self) {
        let settings = self.shared.settings.clone();
        let interval = settings.lease_ttl / 3;
        let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
        let mut renewed = Instant::now();
        let mut backoff = MIN_BACKOFF;
        loop {
            let outcome = self.renew(&mut stream).await;
            let pause = match outcome {
                Ok(()) => {
                    renewed = Instant::now();
                    backoff = MIN_BACKOFF;
                    self.shared.state.send_if_modified(|state| {
                        let lost = *state != RegistrationState::Registered;
                        *state = RegistrationState::Registered;
                        lost
                    });
                    interval
                }
                Err(error) => {
                    stream = None;
                    tracing::warn!(%error, "renewing the registration failed; retrying");
                    if renewed.elapsed() >= settings.grace {
                        let reason = format!(
                            "registration not renewed for {:?}: {error}",
                            renewed.elapsed()
                        );
                        self.shared.state.send_if_modified(|state| {
                            let fresh = !matches!(state, RegistrationState::Lost { .. });
                            if fresh {
                                tracing::error!(%reason, "registration lost");
                                *state = RegistrationState::Lost { reason };
                            }
                            fresh
                        });
                    }
                    let jittered = backoff.mul_f64(0.5 + fastrand::f64());
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // Never sleep past the moment the grace period runs out.
                    let until_lost = settings.grace.saturating_sub(renewed.elapsed());
                    if until_lost.is_zero() {
                        jittered
                    } else {
                        jittered.min(until_lost)
                    }
                }
            };
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One renewal: a keep-alive on the current lease, or a new registration when the lease
    /// has expired (or was never replaced after expiring).
    async fn renew(
        &mut self,
        stream: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    ) -> Result<(), ProviderError> {
        let settings = &self.shared.settings;
        let lease = {
            let published = self.shared.published.lock().await;
            let Some(published) = published.as_ref() else {
                return Ok(());
            };
            published.lease
        };
        if let Some(lease) = lease
            && stream.is_none()
        {
            let opened = settings
                .deadline(
                    "opening a lease keep-alive",
                    self.client.lease_keep_alive(lease),
                )
                .await?;
            match opened {
                Ok(opened) => *stream = Some(opened),
                // The lease is gone (it expired while etcd was unreachable, or etcd lost
                // it): register again below, under a new one.
                Err(etcd_client::Error::LeaseKeepAliveError(reason)) => {
                    tracing::warn!(lease, %reason, "registration lease gone; registering again");
                }
                Err(e) => return Err(ProviderError::backend("opening a lease keep-alive", e)),
            }
        }
        if let Some(lease) = lease
            && let Some((keeper, responses)) = stream.as_mut()
        {
            let renewal = async {
                keeper.keep_alive().await?;
                responses.message().await
            };
            let answer = settings
                .deadline("renewing the registration lease", renewal)
                .await?
                .map_err(|e| ProviderError::backend("renewing the registration lease", e))?;
            match answer {
                Some(answer) if answer.ttl() > 0 => return Ok(()),
                Some(_) => {}
                None => {
                    return Err(ProviderError::backend(
                        "renewing the registration lease",
                        "the keep-alive stream ended",
                    ));
                }
            }
            // TTL 0: the lease expired (etcd was unreachable for longer than the TTL).
            tracing::warn!(lease, "registration lease expired; registering again");
            *stream = None;
        }
        let mut published = self.shared.published.lock().await;
        let Some(current) = published.as_mut() else {
            return Ok(());
        };
        current.lease = None;
        let lease = self
            .shared
            .publish(
                &mut self.client,
                &current.registration,
                current.healthy,
                None,
            )
            .await?;
        current.lease = Some(lease);
        tracing::info!(lease, "registered again");
        Ok(())
    }
}
