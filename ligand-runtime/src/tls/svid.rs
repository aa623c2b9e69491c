//! X.509-SVID verification: exactly one SPIFFE ID URI SAN, leaf constraints from the SPIFFE
//! X.509-SVID specification, and a chain to the roots of the SVID's own trust domain
//! (verified by webpki).

use std::collections::HashMap;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use spiffe::{SpiffeId, TrustDomain};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::TlsError;
use crate::identity::TrustBundles;

/// Why a certificate is not an acceptable X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// No certificate was presented.
    #[error("no certificate presented")]
    NoCertificate,
    /// The leaf is not a parsable X.509 certificate.
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// The leaf has no URI SAN.
    #[error("certificate has no URI SAN; an X.509-SVID has exactly one")]
    NoUriSan,
    /// The leaf has more than one URI SAN.
    #[error("certificate has {0} URI SANs; an X.509-SVID has exactly one")]
    MultipleUriSans(usize),
    /// The URI SAN is not a valid SPIFFE ID.
    #[error("URI SAN is not a valid SPIFFE ID: {0}")]
    InvalidSpiffeId(String),
    /// The leaf is a CA certificate.
    #[error("leaf certificate has the CA flag set")]
    LeafIsCa,
    /// The leaf's key usage is missing digitalSignature or allows certificate/CRL signing.
    #[error("leaf key usage must include digitalSignature and exclude keyCertSign and cRLSign")]
    BadKeyUsage,
    /// No trust bundle is known for the SVID's trust domain.
    #[error("no trust bundle for trust domain {0}")]
    UnknownTrustDomain(String),
    /// The chain does not verify against the trust domain's roots (includes expiry).
    #[error("certificate chain rejected: {0}")]
    Chain(String),
    /// The SVID does not carry the SPIFFE ID it was expected to.
    #[error("expected {expected}, certificate carries {actual}")]
    UnexpectedId {
        /// The expected SPIFFE ID.
        expected: String,
        /// The one in the certificate.
        actual: String,
    },
}

/// The trust anchors of each trust domain, parsed once per bundle update.
#[derive(Debug, Default)]
pub(crate) struct TrustStore {
    anchors: HashMap<TrustDomain, Vec<TrustAnchor<'static>>>,
}

impl TrustStore {
    pub(crate) fn from_bundles(bundles: &TrustBundles) -> Result<Self, TlsError> {
        let mut anchors = HashMap::new();
        for (domain, roots) in bundles.iter() {
            let parsed = roots
                .iter()
                .map(|root| {
                    webpki::anchor_from_trusted_cert(root)
                        .map(|a| a.to_owned())
                        .map_err(|e| TlsError::Bundle {
                            domain: domain.to_string(),
                            reason: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            anchors.insert(domain.clone(), parsed);
        }
        Ok(Self { anchors })
    }

    pub(crate) fn contains(&self, domain: &TrustDomain) -> bool {
        self.anchors.get(domain).is_some_and(|a| !a.is_empty())
    }
}

/// Which way the certificate is being used, for its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Client,
    Server,
}

/// Reads the SPIFFE ID of a leaf and checks the leaf constraints of the X.509-SVID
/// specification (exactly one URI SAN, not a CA, digitalSignature without keyCertSign/cRLSign).
/// It does not verify the chain: see [`verify_svid`].
pub fn peer_spiffe_id(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| SvidError::Malformed(e.to_string()))?;
    let mut uris = Vec::new();
    let (mut is_ca, mut bad_key_usage) = (false, false);
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                uris.extend(san.general_names.iter().filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                }));
            }
            ParsedExtension::BasicConstraints(bc) => is_ca |= bc.ca,
            ParsedExtension::KeyUsage(ku) => {
                bad_key_usage |= !ku.digital_signature() || ku.key_cert_sign() || ku.crl_sign();
            }
            ParsedExtension::ParseError { error } => {
                return Err(SvidError::Malformed(error.to_string()));
            }
            _ => {}
        }
    }
    if is_ca {
        return Err(SvidError::LeafIsCa);
    }
    if bad_key_usage {
        return Err(SvidError::BadKeyUsage);
    }
    match uris.as_slice() {
        [] => Err(SvidError::NoUriSan),
        [uri] => {
            let id = SpiffeId::new(uri).map_err(|e| SvidError::InvalidSpiffeId(e.to_string()))?;
            // The spiffe crate lowercases the trust domain; the specification forbids uppercase
            // outright, and two spellings of one identity must never both verify.
            if id.to_string() != *uri {
                return Err(SvidError::InvalidSpiffeId(format!(
                    "{uri} is not in canonical form"
                )));
            }
            Ok(id)
        }
        more => Err(SvidError::MultipleUriSans(more.len())),
    }
}

/// Verifies a presented certificate chain as an X.509-SVID: the leaf constraints, then the
/// chain against the roots of the trust domain named in the leaf's SPIFFE ID (never another
/// domain's), at `now`. Returns the verified SPIFFE ID.
pub fn verify_svid(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    bundles: &TrustBundles,
    now: UnixTime,
) -> Result<SpiffeId, SvidError> {
    let store = TrustStore::from_bundles(bundles).map_err(|e| SvidError::Chain(e.to_string()))?;
    verify_with_store(end_entity, intermediates, &store, now, Usage::Client)
}

pub(crate) fn verify_with_store(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    store: &TrustStore,
    now: UnixTime,
    usage: Usage,
) -> Result<SpiffeId, SvidError> {
    let id = peer_spiffe_id(end_entity)?;
    let domain = id.trust_domain();
    let anchors = store
        .anchors
        .get(domain)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SvidError::UnknownTrustDomain(domain.to_string()))?;
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    let eku = match usage {
        Usage::Client => webpki::KeyUsage::client_auth(),
        Usage::Server => webpki::KeyUsage::server_auth(),
    };
    cert.verify_for_usage(
        super::provider().signature_verification_algorithms.all,
        anchors,
        intermediates,
        now,
        eku,
        None,
        None,
    )
    .map_err(|e| SvidError::Chain(e.to_string()))?;
    Ok(id)
}
