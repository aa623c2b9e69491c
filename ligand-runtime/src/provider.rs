//! What the framework hands providers once the workload identity is established.

use std::sync::Arc;

use rustls::ClientConfig;
use spiffe::SpiffeId;

use crate::tls::{IdentityState, PeerVerifier, TlsError};

/// Handed to each provider's `start` during [`init`](crate::init), after the workload identity
/// is established and before the service serves: the Rust form of the Go original's factory
/// arguments. Providers that reach a backend dial it with a [`Dialer`](crate::dial::Dialer)
/// built from its [`identity`](Self::identity).
#[derive(Debug, Clone)]
pub struct ProviderContext {
    identity: Arc<IdentityState>,
}

impl ProviderContext {
    pub(crate) fn new(identity: Arc<IdentityState>) -> Self {
        Self { identity }
    }

    /// This workload's SPIFFE ID (a bundle fetcher asks for its own service's bundle with it).
    pub fn spiffe_id(&self) -> SpiffeId {
        self.identity.spiffe_id()
    }

    /// An outbound mTLS configuration presenting the workload's current SVID (rotation
    /// included) and accepting only a backend that `peer` allows.
    pub fn client_config(&self, peer: PeerVerifier) -> Result<Arc<ClientConfig>, TlsError> {
        self.identity.client_config(peer)
    }

    /// Presents the workload's current SVID as a client certificate to a backend that is not
    /// itself a SPIFFE peer (its server certificate is verified by the provider's own roots).
    pub fn client_cert_resolver(&self) -> Arc<dyn rustls::client::ResolvesClientCert> {
        self.identity.client_cert_resolver()
    }

    /// The live identity.
    pub fn identity(&self) -> &Arc<IdentityState> {
        &self.identity
    }
}
