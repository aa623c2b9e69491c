//! The verifier: the checks of draft-ietf-oauth-transaction-tokens-08 §7 and RFC 8725, in an
//! order that never touches a key before the header has been judged.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::{DEFAULT_TXN_LEEWAY, MAX_TXN_TOKEN_LEN, TXN_TOKEN_TYP, TxnClaims};
use super::{TxnConfigError, TxnRejection};

/// The JSON Web Key Set `json`.
pub(crate) fn parse_jwks(json: &[u8]) -> Result<JwkSet, TxnConfigError> {
    serde_json::from_slice(json).map_err(TxnConfigError::Jwks)
}

/// The JSON Web Key Set in the file at `path`.
pub(crate) fn read_jwks(path: &Path) -> Result<JwkSet, TxnConfigError> {
    let json = std::fs::read(path).map_err(|source| TxnConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_jwks(&json)
}

/// The `kid`s of `jwks`, for `Debug` output that shows which keys without showing them.
pub(crate) fn kids(jwks: &JwkSet) -> Vec<Option<&str>> {
    jwks.keys
        .iter()
        .map(|k| k.common.key_id.as_deref())
        .collect()
}

/// The asymmetric JWS algorithms jsonwebtoken verifies; the default allow-list.
pub(crate) const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// How a service verifies inbound Transaction Tokens: the keys of the Transaction Token
/// Service (a JWKS), optionally the issuers it accepts, whether a token is required, the
/// clock leeway and the algorithm allow-list. File config: the `[txn_token]` section.
#[derive(Clone)]
pub struct TxnTokenConfig {
    keys: JwkSet,
    issuers: Vec<String>,
    audience: Option<String>,
    require: bool,
    leeway: Duration,
    algorithms: Vec<Algorithm>,
}

impl fmt::Debug for TxnTokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxnTokenConfig")
            .field("kids", &kids(&self.keys))
            .field("issuers", &self.issuers)
            .field("audience", &self.audience)
            .field("require", &self.require)
            .field("leeway", &self.leeway)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

impl TxnTokenConfig {
    /// Verifies with the keys of `jwks`. Tokens are optional, any issuer signing with these
    /// keys is accepted, the leeway is [`DEFAULT_TXN_LEEWAY`] and every asymmetric algorithm
    /// is allowed.
    pub fn new(jwks: JwkSet) -> Self {
        Self {
            keys: jwks,
            issuers: Vec::new(),
            audience: None,
            require: false,
            leeway: DEFAULT_TXN_LEEWAY,
            algorithms: ASYMMETRIC.to_vec(),
        }
    }

    /// Verifies with the keys of the JSON Web Key Set `json` (such as the identity agent's
    /// `/keys` document).
    pub fn from_jwks_json(json: &[u8]) -> Result<Self, TxnConfigError> {
        parse_jwks(json).map(Self::new)
    }

    /// Verifies with the keys of the JWKS file at `path`.
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, TxnConfigError> {
        read_jwks(path.as_ref()).map(Self::new)
    }

    /// Accepts only tokens whose `iss` is one of `issuers` (then `iss` is required).
    pub fn issuers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.issuers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// The `aud` tokens must carry, instead of this service's trust domain name (the default,
    /// as draft-ietf-oauth-transaction-tokens-08 §4.1.2 says).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Whether a request without a `Txn-Token` header is refused (`TXN_TOKEN_MISSING`).
    /// Default: `false`, a request without one is evaluated without `input.txn`.
    pub fn require(mut self, require: bool) -> Self {
        self.require = require;
        self
    }

    /// How far `exp`, `iat` and `nbf` may be off against this host's clock.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The algorithm allow-list, by JOSE name (`"ES256"`, `"EdDSA"`, …). Symmetric
    /// algorithms and `none` are refused: a Transaction Token verifies with a public key only.
    pub fn algorithms<I, S>(mut self, names: I) -> Result<Self, TxnConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut algorithms = Vec::new();
        for name in names {
            let name = name.as_ref();
            let algorithm = name
                .parse::<Algorithm>()
                .ok()
                .filter(|a| ASYMMETRIC.contains(a))
                .ok_or_else(|| TxnConfigError::Algorithm(name.to_owned()))?;
            algorithms.push(algorithm);
        }
        self.algorithms = algorithms;
        Ok(self)
    }
}

/// Public keys by `kid` and the algorithms they may verify: the part of verification shared
/// by Transaction Tokens and the subject tokens a [`TxnMinter`](crate::TxnMinter) exchanges.
pub(crate) struct KeySet {
    keys: HashMap<String, Key>,
    algorithms: Vec<Algorithm>,
}

impl KeySet {
    /// The keys of `jwks`, for `algorithms`. Refuses a symmetric key, a key whose `use` is not
    /// `sig`, a key without `kid`, two keys with the same `kid`, or no key at all.
    pub(crate) fn new(jwks: &JwkSet, algorithms: &[Algorithm]) -> Result<Self, TxnConfigError> {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or(TxnConfigError::KeyWithoutKid)?;
            // A key published for another use (encryption, JWT-SVIDs) signs nothing here.
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != PublicKeyUse::Signature)
            {
                return Err(TxnConfigError::NotASigningKey(kid));
            }
            let key = key(jwk, &kid)?;
            if keys.insert(kid.clone(), key).is_some() {
                // Which of the two would verify is a guess; refuse instead.
                return Err(TxnConfigError::DuplicateKid(kid));
            }
        }
        if keys.is_empty() {
            return Err(TxnConfigError::NoKeys);
        }
        Ok(Self {
            keys,
            algorithms: algorithms.to_vec(),
        })
    }

    pub(crate) fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// The claims of `token` once its shape, `typ` (judged by `typ_ok`), algorithm, key and
    /// signature are checked; the claims themselves are not.
    pub(crate) fn signed_claims(
        &self,
        token: &str,
        typ_ok: fn(Option<&str>) -> bool,
    ) -> Result<Map<String, Value>, TxnRejection> {
        if token.len() > MAX_TXN_TOKEN_LEN || token.split('.').count() != 3 {
            return Err(TxnRejection::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| unparsed_header(token))?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: extensions this verifier does not understand must fail.
            return Err(TxnRejection::Malformed);
        }
        if !typ_ok(header.typ.as_deref()) {
            return Err(TxnRejection::WrongType);
        }
        if !self.algorithms.contains(&header.alg) {
            return Err(TxnRejection::DisallowedAlgorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TxnRejection::UnknownKey)?;
        if !key.algorithms.contains(&header.alg) {
            return Err(TxnRejection::KeyMismatch);
        }
        // The claims are checked by the caller against the injected clock; jsonwebtoken
        // checks the signature (and, again, that the algorithm fits the key) only.
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                match error.kind() {
                    ErrorKind::InvalidSignature => TxnRejection::BadSignature,
                    ErrorKind::InvalidAlgorithm
                    | ErrorKind::InvalidKeyFormat
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidRsaKey(_) => TxnRejection::KeyMismatch,
                    _ => TxnRejection::Malformed,
                }
            })?;
        Ok(data.claims)
    }
}

/// One verification key: the decoding key and what it may verify.
struct Key {
    decoding: DecodingKey,
    /// The algorithms the key's type (and curve) admits, narrowed to its JWK `alg` if set.
    algorithms: Vec<Algorithm>,
}

/// Verifies `Txn-Token` header values against a [`TxnTokenConfig`] and an audience.
///
/// Tokens that verified are kept (positive results only, up to
/// 10 000) by their exact bytes with the window in which their time
/// claims hold, so the requests of one transaction pay for the signature once: a hit checks
/// the clock again, and the keys and rules are fixed for the verifier's life.
///
/// Cheap to share (`Clone` copies a pointer). Checks, in order: size and shape; `crit`
/// absent; `typ` is `txntoken+jwt` (case-insensitive, `application/` prefix allowed); `alg`
/// on the allow-list (never `none` or HMAC); `kid` names a configured key of that algorithm's
/// type; the signature; then `exp` (required, not passed), `iat` (required, not in the
/// future), `nbf` if present, `aud` (this trust domain), `iss` (on the allow-list when one is
/// configured), `txn` and `sub` (required strings), and the types of `scope`, `req_wl`,
/// `tctx`, `rctx`.
#[derive(Clone)]
pub struct TxnVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeySet,
    issuers: Vec<String>,
    audience: String,
    require: bool,
    leeway: i64,
    verified: quick_cache::sync::Cache<Box<[u8]>, Verified>,
}

/// How many verified tokens a verifier keeps.
const TXN_TOKEN_CACHE_CAPACITY: usize = 10_000;

/// A token that verified, and the Unix seconds `[from, until)` in which its time claims hold
/// (leeway included).
#[derive(Clone)]
struct Verified {
    claims: Arc<TxnClaims>,
    from: i64,
    until: i64,
}

impl fmt::Debug for TxnVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxnVerifier")
            .field("kids", &self.inner.keys.kids())
            .field("issuers", &self.inner.issuers)
            .field("audience", &self.inner.audience)
            .field("require", &self.inner.require)
            .field("leeway", &self.inner.leeway)
            .finish()
    }
}

impl TxnVerifier {
    /// A verifier of `config` for tokens addressed to `trust_domain` (the trust domain name,
    /// `bank.example`), unless `config` sets another audience. Refuses a JWKS with a
    /// symmetric key, a key without `kid`, or no key at all.
    pub fn new(config: &TxnTokenConfig, trust_domain: &str) -> Result<Self, TxnConfigError> {
        let audience = config.audience.as_deref().unwrap_or(trust_domain);
        if audience.is_empty() {
            return Err(TxnConfigError::NoAudience);
        }
        let keys = KeySet::new(&config.keys, &config.algorithms)?;
        let leeway = seconds(config.leeway);
        Ok(Self {
            inner: Arc::new(Inner {
                keys,
                issuers: config.issuers.clone(),
                audience: audience.to_owned(),
                require: config.require,
                leeway,
                verified: quick_cache::sync::Cache::new(TXN_TOKEN_CACHE_CAPACITY),
            }),
        })
    }

    /// Whether a request without a token is refused.
    pub fn required(&self) -> bool {
        self.inner.require
    }

    /// The audience tokens must carry.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// Verifies the header value `value` at time `now`.
    pub fn verify_header(
        &self,
        value: &http::HeaderValue,
        now: SystemTime,
    ) -> Result<Arc<TxnClaims>, TxnRejection> {
        let token = value.to_str().map_err(|_| TxnRejection::Malformed)?;
        self.verify(token, now)
    }

    /// Verifies the compact JWS `token` at time `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Arc<TxnClaims>, TxnRejection> {
        let now = unix(now);
        let cache = &self.inner.verified;
        if let Some(hit) = cache.get(token.as_bytes())
            && hit.from <= now
            && now < hit.until
        {
            return Ok(hit.claims);
        }
        let claims = self
            .inner
            .keys
            .signed_claims(token, |typ| typ.is_some_and(is_txn_typ))?;
        let verified = self.claims(claims, now)?;
        cache.insert(token.as_bytes().into(), verified.clone());
        Ok(verified.claims)
    }

    /// The claims' checks at Unix time `now`, and the window in which the time checks hold.
    fn claims(&self, mut claims: Map<String, Value>, now: i64) -> Result<Verified, TxnRejection> {
        let inner = &*self.inner;
        let (iat, exp) = validity(&claims, now, inner.leeway)?;
        let iat = iat.ok_or(TxnRejection::MissingClaim("iat"))?;
        // `validity` refuses a token whose `iat` or `nbf` is later than now + leeway, and
        // one at or past exp + leeway.
        let not_before = numeric(&claims, "nbf")?.map_or(iat, |nbf| nbf.max(iat));
        let (from, until) = (
            not_before.saturating_sub(inner.leeway),
            exp.saturating_add(inner.leeway),
        );
        // draft-08 §4.1.2: `aud` identifies the trust domain. A list is accepted only when it
        // names this trust domain alone: a token valid in several domains is not one domain's.
        let audience_matches = match claims.get("aud") {
            None => return Err(TxnRejection::MissingClaim("aud")),
            Some(Value::String(aud)) => *aud == inner.audience,
            Some(Value::Array(list)) => {
                matches!(list.as_slice(), [Value::String(aud)] if *aud == inner.audience)
            }
            Some(_) => return Err(TxnRejection::InvalidClaim("aud")),
        };
        if !audience_matches {
            return Err(TxnRejection::WrongAudience);
        }
        let iss = string(&mut claims, "iss")?;
        if !inner.issuers.is_empty()
            && !iss
                .as_deref()
                .is_some_and(|iss| inner.issuers.iter().any(|allowed| **allowed == *iss))
        {
            return Err(TxnRejection::UntrustedIssuer);
        }
        let txn = string(&mut claims, "txn")?.ok_or(TxnRejection::MissingClaim("txn"))?;
        let sub = string(&mut claims, "sub")?.ok_or(TxnRejection::MissingClaim("sub"))?;
        if txn.is_empty() {
            return Err(TxnRejection::MissingClaim("txn"));
        }
        if sub.is_empty() {
            return Err(TxnRejection::MissingClaim("sub"));
        }
        let claims = TxnClaims {
            txn,
            sub,
            scope: string(&mut claims, "scope")?,
            req_wl: string(&mut claims, "req_wl")?,
            iss,
            iat,
            exp,
            tctx: object(&mut claims, "tctx")?,
            rctx: object(&mut claims, "rctx")?,
        };
        Ok(Verified {
            claims: Arc::new(claims),
            from,
            until,
        })
    }
}

/// The verification key of `jwk` and the algorithms its type admits.
fn key(jwk: &Jwk, kid: &str) -> Result<Key, TxnConfigError> {
    let admitted: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err(TxnConfigError::NotAPublicKey(kid.to_owned())),
        },
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return Err(TxnConfigError::NotAPublicKey(kid.to_owned())),
        },
        // A symmetric key in a verification JWKS would let anyone who can read the JWKS
        // forge tokens: refused outright rather than filtered per token.
        _ => {
            return Err(TxnConfigError::NotAPublicKey(kid.to_owned()));
        }
    };
    let mut algorithms = admitted.to_vec();
    if let Some(declared) = jwk.common.key_algorithm {
        let declared = Algorithm::try_from(declared)
            .map_err(|_| TxnConfigError::Algorithm(declared.to_string()))?;
        algorithms.retain(|a| *a == declared);
    }
    let decoding = DecodingKey::from_jwk(jwk).map_err(|source| TxnConfigError::Key {
        kid: kid.to_owned(),
        source,
    })?;
    Ok(Key {
        decoding,
        algorithms,
    })
}

/// `iat` (if present) and `exp` (required) of `claims`, checked against `now` with `leeway`
/// seconds: `exp` not passed, `iat` and `nbf` (if present) not in the future.
pub(crate) fn validity(
    claims: &Map<String, Value>,
    now: i64,
    leeway: i64,
) -> Result<(Option<i64>, i64), TxnRejection> {
    let exp = numeric(claims, "exp")?.ok_or(TxnRejection::MissingClaim("exp"))?;
    let iat = numeric(claims, "iat")?;
    if now >= exp.saturating_add(leeway) {
        return Err(TxnRejection::Expired);
    }
    for future in [iat, numeric(claims, "nbf")?].into_iter().flatten() {
        if future > now.saturating_add(leeway) {
            return Err(TxnRejection::NotYetValid);
        }
    }
    Ok((iat, exp))
}

/// Whole seconds of `duration`, saturating: leeways beyond i64 seconds make no sense.
pub(crate) fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Whether `typ` is the Transaction Token media type: compared case-insensitively, with or
/// without the `application/` prefix (RFC 7515 §4.1.9, RFC 8725 §3.11).
pub(super) fn is_txn_typ(typ: &str) -> bool {
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case(TXN_TOKEN_TYP)
}

/// Why a header jsonwebtoken could not parse is refused: an `alg` it does not know, such as
/// `none`, is a disallowed algorithm; anything else is malformed.
fn unparsed_header(token: &str) -> TxnRejection {
    #[derive(serde::Deserialize)]
    struct Alg {
        alg: String,
    }
    let segment = token.split('.').next().unwrap_or_default();
    let alg = URL_SAFE_NO_PAD
        .decode(segment)
        .ok()
        .and_then(|json| serde_json::from_slice::<Alg>(&json).ok());
    match alg {
        Some(Alg { alg }) if alg.parse::<Algorithm>().is_err() => TxnRejection::DisallowedAlgorithm,
        _ => TxnRejection::Malformed,
    }
}

pub(crate) fn unix(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// A NumericDate claim, in whole seconds (a fractional date is truncated).
fn numeric(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, TxnRejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            // `as` on a finite f64 saturates; the finite check keeps NaN out.
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(TxnRejection::InvalidClaim(name)),
        Some(_) => Err(TxnRejection::InvalidClaim(name)),
    }
}

pub(crate) fn string(
    claims: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<Arc<str>>, TxnRejection> {
    match claims.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(Arc::from(s))),
        Some(_) => Err(TxnRejection::InvalidClaim(name)),
    }
}

pub(super) fn object(
    claims: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<Value>, TxnRejection> {
    match claims.remove(name) {
        None => Ok(None),
        Some(value @ Value::Object(_)) => Ok(Some(value)),
        Some(_) => Err(TxnRejection::InvalidClaim(name)),
    }
}
