//! Checks every implementation of a contract the same way, so that providers prove the
//! framework's expectations with one shared test instead of each re-deriving them.

use crate::chain::{Chain, Link};
use crate::ratelimit::{RateLimitRequest, RateLimitResponse, RateLimiter};
use crate::request::{Action, Resource};

/// One rate-limit check, owned, for tests.
#[derive(Debug, Clone)]
pub struct LimiterCall {
    chain: Chain,
    resource: Resource,
    action: Action,
}

impl LimiterCall {
    /// `caller` performing `action` on the route template `resource`.
    pub fn new(caller: &str, resource: &str, action: &str) -> Self {
        Self {
            chain: Chain::from(vec![Link::workload(caller)]),
            resource: Resource::http_path(resource.to_owned()),
            action: Action::new(action.to_owned()),
        }
    }

    /// `caller` doing `GET /hello/{name}`.
    pub fn get(caller: &str) -> Self {
        Self::new(caller, "/hello/{name}", "GET")
    }

    /// The same check arriving with `chain` (the immediate peer is its last link).
    pub fn with_chain(mut self, chain: Chain) -> Self {
        self.chain = chain;
        self
    }

    /// The request as a limiter receives it.
    pub fn request(&self) -> RateLimitRequest<'_> {
        RateLimitRequest {
            chain: &self.chain,
            resource: &self.resource,
            action: &self.action,
        }
    }

    /// Runs the check on `limiter`.
    ///
    /// # Panics
    /// If the limiter fails.
    pub async fn on(&self, limiter: &dyn RateLimiter) -> RateLimitResponse {
        match limiter.check(&self.request()).await {
            Ok(response) => response,
            Err(error) => panic!("limiter failed: {error}"),
        }
    }
}

/// How many of `n` checks of `call` the limiter allows.
pub async fn allowed_count(limiter: &dyn RateLimiter, call: &LimiterCall, n: usize) -> usize {
    let mut count = 0;
    for _ in 0..n {
        count += usize::from(call.on(limiter).await.allowed);
    }
    count
}

/// The contract every [`RateLimiter`] meets, checked on a fresh limiter configured with
/// `burst` and a rate slow enough that no request is replenished during the check:
///
/// - a caller gets exactly `burst` requests, then denials that say when to retry and report
///   the configured limit;
/// - callers are limited independently (keyed on the immediate peer);
/// - a request whose chain names no principal is an error, never allowed and never keyed on
///   an empty name;
/// - a limiter that answers inline ([`RateLimiter::check_inline`]) answers as it would when
///   awaited, from the same buckets.
///
/// # Panics
/// On the first broken expectation, saying which.
pub async fn rate_limiter(limiter: &dyn RateLimiter, burst: u32) {
    let burst = burst as usize;
    let alice = LimiterCall::get("spiffe://conformance.test/alice");
    let bob = LimiterCall::get("spiffe://conformance.test/bob");
    assert_eq!(
        allowed_count(limiter, &alice, burst).await,
        burst,
        "the burst is allowed"
    );
    let denied = alice.on(limiter).await;
    assert!(!denied.allowed, "the request after the burst is denied");
    assert!(
        denied.retry_after.is_some_and(|d| !d.is_zero()),
        "a denial says when to retry: {denied:?}"
    );
    assert!(
        denied.limit_rps.is_some_and(|r| r > 0.0),
        "a denial reports the limit: {denied:?}"
    );
    assert_eq!(
        allowed_count(limiter, &bob, burst).await,
        burst,
        "another caller has its own limit"
    );
    // A limiter that answers inline answers as `check` does: one bucket per caller whichever
    // way it is asked.
    let carol = LimiterCall::get("spiffe://conformance.test/carol");
    let mut allowed = 0;
    for i in 0..=burst {
        let response = match (i % 2 == 0).then(|| limiter.check_inline(&carol.request())) {
            Some(Some(answer)) => answer.unwrap_or_else(|e| panic!("limiter failed inline: {e}")),
            Some(None) | None => carol.on(limiter).await,
        };
        allowed += usize::from(response.allowed);
    }
    assert_eq!(
        allowed, burst,
        "inline and awaited checks share the caller's burst"
    );
    for chain in [Chain::new(), Chain::from(vec![Link::default()])] {
        let anonymous = LimiterCall::get("").with_chain(chain);
        assert!(
            limiter.check(&anonymous.request()).await.is_err(),
            "a request without a peer principal fails closed"
        );
        if let Some(answer) = limiter.check_inline(&anonymous.request()) {
            assert!(
                answer.is_err(),
                "a request without a peer principal fails closed inline too"
            );
        }
    }
}

/// Checks a [`ReplayCache`](crate::ReplayCache) implementation: a key is fresh once, then a
/// replay until it expires; keys of other workloads or `jti` values are independent; a key
/// whose expiry has passed is fresh again. Uses the system clock (a shared store judges
/// expiry by its own), and keys unique to this run, so it can run against a live store.
///
/// # Panics
/// On the first expectation the cache does not meet, or if it fails.
#[allow(
    clippy::expect_used,
    reason = "conformance check: a failure fails the test"
)]
pub async fn replay_cache(cache: &dyn crate::ReplayCache) {
    use std::time::{Duration, SystemTime};

    use crate::{Recorded, ReplayKey};

    let run = uuid::Uuid::new_v4().to_string();
    let now = SystemTime::now();
    let exp = now + Duration::from_secs(60);
    let a = ReplayKey::new("spiffe://example.org/a", &run);
    let b = ReplayKey::new("spiffe://example.org/b", &run);
    let record = |key, expires_at| cache.record(key, expires_at, now);
    assert_eq!(record(a, exp).await.expect("record"), Recorded::Fresh);
    assert_eq!(record(a, exp).await.expect("record"), Recorded::Replay);
    assert_eq!(
        record(b, exp).await.expect("record"),
        Recorded::Fresh,
        "another workload's jti is its own"
    );
    let other = ReplayKey::new("spiffe://example.org/a", &format!("{run}-2"));
    assert_eq!(record(other, exp).await.expect("record"), Recorded::Fresh);
    // Expired (already at `now`): kept no longer, so the next sight is fresh.
    let gone = ReplayKey::new("spiffe://example.org/c", &run);
    let past = now - Duration::from_secs(1);
    let _ = record(gone, past).await.expect("record");
    assert_eq!(record(gone, exp).await.expect("record"), Recorded::Fresh);
    assert_eq!(record(gone, exp).await.expect("record"), Recorded::Replay);
}
