//! Why a WIT/WPT pair was refused, and why a verifier could not be built.

/// Why the `Workload-Identity-Token` / `Workload-Proof-Token` pair of a request was refused.
/// Every variant denies the request.
///
/// The variant goes to the logs; the caller sees only the stable code of its class
/// ([`code`](Self::code)) and a fixed message, so a refusal does not teach a forger which
/// check it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WimseRejection {
    /// The service requires a WIT and a WPT and the request lacks one or both.
    #[error("workload identity or proof token required but absent")]
    Missing,
    /// A header is not a compact JWS: not visible ASCII, too long, repeated, not three
    /// base64url segments, or a header or payload that is not a JSON object.
    #[error("workload token malformed")]
    Malformed,
    /// The WIT's JOSE `typ` is not `wit+jwt` (a JWT-SVID, a Transaction Token or a WPT
    /// presented as a WIT).
    #[error("identity token type is not wit+jwt")]
    WrongWitType,
    /// The WPT's JOSE `typ` is not `wpt+jwt` (a WIT or another token presented as a WPT).
    #[error("proof token type is not wpt+jwt")]
    WrongWptType,
    /// An algorithm is `none`, symmetric (HMAC), not on the allow-list, or does not fit the key.
    #[error("token algorithm not allowed")]
    DisallowedAlgorithm,
    /// The WIT names no key, or a key of no trusted issuer.
    #[error("identity token signed by an untrusted key")]
    UntrustedIssuer,
    /// The WIT's signature does not verify.
    #[error("identity token signature does not verify")]
    BadWitSignature,
    /// The WPT's signature does not verify with the WIT's `cnf.jwk`.
    #[error("proof token not signed by the key the identity token binds")]
    BadWptSignature,
    /// The WIT's `exp` has passed (beyond the leeway).
    #[error("identity token expired")]
    WitExpired,
    /// The WPT's `exp` has passed (beyond the leeway).
    #[error("proof token expired")]
    WptExpired,
    /// The WPT's `exp` lies further ahead than the maximum proof lifetime allows.
    #[error("proof token lifetime too long")]
    WptLifetimeTooLong,
    /// `iat` or `nbf` lies in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The WIT's `sub` is not a SPIFFE ID.
    #[error("identity token subject is not a SPIFFE ID")]
    BadSubject,
    /// The WIT's `sub` is not the SPIFFE ID the mTLS peer presented.
    #[error("identity token subject is not the mTLS peer")]
    PeerMismatch,
    /// The WIT's `cnf.jwk` is absent, not a public key, or of an unsupported type.
    #[error("identity token binds no usable public key")]
    BadConfirmationKey,
    /// The WPT's `aud` is not this request's target URI.
    #[error("proof token audience is not this request")]
    WrongAudience,
    /// The WPT's `wth` is not the hash of the WIT it came with.
    #[error("proof token is bound to another identity token")]
    WitHashMismatch,
    /// The WPT's `tth` is absent while a `Txn-Token` is present, or does not match it (or is
    /// present without a Transaction Token).
    #[error("proof token does not bind the transaction token")]
    TxnTokenHashMismatch,
    /// The WPT's `ath` is absent while an `Authorization` header is present, or does not match.
    #[error("proof token does not bind the access token")]
    AccessTokenHashMismatch,
    /// The WPT's `oth` names a header the request lacks, or whose hash differs.
    #[error("proof token does not bind the other tokens it names")]
    OtherTokenHashMismatch,
    /// The WPT's `jti` was seen before, within its lifetime.
    #[error("proof token replayed")]
    Replayed,
    /// The replay cache could not record the WPT's `jti` (full, or its backend failed): the
    /// proof cannot be shown to be fresh, so it is refused.
    #[error("proof token replay state unavailable")]
    ReplayCacheUnavailable,
    /// A required claim is absent.
    #[error("token lacks required claim `{0}`")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or an unacceptable value.
    #[error("token claim `{0}` is invalid")]
    InvalidClaim(&'static str),
}

impl WimseRejection {
    /// The stable machine-readable code sent as `error_code`: `WIMSE_MISSING`,
    /// `WIMSE_MALFORMED`, `WIMSE_UNAVAILABLE` (replay state could not be kept), or
    /// `WIMSE_INVALID` for every other check.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "WIMSE_MISSING",
            Self::Malformed => "WIMSE_MALFORMED",
            Self::ReplayCacheUnavailable => "WIMSE_UNAVAILABLE",
            _ => "WIMSE_INVALID",
        }
    }

    /// The HTTP status: 400 for a malformed header, 503 when replay state cannot be kept,
    /// 401 otherwise.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Malformed => http::StatusCode::BAD_REQUEST,
            Self::ReplayCacheUnavailable => http::StatusCode::SERVICE_UNAVAILABLE,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// The fixed public message of [`code`](Self::code).
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::Missing => "workload identity and proof tokens required",
            Self::Malformed => "workload identity or proof token malformed",
            Self::ReplayCacheUnavailable => "workload proof cannot be checked for replay",
            _ => "workload identity or proof token rejected",
        }
    }
}

/// Why a [`WimseVerifier`](crate::WimseVerifier) could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WimseConfigError {
    /// The trusted issuers' JWKS was refused (unreadable, not a JWKS, a symmetric key, …).
    #[error("trusted WIT issuer keys: {0}")]
    Keys(#[source] crate::txn::TxnConfigError),
    /// The maximum proof lifetime is zero or longer than [`MAX_WPT_LIFETIME`](crate::wimse::MAX_WPT_LIFETIME).
    #[error("max_wpt_lifetime must be between 1 s and 5 min")]
    Lifetime,
}
