//! The limiter against a real `redis-server`: shared limits, failure, recovery, isolation.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use ligand_ratelimit_redis::{ConnectError, RedisConfig, RedisLimiter};
use ligand_runtime::testkit::RedisServer;
use ligand_runtime::testkit::conformance::{self, LimiterCall as Call, allowed_count};
use ligand_runtime::{Chain, LimitOverride, Link, ProviderError, RateLimitResponse, RateLimiter};

const ALICE: &str = "spiffe://example.org/service/alice";
const BOB: &str = "spiffe://example.org/service/bob";

/// Slow enough that no token comes back during a test: counts are exact.
const SLOW_RATE: f64 = 0.01;

async fn connect(redis: &RedisServer, rate: f64, burst: u32) -> RedisLimiter {
    RedisLimiter::connect(RedisConfig::new(redis.url(), rate, burst))
        .await
        .unwrap()
}

#[tokio::test]
async fn meets_the_rate_limiter_contract() {
    let redis = RedisServer::start();
    conformance::rate_limiter(&connect(&redis, SLOW_RATE, 3).await, 3).await;
}

#[tokio::test]
async fn two_instances_share_one_limit() {
    let redis = RedisServer::start();
    let a = connect(&redis, SLOW_RATE, 5).await;
    let b = connect(&redis, SLOW_RATE, 5).await;
    let alice = Call::get(ALICE);
    let mut allowed = 0;
    for i in 0..20 {
        let instance = if i % 3 == 0 { &a } else { &b };
        allowed += usize::from(alice.on(instance).await.allowed);
    }
    assert_eq!(allowed, 5, "exactly the burst passes across both instances");
}

#[tokio::test]
async fn callers_are_isolated() {
    let redis = RedisServer::start();
    let limiter = connect(&redis, SLOW_RATE, 3).await;
    assert_eq!(allowed_count(&limiter, &Call::get(ALICE), 10).await, 3);
    assert_eq!(allowed_count(&limiter, &Call::get(BOB), 10).await, 3);
}

#[tokio::test]
async fn denial_carries_a_retry_within_one_emission_interval() {
    let redis = RedisServer::start();
    // 2 rps: one emission interval is 500 ms.
    let limiter = connect(&redis, 2.0, 2).await;
    let alice = Call::get(ALICE);
    let first = alice.on(&limiter).await;
    assert!(first.allowed);
    assert_eq!(first.retry_after, None);
    assert_eq!(first.limit_rps, Some(2.0));
    assert_eq!(first.current_rps, Some(1.0), "half the burst held");
    assert!(alice.on(&limiter).await.allowed);
    let denied = alice.on(&limiter).await;
    assert!(!denied.allowed);
    let wait = denied.retry_after.unwrap();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(500),
        "{wait:?}"
    );
    assert_eq!(denied.current_rps, Some(2.0));
}

#[tokio::test]
async fn state_expires_with_the_burst_window() {
    let redis = RedisServer::start();
    let limiter = connect(&redis, SLOW_RATE, 2).await;
    assert_eq!(allowed_count(&limiter, &Call::get(ALICE), 3).await, 2);
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("ligand:ratelimit:default:{ALICE}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .unwrap();
    // Two requests at 100 s each: the state is worth 200 s, then the key is gone.
    assert!((190_000..=200_000).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn overrides_apply_first_match() {
    let redis = RedisServer::start();
    let limiter = RedisLimiter::connect(
        RedisConfig::new(redis.url(), SLOW_RATE, 2)
            .with_override(LimitOverride::resource("/accounts/{id}", SLOW_RATE, 1).action("debit"))
            .with_override(LimitOverride::caller(BOB, SLOW_RATE, 4)),
    )
    .await
    .unwrap();
    let debit = Call::new(BOB, "/accounts/{id}", "debit");
    assert_eq!(allowed_count(&limiter, &debit, 5).await, 1);
    assert_eq!(allowed_count(&limiter, &Call::get(BOB), 10).await, 4);
    assert_eq!(allowed_count(&limiter, &Call::get(ALICE), 10).await, 2);
}

#[tokio::test]
async fn a_request_without_a_peer_principal_is_an_error() {
    let redis = RedisServer::start();
    let limiter = connect(&redis, 1000.0, 1000).await;
    for chain in [Chain::new(), Chain::from(vec![Link::default()])] {
        let call = Call::get(ALICE).with_chain(chain);
        let error = limiter.check(&call.request()).await.unwrap_err();
        assert!(matches!(error, ProviderError::Invalid(_)), "{error}");
    }
}

#[tokio::test]
async fn checks_after_close_are_errors() {
    let redis = RedisServer::start();
    let limiter = connect(&redis, 1000.0, 1000).await;
    limiter.close().await.unwrap();
    assert!(matches!(
        limiter.check(&Call::get(ALICE).request()).await,
        Err(ProviderError::Closed)
    ));
}

#[tokio::test]
async fn unreachable_redis_fails_construction() {
    let port = ligand_runtime::testkit::unused_loopback_port();
    let error = RedisLimiter::connect(
        RedisConfig::new(format!("redis://127.0.0.1:{port}"), 1.0, 1)
            .with_connect_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            error,
            ConnectError::Unreachable { .. } | ConnectError::Timeout { .. }
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test]
async fn bad_configuration_fails_construction() {
    assert!(matches!(
        RedisLimiter::connect(RedisConfig::new("redis://127.0.0.1:1", 0.0, 1)).await,
        Err(ConnectError::Config(_))
    ));
    assert!(matches!(
        RedisLimiter::connect(RedisConfig::new("http://127.0.0.1:1", 1.0, 1)).await,
        Err(ConnectError::Url { .. })
    ));
}

/// Polls `call` until it is allowed, bounded: the connection manager reconnects in the
/// background after a restart, which takes a few of its backoff steps.
async fn until_served(limiter: &RedisLimiter, call: &Call) -> RateLimitResponse {
    for _ in 0..100 {
        if let Ok(response) = limiter.check(&call.request()).await {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the limiter did not recover within 5 s of redis restarting");
}

#[tokio::test]
async fn redis_down_denies_with_errors_and_service_resumes_when_it_returns() {
    let mut redis = RedisServer::start();
    let limiter = connect(&redis, SLOW_RATE, 2).await;
    let alice = Call::get(ALICE);
    assert!(alice.on(&limiter).await.allowed);

    redis.kill();
    for _ in 0..3 {
        let error = limiter.check(&alice.request()).await.unwrap_err();
        assert!(matches!(error, ProviderError::Backend { .. }), "{error}");
    }

    // Same port, empty dataset and script cache: EVALSHA meets NOSCRIPT and falls back.
    redis.restart();
    let response = until_served(&limiter, &alice).await;
    assert!(response.allowed);
    assert_eq!(
        allowed_count(&limiter, &alice, 5).await,
        1,
        "fresh state: burst of 2"
    );
}

#[tokio::test]
async fn a_hung_redis_denies_within_the_timeout() {
    let redis = RedisServer::start();
    let limiter = RedisLimiter::connect(
        RedisConfig::new(redis.url(), 1000.0, 1000).with_timeout(Duration::from_millis(100)),
    )
    .await
    .unwrap();
    let alice = Call::get(ALICE);
    assert!(alice.on(&limiter).await.allowed);

    // Freeze the server: it keeps the connection open but answers nothing for 2 s.
    let mut admin = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2000)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let error = limiter.check(&alice.request()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, ProviderError::Backend { .. }), "{error}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}
