//! Retries of one target service: which failures are retried, how many times, how soon, and
//! the budget that keeps retries from multiplying the load on a failing service.
//!
//! **Policy.** A request that never left ([`Outcome::ConnectFailed`]) is always retried: the
//! server cannot have acted on it. A 5xx or a missing response ([`Outcome::NoResponse`]) is
//! retried only for idempotent methods (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, PUT, DELETE,
//! TRACE) or for a method the configuration declares idempotent for this target
//! (`treat_as_idempotent`). A 4xx is never retried: asking again gets the same answer.
//!
//! **Attempts.** At most [`DEFAULT_MAX_ATTEMPTS`] attempts in all, the first included.
//!
//! **Backoff.** "Full jitter" (AWS Architecture Blog, *Exponential Backoff and Jitter*): before
//! retry `n` (0-based) the call waits a uniform time in `[0, min(max, base × 2ⁿ))`, with
//! [`DEFAULT_BACKOFF_BASE`] and [`DEFAULT_BACKOFF_MAX`].
//!
//! **Budget.** Retries may add at most [`DEFAULT_BUDGET_RATIO`] of the calls made in the last
//! [`DEFAULT_BUDGET_TTL`], plus a floor of [`DEFAULT_BUDGET_MIN_PER_SECOND`] retries per
//! second so a quiet caller can still retry (Finagle's `RetryBudget`, Linkerd's and tower's
//! defaults). It is tower's [`TpsBudget`], whose semantics are exactly these: every call
//! deposits, every retry withdraws `1 / ratio` deposits, deposits expire after the TTL, and
//! the floor is a standing reserve of `min_per_second × ttl` retries. Its constructor's
//! preconditions (a TTL of 1 to 60 s, a bounded ratio and floor) are checked, more strictly,
//! by [`RetryConfig::validate`] (a ratio of at most 1.0), so it is never built from a value it
//! would panic on. The ratio
//! is applied as `1 / ⌊1 / ratio⌋` (0.3 acts as ⅓), tower's integer arithmetic.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

use super::Outcome;
use super::config::{ConfigError, duration, positive, unit_ratio};
use super::fleet::{FleetShare, Verdict};
use super::rng::Rng;

/// Attempts per call, the first included.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The backoff before the first retry is below this.
pub(crate) const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
/// No backoff is this long or longer.
pub(crate) const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Retries as a share of calls.
pub(crate) const DEFAULT_BUDGET_RATIO: f64 = 0.2;
/// Retries per second always allowed.
pub(crate) const DEFAULT_BUDGET_MIN_PER_SECOND: u32 = 10;
/// How long a call counts toward the budget.
pub(crate) const DEFAULT_BUDGET_TTL: Duration = Duration::from_secs(10);

/// The most attempts accepted in configuration.
const MAX_ATTEMPTS: u32 = 10;
/// The largest floor accepted (tower needs it below `i32::MAX`).
const MAX_MIN_PER_SECOND: u32 = 1_000_000;

/// `[outbound.retry]`: which failures are retried, how often and how soon.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts per call, the first included; 1 turns retries off.
    pub max_attempts: u32,
    /// The backoff scale.
    #[serde(deserialize_with = "duration")]
    pub backoff_base: Duration,
    /// The backoff cap.
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Duration,
    /// Methods whose 5xx and missing responses are retried although HTTP does not call
    /// them idempotent (`"POST"` for a target whose POSTs carry an idempotency key).
    pub treat_as_idempotent: Vec<String>,
    /// Retries as a share of calls, 0.0 to 1.0.
    pub budget_ratio: f64,
    /// Retries per second always allowed.
    pub budget_min_per_second: u32,
    /// How long a call counts toward the budget, 1 s to 60 s.
    #[serde(deserialize_with = "duration")]
    pub budget_ttl: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            treat_as_idempotent: Vec::new(),
            budget_ratio: DEFAULT_BUDGET_RATIO,
            budget_min_per_second: DEFAULT_BUDGET_MIN_PER_SECOND,
            budget_ttl: DEFAULT_BUDGET_TTL,
        }
    }
}

impl RetryConfig {
    /// Checks every setting; the message names the one at fault.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.methods().map(drop)?;
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ConfigError::OutOfRange {
                setting: "retry.max_attempts",
                value: self.max_attempts.to_string(),
                expected: "1 to 10",
            });
        }
        positive("retry.backoff_base", self.backoff_base)?;
        if self.backoff_max < self.backoff_base {
            return Err(ConfigError::Order {
                setting: "retry.backoff_max",
                other: "retry.backoff_base",
            });
        }
        unit_ratio("retry.budget_ratio", self.budget_ratio)?;
        if self.budget_min_per_second > MAX_MIN_PER_SECOND {
            return Err(ConfigError::OutOfRange {
                setting: "retry.budget_min_per_second",
                value: self.budget_min_per_second.to_string(),
                expected: "at most 1000000",
            });
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&self.budget_ttl) {
            return Err(ConfigError::OutOfRange {
                setting: "retry.budget_ttl",
                value: humantime::format_duration(self.budget_ttl).to_string(),
                expected: "1s to 60s",
            });
        }
        Ok(())
    }

    /// `treat_as_idempotent` parsed.
    fn methods(&self) -> Result<Vec<Method>, ConfigError> {
        self.treat_as_idempotent
            .iter()
            .map(|name| {
                let canonical = !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase());
                Method::from_bytes(name.as_bytes())
                    .ok()
                    .filter(|_| canonical)
                    .ok_or_else(|| ConfigError::Method {
                        setting: "retry.treat_as_idempotent",
                        value: name.clone(),
                    })
            })
            .collect()
    }
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff scaled by `base` and capped at `max`.
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The upper bound of the wait before retry `retry` (0-based): `min(max, base × 2ʳᵉᵗʳʸ)`.
    pub(crate) fn ceiling(&self, retry: u32) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.max)
    }

    /// The wait before retry `retry`: uniform in `[0, ceiling(retry))`.
    pub(crate) fn delay(&self, retry: u32, rng: &Rng) -> Duration {
        rng.duration_below(self.ceiling(retry))
    }
}

/// A retry budget: calls deposit, retries withdraw; with a fleet view, a retry also needs
/// this instance's share of the fleet budget ([`fleet`](super::fleet)).
pub(crate) struct RetryBudget {
    inner: TpsBudget,
    fleet: Option<Arc<FleetShare>>,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("local", &self.inner)
            .field("fleet", &self.fleet.is_some())
            .finish()
    }
}

impl RetryBudget {
    /// A budget of `ratio` of the calls in the last `ttl`, plus `min_per_second` retries per
    /// second. The arguments must have passed [`RetryConfig::validate`].
    fn new(ratio: f64, min_per_second: u32, ttl: Duration) -> Self {
        Self {
            inner: TpsBudget::new(ttl, min_per_second, ratio as f32),
            fleet: None,
        }
    }

    /// The budget of a validated configuration.
    pub(crate) fn from_config(config: &RetryConfig) -> Self {
        Self::new(
            config.budget_ratio,
            config.budget_min_per_second,
            config.budget_ttl,
        )
    }

    /// The same budget joined to a target's fleet counters.
    pub(crate) fn with_fleet(mut self, share: Arc<FleetShare>) -> Self {
        self.fleet = Some(share);
        self
    }

    /// Counts one call (not one attempt): call once per call, before its first attempt.
    pub(crate) fn deposit(&self) {
        self.inner.deposit();
        if let Some(fleet) = &self.fleet {
            fleet.deposit();
        }
    }

    /// Takes one retry from the budget; `false` when it is spent. The local budget is asked
    /// first; a retry it allows and the fleet share refuses is lost from the local budget,
    /// which only errs towards fewer retries.
    pub(crate) fn withdraw(&self) -> bool {
        if !self.inner.withdraw() {
            return false;
        }
        match &self.fleet {
            None => true,
            Some(fleet) => fleet.withdraw(Instant::now()) != Verdict::Denied,
        }
    }
}

/// Why a failed attempt is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// The outcome is not retryable for this method (a success, a 4xx, or a 5xx or missing
    /// response to a non-idempotent method).
    NotRetryable,
    /// The call has made all its attempts.
    AttemptsExhausted,
    /// The target's retry budget is spent.
    BudgetExhausted,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Try again after waiting `after`.
    Retry {
        /// The backoff.
        after: Duration,
    },
    /// Return the attempt's result.
    Stop(StopReason),
}

/// The retry policy, backoff and budget of one target service.
#[derive(Debug)]
pub(crate) struct Retry {
    max_attempts: u32,
    backoff: Backoff,
    treat_as_idempotent: Vec<Method>,
    budget: RetryBudget,
}

impl Retry {
    /// The retry settings of one target, validated.
    pub(crate) fn new(config: &RetryConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            max_attempts: config.max_attempts,
            backoff: Backoff::new(config.backoff_base, config.backoff_max),
            treat_as_idempotent: config.methods()?,
            budget: RetryBudget::from_config(config),
        })
    }

    /// The same settings with a target's fleet counters joined to the budget.
    pub(crate) fn with_fleet(mut self, share: Arc<FleetShare>) -> Self {
        self.budget = self.budget.with_fleet(share);
        self
    }

    /// The target's budget; [`RetryBudget::deposit`] once per call.
    pub(crate) fn budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// Whether an attempt of `method` that ended with `outcome` may be retried at all.
    pub(crate) fn retryable(&self, method: &Method, outcome: Outcome) -> bool {
        match outcome {
            Outcome::ConnectFailed => true,
            Outcome::ServerError | Outcome::NoResponse => {
                is_idempotent(method) || self.treat_as_idempotent.contains(method)
            }
            Outcome::Success | Outcome::ClientError => false,
        }
    }

    /// Decides after attempt number `attempts` (1 for the first) of `method` ended with
    /// `outcome`. The budget is drawn from only when everything else allows the retry.
    pub(crate) fn decide(
        &self,
        method: &Method,
        attempts: u32,
        outcome: Outcome,
        rng: &Rng,
    ) -> Decision {
        if !self.retryable(method, outcome) {
            return Decision::Stop(StopReason::NotRetryable);
        }
        if attempts >= self.max_attempts {
            return Decision::Stop(StopReason::AttemptsExhausted);
        }
        if !self.budget.withdraw() {
            return Decision::Stop(StopReason::BudgetExhausted);
        }
        Decision::Retry {
            after: self.backoff.delay(attempts.saturating_sub(1), rng),
        }
    }
}

/// RFC 9110 §9.2.2's idempotent methods.
fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(method)
}

#[cfg(test)]
mod tests;
