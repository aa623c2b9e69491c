//! The workload identity contract: X.509-SVIDs, trust bundles and their rotation.

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spiffe::{SpiffeId, TrustDomain};
use tokio::sync::watch;

use crate::error::ProviderError;

/// One X.509-SVID held by this workload: the certificate chain (leaf first) and its key.
pub struct X509Svid {
    /// The SPIFFE ID in the leaf's URI SAN.
    pub spiffe_id: SpiffeId,
    /// The certificate chain, leaf first, without the root.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8, SEC1 or PKCS#1 DER). Never logged.
    pub private_key: PrivateKeyDer<'static>,
}

impl Clone for X509Svid {
    fn clone(&self) -> Self {
        Self {
            spiffe_id: self.spiffe_id.clone(),
            cert_chain: self.cert_chain.clone(),
            private_key: self.private_key.clone_key(),
        }
    }
}

impl fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("cert_chain_len", &self.cert_chain.len())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// The CA certificates of each trust domain this workload trusts (its own and federated ones).
#[derive(Debug, Clone, Default)]
pub struct TrustBundles {
    bundles: HashMap<TrustDomain, Vec<CertificateDer<'static>>>,
}

impl TrustBundles {
    /// No trusted domains.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the bundle of `domain`.
    pub fn insert(&mut self, domain: TrustDomain, roots: Vec<CertificateDer<'static>>) {
        self.bundles.insert(domain, roots);
    }

    /// Adds the bundle of `domain`, builder style.
    pub fn with(mut self, domain: TrustDomain, roots: Vec<CertificateDer<'static>>) -> Self {
        self.insert(domain, roots);
        self
    }

    /// The roots of `domain`.
    pub fn get(&self, domain: &TrustDomain) -> Option<&[CertificateDer<'static>]> {
        self.bundles.get(domain).map(Vec::as_slice)
    }

    /// Every domain and its roots.
    pub fn iter(&self) -> impl Iterator<Item = (&TrustDomain, &[CertificateDer<'static>])> {
        self.bundles.iter().map(|(d, r)| (d, r.as_slice()))
    }

    /// Whether no domain is trusted.
    pub fn is_empty(&self) -> bool {
        self.bundles.values().all(Vec::is_empty)
    }
}

/// Everything the identity provider supplies: the SVIDs and the trust bundles.
#[derive(Debug, Clone)]
pub struct X509Context {
    /// The SVIDs issued to this workload, usually one.
    pub svids: Vec<X509Svid>,
    /// The trust bundles.
    pub bundles: TrustBundles,
}

/// One item of an identity watch: a new context, or the error that interrupted the watch.
pub type X509ContextUpdate = Result<X509Context, String>;

/// A Workload Identity Token request (draft-ietf-wimse-workload-creds).
///
/// The workload sends only the public half of its proof key: the key pair is generated in the
/// workload, which signs its Workload Proof Tokens with the private half, so the private key
/// never crosses the Workload API (or any other channel) and the identity source can vouch for
/// the key without being able to sign proofs with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchWitRequest {
    /// The intended recipient.
    pub audience: String,
    /// The public key to bind in the token's `cnf.jwk` claim, as a JWK JSON object.
    pub cnf_jwk: String,
}

/// A Workload Identity Token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchWitResponse {
    /// The signed token.
    pub token: String,
    /// When it expires.
    pub expires_at: SystemTime,
}

/// Supplies the workload's X.509 identity and keeps it current.
#[async_trait]
pub trait WorkloadIdentity: Send + Sync + 'static {
    /// The current SVIDs and trust bundles.
    async fn fetch_x509_context(&self) -> Result<X509Context, ProviderError>;

    /// A stream of contexts: the current one first, then each rotation or bundle change.
    /// A watch whose sender is dropped has ended; the framework re-establishes it with backoff.
    /// Optional; on [`ProviderError::NotSupported`] the framework polls
    /// [`fetch_x509_context`](Self::fetch_x509_context).
    async fn watch_x509_context(
        &self,
    ) -> Result<watch::Receiver<X509ContextUpdate>, ProviderError> {
        Err(ProviderError::NotSupported)
    }

    /// A Workload Identity Token binding `request.cnf_jwk`. Optional.
    async fn fetch_wit(
        &self,
        request: &FetchWitRequest,
    ) -> Result<FetchWitResponse, ProviderError> {
        let _ = request;
        Err(ProviderError::NotSupported)
    }

    /// Releases the provider's resources.
    async fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[async_trait]
impl<T: WorkloadIdentity + ?Sized> WorkloadIdentity for std::sync::Arc<T> {
    async fn fetch_x509_context(&self) -> Result<X509Context, ProviderError> {
        (**self).fetch_x509_context().await
    }

    async fn watch_x509_context(
        &self,
    ) -> Result<watch::Receiver<X509ContextUpdate>, ProviderError> {
        (**self).watch_x509_context().await
    }

    async fn fetch_wit(
        &self,
        request: &FetchWitRequest,
    ) -> Result<FetchWitResponse, ProviderError> {
        (**self).fetch_wit(request).await
    }

    async fn close(&self) -> Result<(), ProviderError> {
        (**self).close().await
    }
}
