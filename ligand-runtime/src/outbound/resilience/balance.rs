//! Load balancing over one target's endpoints.
//!
//! A [`Pool`] holds the endpoint set as an `Arc`'d snapshot behind a `RwLock` that is only
//! written when the registry changes the set; a pick clones the `Arc`, reads per-slot
//! atomics and allocates nothing. An update keeps the [`Slot`] (and so the latency estimate,
//! in-flight count and ejection state) of every endpoint that stays.
//!
//! Ejected endpoints are skipped by every strategy. When every endpoint is ejected (the
//! ejection cap prevents it, but a registry update can shrink the set under it) the pool
//! ignores ejection rather than fail: Envoy's "panic mode".

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::config::{ConfigError, duration, positive};
use super::outlier::{Detector, OutlierConfig, OutlierEvent, nanos};
use super::ring::Ring;
use super::rng::Rng;
#[cfg(test)]
use super::rng::hash_bytes;
use super::slot::Slot;
use super::{Outcome, Sink};

/// The latency a new endpoint is assumed to have until it answers (Linkerd's default
/// `default_rtt`).
pub(crate) const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// The peak-EWMA decay: a sample's weight falls to 1/e after this long (Linkerd's default).
pub(crate) const DEFAULT_EWMA_DECAY: Duration = Duration::from_secs(10);
/// Points per endpoint on the hash ring: enough for an even spread (about ±10 % of the mean
/// load at 100) while a set of a thousand endpoints stays a ring of a few megabytes.
pub(crate) const DEFAULT_VIRTUAL_NODES: u32 = 128;
/// The most points per endpoint accepted.
const MAX_VIRTUAL_NODES: u32 = 4096;

/// How an endpoint is chosen for an attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Strategy {
    /// Power of two choices over peak-EWMA latency × (in-flight + 1): two endpoints drawn
    /// at random, the cheaper one taken (Linkerd's default; Mitzenmacher's P2C avoids the
    /// herding of always picking the global minimum).
    #[default]
    P2cEwma,
    /// Power of two choices over the in-flight count (Envoy's `LEAST_REQUEST`).
    LeastRequest,
    /// Each endpoint in turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// Consistent hashing of the call's key (`#[hash_key]` on a client argument, or
    /// [`CallBuilder::hash_key`](crate::CallBuilder::hash_key)): the same key reaches the same
    /// endpoint while it is in the set; a call without a key goes to a random endpoint.
    RingHash,
}

impl Strategy {
    /// Every strategy, in documentation order.
    pub(crate) const ALL: [Strategy; 5] = [
        Self::P2cEwma,
        Self::LeastRequest,
        Self::RoundRobin,
        Self::Random,
        Self::RingHash,
    ];

    /// The configuration name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::P2cEwma => "p2c_ewma",
            Self::LeastRequest => "least_request",
            Self::RoundRobin => "round_robin",
            Self::Random => "random",
            Self::RingHash => "ring_hash",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`Strategy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown load-balancing strategy {0:?}; expected p2c_ewma, least_request, round_robin, random or ring_hash"
)]
pub struct UnknownStrategy(pub(crate) String);

impl FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|strategy| strategy.as_str() == s)
            .ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}

/// `[outbound.balancer]`: how endpoints are chosen.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BalancerConfig {
    /// The strategy.
    pub strategy: Strategy,
    /// The latency assumed for an endpoint that has not answered yet.
    #[serde(deserialize_with = "duration")]
    pub default_rtt: Duration,
    /// The peak-EWMA decay.
    #[serde(deserialize_with = "duration")]
    pub ewma_decay: Duration,
    /// Points per endpoint on the hash ring.
    pub virtual_nodes: u32,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            default_rtt: DEFAULT_RTT,
            ewma_decay: DEFAULT_EWMA_DECAY,
            virtual_nodes: DEFAULT_VIRTUAL_NODES,
        }
    }
}

impl BalancerConfig {
    /// Checks every setting; the message names the one at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        positive("balancer.default_rtt", self.default_rtt)?;
        positive("balancer.ewma_decay", self.ewma_decay)?;
        if !(1..=MAX_VIRTUAL_NODES).contains(&self.virtual_nodes) {
            return Err(ConfigError::OutOfRange {
                setting: "balancer.virtual_nodes",
                value: self.virtual_nodes.to_string(),
                expected: "1 to 4096",
            });
        }
        Ok(())
    }
}

/// The pool has no endpoint to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no endpoints available")]
pub(crate) struct NoEndpoints;

/// One endpoint set, immutable once built.
#[derive(Debug, Default)]
struct Snapshot {
    slots: Box<[Arc<Slot>]>,
    /// Built only for [`Strategy::RingHash`].
    ring: Ring,
}

/// The endpoints of one target service, their statistics and their outlier detector.
pub(crate) struct Pool {
    strategy: Strategy,
    default_rtt: Duration,
    decay_ns: f64,
    virtual_nodes: u32,
    epoch: Instant,
    rng: Rng,
    cursor: AtomicUsize,
    set: RwLock<Arc<Snapshot>>,
    detector: Detector,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("strategy", &self.strategy)
            .field("endpoints", &self.snapshot().slots.len())
            .finish_non_exhaustive()
    }
}

/// An endpoint chosen for one attempt, counted in flight until this is dropped or
/// passed to [`Pool::record`].
#[must_use = "a picked endpoint counts in flight until it is recorded or dropped"]
#[derive(Debug)]
pub(crate) struct Picked {
    slot: Arc<Slot>,
    started: Instant,
}

impl Picked {
    /// The endpoint's `host:port`.
    #[cfg(test)]
    pub(crate) fn address(&self) -> &str {
        self.slot.address()
    }

    /// The endpoint's `host:port`, shared with the endpoint.
    pub(crate) fn shared_address(&self) -> &Arc<str> {
        self.slot.address()
    }

    /// The endpoint, shared: for an attempt that outlives this borrow.
    pub(crate) fn endpoint(&self) -> Arc<Slot> {
        self.slot.clone()
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.slot.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    /// A pool over `addresses` with validated settings; ejections and reinstatements go to
    /// `sink`, random draws come from `rng`.
    pub(crate) fn new<S: AsRef<str>>(
        balancer: &BalancerConfig,
        outlier: OutlierConfig,
        addresses: &[S],
        rng: Rng,
        sink: Sink<OutlierEvent>,
    ) -> Result<Self, ConfigError> {
        balancer.validate()?;
        outlier.validate()?;
        let decay_ns = nanos(balancer.ewma_decay) as f64;
        let pool = Self {
            strategy: balancer.strategy,
            default_rtt: balancer.default_rtt,
            decay_ns,
            virtual_nodes: balancer.virtual_nodes,
            epoch: Instant::now(),
            rng,
            cursor: AtomicUsize::new(0),
            set: RwLock::new(Arc::default()),
            detector: Detector::new(outlier, sink),
        };
        pool.update(addresses);
        Ok(pool)
    }

    /// Replaces the endpoint set (duplicates are kept once), keeping the statistics of
    /// every endpoint that stays.
    pub(crate) fn update<S: AsRef<str>>(&self, addresses: &[S]) {
        let now = self.now();
        let old = self.snapshot();
        let mut kept: HashMap<&str, &Arc<Slot>> = old
            .slots
            .iter()
            .map(|slot| (slot.address().as_ref(), slot))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let slots: Box<[Arc<Slot>]> = addresses
            .iter()
            .map(AsRef::as_ref)
            .filter(|address| seen.insert(*address))
            .map(|address| match kept.remove(address) {
                Some(slot) => slot.clone(),
                None => Arc::new(Slot::new(address.into(), self.default_rtt, now)),
            })
            .collect();
        let ring = match self.strategy {
            Strategy::RingHash => Ring::new(
                slots.iter().map(|slot| slot.address().as_ref()),
                self.virtual_nodes,
            ),
            _ => Ring::default(),
        };
        let next = Arc::new(Snapshot { slots, ring });
        // The write replaces one pointer, so a panic elsewhere while the lock was held
        // cannot have left the set half-written: a poisoned lock is safe to reuse.
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// The number of endpoints.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.snapshot().slots.len()
    }

    /// The addresses currently ejected (for observability; allocates).
    #[cfg(test)]
    pub(crate) fn ejected(&self) -> Vec<Arc<str>> {
        let now = self.now();
        self.snapshot()
            .slots
            .iter()
            .filter(|slot| slot.is_ejected(now))
            .map(|slot| slot.address().clone())
            .collect()
    }

    /// The statistics of `address`, if it is in the set.
    #[cfg(test)]
    pub(crate) fn slot(&self, address: &str) -> Option<Arc<Slot>> {
        self.snapshot()
            .slots
            .iter()
            .find(|slot| slot.address().as_ref() == address)
            .cloned()
    }

    /// Chooses an endpoint for one attempt. With [`Strategy::RingHash`] and no key, an
    /// endpoint is chosen at random.
    #[cfg(test)]
    pub(crate) fn pick(&self) -> Result<Picked, NoEndpoints> {
        self.choose(None, None, Instant::now())
    }

    /// Chooses an endpoint for a retry: any but `previous` (the endpoint the attempt before
    /// failed on) while another is in the rotation, as Envoy's `previous_hosts` retry
    /// predicate does; `previous` again only when it is the one left.
    #[cfg(test)]
    pub(crate) fn pick_other(&self, previous: &str) -> Result<Picked, NoEndpoints> {
        self.choose(None, Some(previous), Instant::now())
    }

    /// Chooses an endpoint for one attempt whose sticky key is `key` (a user or session
    /// id); only [`Strategy::RingHash`] uses the key, the others behave as [`pick`](Self::pick).
    #[cfg(test)]
    pub(crate) fn pick_keyed(&self, key: &[u8]) -> Result<Picked, NoEndpoints> {
        self.choose(Some(hash_bytes(key)), None, Instant::now())
    }

    /// Chooses an endpoint for an attempt of a call with the hashed sticky key `key`, if
    /// any, avoiding `previous` on a retry: [`pick`](Self::pick), [`pick_other`](Self::pick_other)
    /// or [`pick_keyed`](Self::pick_keyed) in one. With [`Strategy::RingHash`], a retry goes
    /// to the key's next endpoint on the ring. `at` is now (a clock read the caller shares).
    pub(crate) fn pick_for(
        &self,
        key: Option<u64>,
        previous: Option<&str>,
        at: Instant,
    ) -> Result<Picked, NoEndpoints> {
        self.choose(key, previous, at)
    }

    /// Records how the attempt on `picked` ended: its latency feeds the peak-EWMA estimate,
    /// its outcome the outlier detector. The attempt stops counting in flight.
    ///
    /// A failed attempt counts as at least [`FAILURE_PENALTY`] of latency: an endpoint that
    /// refuses connections answers fastest of all, and without the penalty the balancer
    /// would send it the most traffic (Finagle's failure accrual makes the same correction).
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the stack records with its clock read")
    )]
    pub(crate) fn record(&self, picked: Picked, outcome: Outcome) {
        self.record_at(picked, outcome, Instant::now());
    }

    /// [`record`](Self::record) at `at` (a clock read the caller shares).
    pub(crate) fn record_at(&self, picked: Picked, outcome: Outcome, at: Instant) {
        let now = self.nanos_at(at);
        let mut rtt = at.saturating_duration_since(picked.started);
        if outcome.is_failure() {
            rtt = rtt.max(FAILURE_PENALTY);
        }
        let slot = &picked.slot;
        slot.observe_rtt(rtt, now, self.decay_ns);
        slot.set_last(outcome);
        let snapshot = self.snapshot();
        self.detector
            .observe(&snapshot.slots, slot, outcome, now, &self.rng);
    }

    /// Nanoseconds since the pool was made; never 0, which slots read as "never".
    fn now(&self) -> u64 {
        self.nanos_at(Instant::now())
    }

    /// [`now`](Self::now) at `at`.
    fn nanos_at(&self, at: Instant) -> u64 {
        nanos(at.saturating_duration_since(self.epoch)).max(1)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn choose(
        &self,
        key: Option<u64>,
        avoid: Option<&str>,
        at: Instant,
    ) -> Result<Picked, NoEndpoints> {
        let snapshot = self.snapshot();
        let slots = &snapshot.slots;
        if slots.is_empty() {
            return Err(NoEndpoints);
        }
        // One clock read for both the statistics' time and the attempt's start.
        let now = self.nanos_at(at);
        let all_ejected = slots.iter().all(|slot| slot.is_ejected(now));
        let ejected = |i: usize| !all_ejected && slots[i].is_ejected(now);
        let avoided = avoid.and_then(|address| {
            let index = slots.iter().position(|s| s.address().as_ref() == address)?;
            // Avoided only while another endpoint is in the rotation.
            (0..slots.len())
                .any(|i| i != index && !ejected(i))
                .then_some(index)
        });
        let out = |i: usize| ejected(i) || avoided == Some(i);
        let index = match (self.strategy, key) {
            (Strategy::RoundRobin, _) => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                next_in(slots.len(), start % slots.len(), out)
            }
            (Strategy::Random, _) | (Strategy::RingHash, None) => self.random(slots.len(), out),
            (Strategy::RingHash, Some(key)) => snapshot
                .ring
                .lookup(key, out)
                .unwrap_or_else(|| self.random(slots.len(), out)),
            (Strategy::P2cEwma, _) => {
                self.two_choices(slots.len(), out, |i| slots[i].cost(now, self.decay_ns))
            }
            (Strategy::LeastRequest, _) => {
                self.two_choices(slots.len(), out, |i| f64::from(slots[i].in_flight()))
            }
        };
        let slot = slots[index].clone();
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Picked { slot, started: at })
    }

    /// A uniform draw among the endpoints `out` does not exclude: up to three draws, then
    /// the next eligible one after the last draw (so a mostly ejected set costs at most one
    /// scan).
    fn random(&self, n: usize, out: impl Fn(usize) -> bool) -> usize {
        let mut i = 0;
        for _ in 0..3 {
            i = self.rng.below(n);
            if !out(i) {
                return i;
            }
        }
        next_in(n, i, out)
    }

    /// Two distinct eligible endpoints at random, the one of lower `cost` taken (the first
    /// on a tie).
    fn two_choices(
        &self,
        n: usize,
        out: impl Fn(usize) -> bool,
        cost: impl Fn(usize) -> f64,
    ) -> usize {
        let a = self.random(n, &out);
        if n < 2 {
            return a;
        }
        // An offset in 1..n makes b ≠ a without a retry loop.
        let mut b = (a + 1 + self.rng.below(n - 1)) % n;
        if out(b) {
            b = next_in(n, b, |i| i == a || out(i));
        }
        if b == a || out(b) || cost(a) <= cost(b) {
            a
        } else {
            b
        }
    }
}

/// The least latency a failed attempt is recorded with; see [`Pool::record`].
pub(crate) const FAILURE_PENALTY: Duration = Duration::from_secs(1);

/// The first index from `start` (wrapping) that `out` does not exclude; `start` when all are.
fn next_in(n: usize, start: usize, out: impl Fn(usize) -> bool) -> usize {
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| !out(i))
        .unwrap_or(start)
}

#[cfg(test)]
pub(super) mod tests;
