//! One endpoint's live statistics, all atomics: in-flight count, peak-EWMA latency, last
//! outcome and the outlier detector's counters. A slot outlives registry updates that keep
//! its address, so an endpoint's history survives a change elsewhere in the set.
//!
//! Times are nanoseconds since the owning pool's epoch; 0 means "never".

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::Outcome;

/// An endpoint's statistics.
#[derive(Debug)]
pub(crate) struct Slot {
    address: Arc<str>,
    /// `address` parsed as a URI authority once, for the request URI of every attempt on
    /// it (an address that is not one fails each attempt to encode).
    authority: Result<http::uri::Authority, http::uri::InvalidUri>,
    /// Attempts picked and not yet finished.
    pub(super) in_flight: AtomicU32,
    /// The peak-EWMA latency estimate in nanoseconds, as `f64` bits.
    rtt: AtomicU64,
    /// When `rtt` was last updated.
    rtt_at: AtomicU64,
    /// The last [`Outcome::code`]; 0 before the first.
    last: AtomicU8,
    /// Failures since the last non-failure.
    pub(super) consecutive_failures: AtomicU32,
    /// Until when the endpoint is ejected; 0 when it is not.
    pub(super) ejected_until: AtomicU64,
    /// The ejection multiplier: how many times it was ejected, less the intervals it then
    /// stayed healthy.
    pub(super) ejections: AtomicU32,
    /// Attempts and successes in the current success-rate interval.
    pub(super) interval_total: AtomicU32,
    pub(super) interval_success: AtomicU32,
}

impl Slot {
    /// A fresh slot whose latency estimate starts at `default_rtt` at time `now`.
    pub(super) fn new(address: Arc<str>, default_rtt: Duration, now: u64) -> Self {
        Self {
            authority: http::uri::Authority::try_from(&*address),
            address,
            in_flight: AtomicU32::new(0),
            rtt: AtomicU64::new((default_rtt.as_nanos() as f64).to_bits()),
            rtt_at: AtomicU64::new(now),
            last: AtomicU8::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            interval_total: AtomicU32::new(0),
            interval_success: AtomicU32::new(0),
        }
    }

    /// The endpoint's `host:port`.
    pub(crate) fn address(&self) -> &Arc<str> {
        &self.address
    }

    /// The endpoint's `host:port` as a URI authority, or why it is not one.
    pub(crate) fn authority(&self) -> Result<&http::uri::Authority, &http::uri::InvalidUri> {
        self.authority.as_ref()
    }

    /// Attempts in flight.
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The last recorded outcome.
    #[cfg(test)]
    pub(crate) fn last_outcome(&self) -> Option<Outcome> {
        Outcome::from_code(self.last.load(Ordering::Relaxed))
    }

    /// Whether the endpoint is ejected at `now`.
    pub(super) fn is_ejected(&self, now: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// The latency estimate at `now` in nanoseconds: the stored estimate decayed toward zero
    /// over the time since it was updated, as tower's `PeakEwma` does, so an idle endpoint
    /// that was slow is eventually tried again. Reading does not write.
    pub(crate) fn rtt_estimate(&self, now: u64, decay_ns: f64) -> f64 {
        let rtt = f64::from_bits(self.rtt.load(Ordering::Relaxed));
        let at = self.rtt_at.load(Ordering::Relaxed);
        let elapsed = now.saturating_sub(at) as f64;
        rtt * (-elapsed / decay_ns).exp()
    }

    /// The latency estimate as of its last update, without decay: what the outlier
    /// detector compares, since endpoints last updated at different times would otherwise
    /// be judged on their idleness rather than their latency.
    pub(crate) fn rtt_recorded(&self) -> f64 {
        f64::from_bits(self.rtt.load(Ordering::Relaxed))
    }

    /// The peak-EWMA cost of sending one more attempt here: latency × (in-flight + 1)
    /// (Linkerd's and Finagle's load metric).
    pub(super) fn cost(&self, now: u64, decay_ns: f64) -> f64 {
        self.rtt_estimate(now, decay_ns) * f64::from(self.in_flight().saturating_add(1))
    }

    /// Folds one attempt's latency into the estimate: a sample above the estimate replaces
    /// it at once (the "peak"), a lower one is blended in with weight `1 − e^(−Δt/decay)`.
    ///
    /// Two racing updates may each start from the same old value and one sample is lost;
    /// the estimate is a load heuristic, and a lock-free update is worth that.
    pub(super) fn observe_rtt(&self, rtt: Duration, now: u64, decay_ns: f64) {
        let sample = rtt.as_nanos() as f64;
        let at = self.rtt_at.swap(now, Ordering::Relaxed);
        let elapsed = now.saturating_sub(at) as f64;
        let weight = (-elapsed / decay_ns).exp();
        let _ = self
            .rtt
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let next = if sample > old {
                    sample
                } else {
                    old * weight + sample * (1.0 - weight)
                };
                Some(next.to_bits())
            });
    }

    /// Stores `outcome` as the last one.
    pub(super) fn set_last(&self, outcome: Outcome) {
        self.last.store(outcome.code(), Ordering::Relaxed);
    }
}
