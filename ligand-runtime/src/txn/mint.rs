//! The inline Context Service: exchanges an external OAuth/OIDC access token (a JWT from the
//! identity provider) for a Transaction Token, at the edge of the trust domain.
//!
//! The Transaction Token is signed with a key of its own, never the SVID key: a Transaction
//! Token Service key verifies in every service of the trust domain, and the SVID key of the
//! edge workload must not be able to speak for the whole domain.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use super::verify::{ASYMMETRIC, KeySet, object, seconds, string, unix, validity};
use super::{DEFAULT_TXN_LEEWAY, TXN_TOKEN_TYP, TxnConfigError, TxnRejection};

/// How long a minted Transaction Token lives, by default (draft-08 §4: short-lived, the
/// span of one call tree).
pub const DEFAULT_TXN_LIFETIME: Duration = Duration::from_secs(300);

/// How subject tokens (the identity provider's access tokens) are validated before an
/// exchange: the provider's JWKS, the issuers accepted (required), the audience the access
/// token must name (this API), the clock leeway and the algorithm allow-list.
#[derive(Clone)]
pub struct SubjectTokenConfig {
    keys: JwkSet,
    issuers: Vec<String>,
    audience: String,
    leeway: Duration,
    algorithms: Vec<Algorithm>,
}

impl fmt::Debug for SubjectTokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectTokenConfig")
            .field("keys", &self.keys.keys.len())
            .field("issuers", &self.issuers)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl SubjectTokenConfig {
    /// Access tokens signed by a key of `jwks`, issued by one of `issuers`, for `audience`.
    pub fn new<I, S>(jwks: JwkSet, issuers: I, audience: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            keys: jwks,
            issuers: issuers.into_iter().map(Into::into).collect(),
            audience: audience.into(),
            leeway: DEFAULT_TXN_LEEWAY,
            algorithms: ASYMMETRIC.to_vec(),
        }
    }

    /// The same, with the JWKS from its JSON document.
    pub fn from_jwks_json<I, S>(
        json: &[u8],
        issuers: I,
        audience: impl Into<String>,
    ) -> Result<Self, TxnConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let jwks = serde_json::from_slice(json).map_err(TxnConfigError::Jwks)?;
        Ok(Self::new(jwks, issuers, audience))
    }

    /// How far `exp`, `iat` and `nbf` may be off against this host's clock.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }
}

/// What the edge asks for besides the subject token: the scope to narrow to, and the
/// transaction and requester contexts.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TxnMintRequest {
    /// The scope of the transaction (space-separated), each a scope the subject token grants;
    /// `None`: the subject token's whole scope.
    pub scope: Option<String>,
    /// The transaction context (`tctx`), a JSON object.
    pub tctx: Option<Map<String, Value>>,
    /// The requester context (`rctx`), a JSON object (the external caller's IP, say).
    pub rctx: Option<Map<String, Value>>,
}

impl TxnMintRequest {
    /// A request with the subject token's scope and no contexts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Narrows the scope to `scope`.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The transaction context.
    pub fn tctx(mut self, tctx: Map<String, Value>) -> Self {
        self.tctx = Some(tctx);
        self
    }

    /// The requester context.
    pub fn rctx(mut self, rctx: Map<String, Value>) -> Self {
        self.rctx = Some(rctx);
        self
    }
}

/// A minted Transaction Token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MintedTxnToken {
    /// The compact JWS, for the `Txn-Token` header.
    pub token: String,
    /// Its `txn`.
    pub txn: String,
    /// Its `exp`.
    pub expires_at: SystemTime,
    /// Its claims, as a verifier of the token would read them.
    pub claims: super::TxnClaims,
}

/// Why no Transaction Token was minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The subject token was refused, for this reason (`WrongAudience`,
    /// `UntrustedIssuer`, `Expired`, ... as for a Transaction Token).
    #[error("subject token refused: {0}")]
    SubjectToken(TxnRejection),
    /// A requested scope is not granted by the subject token.
    #[error("requested scope `{0}` is not granted by the subject token")]
    ScopeNotGranted(String),
    /// Signing failed.
    #[error("signing the transaction token failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// Exchanges subject tokens for Transaction Tokens (draft-ietf-oauth-transaction-tokens-08
/// §5): validates the access token against the identity provider's keys, then signs
/// `{iat, exp, aud: <trust domain>, txn: <fresh UUID>, sub, scope, req_wl: <this workload>,
/// tctx, rctx}` with `typ: txntoken+jwt` under its own key.
pub struct TxnMinter {
    subject_keys: KeySet,
    subject: SubjectTokenConfig,
    signing: EncodingKey,
    algorithm: Algorithm,
    kid: String,
    trust_domain: String,
    requesting_workload: String,
    issuer: Option<String>,
    lifetime: Duration,
}

impl fmt::Debug for TxnMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxnMinter")
            .field("subject", &self.subject)
            .field("subject_kids", &self.subject_keys.kids())
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("trust_domain", &self.trust_domain)
            .field("requesting_workload", &self.requesting_workload)
            .field("issuer", &self.issuer)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl TxnMinter {
    /// A minter validating subject tokens with `subject`, signing with the PKCS#8 PEM key
    /// `signing_key_pem` for `algorithm` (an asymmetric one) under `kid`, for the trust
    /// domain `trust_domain` (the `aud` of its tokens), as the workload `requesting_workload`
    /// (its SPIFFE ID, the `req_wl` claim).
    pub fn new(
        subject: SubjectTokenConfig,
        signing_key_pem: &[u8],
        algorithm: &str,
        kid: impl Into<String>,
        trust_domain: impl Into<String>,
        requesting_workload: impl Into<String>,
    ) -> Result<Self, TxnConfigError> {
        let algorithm = algorithm
            .parse::<Algorithm>()
            .ok()
            .filter(|a| ASYMMETRIC.contains(a))
            .ok_or_else(|| TxnConfigError::Algorithm(algorithm.to_owned()))?;
        let kid = kid.into();
        let signing = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(signing_key_pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(signing_key_pem),
            _ => EncodingKey::from_rsa_pem(signing_key_pem),
        }
        .map_err(|source| TxnConfigError::Key {
            kid: kid.clone(),
            source,
        })?;
        let trust_domain = trust_domain.into();
        if trust_domain.is_empty() || subject.audience.is_empty() {
            return Err(TxnConfigError::NoAudience);
        }
        Ok(Self {
            subject_keys: KeySet::new(&subject.keys, &subject.algorithms)?,
            subject,
            signing,
            algorithm,
            kid,
            trust_domain,
            requesting_workload: requesting_workload.into(),
            issuer: None,
            lifetime: DEFAULT_TXN_LIFETIME,
        })
    }

    /// Writes `iss: issuer` into minted tokens (verifiers with an issuer allow-list need it).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// How long minted tokens live (never past the subject token's `exp`).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The public key of the signing key as a JWKS, for the verifiers' `[txn_token] jwks`.
    /// EC and RSA keys only (an Ed25519 key's public half is published by whoever made it).
    pub fn jwks(&self) -> Result<JwkSet, TxnConfigError> {
        let mut jwk = Jwk::from_encoding_key(&self.signing, self.algorithm).map_err(|source| {
            TxnConfigError::Key {
                kid: self.kid.clone(),
                source,
            }
        })?;
        jwk.common.key_id = Some(self.kid.clone());
        Ok(JwkSet { keys: vec![jwk] })
    }

    /// Whether `iss` is one of the identity providers whose subject tokens are accepted.
    pub(crate) fn accepts_issuer(&self, iss: &str) -> bool {
        self.subject.issuers.iter().any(|allowed| allowed == iss)
    }

    /// The trust domain: the `aud` of every minted token.
    pub(crate) fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Validates `subject_token` at `now` and mints a Transaction Token for `request`.
    pub fn mint(
        &self,
        subject_token: &str,
        request: &TxnMintRequest,
        now: SystemTime,
    ) -> Result<MintedTxnToken, MintError> {
        let subject = self.subject_claims(subject_token, now)?;
        let granted = subject.scope.as_deref().unwrap_or_default();
        let scope = match &request.scope {
            None => subject.scope.clone(),
            Some(asked) => {
                let granted: Vec<&str> = granted.split_ascii_whitespace().collect();
                if let Some(missing) = asked
                    .split_ascii_whitespace()
                    .find(|s| !granted.contains(s))
                {
                    return Err(MintError::ScopeNotGranted(missing.to_owned()));
                }
                Some(asked.clone())
            }
        };
        let iat = unix(now);
        let exp = iat.saturating_add(seconds(self.lifetime)).min(subject.exp);
        let txn = uuid::Uuid::new_v4().to_string();
        let mut claims = Map::new();
        if let Some(issuer) = &self.issuer {
            claims.insert("iss".into(), issuer.clone().into());
        }
        claims.insert("iat".into(), iat.into());
        claims.insert("exp".into(), exp.into());
        claims.insert("aud".into(), self.trust_domain.clone().into());
        claims.insert("txn".into(), txn.clone().into());
        claims.insert("sub".into(), subject.sub.into());
        if let Some(scope) = scope {
            claims.insert("scope".into(), scope.into());
        }
        claims.insert("req_wl".into(), self.requesting_workload.clone().into());
        if let Some(tctx) = &request.tctx {
            claims.insert("tctx".into(), Value::Object(tctx.clone()));
        }
        if let Some(rctx) = &request.rctx {
            claims.insert("rctx".into(), Value::Object(rctx.clone()));
        }
        let mut header = Header::new(self.algorithm);
        header.typ = Some(TXN_TOKEN_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.signing).map_err(MintError::Signing)?;
        let expires_at = UNIX_EPOCH + Duration::from_secs(u64::try_from(exp).unwrap_or_default());
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .map(Arc::<str>::from)
        };
        let verified = super::TxnClaims {
            txn: Arc::from(txn.as_str()),
            sub: text("sub").unwrap_or_default(),
            scope: text("scope"),
            req_wl: text("req_wl"),
            iss: text("iss"),
            iat,
            exp,
            tctx: claims.remove("tctx"),
            rctx: claims.remove("rctx"),
        };
        Ok(MintedTxnToken {
            token,
            txn,
            expires_at,
            claims: verified,
        })
    }

    /// The subject token's `sub`, `scope` and `exp`, once valid.
    fn subject_claims(&self, token: &str, now: SystemTime) -> Result<Subject, MintError> {
        let config = &self.subject;
        let reject = MintError::SubjectToken;
        let mut claims = self
            .subject_keys
            .signed_claims(token, is_access_token_typ)
            .map_err(reject)?;
        let (_, exp) = validity(&claims, unix(now), seconds(config.leeway)).map_err(reject)?;
        // RFC 9068 §4: `aud` names this resource server; a list may name others too.
        let audience_matches = match claims.get("aud") {
            None => return Err(reject(TxnRejection::MissingClaim("aud"))),
            Some(Value::String(aud)) => *aud == config.audience,
            Some(Value::Array(list)) => list
                .iter()
                .any(|aud| aud.as_str() == Some(config.audience.as_str())),
            Some(_) => return Err(reject(TxnRejection::InvalidClaim("aud"))),
        };
        if !audience_matches {
            return Err(reject(TxnRejection::WrongAudience));
        }
        let iss = string(&mut claims, "iss").map_err(reject)?;
        if !iss
            .as_deref()
            .is_some_and(|iss| config.issuers.iter().any(|allowed| **allowed == *iss))
        {
            return Err(reject(TxnRejection::UntrustedIssuer));
        }
        let sub = string(&mut claims, "sub")
            .map_err(reject)?
            .filter(|s| !s.is_empty())
            .ok_or(reject(TxnRejection::MissingClaim("sub")))?;
        let scope = string(&mut claims, "scope").map_err(reject)?;
        // Validated for type only: an access token's own contexts are not carried over.
        object(&mut claims, "tctx").map_err(reject)?;
        Ok(Subject {
            sub: sub.to_string(),
            scope: scope.map(|s| s.to_string()),
            exp,
        })
    }
}

struct Subject {
    sub: String,
    scope: Option<String>,
    exp: i64,
}

/// An access token's `typ`: absent, `JWT`, or `at+jwt` (RFC 9068), compared as media types.
/// A Transaction Token, a WIT or anything else is not an access token.
fn is_access_token_typ(typ: Option<&str>) -> bool {
    let Some(typ) = typ else {
        return true;
    };
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case("JWT") || typ.eq_ignore_ascii_case("at+jwt")
}
