//! Reading a chained audit log back: every link, every checkpoint's signature and signer.

use std::io::{self, BufRead};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use spiffe::SpiffeId;

use super::{CHECKPOINT_TYP, CheckpointClaims, GENESIS, digest};
use crate::chain::{SignedRejection, verify_signed};
use crate::identity::TrustBundles;
use crate::tls::TrustStore;

/// How strict [`verify`] is about the end of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Accept records after the last checkpoint (the log of a service that is still running,
    /// or that stopped without a clean shutdown), reporting how many in
    /// [`Verified::unsealed`]. By default the log must end with the final checkpoint of a
    /// clean shutdown, so that removing its tail is detected.
    pub allow_unsealed: bool,
}

impl VerifyOptions {
    /// Accepts records after the last checkpoint (see [`allow_unsealed`](Self::allow_unsealed)).
    pub fn allow_unsealed(mut self, allow: bool) -> Self {
        self.allow_unsealed = allow;
        self
    }
}

/// What a verified log holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// Lines read, checkpoints included.
    pub records: u64,
    /// Checkpoints whose signature and signer verified.
    pub checkpoints: u64,
    /// Records after the last checkpoint, covered by no signature (0 for a log sealed by a
    /// clean shutdown).
    pub unsealed: u64,
    /// The `seq` of the last line.
    pub last_seq: Option<u64>,
}

/// What broke, at the line [`VerifyError::Broken`] names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Broken {
    /// The line is not a chained record: not JSON, or without `seq` and `prev`.
    #[error("not a chained audit record: {0}")]
    Malformed(String),
    /// The line's bytes changed since the next line (or checkpoint) linked to it: the next
    /// line's `prev` is not this line's hash.
    #[error("record edited: its hash no longer matches the next line's prev")]
    Edited,
    /// Records are missing before this line: its `seq` skips from `expected` to `found`, and
    /// no later line holds the missing ones.
    #[error("records deleted before this line: expected seq {expected}, found {found}")]
    Deleted {
        /// The `seq` the line should have had.
        expected: u64,
        /// The `seq` it has.
        found: u64,
    },
    /// The line is out of order: its `seq` is not the next one, and the one expected here
    /// appears elsewhere in the log.
    #[error("records reordered: expected seq {expected}, found {found}")]
    Reordered {
        /// The `seq` the line should have had.
        expected: u64,
        /// The `seq` it has.
        found: u64,
    },
    /// The first record does not start a chain (`seq` 0 and `prev` of zeros), so the log's
    /// beginning was removed.
    #[error("the log does not start a chain: the first record has seq {found}")]
    MissingStart {
        /// The first record's `seq`.
        found: u64,
    },
    /// The log ends in the middle of a record (no final newline).
    #[error("the log is cut in the middle of a record")]
    Torn,
    /// The log does not end with the final checkpoint of a clean shutdown: its tail after
    /// the last checkpoint may have been removed. `records` follow the last checkpoint.
    #[error(
        "the log ends without a final checkpoint ({records} records after the last checkpoint): \
         it may have been truncated"
    )]
    Unsealed {
        /// Records after the last checkpoint.
        records: u64,
    },
    /// A checkpoint's JWS does not verify with its signer's key, or signs other values than
    /// the checkpoint line holds.
    #[error("bad checkpoint signature: {0}")]
    BadSignature(String),
    /// A checkpoint's signer does not chain to the trust bundle.
    #[error("checkpoint signer does not chain to the trust bundle: {0}")]
    UntrustedSigner(String),
    /// A checkpoint is signed by an SVID of another workload than the service.
    #[error("checkpoint signed by {found}, not by the service {expected}")]
    WrongSigner {
        /// The service's SPIFFE ID.
        expected: String,
        /// The signer's.
        found: String,
    },
}

/// Why a log did not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The chain breaks at `line` (1-based).
    #[error("audit log line {line}: {broken}")]
    Broken {
        /// The line, counted from 1.
        line: u64,
        /// What failed there.
        broken: Broken,
    },
    /// The log holds no record.
    #[error("the audit log is empty")]
    Empty,
    /// The trust bundle could not be used.
    #[error("trust bundle: {0}")]
    Bundle(String),
    /// Reading the log failed.
    #[error("reading the audit log: {0}")]
    Io(#[from] io::Error),
}

/// The fields every chained line starts with, and a checkpoint's.
#[derive(serde::Deserialize)]
struct Head {
    seq: u64,
    prev: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "final", default)]
    last: Option<bool>,
    #[serde(default)]
    jws: Option<String>,
}

/// [`verify`] over the file at `path`.
pub fn verify_file(
    path: impl AsRef<Path>,
    bundle: &TrustBundles,
    service: &SpiffeId,
    options: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    let file = std::fs::File::open(path)?;
    verify(io::BufReader::new(file), bundle, service, options)
}

/// Verifies a chained audit log (see the [module docs](super)) read from `reader`: every
/// line's `seq` and `prev`, every checkpoint's signature, that each checkpoint's signer
/// chains to `bundle` (at the checkpoint's time) and is `service`, and, unless `options`
/// allow an unsealed tail, that the log ends with a final checkpoint. Returns the first broken
/// link, with its line number.
pub fn verify(
    mut reader: impl BufRead,
    bundle: &TrustBundles,
    service: &SpiffeId,
    options: &VerifyOptions,
) -> Result<Verified, VerifyError> {
    let trust = TrustStore::from_bundles(bundle).map_err(|e| VerifyError::Bundle(e.to_string()))?;
    let mut report = Verified::default();
    let mut prev_hash = GENESIS.to_owned();
    let mut sealed_by_final = false;
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let broken = |line, broken| VerifyError::Broken { line, broken };
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        line_no += 1;
        if buf.pop() != Some(b'\n') {
            return Err(broken(line_no, Broken::Torn));
        }
        let head: Head = serde_json::from_slice(&buf)
            .map_err(|e| broken(line_no, Broken::Malformed(e.to_string())))?;
        let expected = report.last_seq.map_or(0, |s| s.saturating_add(1));
        if head.seq != expected {
            if report.last_seq.is_none() {
                return Err(broken(line_no, Broken::MissingStart { found: head.seq }));
            }
            // Out of order, or missing: the records expected here are reordered if a later
            // line holds one of them.
            let found = head.seq;
            let later = found < expected || holds_between(&mut reader, expected, found)?;
            return Err(broken(
                line_no,
                if later {
                    Broken::Reordered { expected, found }
                } else {
                    Broken::Deleted { expected, found }
                },
            ));
        }
        if head.prev != prev_hash {
            return Err(match line_no {
                1 => broken(1, Broken::MissingStart { found: head.seq }),
                _ => broken(line_no - 1, Broken::Edited),
            });
        }
        if head.kind == "checkpoint" {
            checkpoint(&head, &buf, &trust, service).map_err(|b| broken(line_no, b))?;
            report.checkpoints += 1;
            report.unsealed = 0;
            sealed_by_final = head.last == Some(true);
        } else {
            report.unsealed += 1;
            sealed_by_final = false;
        }
        prev_hash = digest(&buf);
        report.last_seq = Some(head.seq);
        report.records += 1;
    }
    if report.records == 0 {
        return Err(VerifyError::Empty);
    }
    if !sealed_by_final && !options.allow_unsealed {
        return Err(broken(
            line_no,
            Broken::Unsealed {
                records: report.unsealed,
            },
        ));
    }
    Ok(report)
}

/// Whether a later line's `seq` lies in `from..to` (lines that do not parse are skipped).
fn holds_between(reader: &mut impl BufRead, from: u64, to: u64) -> io::Result<bool> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(false);
        }
        if let Ok(Seq { seq }) = serde_json::from_slice(buf.trim_ascii_end())
            && (from..to).contains(&seq)
        {
            return Ok(true);
        }
    }
}

/// Verifies one checkpoint line: its JWS, its signer, and that it signs this line's values.
fn checkpoint(
    head: &Head,
    line: &[u8],
    trust: &TrustStore,
    service: &SpiffeId,
) -> Result<(), Broken> {
    let jws = head
        .jws
        .as_deref()
        .ok_or_else(|| Broken::Malformed("a checkpoint without jws".into()))?;
    // The signing time decides which certificates were valid; it is read before the
    // signature only to pick the time, and checked signed below.
    let at = unverified_iat(jws)
        .ok_or_else(|| Broken::Malformed("a checkpoint JWS without iat".into()))?;
    let (signer, claims): (SpiffeId, CheckpointClaims) = verify_signed(
        jws,
        CHECKPOINT_TYP,
        trust,
        UNIX_EPOCH + Duration::from_secs(at),
    )
    .map_err(|e| match e {
        SignedRejection::Malformed(m) => Broken::Malformed(m),
        SignedRejection::UntrustedSigner(m) => Broken::UntrustedSigner(m),
        SignedRejection::BadSignature => {
            Broken::BadSignature("the signature does not verify".into())
        }
    })?;
    if signer != *service {
        return Err(Broken::WrongSigner {
            expected: service.to_string(),
            found: signer.to_string(),
        });
    }
    if claims.v != 1 {
        return Err(Broken::Malformed(format!(
            "checkpoint version {}",
            claims.v
        )));
    }
    if claims.iss != signer.to_string() {
        return Err(Broken::BadSignature(
            "the signed iss is not the signer's SPIFFE ID".into(),
        ));
    }
    let mut expected = Vec::with_capacity(line.len());
    super::chain::checkpoint_line(&mut expected, &claims, jws)
        .map_err(|e| Broken::Malformed(e.to_string()))?;
    if expected != line {
        return Err(Broken::BadSignature(
            "the checkpoint line differs from what its signature covers".into(),
        ));
    }
    Ok(())
}

fn unverified_iat(jws: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Iat {
        iat: u64,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Iat>(jws)
        .ok()
        .map(|c| c.iat)
}
