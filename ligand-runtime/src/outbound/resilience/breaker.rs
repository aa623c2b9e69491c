//! The circuit breaker of one target service: when calls to it keep failing, further calls
//! fail fast for a cool-down instead of piling onto a service that cannot answer.
//!
//! - **Closed**: calls pass; outcomes fill a rolling window of [`DEFAULT_WINDOW`] in ten
//!   buckets. The circuit opens when the window holds at least
//!   [`DEFAULT_MINIMUM_REQUESTS`] outcomes of which at least [`DEFAULT_FAILURE_RATIO`]
//!   failed, or after [`DEFAULT_CONSECUTIVE_FAILURES`] failures in a row.
//! - **Open**: calls are refused for the cool-down: [`DEFAULT_OPEN_DURATION`], doubled
//!   each time the circuit reopens without having closed, up to
//!   [`DEFAULT_MAX_OPEN_DURATION`].
//! - **Half-open**: at most [`DEFAULT_HALF_OPEN_PROBES`] calls are let through at once. A
//!   probe's success closes the circuit (and resets the cool-down); its failure reopens it.
//!
//! Failures are [`Outcome::is_failure`]: 4xx answers are the caller's, not the service's.
//! Outcomes of calls admitted before the last transition are ignored, so a slow call let
//! through while closed cannot close a circuit that has since opened.
//!
//! Defaults are those of resilience4j and Polly where they agree (a 50 % failure ratio over
//! a short window, a 5 s break growing to a minute), with a smaller minimum volume than
//! resilience4j's 100 because one service's calls to another are often a few per second.
//!
//! The breaker fails closed: if its state lock is poisoned, every call is refused.

use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::config::{ConfigError, duration, positive, unit_ratio};
use super::outlier::nanos;
use super::{Outcome, Sink};

/// The rolling window the failure ratio is computed over.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// The failure ratio that opens the circuit.
pub(crate) const DEFAULT_FAILURE_RATIO: f64 = 0.5;
/// Outcomes the window needs before its ratio is trusted.
pub(crate) const DEFAULT_MINIMUM_REQUESTS: u32 = 20;
/// Failures in a row that open the circuit whatever the volume.
pub(crate) const DEFAULT_CONSECUTIVE_FAILURES: u32 = 10;
/// The first cool-down.
pub(crate) const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(5);
/// The longest cool-down.
pub(crate) const DEFAULT_MAX_OPEN_DURATION: Duration = Duration::from_secs(60);
/// Calls let through at once while half-open.
pub(crate) const DEFAULT_HALF_OPEN_PROBES: u32 = 3;

/// Buckets of the rolling window.
const BUCKETS: usize = 10;

/// `[outbound.breaker]`: when a target's circuit opens and how it recovers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The rolling window.
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// The failure ratio that opens the circuit, from 0.0 to 1.0.
    pub failure_ratio: f64,
    /// Outcomes the window needs before its ratio is trusted.
    pub minimum_requests: u32,
    /// Failures in a row that open the circuit; 0 turns this trigger off.
    pub consecutive_failures: u32,
    /// The first cool-down.
    #[serde(deserialize_with = "duration")]
    pub open_duration: Duration,
    /// The longest cool-down.
    #[serde(deserialize_with = "duration")]
    pub max_open_duration: Duration,
    /// Calls let through at once while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            failure_ratio: DEFAULT_FAILURE_RATIO,
            minimum_requests: DEFAULT_MINIMUM_REQUESTS,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            open_duration: DEFAULT_OPEN_DURATION,
            max_open_duration: DEFAULT_MAX_OPEN_DURATION,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
        }
    }
}

impl BreakerConfig {
    /// Checks every setting; the message names the one at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        positive("breaker.window", self.window)?;
        positive("breaker.open_duration", self.open_duration)?;
        if self.max_open_duration < self.open_duration {
            return Err(ConfigError::Order {
                setting: "breaker.max_open_duration",
                other: "breaker.open_duration",
            });
        }
        unit_ratio("breaker.failure_ratio", self.failure_ratio)?;
        if self.failure_ratio == 0.0 {
            // A zero ratio would open on a window of successes.
            return Err(ConfigError::OutOfRange {
                setting: "breaker.failure_ratio",
                value: "0".into(),
                expected: "a ratio above 0.0, up to 1.0",
            });
        }
        if self.minimum_requests == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "breaker.minimum_requests",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if self.half_open_probes == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "breaker.half_open_probes",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        Ok(())
    }

    /// The cool-down after the `trips`-th opening in a row (≥ 1).
    pub(crate) fn cool_down(&self, trips: u32) -> Duration {
        let doublings = trips.saturating_sub(1).min(31);
        self.open_duration
            .saturating_mul(1 << doublings)
            .min(self.max_open_duration)
    }
}

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum State {
    /// Calls pass.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// A bounded number of probe calls pass.
    HalfOpen,
}

/// A change of state, for telemetry and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    /// The state before.
    pub(crate) from: State,
    /// The state after.
    pub(crate) to: State,
}

/// Why the breaker refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BreakerError {
    /// The circuit is open.
    #[error("circuit open; next probe in {retry_after:?}")]
    Open {
        /// When the circuit turns half-open.
        retry_after: Duration,
    },
    /// The circuit is half-open and every probe slot is taken.
    #[error("circuit half-open and its probes are in flight")]
    ProbesBusy,
    /// The breaker's state is unusable after a panic; calls are refused rather than let
    /// through unchecked.
    #[error("circuit breaker state poisoned")]
    Poisoned,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The window slice this bucket counts (time since the epoch / bucket width).
    slice: u64,
    ok: u32,
    failed: u32,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Raised by every transition; admissions from an older generation are not counted.
    generation: u64,
    buckets: [Bucket; BUCKETS],
    consecutive: u32,
    open_until: Instant,
    /// Openings since the circuit last closed.
    trips: u32,
    /// Probes admitted and not yet finished.
    probes: u32,
    /// The slice of the latest failure counted: no bucket of a later slice holds one, so a
    /// window that begins after it holds none.
    last_failure: Option<u64>,
}

/// The circuit breaker of one target service.
pub(crate) struct Breaker {
    config: BreakerConfig,
    epoch: Instant,
    bucket_ns: u64,
    inner: Mutex<Inner>,
    sink: Sink<Transition>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("config", &self.config)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// A call the breaker let through; report how it ended with [`record`](Self::record).
/// Dropped unrecorded (the call was cancelled), it counts as nothing, but a half-open probe
/// slot it held is freed.
#[must_use = "an admission reports the call's outcome to the breaker"]
#[derive(Debug)]
pub(crate) struct Admission<'a> {
    breaker: &'a Breaker,
    generation: u64,
    probe: bool,
}

impl Admission<'_> {
    /// Whether this call is a half-open probe.
    #[cfg(test)]
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the call's outcome.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the stack reports with its clock read")
    )]
    pub(crate) fn record(self, outcome: Outcome) {
        self.record_at(outcome, Instant::now());
    }

    /// Reports the call's outcome, as it stood at `now`.
    pub(crate) fn record_at(self, outcome: Outcome, now: Instant) {
        self.breaker
            .finish(self.generation, self.probe, Some(outcome), now);
        std::mem::forget(self);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.breaker
            .finish(self.generation, self.probe, None, Instant::now());
    }
}

impl Breaker {
    /// A closed breaker with validated settings; transitions go to `sink`.
    pub(crate) fn new(config: BreakerConfig, sink: Sink<Transition>) -> Result<Self, ConfigError> {
        config.validate()?;
        let now = Instant::now();
        let bucket_ns = (nanos(config.window) / BUCKETS as u64).max(1);
        Ok(Self {
            config,
            epoch: now,
            bucket_ns,
            inner: Mutex::new(Inner {
                state: State::Closed,
                generation: 0,
                buckets: [Bucket::default(); BUCKETS],
                consecutive: 0,
                open_until: now,
                trips: 0,
                probes: 0,
                last_failure: None,
            }),
            sink,
        })
    }

    /// The current state (an open circuit whose cool-down has ended reads as half-open).
    pub(crate) fn state(&self) -> State {
        let Ok(mut inner) = self.inner.lock() else {
            return State::Open;
        };
        let transition = self.expire(&mut inner, Instant::now());
        let state = inner.state;
        drop(inner);
        self.emit(transition);
        state
    }

    /// Asks to make one call.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the stack asks with its clock read")
    )]
    pub(crate) fn allow(&self) -> Result<Admission<'_>, BreakerError> {
        self.allow_at(Instant::now())
    }

    /// [`allow`](Self::allow) at `now` (a clock read the caller shares).
    pub(crate) fn allow_at(&self, now: Instant) -> Result<Admission<'_>, BreakerError> {
        let mut inner = self.lock()?;
        let transition = self.expire(&mut inner, now);
        let result = match inner.state {
            State::Closed => Ok(Admission {
                breaker: self,
                generation: inner.generation,
                probe: false,
            }),
            State::Open => Err(BreakerError::Open {
                retry_after: inner.open_until.saturating_duration_since(now),
            }),
            State::HalfOpen if inner.probes < self.config.half_open_probes => {
                inner.probes += 1;
                Ok(Admission {
                    breaker: self,
                    generation: inner.generation,
                    probe: true,
                })
            }
            State::HalfOpen => Err(BreakerError::ProbesBusy),
        };
        drop(inner);
        self.emit(transition);
        result
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, BreakerError> {
        self.inner.lock().map_err(|_| BreakerError::Poisoned)
    }

    /// Open → half-open once the cool-down is over.
    fn expire(&self, inner: &mut Inner, now: Instant) -> Option<Transition> {
        (inner.state == State::Open && now >= inner.open_until)
            .then(|| self.enter(inner, State::HalfOpen, now))
    }

    /// Moves to `to`, starting a new generation.
    fn enter(&self, inner: &mut Inner, to: State, now: Instant) -> Transition {
        let from = inner.state;
        inner.state = to;
        inner.generation += 1;
        inner.probes = 0;
        inner.consecutive = 0;
        inner.buckets = [Bucket::default(); BUCKETS];
        match to {
            State::Open => {
                inner.trips = inner.trips.saturating_add(1);
                inner.open_until = now + self.config.cool_down(inner.trips);
            }
            State::Closed => inner.trips = 0,
            State::HalfOpen => {}
        }
        Transition { from, to }
    }

    /// The end of an admitted call: `None` when it was cancelled.
    fn finish(&self, generation: u64, probe: bool, outcome: Option<Outcome>, now: Instant) {
        // Poisoned: `allow` refuses every call, so nothing is lost by not counting.
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if generation != inner.generation {
            return;
        }
        let transition = match (inner.state, outcome) {
            (State::HalfOpen, _) if probe => {
                inner.probes = inner.probes.saturating_sub(1);
                match outcome {
                    Some(o) if o.is_failure() => Some(self.enter(&mut inner, State::Open, now)),
                    Some(_) => Some(self.enter(&mut inner, State::Closed, now)),
                    None => None,
                }
            }
            (State::Closed, Some(outcome)) => self.count(&mut inner, outcome, now),
            _ => None,
        };
        drop(inner);
        self.emit(transition);
    }

    /// Adds a closed-state outcome to the window; opens the circuit if it trips.
    fn count(&self, inner: &mut Inner, outcome: Outcome, now: Instant) -> Option<Transition> {
        let slice = nanos(now.saturating_duration_since(self.epoch)) / self.bucket_ns;
        let bucket = &mut inner.buckets[(slice % BUCKETS as u64) as usize];
        if bucket.slice != slice {
            *bucket = Bucket {
                slice,
                ..Bucket::default()
            };
        }
        let oldest = slice.saturating_sub(BUCKETS as u64 - 1);
        if outcome.is_failure() {
            bucket.failed = bucket.failed.saturating_add(1);
            inner.consecutive = inner.consecutive.saturating_add(1);
            inner.last_failure = Some(inner.last_failure.map_or(slice, |s| s.max(slice)));
        } else {
            bucket.ok = bucket.ok.saturating_add(1);
            inner.consecutive = 0;
            // A success in a window without failures trips neither test (the ratio is above
            // zero, the streak is broken): the common case skips the window's sum.
            if inner.last_failure.is_none_or(|last| last < oldest) {
                return None;
            }
        }
        let (ok, failed) = inner
            .buckets
            .iter()
            .filter(|b| b.slice >= oldest && b.slice <= slice)
            .fold((0u64, 0u64), |(ok, failed), b| {
                (ok + u64::from(b.ok), failed + u64::from(b.failed))
            });
        let total = ok + failed;
        let by_ratio = total >= u64::from(self.config.minimum_requests)
            && failed as f64 >= self.config.failure_ratio * total as f64;
        let by_streak = self.config.consecutive_failures > 0
            && inner.consecutive >= self.config.consecutive_failures;
        (by_ratio || by_streak).then(|| self.enter(inner, State::Open, now))
    }

    fn emit(&self, transition: Option<Transition>) {
        if let Some(transition) = transition {
            (self.sink)(&transition);
        }
    }
}

#[cfg(test)]
mod tests;
