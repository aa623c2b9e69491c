//! mTLS: TLS 1.3 only, client certificates required, peers verified as X.509-SVIDs against the
//! trust bundle of their own trust domain.
//!
//! TLS is not pluggable. The framework builds every `rustls` configuration itself from the
//! current [`X509Context`](crate::X509Context); there is no option that downgrades to TLS 1.2,
//! to server-only authentication or to plaintext. SVID rotation swaps the certificate and the
//! trust store atomically: new handshakes see the new SVID, established connections are
//! untouched.

mod state;
mod svid;
mod verifier;

pub(crate) use self::state::{Current, earliest_not_after};
pub use self::state::{IdentityState, MtlsAcceptor, PeerExpiry, VerifiedPeer};
pub use self::svid::{SvidError, peer_spiffe_id, verify_svid};
pub(crate) use self::svid::{TrustStore, Usage, verify_with_store};
pub use self::verifier::{PeerVerifier, SpiffeClientVerifier, SpiffeServerVerifier};

/// Why an identity could not be turned into a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The SVID's private key is unusable.
    #[error("unusable SVID private key: {0}")]
    PrivateKey(String),
    /// The SVID is not a valid X.509-SVID, or does not match the SPIFFE ID it claims.
    #[error("invalid SVID")]
    Svid(#[source] SvidError),
    /// A trust-bundle certificate is not a usable trust anchor.
    #[error("invalid trust bundle certificate for {domain}: {reason}")]
    Bundle {
        /// The bundle's trust domain.
        domain: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No trust bundle was supplied for the workload's own trust domain.
    #[error("no trust bundle for the workload's own trust domain {0}")]
    NoOwnBundle(String),
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every Ligand configuration uses.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<std::sync::Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
