//! The limiter's behaviour, counted request by request on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use ligand_ratelimit_governor::{GovernorConfig, GovernorLimiter};
use ligand_runtime::testkit::conformance::{self, LimiterCall as Call, allowed_count};
use ligand_runtime::{Chain, LimitOverride, Link, ProviderError, RateLimiter};
use proptest::prelude::*;

const ALICE: &str = "spiffe://example.org/service/alice";
const BOB: &str = "spiffe://example.org/service/bob";

#[tokio::test(start_paused = true)]
async fn burst_is_allowed_then_one_request_per_interval() {
    let limiter = GovernorLimiter::new(GovernorConfig::new(10.0, 3)).unwrap();
    let alice = Call::get(ALICE);
    for _ in 0..3 {
        assert!(alice.on(&limiter).await.allowed);
    }
    let denied = alice.on(&limiter).await;
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Some(Duration::from_millis(100)));

    // Half an interval is not enough; a whole one lets exactly one more through.
    tokio::time::advance(Duration::from_millis(50)).await;
    let denied = alice.on(&limiter).await;
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, Some(Duration::from_millis(50)));
    tokio::time::advance(Duration::from_millis(50)).await;
    assert!(alice.on(&limiter).await.allowed);
    assert!(!alice.on(&limiter).await.allowed);

    // After a full burst window of silence the whole burst is back.
    tokio::time::advance(Duration::from_millis(300)).await;
    assert_eq!(allowed_count(&limiter, &alice, 10).await, 3);
}

#[tokio::test(start_paused = true)]
async fn callers_have_separate_buckets() {
    let limiter = GovernorLimiter::new(GovernorConfig::new(1.0, 2)).unwrap();
    assert_eq!(allowed_count(&limiter, &Call::get(ALICE), 5).await, 2);
    assert_eq!(allowed_count(&limiter, &Call::get(BOB), 5).await, 2);
    assert_eq!(limiter.tracked_keys(), 2);
}

#[tokio::test(start_paused = true)]
async fn meets_the_rate_limiter_contract() {
    // 0.01 rps: nothing is replenished while the paused clock stands still.
    let limiter = GovernorLimiter::new(GovernorConfig::new(0.01, 3)).unwrap();
    conformance::rate_limiter(&limiter, 3).await;
}

#[tokio::test(start_paused = true)]
async fn the_key_is_the_immediate_peer_not_an_upstream_link() {
    let limiter = GovernorLimiter::new(GovernorConfig::new(1.0, 1)).unwrap();
    let via_alice = Call::get(ALICE).with_chain(Chain::from(vec![
        Link::default().with_user("carol"),
        Link::workload(ALICE),
    ]));
    assert!(via_alice.on(&limiter).await.allowed);
    // Same peer, different upstream: same bucket.
    assert!(!Call::get(ALICE).on(&limiter).await.allowed);
}

#[tokio::test(start_paused = true)]
async fn overrides_apply_first_match_with_their_own_buckets() {
    let limiter = GovernorLimiter::new(
        GovernorConfig::new(1.0, 2)
            .with_override(LimitOverride::resource("/accounts/{id}", 1.0, 1).action("debit"))
            .with_override(LimitOverride::caller(BOB, 1.0, 5))
            .with_override(LimitOverride::resource("/accounts/{id}", 1.0, 3)),
    )
    .unwrap();
    // Resource + action override, even for BOB (it comes first).
    let debit = Call::new(BOB, "/accounts/{id}", "debit");
    assert_eq!(allowed_count(&limiter, &debit, 10).await, 1);
    // Caller override on any other resource.
    assert_eq!(allowed_count(&limiter, &Call::get(BOB), 10).await, 5);
    // Resource-only override for ALICE's reads.
    let read = Call::new(ALICE, "/accounts/{id}", "GET");
    assert_eq!(allowed_count(&limiter, &read, 10).await, 3);
    // The default, untouched by the overrides' buckets.
    let response = Call::get(ALICE).on(&limiter).await;
    assert!(response.allowed);
    assert_eq!(response.limit_rps, Some(1.0));
    assert_eq!(allowed_count(&limiter, &Call::get(ALICE), 10).await, 1);
}

#[tokio::test(start_paused = true)]
async fn utilisation_is_reported() {
    let limiter = GovernorLimiter::new(GovernorConfig::new(8.0, 4)).unwrap();
    let alice = Call::get(ALICE);
    let mut observed = Vec::new();
    for _ in 0..5 {
        let response = alice.on(&limiter).await;
        assert_eq!(response.limit_rps, Some(8.0));
        observed.push(response.current_rps.unwrap());
    }
    // One quarter of the burst held per request, then saturated.
    assert_eq!(observed, vec![2.0, 4.0, 6.0, 8.0, 8.0]);
}

#[tokio::test]
async fn a_request_without_a_peer_principal_is_an_error() {
    let limiter = GovernorLimiter::new(GovernorConfig::new(1000.0, 1000)).unwrap();
    for chain in [Chain::new(), Chain::from(vec![Link::default()])] {
        let call = Call::get(ALICE).with_chain(chain);
        let error = limiter.check(&call.request()).await.unwrap_err();
        assert!(matches!(error, ProviderError::Invalid(_)), "{error}");
    }
    assert_eq!(limiter.tracked_keys(), 0, "no empty-string bucket was made");
}

#[tokio::test]
async fn checks_after_close_are_errors() {
    let limiter = GovernorLimiter::new(GovernorConfig::new(1000.0, 1000)).unwrap();
    let alice = Call::get(ALICE);
    assert!(alice.on(&limiter).await.allowed);
    limiter.close().await.unwrap();
    assert!(matches!(
        limiter.check(&alice.request()).await,
        Err(ProviderError::Closed)
    ));
}

#[tokio::test(start_paused = true)]
async fn stale_keys_are_evicted_so_memory_stays_bounded() {
    // 10 rps with a burst of 10: a caller's state is stale one second after its last request.
    let limiter = GovernorLimiter::new(
        GovernorConfig::new(10.0, 10).with_eviction_interval(Duration::from_secs(1)),
    )
    .unwrap();
    limiter.start_eviction();

    // 100 000 distinct callers, 1 000 new ones every 100 ms.
    const PER_STEP: usize = 1_000;
    const STEP: Duration = Duration::from_millis(100);
    // Keys live one interval (10 steps) plus the time it takes a fresh caller's state to go
    // stale (one emission interval, 1 step): at most 12 steps' worth are held at any time.
    const BOUND: usize = 12 * PER_STEP;
    let mut peak = 0;
    for step in 0..100 {
        for i in 0..PER_STEP {
            let call = Call::get(&format!("spiffe://example.org/caller/{step}/{i}"));
            assert!(call.on(&limiter).await.allowed);
        }
        peak = peak.max(limiter.tracked_keys());
        assert!(
            limiter.tracked_keys() <= BOUND,
            "step {step}: {} keys held, bound {BOUND}",
            limiter.tracked_keys()
        );
        // Paused time: this advances tokio's clock and lets the eviction task run when due.
        tokio::time::sleep(STEP).await;
    }
    assert!(peak >= 10 * PER_STEP, "the test did fill the store: {peak}");

    // Once every caller has gone quiet, the next eviction empties the store.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(limiter.tracked_keys(), 0);

    // Closing stops the task: new keys stay until evicted by hand.
    limiter.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn eviction_keeps_callers_still_holding_burst() {
    let limiter = GovernorLimiter::new(GovernorConfig::new(1.0, 5)).unwrap();
    let alice = Call::get(ALICE);
    assert_eq!(allowed_count(&limiter, &alice, 5).await, 5);
    assert!(Call::get(BOB).on(&limiter).await.allowed);
    tokio::time::advance(Duration::from_secs(2)).await;
    limiter.evict_stale();
    // BOB used one token two seconds ago: stale. ALICE still owes three seconds: kept, and
    // her state (not a fresh burst) still applies.
    assert_eq!(limiter.tracked_keys(), 1);
    assert_eq!(allowed_count(&limiter, &alice, 5).await, 2);
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any valid limit lets exactly `burst` requests through at once, then denies with a
    /// positive retry hint no longer than one emission interval.
    #[test]
    fn any_valid_limit_allows_exactly_its_burst(rate in 0.001f64..1e6, burst in 1u32..200) {
        paused_runtime().block_on(async {
            let limiter = GovernorLimiter::new(GovernorConfig::new(rate, burst)).unwrap();
            let alice = Call::get(ALICE);
            prop_assert_eq!(allowed_count(&limiter, &alice, burst as usize).await, burst as usize);
            let denied = alice.on(&limiter).await;
            prop_assert!(!denied.allowed);
            let wait = denied.retry_after.unwrap();
            let interval = Duration::from_secs_f64(1.0 / rate);
            prop_assert!(!wait.is_zero());
            prop_assert!(wait <= interval + Duration::from_nanos(1), "{:?} > {:?}", wait, interval);
            Ok(())
        })?;
    }

    /// Invalid numbers are refused, never turned into a limiter that allows or denies all.
    #[test]
    fn invalid_limits_are_refused(rate in prop_oneof![Just(0.0), Just(f64::NAN), -1e9f64..=0.0], burst in 0u32..3) {
        prop_assert!(GovernorLimiter::new(GovernorConfig::new(rate, burst)).is_err());
    }
}
