//! One target's resilience stages as one value, applied in the documented order around an
//! exchange the caller supplies: the transport passes its HTTPS exchange, a benchmark or a
//! test passes one that answers at once, and both run the same code.

use std::future::Future;
use std::sync::Arc;

use http::Method;
use tokio::time::Instant;

use super::balance::Pool;
use super::breaker::{Breaker, BreakerError, Transition};
use super::bulkhead::{Bulkhead, BulkheadError, BulkheadPermit};
use super::config::{ConfigError, ResilienceConfig};
use super::fleet::FleetShare;
use super::outlier::OutlierEvent;
use super::retry::{Decision, Retry};
use super::rng::Rng;
use super::slot::Slot;
use super::{Outcome, Sink};

/// The balancer, outlier detector, circuit breaker, bulkhead and retry policy of one target.
#[derive(Debug)]
pub(crate) struct Stack {
    pool: Arc<Pool>,
    breaker: Breaker,
    bulkhead: Bulkhead,
    retry: Retry,
    rng: Rng,
}

/// Why the stack ended a call without an answer from the exchange.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The bulkhead's slots and queue are full, or it is closed.
    Overloaded(BulkheadError),
    /// The circuit is open, or its half-open probes are taken.
    CircuitOpen(BreakerError),
    /// No endpoint is in the rotation.
    NoEndpoints,
    /// The call's deadline passed: waiting for a slot, in an attempt or before a retry.
    TimedOut,
}

/// How a call that did not succeed ended.
#[derive(Debug)]
pub(crate) enum Ended<E> {
    /// The stack refused it.
    Refused(Refusal),
    /// The last attempt's error, when no retry followed it.
    Failed(E),
}

/// What the call's attempts did, for its record; kept up to date as they run so that it is
/// complete however the call ends.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// Attempts started.
    pub(crate) attempts: u32,
    /// The endpoint of the last attempt; `None` before the first.
    pub(crate) address: Option<Arc<str>>,
    /// When the last attempt ended (the clock reading its outcome was recorded at); `None`
    /// before one ends.
    pub(crate) ended: Option<Instant>,
}

impl Stack {
    /// The stages for one target over `addresses`, with validated settings; ejections go to
    /// `ejections`, circuit transitions to `transitions`.
    pub(crate) fn new<S: AsRef<str>>(
        config: &ResilienceConfig,
        addresses: &[S],
        ejections: Sink<OutlierEvent>,
        transitions: Sink<Transition>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            pool: Arc::new(Pool::new(
                &config.balancer,
                config.outlier.clone(),
                addresses,
                Rng::from_entropy(),
                ejections,
            )?),
            breaker: Breaker::new(config.breaker.clone(), transitions)?,
            bulkhead: Bulkhead::new(config.bulkhead.clone())?,
            retry: Retry::new(&config.retry)?,
            rng: Rng::from_entropy(),
        })
    }

    /// The same stack with its retry budget joined to a fleet-wide budget's `share`.
    pub(crate) fn with_fleet(mut self, share: Arc<FleetShare>) -> Self {
        self.retry = self.retry.with_fleet(share);
        self
    }

    /// The endpoint set and its statistics, for a registry watch to update.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// A free bulkhead slot for one call, taken without waiting: `None` when the call would
    /// have to queue for one (then [`admit`](Self::admit) waits).
    pub(crate) fn try_admit(&self) -> Result<Option<BulkheadPermit>, Refusal> {
        self.bulkhead.try_acquire().map_err(Refusal::Overloaded)
    }

    /// A bulkhead slot for one call, held until the returned permit drops (retries
    /// included); waiting in the queue counts against `deadline`. A free slot is taken at
    /// once, without a timer.
    pub(crate) async fn admit(&self, deadline: Instant) -> Result<BulkheadPermit, Refusal> {
        match self.bulkhead.try_acquire() {
            Ok(Some(permit)) => return Ok(permit),
            Ok(None) => {}
            Err(error) => return Err(Refusal::Overloaded(error)),
        }
        match tokio::time::timeout_at(deadline, self.bulkhead.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(error)) => Err(Refusal::Overloaded(error)),
            Err(_) => Err(Refusal::TimedOut),
        }
    }

    /// Runs a call's attempts within `deadline`: the budget deposit, then per attempt the
    /// breaker's admission, an endpoint from the balancer (by the call's hashed sticky `key`
    /// for a ring-hash balancer; another than the last one on a retry, when there is one),
    /// `exchange` on its address, the outcome recorded, and the retry decision (policy,
    /// attempt cap, budget, full-jitter backoff).
    ///
    /// The permit from [`admit`](Self::admit) is asked for so that no call skips the bulkhead.
    /// `now`, when given, is a clock reading the caller took since the call last waited: the
    /// first attempt's breaker and balancer use it instead of reading the clock again.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call's inputs, each used once"
    )]
    pub(crate) async fn attempts<T, E, F, Fut>(
        &self,
        _permit: &BulkheadPermit,
        method: &Method,
        key: Option<u64>,
        deadline: Instant,
        mut now: Option<Instant>,
        trace: &mut Trace,
        mut exchange: F,
    ) -> Result<T, Ended<E>>
    where
        F: FnMut(Arc<Slot>) -> Fut,
        Fut: Future<Output = (Outcome, Result<T, E>)>,
    {
        self.retry.budget().deposit();
        loop {
            // One clock read for the breaker and the balancer (the caller's, for the first
            // attempt), one when the attempt ends, which also serves the retry decision and
            // the call's record.
            let now = now.take().unwrap_or_else(Instant::now);
            let admission = self
                .breaker
                .allow_at(now)
                .map_err(|e| Ended::Refused(Refusal::CircuitOpen(e)))?;
            let previous = trace.address.as_deref();
            let picked = self
                .pool
                .pick_for(key, previous, now)
                .map_err(|_| Ended::Refused(Refusal::NoEndpoints))?;
            trace.attempts += 1;
            // The endpoint's own shared address: the call's record takes it without a copy.
            trace.address = Some(picked.shared_address().clone());
            let endpoint = picked.endpoint();
            let (outcome, result) =
                match tokio::time::timeout_at(deadline, exchange(endpoint)).await {
                    Ok((outcome, result)) => (outcome, result.map_err(Ended::Failed)),
                    Err(_) => (Outcome::NoResponse, Err(Ended::Refused(Refusal::TimedOut))),
                };
            let now = Instant::now();
            trace.ended = Some(now);
            self.pool.record_at(picked, outcome, now);
            admission.record_at(outcome, now);
            let ended = match result {
                Ok(answer) => return Ok(answer),
                Err(timed_out @ Ended::Refused(_)) => return Err(timed_out),
                Err(failed) => failed,
            };
            match self
                .retry
                .decide(method, trace.attempts, outcome, &self.rng)
            {
                // A retry that could not start before the deadline is not made.
                Decision::Retry { after } if now + after < deadline => {
                    tokio::time::sleep(after).await;
                }
                Decision::Retry { .. } | Decision::Stop(_) => return Err(ended),
            }
        }
    }

    /// Refuses every call waiting for a slot and every later one.
    pub(crate) fn close(&self) {
        self.bulkhead.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outbound::resilience::discard;

    fn stack(config: &ResilienceConfig, addresses: &[&str]) -> Stack {
        Stack::new(config, addresses, discard(), discard()).unwrap()
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// Runs one call whose attempts answer from `outcomes`, in order.
    async fn call(
        stack: &Stack,
        method: Method,
        outcomes: &[Outcome],
    ) -> (Result<Outcome, Ended<Outcome>>, Trace, Vec<Arc<str>>) {
        let permit = stack.admit(deadline()).await.unwrap();
        let mut trace = Trace::default();
        let mut seen = Vec::new();
        let mut next = outcomes.iter().copied();
        let result = stack
            .attempts(
                &permit,
                &method,
                None,
                deadline(),
                None,
                &mut trace,
                |endpoint| {
                    seen.push(endpoint.address().clone());
                    let outcome = next.next().unwrap_or(Outcome::Success);
                    async move {
                        let result = if outcome.is_failure() {
                            Err(outcome)
                        } else {
                            Ok(outcome)
                        };
                        (outcome, result)
                    }
                },
            )
            .await;
        (result, trace, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_get_is_retried_on_another_endpoint_and_traced() {
        let stack = stack(&ResilienceConfig::default(), &["a:1", "b:1"]);
        let (result, trace, seen) = call(
            &stack,
            Method::GET,
            &[Outcome::ServerError, Outcome::Success],
        )
        .await;
        assert!(matches!(result, Ok(Outcome::Success)));
        assert_eq!(trace.attempts, 2);
        assert_ne!(seen[0], seen[1], "the retry went elsewhere");
        assert_eq!(trace.address.as_deref(), Some(&*seen[1]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_post_ends_with_its_error_after_one_attempt() {
        let stack = stack(&ResilienceConfig::default(), &["a:1", "b:1"]);
        let (result, trace, _) = call(&stack, Method::POST, &[Outcome::ServerError]).await;
        assert!(matches!(result, Err(Ended::Failed(Outcome::ServerError))));
        assert_eq!(trace.attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_set_is_refused_without_an_attempt() {
        let stack = stack(&ResilienceConfig::default(), &[]);
        let (result, trace, seen) = call(&stack, Method::GET, &[]).await;
        assert!(matches!(result, Err(Ended::Refused(Refusal::NoEndpoints))));
        assert_eq!((trace.attempts, seen.len()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_past_the_deadline_times_out_and_is_not_retried() {
        let stack = stack(&ResilienceConfig::default(), &["a:1", "b:1"]);
        let permit = stack.admit(deadline()).await.unwrap();
        let mut trace = Trace::default();
        let result: Result<(), Ended<()>> = stack
            .attempts(
                &permit,
                &Method::GET,
                None,
                Instant::now() + Duration::from_secs(1),
                None,
                &mut trace,
                |_| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    (Outcome::Success, Ok(()))
                },
            )
            .await;
        assert!(matches!(result, Err(Ended::Refused(Refusal::TimedOut))));
        assert_eq!(trace.attempts, 1);
    }

    /// A fleet store whose every target is deep in debt.
    #[derive(Debug)]
    struct Spent;

    #[async_trait::async_trait]
    impl crate::FleetRetryBudget for Spent {
        async fn sync(
            &self,
            _: &str,
            _: Duration,
            deltas: &[crate::FleetDelta],
        ) -> Result<Vec<crate::FleetTotals>, crate::FleetSyncError> {
            Ok(deltas
                .iter()
                .map(|_| crate::FleetTotals::new(0, 1_000, 1))
                .collect())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_fleet_share_stops_retries_the_local_budget_allows() {
        let config = ResilienceConfig::default();
        let fleet =
            crate::FleetBudget::new(Arc::new(Spent), &config.retry, crate::DEFAULT_FLEET_SYNC)
                .unwrap();
        let stack = stack(&config, &["a:1", "b:1"]).with_fleet(fleet.share("svc"));
        fleet.sync().await.unwrap();
        let (result, trace, _) = call(&stack, Method::GET, &[Outcome::ServerError]).await;
        assert!(matches!(result, Err(Ended::Failed(Outcome::ServerError))));
        assert_eq!(trace.attempts, 1);
        assert_eq!(fleet.denials(), 1);

        // A stale view: the local budget alone, which allows the retry.
        tokio::time::advance(crate::DEFAULT_FLEET_SYNC * 4).await;
        let (result, trace, _) = call(&stack, Method::GET, &[Outcome::ServerError]).await;
        assert!(matches!(result, Ok(Outcome::Success)));
        assert_eq!(trace.attempts, 2);
        assert_eq!(fleet.fallbacks(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bulkhead_refuses_at_once() {
        let mut config = ResilienceConfig::default();
        config.bulkhead.max_concurrent = 1;
        config.bulkhead.max_pending = 0;
        let stack = stack(&config, &["a:1"]);
        let _held = stack.admit(deadline()).await.unwrap();
        assert!(matches!(
            stack.admit(deadline()).await,
            Err(Refusal::Overloaded(BulkheadError::Full { .. }))
        ));
    }
}
