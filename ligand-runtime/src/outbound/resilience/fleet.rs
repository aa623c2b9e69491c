//! A retry budget shared by every instance of a service (issue #13): the per-target local
//! budget of [`retry`](super::retry) stays authoritative on the request path, and a
//! background task keeps a view of the whole fleet's calls and retries in a shared store.
//!
//! **Request path.** A retry needs the local budget *and* this instance's share of the fleet
//! allowance. Both are in-memory checks (a few atomic operations and one `ArcSwap` load); no
//! call waits on the store.
//!
//! **Sync.** Every sync period (default 1 s) the task sends, in one [`FleetRetryBudget::sync`],
//! each known target's calls and retries since the last successful sync and receives the
//! fleet's totals over the budget window: calls `C`, retries `R` and the number of instances
//! `n` that synced the target within the window. The fleet allowance is Finagle's budget
//! applied to the fleet:
//!
//! ```text
//! pool = ratio × C + floor × window − R
//! ```
//!
//! **Sharing rule.** Instance `i`, whose own calls and retries in the window are `cᵢ` and
//! `rᵢ` (counted locally, exactly), may make until the next sync
//!
//! ```text
//! shareᵢ = min(ratio × cᵢ + floor × window / n − rᵢ, pool)
//! ```
//!
//! retries, plus `ratio` for each call it makes meanwhile (what those calls add to the
//! pool). Retries made while a sync is on the wire count against the view it brings back.
//!
//! that is, the ratio part goes to the instance whose calls earned it and the floor is split
//! equally among the `n` instances that use the target. Summed over the fleet,
//! `Σ(ratio × cᵢ + floor × window / n − rᵢ) = ratio × C + floor × window − R`: the fleet
//! allowance, so N instances cannot each spend the whole fleet budget (each local budget
//! alone has the whole floor). The shares are computed from the instance's own exact counts,
//! so they do not depend on the order in which instances sync; the fleet's remaining pool,
//! which may lag by one sync of the others, only caps them. A fleet in debt (more retries
//! than the allowance, say after a fallback) stays in debt: the share is negative until new
//! calls pay it off. Budget freed by calls leaving the window is seen at the next sync, which
//! errs towards fewer retries. An instance that joins is counted by the others from their
//! next sync: until then the floor may be shared by one instance more than `n`.
//!
//! **Stale view.** When the last successful sync is older than three sync periods, or the
//! last sync failed, the view is stale: retries fall back to the local budget alone (which
//! still caps them at the single-instance budget) and [`FleetBudget::health`] reports
//! [`State::Degraded`]. This is fail-soft on purpose and not a fail-open of a security
//! control: a retry is an optimisation of the caller's own traffic, each retry has already
//! passed identity, policy and the caller's limits like any call, and the local budget still
//! bounds the amplification. Refusing every retry while the store is down would turn a
//! store outage into more failed calls, which is the outage the budget exists to soften.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use tokio::time::Instant;

use super::config::ConfigError;
use super::retry::{RetryBudget, RetryConfig};
use crate::health::State;

/// How often the fleet view is refreshed, when the configuration does not say.
pub const DEFAULT_FLEET_SYNC: Duration = Duration::from_secs(1);

/// Sync periods after which a view without a successful sync is stale.
const STALE_PERIODS: u32 = 3;

/// The shortest sync period accepted.
const MIN_SYNC: Duration = Duration::from_millis(100);

/// A shared store of every instance's per-target calls and retries: the contract a fleet
/// retry budget provider (such as `ligand-retrybudget-redis`) implements.
#[async_trait]
pub trait FleetRetryBudget: fmt::Debug + Send + Sync + 'static {
    /// Adds `deltas` (this instance's calls and retries per target since its last successful
    /// sync; zero for a target with nothing new) and returns the fleet's totals over the last
    /// `window` for the same targets, in the same order. `instance` identifies this instance
    /// among the fleet for counting instances. Called by one background task, never on the
    /// request path; it should make one round trip for all targets. Called with no deltas
    /// too, before any call goes out: it should then check that the store answers, since the
    /// result is the budget's health.
    async fn sync(
        &self,
        instance: &str,
        window: Duration,
        deltas: &[FleetDelta],
    ) -> Result<Vec<FleetTotals>, FleetSyncError>;
}

/// One target's calls and retries since the last successful sync.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetDelta {
    /// The target service.
    pub target: Arc<str>,
    /// Calls made (one per call, not per attempt).
    pub calls: u64,
    /// Retries made.
    pub retries: u64,
}

/// One target's fleet-wide counts over the budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FleetTotals {
    /// Calls made by every instance.
    pub calls: u64,
    /// Retries made by every instance.
    pub retries: u64,
    /// Instances that synced this target within the window (this one included).
    pub instances: u64,
}

impl FleetTotals {
    /// Totals of `calls` and `retries` over `instances` instances.
    pub fn new(calls: u64, retries: u64, instances: u64) -> Self {
        Self {
            calls,
            retries,
            instances,
        }
    }
}

/// Why a sync with the fleet store failed.
#[derive(Debug, thiserror::Error)]
#[error("fleet retry budget sync failed: {0}")]
pub struct FleetSyncError(#[source] pub Box<dyn StdError + Send + Sync>);

/// The budget arithmetic, as numbers: the settings of [`RetryConfig`] that shape it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Allowance {
    /// Retries per call, as tower applies it (`1 / ⌊1 / ratio⌋`).
    pub(crate) ratio: f64,
    /// Retries per second always allowed.
    pub(crate) min_per_second: u32,
    /// The budget window.
    pub(crate) window: Duration,
}

impl Allowance {
    fn new(config: &RetryConfig) -> Self {
        // tower's TpsBudget withdraws ⌊1 / ratio⌋ deposits per retry; use the same ratio.
        let ratio = if config.budget_ratio > 0.0 {
            1.0 / (1.0 / config.budget_ratio).floor()
        } else {
            0.0
        };
        Self {
            ratio,
            min_per_second: config.budget_min_per_second,
            window: config.budget_ttl,
        }
    }

    /// What the fleet may still retry: `ratio × C + floor × window − R`, negative when the
    /// fleet is in debt.
    pub(crate) fn pool(&self, fleet: FleetTotals) -> f64 {
        self.ratio * fleet.calls as f64 + self.floor() - fleet.retries as f64
    }

    /// The standing reserve of the whole fleet: `floor × window`.
    fn floor(&self) -> f64 {
        f64::from(self.min_per_second) * self.window.as_secs_f64()
    }

    /// What this instance may still retry, given its own calls and retries in the window:
    /// `min(ratio × own calls + floor × window / n − own retries, pool)`.
    pub(crate) fn share(&self, fleet: FleetTotals, own_calls: u64, own_retries: u64) -> f64 {
        let instances = fleet.instances.max(1) as f64;
        let own = self.ratio * own_calls as f64 + self.floor() / instances - own_retries as f64;
        own.min(self.pool(fleet))
    }
}

/// What one sync told a target: the share and the counters it was computed at.
#[derive(Debug)]
struct View {
    /// This instance's calls counter when the deltas of this sync were taken.
    base_calls: u64,
    /// Same for retries.
    base_retries: u64,
    /// Retries this instance may make after `base_retries`, before the per-call credit.
    share: f64,
}

/// One target's counters and fleet view, shared by its retry budget and the sync task.
#[derive(Debug)]
pub(crate) struct FleetShare {
    calls: AtomicU64,
    retries: AtomicU64,
    view: ArcSwapOption<View>,
    fleet: Arc<Shared>,
}

/// What the fleet check says about one retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within this instance's share; counted.
    Allowed,
    /// The share is spent.
    Denied,
    /// No fresh view: the local budget decides alone; counted.
    Stale,
}

impl FleetShare {
    /// Counts one call.
    pub(crate) fn deposit(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from this instance's share, if the view is fresh and the share allows
    /// it. The check and the count are one compare-and-swap, so concurrent retries cannot
    /// overshoot the share.
    pub(crate) fn withdraw(&self, now: Instant) -> Verdict {
        let view = self.view.load();
        let Some(view) = view.as_deref().filter(|_| self.fleet.fresh(now)) else {
            self.retries.fetch_add(1, Ordering::Relaxed);
            self.fleet.fallbacks.fetch_add(1, Ordering::Relaxed);
            return Verdict::Stale;
        };
        let credit = self.fleet.allowance.ratio
            * self
                .calls
                .load(Ordering::Relaxed)
                .saturating_sub(view.base_calls) as f64;
        let allowed = view.share + credit;
        let mut retries = self.retries.load(Ordering::Relaxed);
        loop {
            if retries.saturating_sub(view.base_retries) as f64 + 1.0 > allowed {
                self.fleet.denials.fetch_add(1, Ordering::Relaxed);
                return Verdict::Denied;
            }
            match self.retries.compare_exchange_weak(
                retries,
                retries + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Verdict::Allowed,
                Err(current) => retries = current,
            }
        }
    }
}

/// State of the whole fleet budget shared by its targets and the sync task.
#[derive(Debug)]
struct Shared {
    allowance: Allowance,
    period: Duration,
    /// When the last successful sync took its deltas, as milliseconds after `epoch`, plus
    /// one (0: never, or the last sync failed).
    synced: AtomicU64,
    epoch: Instant,
    /// [`State`] as its `u8`.
    state: AtomicU8,
    fallbacks: AtomicU64,
    denials: AtomicU64,
}

impl Shared {
    fn fresh(&self, now: Instant) -> bool {
        match self.synced.load(Ordering::Acquire) {
            0 => false,
            at => {
                let synced = self.epoch + Duration::from_millis(at - 1);
                now.saturating_duration_since(synced) <= self.period * STALE_PERIODS
            }
        }
    }
}

/// A fleet-wide retry budget: the view of every target this instance calls, refreshed from
/// a [`FleetRetryBudget`] store by [`sync`](Self::sync), which [`spawn`](Self::spawn) runs
/// every sync period.
///
/// ```
/// # use std::sync::Arc;
/// # use ligand_runtime::{FleetBudget, FleetRetryBudget, RetryConfig};
/// # fn run(store: Arc<dyn FleetRetryBudget>) -> Result<(), ligand_runtime::ResilienceConfigError> {
/// let fleet = FleetBudget::new(store, &RetryConfig::default(), FleetBudget::DEFAULT_SYNC)?;
/// # Ok(()) }
/// ```
pub struct FleetBudget {
    store: Arc<dyn FleetRetryBudget>,
    shared: Arc<Shared>,
    instance: String,
    config: RetryConfig,
    targets: Mutex<HashMap<Arc<str>, Arc<FleetShare>>>,
    /// Per target: this instance's calls reported per sync, within the window.
    history: tokio::sync::Mutex<Ledger>,
}

/// The sync task's own bookkeeping.
#[derive(Debug, Default)]
struct Ledger {
    /// Per target: the counters the store has acknowledged, and the own calls per sync in
    /// the window.
    reported: HashMap<Arc<str>, Reported>,
}

#[derive(Debug, Default)]
struct Reported {
    calls: u64,
    retries: u64,
    /// Own calls and retries per sync, within the window.
    own: std::collections::VecDeque<(Instant, u64, u64)>,
}

impl fmt::Debug for FleetBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBudget")
            .field("store", &self.store)
            .field("instance", &self.instance)
            .field("period", &self.shared.period)
            .field("state", &self.health())
            .finish_non_exhaustive()
    }
}

impl FleetBudget {
    /// How often the view is refreshed, when the configuration does not say.
    pub const DEFAULT_SYNC: Duration = DEFAULT_FLEET_SYNC;

    /// A fleet budget over `store` with the budget settings of `retry` (ratio, floor and
    /// window, which every instance of the fleet must share), refreshed every `sync`.
    /// Fails, naming the setting, on an invalid `retry` or a `sync` period under 100 ms or
    /// longer than the window.
    pub fn new(
        store: Arc<dyn FleetRetryBudget>,
        retry: &RetryConfig,
        sync: Duration,
    ) -> Result<Arc<Self>, ConfigError> {
        retry.validate()?;
        if !(MIN_SYNC..=retry.budget_ttl).contains(&sync) {
            return Err(ConfigError::OutOfRange {
                setting: "retry.fleet.sync",
                value: humantime::format_duration(sync).to_string(),
                expected: "100ms up to retry.budget_ttl",
            });
        }
        let rng = super::rng::Rng::from_entropy();
        let instance = format!("{:016x}", rng.next_u64());
        Ok(Arc::new(Self {
            store,
            shared: Arc::new(Shared {
                allowance: Allowance::new(retry),
                period: sync,
                synced: AtomicU64::new(0),
                epoch: Instant::now(),
                state: AtomicU8::new(State::Initializing as u8),
                fallbacks: AtomicU64::new(0),
                denials: AtomicU64::new(0),
            }),
            instance,
            config: retry.clone(),
            targets: Mutex::new(HashMap::new()),
            history: tokio::sync::Mutex::new(Ledger::default()),
        }))
    }

    /// The retry budget of `target`: its own local budget (the settings given to
    /// [`new`](Self::new)) joined to this fleet view. Every call for the same target shares
    /// the fleet counters.
    pub fn target(&self, target: &str) -> TargetBudget {
        TargetBudget {
            inner: RetryBudget::from_config(&self.config).with_fleet(self.share(target)),
        }
    }

    /// The shared counters of `target`, made on first use.
    pub(crate) fn share(&self, target: &str) -> Arc<FleetShare> {
        // A poisoned lock only means another thread panicked while inserting; the map
        // itself is still consistent.
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        targets
            .entry(Arc::from(target))
            .or_insert_with(|| {
                Arc::new(FleetShare {
                    calls: AtomicU64::new(0),
                    retries: AtomicU64::new(0),
                    view: ArcSwapOption::empty(),
                    fleet: self.shared.clone(),
                })
            })
            .clone()
    }

    /// The sync period.
    pub fn period(&self) -> Duration {
        self.shared.period
    }

    /// [`State::Ready`] while the view is fresh, [`State::Degraded`] while it is stale
    /// (retries then use the local budget alone), [`State::Initializing`] before the first
    /// sync.
    pub fn health(&self) -> State {
        let state = State::from_u8(self.shared.state.load(Ordering::Acquire));
        if state == State::Ready && !self.shared.fresh(Instant::now()) {
            State::Degraded
        } else {
            state
        }
    }

    /// Retries decided by the local budget alone because the view was stale.
    pub fn fallbacks(&self) -> u64 {
        self.shared.fallbacks.load(Ordering::Relaxed)
    }

    /// Retries the local budget allowed and the fleet share refused.
    pub fn denials(&self) -> u64 {
        self.shared.denials.load(Ordering::Relaxed)
    }

    /// One sync: sends every target's new calls and retries and installs the fleet view it
    /// gets back. On failure the view is marked stale (and [`health`](Self::health) reports
    /// [`State::Degraded`]) and the unsent counts go with the next sync.
    pub async fn sync(&self) -> Result<(), FleetSyncError> {
        let mut sync = self.history.lock().await;
        let shares: Vec<(Arc<str>, Arc<FleetShare>)> = {
            let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
            targets
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let taken = Instant::now();
        let mut deltas = Vec::with_capacity(shares.len());
        let mut counters = Vec::with_capacity(shares.len());
        for (target, share) in &shares {
            let calls = share.calls.load(Ordering::Relaxed);
            let retries = share.retries.load(Ordering::Relaxed);
            let reported = sync.reported.entry(target.clone()).or_default();
            deltas.push(FleetDelta {
                target: target.clone(),
                calls: calls - reported.calls,
                retries: retries - reported.retries,
            });
            counters.push((calls, retries));
        }
        let window = self.shared.allowance.window;
        let result = self.store.sync(&self.instance, window, &deltas).await;
        let totals = match result {
            Ok(totals) if totals.len() == deltas.len() => totals,
            Ok(totals) => {
                self.mark_stale();
                return Err(FleetSyncError(
                    format!(
                        "the store answered {} totals for {} targets",
                        totals.len(),
                        deltas.len()
                    )
                    .into(),
                ));
            }
            Err(error) => {
                self.mark_stale();
                return Err(error);
            }
        };
        for (((target, share), delta), ((calls, retries), fleet)) in
            shares.iter().zip(&deltas).zip(counters.iter().zip(totals))
        {
            let reported = sync.reported.entry(target.clone()).or_default();
            reported.calls = *calls;
            reported.retries = *retries;
            reported.own.push_back((taken, delta.calls, delta.retries));
            while reported
                .own
                .front()
                .is_some_and(|(at, _, _)| taken.saturating_duration_since(*at) >= window)
            {
                reported.own.pop_front();
            }
            let (own_calls, own_retries) = reported
                .own
                .iter()
                .fold((0, 0), |(c, r), (_, calls, retries)| {
                    (c + calls, r + retries)
                });
            share.view.store(Some(Arc::new(View {
                base_calls: *calls,
                base_retries: *retries,
                share: self.shared.allowance.share(fleet, own_calls, own_retries),
            })));
        }
        let at = u64::try_from(
            taken
                .saturating_duration_since(self.shared.epoch)
                .as_millis(),
        )
        .unwrap_or(u64::MAX - 1);
        self.shared.synced.store(at + 1, Ordering::Release);
        self.shared
            .state
            .store(State::Ready as u8, Ordering::Release);
        Ok(())
    }

    fn mark_stale(&self) {
        self.shared.synced.store(0, Ordering::Release);
        self.shared
            .state
            .store(State::Degraded as u8, Ordering::Release);
    }

    /// Runs [`sync`](Self::sync) every sync period until the returned handle is aborted or
    /// the budget is dropped. A failed sync is logged and retried at the next period.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.spawn_reporting(|_, _| {})
    }

    /// [`spawn`](Self::spawn), calling `report` with the budget's [`health`](Self::health)
    /// whenever it changes (and its cause, when degraded): the server feeds its monitor.
    pub(crate) fn spawn_reporting(
        self: &Arc<Self>,
        mut report: impl FnMut(State, Option<String>) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let period = self.shared.period;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reported = State::Initializing;
            loop {
                ticks.tick().await;
                let Some(budget) = weak.upgrade() else { return };
                // A sync slower than the staleness bound is abandoned so the view goes stale.
                let bound = period * STALE_PERIODS;
                let cause = match tokio::time::timeout(bound, budget.sync()).await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "fleet retry budget: using the local budget");
                        Some(format!("fleet view stale, local budget only: {error}"))
                    }
                    Err(_) => {
                        budget.mark_stale();
                        tracing::warn!(
                            "fleet retry budget: sync slower than {bound:?}; using the local budget"
                        );
                        Some(format!(
                            "fleet view stale, local budget only: sync slower than {bound:?}"
                        ))
                    }
                };
                let state = budget.health();
                if state != reported {
                    reported = state;
                    report(state, cause.filter(|_| state != State::Ready));
                }
            }
        })
    }
}

/// The retry budget of one target with a fleet view: what the outbound stack uses, public so
/// that the budget can be exercised on its own.
#[derive(Debug)]
pub struct TargetBudget {
    inner: RetryBudget,
}

impl TargetBudget {
    /// Counts one call (not one attempt), before its first attempt.
    pub fn deposit(&self) {
        self.inner.deposit();
    }

    /// Takes one retry; `false` when the local budget or this instance's fleet share is
    /// spent. With a stale fleet view the local budget decides alone.
    pub fn withdraw(&self) -> bool {
        self.inner.withdraw()
    }
}

#[cfg(test)]
mod tests;
