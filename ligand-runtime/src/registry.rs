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
