//! rustls verifiers for SPIFFE peers, on both sides of a connection.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use spiffe::SpiffeId;

use super::state::IdentityState;
use super::svid::{SvidError, Usage, verify_with_store};

fn to_rustls(err: SvidError) -> rustls::Error {
    use rustls::CertificateError as C;
    let cert_err = match &err {
        SvidError::Chain(msg) if msg.contains("Expired") => C::Expired,
        SvidError::Chain(msg) if msg.contains("NotValidYet") => C::NotValidYet,
        SvidError::Chain(msg) if msg.contains("UnknownIssuer") => C::UnknownIssuer,
        SvidError::Chain(_) => C::BadSignature,
        SvidError::UnknownTrustDomain(_) => C::UnknownIssuer,
        _ => C::Other(rustls::OtherError(Arc::new(err.clone()))),
    };
    tracing::debug!(error = %err, "peer certificate rejected");
    rustls::Error::InvalidCertificate(cert_err)
}

fn verify_tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &super::provider().signature_verification_algorithms,
    )
}

fn schemes() -> Vec<SignatureScheme> {
    super::provider()
        .signature_verification_algorithms
        .supported_schemes()
}

/// Which SPIFFE IDs a verifier accepts once the certificate itself has verified.
#[derive(Clone, PartialEq, Eq)]
pub enum PeerVerifier {
    /// Any SVID of any trusted trust domain (inbound: authorization is the policy's job).
    AnyTrusted,
    /// Exactly this SPIFFE ID (outbound: the caller knows whom it dials).
    Exact(SpiffeId),
}

impl fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AnyTrusted => f.write_str("AnyTrusted"),
            Self::Exact(id) => f.debug_tuple("Exact").field(&id.to_string()).finish(),
        }
    }
}

impl PeerVerifier {
    fn check(&self, actual: &SpiffeId) -> Result<(), SvidError> {
        match self {
            Self::Exact(expected) if expected != actual => Err(SvidError::UnexpectedId {
                expected: expected.to_string(),
                actual: actual.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// Server side: requires a client certificate and verifies it as an X.509-SVID against the
/// trust bundle of the client's own trust domain.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    state: Arc<IdentityState>,
}

impl SpiffeClientVerifier {
    /// A verifier reading the trust store of `state` at each handshake.
    pub fn new(state: Arc<IdentityState>) -> Self {
        Self { state }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let current = self.state.current();
        verify_with_store(
            end_entity,
            intermediates,
            &current.trust,
            now,
            Usage::Client,
        )
        .map(|_| ClientCertVerified::assertion())
        .map_err(to_rustls)
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Ligand configurations only enable TLS 1.3; a TLS 1.2 signature is never acceptable.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// Client side: verifies the server's certificate as an X.509-SVID and checks its SPIFFE ID
/// against the expected one. DNS names play no part.
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    state: Arc<IdentityState>,
    expected: PeerVerifier,
}

impl SpiffeServerVerifier {
    /// A verifier accepting only peers that `expected` allows.
    pub fn new(state: Arc<IdentityState>, expected: PeerVerifier) -> Self {
        Self { state, expected }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let current = self.state.current();
        let id = verify_with_store(
            end_entity,
            intermediates,
            &current.trust,
            now,
            Usage::Server,
        )
        .map_err(to_rustls)?;
        self.expected.check(&id).map_err(to_rustls)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}
