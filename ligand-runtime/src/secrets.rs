//! Secrets: the backend contract, the framework's cache (single-flight, TTL, proactive
//! renewal, revocation) and typed secrets. Application code never sees a backend: it reads
//! secrets through [`Ctx::secret`](crate::Ctx::secret), which is cached, renewed and audited.

mod cache;
mod typed;

pub use self::cache::SecretsCache;
pub use self::typed::{Secret, SecretError, decode_secret};

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::ProviderError;
use crate::provider::ProviderContext;

/// A secret as the backend returns it. A key-value secret is a JSON object of its keys.
pub struct SecretValue {
    /// The raw value: zeroized on drop, never printed.
    pub value: secrecy::SecretSlice<u8>,
    /// How long the value is valid; `None` means no expiry and no renewal.
    pub ttl: Option<Duration>,
    /// The backend's lease identifier, matched against revocation events.
    pub lease_id: Option<String>,
}

impl SecretValue {
    /// A value valid for `ttl` (`None`: no expiry), without a lease.
    pub fn new(value: impl Into<Vec<u8>>, ttl: Option<Duration>) -> Self {
        Self {
            value: secrecy::SecretSlice::from(value.into()),
            ttl,
            lease_id: None,
        }
    }

    /// Sets the backend's lease ID.
    pub fn lease(mut self, lease_id: impl Into<String>) -> Self {
        self.lease_id = Some(lease_id.into());
        self
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValue")
            .field("value", &"<redacted>")
            .field("ttl", &self.ttl)
            .field("lease_id", &self.lease_id)
            .finish()
    }
}

/// A lease the backend revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRevocation {
    /// The revoked lease.
    pub lease_id: String,
}

/// Retrieves secrets from a backing store.
#[async_trait]
pub trait Secrets: Send + Sync + 'static {
    /// Fetches the secret at `name` (the backend's full path). Safe for concurrent use.
    async fn get(&self, name: &str) -> Result<SecretValue, ProviderError>;

    /// Revocation events. Optional; without them the framework relies on TTLs.
    async fn watch_revocations(&self) -> Result<mpsc::Receiver<SecretRevocation>, ProviderError> {
        Err(ProviderError::NotSupported)
    }

    /// Called once by `init` after the workload identity is established; a provider that
    /// reaches a backend connects (and checks it is reachable) here. An error fails init.
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let _ = context;
        Ok(())
    }

    /// Releases the provider's resources.
    async fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[async_trait]
impl<T: Secrets + ?Sized> Secrets for std::sync::Arc<T> {
    async fn get(&self, name: &str) -> Result<SecretValue, ProviderError> {
        (**self).get(name).await
    }

    async fn watch_revocations(&self) -> Result<mpsc::Receiver<SecretRevocation>, ProviderError> {
        (**self).watch_revocations().await
    }

    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        (**self).start(context).await
    }

    async fn close(&self) -> Result<(), ProviderError> {
        (**self).close().await
    }
}
