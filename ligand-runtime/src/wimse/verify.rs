//! The inbound verifier: the WIT, then the WPT it binds, then the replay cache.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use spiffe::SpiffeId;

use super::replay::{InMemoryReplayCache, Recorded, ReplayCache, ReplayCacheError, ReplayKey};
use super::{
    Clock, DEFAULT_MAX_WPT_LIFETIME, DEFAULT_WIMSE_LEEWAY, MAX_WPT_LIFETIME, SystemClock,
    TokenHash, WIT_HEADER, WIT_TYP, WPT_HEADER, WPT_TYP, WimseConfigError, WimseRejection,
    access_token, normalized_authority,
};
use crate::outbound::TXN_TOKEN_HEADER;
use crate::txn::{ASYMMETRIC, KeySet, TxnRejection, seconds, string, unix, validity};

/// The longest WIT or WPT header value accepted; anything longer is refused unread.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The longest `jti` accepted.
const MAX_JTI_LEN: usize = 256;
/// JWK members that only a private or symmetric key has: never acceptable in `cnf.jwk`.
const PRIVATE_JWK_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// How a service verifies inbound WIT/WPT pairs: the keys of the trusted WIT issuers (a JWKS,
/// such as the identity agent's `/keys`), optionally the issuers (`iss`) accepted, whether
/// the pair is required, the clock leeway, the longest WPT lifetime, the replay cache and
/// the clock. File config: the `[wimse]` section.
#[derive(Clone)]
pub struct WimseConfig {
    keys: JwkSet,
    issuers: Vec<String>,
    require: bool,
    leeway: Duration,
    max_wpt_lifetime: Duration,
    algorithms: Vec<Algorithm>,
    replay: Option<Arc<dyn ReplayCache>>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for WimseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WimseConfig")
            .field("kids", &crate::txn::kids(&self.keys))
            .field("issuers", &self.issuers)
            .field("require", &self.require)
            .field("leeway", &self.leeway)
            .field("max_wpt_lifetime", &self.max_wpt_lifetime)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl WimseConfig {
    /// Verifies WITs signed by the keys of `jwks`. The pair is optional, any issuer signing
    /// with these keys is accepted, the leeway is [`DEFAULT_WIMSE_LEEWAY`], WPTs may live
    /// [`DEFAULT_MAX_WPT_LIFETIME`], and replays are caught by an
    /// [`InMemoryReplayCache`] of default capacity.
    pub fn new(jwks: JwkSet) -> Self {
        Self {
            keys: jwks,
            issuers: Vec::new(),
            require: false,
            leeway: DEFAULT_WIMSE_LEEWAY,
            max_wpt_lifetime: DEFAULT_MAX_WPT_LIFETIME,
            algorithms: ASYMMETRIC.to_vec(),
            replay: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// Verifies WITs signed by the keys of the JSON Web Key Set `json`.
    pub fn from_jwks_json(json: &[u8]) -> Result<Self, WimseConfigError> {
        crate::txn::parse_jwks(json)
            .map(Self::new)
            .map_err(WimseConfigError::Keys)
    }

    /// Verifies WITs signed by the keys of the JWKS file at `path`.
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, WimseConfigError> {
        crate::txn::read_jwks(path.as_ref())
            .map(Self::new)
            .map_err(WimseConfigError::Keys)
    }

    /// Accepts only WITs whose `iss` is one of `issuers` (then `iss` is required).
    pub fn issuers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.issuers = issuers.into_iter().map(Into::into).collect();
        self
    }

    /// Whether a request without a WIT and a WPT is refused (`WIMSE_MISSING`). Default:
    /// `false`, such a request is admitted on its mTLS identity alone; a request that carries
    /// either header is always verified.
    pub fn require(mut self, require: bool) -> Self {
        self.require = require;
        self
    }

    /// How far `exp`, `iat` and `nbf` may be off against this host's clock.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The longest WPT lifetime accepted: a WPT whose `exp` lies further ahead (beyond the
    /// leeway) is refused. Between 1 s and [`MAX_WPT_LIFETIME`].
    pub fn max_wpt_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_wpt_lifetime = lifetime;
        self
    }

    /// The replay cache, instead of a private [`InMemoryReplayCache`] of default capacity.
    pub fn replay_cache(mut self, cache: Arc<dyn ReplayCache>) -> Self {
        self.replay = Some(cache);
        self
    }

    /// The clock expiry is judged by (tests inject one; the default is the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// What a verified WIT/WPT pair established.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedWorkload {
    /// The WIT's `sub`: the calling workload (the mTLS peer).
    pub subject: SpiffeId,
    /// The WIT's `iss`, if it names one.
    pub issuer: Option<Arc<str>>,
}

/// Verifies the `Workload-Identity-Token` and `Workload-Proof-Token` of inbound requests.
///
/// Cheap to share. Checks, in order, refusing at the first failure:
///
/// 1. Both headers absent: admitted without WIMSE when not required, else `WIMSE_MISSING`.
///    One without the other is refused. Each header must occur once, as visible ASCII.
/// 2. The WIT: at most 8 KiB, three segments, no `crit`; `typ` `wit+jwt`; `alg` asymmetric
///    and on the allow-list; `kid` names a trusted issuer key of that algorithm; the
///    signature; `exp` required and not passed, `iat`/`nbf` not in the future; `iss` on the
///    allow-list when one is set; `sub` a SPIFFE ID equal to the mTLS peer's; `cnf.jwk` a
///    public EC, RSA or OKP key.
/// 3. The WPT: the same shape checks; `typ` `wpt+jwt`; `alg` one the `cnf.jwk` key admits;
///    the signature by that key; `exp` required, not passed, and at most the maximum proof
///    lifetime ahead; `aud` this request's target URI (below); `jti` a non-empty string of at
///    most 256 bytes; `wth` the hash of the WIT; `tth` the hash of the `Txn-Token` when one is
///    present (and absent otherwise); `ath` the hash of the `Authorization` token when one is
///    present (and absent otherwise); each `oth` entry the hash of the header it names.
/// 4. The replay cache records (`sub`, `jti`) until the WPT expires; a second sight is a
///    replay, and a cache that cannot record refuses the request.
///
/// The target URI is compared as `https://` + authority + path: the authority is the
/// request's `:authority` (HTTP/2) or `Host` (HTTP/1.1), ASCII-lowercased on both sides and
/// without the default port `:443`; the path is compared byte for byte, as sent, without
/// query or fragment (draft-ietf-wimse-s2s-protocol). A proxy that rewrites `Host` or the
/// path between the caller and this service makes every WPT fail.
#[derive(Clone)]
pub struct WimseVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeySet,
    issuers: Vec<String>,
    require: bool,
    leeway: i64,
    max_wpt_lifetime: i64,
    algorithms: Vec<Algorithm>,
    replay: Arc<dyn ReplayCache>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for WimseVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WimseVerifier")
            .field("kids", &self.inner.keys.kids())
            .field("issuers", &self.inner.issuers)
            .field("require", &self.inner.require)
            .field("leeway", &self.inner.leeway)
            .field("max_wpt_lifetime", &self.inner.max_wpt_lifetime)
            .field("replay", &self.inner.replay)
            .finish_non_exhaustive()
    }
}

/// A `cnf.jwk` key and the algorithms it admits.
struct ProofKey {
    decoding: DecodingKey,
    algorithms: &'static [Algorithm],
}

impl WimseVerifier {
    /// A verifier of `config`. Refuses a JWKS with a symmetric key, a key without `kid`, or
    /// no key at all, and a maximum proof lifetime out of range.
    pub fn new(config: &WimseConfig) -> Result<Self, WimseConfigError> {
        if config.max_wpt_lifetime.is_zero() || config.max_wpt_lifetime > MAX_WPT_LIFETIME {
            return Err(WimseConfigError::Lifetime);
        }
        let keys = KeySet::new(&config.keys, &config.algorithms).map_err(WimseConfigError::Keys)?;
        let replay = config
            .replay
            .clone()
            .unwrap_or_else(|| Arc::new(InMemoryReplayCache::default()));
        Ok(Self {
            inner: Arc::new(Inner {
                keys,
                issuers: config.issuers.clone(),
                require: config.require,
                leeway: seconds(config.leeway),
                max_wpt_lifetime: seconds(config.max_wpt_lifetime),
                algorithms: config.algorithms.clone(),
                replay,
                clock: config.clock.clone(),
            }),
        })
    }

    /// Starts the replay cache (a shared store connects here); `init` calls it once.
    pub async fn start(&self) -> Result<(), ReplayCacheError> {
        self.inner.replay.start().await
    }

    /// Whether a request without the pair is refused.
    pub fn required(&self) -> bool {
        self.inner.require
    }

    /// Verifies the pair in `headers` of a request for `uri` from the mTLS peer `peer`.
    /// `Ok(None)`: neither header is present and none is required.
    pub async fn verify(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        peer: &SpiffeId,
    ) -> Result<Option<VerifiedWorkload>, WimseRejection> {
        const WIT: HeaderName = HeaderName::from_static(WIT_HEADER);
        const WPT: HeaderName = HeaderName::from_static(WPT_HEADER);
        let (wit, wpt) = match (single(headers, &WIT)?, single(headers, &WPT)?) {
            (None, None) if !self.inner.require => return Ok(None),
            (Some(wit), Some(wpt)) => (wit, wpt),
            _ => return Err(WimseRejection::Missing),
        };
        let now = self.inner.clock.now();
        let (workload, sub, key) = self.wit(wit, peer, now)?;
        let target = target_uri(headers, uri).ok_or(WimseRejection::WrongAudience)?;
        let (jti, exp) = self.wpt(wpt, wit, &key, &target, headers, now)?;
        let key = ReplayKey::new(&sub, &jti);
        let expires_at = UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(exp.saturating_add(self.inner.leeway)).unwrap_or(0),
            );
        match self.inner.replay.record(key, expires_at, now).await {
            Ok(Recorded::Fresh) => Ok(Some(workload)),
            Ok(Recorded::Replay) => Err(WimseRejection::Replayed),
            Err(error) => {
                if matches!(error, ReplayCacheError::Full) {
                    tracing::warn!("WPT replay cache full: refusing proofs until entries expire");
                } else {
                    tracing::warn!(%error, "WPT replay cache failed");
                }
                Err(WimseRejection::ReplayCacheUnavailable)
            }
        }
    }

    /// The verified WIT `value`, its `sub` as sent (equal to the peer's SPIFFE ID) and the
    /// key it binds.
    fn wit(
        &self,
        value: &HeaderValue,
        peer: &SpiffeId,
        now: SystemTime,
    ) -> Result<(VerifiedWorkload, Arc<str>, ProofKey), WimseRejection> {
        let token = value.to_str().map_err(|_| WimseRejection::Malformed)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(WimseRejection::Malformed);
        }
        let mut claims = self
            .inner
            .keys
            .signed_claims(token, |typ| typ.is_some_and(|t| is_typ(t, WIT_TYP)))
            .map_err(|rejection| match rejection {
                TxnRejection::WrongType => WimseRejection::WrongWitType,
                TxnRejection::DisallowedAlgorithm | TxnRejection::KeyMismatch => {
                    WimseRejection::DisallowedAlgorithm
                }
                TxnRejection::UnknownKey => WimseRejection::UntrustedIssuer,
                TxnRejection::BadSignature => WimseRejection::BadWitSignature,
                _ => WimseRejection::Malformed,
            })?;
        validity(&claims, unix(now), self.inner.leeway).map_err(|r| match r {
            TxnRejection::Expired => WimseRejection::WitExpired,
            other => claim_rejection(other),
        })?;
        let issuer = string(&mut claims, "iss").map_err(claim_rejection)?;
        if !self.inner.issuers.is_empty()
            && !issuer
                .as_deref()
                .is_some_and(|iss| self.inner.issuers.iter().any(|allowed| **allowed == *iss))
        {
            return Err(WimseRejection::UntrustedIssuer);
        }
        let sub = string(&mut claims, "sub")
            .map_err(claim_rejection)?
            .ok_or(WimseRejection::MissingClaim("sub"))?;
        let subject = SpiffeId::new(&sub).map_err(|_| WimseRejection::BadSubject)?;
        if subject != *peer {
            return Err(WimseRejection::PeerMismatch);
        }
        let key = proof_key(claims.remove("cnf"), &self.inner.algorithms)?;
        Ok((VerifiedWorkload { subject, issuer }, sub, key))
    }

    /// The `jti` and `exp` of the verified WPT `value`, bound to `wit`, for `target`.
    fn wpt(
        &self,
        value: &HeaderValue,
        wit: &HeaderValue,
        key: &ProofKey,
        target: &str,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<(Arc<str>, i64), WimseRejection> {
        let token = value.to_str().map_err(|_| WimseRejection::Malformed)?;
        if token.len() > MAX_TOKEN_LEN || token.split('.').count() != 3 {
            return Err(WimseRejection::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| unparsed_header(token))?;
        if header.crit.is_some() {
            return Err(WimseRejection::Malformed);
        }
        if !header.typ.as_deref().is_some_and(|t| is_typ(t, WPT_TYP)) {
            return Err(WimseRejection::WrongWptType);
        }
        if !key.algorithms.contains(&header.alg) || !self.inner.algorithms.contains(&header.alg) {
            return Err(WimseRejection::DisallowedAlgorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.leeway = 0;
        validation.required_spec_claims.clear();
        let mut claims =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
                .map_err(|error| match error.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        WimseRejection::BadWptSignature
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                        WimseRejection::DisallowedAlgorithm
                    }
                    _ => WimseRejection::Malformed,
                })?
                .claims;
        let now = unix(now);
        let (_, exp) = validity(&claims, now, self.inner.leeway).map_err(|r| match r {
            TxnRejection::Expired => WimseRejection::WptExpired,
            other => claim_rejection(other),
        })?;
        if exp
            > now
                .saturating_add(self.inner.max_wpt_lifetime)
                .saturating_add(self.inner.leeway)
        {
            return Err(WimseRejection::WptLifetimeTooLong);
        }
        let audience_matches = match claims.get("aud") {
            None => return Err(WimseRejection::MissingClaim("aud")),
            Some(Value::String(aud)) => aud == target,
            Some(Value::Array(list)) => {
                matches!(list.as_slice(), [Value::String(aud)] if aud == target)
            }
            Some(_) => return Err(WimseRejection::InvalidClaim("aud")),
        };
        if !audience_matches {
            return Err(WimseRejection::WrongAudience);
        }
        let jti = string(&mut claims, "jti")
            .map_err(claim_rejection)?
            .ok_or(WimseRejection::MissingClaim("jti"))?;
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(WimseRejection::InvalidClaim("jti"));
        }
        let wth = string(&mut claims, "wth")
            .map_err(claim_rejection)?
            .ok_or(WimseRejection::MissingClaim("wth"))?;
        if *wth != *TokenHash::of(wit.as_bytes()).as_str() {
            return Err(WimseRejection::WitHashMismatch);
        }
        const TXN: HeaderName = HeaderName::from_static(TXN_TOKEN_HEADER);
        bound(
            &mut claims,
            "tth",
            single(headers, &TXN)?.map(HeaderValue::as_bytes),
            WimseRejection::TxnTokenHashMismatch,
        )?;
        bound(
            &mut claims,
            "ath",
            single(headers, &http::header::AUTHORIZATION)?.map(|v| access_token(v.as_bytes())),
            WimseRejection::AccessTokenHashMismatch,
        )?;
        match claims.get("oth") {
            None => {}
            Some(Value::Object(others)) => {
                for (name, hash) in others {
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| WimseRejection::OtherTokenHashMismatch)?;
                    let value =
                        single(headers, &name)?.ok_or(WimseRejection::OtherTokenHashMismatch)?;
                    if hash.as_str() != Some(TokenHash::of(value.as_bytes()).as_str()) {
                        return Err(WimseRejection::OtherTokenHashMismatch);
                    }
                }
            }
            Some(_) => return Err(WimseRejection::InvalidClaim("oth")),
        }
        Ok((jti, exp))
    }
}

/// The one value of `name` in `headers`: none, or refused when repeated.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, WimseRejection> {
    let mut values = headers.get_all(name).into_iter();
    match (values.next(), values.next()) {
        (value, None) => Ok(value),
        (Some(_), Some(_)) | (None, Some(_)) => Err(WimseRejection::Malformed),
    }
}

/// Checks the hash claim `name` against `token`: required and equal when the token is
/// present, absent when it is not.
fn bound(
    claims: &mut Map<String, Value>,
    name: &'static str,
    token: Option<&[u8]>,
    mismatch: WimseRejection,
) -> Result<(), WimseRejection> {
    let claim = string(claims, name).map_err(claim_rejection)?;
    match (token, claim) {
        (None, None) => Ok(()),
        (Some(token), Some(claim)) if *claim == *TokenHash::of(token).as_str() => Ok(()),
        _ => Err(mismatch),
    }
}

/// The target URI of the request as this service sees it; `None` without an authority.
fn target_uri(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let authority = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let authority = normalized_authority(authority);
    let path = uri.path();
    let mut target = String::with_capacity(8 + authority.len() + path.len());
    target.push_str("https://");
    target.push_str(&authority);
    target.push_str(path);
    Some(target)
}

/// Whether `typ` is the media type `expected`: compared case-insensitively, with or without
/// the `application/` prefix (RFC 7515 §4.1.9, RFC 8725 §3.11).
fn is_typ(typ: &str, expected: &str) -> bool {
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case(expected)
}

fn claim_rejection(rejection: TxnRejection) -> WimseRejection {
    match rejection {
        TxnRejection::NotYetValid => WimseRejection::NotYetValid,
        TxnRejection::MissingClaim(name) => WimseRejection::MissingClaim(name),
        TxnRejection::InvalidClaim(name) => WimseRejection::InvalidClaim(name),
        _ => WimseRejection::Malformed,
    }
}

/// The public key of a WIT's `cnf` claim (`{"jwk": {…}}`) and the algorithms it admits
/// within `allowed`.
fn proof_key(cnf: Option<Value>, allowed: &[Algorithm]) -> Result<ProofKey, WimseRejection> {
    let jwk = match cnf {
        Some(Value::Object(mut cnf)) => cnf
            .remove("jwk")
            .ok_or(WimseRejection::BadConfirmationKey)?,
        None => return Err(WimseRejection::MissingClaim("cnf")),
        Some(_) => return Err(WimseRejection::BadConfirmationKey),
    };
    let Value::Object(members) = &jwk else {
        return Err(WimseRejection::BadConfirmationKey);
    };
    if PRIVATE_JWK_MEMBERS.iter().any(|m| members.contains_key(*m)) {
        return Err(WimseRejection::BadConfirmationKey);
    }
    let jwk: Jwk = serde_json::from_value(jwk).map_err(|_| WimseRejection::BadConfirmationKey)?;
    let algorithms: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err(WimseRejection::BadConfirmationKey),
        },
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        _ => return Err(WimseRejection::BadConfirmationKey),
    };
    if !algorithms.iter().any(|a| allowed.contains(a)) {
        return Err(WimseRejection::DisallowedAlgorithm);
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|_| WimseRejection::BadConfirmationKey)?;
    Ok(ProofKey {
        decoding,
        algorithms,
    })
}

/// Why a header jsonwebtoken could not parse is refused: an `alg` it does not know, such as
/// `none`, is a disallowed algorithm; anything else is malformed.
fn unparsed_header(token: &str) -> WimseRejection {
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
        Some(Alg { alg }) if alg.parse::<Algorithm>().is_err() => {
            WimseRejection::DisallowedAlgorithm
        }
        _ => WimseRejection::Malformed,
    }
}
