//! The Prometheus metrics of the admin listener.
//!
//! Two halves. [`AuditMetrics`] holds the counters that follow the audit records (decisions,
//! rate-limit outcomes, outbound calls): the audit writer thread updates them as it hands each
//! record to the sink, so the request path pays nothing for metrics. [`Exporter`] renders them
//! on each scrape together with the values read at that moment (SVID expiry, health, audit
//! losses, secrets cache hits), in the Prometheus text format.
//!
//! Every label takes one of a few fixed values: no SPIFFE ID, path or address ever becomes a
//! label.

use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::health::{Monitor, ProviderKind, State};
use crate::outbound::resilience::breaker::State as CircuitState;
use crate::outbound::resilience::outlier::EjectionReason;
use crate::secrets::SecretsCache;
use crate::telemetry::{AuditQueue, DecisionEvent, OutboundCallEvent, OutboundOutcome, Record};
use crate::tls::IdentityState;

/// A label set: fixed keys, each with one of a few fixed values.
type Labels<const N: usize> = [(&'static str, &'static str); N];

/// Upper bounds of the policy latency buckets, in seconds: 50 µs (a cached decision) to 5 s
/// (the default policy timeout).
const DECISION_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

const OUTCOMES: [&str; 3] = ["allow", "deny", "error"];

const OUTBOUND_OUTCOMES: [OutboundOutcome; 8] = [
    OutboundOutcome::Success,
    OutboundOutcome::ServerError,
    OutboundOutcome::ConnectError,
    OutboundOutcome::IdentityMismatch,
    OutboundOutcome::Timeout,
    OutboundOutcome::Refused,
    OutboundOutcome::CircuitOpen,
    OutboundOutcome::Overloaded,
];

const STATES: [State; 5] = [
    State::Initializing,
    State::Ready,
    State::Degraded,
    State::Draining,
    State::Unavailable,
];

/// The counters fed by the audit writer thread, and the outbound resilience events counted
/// where they happen (rare: an ejection, a circuit transition).
#[derive(Debug)]
pub(crate) struct AuditMetrics {
    decisions: Family<Labels<2>, Counter>,
    decision_duration: Histogram,
    rate_limits: Family<Labels<1>, Counter>,
    outbound: Family<Labels<1>, Counter>,
    ejections: Family<Labels<1>, Counter>,
    circuit_transitions: Family<Labels<1>, Counter>,
    shadow: Family<Labels<1>, Counter>,
}

impl AuditMetrics {
    /// Every series exists from the start at zero, so a rate over the first requests is right.
    pub(crate) fn new() -> Self {
        let metrics = Self {
            decisions: Family::default(),
            decision_duration: Histogram::new(DECISION_BUCKETS),
            rate_limits: Family::default(),
            outbound: Family::default(),
            ejections: Family::default(),
            circuit_transitions: Family::default(),
            shadow: Family::default(),
        };
        for agreement in ["agree", "disagree", "error"] {
            let _ = metrics.shadow.get_or_create(&[("agreement", agreement)]);
        }
        for reason in EJECTION_REASONS {
            let _ = metrics
                .ejections
                .get_or_create(&[("reason", ejection_reason(reason))]);
        }
        for to in CIRCUIT_STATES {
            let _ = metrics
                .circuit_transitions
                .get_or_create(&[("to", circuit_state(to))]);
        }
        for outcome in OUTCOMES {
            for cached in ["true", "false"] {
                let _ = metrics
                    .decisions
                    .get_or_create(&[("outcome", outcome), ("cached", cached)]);
            }
            let _ = metrics.rate_limits.get_or_create(&[("outcome", outcome)]);
        }
        for outcome in OUTBOUND_OUTCOMES {
            let _ = metrics
                .outbound
                .get_or_create(&[("outcome", outbound_outcome(outcome))]);
        }
        metrics
    }

    /// Counts `record`. Called by the audit writer, off the request path.
    pub(crate) fn observe(&self, record: &Record) {
        match record {
            Record::Decision {
                rate_limit,
                decision,
            } => {
                if let Some(passed) = rate_limit {
                    self.rate_limit(passed.response.allowed, false);
                }
                self.decision(decision);
            }
            Record::RateLimit(event) => self.rate_limit(event.allowed, event.error.is_some()),
            Record::Outbound(event) => self.outbound_call(event),
            _ => {}
        }
    }

    fn decision(&self, event: &DecisionEvent) {
        let cached = if event.cached { "true" } else { "false" };
        let outcome = outcome(event.allowed, event.error.is_some());
        self.decisions
            .get_or_create(&[("outcome", outcome), ("cached", cached)])
            .inc();
        self.decision_duration
            .observe(event.policy_latency.as_secs_f64());
    }

    fn rate_limit(&self, allowed: bool, failed: bool) {
        let outcome = outcome(allowed, failed);
        self.rate_limits
            .get_or_create(&[("outcome", outcome)])
            .inc();
    }

    fn outbound_call(&self, event: &OutboundCallEvent) {
        self.outbound
            .get_or_create(&[("outcome", outbound_outcome(event.outcome))])
            .inc();
    }

    /// Counts an endpoint ejected by the outlier detector.
    pub(crate) fn ejected(&self, reason: EjectionReason) {
        self.ejections
            .get_or_create(&[("reason", ejection_reason(reason))])
            .inc();
    }

    /// Counts a circuit breaker entering `to`.
    pub(crate) fn circuit(&self, to: CircuitState) {
        self.circuit_transitions
            .get_or_create(&[("to", circuit_state(to))])
            .inc();
    }

    /// Counts one shadow policy comparison: `agree`, `disagree` or `error`. Called by the
    /// shadow worker, off the request path.
    pub(crate) fn shadow(&self, agreement: &'static str) {
        self.shadow.get_or_create(&[("agreement", agreement)]).inc();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "ligand_authz_decisions",
            "Policy decisions, by outcome and whether the decision cache answered",
            self.decisions.clone(),
        );
        registry.register_with_unit(
            "ligand_authz_decision_duration",
            "Time spent in policy evaluation",
            Unit::Seconds,
            self.decision_duration.clone(),
        );
        registry.register(
            "ligand_ratelimit_decisions",
            "Rate-limiter calls, by outcome",
            self.rate_limits.clone(),
        );
        registry.register(
            "ligand_outbound_calls",
            "Outbound calls, by how they ended",
            self.outbound.clone(),
        );
        registry.register(
            "ligand_outbound_ejections",
            "Endpoints ejected by outlier detection, by detector",
            self.ejections.clone(),
        );
        registry.register(
            "ligand_outbound_circuit_transitions",
            "Circuit breaker transitions, by the state entered",
            self.circuit_transitions.clone(),
        );
        registry.register(
            "ligand_shadow_decisions",
            "Shadow policy decisions compared with the enforced ones, by agreement",
            self.shadow.clone(),
        );
    }
}

/// `allow`, `deny` or `error`: an error denies, but is counted apart from a policy's denial.
fn outcome(allowed: bool, error: bool) -> &'static str {
    match (allowed, error) {
        (_, true) => "error",
        (true, false) => "allow",
        (false, false) => "deny",
    }
}

/// The label value of an outbound outcome: its name in the audit records.
fn outbound_outcome(outcome: OutboundOutcome) -> &'static str {
    match outcome {
        OutboundOutcome::Success => "success",
        OutboundOutcome::ServerError => "server_error",
        OutboundOutcome::ConnectError => "connect_error",
        OutboundOutcome::IdentityMismatch => "identity_mismatch",
        OutboundOutcome::Timeout => "timeout",
        OutboundOutcome::Refused => "refused",
        OutboundOutcome::CircuitOpen => "circuit_open",
        OutboundOutcome::Overloaded => "overloaded",
    }
}

const EJECTION_REASONS: [EjectionReason; 3] = [
    EjectionReason::ConsecutiveFailures,
    EjectionReason::SuccessRate,
    EjectionReason::Latency,
];

const CIRCUIT_STATES: [CircuitState; 3] = [
    CircuitState::Open,
    CircuitState::HalfOpen,
    CircuitState::Closed,
];

fn ejection_reason(reason: EjectionReason) -> &'static str {
    match reason {
        EjectionReason::ConsecutiveFailures => "consecutive_failures",
        EjectionReason::SuccessRate => "success_rate",
        EjectionReason::Latency => "latency",
    }
}

fn circuit_state(state: CircuitState) -> &'static str {
    match state {
        CircuitState::Closed => "closed",
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half_open",
    }
}

fn state_label(state: State) -> &'static str {
    match state {
        State::Initializing => "initializing",
        State::Ready => "ready",
        State::Degraded => "degraded",
        State::Draining => "draining",
        State::Unavailable => "unavailable",
    }
}

/// The parts of the server that exist only later in init than the admin listener.
#[derive(Debug, Default)]
pub(crate) struct LateSources {
    pub(crate) identity: OnceLock<Arc<IdentityState>>,
    pub(crate) secrets: OnceLock<Arc<SecretsCache>>,
}

/// Renders every metric, on each scrape.
#[derive(Debug)]
pub(crate) struct Exporter {
    registry: Registry,
}

impl Exporter {
    pub(crate) fn new(
        counters: &AuditMetrics,
        monitor: Arc<Monitor>,
        audit: Arc<AuditQueue>,
        late: Arc<LateSources>,
    ) -> Self {
        let mut registry = Registry::default();
        counters.register(&mut registry);
        registry.register_collector(Box::new(Live {
            monitor,
            audit,
            late,
        }));
        Self { registry }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The values read at scrape time.
#[derive(Debug)]
struct Live {
    monitor: Arc<Monitor>,
    audit: Arc<AuditQueue>,
    late: Arc<LateSources>,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Some(identity) = self.late.identity.get() {
            let now = SystemTime::now();
            let not_after = identity.not_after();
            // Negative once expired: a scrape must show an expired SVID, not hide it.
            let seconds = match not_after.duration_since(now) {
                Ok(left) => left.as_secs_f64(),
                Err(past) => -past.duration().as_secs_f64(),
            };
            let gauge = ConstGauge::new(seconds);
            gauge.encode(encoder.encode_descriptor(
                "ligand_svid_expiry",
                "Time left before the current SVID expires",
                Some(&Unit::Seconds),
                gauge.metric_type(),
            )?)?;
        }

        let dropped = ConstCounter::new(self.audit.lost());
        dropped.encode(encoder.encode_descriptor(
            "ligand_audit_records_dropped",
            "Audit and telemetry records lost: dropped on a full queue or refused by the sink",
            None,
            dropped.metric_type(),
        )?)?;
        let queued = ConstGauge::new(self.audit.queued());
        queued.encode(encoder.encode_descriptor(
            "ligand_audit_records_queued",
            "Audit records waiting for the sink",
            None,
            queued.metric_type(),
        )?)?;

        if let Some(cache) = self.late.secrets.get() {
            let mut family = encoder.encode_descriptor(
                "ligand_secret_cache_requests",
                "Secret reads, by whether the cache answered",
                None,
                MetricType::Counter,
            )?;
            for (result, count) in [("hit", cache.hits()), ("miss", cache.misses())] {
                ConstCounter::new(count).encode(family.encode_family(&[("result", result)])?)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "ligand_health_state",
            "Each tracked provider's health: 1 for its current state, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        for kind in ProviderKind::ALL {
            if let Some(current) = self.monitor.provider(kind) {
                encode_states(&mut family, ("provider", kind.as_str()), current)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "ligand_health_overall_state",
            "The service's overall health: 1 for its current state, 0 for the others",
            None,
            MetricType::Gauge,
        )?;
        let overall = self.monitor.overall();
        for state in STATES {
            let value = ConstGauge::new(i64::from(state == overall));
            value.encode(family.encode_family(&[("state", state_label(state))])?)?;
        }
        Ok(())
    }
}

/// One series per state, 1 for `current` (the state-set pattern: a query matches a state by
/// name rather than by what a number means).
fn encode_states(
    family: &mut prometheus_client::encoding::MetricEncoder<'_>,
    provider: (&'static str, &'static str),
    current: State,
) -> Result<(), std::fmt::Error> {
    for state in STATES {
        let value = ConstGauge::new(i64::from(state == current));
        let labels: Labels<2> = [provider, ("state", state_label(state))];
        value.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
