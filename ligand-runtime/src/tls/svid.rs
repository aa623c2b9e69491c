//! X.509-SVID verification: exactly one SPIFFE ID URI SAN with a workload path, leaf
//! constraints from the SPIFFE X.509-SVID specification, and a chain to the roots of the SVID's
//! own trust domain (verified by webpki, plus the roots' own path length constraints).

use std::cell::Cell;
use std::collections::HashMap;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use spiffe::{SpiffeId, TrustDomain};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS;
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
    /// The chain reaches a root only through more intermediate CA certificates than the root's
    /// basicConstraints pathLenConstraint allows.
    #[error(
        "certificate chain has {intermediates} intermediate CA certificates below a root whose \
         pathLenConstraint is {path_len}"
    )]
    RootPathLenExceeded {
        /// The root's pathLenConstraint.
        path_len: u32,
        /// The intermediates between the leaf and that root.
        intermediates: usize,
    },
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
    roots: HashMap<TrustDomain, Roots>,
}

/// One trust domain's roots: the webpki anchors and, index for index, each root certificate's
/// pathLenConstraint. A webpki anchor keeps only the subject, key and name constraints, so
/// webpki enforces the constraint of every intermediate but never the root's; RFC 5280 takes a
/// root certificate's constraint as input to path validation, and SPIFFE bundle roots are
/// certificates.
#[derive(Debug)]
struct Roots {
    anchors: Vec<TrustAnchor<'static>>,
    path_lens: Vec<Option<u32>>,
}

impl TrustStore {
    pub(crate) fn from_bundles(bundles: &TrustBundles) -> Result<Self, TlsError> {
        let mut store = HashMap::new();
        for (domain, certs) in bundles.iter() {
            let invalid = |reason: String| TlsError::Bundle {
                domain: domain.to_string(),
                reason,
            };
            let mut roots = Roots {
                anchors: Vec::with_capacity(certs.len()),
                path_lens: Vec::with_capacity(certs.len()),
            };
            for cert in certs {
                let anchor = webpki::anchor_from_trusted_cert(cert)
                    .map_err(|e| invalid(e.to_string()))?
                    .to_owned();
                roots.anchors.push(anchor);
                roots.path_lens.push(root_path_len(cert).map_err(invalid)?);
            }
            store.insert(domain.clone(), roots);
        }
        Ok(Self { roots: store })
    }

    pub(crate) fn contains(&self, domain: &TrustDomain) -> bool {
        self.roots
            .get(domain)
            .is_some_and(|r| !r.anchors.is_empty())
    }
}

/// The pathLenConstraint of a root certificate's basicConstraints, `None` when it sets none.
fn root_path_len(root: &CertificateDer<'_>) -> Result<Option<u32>, String> {
    let (_, cert) = X509Certificate::from_der(root).map_err(|e| e.to_string())?;
    let constraints = cert
        .get_extension_unique(&OID_X509_EXT_BASIC_CONSTRAINTS)
        .map_err(|e| e.to_string())?;
    match constraints.map(|ext| ext.parsed_extension()) {
        None => Ok(None),
        Some(ParsedExtension::BasicConstraints(bc)) => Ok(bc.path_len_constraint),
        // Reading an unparsable constraint as "none" would lift it: refuse the root instead.
        Some(_) => Err("root certificate has an unparsable basicConstraints extension".into()),
    }
}

/// Which way the certificate is being used, for its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    Client,
    Server,
}

/// Reads the SPIFFE ID of a leaf and checks the leaf constraints of the X.509-SVID
/// specification (exactly one URI SAN, a SPIFFE ID naming a workload rather than the trust
/// domain itself, not a CA, digitalSignature without keyCertSign/cRLSign).
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
            // X.509-SVID specification, section 2: a leaf SVID names a workload, so its path is
            // not the root. `spiffe://example.org` is the trust domain's own ID and never a peer.
            if id.path().is_empty() {
                return Err(SvidError::InvalidSpiffeId(format!(
                    "{id} has a root path; an X.509-SVID names a workload"
                )));
            }
            Ok(id)
        }
        more => Err(SvidError::MultipleUriSans(more.len())),
    }
}

/// Verifies a presented certificate chain as an X.509-SVID: the leaf constraints, then the
/// chain against the roots of the trust domain named in the leaf's SPIFFE ID (never another
/// domain's), at `now`, with no more intermediates than the root's pathLenConstraint allows.
/// Returns the verified SPIFFE ID.
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
    let roots = store
        .roots
        .get(domain)
        .filter(|r| !r.anchors.is_empty())
        .ok_or_else(|| SvidError::UnknownTrustDomain(domain.to_string()))?;
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    let eku = match usage {
        Usage::Client => webpki::KeyUsage::client_auth(),
        Usage::Server => webpki::KeyUsage::server_auth(),
    };
    // Called for each path webpki has verified up to a root; refusing one makes webpki try the
    // others, so a path through a less constrained root still verifies.
    let exceeded = Cell::new(None);
    let within_root_path_len = |path: &webpki::VerifiedPath<'_>| {
        let intermediates = path.intermediate_certificates().count();
        // webpki hands back one of the anchors it was given, by reference.
        let root = roots
            .anchors
            .iter()
            .position(|anchor| std::ptr::eq(anchor, path.anchor()));
        match root.and_then(|at| roots.path_lens.get(at).copied()) {
            Some(None) => Ok(()),
            Some(Some(path_len)) if u32::try_from(intermediates).is_ok_and(|n| n <= path_len) => {
                Ok(())
            }
            Some(Some(path_len)) => {
                exceeded.set(Some(SvidError::RootPathLenExceeded {
                    path_len,
                    intermediates,
                }));
                Err(webpki::Error::PathLenConstraintViolated)
            }
            // Not one of ours: impossible by the above, and never trusted.
            None => Err(webpki::Error::UnknownIssuer),
        }
    };
    cert.verify_for_usage(
        super::provider().signature_verification_algorithms.all,
        &roots.anchors,
        intermediates,
        now,
        eku,
        None,
        Some(&within_root_path_len),
    )
    .map_err(|e| match (e, exceeded.take()) {
        (webpki::Error::PathLenConstraintViolated, Some(root)) => root,
        (e, _) => SvidError::Chain(e.to_string()),
    })?;
    Ok(id)
}
