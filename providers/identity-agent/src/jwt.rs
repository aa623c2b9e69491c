//! The JWT authority: signs JWT-SVIDs and WITs, validates JWT-SVIDs, and publishes its public
//! keys as a JWKS. Signing keys rotate; a retired key stays published, and keeps verifying,
//! until the last token it signed has expired.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ligand_runtime::{FetchWitRequest, FetchWitResponse, SpiffeId, TrustDomain};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

/// The JOSE `typ` of a Workload Identity Token (draft-ietf-wimse-workload-creds).
pub const WIT_TYP: &str = "wit+jwt";
/// The JOSE `typ` values a JWT-SVID may carry (besides none at all).
const JWT_SVID_TYPES: [&str; 2] = ["JWT", "JOSE"];
/// The JWK `use` of JWT authorities in a SPIFFE bundle.
const SPIFFE_JWT_USE: &str = "jwt-svid";
/// JWK members that only a private or symmetric key has: never acceptable in `cnf.jwk`.
const PRIVATE_JWK_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// The signing algorithm of the authority's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// ECDSA P-256 with SHA-256 (the default).
    #[default]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys.
    Rs256,
}

// === impl JwtAlgorithm ===

impl JwtAlgorithm {
    fn jose(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
        }
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

impl FromStr for JwtAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Self::Es256),
            "RS256" => Ok(Self::Rs256),
            other => Err(format!(
                "unsupported algorithm `{other}` (expected ES256 or RS256)"
            )),
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token could not be issued or was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// A signing key could not be generated.
    #[error("signing key generation failed: {0}")]
    KeyGeneration(String),
    /// Signing failed.
    #[error("token signing failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// A JWT-SVID was requested without an audience.
    #[error("at least one audience is required")]
    NoAudience,
    /// The token's header names no key, or a key this authority does not (or no longer) hold.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The token is malformed, expired, for another audience, or its signature is bad.
    #[error("token rejected")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    /// The token's JOSE `typ` is not one a JWT-SVID may carry (absent, `JWT` or `JOSE`): a WIT
    /// (`wit+jwt`) or any other kind of token is not a JWT-SVID, even when signed by this
    /// authority.
    #[error("token type `{0}` is not a JWT-SVID (expected no typ, JWT or JOSE)")]
    WrongType(String),
    /// The token's subject is not a SPIFFE ID of this trust domain.
    #[error("token subject is not a SPIFFE ID of this trust domain")]
    BadSubject,
    /// The key offered for a WIT's `cnf.jwk` is not a public JWK.
    #[error("cnf.jwk is not a public JWK: {0}")]
    InvalidCnf(String),
}

/// A signed JWT-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSvid {
    /// The compact JWS.
    pub token: String,
    /// Its `exp`.
    pub expires_at: SystemTime,
}

/// What a valid JWT-SVID says.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedJwt {
    /// The `sub`.
    pub spiffe_id: SpiffeId,
    /// Every claim.
    pub claims: Map<String, Value>,
}

// === impl SigningKey ===

struct SigningKey {
    kid: String,
    algorithm: JwtAlgorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key with `kid` and `alg` set.
    jwk: Jwk,
    /// The latest `exp` of the tokens it signed.
    last_expiry: SystemTime,
}

impl SigningKey {
    fn generate(algorithm: JwtAlgorithm) -> Result<Self, JwtError> {
        let keygen = |e: &dyn fmt::Display| JwtError::KeyGeneration(e.to_string());
        let encoding = match algorithm {
            JwtAlgorithm::Es256 => {
                let key = rcgen::KeyPair::generate().map_err(|e| keygen(&e))?;
                EncodingKey::from_ec_der(&key.serialize_der())
            }
            JwtAlgorithm::Rs256 => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                    .map_err(|e| keygen(&e))?;
                EncodingKey::from_rsa_der(key.to_pkcs1_der().map_err(|e| keygen(&e))?.as_bytes())
            }
        };
        let kid = uuid::Uuid::new_v4().simple().to_string();
        let mut jwk =
            Jwk::from_encoding_key(&encoding, algorithm.jose()).map_err(|e| keygen(&e))?;
        jwk.common.key_id = Some(kid.clone());
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| keygen(&e))?;
        Ok(Self {
            kid,
            algorithm,
            encoding,
            decoding,
            jwk,
            last_expiry: UNIX_EPOCH,
        })
    }

    fn public(&self, usage: PublicKeyUse) -> Jwk {
        let mut jwk = self.jwk.clone();
        jwk.common.public_key_use = Some(usage);
        jwk
    }
}

struct Keys {
    current: SigningKey,
    retired: Vec<SigningKey>,
}

impl Keys {
    /// Drops retired keys whose tokens have all expired; true when one was dropped.
    fn prune(&mut self, now: SystemTime) -> bool {
        let before = self.retired.len();
        self.retired.retain(|k| k.last_expiry > now);
        self.retired.len() != before
    }

    fn all(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(&self.retired)
    }
}

// === impl JwtAuthority ===

/// Signs and validates JWT-SVIDs and WITs for one trust domain.
pub struct JwtAuthority {
    domain: TrustDomain,
    issuer: String,
    algorithm: JwtAlgorithm,
    keys: Mutex<Keys>,
    /// Bumped whenever the published key set changes.
    changes: watch::Sender<u64>,
}

impl fmt::Debug for JwtAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthority")
            .field("trust_domain", &self.domain.to_string())
            .field("issuer", &self.issuer)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl JwtAuthority {
    /// An authority for `domain` whose tokens carry `iss: issuer`, with a fresh key.
    pub fn new(
        domain: TrustDomain,
        issuer: impl Into<String>,
        algorithm: JwtAlgorithm,
    ) -> Result<Self, JwtError> {
        let current = SigningKey::generate(algorithm)?;
        Ok(Self {
            domain,
            issuer: issuer.into(),
            algorithm,
            keys: Mutex::new(Keys {
                current,
                retired: Vec::new(),
            }),
            changes: watch::channel(0).0,
        })
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.domain
    }

    fn keys(&self) -> MutexGuard<'_, Keys> {
        // A panic while holding the lock cannot leave the key set half-updated: every update
        // is a single assignment or push.
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `kid` of the key that signs new tokens.
    pub fn current_kid(&self) -> String {
        self.keys().current.kid.clone()
    }

    /// Replaces the signing key. The old key stays published until its last token expires.
    pub fn rotate(&self) -> Result<(), JwtError> {
        let next = SigningKey::generate(self.algorithm)?;
        {
            let mut keys = self.keys();
            let old = std::mem::replace(&mut keys.current, next);
            tracing::info!(retired = %old.kid, current = %keys.current.kid, "JWT signing key rotated");
            keys.retired.push(old);
            keys.prune(SystemTime::now());
        }
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// A receiver that changes whenever the published key set does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn public_keys(&self, usage: &PublicKeyUse) -> JwkSet {
        let mut keys = self.keys();
        if keys.prune(SystemTime::now()) {
            self.changes.send_modify(|v| *v += 1);
        }
        JwkSet {
            keys: keys.all().map(|k| k.public(usage.clone())).collect(),
        }
    }

    /// The OIDC JWKS (`use: sig`): the current key and every retired key still in use.
    pub fn jwks(&self) -> JwkSet {
        self.public_keys(&PublicKeyUse::Signature)
    }

    /// The same keys as a SPIFFE bundle document (`use: jwt-svid`), JSON-encoded.
    pub fn spiffe_bundle(&self) -> Vec<u8> {
        let set = self.public_keys(&PublicKeyUse::Other(SPIFFE_JWT_USE.to_owned()));
        // A JwkSet has string keys and plain values: serializing it cannot fail.
        serde_json::to_vec(&set).unwrap_or_default()
    }

    fn sign(&self, header: Header, claims: &Value, exp: SystemTime) -> Result<String, JwtError> {
        let mut keys = self.keys();
        let key = &mut keys.current;
        let mut header = header;
        header.alg = key.algorithm.jose();
        header.kid = Some(key.kid.clone());
        let token =
            jsonwebtoken::encode(&header, claims, &key.encoding).map_err(JwtError::Signing)?;
        key.last_expiry = key.last_expiry.max(exp);
        Ok(token)
    }

    fn expiry(ttl: Duration) -> (u64, SystemTime) {
        let now = unix(SystemTime::now());
        let exp = now + ttl.as_secs().max(1);
        (now, UNIX_EPOCH + Duration::from_secs(exp))
    }

    /// A JWT-SVID for `id` with `aud: audience`, valid for `ttl`.
    pub fn issue_jwt_svid(
        &self,
        id: &SpiffeId,
        audience: &[String],
        ttl: Duration,
    ) -> Result<JwtSvid, JwtError> {
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(JwtError::NoAudience);
        }
        let (iat, expires_at) = Self::expiry(ttl);
        let claims = json!({
            "sub": id.to_string(),
            "aud": audience,
            "iss": self.issuer,
            "iat": iat,
            "exp": unix(expires_at),
        });
        let mut header = Header::new(self.algorithm.jose());
        header.typ = Some("JWT".to_owned());
        let token = self.sign(header, &claims, expires_at)?;
        Ok(JwtSvid { token, expires_at })
    }

    /// Validates a JWT-SVID for `audience`: `typ` absent, `JWT` or `JOSE` (so a WIT from the
    /// same keys is refused), signature by one of this authority's published keys, not expired
    /// (no leeway), `aud` contains `audience`, `sub` a SPIFFE ID of the trust domain.
    pub fn validate_jwt_svid(&self, token: &str, audience: &str) -> Result<ValidatedJwt, JwtError> {
        if audience.is_empty() {
            return Err(JwtError::NoAudience);
        }
        let header = jsonwebtoken::decode_header(token).map_err(JwtError::Invalid)?;
        // JWT-SVID specification, section 2.2: `typ` is absent, `JWT` or `JOSE`. Anything else
        // (a WIT's `wit+jwt` above all) is another kind of token from the same keys.
        if let Some(typ) = header.typ.filter(|t| !JWT_SVID_TYPES.contains(&t.as_str())) {
            return Err(JwtError::WrongType(typ));
        }
        let kid = header.kid.ok_or(JwtError::UnknownKey)?;
        let (decoding, algorithm) = {
            let mut keys = self.keys();
            keys.prune(SystemTime::now());
            let key = keys
                .all()
                .find(|k| k.kid == kid)
                .ok_or(JwtError::UnknownKey)?;
            (key.decoding.clone(), key.algorithm)
        };
        let mut validation = Validation::new(algorithm.jose());
        validation.leeway = 0;
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &decoding, &validation)
            .map_err(JwtError::Invalid)?;
        let sub = data
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(JwtError::BadSubject)?;
        let spiffe_id = SpiffeId::new(sub).map_err(|_| JwtError::BadSubject)?;
        if spiffe_id.trust_domain() != &self.domain {
            return Err(JwtError::BadSubject);
        }
        Ok(ValidatedJwt {
            spiffe_id,
            claims: data.claims,
        })
    }

    /// A Workload Identity Token for `id` binding the public key `request.cnf_jwk`
    /// (`typ: wit+jwt`, `cnf.jwk`, and `aud` when the request names one), valid for `ttl`.
    pub fn issue_wit(
        &self,
        id: &SpiffeId,
        request: &FetchWitRequest,
        ttl: Duration,
    ) -> Result<FetchWitResponse, JwtError> {
        let jwk = public_jwk(&request.cnf_jwk)?;
        let (iat, expires_at) = Self::expiry(ttl);
        let mut claims = json!({
            "iss": self.issuer,
            "sub": id.to_string(),
            "iat": iat,
            "exp": unix(expires_at),
            "jti": uuid::Uuid::new_v4().to_string(),
            "cnf": { "jwk": jwk },
        });
        if !request.audience.is_empty() {
            claims["aud"] = Value::String(request.audience.clone());
        }
        let mut header = Header::new(self.algorithm.jose());
        header.typ = Some(WIT_TYP.to_owned());
        let token = self.sign(header, &claims, expires_at)?;
        Ok(FetchWitResponse { token, expires_at })
    }
}

/// Parses `cnf_jwk` as a public JWK: a JSON object jsonwebtoken recognises as a JWK, without
/// any private or symmetric key member.
fn public_jwk(cnf_jwk: &str) -> Result<Value, JwtError> {
    let value: Value =
        serde_json::from_str(cnf_jwk).map_err(|e| JwtError::InvalidCnf(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| JwtError::InvalidCnf("not a JSON object".into()))?;
    if let Some(member) = PRIVATE_JWK_MEMBERS
        .iter()
        .find(|m| object.contains_key(**m))
    {
        return Err(JwtError::InvalidCnf(format!(
            "member `{member}` belongs to a private or symmetric key"
        )));
    }
    // The members RFC 7518 requires of each public key type; the JWK parser alone is lenient.
    let required: &[&str] = match object.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "x", "y"],
        Some("RSA") => &["n", "e"],
        Some("OKP") => &["crv", "x"],
        Some(other) => {
            return Err(JwtError::InvalidCnf(format!(
                "key type `{other}` is not a public key type"
            )));
        }
        None => return Err(JwtError::InvalidCnf("missing `kty`".into())),
    };
    if let Some(member) = required
        .iter()
        .find(|m| !object.get(**m).is_some_and(Value::is_string))
    {
        return Err(JwtError::InvalidCnf(format!(
            "missing or non-string `{member}`"
        )));
    }
    serde_json::from_value::<Jwk>(value.clone())
        .map_err(|e| JwtError::InvalidCnf(e.to_string()))?;
    Ok(value)
}

#[cfg(test)]
mod tests;
