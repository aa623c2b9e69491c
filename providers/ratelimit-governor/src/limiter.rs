//! [`GovernorLimiter`]: one keyed GCRA per rule, keyed by the immediate peer's principal.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};
use ligand_runtime::{
    Action, Limit, LimitRules, Link, ProviderContext, ProviderError, RateLimitRequest,
    RateLimitResponse, RateLimiter, Resource,
};
use tokio::task::JoinHandle;

use crate::clock::TokioClock;
use crate::config::{ConfigError, GovernorConfig, Rules};

// Keys are the callers' shared principal strings: a check clones a pointer, never the text.
// Hashed with foldhash (hashbrown's default), seeded per process, rather than SipHash: the
// keys are authenticated principals, not attacker-chosen text, and SipHash was over a
// quarter of a check's cost.
type KeyedGcra =
    Gcra<Arc<str>, DashMapStateStore<Arc<str>, Hasher>, TokioClock, StateInformationMiddleware>;
type Hasher = foldhash::fast::RandomState;

/// An in-process rate limiter: a GCRA per caller principal, with per-caller and per-resource
/// overrides.
///
/// The key is the principal of the chain's immediate peer (the verified mTLS peer, or the
/// caller a trust-boundary service authenticated). A request without one is refused with an
/// error, so the framework denies it (503) instead of sharing one bucket among anonymous
/// callers.
///
/// # Responses
///
/// - `allowed: false` carries `retry_after`: the time until the caller's next request
///   conforms (at most one emission interval, `1 / rate`).
/// - `limit_rps` is the rate of the rule that applied.
/// - `current_rps` is estimated from the GCRA state as `limit_rps × used / burst`, where `used`
///   is the part of the burst the caller currently holds (burst minus the remaining burst
///   capacity after this request). It is `limit_rps` exactly when the caller has exhausted its
///   burst and falls towards `limit_rps / burst` for a caller well within its limit. A single
///   GCRA state (the theoretical arrival time) cannot give the true rate; this estimate is the
///   caller's saturation of its limit, in requests per second.
///
/// # Memory
///
/// Each rule keeps one entry per caller seen recently. Once started (by `init`, through
/// [`RateLimiter::start`]), a task evicts every `eviction_interval_ms` the entries whose state
/// has returned to that of a fresh caller; [`RateLimiter::close`] stops it. Memory is thereby
/// bounded by the callers active within one burst window plus one eviction interval.
///
/// # Example
///
/// ```
/// use ligand_ratelimit_governor::{GovernorConfig, GovernorLimiter};
/// use ligand_runtime::LimitOverride;
///
/// let limiter = GovernorLimiter::new(
///     GovernorConfig::new(100.0, 50)
///         .with_override(LimitOverride::resource("/accounts/{id}/debit", 5.0, 5).action("debit")),
/// )?;
/// // Config::builder().rate_limiter(limiter) …
/// # Ok::<(), ligand_ratelimit_governor::ConfigError>(())
/// ```
pub struct GovernorLimiter {
    inner: Arc<Inner>,
    evictor: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    rules: LimitRules,
    /// One bucket per override, at the override's index in `rules`.
    overrides: Vec<Bucket>,
    default: Bucket,
    eviction_interval: Duration,
    closed: AtomicBool,
}

struct Bucket {
    limit: Limit,
    gcra: KeyedGcra,
}

// === impl GovernorLimiter ===

impl GovernorLimiter {
    /// Validates `config` and builds the limiter. Nothing runs until [`RateLimiter::start`].
    pub fn new(config: GovernorConfig) -> Result<Self, ConfigError> {
        let rules = Rules::new(&config)?;
        let inner = Inner {
            overrides: rules
                .limits
                .overrides()
                .map(|(_, limit)| Bucket::new(*limit))
                .collect(),
            default: Bucket::new(*rules.limits.default_limit()),
            rules: rules.limits,
            eviction_interval: rules.eviction_interval,
            closed: AtomicBool::new(false),
        };
        Ok(Self {
            inner: Arc::new(inner),
            evictor: Mutex::new(None),
        })
    }

    /// The number of caller states held, over all rules.
    pub fn tracked_keys(&self) -> usize {
        self.inner.tracked_keys()
    }

    /// Drops the states that are indistinguishable from a fresh caller's, as the periodic
    /// eviction task does.
    pub fn evict_stale(&self) {
        self.inner.evict_stale();
    }

    fn stop_evictor(&self) {
        let handle = self
            .evictor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            handle.abort();
        }
    }
}

impl fmt::Debug for GovernorLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovernorLimiter")
            .field("default", &self.inner.default.limit)
            .field("overrides", &self.inner.overrides.len())
            .field("tracked_keys", &self.inner.tracked_keys())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Drop for GovernorLimiter {
    fn drop(&mut self) {
        self.stop_evictor();
    }
}

#[async_trait]
impl RateLimiter for GovernorLimiter {
    async fn check(
        &self,
        request: &RateLimitRequest<'_>,
    ) -> Result<RateLimitResponse, ProviderError> {
        self.inner.check(request)
    }

    /// Always answers inline: the limiter's state is in memory.
    fn check_inline(
        &self,
        request: &RateLimitRequest<'_>,
    ) -> Option<Result<RateLimitResponse, ProviderError>> {
        Some(self.inner.check(request))
    }

    async fn start(&self, _: &ProviderContext) -> Result<(), ProviderError> {
        self.start_eviction();
        Ok(())
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.inner.closed.store(true, Ordering::Release);
        self.stop_evictor();
        Ok(())
    }
}

impl GovernorLimiter {
    /// Starts (or restarts) the periodic eviction task on the current tokio runtime.
    ///
    /// `init` does this through [`RateLimiter::start`]; call it directly when using the
    /// limiter outside `init`.
    pub fn start_eviction(&self) {
        let period = self.inner.eviction_interval;
        let inner: Weak<Inner> = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // The task holds only a weak reference so that dropping the limiter ends it.
                let Some(inner) = inner.upgrade() else { break };
                inner.evict_stale();
            }
        });
        let previous = self
            .evictor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(task);
        if let Some(previous) = previous {
            previous.abort();
        }
    }
}

// === impl Inner ===

impl Inner {
    fn check(&self, request: &RateLimitRequest<'_>) -> Result<RateLimitResponse, ProviderError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ProviderError::Closed);
        }
        let caller = request
            .chain
            .peer()
            .and_then(Link::principal_shared)
            .ok_or_else(|| ProviderError::Invalid("request has no peer principal".into()))?;
        Ok(self
            .bucket(caller, request.resource, request.action)
            .check(caller))
    }

    /// The first matching override's bucket, or the default.
    fn bucket(&self, caller: &str, resource: &Resource, action: &Action) -> &Bucket {
        match self.rules.select(caller, resource, action) {
            (None, _) => &self.default,
            // In range: `overrides` was built from `rules.overrides()`, one bucket per override.
            (Some(index), _) => &self.overrides[index],
        }
    }

    fn buckets(&self) -> impl Iterator<Item = &Bucket> {
        std::iter::once(&self.default).chain(&self.overrides)
    }

    fn tracked_keys(&self) -> usize {
        self.buckets().map(|bucket| bucket.gcra.len()).sum()
    }

    fn evict_stale(&self) {
        let before = self.tracked_keys();
        for bucket in self.buckets() {
            bucket.gcra.retain_recent();
            bucket.gcra.shrink_to_fit();
        }
        tracing::trace!(
            before,
            after = self.tracked_keys(),
            "evicted stale rate-limit keys"
        );
    }
}

// === impl Bucket ===

impl Bucket {
    fn new(limit: Limit) -> Self {
        let quota = Quota::with_period(limit.interval())
            .map(|quota| quota.allow_burst(limit.burst()))
            // `Limit::new` refuses a zero interval, the only case `with_period` rejects.
            .unwrap_or_else(|| Quota::per_second(limit.burst()).allow_burst(limit.burst()));
        let gcra = KeyedGcra::new(
            quota,
            DashMapStateStore::with_hasher(Hasher::default()),
            TokioClock,
        );
        Self { limit, gcra }
    }

    fn check(&self, caller: &Arc<str>) -> RateLimitResponse {
        let burst = self.limit.burst().get();
        match self.gcra.check_key(caller) {
            Ok(snapshot) => {
                let used = burst.saturating_sub(snapshot.remaining_burst_capacity());
                RateLimitResponse {
                    allowed: true,
                    retry_after: None,
                    current_rps: Some(self.limit.rate() * f64::from(used) / f64::from(burst)),
                    limit_rps: Some(self.limit.rate()),
                }
            }
            Err(not_until) => RateLimitResponse {
                allowed: false,
                retry_after: Some(not_until.wait_time_from(TokioClock.now())),
                current_rps: Some(self.limit.rate()),
                limit_rps: Some(self.limit.rate()),
            },
        }
    }
}
