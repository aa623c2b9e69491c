//! One chain token: the claims (versions 1 and 2 share them), signing them with the SVID key,
//! and verifying one received token against the trust store or the mTLS peer's certificates.
//! The chain-level checks (order, digests, audience, peer) are the verifier's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spiffe::SpiffeId;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::error::{ChainError, ChainRejection};
use super::{CHAIN_CLOCK_LEEWAY, Link, MAX_CHAIN_TOKEN_LIFETIME};
use crate::identity::X509Svid;
use crate::tls::{SvidError, TrustStore, Usage, verify_with_store};

/// Wire-format version 1: the signer's certificates travel in the token (`x5c`).
pub(crate) const VERSION_1: u64 = 1;

/// Wire-format version 2: the token names its signer's leaf by thumbprint (`x5t#S256`); the
/// certificates come from the mTLS handshake, or are attached to the token when forwarded.
pub(crate) const VERSION_2: u64 = 2;

/// The JWS `typ` of a chain token.
pub(crate) const TYP: &str = "ligand-chain+jwt";

/// The most certificates a token's `x5c` (or, in version 2, its attachment) may carry: leaf
/// and intermediates.
pub(crate) const MAX_X5C: usize = 4;

/// The `x5t#S256` of a certificate (RFC 7515 §4.1.8): the unpadded base64url SHA-256 of its
/// DER.
pub(crate) fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// The claims of a token (versions 1 and 2 alike). Unknown claims are refused: anything new is a new version.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Claims {
    pub(crate) v: u64,
    pub(crate) iss: String,
    pub(crate) aud: String,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prev: Option<String>,
    #[serde(default, skip_serializing_if = "LinkClaims::is_empty")]
    pub(crate) link: LinkClaims,
}

/// The identity dimensions of a hop other than its workload (which is `iss`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) external_party: Option<String>,
}

impl LinkClaims {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The dimensions of `link` a hop signs for itself (its workload is its SVID).
    pub(crate) fn of(link: &Link) -> Self {
        let text = |field: &Option<std::sync::Arc<str>>| field.as_deref().map(str::to_owned);
        Self {
            user: text(&link.user),
            device: text(&link.device),
            host: text(&link.host),
            external_party: text(&link.external_party),
        }
    }

    /// The verified link of a hop whose SVID names `issuer`.
    pub(crate) fn into_link(self, issuer: String) -> Link {
        Link {
            workload: Some(issuer.into()),
            user: self.user.map(Into::into),
            device: self.device.map(Into::into),
            host: self.host.map(Into::into),
            external_party: self.external_party.map(Into::into),
            verified: true,
        }
    }
}

/// The only claim read before the signature: which version's rules apply.
#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
}

/// What an SVID key is, which decides the algorithms it signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    P256,
    P384,
    Rsa,
    Ed25519,
}

impl KeyKind {
    fn of(spki: &SubjectPublicKeyInfo<'_>) -> Option<Self> {
        let oid = &spki.algorithm.algorithm;
        if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
            if curve == OID_EC_P256 {
                Some(Self::P256)
            } else if curve == OID_NIST_EC_P384 {
                Some(Self::P384)
            } else {
                None
            }
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            Some(Self::Rsa)
        } else if *oid == OID_SIG_ED25519 {
            Some(Self::Ed25519)
        } else {
            None
        }
    }

    /// The algorithm this hop signs with. RSA keys sign PSS, the modern RSA JWS algorithm.
    fn signing_algorithm(self) -> Algorithm {
        match self {
            Self::P256 => Algorithm::ES256,
            Self::P384 => Algorithm::ES384,
            Self::Rsa => Algorithm::PS256,
            Self::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// Whether a token signed with `alg` may be verified with a key of this kind. Pinning the
    /// algorithm to the key kind is what stops algorithm confusion (`HS256` with the public key
    /// as the secret, `none`).
    fn verifies(self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (Self::P256, Algorithm::ES256)
                | (Self::P384, Algorithm::ES384)
                | (Self::Rsa, Algorithm::PS256 | Algorithm::RS256)
                | (Self::Ed25519, Algorithm::EdDSA)
        )
    }

    /// The public key of `spki` as jsonwebtoken takes it: the subjectPublicKey bits are the
    /// SEC1 point, the PKCS#1 RSAPublicKey or the raw Ed25519 key.
    fn decoding_key(self, spki: &SubjectPublicKeyInfo<'_>) -> DecodingKey {
        let bits = &spki.subject_public_key.data;
        match self {
            Self::P256 | Self::P384 => DecodingKey::from_ec_der(bits),
            Self::Rsa => DecodingKey::from_rsa_der(bits),
            Self::Ed25519 => DecodingKey::from_ed_der(bits),
        }
    }
}

/// The hop's signing key: made from the SVID when the identity is loaded (and on every
/// rotation), so that a key jsonwebtoken cannot use fails `init`, not a request.
pub(crate) struct SigningKey {
    key: EncodingKey,
    alg: Algorithm,
    /// The SVID's certificates, leaf first, as the `x5c` header carries them.
    x5c: Vec<String>,
    /// The leaf's `x5t#S256`, as a version 2 header carries it.
    x5t: String,
}

impl SigningKey {
    /// The key of `svid`. The error says why jsonwebtoken cannot sign with it.
    pub(crate) fn from_svid(svid: &X509Svid) -> Result<Self, String> {
        let leaf = svid
            .cert_chain
            .first()
            .ok_or("the SVID has no certificate")?;
        let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| e.to_string())?;
        let spki = cert.public_key();
        let kind = KeyKind::of(spki).ok_or(
            "the SVID key cannot sign identity chains: it must be ECDSA P-256 or P-384, RSA or \
             Ed25519",
        )?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &svid.private_key else {
            return Err("the SVID private key must be PKCS#8 to sign identity chains".into());
        };
        let der = pkcs8.secret_pkcs8_der();
        let key = match kind {
            KeyKind::P256 | KeyKind::P384 => EncodingKey::from_ec_der(der),
            KeyKind::Ed25519 => EncodingKey::from_ed_der(der),
            // jsonwebtoken takes RSA keys as PKCS#1 DER, or PKCS#8 as PEM.
            KeyKind::Rsa => {
                let pem = format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    STANDARD.encode(der)
                );
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?
            }
        };
        let alg = kind.signing_algorithm();
        // Sign once now and check it against the certificate: a key jsonwebtoken rejects, or
        // one that is not the certificate's, fails here rather than on the first call.
        let probe = b"ligand identity chain key check";
        let signature = jsonwebtoken::crypto::sign(probe, &key, alg)
            .map_err(|e| format!("jsonwebtoken cannot sign with the SVID key ({alg:?}): {e}"))?;
        let matches =
            jsonwebtoken::crypto::verify(&signature, probe, &kind.decoding_key(spki), alg)
                .map_err(|e| e.to_string())?;
        if !matches {
            return Err("the SVID private key does not match its certificate".into());
        }
        Ok(Self {
            key,
            alg,
            x5t: thumbprint(leaf),
            x5c: svid
                .cert_chain
                .iter()
                .map(|c| STANDARD.encode(c.as_ref()))
                .collect(),
        })
    }

    /// A compact JWS of any `claims` under the JWS type `typ`, with the SVID chain as `x5c`:
    /// the audit log's checkpoints are signed this way.
    pub(crate) fn sign_as(
        &self,
        typ: &str,
        claims: &impl Serialize,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(self.alg);
        header.typ = Some(typ.to_owned());
        header.x5c = Some(self.x5c.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
    }

    /// A compact JWS of `claims`, in the format of their version: `x5c` for version 1,
    /// `x5t#S256` for version 2.
    pub(crate) fn sign(&self, claims: &Claims) -> Result<String, ChainError> {
        jsonwebtoken::encode(&self.header(claims), claims, &self.key)
            .map_err(|e| ChainError::Signing(e.to_string()))
    }

    /// The protected header of a token of `claims`' version.
    fn header(&self, claims: &Claims) -> Header {
        let mut header = Header::new(self.alg);
        header.typ = Some(TYP.to_owned());
        if claims.v == VERSION_1 {
            header.x5c = Some(self.x5c.clone());
        } else {
            header.x5t_s256 = Some(self.x5t.clone());
        }
        header
    }
}

#[cfg(test)]
impl SigningKey {
    /// A compact JWS of `claims` whose protected header, as [`sign`](Self::sign) makes it,
    /// was changed by `edit`: for tests of headers a signer never makes.
    pub(crate) fn sign_edited(&self, claims: &Claims, edit: impl FnOnce(&mut Header)) -> String {
        let mut header = self.header(claims);
        edit(&mut header);
        #[allow(clippy::unwrap_used, reason = "test helper")]
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// One token that verified on its own.
#[derive(Debug)]
pub(crate) struct VerifiedToken {
    pub(crate) claims: Claims,
    /// From when the token and its certificates verify.
    pub(crate) from: SystemTime,
    /// Until when (exclusive) the token and its certificates verify.
    pub(crate) until: SystemTime,
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Where the certificates of a token's signer come from, besides a version 1 token's own
/// `x5c`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Certificates<'a> {
    /// A forwarded token: the certificates attached to it (leaf first), none for version 1.
    Attached(&'a [CertificateDer<'a>]),
    /// The sending hop's own token: the mTLS peer's certificates (leaf first), which the
    /// handshake verified as an X.509-SVID naming `id`.
    Peer {
        id: &'a SpiffeId,
        chain: &'a [CertificateDer<'static>],
    },
}

/// Verifies one token on its own, at `now`: version, `typ`, algorithm, the signer's
/// certificates (version 1: `x5c`; version 2: the attached or peer certificates, whose leaf
/// must hash to `x5t#S256`) as an X.509-SVID of its own trust domain, `iss` against the leaf,
/// the signature, and the times.
pub(crate) fn verify(
    token: &str,
    certificates: Certificates<'_>,
    trust: &TrustStore,
    now: SystemTime,
) -> Result<VerifiedToken, ChainRejection> {
    use ChainRejection::{
        BadSignature, Expired, Malformed, NotYetValid, PeerMismatch, UntrustedSigner,
    };
    // The version decides every other rule, so it is read first (and read again, signed).
    let version: VersionOnly =
        jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| Malformed)?;
    if version.v != VERSION_1 && version.v != VERSION_2 {
        return Err(ChainRejection::UnsupportedVersion);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Malformed)?;
    if header.typ.as_deref() != Some(TYP) {
        return Err(Malformed);
    }
    if !matches!(
        header.alg,
        Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::PS256
            | Algorithm::RS256
            | Algorithm::EdDSA
    ) {
        return Err(Malformed);
    }
    let unix_now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    let store_error = |e: SvidError| match e {
        SvidError::Malformed(_) | SvidError::NoCertificate => Malformed,
        _ => UntrustedSigner,
    };
    // The signer's certificates, leaf first, and the SPIFFE ID they verified as.
    let x5c_certs;
    let (certs, signer): (&[CertificateDer<'_>], SpiffeId) = if version.v == VERSION_1 {
        // Version 1 carries its certificates; nothing may be attached to it.
        if matches!(certificates, Certificates::Attached(attached) if !attached.is_empty()) {
            return Err(Malformed);
        }
        let x5c = header.x5c.as_deref().unwrap_or_default();
        if x5c.is_empty() || x5c.len() > MAX_X5C {
            return Err(Malformed);
        }
        x5c_certs = x5c
            .iter()
            .map(|c| STANDARD.decode(c).map(CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Malformed)?;
        let (leaf, intermediates) = x5c_certs.split_first().ok_or(Malformed)?;
        let signer = verify_with_store(leaf, intermediates, trust, unix_now, Usage::Client)
            .map_err(store_error)?;
        (&x5c_certs, signer)
    } else {
        // Version 2 names its leaf and never carries certificates itself.
        if header.x5c.is_some() {
            return Err(Malformed);
        }
        let x5t = header.x5t_s256.as_deref().ok_or(Malformed)?;
        match certificates {
            Certificates::Peer { id, chain } => {
                // The handshake verified the peer's chain; the token must be signed by its leaf.
                let leaf = chain.first().ok_or(PeerMismatch)?;
                if thumbprint(leaf) != x5t {
                    return Err(PeerMismatch);
                }
                (chain, id.clone())
            }
            Certificates::Attached(attached) => {
                let (leaf, intermediates) = attached.split_first().ok_or(Malformed)?;
                if attached.len() > MAX_X5C {
                    return Err(Malformed);
                }
                // The signed thumbprint binds the attached leaf to the token.
                if thumbprint(leaf) != x5t {
                    return Err(UntrustedSigner);
                }
                let signer = verify_with_store(leaf, intermediates, trust, unix_now, Usage::Client)
                    .map_err(store_error)?;
                (attached, signer)
            }
        }
    };
    let leaf = certs.first().ok_or(Malformed)?;
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|_| Malformed)?;
    let kind = KeyKind::of(cert.public_key()).ok_or(UntrustedSigner)?;
    if !kind.verifies(header.alg) {
        return Err(BadSignature);
    }
    let mut validation = Validation::new(header.alg);
    // Times, audience and issuer are checked below against the injected clock and the chain.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims =
        jsonwebtoken::decode::<Claims>(token, &kind.decoding_key(cert.public_key()), &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => BadSignature,
                _ => Malformed,
            })?
            .claims;
    if claims.v != version.v {
        return Err(Malformed);
    }
    // The signer's certificate vouches for exactly one identity, in its canonical spelling.
    if claims.iss != signer.to_string() {
        return Err(match certificates {
            Certificates::Peer { .. } if claims.v == VERSION_2 => PeerMismatch,
            _ => UntrustedSigner,
        });
    }
    if SpiffeId::new(&claims.aud).is_err() {
        return Err(Malformed);
    }
    if claims.exp <= claims.iat || claims.exp - claims.iat > MAX_CHAIN_TOKEN_LIFETIME.as_secs() {
        return Err(Malformed);
    }
    let leeway = CHAIN_CLOCK_LEEWAY.as_secs();
    let now_secs = secs(now);
    if now_secs > claims.exp.saturating_add(leeway) {
        return Err(Expired);
    }
    if claims.iat > now_secs.saturating_add(leeway) {
        return Err(NotYetValid);
    }
    let (not_before, not_after) = validity(certs).ok_or(Malformed)?;
    Ok(VerifiedToken {
        from: at(claims.iat.saturating_sub(leeway)).max(not_before),
        until: at(claims.exp.saturating_add(leeway).saturating_add(1)).min(not_after),
        claims,
    })
}

/// The window in which every certificate of `chain` is valid: the latest `notBefore` and the
/// earliest `notAfter`.
fn validity(chain: &[CertificateDer<'_>]) -> Option<(SystemTime, SystemTime)> {
    let mut window: Option<(SystemTime, SystemTime)> = None;
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let time = |t: i64| at(t.max(0).unsigned_abs());
        let from = time(cert.validity().not_before.timestamp());
        let until = time(cert.validity().not_after.timestamp());
        window = Some(window.map_or((from, until), |(f, u)| (f.max(from), u.min(until))));
    }
    window
}

/// Why a JWS signed by an SVID (see [`verify_signed`]) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignedRejection {
    /// Not a compact JWS of the expected type and claims.
    Malformed(String),
    /// The `x5c` chain is not an X.509-SVID chaining to the trust bundle at the signing time.
    UntrustedSigner(String),
    /// The signature does not verify with the leaf's key.
    BadSignature,
}

/// Verifies a compact JWS of type `typ` signed with an SVID key whose chain is in `x5c`: the
/// chain must verify against `trust` at `at` (the time the signer claims, since a log is
/// verified long after its certificates expired), and the signature with the leaf's key, the
/// algorithm pinned to the key's kind. Returns the signer's SPIFFE ID and the claims.
pub(crate) fn verify_signed<T: serde::de::DeserializeOwned>(
    token: &str,
    typ: &str,
    trust: &TrustStore,
    at: SystemTime,
) -> Result<(SpiffeId, T), SignedRejection> {
    use SignedRejection::{BadSignature, Malformed, UntrustedSigner};
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| Malformed(format!("JWS header: {e}")))?;
    if header.typ.as_deref() != Some(typ) {
        return Err(Malformed(format!("JWS typ is not {typ}")));
    }
    let x5c = header.x5c.as_deref().unwrap_or_default();
    if x5c.is_empty() || x5c.len() > MAX_X5C {
        return Err(Malformed(
            "x5c must hold the signer's leaf and intermediates".into(),
        ));
    }
    let certs = x5c
        .iter()
        .map(|c| STANDARD.decode(c).map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Malformed("x5c is not base64".into()))?;
    let (leaf, intermediates) = certs
        .split_first()
        .ok_or_else(|| Malformed("empty x5c".into()))?;
    let unix = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap_or_default());
    let signer = verify_with_store(leaf, intermediates, trust, unix, Usage::Client)
        .map_err(|e| UntrustedSigner(e.to_string()))?;
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| UntrustedSigner(e.to_string()))?;
    let kind = KeyKind::of(cert.public_key())
        .ok_or_else(|| UntrustedSigner("the signer's key kind cannot sign".into()))?;
    if !kind.verifies(header.alg) {
        return Err(BadSignature);
    }
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims =
        jsonwebtoken::decode::<T>(token, &kind.decoding_key(cert.public_key()), &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature
                | ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => BadSignature,
                _ => Malformed(format!("JWS claims: {e}")),
            })?
            .claims;
    Ok((signer, claims))
}
