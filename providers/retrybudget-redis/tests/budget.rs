//! The fleet budget against a real `redis-server`: two instances stay within one budget,
//! an outage falls back to the local budget and reports Degraded, recovery is Ready again.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use ligand_retrybudget_redis::{ConfigError, ConnectError, RedisFleetConfig, RedisRetryBudget};
use ligand_runtime::testkit::RedisServer;
use ligand_runtime::{FleetBudget, ProviderKind, RetryConfig, State, TargetBudget};

const TARGET: &str = "spiffe://example.org/service/accounts";

async fn instance(redis: &RedisServer) -> Arc<FleetBudget> {
    let store = RedisRetryBudget::connect(RedisFleetConfig::new(redis.url()))
        .await
        .unwrap();
    FleetBudget::new(
        Arc::new(store),
        &RetryConfig::default(),
        FleetBudget::DEFAULT_SYNC,
    )
    .unwrap()
}

/// `calls` calls that all fail, each retried up to twice (three attempts); the retries made.
fn failing_calls(budget: &TargetBudget, calls: usize) -> usize {
    let mut retries = 0;
    for _ in 0..calls {
        budget.deposit();
        retries += (0..2).take_while(|_| budget.withdraw()).count();
    }
    retries
}

#[tokio::test]
async fn two_instances_under_total_failure_stay_within_the_fleet_budget() {
    let redis = RedisServer::start();
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let (ta, tb) = (a.target(TARGET), b.target(TARGET));
    // Each learns of the other: a, b, then a again.
    for fleet in [&a, &b, &a] {
        fleet.sync().await.unwrap();
    }
    let (mut calls, mut retries) = (0, 0);
    for _ in 0..5 {
        retries += failing_calls(&ta, 20) + failing_calls(&tb, 20);
        calls += 40;
        a.sync().await.unwrap();
        b.sync().await.unwrap();
    }
    // Within the 10 s window: 20% of the calls plus the floor of 10/s × 10 s, once for the
    // fleet. Each local budget alone would allow 20% of its calls plus its own floor of 100.
    let fleet_allowance = calls / 5 + 100;
    let local_sum = 2 * (calls / 2 / 5 + 100);
    assert!(
        retries <= fleet_allowance + 2,
        "{retries} retries for a fleet allowance of {fleet_allowance}"
    );
    assert!(
        retries >= fleet_allowance - 10,
        "the budget is used: {retries}"
    );
    assert!(local_sum > fleet_allowance + 50);
    assert!(a.denials() + b.denials() > 0);
    assert_eq!((a.health(), b.health()), (State::Ready, State::Ready));
}

#[tokio::test]
async fn an_outage_falls_back_to_the_local_budget_and_recovery_is_ready() {
    let mut redis = RedisServer::start();
    let fleet = instance(&redis).await;
    let target = fleet.target(TARGET);
    fleet.sync().await.unwrap();
    assert_eq!(fleet.health(), State::Ready);

    redis.kill();
    assert!(fleet.sync().await.is_err());
    assert_eq!(fleet.health(), State::Degraded);
    // The local budget alone decides: its floor of 100 retries, then none.
    let retried = failing_calls(&target, 200);
    assert_eq!(retried, 100 + 200 / 5);
    assert!(fleet.fallbacks() >= 100);

    redis.restart();
    // The connection manager reconnects on the next command; a sync or two may meet the
    // closed connection first.
    let mut synced = false;
    for _ in 0..5 {
        if fleet.sync().await.is_ok() {
            synced = true;
            break;
        }
    }
    assert!(synced, "syncs again once redis is back");
    assert_eq!(fleet.health(), State::Ready);
}

#[tokio::test]
async fn bad_settings_are_refused_naming_them() {
    let insecure = RedisFleetConfig::new("rediss://user:hunter2@redis.internal:6380/0#insecure");
    let error = RedisRetryBudget::connect(insecure).await.unwrap_err();
    assert!(
        matches!(error, ConnectError::Config(ConfigError::InsecureTls { .. })),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("url:"), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");

    let zero = RedisFleetConfig::new("redis://127.0.0.1:1").with_timeout(Default::default());
    let error = RedisRetryBudget::connect(zero).await.unwrap_err();
    assert_eq!(error.to_string(), "timeout_ms: must be at least 1");

    let empty = RedisFleetConfig::new("redis://127.0.0.1:1").with_key_prefix("");
    let error = RedisRetryBudget::connect(empty).await.unwrap_err();
    assert_eq!(error.to_string(), "key_prefix: must not be empty");

    let error = RedisRetryBudget::connect(RedisFleetConfig::new("http://x"))
        .await
        .unwrap_err();
    assert!(error.to_string().starts_with("url:"), "{error}");
}

#[tokio::test]
async fn a_store_made_while_redis_is_down_connects_on_a_later_sync() {
    let mut redis = RedisServer::start();
    redis.kill();
    let store = RedisRetryBudget::new(RedisFleetConfig::new(redis.url())).unwrap();
    let fleet = FleetBudget::new(
        Arc::new(store),
        &RetryConfig::default(),
        FleetBudget::DEFAULT_SYNC,
    )
    .unwrap();
    let target = fleet.target(TARGET);
    assert!(fleet.sync().await.is_err());
    assert_eq!(fleet.health(), State::Degraded);
    assert_eq!(failing_calls(&target, 10), 20, "the local budget decides");

    redis.restart();
    fleet.sync().await.unwrap();
    assert_eq!(fleet.health(), State::Ready);
}

/// Waits (up to 10 s) until `server`'s monitor shows the retry budget in `state`.
async fn budget_state(server: &ligand_runtime::Server, state: State) -> bool {
    for _ in 0..200 {
        if server.monitor().provider(ProviderKind::RetryBudget) == Some(state) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reports_the_budget_degraded_while_redis_is_down() {
    use ligand_runtime::testkit::{AllowList, FakeIdentity, TestCa};
    let mut redis = RedisServer::start();
    let ca = TestCa::new("example.org");
    let store = RedisRetryBudget::new(RedisFleetConfig::new(redis.url())).unwrap();
    let server = ligand_runtime::init_trust_boundary(
        ligand_runtime::Config::builder()
            .identity(FakeIdentity::new(
                ca.context(ca.svid("spiffe://example.org/service/transfers")),
            ))
            .policy(AllowList::new())
            .fleet_retry_budget(store, std::time::Duration::from_millis(100))
            .build(),
    )
    .await
    .unwrap();
    assert!(budget_state(&server, State::Ready).await, "synced at start");

    redis.kill();
    assert!(
        budget_state(&server, State::Degraded).await,
        "a failed sync degrades the budget"
    );
    // Optional: the service keeps taking traffic on its local budget.
    assert_eq!(server.monitor().overall(), State::Degraded);

    redis.restart();
    assert!(
        budget_state(&server, State::Ready).await,
        "Ready again once a sync succeeds"
    );
    server.close().await;
}
