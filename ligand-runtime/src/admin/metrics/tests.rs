#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::{Duration, SystemTime};

use super::*;
use crate::chain::{Chain, Link};
use crate::config::AuditOverflow;
use crate::policy::EvalRequest;
use crate::ratelimit::RateLimitResponse;
use crate::request::{Action, RequestLine, Resource};
use crate::telemetry::{Passed, RateLimitEvent, Telemetry};
use crate::testkit::RecordingTelemetry;

const PEER: &str = "spiffe://example.org/service/caller";

fn input() -> Arc<EvalRequest> {
    let peer = Link::workload(PEER);
    Arc::new(EvalRequest::new(
        Chain::from(vec![peer.clone()]),
        peer,
        Resource::http_path("/accounts/{id}"),
        Action::new("GET"),
        RequestLine::new(http::Method::GET, "/accounts/secret-account-7"),
        "spiffe://example.org/service/accounts",
    ))
}

fn decision(allowed: bool, cached: bool, error: Option<&str>) -> DecisionEvent {
    DecisionEvent {
        timestamp: SystemTime::now(),
        request_id: crate::RequestId::new(),
        input: input(),
        allowed,
        cached,
        latency: Duration::from_micros(300),
        policy_latency: Duration::from_micros(200),
        policy_version: None,
        reason: None,
        error: error.map(str::to_owned),
    }
}

fn rate_limit(allowed: bool, error: Option<&str>) -> RateLimitEvent {
    RateLimitEvent {
        timestamp: SystemTime::now(),
        request_id: crate::RequestId::new(),
        input: input(),
        allowed,
        latency: Duration::from_micros(10),
        current_rps: None,
        limit_rps: None,
        retry_after: None,
        error: error.map(str::to_owned),
    }
}

fn outbound(outcome: OutboundOutcome) -> OutboundCallEvent {
    OutboundCallEvent {
        timestamp: SystemTime::now(),
        source: "spiffe://example.org/service/accounts".into(),
        target: "spiffe://example.org/service/fraud".into(),
        method: http::Method::POST,
        address: "10.0.0.7:8443".into(),
        outcome,
        status: None,
        attempts: 1,
        latency: Duration::from_millis(3),
    }
}

/// Renders `metrics` with a live monitor and queue, and parses the text as a scraper would.
fn scrape(metrics: &AuditMetrics) -> (String, prometheus_parse::Scrape) {
    let sink: Arc<dyn Telemetry> = Arc::new(RecordingTelemetry::new());
    let audit = AuditQueue::start(sink.clone(), 16, AuditOverflow::Drop, None).unwrap();
    let monitor = Arc::new(Monitor::new(
        [ProviderKind::Identity, ProviderKind::Policy],
        sink,
    ));
    monitor.set(ProviderKind::Identity, State::Ready, None);
    let exporter = Exporter::new(metrics, monitor, audit, Arc::default());
    let text = exporter.render().unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    (text, scrape)
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn outcomes_map_errors_apart_from_denials() {
    assert_eq!(outcome(true, false), "allow");
    assert_eq!(outcome(false, false), "deny");
    assert_eq!(outcome(false, true), "error");
    // The pipeline never allows on error, but an error is counted as one whatever the flag.
    assert_eq!(outcome(true, true), "error");
    for o in OUTBOUND_OUTCOMES {
        // The label is the audit record's own name for the outcome.
        let serialized = serde_json::to_value(o).unwrap();
        assert_eq!(serialized, outbound_outcome(o), "{o:?}");
    }
    for s in STATES {
        assert_eq!(state_label(s), s.to_string());
    }
}

#[test]
fn records_are_counted_by_outcome_and_every_series_starts_at_zero() {
    let metrics = AuditMetrics::new();
    let (_, before) = scrape(&metrics);
    for outcome in OUTCOMES {
        for cached in ["true", "false"] {
            let labels = [("outcome", outcome), ("cached", cached)];
            assert_eq!(value(&before, "ligand_authz_decisions_total", &labels), 0.0);
        }
        let labels = [("outcome", outcome)];
        assert_eq!(
            value(&before, "ligand_ratelimit_decisions_total", &labels),
            0.0
        );
    }

    for _ in 0..3 {
        metrics.observe(&Record::Decision {
            rate_limit: Some(Passed {
                latency: Duration::from_micros(3),
                response: RateLimitResponse::allow(),
            }),
            decision: decision(true, false, None),
        });
    }
    metrics.observe(&Record::Decision {
        rate_limit: None,
        decision: decision(true, true, None),
    });
    metrics.observe(&Record::Decision {
        rate_limit: None,
        decision: decision(false, false, None),
    });
    metrics.observe(&Record::Decision {
        rate_limit: None,
        decision: decision(false, false, Some("policy evaluation timed out")),
    });
    metrics.observe(&Record::RateLimit(rate_limit(false, None)));
    metrics.observe(&Record::RateLimit(rate_limit(false, Some("redis down"))));
    metrics.observe(&Record::Outbound(outbound(OutboundOutcome::Success)));
    metrics.observe(&Record::Outbound(outbound(OutboundOutcome::CircuitOpen)));

    let (text, after) = scrape(&metrics);
    let decisions = |outcome, cached| {
        value(
            &after,
            "ligand_authz_decisions_total",
            &[("outcome", outcome), ("cached", cached)],
        )
    };
    assert_eq!(decisions("allow", "false"), 3.0);
    assert_eq!(decisions("allow", "true"), 1.0);
    assert_eq!(decisions("deny", "false"), 1.0);
    assert_eq!(decisions("error", "false"), 1.0);
    let limits = |outcome| {
        value(
            &after,
            "ligand_ratelimit_decisions_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        (limits("allow"), limits("deny"), limits("error")),
        (3.0, 1.0, 1.0)
    );
    let calls = |outcome| {
        value(
            &after,
            "ligand_outbound_calls_total",
            &[("outcome", outcome)],
        )
    };
    assert_eq!(
        (calls("success"), calls("circuit_open"), calls("timeout")),
        (1.0, 1.0, 0.0)
    );
    assert!(
        text.contains("ligand_authz_decision_duration_seconds_count 6\n"),
        "{text}"
    );
    assert!(
        text.contains("ligand_authz_decision_duration_seconds_bucket{le=\"0.00025\"} 6\n"),
        "{text}"
    );

    // Health as state sets, for the tracked providers only.
    let health = |provider, state| {
        value(
            &after,
            "ligand_health_state",
            &[("provider", provider), ("state", state)],
        )
    };
    assert_eq!(health("identity", "ready"), 1.0);
    assert_eq!(health("identity", "initializing"), 0.0);
    assert_eq!(health("policy", "initializing"), 1.0);
    assert!(!text.contains("provider=\"binding\""), "{text}");
    assert_eq!(
        value(
            &after,
            "ligand_health_overall_state",
            &[("state", "initializing")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "ligand_audit_records_dropped_total", &[]),
        0.0
    );

    // No request detail ever becomes a label.
    for needle in ["spiffe://", "/accounts", "secret-account-7", "10.0.0.7"] {
        assert!(!text.contains(needle), "{needle} in {text}");
    }
}

#[test]
fn ejections_and_circuit_transitions_are_counted_from_zero() {
    let metrics = AuditMetrics::new();
    let (_, before) = scrape(&metrics);
    for reason in ["consecutive_failures", "success_rate", "latency"] {
        let labels = [("reason", reason)];
        assert_eq!(
            value(&before, "ligand_outbound_ejections_total", &labels),
            0.0
        );
    }
    for to in ["open", "half_open", "closed"] {
        let labels = [("to", to)];
        assert_eq!(
            value(
                &before,
                "ligand_outbound_circuit_transitions_total",
                &labels
            ),
            0.0
        );
    }
    metrics.ejected(EjectionReason::SuccessRate);
    metrics.circuit(CircuitState::Open);
    metrics.circuit(CircuitState::HalfOpen);
    metrics.circuit(CircuitState::Open);
    let (_, after) = scrape(&metrics);
    let ejections = |reason| {
        value(
            &after,
            "ligand_outbound_ejections_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(ejections("success_rate"), 1.0);
    assert_eq!(ejections("consecutive_failures"), 0.0);
    let entered = |to| {
        value(
            &after,
            "ligand_outbound_circuit_transitions_total",
            &[("to", to)],
        )
    };
    assert_eq!(
        (entered("open"), entered("half_open"), entered("closed")),
        (2.0, 1.0, 0.0)
    );
}
