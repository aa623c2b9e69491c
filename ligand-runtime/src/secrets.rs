//! The secrets backend contract. Application code never sees a backend: it reads secrets
//! through the framework, which caches, renews and audits every access.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::ProviderError;
use crate::provider::ProviderContext;

/// A secret as the backend returns it.
pub struct SecretValue {
    /// The raw value. Never logged.
    pub value: Vec<u8>,
    /// How long the value is valid; `None` means no expiry and no renewal.
    pub ttl: Option<Duration>,
    /// The backend's lease identifier, matched against revocation events.
    pub lease_id: Option<String>,
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
