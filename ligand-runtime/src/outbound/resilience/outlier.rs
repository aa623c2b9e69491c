//! Outlier ejection (Envoy's outlier detection): an endpoint that keeps failing, or fails
//! or lags far more than its peers, leaves the balancer's rotation for a while.
//!
//! Three detectors, all passive (they read the outcomes of real calls):
//!
//! - **Consecutive failures**: [`DEFAULT_CONSECUTIVE_FAILURES`] failures in a row (5xx,
//!   connect failure or no response; a 4xx resets the count) eject at once.
//! - **Success rate**, every [`DEFAULT_INTERVAL`]: among endpoints with at least
//!   [`DEFAULT_SUCCESS_RATE_REQUEST_VOLUME`] attempts in the interval, and only when there are
//!   at least [`DEFAULT_SUCCESS_RATE_MINIMUM_HOSTS`] of them, an endpoint whose success rate is
//!   below `mean − stdev × 1.9` is ejected.
//! - **Latency** (off by default), at the same interval: an endpoint whose peak-EWMA latency
//!   exceeds [`DEFAULT_LATENCY_FACTOR`] × the median of its peers' is ejected (estimates as
//!   last updated, not decayed by idleness; only endpoints with volume in the interval). Off because a
//!   slow endpoint is already avoided by the peak-EWMA balancer; ejecting on latency alone
//!   matters only for the other strategies, and a wrong guess removes capacity.
//!
//! An ejection lasts `base × n` (n = the endpoint's ejection multiplier, raised by each
//! ejection and lowered by each interval it then stays healthy), capped at
//! [`DEFAULT_MAX_EJECTION_TIME`], plus a uniform jitter below
//! [`DEFAULT_EJECTION_JITTER`] so endpoints ejected together do not return together.
//!
//! **The cap**: at most [`DEFAULT_MAX_EJECTION_PERCENT`] % of the set is ejected at once,
//! rounded down, except that one endpoint may always be ejected when the set has at least
//! two (Envoy rounds the same way but then can never eject from a set below ten; one bad
//! endpoint among three is the common case worth handling). A single-endpoint set is never
//! ejected: there is nowhere else to send the call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use smallvec::SmallVec;

use super::config::{ConfigError, duration, positive};
use super::rng::Rng;
use super::slot::Slot;
use super::{Outcome, Sink};

/// Failures in a row that eject an endpoint (Envoy's `consecutive_5xx`).
pub(crate) const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// The first ejection's length; the n-th lasts n times as long (Envoy's
/// `base_ejection_time`).
pub(crate) const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
/// The longest ejection (Envoy's `max_ejection_time`).
pub(crate) const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
/// The upper bound of the random time added to each ejection.
pub(crate) const DEFAULT_EJECTION_JITTER: Duration = Duration::from_secs(3);
/// The largest share of the set ejected at once, in percent (Envoy's
/// `max_ejection_percent`).
pub(crate) const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;
/// How often the success-rate and latency detectors run (Envoy's `interval`).
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Success rate: how many standard deviations below the mean ejects (Envoy's
/// `success_rate_stdev_factor`, 1900 / 1000).
pub(crate) const DEFAULT_SUCCESS_RATE_STDEV_FACTOR: f64 = 1.9;
/// Success rate: endpoints with enough volume needed for the statistics to mean anything
/// (Envoy's `success_rate_minimum_hosts`).
pub(crate) const DEFAULT_SUCCESS_RATE_MINIMUM_HOSTS: u32 = 5;
/// Success rate: attempts an endpoint needs in the interval to be judged (Envoy's
/// `success_rate_request_volume`).
pub(crate) const DEFAULT_SUCCESS_RATE_REQUEST_VOLUME: u32 = 100;
/// Latency: how many times the peers' median latency ejects.
pub(crate) const DEFAULT_LATENCY_FACTOR: f64 = 5.0;
/// Latency: endpoints with enough volume needed (the one judged and at least two peers).
pub(crate) const DEFAULT_LATENCY_MINIMUM_HOSTS: u32 = 3;
/// Latency: attempts an endpoint needs in the interval to be judged or to count as a peer.
pub(crate) const DEFAULT_LATENCY_REQUEST_VOLUME: u32 = 100;

/// `[outbound.outlier]`: when endpoints are ejected and for how long.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct OutlierConfig {
    /// Failures in a row that eject; 0 turns this detector off.
    pub consecutive_failures: u32,
    /// The first ejection's length.
    #[serde(deserialize_with = "duration")]
    pub base_ejection_time: Duration,
    /// The longest ejection.
    #[serde(deserialize_with = "duration")]
    pub max_ejection_time: Duration,
    /// The upper bound of the random time added to each ejection.
    #[serde(deserialize_with = "duration")]
    pub ejection_jitter: Duration,
    /// The largest share of the set ejected at once, in percent (see the module docs for
    /// the one-endpoint allowance).
    pub max_ejection_percent: u32,
    /// How often the success-rate and latency detectors run.
    #[serde(deserialize_with = "duration")]
    pub interval: Duration,
    /// The success-rate detector.
    pub success_rate: SuccessRateEjection,
    /// The latency detector.
    pub latency: LatencyEjection,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection_time: DEFAULT_BASE_EJECTION_TIME,
            max_ejection_time: DEFAULT_MAX_EJECTION_TIME,
            ejection_jitter: DEFAULT_EJECTION_JITTER,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
            interval: DEFAULT_INTERVAL,
            success_rate: SuccessRateEjection::default(),
            latency: LatencyEjection::default(),
        }
    }
}

impl OutlierConfig {
    /// Checks every setting; the message names the one at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        positive("outlier.base_ejection_time", self.base_ejection_time)?;
        positive("outlier.interval", self.interval)?;
        if self.max_ejection_time < self.base_ejection_time {
            return Err(ConfigError::Order {
                setting: "outlier.max_ejection_time",
                other: "outlier.base_ejection_time",
            });
        }
        if self.max_ejection_percent > 100 {
            return Err(ConfigError::OutOfRange {
                setting: "outlier.max_ejection_percent",
                value: self.max_ejection_percent.to_string(),
                expected: "0 to 100",
            });
        }
        let rate = &self.success_rate;
        if !(rate.stdev_factor.is_finite() && rate.stdev_factor > 0.0) {
            return Err(ConfigError::OutOfRange {
                setting: "outlier.success_rate.stdev_factor",
                value: rate.stdev_factor.to_string(),
                expected: "a number above 0",
            });
        }
        if rate.minimum_hosts < 2 {
            return Err(ConfigError::OutOfRange {
                setting: "outlier.success_rate.minimum_hosts",
                value: rate.minimum_hosts.to_string(),
                expected: "at least 2",
            });
        }
        let latency = &self.latency;
        if !(latency.factor.is_finite() && latency.factor > 1.0) {
            return Err(ConfigError::OutOfRange {
                setting: "outlier.latency.factor",
                value: latency.factor.to_string(),
                expected: "a number above 1",
            });
        }
        if latency.minimum_hosts < 2 {
            return Err(ConfigError::OutOfRange {
                setting: "outlier.latency.minimum_hosts",
                value: latency.minimum_hosts.to_string(),
                expected: "at least 2",
            });
        }
        Ok(())
    }

    /// How many endpoints of a set of `n` may be ejected at once.
    pub(crate) fn max_ejected(&self, n: usize) -> usize {
        if n < 2 {
            return 0;
        }
        (n * self.max_ejection_percent as usize / 100).max(1)
    }

    /// The ejection length for multiplier `times` (≥ 1), before jitter.
    pub(crate) fn ejection_time(&self, times: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(times)
            .min(self.max_ejection_time)
    }
}

/// `[outbound.outlier.success_rate]`: Envoy's success-rate outlier detection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SuccessRateEjection {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Ejects below `mean − stdev × stdev_factor`.
    pub stdev_factor: f64,
    /// Endpoints with enough volume needed before any is judged.
    pub minimum_hosts: u32,
    /// Attempts an endpoint needs in the interval to be judged.
    pub request_volume: u32,
}

impl Default for SuccessRateEjection {
    fn default() -> Self {
        Self {
            enabled: true,
            stdev_factor: DEFAULT_SUCCESS_RATE_STDEV_FACTOR,
            minimum_hosts: DEFAULT_SUCCESS_RATE_MINIMUM_HOSTS,
            request_volume: DEFAULT_SUCCESS_RATE_REQUEST_VOLUME,
        }
    }
}

/// `[outbound.outlier.latency]`: ejection of an endpoint far slower than its peers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LatencyEjection {
    /// Whether the detector runs (off by default; see the module docs).
    pub enabled: bool,
    /// Ejects above `factor × median of the peers' latency`.
    pub factor: f64,
    /// Endpoints with enough volume needed before any is judged.
    pub minimum_hosts: u32,
    /// Attempts an endpoint needs in the interval to be judged or to count as a peer.
    pub request_volume: u32,
}

impl Default for LatencyEjection {
    fn default() -> Self {
        Self {
            enabled: false,
            factor: DEFAULT_LATENCY_FACTOR,
            minimum_hosts: DEFAULT_LATENCY_MINIMUM_HOSTS,
            request_volume: DEFAULT_LATENCY_REQUEST_VOLUME,
        }
    }
}

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EjectionReason {
    /// Too many failures in a row.
    ConsecutiveFailures,
    /// A success rate far below its peers'.
    SuccessRate,
    /// A latency far above its peers'.
    Latency,
}

/// An ejection or a reinstatement, for telemetry and health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutlierEvent {
    /// The endpoint left the rotation.
    Ejected {
        /// The endpoint.
        address: Arc<str>,
        /// Why.
        reason: EjectionReason,
        /// Its ejection multiplier, this ejection included.
        times: u32,
        /// How long it stays out, jitter included.
        duration: Duration,
    },
    /// The endpoint's ejection expired and it is back in the rotation.
    Reinstated {
        /// The endpoint.
        address: Arc<str>,
    },
}

/// Events gathered under the detector's lock and emitted after it is released.
type Pending = SmallVec<[OutlierEvent; 4]>;

/// The detector of one pool: its settings, the lock that serialises ejection decisions (so
/// two racing ejections cannot both pass the cap) and the next interval's deadline.
pub(super) struct Detector {
    pub(super) config: OutlierConfig,
    deciding: Mutex<()>,
    next_sweep: AtomicU64,
    sink: Sink<OutlierEvent>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Detector {
    pub(super) fn new(config: OutlierConfig, sink: Sink<OutlierEvent>) -> Self {
        let first = nanos(config.interval);
        Self {
            config,
            deciding: Mutex::new(()),
            next_sweep: AtomicU64::new(first),
            sink,
        }
    }

    /// Records one attempt's outcome on `slot` (a member of `set`, or a slot an update has
    /// since removed) and runs the interval detectors when their time has come.
    pub(super) fn observe(
        &self,
        set: &[Arc<Slot>],
        slot: &Slot,
        outcome: Outcome,
        now: u64,
        rng: &Rng,
    ) {
        let mut events = Pending::new();
        slot.interval_total.fetch_add(1, Ordering::Relaxed);
        if outcome.is_failure() {
            let failures = slot.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            let threshold = self.config.consecutive_failures;
            if threshold > 0 && failures >= threshold {
                let _decide = self.deciding.lock().unwrap_or_else(PoisonError::into_inner);
                // A slot removed from the set is no longer balanced over; ejecting it would
                // only spend the cap.
                let member = set.iter().any(|s| std::ptr::eq(s.as_ref(), slot));
                if member && !slot.is_ejected(now) {
                    self.eject(
                        set,
                        slot,
                        EjectionReason::ConsecutiveFailures,
                        now,
                        rng,
                        &mut events,
                    );
                }
            }
        } else {
            slot.interval_success.fetch_add(1, Ordering::Relaxed);
            slot.consecutive_failures.store(0, Ordering::Relaxed);
        }
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_sweep
                .compare_exchange(
                    due,
                    now.saturating_add(nanos(self.config.interval)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let _decide = self.deciding.lock().unwrap_or_else(PoisonError::into_inner);
            self.sweep(set, now, rng, &mut events);
        }
        for event in &events {
            (self.sink)(event);
        }
    }

    /// Ejects `slot` unless the cap is reached. Runs under `deciding`.
    fn eject(
        &self,
        set: &[Arc<Slot>],
        slot: &Slot,
        reason: EjectionReason,
        now: u64,
        rng: &Rng,
        events: &mut Pending,
    ) -> bool {
        let ejected = set.iter().filter(|s| s.is_ejected(now)).count();
        if ejected >= self.config.max_ejected(set.len()) {
            return false;
        }
        let times = slot
            .ejections
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let duration =
            self.config.ejection_time(times) + rng.duration_below(self.config.ejection_jitter);
        slot.ejected_until.store(
            now.saturating_add(nanos(duration)).max(1),
            Ordering::Relaxed,
        );
        slot.consecutive_failures.store(0, Ordering::Relaxed);
        events.push(OutlierEvent::Ejected {
            address: slot.address().clone(),
            reason,
            times,
            duration,
        });
        true
    }

    /// The interval's work: reinstate expired ejections, lower the multiplier of endpoints
    /// that stayed in, then run the success-rate and latency detectors over the interval's
    /// counters and reset them. Runs under `deciding`.
    fn sweep(&self, set: &[Arc<Slot>], now: u64, rng: &Rng, events: &mut Pending) {
        let mut volume = Vec::with_capacity(set.len());
        for slot in set {
            let until = slot.ejected_until.load(Ordering::Relaxed);
            if until != 0 && until <= now {
                slot.ejected_until.store(0, Ordering::Relaxed);
                events.push(OutlierEvent::Reinstated {
                    address: slot.address().clone(),
                });
            } else if until == 0 {
                let _ = slot
                    .ejections
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
            let total = slot.interval_total.swap(0, Ordering::Relaxed);
            let success = slot.interval_success.swap(0, Ordering::Relaxed);
            volume.push((total, success));
        }

        let rate = &self.config.success_rate;
        if rate.enabled {
            let mut rates: Vec<(f64, usize)> = volume
                .iter()
                .enumerate()
                .filter(|&(i, &(total, _))| {
                    total >= rate.request_volume.max(1) && !set[i].is_ejected(now)
                })
                .map(|(i, &(total, success))| (f64::from(success) / f64::from(total), i))
                .collect();
            if rates.len() >= rate.minimum_hosts as usize {
                let n = rates.len() as f64;
                let mean = rates.iter().map(|r| r.0).sum::<f64>() / n;
                let variance = rates.iter().map(|r| (r.0 - mean).powi(2)).sum::<f64>() / n;
                let threshold = mean - variance.sqrt() * rate.stdev_factor;
                rates.sort_by(|a, b| a.0.total_cmp(&b.0));
                for &(r, i) in &rates {
                    if r >= threshold
                        || !self.eject(set, &set[i], EjectionReason::SuccessRate, now, rng, events)
                    {
                        break;
                    }
                }
            }
        }

        let latency = &self.config.latency;
        if latency.enabled {
            let judged: Vec<(f64, usize)> = volume
                .iter()
                .enumerate()
                .filter(|&(i, &(total, _))| {
                    total >= latency.request_volume.max(1) && !set[i].is_ejected(now)
                })
                .map(|(i, _)| (set[i].rtt_recorded(), i))
                .collect();
            if judged.len() >= latency.minimum_hosts as usize {
                let mut others = Vec::with_capacity(judged.len());
                let mut slow: Vec<(f64, usize)> = Vec::new();
                for &(rtt, i) in &judged {
                    others.clear();
                    others.extend(judged.iter().filter(|j| j.1 != i).map(|j| j.0));
                    others.sort_by(f64::total_cmp);
                    let median = median(&others);
                    if rtt > median * latency.factor {
                        slow.push((rtt / median.max(1.0), i));
                    }
                }
                // The slowest first, so the cap keeps the worst out.
                slow.sort_by(|a, b| b.0.total_cmp(&a.0));
                for &(_, i) in &slow {
                    if !self.eject(set, &set[i], EjectionReason::Latency, now, rng, events) {
                        break;
                    }
                }
            }
        }
    }
}

/// The median of sorted, non-empty `values`.
fn median(values: &[f64]) -> f64 {
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `d` in nanoseconds, saturating.
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
