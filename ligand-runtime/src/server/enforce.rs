//! The enforcement pipeline: readiness → rate limit → policy (bounded) → telemetry.

use std::fmt;
use std::time::{Instant, SystemTime};

use crate::chain::Chain;
use crate::error::Denial;
use crate::policy::{EvalRequest, EvalResponse};
use crate::ratelimit::{RateLimitRequest, RateLimiter};
use crate::request::InboundRequest;
use crate::telemetry::{DecisionEvent, RateLimitEvent};

use super::Server;

/// A request the pipeline allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enforced {
    /// The evaluated chain, immediate peer last.
    pub chain: Chain,
    /// The request's correlation ID.
    pub request_id: String,
}

/// A request the pipeline refused, with the correlation ID the caller is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{denial} (request {request_id})")]
pub struct Denied {
    /// Why.
    pub denial: Denial,
    /// The request's correlation ID, also in the audit events.
    pub request_id: String,
}

fn new_request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
    pub async fn enforce(&self, request: InboundRequest) -> Result<Enforced, Denied> {
        self.pipeline(request, None).await
    }

    /// The same pipeline for trust-boundary services, called from their own handlers with
    /// the external caller as `request.peer` (for example `Link { user: Some(account), .. }`
    /// after authentication, or an `external_party` link before it).
    pub async fn enforce_inbound(&self, request: InboundRequest) -> Result<Enforced, Denied> {
        self.pipeline(request, None).await
    }

    pub(crate) async fn pipeline(
        &self,
        request: InboundRequest,
        request_id: Option<String>,
    ) -> Result<Enforced, Denied> {
        let started = Instant::now();
        let timestamp = SystemTime::now();
        let request_id = request_id.unwrap_or_else(new_request_id);
        let inner = &*self.inner;

        let overall = inner.monitor.overall();
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

        let InboundRequest {
            mut chain,
            peer,
            resource,
            action,
            request: line,
        } = request;
        chain.push(peer.clone());
        let eval = EvalRequest {
            chain,
            peer,
            resource,
            action,
            request: line,
            service: inner.service_id.clone(),
        };
        if let Some(limiter) = &inner.rate_limiter
            && let Some(denial) = self
                .rate_limit(limiter.as_ref(), &eval, &request_id, timestamp)
                .await
        {
            return Err(Denied { denial, request_id });
        }
        self.decide(eval, request_id, timestamp, started).await
    }

    /// The rate-limit stage: `Some(denial)` unless the limiter explicitly allowed.
    async fn rate_limit(
        &self,
        limiter: &dyn RateLimiter,
        eval: &EvalRequest,
        request_id: &str,
        timestamp: SystemTime,
    ) -> Option<Denial> {
        let check = RateLimitRequest {
            chain: &eval.chain,
            resource: &eval.resource,
            action: &eval.action,
        };
        let started = Instant::now();
        let outcome = limiter.check(&check).await;
        let mut event = RateLimitEvent {
            timestamp,
            request_id: request_id.to_owned(),
            chain: eval.chain.clone(),
            resource: eval.resource.clone(),
            action: eval.action.clone(),
            allowed: false,
            latency: started.elapsed(),
            current_rps: None,
            limit_rps: None,
            error: None,
        };
        let denial = match outcome {
            Ok(response) => {
                event.allowed = response.allowed;
                event.current_rps = response.current_rps;
                event.limit_rps = response.limit_rps;
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
        let _ = self.inner.telemetry.record_rate_limit(&event);
        denial
    }

    /// The policy stage, bounded by the policy timeout: only an explicit allow passes.
    async fn decide(
        &self,
        eval: EvalRequest,
        request_id: String,
        timestamp: SystemTime,
        started: Instant,
    ) -> Result<Enforced, Denied> {
        let settings = &self.inner.settings;
        let policy_started = Instant::now();
        let outcome =
            tokio::time::timeout(settings.policy_timeout, self.inner.policy.evaluate(&eval)).await;
        let policy_latency = policy_started.elapsed();
        if policy_latency > settings.policy_latency_warn {
            tracing::warn!(%request_id, ?policy_latency, threshold = ?settings.policy_latency_warn, "slow policy evaluation");
        }
        let (decision, error) = match outcome {
            Ok(Ok(response)) => (response, None),
            Ok(Err(error)) => (EvalResponse::default(), Some(error.to_string())),
            Err(_) => (
                EvalResponse::default(),
                Some(format!(
                    "policy evaluation timed out after {:?}",
                    settings.policy_timeout
                )),
            ),
        };
        let EvalRequest {
            chain,
            resource,
            action,
            ..
        } = eval;
        let event = DecisionEvent {
            timestamp,
            request_id,
            chain,
            resource,
            action,
            allowed: decision.allowed && error.is_none(),
            latency: started.elapsed(),
            policy_latency,
            policy_version: decision.policy_version,
            reason: decision.reason,
            error,
        };
        let _ = self.inner.telemetry.record_decision(&event);
        let DecisionEvent {
            chain,
            request_id,
            allowed,
            error,
            ..
        } = event;
        match (allowed, error) {
            (true, _) => Ok(Enforced { chain, request_id }),
            (false, Some(error)) => {
                tracing::warn!(%request_id, %error, "policy evaluation failed; denying");
                Err(Denied {
                    denial: Denial::PolicyFailure,
                    request_id,
                })
            }
            (false, None) => Err(Denied {
                denial: Denial::PolicyDenied,
                request_id,
            }),
        }
    }
}

impl fmt::Display for Enforced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "allowed (request {})", self.request_id)
    }
}
