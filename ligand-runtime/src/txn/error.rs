//! Why a Transaction Token was refused, and why a verifier could not be built.

/// Why a `Txn-Token` header was refused. Every variant denies the request.
///
/// The variant goes to the logs; the caller sees only the stable code of its class
/// ([`code`](Self::code)) and a fixed message, so a refusal does not teach a forger which
/// check it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxnRejection {
    /// The service requires a Transaction Token and the request carried none.
    #[error("transaction token required but absent")]
    Missing,
    /// The header is not a compact JWS: not visible ASCII, too long, repeated, not three
    /// base64url segments, or a header or payload that is not a JSON object.
    #[error("transaction token malformed")]
    Malformed,
    /// The JOSE `typ` is not `txntoken+jwt` (a JWT-SVID, a WIT or an access token presented as
    /// a Transaction Token).
    #[error("token type is not txntoken+jwt")]
    WrongType,
    /// The algorithm is `none`, symmetric (HMAC), or not on the allow-list.
    #[error("token algorithm not allowed")]
    DisallowedAlgorithm,
    /// The header names no key, or a key the configured JWKS does not hold.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The key named by `kid` is not a key for the token's algorithm.
    #[error("token algorithm does not match its key")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `iat` or `nbf` lies in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` is not this service's trust domain.
    #[error("token audience is not this trust domain")]
    WrongAudience,
    /// `iss` is absent or not on the configured issuer allow-list.
    #[error("token issuer not trusted")]
    UntrustedIssuer,
    /// A required claim is absent.
    #[error("token lacks required claim `{0}`")]
    MissingClaim(&'static str),
    /// A claim has the wrong type (a string where a number belongs, say).
    #[error("token claim `{0}` has the wrong type")]
    InvalidClaim(&'static str),
}

impl TxnRejection {
    /// The stable machine-readable code sent as `error_code`: `TXN_TOKEN_MISSING`,
    /// `TXN_TOKEN_MALFORMED`, or `TXN_TOKEN_INVALID` for every other check.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "TXN_TOKEN_MISSING",
            Self::Malformed => "TXN_TOKEN_MALFORMED",
            _ => "TXN_TOKEN_INVALID",
        }
    }

    /// The HTTP status: 400 for a malformed header, 401 otherwise (the caller's credential
    /// for the transaction is absent or not acceptable, RFC 6750 `invalid_token`).
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Malformed => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The fixed public message of [`code`](Self::code).
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::Missing => "transaction token required",
            Self::Malformed => "transaction token malformed",
            _ => "transaction token rejected",
        }
    }
}

/// Why a [`TxnVerifier`](crate::TxnVerifier) or [`TxnMinter`](crate::TxnMinter) could not
/// be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxnConfigError {
    /// The JWKS could not be read.
    #[error("JWKS file {path} could not be read")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS is not a JSON Web Key Set.
    #[error("JWKS is not a JSON Web Key Set")]
    Jwks(#[source] serde_json::Error),
    /// A key of the JWKS has no `kid`; keys are chosen by `kid` only.
    #[error("JWKS key without kid")]
    KeyWithoutKid,
    /// A key of the JWKS is symmetric (`kty: oct`) or of an unknown type: only public keys
    /// verify, so a shared secret can never stand in for one.
    #[error("JWKS key `{0}` is not an asymmetric public key")]
    NotAPublicKey(String),
    /// A key of the JWKS is published for another use than signatures (`use` not `sig`).
    #[error("JWKS key `{0}` is not a signing key")]
    NotASigningKey(String),
    /// Two keys of the JWKS share a `kid`.
    #[error("JWKS holds two keys with kid `{0}`")]
    DuplicateKid(String),
    /// A key could not be used.
    #[error("JWKS key `{kid}` is unusable")]
    Key {
        /// The key's `kid`.
        kid: String,
        /// Why.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The JWKS holds no key.
    #[error("JWKS holds no key")]
    NoKeys,
    /// An algorithm is not an asymmetric JWS algorithm this verifier supports.
    #[error("algorithm `{0}` not allowed (asymmetric algorithms only)")]
    Algorithm(String),
    /// The audience (the trust domain) is empty.
    #[error("audience is empty")]
    NoAudience,
}
