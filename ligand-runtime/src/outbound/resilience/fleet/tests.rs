use std::sync::atomic::AtomicBool;

use super::*;

fn allowance() -> Allowance {
    Allowance::new(&RetryConfig::default())
}

#[test]
fn the_pool_is_ratio_of_calls_plus_the_floor_less_retries() {
    let a = allowance();
    // 20% of 1000 calls + 10/s over 10 s − 50 retries.
    assert_eq!(a.pool(FleetTotals::new(1000, 50, 2)), 250.0);
    assert_eq!(a.pool(FleetTotals::new(0, 0, 1)), 100.0);
    // Spent beyond the budget: a debt that new calls must pay off first.
    assert_eq!(a.pool(FleetTotals::new(100, 500, 3)), -380.0);
}

#[test]
fn the_ratio_is_applied_as_tower_does() {
    let config = RetryConfig {
        budget_ratio: 0.3,
        budget_min_per_second: 0,
        ..RetryConfig::default()
    };
    let a = Allowance::new(&config);
    assert_eq!(a.pool(FleetTotals::new(300, 0, 1)), 100.0);
}

#[test]
fn the_shares_add_up_to_the_pool_and_follow_traffic() {
    let a = allowance();
    let fleet = FleetTotals::new(1000, 50, 3);
    let own = [(700, 30), (300, 20), (0, 0)];
    let shares: Vec<f64> = own.iter().map(|&(c, r)| a.share(fleet, c, r)).collect();
    let total: f64 = shares.iter().sum();
    assert!((total - a.pool(fleet)).abs() < 1e-9, "{shares:?}");
    assert!(shares[0] > shares[1] && shares[1] > shares[2] && shares[2] > 0.0);
    // A lone instance gets the whole pool.
    let alone = FleetTotals::new(40, 3, 1);
    assert_eq!(a.share(alone, 40, 3), a.pool(alone));
    // The fleet's pool caps a share computed while others were not yet counted.
    assert_eq!(a.share(FleetTotals::new(40, 95, 1), 20, 0), 13.0);
}

/// A store in memory: counts everything it is sent, answers the sums.
#[derive(Debug, Default)]
struct Memory {
    totals: Mutex<HashMap<Arc<str>, (u64, u64)>>,
    instances: Mutex<std::collections::HashSet<String>>,
    down: AtomicBool,
}

#[async_trait]
impl FleetRetryBudget for Memory {
    async fn sync(
        &self,
        instance: &str,
        _window: Duration,
        deltas: &[FleetDelta],
    ) -> Result<Vec<FleetTotals>, FleetSyncError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(FleetSyncError("down".into()));
        }
        let mut instances = self.instances.lock().unwrap();
        instances.insert(instance.to_owned());
        let mut totals = self.totals.lock().unwrap();
        Ok(deltas
            .iter()
            .map(|d| {
                let t = totals.entry(d.target.clone()).or_default();
                t.0 += d.calls;
                t.1 += d.retries;
                FleetTotals::new(t.0, t.1, instances.len() as u64)
            })
            .collect())
    }
}

fn low_floor() -> RetryConfig {
    RetryConfig {
        budget_min_per_second: 1,
        ..RetryConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn two_instances_share_the_fleet_pool() {
    let store = Arc::new(Memory::default());
    let a = FleetBudget::new(store.clone(), &low_floor(), DEFAULT_FLEET_SYNC).unwrap();
    let b = FleetBudget::new(store.clone(), &low_floor(), DEFAULT_FLEET_SYNC).unwrap();
    let (ta, tb) = (a.target("svc"), b.target("svc"));
    for _ in 0..100 {
        ta.deposit();
        tb.deposit();
    }
    a.sync().await.unwrap();
    b.sync().await.unwrap();
    a.sync().await.unwrap();
    // Fleet: 200 calls × 0.2 + floor 1/s × 10 s: a pool of 50. Each local budget alone
    // would allow 30, 60 in all.
    let retried =
        (0..100).filter(|_| ta.withdraw()).count() + (0..100).filter(|_| tb.withdraw()).count();
    assert!(retried <= 50, "{retried}");
    assert!(retried >= 45, "the shares are spent, not lost: {retried}");
    assert!(a.denials() + b.denials() > 0);
    assert_eq!(a.health(), State::Ready);
}

#[tokio::test(start_paused = true)]
async fn a_stale_view_falls_back_to_the_local_budget_and_recovers() {
    let store = Arc::new(Memory::default());
    let fleet =
        FleetBudget::new(store.clone(), &RetryConfig::default(), DEFAULT_FLEET_SYNC).unwrap();
    assert_eq!(fleet.health(), State::Initializing);
    let target = fleet.target("svc");
    fleet.sync().await.unwrap();
    assert_eq!(fleet.health(), State::Ready);

    // Older than three periods: stale, though no sync failed.
    tokio::time::advance(DEFAULT_FLEET_SYNC * 3 + Duration::from_millis(1)).await;
    assert_eq!(fleet.health(), State::Degraded);
    assert!(target.withdraw());
    assert_eq!(fleet.fallbacks(), 1);

    // A failed sync: stale at once.
    fleet.sync().await.unwrap();
    assert_eq!(fleet.health(), State::Ready);
    store.down.store(true, Ordering::Relaxed);
    assert!(fleet.sync().await.is_err());
    assert_eq!(fleet.health(), State::Degraded);
    // The local budget alone: its floor of 10 × 10 s, less the retry already made.
    let retried = (0..500).filter(|_| target.withdraw()).count();
    assert_eq!(retried, 99);

    // Back: the counts made meanwhile are sent, and the view is fresh again.
    store.down.store(false, Ordering::Relaxed);
    fleet.sync().await.unwrap();
    assert_eq!(fleet.health(), State::Ready);
    assert_eq!(store.totals.lock().unwrap()[&Arc::from("svc")], (0, 100));
}

#[test]
fn a_bad_sync_period_is_refused_naming_the_setting() {
    let store = Arc::new(Memory::default());
    for sync in [
        Duration::ZERO,
        Duration::from_millis(99),
        Duration::from_secs(11),
    ] {
        let error = FleetBudget::new(store.clone(), &RetryConfig::default(), sync).unwrap_err();
        assert!(
            error.to_string().starts_with("retry.fleet.sync:"),
            "{error}"
        );
    }
    let bad = RetryConfig {
        budget_ratio: 2.0,
        ..RetryConfig::default()
    };
    let error = FleetBudget::new(store, &bad, DEFAULT_FLEET_SYNC).unwrap_err();
    assert!(error.to_string().contains("retry.budget_ratio"), "{error}");
}
