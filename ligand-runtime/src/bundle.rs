//! The policy bundle fetcher contract: signed bundles from a bundle server, hot-reloaded into
//! the policy engine.

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::ProviderError;
use crate::provider::ProviderContext;

/// A fetched policy bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBundle {
    /// The bundle bytes (an OPA bundle archive), verified by the policy engine on reload.
    pub bytes: Vec<u8>,
    /// The server's version tag for conditional fetches.
    pub etag: Option<String>,
    /// The bundle's revision, when the server reports it.
    pub revision: Option<String>,
}

/// One item of a bundle watch: a new bundle, or the error the fetcher met.
pub type BundleUpdate = Result<PolicyBundle, String>;

/// Retrieves policy bundles.
#[async_trait]
pub trait BundleFetcher: Send + Sync + 'static {
    /// Fetches the current bundle; `Ok(None)` when it has not changed since `known_etag`.
    /// The framework calls it once at init, where an empty bundle is an error.
    async fn fetch(&self, known_etag: Option<&str>) -> Result<Option<PolicyBundle>, ProviderError>;

    /// New bundles as they appear; only the latest matters. A closed watch is re-established
    /// with backoff, and the last good policy stays in force meanwhile.
    async fn watch(&self) -> Result<watch::Receiver<BundleUpdate>, ProviderError>;

    /// Called once by `init` after the workload identity is established; a provider that
    /// reaches a backend connects (and checks it is reachable) here. An error fails init.
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let _ = context;
        Ok(())
    }

    /// Releases the fetcher's resources.
    async fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[async_trait]
impl<T: BundleFetcher + ?Sized> BundleFetcher for std::sync::Arc<T> {
    async fn fetch(&self, known_etag: Option<&str>) -> Result<Option<PolicyBundle>, ProviderError> {
        (**self).fetch(known_etag).await
    }

    async fn watch(&self) -> Result<watch::Receiver<BundleUpdate>, ProviderError> {
        (**self).watch().await
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        (**self).start(context).await
    }

    async fn close(&self) -> Result<(), ProviderError> {
        (**self).close().await
    }
}
