//! The tamper-evident decision log: hash-chained JSON lines with signed checkpoints, and
//! its verifier.
//!
//! A chained log is written by [`JsonLinesTelemetry`](crate::JsonLinesTelemetry) with
//! [`AuditChain`] settings. Every line is one JSON object that starts with two fields:
//!
//! - `seq`: the record's number, 0 for the first record of the file, one more for each line;
//! - `prev`: the SHA-256, in lowercase hex, of the previous line's exact bytes (without its
//!   newline); 64 zeros for the first record.
//!
//! Every [`AuditChain::checkpoint_every`] records, every [`AuditChain::checkpoint_interval`]
//! when records were written since the last one, and at a clean shutdown, the log gets a
//! checkpoint line, itself a link of the chain:
//!
//! ```json
//! {"seq":42,"prev":"…","type":"checkpoint","time":"…","signer":"spiffe://…","final":false,"jws":"…"}
//! ```
//!
//! `jws` is a compact JWS of type [`CHECKPOINT_TYP`] signed with the service's SVID key, the
//! SVID's leaf and intermediates in its `x5c` header, over the claims `v` (1), `iss` (the
//! service's SPIFFE ID), `seq`, `prev`, `iat` (seconds since the epoch) and `final` (true for
//! the checkpoint written at a clean shutdown). Signing a checkpoint signs the whole log up to
//! it, since `prev` commits to every line before. After an SVID rotation the next checkpoint
//! is signed with the new key. A restarted service continues the chain of the file it
//! appends to.
//!
//! Hashing and signing happen on the audit writer thread, never on the request path.
//!
//! [`verify`] reads a log back and reports the first broken link: its line number and what
//! failed (an edited, deleted or reordered record, a log cut short, a checkpoint whose
//! signature does not verify, or a signer that does not chain to the trust bundle or is not
//! the service).
//!
//! ```no_run
//! use ligand_runtime::audit::{VerifyOptions, verify_file};
//! use ligand_runtime::TrustBundles;
//! # fn bundle() -> TrustBundles { TrustBundles::new() }
//!
//! let service = "spiffe://bank.example/service/accounts".parse()?;
//! let report = verify_file("audit.jsonl", &bundle(), &service, &VerifyOptions::default())?;
//! println!("{} records, {} checkpoints", report.records, report.checkpoints);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod chain;
mod verify;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub(crate) use self::chain::ChainState;
pub use self::verify::{Broken, Verified, VerifyError, VerifyOptions, verify, verify_file};

/// The JWS `typ` of a checkpoint.
pub const CHECKPOINT_TYP: &str = "ligand-audit-checkpoint+jwt";

/// The default [`AuditChain::checkpoint_every`]: 1000 records.
pub const DEFAULT_CHECKPOINT_EVERY: u64 = 1000;

/// The default [`AuditChain::checkpoint_interval`]: one minute.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// How often a chained audit log is sealed with a signed checkpoint.
///
/// ```
/// use std::time::Duration;
/// use ligand_runtime::audit::AuditChain;
///
/// let chain = AuditChain::default()
///     .checkpoint_every(500)
///     .checkpoint_interval(Duration::from_secs(30));
/// # let _ = chain;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditChain {
    /// A checkpoint after this many records (at least 1).
    pub checkpoint_every: u64,
    /// A checkpoint when this long has passed since the last one and records were written
    /// meanwhile.
    pub checkpoint_interval: Duration,
}

impl Default for AuditChain {
    fn default() -> Self {
        Self {
            checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
        }
    }
}

impl AuditChain {
    /// A checkpoint after `records` records (0 counts as 1).
    pub fn checkpoint_every(mut self, records: u64) -> Self {
        self.checkpoint_every = records.max(1);
        self
    }

    /// A checkpoint when `interval` has passed since the last one and records were written.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }
}

/// The claims of a checkpoint's JWS.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointClaims {
    v: u64,
    iss: String,
    seq: u64,
    prev: String,
    iat: u64,
    #[serde(rename = "final")]
    last: bool,
}

/// A checkpoint line (without newline) signed with `svid`'s key, for the testkit.
#[cfg(feature = "testkit")]
pub(crate) fn signed_checkpoint_line(
    svid: &crate::X509Svid,
    seq: u64,
    prev: &str,
    last: bool,
    time: std::time::SystemTime,
) -> Result<String, String> {
    let key = crate::chain::SigningKey::from_svid(svid)?;
    let claims = CheckpointClaims {
        v: 1,
        iss: svid.spiffe_id.to_string(),
        seq,
        prev: prev.to_owned(),
        iat: time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        last,
    };
    let jws = key
        .sign_as(CHECKPOINT_TYP, &claims)
        .map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    chain::checkpoint_line(&mut line, &claims, &jws).map_err(|e| e.to_string())?;
    String::from_utf8(line).map_err(|e| e.to_string())
}

/// The `prev` of the first record.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(digest.len() * 2);
    for byte in digest {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

pub(crate) fn digest(line: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(line))
}
