//! The writer's side of the chain: numbering and linking each line, and sealing the log with
//! signed checkpoints.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write as _};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{AuditChain, CHECKPOINT_TYP, CheckpointClaims, GENESIS, digest};
use crate::tls::IdentityState;
use crate::wimse::Clock;

/// Where the chain stands: the next record's number and the hash of the last line, how much
/// has been written since the last checkpoint, and the identity that signs.
pub(crate) struct ChainState {
    settings: AuditChain,
    next_seq: u64,
    prev: String,
    since_checkpoint: u64,
    last_checkpoint: SystemTime,
    identity: Option<Arc<IdentityState>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ChainState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainState")
            .field("settings", &self.settings)
            .field("next_seq", &self.next_seq)
            .field("since_checkpoint", &self.since_checkpoint)
            .finish()
    }
}

/// The body of a checkpoint line, after `seq` and `prev`.
#[derive(Serialize)]
struct Checkpoint<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "crate::telemetry::rfc3339")]
    time: SystemTime,
    signer: &'a str,
    #[serde(rename = "final")]
    last: bool,
    jws: &'a str,
}

impl ChainState {
    /// A chain that starts at record 0.
    pub(crate) fn new(settings: AuditChain, clock: Arc<dyn Clock>) -> Self {
        let now = clock.now();
        Self {
            settings,
            next_seq: 0,
            prev: GENESIS.to_owned(),
            since_checkpoint: 0,
            last_checkpoint: now,
            identity: None,
            clock,
        }
    }

    /// The chain continued from the last line of `file`, opened for reading: a restarted
    /// service appends to its own log. A file that does not end with a whole chained record
    /// (a crash mid-write, or a file that is not a chained log) is refused, since appending
    /// to it would hide the damage behind new, valid links.
    pub(crate) fn resume(
        settings: AuditChain,
        clock: Arc<dyn Clock>,
        file: &mut File,
    ) -> io::Result<Self> {
        let mut state = Self::new(settings, clock);
        let Some(last) = last_line(file)? else {
            return Ok(state);
        };
        #[derive(serde::Deserialize)]
        struct Head {
            seq: u64,
        }
        let head: Head = serde_json::from_slice(&last).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the audit log's last line is not a chained record ({e})"),
            )
        })?;
        state.next_seq = head.seq.saturating_add(1);
        state.prev = digest(&last);
        Ok(state)
    }

    /// Times checkpoints by `clock` from now on.
    pub(crate) fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.last_checkpoint = clock.now();
        self.clock = clock;
    }

    /// The identity whose SVID key signs the checkpoints from now on.
    pub(crate) fn attach(&mut self, identity: Arc<IdentityState>) {
        self.identity = Some(identity);
    }

    /// Composes one chained line in `line`: `seq` and `prev`, then the fields of the JSON
    /// object `body` writes, and the newline. Returns the line's hash, for
    /// [`commit`](Self::commit) once the line is written.
    pub(crate) fn compose(
        &self,
        line: &mut Vec<u8>,
        body: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<String> {
        compose(self.next_seq, &self.prev, line, body)?;
        let hash = digest(line);
        line.push(b'\n');
        Ok(hash)
    }

    /// Records that the line with hash `hash` was written.
    pub(crate) fn commit(&mut self, hash: String) {
        self.prev = hash;
        self.next_seq += 1;
        self.since_checkpoint += 1;
    }

    /// Whether the count of records since the last checkpoint calls for one.
    pub(crate) fn count_due(&self) -> bool {
        self.since_checkpoint >= self.settings.checkpoint_every && self.can_sign()
    }

    /// Whether the interval since the last checkpoint calls for one.
    pub(crate) fn time_due(&self) -> bool {
        self.since_checkpoint > 0
            && self.can_sign()
            && self
                .clock
                .now()
                .duration_since(self.last_checkpoint)
                .is_ok_and(|elapsed| elapsed >= self.settings.checkpoint_interval)
    }

    /// Whether an identity to sign checkpoints with is attached.
    pub(crate) fn can_sign(&self) -> bool {
        self.identity.is_some()
    }

    /// How long the writer may sleep before the interval calls for a checkpoint.
    pub(crate) fn interval(&self) -> std::time::Duration {
        self.settings.checkpoint_interval
    }

    /// Composes a checkpoint line in `line`, signed with the current SVID key; `last` marks
    /// the one written at a clean shutdown. Returns its hash for [`commit_checkpoint`].
    ///
    /// [`commit_checkpoint`]: Self::commit_checkpoint
    pub(crate) fn checkpoint(&self, line: &mut Vec<u8>, last: bool) -> io::Result<String> {
        let identity = self.identity.as_ref().ok_or_else(|| {
            io::Error::other("no identity to sign the audit log's checkpoint with yet")
        })?;
        let current = identity.current();
        let claims = CheckpointClaims {
            v: 1,
            iss: current.id.to_string(),
            seq: self.next_seq,
            prev: self.prev.clone(),
            iat: self
                .clock
                .now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            last,
        };
        let jws = current
            .signing
            .sign_as(CHECKPOINT_TYP, &claims)
            .map_err(|e| io::Error::other(format!("signing an audit checkpoint: {e}")))?;
        checkpoint_line(line, &claims, &jws)?;
        let hash = digest(line);
        line.push(b'\n');
        Ok(hash)
    }

    /// Records that a checkpoint line with hash `hash` was written.
    pub(crate) fn commit_checkpoint(&mut self, hash: String) {
        self.prev = hash;
        self.next_seq += 1;
        self.since_checkpoint = 0;
        self.last_checkpoint = self.clock.now();
    }
}

/// Composes, in `line`, the chained line `seq`, `prev`, then the fields of the JSON object
/// that `body` writes (without a newline).
fn compose(
    seq: u64,
    prev: &str,
    line: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    write!(line, "{{\"seq\":{seq},\"prev\":\"{prev}\"")?;
    let at = line.len();
    body(line)?;
    match line.get(at..at + 2) {
        Some(b"{}") => {
            line.truncate(at);
            line.push(b'}');
        }
        Some([b'{', _]) => line[at] = b',',
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an audit record is not a JSON object",
            ));
        }
    }
    Ok(())
}

/// Composes, in `line`, the checkpoint line of `claims` signed as `jws` (without a newline).
/// Every field is derived from the signed claims, so the verifier rebuilds the line and
/// compares it byte for byte: no byte of a checkpoint is left unsigned.
pub(super) fn checkpoint_line(
    line: &mut Vec<u8>,
    claims: &CheckpointClaims,
    jws: &str,
) -> io::Result<()> {
    compose(claims.seq, &claims.prev, line, |line| {
        serde_json::to_writer(
            &mut *line,
            &Checkpoint {
                kind: "checkpoint",
                time: UNIX_EPOCH + Duration::from_secs(claims.iat),
                signer: &claims.iss,
                last: claims.last,
                jws,
            },
        )
        .map_err(io::Error::from)
    })
}

/// The last line of `file` without its newline, `None` for an empty file. A file that does
/// not end with a newline ends with a torn record.
fn last_line(file: &mut File) -> io::Result<Option<Vec<u8>>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let mut tail = Vec::new();
    let mut end = len;
    // Read backwards in blocks until the block holds the newline before the last line.
    loop {
        let start = end.saturating_sub(8192);
        let mut block = vec![0; usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        if tail.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the audit log ends with a torn record (no newline)",
            ));
        }
        let body = &tail[..tail.len() - 1];
        if let Some(at) = body.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(body[at + 1..].to_vec()));
        }
        if start == 0 {
            return Ok(Some(body.to_vec()));
        }
        end = start;
    }
}
