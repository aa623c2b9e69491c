use std::sync::Mutex;

use crate::error::ProviderError;
use crate::telemetry::{
    DecisionEvent, HealthTransitionEvent, MetricsSnapshot, OutboundCallEvent, RateLimitEvent,
    SecretAccessEvent, Telemetry,
};

/// Keeps every event it receives, in order.
#[derive(Debug, Default)]
pub struct RecordingTelemetry {
    decisions: Mutex<Vec<DecisionEvent>>,
    rate_limits: Mutex<Vec<RateLimitEvent>>,
    outbound: Mutex<Vec<OutboundCallEvent>>,
    health: Mutex<Vec<HealthTransitionEvent>>,
    metrics: Mutex<Vec<MetricsSnapshot>>,
    secrets: Mutex<Vec<SecretAccessEvent>>,
    closed: Mutex<bool>,
}

fn snapshot<T: Clone>(events: &Mutex<Vec<T>>) -> Vec<T> {
    events.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn push<T>(events: &Mutex<Vec<T>>, event: T) -> Result<(), ProviderError> {
    events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    Ok(())
}

impl RecordingTelemetry {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The decision events so far.
    pub fn decisions(&self) -> Vec<DecisionEvent> {
        snapshot(&self.decisions)
    }

    /// The rate-limit events so far.
    pub fn rate_limits(&self) -> Vec<RateLimitEvent> {
        snapshot(&self.rate_limits)
    }

    /// The outbound-call events so far.
    pub fn outbound_calls(&self) -> Vec<OutboundCallEvent> {
        snapshot(&self.outbound)
    }

    /// The health transitions so far.
    pub fn health_transitions(&self) -> Vec<HealthTransitionEvent> {
        snapshot(&self.health)
    }

    /// The metrics snapshots so far.
    pub fn metrics(&self) -> Vec<MetricsSnapshot> {
        snapshot(&self.metrics)
    }

    /// The secret accesses so far.
    pub fn secret_accesses(&self) -> Vec<SecretAccessEvent> {
        snapshot(&self.secrets)
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Telemetry for RecordingTelemetry {
    fn record_decision(&self, event: &DecisionEvent) -> Result<(), ProviderError> {
        push(&self.decisions, event.clone())
    }

    fn record_rate_limit(&self, event: &RateLimitEvent) -> Result<(), ProviderError> {
        push(&self.rate_limits, event.clone())
    }

    fn record_outbound_call(&self, event: &OutboundCallEvent) -> Result<(), ProviderError> {
        push(&self.outbound, event.clone())
    }

    fn record_health_transition(&self, event: &HealthTransitionEvent) -> Result<(), ProviderError> {
        push(&self.health, event.clone())
    }

    fn record_secret_access(&self, event: &SecretAccessEvent) -> Result<(), ProviderError> {
        push(&self.secrets, event.clone())
    }

    fn record_metrics(&self, snapshot: &MetricsSnapshot) -> Result<(), ProviderError> {
        push(&self.metrics, snapshot.clone())
    }

    fn close(&self) -> Result<(), ProviderError> {
        *self.closed.lock().unwrap_or_else(|e| e.into_inner()) = true;
        Ok(())
    }
}
