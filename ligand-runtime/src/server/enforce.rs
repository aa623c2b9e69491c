//! The enforcement pipeline: readiness → rate limit → policy (bounded) → audit.
//!
//! The request path does no I/O and no formatting of its own: the evaluated input is built
//! once and shared (by reference count) with the rate-limit and decision records, the policy
//! engine runs on the calling task, and the records are moved into the audit queue.

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
use crate::telemetry::{DecisionEvent, RateLimitEvent, Record};

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
        self.pipeline(request, RequestId::new()).await
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

    /// The pipeline. Its stages are sync helpers called from this one function, and each
    /// stage that can answer at once (an in-process limiter or engine, room in the audit
    /// queue) does, so the common path builds no nested future to move and drop; only a
    /// stage that has to wait awaits, and its wait is boxed (see [`audit`](Self::audit)).
    ///
    /// Not an `async fn`: the request is turned into the evaluated input before the future
    /// is built, so the future holds the shared input rather than room for the request in
    /// every state (an `async fn` keeps its arguments for its whole life).
    pub(crate) fn pipeline(
        &self,
        request: InboundRequest,
        request_id: RequestId,
    ) -> impl Future<Output = Result<Enforced, Denied>> + Send + '_ {
        let started = Instant::now();
        let timestamp = SystemTime::now();
        let admitted = self.admitted(request, request_id);
        async move {
            let input = admitted?;
            self.limit_and_decide(input, request_id, started, timestamp)
                .await
        }
    }

    /// The first stages, which never wait: readiness, then an authenticated peer; the
    /// evaluated input when both pass.
    fn admitted(
        &self,
        request: InboundRequest,
        request_id: RequestId,
    ) -> Result<Arc<EvalRequest>, Denied> {
        let overall = self.inner.monitor.overall();
        if !overall.serves_traffic() {
            tracing::debug!(%request_id, state = %overall, "request refused: service not ready");
            return Err(Denied {
                denial: Denial::NotReady,
                request_id,
            });
        }
        if request.peer.principal().is_none() {
            return Err(Denied {
                denial: Denial::Unauthenticated,
                request_id,
            });
        }
        Ok(self.evaluated(request))
    }

    /// The rate limiter, the policy and the records, for an admitted request's input.
    async fn limit_and_decide(
        &self,
        input: Arc<EvalRequest>,
        request_id: RequestId,
        started: Instant,
        timestamp: SystemTime,
    ) -> Result<Enforced, Denied> {
        let inner = &*self.inner;
        let policy_started;
        let rate_limit = match &inner.rate_limiter {
            None => {
                policy_started = Instant::now();
                None
            }
            Some(limiter) => {
                let check = RateLimitRequest {
                    chain: &input.chain,
                    resource: &input.resource,
                    action: &input.action,
                };
                let limiter_started = Instant::now();
                let outcome = match limiter.check_inline(&check) {
                    Some(outcome) => outcome,
                    None => limiter.check(&check).await,
                };
                // One clock read ends the limiter's time and starts the policy's.
                let limited = Instant::now();
                policy_started = limited;
                let (event, denial) = rate_limit_event(
                    outcome,
                    &input,
                    request_id,
                    timestamp,
                    limited.saturating_duration_since(limiter_started),
                );
                if let Some(denial) = denial {
                    if let Some(wait) = self.audit(Record::RateLimit(event)) {
                        wait.await;
                    }
                    return Err(Denied { denial, request_id });
                }
                Some(event)
            }
        };

        // Engines that decide inline (regorus does) answer without a future; of the others,
        // only one that has to wait gets a timer, so the common case builds and drops none.
        let outcome = match inner.policy.evaluate_inline(&input) {
            Some(decided) => Ok(decided),
            // Boxed: the timer and the engine's future stay out of the request's future, which
            // every request allocates and moves (see `audit`).
            None => Box::pin(self.evaluate_bounded(&input)).await,
        };
        let decided = Instant::now();
        let (decision, result) = self.decision(
            outcome,
            input,
            request_id,
            timestamp,
            decided.saturating_duration_since(started),
            decided.saturating_duration_since(policy_started),
        );
        if let Some(shadow) = &inner.shadow
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
        if let Some(wait) = self.audit(Record::Decision {
            rate_limit,
            decision,
        }) {
            wait.await;
        }
        result
    }

    /// Queues `record`; in the `block` mode with no room, returns the wait for a slot.
    ///
    /// Not an `async fn`, and the wait is boxed, as is every other wait the common path does
    /// not take: a future holds room for each state it can reach, and the request's future
    /// (this pipeline's inside it) is allocated and moved on every request. With the rare
    /// waits inline, a route's request future was 6.2 KB (1.4 KB now), copied at each move.
    fn audit(&self, record: Record) -> Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> {
        let record = self.inner.audit.record_now(record)?;
        Some(Box::pin(self.inner.audit.record(record)))
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
            mut chain,
            peer,
            resource,
            action,
            request: line,
            txn,
        } = request;
        chain.push(peer.clone());
        Arc::new(EvalRequest {
            chain,
            peer,
            resource,
            action,
            request: line,
            service: self.inner.service_id.clone(),
            txn,
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
            resource: Resource::http_path(line.path.clone()),
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
        if let Some(wait) = self.audit(Record::Decision {
            rate_limit: None,
            decision: event,
        }) {
            wait.await;
        }
    }
}

/// The limiter's record and, unless it explicitly allowed, the denial: an error denies too.
fn rate_limit_event(
    outcome: Result<RateLimitResponse, ProviderError>,
    input: &Arc<EvalRequest>,
    request_id: RequestId,
    timestamp: SystemTime,
    latency: Duration,
) -> (RateLimitEvent, Option<Denial>) {
    let mut event = RateLimitEvent {
        timestamp,
        request_id,
        input: input.clone(),
        allowed: false,
        latency,
        current_rps: None,
        limit_rps: None,
        retry_after: None,
        error: None,
    };
    let denial = match outcome {
        Ok(response) => {
            event.allowed = response.allowed;
            event.current_rps = response.current_rps;
            event.limit_rps = response.limit_rps;
            event.retry_after = response.retry_after;
            (!response.allowed).then_some(Denial::RateLimited {
                retry_after: response.retry_after,
            })
        }
        Err(error) => {
            tracing::warn!(%request_id, %error, "rate limiter failed; denying");
            event.error = Some(error.to_string());
            Some(Denial::RateLimiterFailure)
        }
    };
    (event, denial)
}

impl fmt::Display for Enforced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allowed (request {})", self.request_id)
    }
}
