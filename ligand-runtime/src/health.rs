//! The health monitor: one state per provider and an overall state derived from them.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::telemetry::{HealthTransitionEvent, Telemetry};

/// A provider tracked by the [`Monitor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProviderKind {
    /// The workload identity (required).
    Identity,
    /// The policy engine (required).
    Policy,
    /// The inbound binding (required for services that serve peers).
    Binding,
    /// The policy bundle fetcher.
    BundleFetcher,
    /// The rate limiter.
    RateLimiter,
    /// The telemetry sink.
    Telemetry,
    /// The secrets backend.
    Secrets,
    /// The service registry.
    ServiceRegistry,
    /// The registrar publishing this instance (Degraded while its registration is lost).
    ServiceRegistrar,
    /// The fleet-wide retry budget (Degraded while its fleet view is stale and retries use
    /// the local budget alone).
    RetryBudget,
}

impl ProviderKind {
    /// Every kind, in monitor order.
    pub const ALL: [ProviderKind; 10] = [
        Self::Identity,
        Self::Policy,
        Self::Binding,
        Self::BundleFetcher,
        Self::RateLimiter,
        Self::Telemetry,
        Self::Secrets,
        Self::ServiceRegistry,
        Self::ServiceRegistrar,
        Self::RetryBudget,
    ];

    /// Whether the service refuses traffic while this provider is not ready.
    pub fn is_required(self) -> bool {
        matches!(self, Self::Identity | Self::Policy | Self::Binding)
    }

    /// The kind's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Policy => "policy",
            Self::Binding => "binding",
            Self::BundleFetcher => "bundle_fetcher",
            Self::RateLimiter => "rate_limiter",
            Self::Telemetry => "telemetry",
            Self::Secrets => "secrets",
            Self::ServiceRegistry => "service_registry",
            Self::ServiceRegistrar => "service_registrar",
            Self::RetryBudget => "retry_budget",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The health of one provider or of the whole service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum State {
    /// Not yet started. A required provider here means no traffic is served.
    Initializing = 0,
    /// Operating normally.
    Ready = 1,
    /// Reduced capability: an optional provider is down, or a required one is inside its grace
    /// period. Traffic is still served.
    Degraded = 2,
    /// Shutting down: in-flight work completes, new requests are refused.
    Draining = 3,
    /// Failed or closed. A required provider here means no traffic is served.
    Unavailable = 4,
}

impl State {
    /// Whether requests may be served in this overall state.
    pub fn serves_traffic(self) -> bool {
        matches!(self, Self::Ready | Self::Degraded)
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Initializing,
            1 => Self::Ready,
            2 => Self::Degraded,
            3 => Self::Draining,
            _ => Self::Unavailable,
        }
    }

    /// Rank for [`Monitor::overall`]: Unavailable > Initializing > Draining > Degraded > Ready.
    fn severity(self) -> u8 {
        match self {
            Self::Ready => 0,
            Self::Degraded => 1,
            Self::Draining => 2,
            Self::Initializing => 3,
            Self::Unavailable => 4,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Initializing => "initializing",
            Self::Ready => "ready",
            Self::Degraded => "degraded",
            Self::Draining => "draining",
            Self::Unavailable => "unavailable",
        })
    }
}

const UNTRACKED: u8 = u8::MAX;

/// Tracks every configured provider's [`State`] and derives the service's overall state.
///
/// All tracked providers start [`State::Initializing`]. Providers that were not configured are
/// not tracked and do not affect the overall state. The overall state is kept precomputed so
/// the request path reads one atomic.
pub struct Monitor {
    states: [AtomicU8; ProviderKind::ALL.len()],
    overall: AtomicU8,
    /// Set once shutdown starts: from then on only Draining and Unavailable are accepted, so a
    /// background loop cannot report a provider Ready again while the service drains.
    shutting_down: std::sync::atomic::AtomicBool,
    transitions: Mutex<()>,
    telemetry: Arc<dyn Telemetry>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for kind in ProviderKind::ALL {
            if let Some(state) = self.provider(kind) {
                map.entry(&kind, &state);
            }
        }
        map.finish()
    }
}

impl Monitor {
    /// A monitor tracking `kinds`, all [`State::Initializing`], reporting transitions to
    /// `telemetry`.
    pub(crate) fn new(
        kinds: impl IntoIterator<Item = ProviderKind>,
        telemetry: Arc<dyn Telemetry>,
    ) -> Self {
        let states = std::array::from_fn(|_| AtomicU8::new(UNTRACKED));
        for kind in kinds {
            states[kind.index()].store(State::Initializing as u8, Ordering::Relaxed);
        }
        let monitor = Self {
            states,
            overall: AtomicU8::new(State::Initializing as u8),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            transitions: Mutex::new(()),
            telemetry,
        };
        monitor.recompute();
        monitor
    }

    /// The overall state: for required providers the most severe of their states
    /// (Unavailable > Initializing > Draining > Degraded > Ready); an optional provider that is
    /// Degraded or Unavailable makes the service Degraded.
    pub fn overall(&self) -> State {
        State::from_u8(self.overall.load(Ordering::Acquire))
    }

    /// The state of `kind`, or `None` when it is not tracked (not configured).
    pub fn provider(&self, kind: ProviderKind) -> Option<State> {
        match self.states[kind.index()].load(Ordering::Acquire) {
            UNTRACKED => None,
            v => Some(State::from_u8(v)),
        }
    }

    /// Moves `kind` to `state`. A change (or any transition with a cause) is reported to
    /// telemetry as a [`HealthTransitionEvent`]. Setting an untracked kind starts tracking it.
    ///
    /// Once [`Monitor::begin_shutdown`] has been called, only Draining and Unavailable are
    /// accepted; other states are ignored.
    pub(crate) fn set(&self, kind: ProviderKind, state: State, cause: Option<String>) {
        let from = {
            let _guard = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
            if self.shutting_down.load(Ordering::Acquire)
                && !matches!(state, State::Draining | State::Unavailable)
            {
                return;
            }
            let previous = self.states[kind.index()].swap(state as u8, Ordering::AcqRel);
            self.recompute();
            match previous {
                UNTRACKED => State::Initializing,
                v => State::from_u8(v),
            }
        };
        if from != state || cause.is_some() {
            match &cause {
                Some(cause) => {
                    tracing::warn!(%kind, %from, to = %state, %cause, "health transition")
                }
                None => tracing::debug!(%kind, %from, to = %state, "health transition"),
            }
            let event = HealthTransitionEvent {
                timestamp: SystemTime::now(),
                kind,
                from,
                to: state,
                cause,
            };
            // Telemetry without health events answers NotSupported; nothing else to do.
            let _ = self.telemetry.record_health_transition(&event);
        }
    }

    /// Whether shutdown has started.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Marks the start of shutdown: no provider can become Ready or Degraded again.
    pub(crate) fn begin_shutdown(&self) {
        let _guard = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
        self.shutting_down.store(true, Ordering::Release);
    }

    fn recompute(&self) {
        let mut overall = State::Ready;
        for kind in ProviderKind::ALL {
            let Some(state) = self.provider(kind) else {
                continue;
            };
            let effective = if kind.is_required() {
                state
            } else {
                match state {
                    State::Degraded | State::Unavailable => State::Degraded,
                    // An optional provider still starting or draining does not stop traffic.
                    _ => State::Ready,
                }
            };
            if effective.severity() > overall.severity() {
                overall = effective;
            }
        }
        self.overall.store(overall as u8, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::RecordingTelemetry;

    fn monitor(kinds: &[ProviderKind]) -> (Monitor, Arc<RecordingTelemetry>) {
        let telemetry = Arc::new(RecordingTelemetry::new());
        (
            Monitor::new(kinds.iter().copied(), telemetry.clone()),
            telemetry,
        )
    }

    #[test]
    fn overall_follows_documented_priority() {
        use ProviderKind::*;
        let (m, _) = monitor(&[Identity, Policy, Binding, RateLimiter]);
        assert_eq!(m.overall(), State::Initializing);
        for kind in [Identity, Policy, Binding] {
            m.set(kind, State::Ready, None);
        }
        assert_eq!(
            m.overall(),
            State::Ready,
            "an optional provider still starting does not block"
        );
        m.set(RateLimiter, State::Unavailable, Some("down".into()));
        assert_eq!(m.overall(), State::Degraded);
        m.set(Binding, State::Draining, None);
        assert_eq!(m.overall(), State::Draining, "Draining outranks Degraded");
        m.set(Policy, State::Initializing, None);
        assert_eq!(
            m.overall(),
            State::Initializing,
            "Initializing outranks Draining"
        );
        m.set(Identity, State::Unavailable, None);
        assert_eq!(
            m.overall(),
            State::Unavailable,
            "Unavailable outranks everything"
        );
        assert!(!m.overall().serves_traffic());
    }

    #[test]
    fn untracked_kinds_do_not_count_and_transitions_are_reported_once() {
        let (m, telemetry) = monitor(&[ProviderKind::Identity]);
        assert_eq!(m.provider(ProviderKind::Secrets), None);
        m.set(ProviderKind::Identity, State::Ready, None);
        m.set(ProviderKind::Identity, State::Ready, None);
        assert_eq!(m.overall(), State::Ready);
        let events = telemetry.health_transitions();
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].from, events[0].to),
            (State::Initializing, State::Ready)
        );
        // A repeated state with a cause is still reported (the failure is news).
        m.set(ProviderKind::Identity, State::Ready, Some("flap".into()));
        assert_eq!(telemetry.health_transitions().len(), 2);
    }

    #[test]
    fn after_shutdown_begins_nothing_becomes_ready_again() {
        let (m, _) = monitor(&[ProviderKind::Identity]);
        m.set(ProviderKind::Identity, State::Ready, None);
        m.begin_shutdown();
        m.set(ProviderKind::Identity, State::Unavailable, None);
        m.set(ProviderKind::Identity, State::Ready, None);
        assert_eq!(m.provider(ProviderKind::Identity), Some(State::Unavailable));
    }
}
