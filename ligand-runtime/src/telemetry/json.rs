//! [`JsonLinesTelemetry`]: the audit log as JSON lines, one record per line.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use super::out::Out;
use super::{
    DecisionEvent, HealthTransitionEvent, MetricsSnapshot, OutboundCallEvent, RateLimitEvent,
    SecretAccessEvent, Telemetry,
};
use crate::error::ProviderError;

/// Writes every record as one JSON object per line: a decision for every request that reached
/// policy (`"type":"decision"`, with the whole policy input, the outcome, whether it was
/// cached, latencies in microseconds, the policy version, reason and error), rate-limit
/// records only for denials and limiter errors (an allowed request's decision record already
/// shows it passed), outbound calls, secret accesses, health transitions and metrics
/// snapshots. Timestamps are RFC 3339 in UTC with microseconds.
///
/// The sink is buffered; the framework's audit writer flushes it whenever its queue runs
/// empty, so lines appear promptly when idle and in large writes under load.
///
/// ```
/// use ligand_runtime::JsonLinesTelemetry;
///
/// let audit = JsonLinesTelemetry::new(Vec::new());
/// # let _ = audit;
/// // Config::builder().telemetry(JsonLinesTelemetry::stdout()) ...
/// ```
pub struct JsonLinesTelemetry {
    out: Out,
}

impl fmt::Debug for JsonLinesTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonLinesTelemetry")
    }
}

impl JsonLinesTelemetry {
    /// Writes to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self { out: Out::new(out) }
    }

    /// Writes to the process's standard output.
    pub fn stdout() -> Self {
        Self { out: Out::stdout() }
    }

    /// Appends to the file at `path`, creating it (mode 0600 on Unix: the audit log names
    /// callers and resources) if it does not exist.
    pub fn file(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            out: Out::file(path.as_ref())?,
        })
    }

    fn line(&self, record: &impl Serialize) -> Result<(), ProviderError> {
        self.out.line(|out| {
            serde_json::to_writer(&mut *out, record)?;
            out.push(b'\n');
            Ok(())
        })
    }
}

/// A record with its type tag and RFC 3339 timestamp, the event's other fields inline.
#[derive(Serialize)]
struct Line<T> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "rfc3339")]
    time: SystemTime,
    #[serde(flatten)]
    event: T,
}

pub(super) fn rfc3339<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*time))
}

fn micros<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Serialize)]
struct Decision<'a> {
    request_id: &'a str,
    allowed: bool,
    cached: bool,
    input: &'a crate::policy::EvalRequest,
    #[serde(serialize_with = "micros")]
    latency_us: Duration,
    #[serde(serialize_with = "micros")]
    policy_latency_us: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct RateLimited<'a> {
    request_id: &'a str,
    allowed: bool,
    chain: &'a crate::chain::Chain,
    resource: &'a crate::request::Resource,
    action: &'a crate::request::Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_rps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

impl Telemetry for JsonLinesTelemetry {
    fn record_decision(&self, e: &DecisionEvent) -> Result<(), ProviderError> {
        self.line(&Line {
            kind: "decision",
            time: e.timestamp,
            event: Decision {
                request_id: e.request_id.as_str(),
                allowed: e.allowed,
                cached: e.cached,
                input: &e.input,
                latency_us: e.latency,
                policy_latency_us: e.policy_latency,
                policy_version: e.policy_version.as_deref(),
                reason: e.reason.as_deref(),
                error: e.error.as_deref(),
            },
        })
    }

    fn record_rate_limit(&self, e: &RateLimitEvent) -> Result<(), ProviderError> {
        if e.allowed {
            return Ok(());
        }
        self.line(&Line {
            kind: "rate_limit",
            time: e.timestamp,
            event: RateLimited {
                request_id: e.request_id.as_str(),
                allowed: e.allowed,
                chain: &e.input.chain,
                resource: &e.input.resource,
                action: &e.input.action,
                limit_rps: e.limit_rps,
                retry_after_ms: e
                    .retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                error: e.error.as_deref(),
            },
        })
    }

    fn record_outbound_call(&self, e: &OutboundCallEvent) -> Result<(), ProviderError> {
        self.line(&Line {
            kind: "outbound_call",
            time: e.timestamp,
            event: e,
        })
    }

    fn record_health_transition(&self, e: &HealthTransitionEvent) -> Result<(), ProviderError> {
        self.line(&Line {
            kind: "health",
            time: e.timestamp,
            event: e,
        })
    }

    fn record_secret_access(&self, e: &SecretAccessEvent) -> Result<(), ProviderError> {
        self.line(&Line {
            kind: "secret_access",
            time: e.timestamp,
            event: e,
        })
    }

    fn record_metrics(&self, snapshot: &MetricsSnapshot) -> Result<(), ProviderError> {
        self.line(&Line {
            kind: "metrics",
            time: SystemTime::now(),
            event: snapshot,
        })
    }

    fn flush(&self) -> Result<(), ProviderError> {
        self.out.flush()
    }

    fn close(&self) -> Result<(), ProviderError> {
        self.flush()
    }
}
