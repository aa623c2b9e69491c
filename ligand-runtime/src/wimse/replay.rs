//! The replay cache of Workload Proof Tokens: each `jti` is recorded until its proof expires,
//! and a second sight within that time is a replay.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// The default capacity of an [`InMemoryReplayCache`]: proofs live at most five minutes, so
/// this holds well over 300 new proofs a second.
pub const DEFAULT_REPLAY_CACHE_CAPACITY: usize = 100_000;

/// The key a proof is recorded under: SHA-256 of the presenting workload's SPIFFE ID and the
/// `jti`. Scoping by workload keeps one workload from spending another's `jti` values; the
/// hash keeps every entry the same small size whatever the `jti`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// The key of `jti` presented by `workload`.
    pub fn new(workload: &str, jti: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(workload.as_bytes());
        hash.update([0]);
        hash.update(jti.as_bytes());
        Self(hash.finalize().into())
    }

    /// The key's bytes, for a backend that stores them.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ReplayKey({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// What a [`ReplayCache`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recorded {
    /// First sight: the key is now recorded until its expiry.
    Fresh,
    /// The key was recorded before and has not expired: a replay.
    Replay,
}

/// Why a [`ReplayCache`] could not record a key. The proof is then refused: freshness that
/// cannot be shown is not assumed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayCacheError {
    /// The cache holds as many unexpired entries as it may.
    #[error("replay cache full")]
    Full,
    /// The backend (a shared store) failed.
    #[error("replay cache backend failed")]
    Backend(#[source] crate::BoxError),
}

/// Records proof identifiers until they expire. The in-process
/// [`InMemoryReplayCache`] catches replays against one instance; a fleet that shares its
/// callers' proofs across instances (behind one load balancer) needs a shared store, such as
/// a Redis/Valkey-backed implementation of this trait (`SET key 1 NX PXAT exp`).
#[async_trait]
pub trait ReplayCache: Send + Sync + fmt::Debug + 'static {
    /// Records `key` until `expires_at` unless it is already recorded and unexpired at `now`.
    /// Atomic: of two concurrent calls with one key, exactly one sees [`Recorded::Fresh`].
    async fn record(
        &self,
        key: ReplayKey,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<Recorded, ReplayCacheError>;

    /// Called once by `init` before the service serves; a cache in a shared store connects
    /// (and checks it is reachable) here. An error fails init: proofs could not be recorded.
    async fn start(&self) -> Result<(), ReplayCacheError> {
        Ok(())
    }
}

/// A bounded in-process [`ReplayCache`]. Expired entries are dropped as new ones arrive
/// (oldest expiry first); when `capacity` unexpired entries are held, a new key is refused
/// with [`ReplayCacheError::Full`] rather than evicting a live one, which would reopen its
/// replay window.
#[derive(Debug)]
pub struct InMemoryReplayCache {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<ReplayKey, SystemTime>,
    by_expiry: BTreeSet<(SystemTime, ReplayKey)>,
}

impl State {
    fn prune(&mut self, now: SystemTime) {
        while let Some(&(expiry, key)) = self.by_expiry.first() {
            if expiry > now {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&key);
        }
    }
}

impl InMemoryReplayCache {
    /// A cache of at most `capacity` unexpired entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        }
    }

    /// The number of entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update keeps the two indexes consistent before it can panic (allocation
        // aside), so a poisoned lock holds a usable state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for InMemoryReplayCache {
    fn default() -> Self {
        Self::new(DEFAULT_REPLAY_CACHE_CAPACITY)
    }
}

#[async_trait]
impl ReplayCache for InMemoryReplayCache {
    async fn record(
        &self,
        key: ReplayKey,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> Result<Recorded, ReplayCacheError> {
        let mut state = self.lock();
        state.prune(now);
        if state.entries.contains_key(&key) {
            return Ok(Recorded::Replay);
        }
        if state.entries.len() >= self.capacity {
            return Err(ReplayCacheError::Full);
        }
        state.entries.insert(key, expires_at);
        state.by_expiry.insert((expires_at, key));
        Ok(Recorded::Fresh)
    }
}
