//! Publishing this instance through the registrar: registered once the binding listens,
//! withdrawn at shutdown before the binding drains, its lease state followed into health.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use super::Server;
use crate::error::ProviderError;
use crate::health::{Monitor, ProviderKind, State};
use crate::registry::{Registration, RegistrationState, ServiceRegistrar, ServiceRegistration};

/// How long marking this instance unhealthy may take at shutdown.
const SET_UNHEALTHY_DEADLINE: Duration = Duration::from_secs(5);
/// How long deregistering may take at shutdown.
const DEREGISTER_DEADLINE: Duration = Duration::from_secs(10);

/// The configured registrar and what it has published.
pub(super) struct Registrar {
    provider: Arc<dyn ServiceRegistrar>,
    published: ServiceRegistration,
    slot: Mutex<Slot>,
}

enum Slot {
    Pending,
    Registered(Registration),
    /// Shutdown has withdrawn (or never made) the registration: nothing registers any more.
    Closed,
}

impl Registrar {
    pub(super) fn new(provider: Arc<dyn ServiceRegistrar>, published: ServiceRegistration) -> Self {
        Self {
            provider,
            published,
            slot: Mutex::new(Slot::Pending),
        }
    }

    pub(super) fn provider(&self) -> &Arc<dyn ServiceRegistrar> {
        &self.provider
    }
}

impl Server {
    /// Waits for the binding to listen, then registers this instance. Returns `Ok` without
    /// registering when the server closes first.
    pub(super) async fn register_when_listening(&self) -> Result<(), ProviderError> {
        let inner = &*self.inner;
        let Some(registrar) = &inner.registrar else {
            return Ok(());
        };
        let mut listening = inner.listening.subscribe();
        let bound = tokio::select! {
            found = listening.wait_for(Option::is_some) => match found {
                Ok(addr) => *addr,
                Err(_) => return Ok(()),
            },
            () = inner.watches.cancelled() => return Ok(()),
        };
        let Some(bound) = bound else {
            return Ok(());
        };
        let mut slot = registrar.slot.lock().await;
        if !matches!(*slot, Slot::Pending) {
            return Ok(());
        }
        let state = registrar.provider.state();
        let registered = async {
            let registration = Registration {
                spiffe_id: inner.service_id.to_string(),
                address: advertised(&registrar.published, bound)?,
                metadata: registrar.published.metadata.clone(),
            };
            registrar.provider.register(&registration).await?;
            Ok::<_, ProviderError>(registration)
        };
        let registration = match registered.await {
            Ok(registration) => registration,
            Err(error) => {
                inner.monitor.set(
                    ProviderKind::ServiceRegistrar,
                    State::Unavailable,
                    Some(error.to_string()),
                );
                return Err(error);
            }
        };
        tracing::info!(spiffe_id = %registration.spiffe_id, address = %registration.address, "registered");
        *slot = Slot::Registered(registration);
        inner
            .monitor
            .set(ProviderKind::ServiceRegistrar, State::Ready, None);
        let follow = follow_state(state, inner.monitor.clone(), inner.watches.clone());
        inner.watch_tasks.lock().await.push(tokio::spawn(follow));
        Ok(())
    }

    /// Shutdown steps 3 and 4: marks the registration unhealthy, then deregisters it, each
    /// within its deadline. Failures are logged: shutdown goes on, and a leased registration
    /// expires by itself.
    pub(super) async fn withdraw_registration(&self) {
        let Some(registrar) = &self.inner.registrar else {
            return;
        };
        let Slot::Registered(registration) =
            std::mem::replace(&mut *registrar.slot.lock().await, Slot::Closed)
        else {
            return;
        };
        let provider = &registrar.provider;
        match tokio::time::timeout(
            SET_UNHEALTHY_DEADLINE,
            provider.set_unhealthy(&registration),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "marking this instance unhealthy failed"),
            Err(_) => {
                tracing::warn!(deadline = ?SET_UNHEALTHY_DEADLINE, "marking this instance unhealthy timed out")
            }
        }
        match tokio::time::timeout(DEREGISTER_DEADLINE, provider.deregister(&registration)).await {
            Ok(Ok(())) => tracing::info!(spiffe_id = %registration.spiffe_id, "deregistered"),
            Ok(Err(error)) => tracing::warn!(%error, "deregistering this instance failed"),
            Err(_) => {
                tracing::warn!(deadline = ?DEREGISTER_DEADLINE, "deregistering this instance timed out")
            }
        }
    }
}

/// The address to publish: the advertised one, else the bound one when peers can dial it.
fn advertised(published: &ServiceRegistration, bound: SocketAddr) -> Result<String, ProviderError> {
    match &published.address {
        Some(address) => Ok(address.clone()),
        None if bound.ip().is_unspecified() => Err(ProviderError::Invalid(format!(
            "the binding listens on {bound}, which peers cannot dial: advertise an address"
        ))),
        None => Ok(bound.to_string()),
    }
}

/// Mirrors the registrar's state into health until shutdown or the registrar stops reporting.
async fn follow_state(
    mut state: watch::Receiver<RegistrationState>,
    monitor: Arc<Monitor>,
    stop: CancellationToken,
) {
    loop {
        let current = state.borrow_and_update().clone();
        match current {
            RegistrationState::Registered => {
                monitor.set(ProviderKind::ServiceRegistrar, State::Ready, None);
            }
            RegistrationState::Lost { reason } => {
                monitor.set(
                    ProviderKind::ServiceRegistrar,
                    State::Degraded,
                    Some(reason),
                );
            }
            // Only shutdown deregisters, and it has set the state already.
            RegistrationState::Unregistered => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}
