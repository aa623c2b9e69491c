//! Telemetry: the events the framework emits and the sink contract.
//!
//! Unlike the other contracts, [`Telemetry`] is synchronous: it is called on the request path
//! and must never block it, so an implementation that does I/O buffers and returns at once.

mod json;
mod log;
mod out;
mod queue;
mod stdout;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

pub use self::json::JsonLinesTelemetry;
pub(crate) use self::json::rfc3339;
pub use self::log::LogLinesTelemetry;
pub(crate) use self::queue::{AuditQueue, Passed, QueuedTelemetry, Record};
pub use self::stdout::{StdoutWriter, stdout_writer};

use crate::chain::Chain;
use crate::error::ProviderError;
use crate::health::{ProviderKind, State};
use crate::policy::EvalRequest;
use crate::request_id::RequestId;
use crate::tls::IdentityState;

/// The audit record of every request that reached policy evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct DecisionEvent {
    /// When the request entered the pipeline.
    pub timestamp: SystemTime,
    /// The request's correlation ID, also sent to the caller on denial.
    pub request_id: RequestId,
    /// Exactly what the policy evaluated: the chain (immediate peer last), the resource, the
    /// action, the request line and this service's ID. Shared with the request, not copied.
    pub input: Arc<EvalRequest>,
    /// Whether policy allowed the request.
    pub allowed: bool,
    /// Whether the decision came from the engine's decision cache.
    pub cached: bool,
    /// Time from pipeline entry to decision, rate limiting included.
    pub latency: Duration,
    /// Time spent in policy evaluation alone.
    pub policy_latency: Duration,
    /// The policy version that decided, when the engine reports one.
    pub policy_version: Option<Arc<str>>,
    /// The engine's reason, when it gives one.
    pub reason: Option<Arc<str>>,
    /// Set when evaluation failed or timed out rather than deciding.
    pub error: Option<String>,
}

/// The record of every rate-limiter call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RateLimitEvent {
    /// When the request entered the pipeline.
    pub timestamp: SystemTime,
    /// The request's correlation ID.
    pub request_id: RequestId,
    /// The request as the limiter saw it (the chain, immediate peer last, the resource and the
    /// action), shared with the request.
    pub input: Arc<EvalRequest>,
    /// Whether the limiter allowed the request (false on error too).
    pub allowed: bool,
    /// Time spent in the limiter.
    pub latency: Duration,
    /// The caller's observed rate, when reported.
    pub current_rps: Option<f64>,
    /// The caller's configured limit, when reported.
    pub limit_rps: Option<f64>,
    /// How long the caller should wait, on a denial.
    pub retry_after: Option<Duration>,
    /// Set when the limiter failed.
    pub error: Option<String>,
}

impl RateLimitEvent {
    /// The record of the limiter's `response`, after `latency`, to the request `request_id`
    /// on `input` that entered the pipeline at `timestamp`.
    pub(crate) fn answered(
        timestamp: SystemTime,
        request_id: RequestId,
        input: Arc<EvalRequest>,
        latency: Duration,
        response: &crate::ratelimit::RateLimitResponse,
    ) -> Self {
        Self {
            timestamp,
            request_id,
            input,
            allowed: response.allowed,
            latency,
            current_rps: response.current_rps,
            limit_rps: response.limit_rps,
            retry_after: response.retry_after,
            error: None,
        }
    }
}

/// A provider's health changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthTransitionEvent {
    /// When the monitor recorded it.
    pub timestamp: SystemTime,
    /// Whose state changed.
    pub kind: ProviderKind,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// The error that caused it, for failures.
    pub cause: Option<String>,
}

/// How an outbound call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OutboundOutcome {
    /// The peer answered.
    Success,
    /// The peer answered with an error status.
    ServerError,
    /// The connection or handshake failed.
    ConnectError,
    /// The peer presented an unexpected identity.
    IdentityMismatch,
    /// The call timed out.
    Timeout,
    /// The call was refused before a connection was made: no endpoint, the transport shutting
    /// down, or a request that could not be encoded.
    Refused,
    /// The target's circuit breaker was open.
    CircuitOpen,
    /// The target's bulkhead was full.
    Overloaded,
}

/// The record of every outbound call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OutboundCallEvent {
    /// When the call started.
    pub timestamp: SystemTime,
    /// The calling service's own SPIFFE ID.
    pub source: Arc<str>,
    /// The SPIFFE ID the peer had to present.
    pub target: Arc<str>,
    /// The request method.
    #[serde(serialize_with = "method_str")]
    pub method: http::Method,
    /// The endpoint called (empty when none was picked), shared with the endpoint's entry in
    /// the transport: recording a call copies no string.
    pub address: Arc<str>,
    /// How it ended.
    pub outcome: OutboundOutcome,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
    /// How many attempts were made: 1 without retries, 0 when the call was refused before
    /// any.
    pub attempts: u32,
    /// Wall-clock duration, retries and their backoff included.
    pub latency: Duration,
}

fn method_str<S: serde::Serializer>(method: &http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

/// What happened on one secret access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretAccess {
    /// Served from the cache.
    Hit,
    /// Fetched from the backend for a reader.
    Miss,
    /// Renewed in the background before expiry.
    Renewal,
    /// Evicted because the backend revoked its lease.
    Revocation,
    /// The backend failed.
    Error,
}

/// The audit record of a secret access. It never carries the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SecretAccessEvent {
    /// When.
    pub timestamp: SystemTime,
    /// The secret's path.
    pub name: String,
    /// The chain of the request that read it (absent for background renewal).
    pub chain: Option<Chain>,
    /// The request's correlation ID, when a request read it.
    pub request_id: Option<RequestId>,
    /// What happened.
    pub access: SecretAccess,
    /// The backend's error, for failures.
    pub error: Option<String>,
}

/// Periodic aggregate metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// The current SVID's age.
    pub svid_age: Option<Duration>,
    /// Time left before the current SVID expires.
    pub svid_time_to_expiry: Option<Duration>,
    /// The policy version last loaded.
    pub policy_version: Option<String>,
    /// Secrets served from the cache.
    pub secrets_cache_hits: u64,
    /// Secrets fetched from the backend.
    pub secrets_cache_misses: u64,
    /// Audit and telemetry records lost: dropped because the queue to the sink was full (in
    /// the `block` overflow mode, decision and rate-limit records wait instead), or refused
    /// by the sink. Any loss also marks telemetry Degraded.
    pub audit_dropped: u64,
    /// Records waiting in the queue to the sink when the snapshot was taken.
    pub audit_queued: u64,
}

/// Receives the framework's structured events.
///
/// Decision, rate-limit and outbound-call events are required; the others are optional and
/// default to [`ProviderError::NotSupported`].
///
/// The framework never calls a sink on the request path: requests hand their records to a
/// bounded queue, and one writer thread (`ligand-audit`) calls the sink in order, then
/// [`flush`](Self::flush) whenever the queue runs empty. A sink may therefore write
/// synchronously (to a buffered file or stdout); it should still not wait on the network
/// without a bound, since a slow sink fills the queue (see the overflow mode in
/// [`ConfigBuilder::audit_overflow`](crate::ConfigBuilder::audit_overflow)).
pub trait Telemetry: Send + Sync + 'static {
    /// Records a policy decision (allowed or denied). This is the decision audit log.
    fn record_decision(&self, event: &DecisionEvent) -> Result<(), ProviderError>;

    /// Records a rate-limiter outcome.
    fn record_rate_limit(&self, event: &RateLimitEvent) -> Result<(), ProviderError>;

    /// Records an outbound call.
    fn record_outbound_call(&self, event: &OutboundCallEvent) -> Result<(), ProviderError>;

    /// Records a health transition. Optional.
    fn record_health_transition(&self, event: &HealthTransitionEvent) -> Result<(), ProviderError> {
        let _ = event;
        Err(ProviderError::NotSupported)
    }

    /// Records a secret access (the secrets audit log). Optional.
    fn record_secret_access(&self, event: &SecretAccessEvent) -> Result<(), ProviderError> {
        let _ = event;
        Err(ProviderError::NotSupported)
    }

    /// Records a metrics snapshot. Optional; `NotSupported` stops the metrics loop.
    fn record_metrics(&self, snapshot: &MetricsSnapshot) -> Result<(), ProviderError> {
        let _ = snapshot;
        Err(ProviderError::NotSupported)
    }

    /// Writes out anything buffered. Called by the writer whenever the queue runs empty, so a
    /// buffered sink writes in batches under load and promptly when idle.
    fn flush(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Flushes and releases the sink. Called last at shutdown.
    fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Receives the service's live identity once init has loaded it, on the writer thread
    /// and in order with the records. A sink that signs what it writes (the chained JSON
    /// lines log signs its checkpoints with the SVID key) keeps it; it follows rotations.
    /// Optional.
    fn attach_identity(&self, identity: &Arc<IdentityState>) {
        let _ = identity;
    }

    /// How long the writer may wait with an empty queue before calling
    /// [`flush`](Self::flush) again: for a sink with work due by time (the chained log's
    /// checkpoint interval). `None`, the default, waits for the next record.
    fn idle_flush_interval(&self) -> Option<Duration> {
        None
    }
}

/// The default sink: structured `tracing` events under the `ligand::audit` target.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingTelemetry;

impl Telemetry for TracingTelemetry {
    fn record_decision(&self, e: &DecisionEvent) -> Result<(), ProviderError> {
        tracing::info!(
            target: "ligand::audit",
            request_id = %e.request_id,
            peer = e.input.chain.peer().and_then(|l| l.principal()).unwrap_or(""),
            resource = %e.input.resource.value,
            action = %e.input.action.name,
            allowed = e.allowed,
            cached = e.cached,
            // Absent rather than empty: an empty field costs a line's worth of formatting.
            reason = e.reason.as_deref(),
            error = e.error.as_deref(),
            latency_us = e.latency.as_micros() as u64,
            "decision"
        );
        Ok(())
    }

    fn record_rate_limit(&self, e: &RateLimitEvent) -> Result<(), ProviderError> {
        if !e.allowed {
            tracing::info!(
                target: "ligand::audit",
                request_id = %e.request_id,
                peer = e.input.chain.peer().and_then(|l| l.principal()).unwrap_or(""),
                resource = %e.input.resource.value,
                error = e.error.as_deref(),
                "rate limited"
            );
        }
        Ok(())
    }

    fn record_outbound_call(&self, e: &OutboundCallEvent) -> Result<(), ProviderError> {
        tracing::info!(target: "ligand::audit", target_id = %e.target, outcome = ?e.outcome, "outbound call");
        Ok(())
    }

    fn record_health_transition(&self, _: &HealthTransitionEvent) -> Result<(), ProviderError> {
        // The monitor already logs every transition.
        Ok(())
    }

    fn record_secret_access(&self, e: &SecretAccessEvent) -> Result<(), ProviderError> {
        tracing::info!(
            target: "ligand::audit",
            secret = %e.name,
            access = ?e.access,
            request_id = e.request_id.as_ref().map(RequestId::as_str),
            peer = e.chain.as_ref().and_then(|c| c.peer()).and_then(|l| l.principal()),
            error = e.error.as_deref(),
            "secret access"
        );
        Ok(())
    }
}

impl<T: Telemetry + ?Sized> Telemetry for std::sync::Arc<T> {
    fn record_decision(&self, event: &DecisionEvent) -> Result<(), ProviderError> {
        (**self).record_decision(event)
    }

    fn record_rate_limit(&self, event: &RateLimitEvent) -> Result<(), ProviderError> {
        (**self).record_rate_limit(event)
    }

    fn record_outbound_call(&self, event: &OutboundCallEvent) -> Result<(), ProviderError> {
        (**self).record_outbound_call(event)
    }

    fn record_health_transition(&self, event: &HealthTransitionEvent) -> Result<(), ProviderError> {
        (**self).record_health_transition(event)
    }

    fn record_secret_access(&self, event: &SecretAccessEvent) -> Result<(), ProviderError> {
        (**self).record_secret_access(event)
    }

    fn record_metrics(&self, snapshot: &MetricsSnapshot) -> Result<(), ProviderError> {
        (**self).record_metrics(snapshot)
    }

    fn flush(&self) -> Result<(), ProviderError> {
        (**self).flush()
    }

    fn close(&self) -> Result<(), ProviderError> {
        (**self).close()
    }

    fn attach_identity(&self, identity: &Arc<IdentityState>) {
        (**self).attach_identity(identity);
    }

    fn idle_flush_interval(&self) -> Option<Duration> {
        (**self).idle_flush_interval()
    }
}
