//! WIMSE workload-to-workload authentication (draft-ietf-wimse-s2s-protocol): the Workload
//! Identity Token (WIT) and the Workload Proof Token (WPT) that travel with each call, next to
//! the mTLS peer identity.
//!
//! A WIT (`typ: wit+jwt`) is issued to a workload by its identity source and binds the
//! workload's SPIFFE ID (`sub`) to a public key (`cnf.jwk`). A WPT (`typ: wpt+jwt`) is signed
//! by the workload with the matching private key for one request: its `aud` is the request's
//! target URI, its `exp` a few seconds ahead, its `jti` unique, its `wth` the hash of the WIT,
//! and `tth` / `ath` / `oth` hash the Transaction Token, the access token and other tokens
//! the request carries. Together they prove, at the application layer, that the request was
//! made by the holder of the key the identity source bound to that SPIFFE ID.
//!
//! **Outbound.** When the identity source issues WITs (its
//! [`fetch_wit`](crate::WorkloadIdentity::fetch_wit) succeeds at init), every outbound
//! attempt carries the `Workload-Identity-Token` (cached, refreshed at half its lifetime)
//! and a fresh `Workload-Proof-Token` valid for [`DEFAULT_WPT_LIFETIME`]. The key pair is
//! generated in the workload (P-256, ES256), and only its public half is sent to the identity
//! source in [`FetchWitRequest::cnf_jwk`](crate::FetchWitRequest::cnf_jwk): the private key
//! never leaves the process, so neither the identity source nor anything on the way to it
//! can sign proofs. It is not the SVID key: an SVID may be RSA, and a key of its own lets the
//! WIT rotate on its own schedule.
//!
//! **Inbound.** A service configured with a [`WimseConfig`] verifies the pair before the
//! Transaction Token, the limiter and the policy; see [`WimseVerifier`] for the checks.
//!
//! ```
//! use ligand_runtime::WimseConfig;
//! # fn run(jwks_json: &[u8]) -> Result<(), ligand_runtime::WimseConfigError> {
//! let config = WimseConfig::from_jwks_json(jwks_json)?.require(true);
//! # let _ = config; Ok(()) }
//! # let _ = run;
//! ```

mod error;
mod replay;
pub(crate) mod sign;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

pub use self::error::{WimseConfigError, WimseRejection};
pub use self::replay::{
    DEFAULT_REPLAY_CACHE_CAPACITY, InMemoryReplayCache, Recorded, ReplayCache, ReplayCacheError,
    ReplayKey,
};
pub use self::verify::{VerifiedWorkload, WimseConfig, WimseVerifier};

/// The header carrying the Workload Identity Token.
pub const WIT_HEADER: &str = "workload-identity-token";
/// The header carrying the Workload Proof Token.
pub const WPT_HEADER: &str = "workload-proof-token";
/// The JOSE `typ` of a Workload Identity Token.
pub const WIT_TYP: &str = "wit+jwt";
/// The JOSE `typ` of a Workload Proof Token.
pub const WPT_TYP: &str = "wpt+jwt";
/// How long an outbound WPT is valid. Each attempt gets its own, so this only has to cover
/// the time the request takes to reach the peer plus clock skew; kept short because a WPT
/// captured in transit can be replayed to another instance of the same service (one without
/// a shared replay cache) until it expires.
pub const DEFAULT_WPT_LIFETIME: Duration = Duration::from_secs(60);
/// The longest WPT lifetime a verifier accepts by default (`exp` at most this far ahead).
pub const DEFAULT_MAX_WPT_LIFETIME: Duration = Duration::from_secs(120);
/// The upper bound of a configured maximum WPT lifetime.
pub const MAX_WPT_LIFETIME: Duration = Duration::from_secs(300);
/// How far the clocks of two workloads may disagree, by default.
pub const DEFAULT_WIMSE_LEEWAY: Duration = Duration::from_secs(30);

/// A source of the current time, injectable so expiry is tested without sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The base64url (unpadded) SHA-256 of a token, as `wth`, `tth`, `ath` and `oth` carry it.
/// Held inline: hashing a token allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenHash([u8; 43]);

impl TokenHash {
    pub(crate) fn of(token: &[u8]) -> Self {
        let digest = Sha256::digest(token);
        let mut out = [0u8; 43];
        // 32 bytes encode to exactly 43 unpadded base64url characters.
        let _written = URL_SAFE_NO_PAD.encode_slice(digest, &mut out);
        Self(out)
    }

    pub(crate) fn as_str(&self) -> &str {
        // Base64url output is ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authority as both sides compare it: ASCII-lowercased, without the default port `:443`.
pub(crate) fn normalized_authority(authority: &str) -> std::borrow::Cow<'_, str> {
    let authority = authority.strip_suffix(":443").unwrap_or(authority);
    if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(authority.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(authority)
    }
}

/// The token an `Authorization` header value carries: what follows the auth scheme
/// (`Bearer`, `DPoP`, …), or the whole value when it has no scheme.
pub(crate) fn access_token(value: &[u8]) -> &[u8] {
    match value.iter().position(|b| *b == b' ') {
        Some(space) => value[space..].trim_ascii_start(),
        None => value,
    }
}
