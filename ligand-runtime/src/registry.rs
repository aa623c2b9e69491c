//! The service registry contract: SPIFFE ID → endpoints for outbound calls.
//!
//! The registry is an address directory, not an identity authority: the outbound transport
//! holds the expected SPIFFE ID itself and verifies it in the handshake.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::ProviderError;
use crate::provider::ProviderContext;

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub address: String,
    /// The SPIFFE ID the endpoint's certificate must present.
    pub spiffe_id: String,
    /// Free-form metadata from the registry.
    pub metadata: BTreeMap<String, String>,
}

/// Resolves SPIFFE IDs to endpoint sets.
#[async_trait]
pub trait ServiceRegistry: Send + Sync + 'static {
    /// The current healthy endpoints of `spiffe_id`; empty, not an error, when there are none.
    async fn resolve(&self, spiffe_id: &str) -> Result<Vec<Endpoint>, ProviderError>;

    /// The endpoint set of `spiffe_id` as it changes; only the latest value matters.
    async fn watch(
        &self,
        spiffe_id: &str,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ProviderError> {
        let _ = spiffe_id;
        Err(ProviderError::NotSupported)
    }

    /// Called once by `init` after the workload identity is established; a provider that
    /// reaches a backend connects (and checks it is reachable) here. An error fails init.
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let _ = context;
        Ok(())
    }

    /// Releases the registry's resources.
    async fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[async_trait]
impl<T: ServiceRegistry + ?Sized> ServiceRegistry for std::sync::Arc<T> {
    async fn resolve(&self, spiffe_id: &str) -> Result<Vec<Endpoint>, ProviderError> {
        (**self).resolve(spiffe_id).await
    }

    async fn watch(
        &self,
        spiffe_id: &str,
    ) -> Result<watch::Receiver<Vec<Endpoint>>, ProviderError> {
        (**self).watch(spiffe_id).await
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        (**self).start(context).await
    }

    async fn close(&self) -> Result<(), ProviderError> {
        (**self).close().await
    }
}

// === Registrar ===

/// Where and how this instance is published by a [`ServiceRegistrar`]: given to
/// [`ConfigBuilder::registrar`](crate::ConfigBuilder::registrar).
///
/// ```
/// use ligand_runtime::ServiceRegistration;
/// let published = ServiceRegistration::advertise("accounts-1.bank.svc:8443").metadata("zone", "a");
/// # let _ = published;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRegistration {
    pub(crate) address: Option<String>,
    pub(crate) metadata: BTreeMap<String, String>,
}

impl ServiceRegistration {
    /// Publishes `host:port`: the address peers dial, which behind NAT or a load balancer is
    /// not the one the binding listens on.
    pub fn advertise(address: impl Into<String>) -> Self {
        Self {
            address: Some(address.into()),
            metadata: BTreeMap::new(),
        }
    }

    /// Publishes the address the binding listens on. Registration fails when that is an
    /// unspecified address (`0.0.0.0`, `[::]`), which no peer can dial.
    pub fn listening_address() -> Self {
        Self::default()
    }

    /// Adds a metadata entry published with the endpoint.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// One registration of this instance, as handed to a [`ServiceRegistrar`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Registration {
    /// This workload's SPIFFE ID (from its SVID): the key callers resolve.
    pub spiffe_id: String,
    /// The advertised `host:port`.
    pub address: String,
    /// Metadata published with the endpoint.
    pub metadata: BTreeMap<String, String>,
}

impl Registration {
    /// A registration of `address` under `spiffe_id`, without metadata.
    pub fn new(spiffe_id: impl Into<String>, address: impl Into<String>) -> Self {
        Self {
            spiffe_id: spiffe_id.into(),
            address: address.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// Adds a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The endpoint callers will see.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            address: self.address.clone(),
            spiffe_id: self.spiffe_id.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// The state of this instance's registration, as its [`ServiceRegistrar`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationState {
    /// Not registered: before [`ServiceRegistrar::register`] or after
    /// [`ServiceRegistrar::deregister`].
    Unregistered,
    /// Registered, and kept alive (a backend lease is being renewed).
    Registered,
    /// The registration could not be renewed for longer than the registrar's grace period, so
    /// callers may no longer find this instance. The registrar keeps trying and reports
    /// [`Registered`](Self::Registered) again once it has re-registered; meanwhile the
    /// service's health is Degraded.
    Lost {
        /// Why, for health transitions and logs.
        reason: String,
    },
}

/// Publishes this instance to a registry backend, so that peers resolving its SPIFFE ID
/// through a [`ServiceRegistry`] find it. A write operation that not every registry supports,
/// hence its own contract.
///
/// The framework calls [`register`](Self::register) once the binding listens (a failure stops
/// [`Server::serve`](crate::Server::serve)), then, at shutdown and after the pre-stop hooks,
/// [`set_unhealthy`](Self::set_unhealthy) (so callers stop picking this instance while it
/// drains) and [`deregister`](Self::deregister), both before the binding stops. Application
/// code does not call these methods.
#[async_trait]
pub trait ServiceRegistrar: Send + Sync + 'static {
    /// Called once by `init` after the workload identity is established; a provider that
    /// reaches a backend connects (and checks it is reachable) here. An error fails init.
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let _ = context;
        Ok(())
    }

    /// Publishes `registration` as a healthy endpoint and keeps it alive until
    /// [`deregister`](Self::deregister). Idempotent: a second call replaces the first.
    async fn register(&self, registration: &Registration) -> Result<(), ProviderError>;

    /// Keeps the registration (and any lease) but marks it unhealthy, so registries stop
    /// returning it.
    async fn set_unhealthy(&self, registration: &Registration) -> Result<(), ProviderError>;

    /// Removes the registration and releases its backend resources (a lease).
    async fn deregister(&self, registration: &Registration) -> Result<(), ProviderError>;

    /// The registration's state as it changes. The framework follows it after a successful
    /// [`register`](Self::register): [`RegistrationState::Lost`] makes the service Degraded,
    /// [`RegistrationState::Registered`] Ready again. The default suits a backend without
    /// leases, whose registrations cannot be lost.
    fn state(&self) -> watch::Receiver<RegistrationState> {
        watch::channel(RegistrationState::Registered).1
    }

    /// Releases the registrar's resources.
    async fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[async_trait]
impl<T: ServiceRegistrar + ?Sized> ServiceRegistrar for std::sync::Arc<T> {
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        (**self).start(context).await
    }

    async fn register(&self, registration: &Registration) -> Result<(), ProviderError> {
        (**self).register(registration).await
    }

    async fn set_unhealthy(&self, registration: &Registration) -> Result<(), ProviderError> {
        (**self).set_unhealthy(registration).await
    }

    async fn deregister(&self, registration: &Registration) -> Result<(), ProviderError> {
        (**self).deregister(registration).await
    }

    fn state(&self) -> watch::Receiver<RegistrationState> {
        (**self).state()
    }

    async fn close(&self) -> Result<(), ProviderError> {
        (**self).close().await
    }
}
