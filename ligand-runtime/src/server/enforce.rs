//! The enforcement pipeline: readiness → rate limit → policy (bounded) → audit.
//!
//! The request path does no I/O and no formatting of its own: the evaluated input is built
//! once and shared (by reference count) with the rate-limit and decision records, the policy
//! engine runs on the calling task, and the records are moved into the audit queue.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use crate::chain::{Chain, Link};
use crate::error::Denial;
use crate::error::ProviderError;
use crate::policy::{EvalRequest, EvalResponse};
use crate::ratelimit::{RateLimitRequest, RateLimitResponse};
use crate::request::{Action, InboundRequest, RequestLine, Resource};
use crate::request_id::RequestId;
use crate::service::Unrouted;
use crate::telemetry::{DecisionEvent, Passed, RateLimitEvent, Record};
use crate::txn::TxnClaims;

use super::Server;

/// A request the pipeline allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Enforced {
    /// Exactly what the policy evaluated: the chain with the verified peer last, the
    /// resource, the action, the request line and this service's ID.
    pub input: Arc<EvalRequest>,
    /// The request's correlation ID.
    pub request_id: RequestId,
}

impl Enforced {
    /// The evaluated chain, immediate peer last.
    pub fn chain(&self) -> &Chain {
        &self.input.chain
    }
}

/// A request the pipeline refused, with the correlation ID the caller is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{denial} (request {request_id})")]
pub struct Denied {
    /// Why.
    pub denial: Denial,
    /// The request's correlation ID, also in the audit events.
    pub request_id: RequestId,
}

/// A stage's answer: now, or after a wait that owns what it needs.
pub(crate) enum Step<T> {
    Now(T),
    Wait(Pin<Box<dyn Future<Output = T> + Send>>),
}

impl<T> Step<T> {
    /// The answer, waiting for it if it has to.
    pub(crate) async fn finish(self) -> T {
        match self {
            Self::Now(answer) => answer,
            Self::Wait(wait) => wait.await,
        }
    }
}

/// The pipeline's answer to a request.
pub(crate) type Answer = Result<Enforced, Denied>;

/// When a request entered the pipeline: the monotonic start of its latency (and of the
/// limiter's), and the wall clock time of its records.
#[derive(Debug, Clone, Copy)]
struct Clock {
    started: Instant,
    timestamp: SystemTime,
}

impl Server {
    /// Runs a request received by a binding through the pipeline. `request.peer` must be the
    /// peer verified by the transport (the HTTP binding sets it from the mTLS certificate); it
    /// is appended to `request.chain` to form the evaluated chain.
    ///
    /// Order: readiness, then the rate limiter (denial → [`Denial::RateLimited`], error →
    /// [`Denial::RateLimiterFailure`]), then policy bounded by the policy timeout (deny →
    /// [`Denial::PolicyDenied`], error or timeout → [`Denial::PolicyFailure`]). Every path
    /// that is not an explicit allow denies.
    ///
    /// Trust-boundary services ([`init_trust_boundary`](crate::init_trust_boundary)) call it
    /// from their own handlers with the external caller as `request.peer` (for example
    /// `Link { user: Some(account), .. }` after authentication, or an `external_party` link
    /// before it).
    pub async fn enforce(&self, request: InboundRequest) -> Result<Enforced, Denied> {
        self.pipeline(request, RequestId::new()).finish().await
    }

    /// Waits until every audit and telemetry record produced before this call has reached the
    /// sink and the sink has flushed. Requests never wait for the sink; this is for tests,
    /// and for a service that wants its log complete at a point of its choosing.
    pub async fn flush_audit(&self) {
        self.inner.audit.flush().await;
    }

    /// Blocks the calling thread until the audit writer has caught up; see
    /// [`testkit::flush_audit_blocking`](crate::testkit::flush_audit_blocking).
    #[cfg(feature = "testkit")]
    pub(crate) fn flush_audit_blocking(&self) {
        self.inner.audit.flush_blocking();
    }

    /// The pipeline, run as far as it goes without waiting: every stage that can answer at
    /// once (an in-process limiter or engine, room in the audit queue) does, and the answer
    /// is [`Step::Now`]. The first stage that has to wait (a limiter or engine out of process,
    /// a full queue in the `block` audit mode) gets the rest of the pipeline as one boxed
    /// future, [`Step::Wait`], which owns what it needs.
    ///
    /// Not a future: a request's future holds room for every state it can reach, and is
    /// allocated and moved on every request. With the pipeline's waits inside it, a route's
    /// request future was 1.4 KB (6.2 KB before the rare waits were boxed), too large for the
    /// allocator's per-thread cache; the route's guard now admits most requests before it
    /// builds a future at all (see `service::Guarded`).
    pub(crate) fn pipeline(&self, request: InboundRequest, request_id: RequestId) -> Step<Answer> {
        self.pipeline_for(self.evaluated(request), request_id)
    }

    /// [`pipeline`](Self::pipeline) for an input its binding built as the policy sees it (the
    /// route guard builds it in place, instead of an `InboundRequest` to convert).
    pub(crate) fn pipeline_for(
        &self,
        input: Arc<EvalRequest>,
        request_id: RequestId,
    ) -> Step<Answer> {
        if let Err(denied) = self.admitted(&input, request_id) {
            return Step::Now(Err(denied));
        }
        let clock = Clock {
            started: Instant::now(),
            timestamp: SystemTime::now(),
        };
        let (rate_limit, policy_started) = match &self.inner.rate_limiter {
            // Without a limiter the policy's time is the pipeline's.
            None => (None, clock.started),
            Some(limiter) => {
                // The limiter's time starts with the pipeline's (`clock.started`): nothing lies
                // between, and a clock read costs about as much as an in-process limiter's
                // check.
                let check = RateLimitRequest {
                    chain: &input.chain,
                    resource: &input.resource,
                    action: &input.action,
                };
                let Some(outcome) = limiter.check_inline(&check) else {
                    let server = self.clone();
                    return Step::Wait(Box::pin(async move {
                        server.limit_and_decide(input, request_id, clock).await
                    }));
                };
                match self.limited(outcome, &input, request_id, clock) {
                    Ok(passed) => passed,
                    Err(refused) => return refused,
                }
            }
        };
        self.decide(input, rate_limit, request_id, clock, policy_started)
    }

    /// The first stages, which never wait: readiness, then an authenticated peer.
    fn admitted(&self, input: &EvalRequest, request_id: RequestId) -> Result<(), Denied> {
        let overall = self.inner.monitor.overall();
        if !overall.serves_traffic() {
            tracing::debug!(%request_id, state = %overall, "request refused: service not ready");
            return Err(Denied {
                denial: Denial::NotReady,
                request_id,
            });
        }
        if input.peer.principal().is_none() {
            return Err(Denied {
                denial: Denial::Unauthenticated,
                request_id,
            });
        }
        Ok(())
    }

    /// The rest of the pipeline when the rate limiter has to wait: the limiter, the policy
    /// and the records.
    async fn limit_and_decide(
        self,
        input: Arc<EvalRequest>,
        request_id: RequestId,
        clock: Clock,
    ) -> Result<Enforced, Denied> {
        let (rate_limit, policy_started) = match &self.inner.rate_limiter {
            Some(limiter) => {
                let outcome = limiter
                    .check(&RateLimitRequest {
                        chain: &input.chain,
                        resource: &input.resource,
                        action: &input.action,
                    })
                    .await;
                match self.limited(outcome, &input, request_id, clock) {
                    Ok(passed) => passed,
                    Err(refused) => return refused.finish().await,
                }
            }
            None => (None, clock.started),
        };
        self.decide(input, rate_limit, request_id, clock, policy_started)
            .finish()
            .await
    }

    /// The policy's stage and the records: at once from an engine that decides inline
    /// (regorus does); from one that does not, in a future, where only an engine that has
    /// to wait gets a timer (see `evaluate_bounded`).
    fn decide(
        &self,
        input: Arc<EvalRequest>,
        rate_limit: Option<Passed>,
        request_id: RequestId,
        clock: Clock,
        policy_started: Instant,
    ) -> Step<Answer> {
        if let Some(decided) = self.inner.policy.evaluate_inline(&input) {
            return self.decided(
                Ok(decided),
                input,
                rate_limit,
                request_id,
                clock,
                policy_started,
            );
        }
        let server = self.clone();
        Step::Wait(Box::pin(async move {
            let outcome = server.evaluate_bounded(&input).await;
            server
                .decided(
                    outcome,
                    input,
                    rate_limit,
                    request_id,
                    clock,
                    policy_started,
                )
                .finish()
                .await
        }))
    }

    /// The limiter's answer: when it let the request through, what its record does not
    /// share with the decision's and the time the policy's stage starts; otherwise the
    /// refusal, once its record is queued (an error refuses too).
    fn limited(
        &self,
        outcome: Result<RateLimitResponse, ProviderError>,
        input: &Arc<EvalRequest>,
        request_id: RequestId,
        clock: Clock,
    ) -> Result<(Option<Passed>, Instant), Step<Answer>> {
        // One clock read ends the limiter's time and starts the policy's.
        let limited = Instant::now();
        let latency = limited.saturating_duration_since(clock.started);
        let refused = match outcome {
            Ok(response) if response.allowed => {
                return Ok((Some(Passed { latency, response }), limited));
            }
            refused => refused,
        };
        let (event, denial) =
            rate_limit_refusal(refused, input, request_id, clock.timestamp, latency);
        Err(self.answer(Record::RateLimit(event), Err(Denied { denial, request_id })))
    }

    /// The policy's `outcome` made a decision: its record (with the limiter's) queued, and
    /// the request's answer.
    fn decided(
        &self,
        outcome: Result<Result<EvalResponse, ProviderError>, Duration>,
        input: Arc<EvalRequest>,
        rate_limit: Option<Passed>,
        request_id: RequestId,
        clock: Clock,
        policy_started: Instant,
    ) -> Step<Answer> {
        let policy_latency = Instant::now().saturating_duration_since(policy_started);
        // The limiter's time ends where the policy's starts, and starts with the pipeline's:
        // the two make the request's latency, without a third clock difference.
        let latency = rate_limit.as_ref().map_or(policy_latency, |limited| {
            limited.latency.saturating_add(policy_latency)
        });
        let (decision, result) = self.decision(
            outcome,
            input,
            request_id,
            clock.timestamp,
            latency,
            policy_latency,
        );
        if let Some(shadow) = &self.inner.shadow
            && decision.error.is_none()
        {
            shadow.offer(
                request_id,
                &decision.input,
                decision.allowed,
                decision.reason.as_ref(),
            );
        }
        // The limiter's record travels with the decision: one slot, one hand-off.
        self.answer(
            Record::Decision {
                rate_limit,
                decision,
            },
            result,
        )
    }

    /// Queues `record`, then answers `result`: at once, or, in the `block` mode with no room,
    /// once the record has a slot.
    fn answer<T: Send + 'static>(&self, record: Record, result: T) -> Step<T> {
        match self.inner.audit.record_now(record) {
            None => Step::Now(result),
            Some(record) => {
                let server = self.clone();
                Step::Wait(Box::pin(async move {
                    server.inner.audit.record(record).await;
                    result
                }))
            }
        }
    }

    /// The policy's decision from an engine that does not decide inline, bounded by the
    /// policy timeout (`Err` carries it); an engine that answers at once gets no timer.
    async fn evaluate_bounded(
        &self,
        input: &EvalRequest,
    ) -> Result<Result<EvalResponse, ProviderError>, Duration> {
        let timeout = self.inner.settings.policy_timeout;
        let mut evaluation = std::pin::pin!(self.inner.policy.evaluate(input));
        match std::future::poll_fn(|cx| Poll::Ready(evaluation.as_mut().poll(cx))).await {
            Poll::Ready(decided) => Ok(decided),
            Poll::Pending => tokio::time::timeout(timeout, evaluation)
                .await
                .map_err(|_| timeout),
        }
    }

    /// The decision record and the request's answer from the policy's `outcome` (an `Err` is
    /// a timeout after that long): only an explicit allow without error admits.
    fn decision(
        &self,
        outcome: Result<Result<EvalResponse, ProviderError>, Duration>,
        input: Arc<EvalRequest>,
        request_id: RequestId,
        timestamp: SystemTime,
        latency: Duration,
        policy_latency: Duration,
    ) -> (DecisionEvent, Result<Enforced, Denied>) {
        let warn_after = self.inner.settings.policy_latency_warn;
        if policy_latency > warn_after {
            tracing::warn!(%request_id, ?policy_latency, threshold = ?warn_after, "slow policy evaluation");
        }
        let (decision, error) = match outcome {
            Ok(Ok(response)) => (response, None),
            Ok(Err(error)) => (EvalResponse::default(), Some(error.to_string())),
            Err(timeout) => (
                EvalResponse::default(),
                Some(format!("policy evaluation timed out after {timeout:?}")),
            ),
        };
        let allowed = decision.allowed && error.is_none();
        let denial = match &error {
            _ if allowed => None,
            Some(error) => {
                tracing::warn!(%request_id, %error, "policy evaluation failed; denying");
                Some(Denial::PolicyFailure)
            }
            None => Some(Denial::PolicyDenied),
        };
        let event = DecisionEvent {
            timestamp,
            request_id,
            input: input.clone(),
            allowed,
            cached: decision.cached,
            latency,
            policy_latency,
            policy_version: decision.policy_version,
            reason: decision.reason,
            error,
        };
        let result = match denial {
            None => Ok(Enforced { input, request_id }),
            Some(denial) => Err(Denied { denial, request_id }),
        };
        (event, result)
    }

    fn evaluated(&self, request: InboundRequest) -> Arc<EvalRequest> {
        let InboundRequest {
            chain,
            peer,
            resource,
            action,
            request,
            txn,
        } = request;
        self.input(chain, peer, resource, action, request, txn)
    }

    /// The policy's input for a request from `peer` with the upstream `chain`: the chain with
    /// the peer appended, and this service's ID. Inlined, so that a binding that builds the
    /// parts in the call builds the input in place.
    #[inline]
    pub(crate) fn input(
        &self,
        mut chain: Chain,
        peer: Link,
        resource: Resource,
        action: Action,
        request: RequestLine,
        txn: Option<Arc<TxnClaims>>,
    ) -> Arc<EvalRequest> {
        chain.push(peer.clone());
        Arc::new(EvalRequest {
            chain,
            peer,
            resource,
            action,
            request,
            service: self.thread_service_id(),
            txn,
        })
    }

    /// This service's ID, from the calling thread's copy of it: every request's input takes
    /// a count on it, and the server's own, shared by every thread, would have them all write
    /// its cache line (and the threads that free spent inputs too). The copy is checked
    /// against the server's ID by content, so another server on the thread (in tests) gets
    /// its own.
    fn thread_service_id(&self) -> Arc<str> {
        thread_local! {
            static SERVICE_ID: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
        }
        let id = &self.inner.service_id;
        SERVICE_ID.with(|copy| {
            let Ok(mut copy) = copy.try_borrow_mut() else {
                return id.clone();
            };
            match &*copy {
                Some(copy) if **copy == **id => copy.clone(),
                _ => copy.insert(Arc::from(&**id)).clone(),
            }
        })
    }

    /// Records the refusal of a request that matched no route (or no method of its route): a
    /// decision record with `allowed: false`, the concrete path as the resource and the
    /// method as the action, so that probing for routes leaves the same trail as a denial.
    pub(crate) async fn audit_unrouted(
        &self,
        peer: Link,
        line: RequestLine,
        unrouted: Unrouted,
        request_id: RequestId,
    ) {
        let timestamp = SystemTime::now();
        let input = self.evaluated(InboundRequest {
            chain: Chain::new(),
            peer,
            resource: Resource::http_path(line.path.as_str().to_owned()),
            action: Action::new(line.method.as_str().to_owned()),
            request: line,
            txn: None,
        });
        let event = DecisionEvent {
            timestamp,
            request_id,
            input,
            allowed: false,
            cached: false,
            latency: Duration::ZERO,
            policy_latency: Duration::ZERO,
            policy_version: None,
            reason: Some(Arc::from(unrouted.message())),
            error: None,
        };
        self.answer(
            Record::Decision {
                rate_limit: None,
                decision: event,
            },
            (),
        )
        .finish()
        .await;
    }
}

/// The record of a limiter's refusal, and the denial: an explicit deny, or an error.
fn rate_limit_refusal(
    outcome: Result<RateLimitResponse, ProviderError>,
    input: &Arc<EvalRequest>,
    request_id: RequestId,
    timestamp: SystemTime,
    latency: Duration,
) -> (RateLimitEvent, Denial) {
    let record = |response: &RateLimitResponse| {
        RateLimitEvent::answered(timestamp, request_id, input.clone(), latency, response)
    };
    match outcome {
        // Only a refusal gets here: an allow went through as a pass.
        Ok(response) => (
            record(&response),
            Denial::RateLimited {
                retry_after: response.retry_after,
            },
        ),
        Err(error) => {
            tracing::warn!(%request_id, %error, "rate limiter failed; denying");
            let mut event = record(&RateLimitResponse::default());
            event.error = Some(error.to_string());
            (event, Denial::RateLimiterFailure)
        }
    }
}

impl fmt::Display for Enforced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allowed (request {})", self.request_id)
    }
}
