//! Workload identity from a SPIFFE Workload API: SPIRE in production, the Ligand identity
//! agent in development. Implements [`ligand_runtime::WorkloadIdentity`] over the `spiffe`
//! crate's client.
//!
//! - The endpoint comes from `SPIFFE_ENDPOINT_SOCKET` ([`SpiffeIdentity::from_env`]) or from
//!   configuration ([`SpiffeIdentity::new`]), as `unix:///path` or `tcp://host:port`.
//! - The X.509 context (SVIDs, the own trust domain's bundle and federated bundles) is
//!   converted to the runtime's [`X509Context`].
//! - [`WorkloadIdentity::watch_x509_context`] follows the Workload API stream. A lost stream is
//!   reported to the runtime (which starts the identity grace period) and re-established with
//!   exponential backoff; the first context after reconnection ends the grace period.
//! - JWT-SVIDs and JWT bundles are available through [`SpiffeIdentity::fetch_jwt_svid`] and
//!   [`SpiffeIdentity::fetch_jwt_bundles`].
//!
//! # Example
//!
//! ```no_run
//! use ligand_identity_spiffe::SpiffeIdentity;
//! use ligand_runtime::{Config, HttpBinding};
//!
//! # async fn run(policy: impl ligand_runtime::PolicyEngine) -> Result<(), Box<dyn std::error::Error>> {
//! let identity = SpiffeIdentity::from_env()?; // SPIFFE_ENDPOINT_SOCKET=unix:///run/spire/agent.sock
//! let server = ligand_runtime::init(
//!     Config::builder()
//!         .identity(identity)
//!         .policy(policy)
//!         .binding(HttpBinding::new("0.0.0.0:8443"))
//!         .build(),
//! )
//! .await?;
//! # drop(server); Ok(()) }
//! ```

#![forbid(unsafe_code)]

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use ligand_runtime::{
    ProviderError, TrustBundles, WorkloadIdentity, X509Context, X509ContextUpdate, X509Svid,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::{JwtBundleSet, WorkloadApiClient};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The environment variable naming the Workload API endpoint.
pub const ENDPOINT_ENV: &str = "SPIFFE_ENDPOINT_SOCKET";
/// The first delay before reconnecting a lost stream.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest delay between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why the provider could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpiffeIdentityError {
    /// `SPIFFE_ENDPOINT_SOCKET` is not set.
    #[error("SPIFFE_ENDPOINT_SOCKET is not set")]
    MissingEndpoint,
    /// The endpoint is not a valid Workload API address.
    #[error("invalid Workload API endpoint `{endpoint}`: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A [`WorkloadIdentity`] served by a SPIFFE Workload API.
#[derive(Debug)]
pub struct SpiffeIdentity {
    endpoint: String,
    stop: CancellationToken,
}

impl SpiffeIdentity {
    /// The Workload API at `endpoint` (`unix:///path/to/socket` or `tcp://host:port`).
    pub fn new(endpoint: impl Into<String>) -> Result<Self, SpiffeIdentityError> {
        let endpoint = endpoint.into();
        spiffe::transport::Endpoint::parse(&endpoint).map_err(|e| {
            SpiffeIdentityError::InvalidEndpoint {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            endpoint,
            stop: CancellationToken::new(),
        })
    }

    /// The Workload API named by `SPIFFE_ENDPOINT_SOCKET`.
    pub fn from_env() -> Result<Self, SpiffeIdentityError> {
        let endpoint = std::env::var(ENDPOINT_ENV)
            .ok()
            .filter(|e| !e.is_empty())
            .ok_or(SpiffeIdentityError::MissingEndpoint)?;
        Self::new(endpoint)
    }

    /// The configured endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn client(&self) -> Result<WorkloadApiClient, ProviderError> {
        if self.stop.is_cancelled() {
            return Err(ProviderError::Closed);
        }
        connect(&self.endpoint).await
    }

    /// A JWT-SVID for `audience` (the default identity's, or `spiffe_id`'s when given).
    pub async fn fetch_jwt_svid(
        &self,
        audience: &[&str],
        spiffe_id: Option<&ligand_runtime::SpiffeId>,
    ) -> Result<String, ProviderError> {
        self.client()
            .await?
            .fetch_jwt_token(audience, spiffe_id)
            .await
            .map_err(|e| ProviderError::backend("fetching a JWT-SVID", e))
    }

    /// The JWT bundles of every trusted domain.
    pub async fn fetch_jwt_bundles(&self) -> Result<JwtBundleSet, ProviderError> {
        self.client()
            .await?
            .fetch_jwt_bundles()
            .await
            .map_err(|e| ProviderError::backend("fetching JWT bundles", e))
    }
}

async fn connect(endpoint: &str) -> Result<WorkloadApiClient, ProviderError> {
    WorkloadApiClient::connect_to(endpoint).await.map_err(|e| {
        ProviderError::backend(format!("connecting to the Workload API at {endpoint}"), e)
    })
}

/// Converts the `spiffe` crate's context into the runtime's.
pub fn convert(context: &spiffe::X509Context) -> Result<X509Context, ProviderError> {
    let svids = context
        .svids()
        .iter()
        .map(|svid| X509Svid {
            spiffe_id: svid.spiffe_id().clone(),
            cert_chain: svid
                .cert_chain()
                .iter()
                .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
                .collect(),
            private_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                svid.private_key().as_bytes().to_vec(),
            )),
        })
        .collect::<Vec<_>>();
    if svids.is_empty() {
        return Err(ProviderError::Invalid(
            "the Workload API returned no SVIDs".into(),
        ));
    }
    let mut bundles = TrustBundles::new();
    for (domain, bundle) in context.bundle_set().iter() {
        bundles.insert(
            domain.clone(),
            bundle
                .authorities()
                .iter()
                .map(|c| CertificateDer::from(c.as_bytes().to_vec()))
                .collect(),
        );
    }
    Ok(X509Context { svids, bundles })
}

#[async_trait]
impl WorkloadIdentity for SpiffeIdentity {
    async fn fetch_x509_context(&self) -> Result<X509Context, ProviderError> {
        let context = self
            .client()
            .await?
            .fetch_x509_context()
            .await
            .map_err(|e| ProviderError::backend("fetching the X.509 context", e))?;
        convert(&context)
    }

    async fn watch_x509_context(
        &self,
    ) -> Result<watch::Receiver<X509ContextUpdate>, ProviderError> {
        let client = self.client().await?;
        let mut stream = client
            .stream_x509_contexts()
            .await
            .map_err(|e| ProviderError::backend("opening the X.509 context stream", e))?;
        let first = match stream.next().await {
            Some(Ok(context)) => convert(&context)?,
            Some(Err(e)) => {
                return Err(ProviderError::backend(
                    "reading the X.509 context stream",
                    e,
                ));
            }
            None => {
                return Err(ProviderError::Invalid(
                    "the X.509 context stream ended before its first message".into(),
                ));
            }
        };
        let (tx, rx) = watch::channel(Ok(first));
        tokio::spawn(follow(self.endpoint.clone(), stream, tx, self.stop.clone()));
        Ok(rx)
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.stop.cancel();
        Ok(())
    }
}

type ContextStream = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<spiffe::X509Context, spiffe::WorkloadApiError>>
            + Send,
    >,
>;

/// Forwards stream items to `tx`; on a lost stream, reports the error and reconnects with
/// exponential backoff until the watch is dropped or the provider closed.
async fn follow(
    endpoint: String,
    stream: impl futures_util::Stream<Item = Result<spiffe::X509Context, spiffe::WorkloadApiError>>
    + Send
    + 'static,
    tx: watch::Sender<X509ContextUpdate>,
    stop: CancellationToken,
) {
    let mut stream: ContextStream = Box::pin(stream);
    let mut backoff = MIN_BACKOFF;
    loop {
        // Forward until the stream fails or ends.
        loop {
            let item = tokio::select! {
                () = tx.closed() => return,
                () = stop.cancelled() => return,
                item = stream.next() => item,
            };
            let update = match item {
                Some(Ok(context)) => convert(&context).map_err(|e| e.to_string()),
                Some(Err(error)) => Err(format!("Workload API stream failed: {error}")),
                None => Err("Workload API stream ended".to_owned()),
            };
            let lost = update.is_err();
            if lost {
                tracing::warn!(error = ?update.as_ref().err(), %endpoint, "X.509 context stream lost; reconnecting");
            } else {
                backoff = MIN_BACKOFF;
            }
            if tx.send(update).is_err() {
                return;
            }
            if lost {
                break;
            }
        }
        // Reconnect with backoff.
        loop {
            tokio::select! {
                () = tx.closed() => return,
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let opened = match connect(&endpoint).await {
                Ok(client) => client
                    .stream_x509_contexts()
                    .await
                    .map_err(|e| ProviderError::backend("opening the X.509 context stream", e)),
                Err(e) => Err(e),
            };
            match opened {
                Ok(next) => {
                    tracing::info!(%endpoint, "X.509 context stream re-established");
                    stream = Box::pin(next);
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, "Workload API still unreachable");
                    if tx.send(Err(error.to_string())).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn endpoint_is_validated() {
        assert!(SpiffeIdentity::new("unix:///run/spire/agent.sock").is_ok());
        assert!(matches!(
            SpiffeIdentity::new("http://example.org"),
            Err(SpiffeIdentityError::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            SpiffeIdentity::new(""),
            Err(SpiffeIdentityError::InvalidEndpoint { .. })
        ));
    }

    #[tokio::test]
    async fn unreachable_endpoint_fails_closed() {
        let dir = std::env::temp_dir().join(format!("ligand-none-{}", std::process::id()));
        let identity =
            SpiffeIdentity::new(format!("unix://{}/missing.sock", dir.display())).unwrap();
        assert!(identity.fetch_x509_context().await.is_err());
        assert!(identity.watch_x509_context().await.is_err());
        identity.close().await.unwrap();
        assert!(matches!(
            identity.fetch_x509_context().await,
            Err(ProviderError::Closed)
        ));
    }
}
