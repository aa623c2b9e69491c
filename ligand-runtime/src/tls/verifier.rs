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
/// trust bundle of the client's own trust domain. A certificate carrying the trust domain's own
/// ID (a root path) is refused: it names no workload.
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

/// Client side: verifies the server's certificate as an X.509-SVID (with a non-root SPIFFE ID
/// path) and checks its SPIFFE ID against the expected one. DNS names play no part.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use rustls::{ClientConfig, ServerConfig};
    use rustls_pki_types::ServerName;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;
    use crate::identity::X509Svid;
    use crate::testkit::{TestCa, probe_client_config};

    const SERVER: &str = "spiffe://example.org/service/server";
    const CLIENT: &str = "spiffe://example.org/service/client";
    const ROOT: &str = "spiffe://example.org";

    fn state(ca: &TestCa, id: &str) -> Arc<IdentityState> {
        Arc::new(IdentityState::new(&ca.context(ca.svid(id)), None).unwrap())
    }

    /// A real TLS 1.3 handshake over an in-memory pipe; the server's and the client's results.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (std::io::Result<()>, std::io::Result<()>) {
        let acceptor = TlsAcceptor::from(server);
        let connector = TlsConnector::from(client);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("ligand.invalid").unwrap();
        let (s, c) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
        (s.map(drop), c.map(drop))
    }

    /// A client presenting `svid` as it is, whatever a workload would refuse to start with.
    fn presenting_client(svid: &X509Svid) -> Arc<ClientConfig> {
        probe_client_config(&[&rustls::version::TLS13], Some(svid)).unwrap()
    }

    /// A server presenting `svid` as it is, asking for no client certificate.
    fn presenting_server(svid: &X509Svid) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(svid.cert_chain.clone(), svid.private_key.clone_key())
            .unwrap();
        Arc::new(config)
    }

    fn is_bad_certificate(result: &std::io::Result<()>) -> bool {
        let Err(error) = result else { return false };
        error
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)))
    }

    #[tokio::test]
    async fn workload_svids_are_accepted_both_ways() {
        let ca = TestCa::new("example.org");
        let (s, c) = handshake(
            state(&ca, SERVER).server_config().unwrap(),
            state(&ca, CLIENT)
                .client_config(PeerVerifier::Exact(SpiffeId::new(SERVER).unwrap()))
                .unwrap(),
        )
        .await;
        s.unwrap();
        c.unwrap();
    }

    #[tokio::test]
    async fn root_path_client_svid_is_refused() {
        let ca = TestCa::new("example.org");
        let (s, _) = handshake(
            state(&ca, SERVER).server_config().unwrap(),
            presenting_client(&ca.svid(ROOT)),
        )
        .await;
        assert!(is_bad_certificate(&s), "{s:?}");
    }

    #[tokio::test]
    async fn root_path_server_svid_is_refused() {
        let ca = TestCa::new("example.org");
        for expected in [
            PeerVerifier::AnyTrusted,
            PeerVerifier::Exact(SpiffeId::new(ROOT).unwrap()),
        ] {
            let client = state(&ca, CLIENT).client_config(expected).unwrap();
            let (_, c) = handshake(presenting_server(&ca.svid(ROOT)), client).await;
            assert!(is_bad_certificate(&c), "{c:?}");
        }
    }

    #[test]
    fn root_path_is_refused_by_both_verifiers_directly() {
        let ca = TestCa::new("example.org");
        let own = state(&ca, SERVER);
        let leaf = ca.svid(ROOT).cert_chain[0].clone();
        let client = SpiffeClientVerifier::new(own.clone());
        assert!(
            client
                .verify_client_cert(&leaf, &[], UnixTime::now())
                .is_err()
        );
        let server = SpiffeServerVerifier::new(own, PeerVerifier::AnyTrusted);
        let name = ServerName::try_from("ligand.invalid").unwrap();
        assert!(
            server
                .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
                .is_err()
        );
    }
}
