//! [`LogLinesTelemetry`]: the audit log as readable lines, one record per line.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::out::Out;
use super::{
    DecisionEvent, HealthTransitionEvent, OutboundCallEvent, RateLimitEvent, SecretAccessEvent,
    Telemetry,
};
use crate::error::ProviderError;

/// Writes every record as one line of `key=value` fields, for people and for `logfmt`
/// parsers:
///
/// ```text
/// 2026-12-06T04:13:27.461486Z audit decision request_id=487464c3124f41148d03bc37c8b1617d peer=spiffe://bank.example/service/reporting resource=/accounts/{id} action=GET allowed=true cached=false reason=allowed latency_us=201
/// ```
///
/// A decision for every request that reached policy, rate-limit records only for denials and
/// limiter errors, outbound calls, secret accesses and health transitions (metrics snapshots
/// are for [`JsonLinesTelemetry`](super::JsonLinesTelemetry) and metrics sinks). A value that
/// is not a plain token is quoted with Rust string escapes, so a caller-controlled string
/// can neither break a line nor forge a field.
///
/// Unlike [`TracingTelemetry`](super::TracingTelemetry), records do not pass through the log
/// subscriber: `RUST_LOG` cannot silence the audit trail, and a record costs a fraction of a
/// formatted log event. The sink is buffered; the framework's audit writer flushes it when its
/// queue runs empty.
///
/// ```
/// use ligand_runtime::LogLinesTelemetry;
///
/// let audit = LogLinesTelemetry::new(Vec::new());
/// # let _ = audit;
/// // Config::builder().telemetry(LogLinesTelemetry::stdout()) ...
/// ```
pub struct LogLinesTelemetry {
    out: Out,
}

impl fmt::Debug for LogLinesTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogLinesTelemetry")
    }
}

impl LogLinesTelemetry {
    /// Writes to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self { out: Out::new(out) }
    }

    /// Writes to the process's standard output, in writes of at most 4 KiB (atomic on a pipe,
    /// so lines never interleave with other output).
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

    fn line(
        &self,
        time: SystemTime,
        kind: &str,
        fields: impl FnOnce(&mut Fields<'_>) -> io::Result<()>,
    ) -> Result<(), ProviderError> {
        self.out.line(|out| {
            write!(
                out,
                "{} audit {kind}",
                humantime::format_rfc3339_micros(time)
            )?;
            fields(&mut Fields { out })?;
            out.write_all(b"\n")
        })
    }
}

/// The fields of one line.
struct Fields<'a> {
    out: &'a mut dyn Write,
}

impl Fields<'_> {
    /// ` key=value`, the value quoted and escaped unless it is a plain token.
    fn str(&mut self, key: &str, value: &str) -> io::Result<()> {
        if is_token(value) {
            write!(self.out, " {key}={value}")
        } else {
            write!(self.out, " {key}={value:?}")
        }
    }

    /// The field when there is a value; nothing otherwise.
    fn opt(&mut self, key: &str, value: Option<&str>) -> io::Result<()> {
        value.map_or(Ok(()), |value| self.str(key, value))
    }

    fn display(&mut self, key: &str, value: impl fmt::Display) -> io::Result<()> {
        write!(self.out, " {key}={value}")
    }

    fn micros(&mut self, key: &str, value: Duration) -> io::Result<()> {
        self.display(key, value.as_micros())
    }
}

/// Whether `value` can be written bare: non-empty, printable ASCII, and nothing that would
/// end the value or start a quoted one.
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\')
}

impl Telemetry for LogLinesTelemetry {
    fn record_decision(&self, e: &DecisionEvent) -> Result<(), ProviderError> {
        self.line(e.timestamp, "decision", |f| {
            f.str("request_id", e.request_id.as_str())?;
            f.opt("peer", e.input.chain.peer().and_then(|l| l.principal()))?;
            f.str("resource", &e.input.resource.value)?;
            f.str("action", &e.input.action.name)?;
            f.display("allowed", e.allowed)?;
            f.display("cached", e.cached)?;
            f.opt("reason", e.reason.as_deref())?;
            f.opt("error", e.error.as_deref())?;
            f.micros("latency_us", e.latency)
        })
    }

    fn record_rate_limit(&self, e: &RateLimitEvent) -> Result<(), ProviderError> {
        if e.allowed {
            return Ok(());
        }
        self.line(e.timestamp, "rate_limit", |f| {
            f.str("request_id", e.request_id.as_str())?;
            f.opt("peer", e.input.chain.peer().and_then(|l| l.principal()))?;
            f.str("resource", &e.input.resource.value)?;
            f.str("action", &e.input.action.name)?;
            if let Some(retry_after) = e.retry_after {
                f.display("retry_after_ms", retry_after.as_millis())?;
            }
            f.opt("error", e.error.as_deref())
        })
    }

    fn record_outbound_call(&self, e: &OutboundCallEvent) -> Result<(), ProviderError> {
        self.line(e.timestamp, "outbound_call", |f| {
            f.str("target", &e.target)?;
            f.str("address", &e.address)?;
            f.str("outcome", outcome_name(e))?;
            if let Some(status) = e.status {
                f.display("status", status)?;
            }
            f.micros("latency_us", e.latency)
        })
    }

    fn record_health_transition(&self, e: &HealthTransitionEvent) -> Result<(), ProviderError> {
        self.line(e.timestamp, "health", |f| {
            f.display("provider", e.kind)?;
            f.display("from", e.from)?;
            f.display("to", e.to)?;
            f.opt("cause", e.cause.as_deref())
        })
    }

    fn record_secret_access(&self, e: &SecretAccessEvent) -> Result<(), ProviderError> {
        self.line(e.timestamp, "secret_access", |f| {
            f.str("secret", &e.name)?;
            f.str("access", secret_access_name(e))?;
            f.opt("request_id", e.request_id.as_ref().map(|id| id.as_str()))?;
            f.opt(
                "peer",
                e.chain
                    .as_ref()
                    .and_then(|c| c.peer())
                    .and_then(|l| l.principal()),
            )?;
            f.opt("error", e.error.as_deref())
        })
    }

    fn flush(&self) -> Result<(), ProviderError> {
        self.out.flush()
    }

    fn close(&self) -> Result<(), ProviderError> {
        self.flush()
    }
}

/// The outcome as in the JSON lines (`snake_case`).
fn outcome_name(e: &OutboundCallEvent) -> &'static str {
    use super::OutboundOutcome::*;
    match e.outcome {
        Success => "success",
        ServerError => "server_error",
        ConnectError => "connect_error",
        IdentityMismatch => "identity_mismatch",
        Timeout => "timeout",
    }
}

/// The access as in the JSON lines (`snake_case`).
fn secret_access_name(e: &SecretAccessEvent) -> &'static str {
    use super::SecretAccess::*;
    match e.access {
        Hit => "hit",
        Miss => "miss",
        Renewal => "renewal",
        Revocation => "revocation",
        Error => "error",
    }
}

#[cfg(test)]
mod tests;
