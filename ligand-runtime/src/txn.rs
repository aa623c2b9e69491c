//! Transaction Tokens (draft-ietf-oauth-transaction-tokens-08): verification of the
//! `Txn-Token` header on internal hops, and the verified claims the policy and handlers read.
//!
//! A Transaction Token is a JWT (`typ: txntoken+jwt`) minted at the edge of a trust domain by
//! a Transaction Token Service. It names the transaction (`txn`), the principal it runs for
//! (`sub`), what it may do (`scope`) and the workload that asked for it (`req_wl`), and it is
//! forwarded unchanged on every internal call. A service configured with a [`TxnTokenConfig`]
//! verifies it before rate limiting and policy; the claims then appear in the policy input as
//! `input.txn` and in handlers as [`Ctx::txn`](crate::Ctx::txn). At the edge, a
//! [`TxnMinter`] (the inline Context Service) exchanges an identity provider's access token
//! for one.
//!
//! ```
//! use ligand_runtime::{TxnTokenConfig, TxnVerifier};
//! # fn run(jwks_json: &[u8]) -> Result<(), ligand_runtime::TxnConfigError> {
//! let config = TxnTokenConfig::from_jwks_json(jwks_json)?
//!     .issuers(["https://txn.bank.example"])
//!     .leeway(std::time::Duration::from_secs(30));
//! // `init` builds the verifier with the service's trust domain as the audience.
//! let verifier = TxnVerifier::new(&config, "bank.example")?;
//! # let _ = verifier; Ok(()) }
//! # let _ = run;
//! ```

mod error;
mod mint;
mod verify;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use self::error::{TxnConfigError, TxnRejection};
pub use self::mint::{
    DEFAULT_TXN_LIFETIME, MintError, MintedTxnToken, SubjectTokenConfig, TxnMintRequest, TxnMinter,
};
pub(crate) use self::verify::{
    ASYMMETRIC, KeySet, kids, parse_jwks, read_jwks, seconds, string, unix, validity,
};
pub use self::verify::{TxnTokenConfig, TxnVerifier};

/// The JOSE `typ` of a Transaction Token (draft-ietf-oauth-transaction-tokens-08 §4.1.1).
pub const TXN_TOKEN_TYP: &str = "txntoken+jwt";
/// How far the clocks of the minting service and this one may disagree, by default.
pub const DEFAULT_TXN_LEEWAY: Duration = Duration::from_secs(30);
/// The longest `Txn-Token` header value accepted; anything longer is refused unread.
pub const MAX_TXN_TOKEN_LEN: usize = 8 * 1024;

/// The verified claims of a Transaction Token: what the policy reads as `input.txn` and a
/// handler as [`Ctx::txn`](crate::Ctx::txn). Absent optional claims are absent from the
/// policy input too (not `null`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TxnClaims {
    /// The transaction's unique identifier, the same on every hop.
    pub txn: Arc<str>,
    /// The principal the transaction runs for, as the minting service named it.
    pub sub: Arc<str>,
    /// The scope of the transaction (space-separated), if the token carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Arc<str>>,
    /// The workload that requested the token (typically the gateway's SPIFFE ID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub req_wl: Option<Arc<str>>,
    /// The issuer, if the token names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<Arc<str>>,
    /// Issued at, in seconds since the Unix epoch.
    pub iat: i64,
    /// Expires at, in seconds since the Unix epoch.
    pub exp: i64,
    /// The transaction context (a JSON object), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tctx: Option<serde_json::Value>,
    /// The requester context (a JSON object), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rctx: Option<serde_json::Value>,
}

impl TxnClaims {
    /// Claims with the required members only; the optional ones are set field by field.
    /// For tests and engines that build a policy input by hand.
    pub fn new(txn: impl Into<Arc<str>>, sub: impl Into<Arc<str>>, iat: i64, exp: i64) -> Self {
        Self {
            txn: txn.into(),
            sub: sub.into(),
            scope: None,
            req_wl: None,
            iss: None,
            iat,
            exp,
            tctx: None,
            rctx: None,
        }
    }
}
