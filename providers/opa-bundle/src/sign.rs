//! Bundle signatures in OPA's format: one JWT listing every file's digest.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::archive::Bundle;
use crate::hash::{HashAlgorithm, file_digest};

/// The `.signatures.json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signatures {
    /// The signature JWTs (exactly one is accepted).
    pub signatures: Vec<String>,
    /// A custom verification plugin; none is supported, so a named plugin fails verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

/// One file's entry in the signature payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// The path relative to the bundle root.
    pub name: String,
    /// The hex digest.
    pub hash: String,
    /// The digest algorithm's name (`SHA-256`).
    pub algorithm: String,
}

/// The signature JWT's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignaturePayload {
    /// Every signed file.
    pub files: Vec<FileDigest>,
    /// The key that signed (deprecated in OPA in favour of the `kid` header; still honoured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// The scope the signature is for; must equal the verifier's configured scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// When the signature was made (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Who made it (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// Why a bundle's signature was refused. The previous policy must stay in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The bundle carries no `.signatures.json` but signatures are required.
    #[error("bundle is not signed")]
    Unsigned,
    /// `.signatures.json` does not hold exactly one JWT.
    #[error(".signatures.json holds {0} JWTs; exactly one is required")]
    SignatureCount(usize),
    /// A verification plugin was requested; none is supported.
    #[error("signature plugin {0:?} is not supported")]
    Plugin(String),
    /// The JWT is not well-formed.
    #[error("malformed signature JWT: {0}")]
    Malformed(String),
    /// No key ID was configured, in the JWT header or in the payload.
    #[error("signature names no key")]
    NoKeyId,
    /// The key ID is not among the configured keys.
    #[error("signature key {0:?} is not a configured verification key")]
    UnknownKey(String),
    /// The JWT's signature or algorithm does not verify with the key.
    #[error("signature does not verify with key {key}: {reason}")]
    BadSignature {
        /// The key used.
        key: String,
        /// Why.
        reason: String,
    },
    /// The signature's scope is not the configured one.
    #[error("signature scope {actual:?} does not match the configured scope {expected:?}")]
    ScopeMismatch {
        /// The configured scope.
        expected: String,
        /// The signature's scope.
        actual: String,
    },
    /// A bundle file is not listed in the signature.
    #[error("bundle file {0:?} is not covered by the signature")]
    FileNotSigned(String),
    /// A listed digest uses an unknown or refused algorithm.
    #[error("bundle file {path:?} is signed with unsupported digest algorithm {algorithm:?}")]
    UnsupportedAlgorithm {
        /// The file.
        path: String,
        /// The algorithm's name.
        algorithm: String,
    },
    /// A file's content does not match its signed digest (the bundle was tampered with).
    #[error("bundle file {0:?} does not match its signed digest")]
    DigestMismatch(String),
    /// The signature lists a file the bundle does not have.
    #[error("signed file {0:?} is missing from the bundle")]
    MissingFile(String),
    /// A key could not be loaded.
    #[error("invalid key: {0}")]
    Key(String),
}

fn algorithm(name: &str) -> Result<Algorithm, SignatureError> {
    let alg = Algorithm::from_str(name)
        .map_err(|_| SignatureError::Key(format!("unknown algorithm {name}")))?;
    match alg {
        Algorithm::ES256
        | Algorithm::ES384
        | Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512
        | Algorithm::EdDSA => Ok(alg),
        // Shared-secret algorithms would let every verifier forge bundles.
        _ => Err(SignatureError::Key(format!(
            "algorithm {name} is not accepted for bundle signing"
        ))),
    }
}

fn from_pem<K>(
    alg: Algorithm,
    pem: &[u8],
    ec: fn(&[u8]) -> jsonwebtoken::errors::Result<K>,
    rsa: fn(&[u8]) -> jsonwebtoken::errors::Result<K>,
    ed: fn(&[u8]) -> jsonwebtoken::errors::Result<K>,
) -> Result<K, SignatureError> {
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => ec(pem),
        Algorithm::EdDSA => ed(pem),
        _ => rsa(pem),
    };
    key.map_err(|e| SignatureError::Key(e.to_string()))
}

/// A private key that signs bundles.
pub struct SigningKey {
    key_id: String,
    algorithm: Algorithm,
    key: EncodingKey,
    issuer: Option<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from a PEM private key (PKCS#8 for EC and Ed25519, PKCS#1 or PKCS#8 for RSA),
    /// with the JWT algorithm name (`ES256`, `RS256`, ...) and the ID verifiers know it by.
    pub fn from_pem(
        key_id: impl Into<String>,
        algorithm_name: &str,
        pem: &[u8],
    ) -> Result<Self, SignatureError> {
        let alg = algorithm(algorithm_name)?;
        let key = from_pem(
            alg,
            pem,
            EncodingKey::from_ec_pem,
            EncodingKey::from_rsa_pem,
            EncodingKey::from_ed_pem,
        )?;
        Ok(Self {
            key_id: key_id.into(),
            algorithm: alg,
            key,
            issuer: None,
        })
    }

    /// Sets the informational `iss` claim.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Signs every file of `bundle` (its manifest included) with SHA-256 digests, for `scope`.
    pub fn sign(&self, bundle: &Bundle, scope: Option<&str>) -> Result<Signatures, SignatureError> {
        let mut files = bundle
            .signed_files()
            .into_iter()
            .map(|(name, bytes)| {
                let hash = file_digest(&name, &bytes, HashAlgorithm::Sha256)
                    .map_err(|e| SignatureError::Malformed(format!("{name}: {e}")))?;
                Ok(FileDigest {
                    name,
                    hash,
                    algorithm: HashAlgorithm::Sha256.name().to_owned(),
                })
            })
            .collect::<Result<Vec<_>, SignatureError>>()?;
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let payload = SignaturePayload {
            files,
            keyid: None,
            scope: scope.map(str::to_owned),
            iat: Some(iat),
            iss: self.issuer.clone(),
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.key_id.clone());
        let token = jsonwebtoken::encode(&header, &payload, &self.key)
            .map_err(|e| SignatureError::Key(e.to_string()))?;
        Ok(Signatures {
            signatures: vec![token],
            plugin: None,
        })
    }
}

/// A public key that verifies bundle signatures.
#[derive(Clone)]
pub struct VerificationKey {
    algorithm: Algorithm,
    key: DecodingKey,
    scope: Option<String>,
}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl VerificationKey {
    /// A key from a PEM public key with the JWT algorithm it must be used with.
    pub fn from_pem(algorithm_name: &str, pem: &[u8]) -> Result<Self, SignatureError> {
        let alg = algorithm(algorithm_name)?;
        let key = from_pem(
            alg,
            pem,
            DecodingKey::from_ec_pem,
            DecodingKey::from_rsa_pem,
            DecodingKey::from_ed_pem,
        )?;
        Ok(Self {
            algorithm: alg,
            key,
            scope: None,
        })
    }

    /// The scope signatures by this key must carry (unless the verifier sets one).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

/// Verifies bundles against a set of keys, as OPA's `signing` configuration does.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: HashMap<String, VerificationKey>,
    key_id: Option<String>,
    scope: Option<String>,
}

impl Verifier {
    /// A verifier with no keys (it refuses everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key under `key_id`.
    pub fn key(mut self, key_id: impl Into<String>, key: VerificationKey) -> Self {
        self.keys.insert(key_id.into(), key);
        self
    }

    /// Uses this key ID whatever the signature names (OPA's `keyid` setting).
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// The scope signatures must carry.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Verifies `bundle`: one JWT, verified with the configured key it names, the right scope,
    /// and every file present with a matching digest and no file unsigned.
    pub fn verify(&self, bundle: &Bundle) -> Result<SignaturePayload, SignatureError> {
        let signatures = bundle.signatures().ok_or(SignatureError::Unsigned)?;
        if let Some(plugin) = &signatures.plugin {
            return Err(SignatureError::Plugin(plugin.clone()));
        }
        let [token] = signatures.signatures.as_slice() else {
            return Err(SignatureError::SignatureCount(signatures.signatures.len()));
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let unverified = unverified_payload(token)?;
        let key_id = self
            .key_id
            .clone()
            .or(header.kid)
            .or(unverified.keyid)
            .filter(|k| !k.is_empty())
            .ok_or(SignatureError::NoKeyId)?;
        let key = self
            .keys
            .get(&key_id)
            .ok_or_else(|| SignatureError::UnknownKey(key_id.clone()))?;
        let mut validation = Validation::new(key.algorithm);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let payload = jsonwebtoken::decode::<SignaturePayload>(token, &key.key, &validation)
            .map_err(|e| SignatureError::BadSignature {
                key: key_id.clone(),
                reason: e.to_string(),
            })?
            .claims;
        let expected = self
            .scope
            .clone()
            .or_else(|| key.scope.clone())
            .unwrap_or_default();
        let actual = payload.scope.clone().unwrap_or_default();
        if expected != actual {
            return Err(SignatureError::ScopeMismatch { expected, actual });
        }
        check_files(bundle, &payload.files)?;
        Ok(payload)
    }
}

/// The payload before verification, only to learn which key to verify with.
fn unverified_payload(token: &str) -> Result<SignaturePayload, SignatureError> {
    let middle = token
        .split('.')
        .nth(1)
        .ok_or_else(|| SignatureError::Malformed("not a JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(middle)
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| SignatureError::Malformed(e.to_string()))
}

fn check_files(bundle: &Bundle, signed: &[FileDigest]) -> Result<(), SignatureError> {
    let mut listed: HashMap<&str, &FileDigest> = HashMap::new();
    for digest in signed {
        if listed.insert(digest.name.as_str(), digest).is_some() {
            return Err(SignatureError::Malformed(format!(
                "{} is listed twice",
                digest.name
            )));
        }
    }
    for (path, bytes) in bundle.signed_files() {
        let digest = listed
            .remove(path.as_str())
            .ok_or_else(|| SignatureError::FileNotSigned(path.clone()))?;
        let algorithm = HashAlgorithm::from_name(&digest.algorithm).ok_or_else(|| {
            SignatureError::UnsupportedAlgorithm {
                path: path.clone(),
                algorithm: digest.algorithm.clone(),
            }
        })?;
        let actual = file_digest(&path, &bytes, algorithm)
            .map_err(|_| SignatureError::DigestMismatch(path.clone()))?;
        if !actual.eq_ignore_ascii_case(&digest.hash) {
            return Err(SignatureError::DigestMismatch(path));
        }
    }
    match listed.into_keys().min() {
        Some(missing) => Err(SignatureError::MissingFile(missing.to_owned())),
        None => Ok(()),
    }
}
