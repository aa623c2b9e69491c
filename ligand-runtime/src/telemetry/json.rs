//! [`JsonLinesTelemetry`]: the audit log as JSON lines, one record per line.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use super::out::Out;
use super::{
    DecisionEvent, HealthTransitionEvent, MetricsSnapshot, OutboundCallEvent, RateLimitEvent,
    SecretAccessEvent, Telemetry,
};
use crate::audit::{AuditChain, ChainState};
use crate::error::ProviderError;
use crate::tls::IdentityState;
use crate::wimse::{Clock, SystemClock};

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
/// With [`with_chain`](Self::with_chain) or [`chained_file`](Self::chained_file) the log is
/// tamper-evident: every line carries `seq` and the hash of the line before, and signed
/// checkpoints seal it (see [`audit`](crate::audit)).
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
    /// The hash chain, when the log is chained; only the audit writer thread locks it.
    chain: Option<Mutex<ChainState>>,
}

impl fmt::Debug for JsonLinesTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonLinesTelemetry")
    }
}

impl JsonLinesTelemetry {
    /// Writes to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self {
            out: Out::new(out),
            chain: None,
        }
    }

    /// Writes to the process's standard output.
    pub fn stdout() -> Self {
        Self {
            out: Out::stdout(),
            chain: None,
        }
    }

    /// The same sink writing a hash-chained log that starts a new chain (`seq` 0), sealed
    /// with checkpoints as `chain` says. For a file, prefer
    /// [`chained_file`](Self::chained_file), which continues the chain already in it.
    pub fn with_chain(mut self, chain: AuditChain) -> Self {
        self.chain = Some(Mutex::new(ChainState::new(chain, Arc::new(SystemClock))));
        self
    }

    /// Appends a hash-chained log to the file at `path` (created 0600 on Unix), continuing
    /// the chain of the records already in it. A file whose last line is not a whole chained
    /// record (cut by a crash, or not a chained log) is refused rather than hidden behind new
    /// links.
    pub fn chained_file(path: impl AsRef<Path>, chain: AuditChain) -> io::Result<Self> {
        let mut file = super::out::open(path.as_ref(), true)?;
        let state = ChainState::resume(chain, Arc::new(SystemClock), &mut file)?;
        Ok(Self {
            out: Out::new(file),
            chain: Some(Mutex::new(state)),
        })
    }

    /// The same sink timing and dating its checkpoints by `clock` (a chained sink only).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        if let Some(chain) = &self.chain {
            chain
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_clock(clock);
        }
        self
    }

    /// Appends to the file at `path`, creating it (mode 0600 on Unix: the audit log names
    /// callers and resources) if it does not exist.
    pub fn file(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            out: Out::file(path.as_ref())?,
            chain: None,
        })
    }

    fn line(&self, record: &impl Serialize) -> Result<(), ProviderError> {
        let Some(chain) = &self.chain else {
            return self.out.line(|out| {
                serde_json::to_writer(&mut *out, record)?;
                out.push(b'\n');
                Ok(())
            });
        };
        let mut chain = chain.lock().unwrap_or_else(|e| e.into_inner());
        let mut hash = String::new();
        self.out.line(|out| {
            hash = chain.compose(out, |out| {
                serde_json::to_writer(&mut *out, record).map_err(io::Error::from)
            })?;
            Ok(())
        })?;
        chain.commit(hash);
        if chain.count_due() {
            self.seal(&mut chain, false)?;
        }
        Ok(())
    }

    /// Writes a signed checkpoint; `last` marks the one of a clean shutdown.
    fn seal(&self, chain: &mut ChainState, last: bool) -> Result<(), ProviderError> {
        let mut hash = String::new();
        self.out.line(|out| {
            hash = chain.checkpoint(out, last)?;
            Ok(())
        })?;
        chain.commit_checkpoint(hash);
        Ok(())
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

pub(crate) fn rfc3339<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
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

    fn attach_identity(&self, identity: &Arc<IdentityState>) {
        if let Some(chain) = &self.chain {
            chain
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .attach(identity.clone());
        }
    }

    fn idle_flush_interval(&self) -> Option<Duration> {
        let chain = self.chain.as_ref()?;
        Some(chain.lock().unwrap_or_else(|e| e.into_inner()).interval())
    }

    fn flush(&self) -> Result<(), ProviderError> {
        if let Some(chain) = &self.chain {
            let mut chain = chain.lock().unwrap_or_else(|e| e.into_inner());
            if chain.time_due() {
                self.seal(&mut chain, false)?;
            }
        }
        self.out.flush()
    }

    fn close(&self) -> Result<(), ProviderError> {
        if let Some(chain) = &self.chain {
            let mut chain = chain.lock().unwrap_or_else(|e| e.into_inner());
            if chain.can_sign() {
                self.seal(&mut chain, true)?;
            }
        }
        self.out.flush()
    }
}
