use super::*;

fn retry(config: RetryConfig) -> Retry {
    Retry::new(&config).unwrap()
}

#[test]
fn policy_table() {
    let retry = retry(RetryConfig::default());
    use Outcome::*;
    let idempotent = [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ];
    let unsafe_methods = [Method::POST, Method::PATCH, Method::CONNECT];
    //                       Success ClientError ServerError ConnectFailed NoResponse
    let expect_idempotent = [false, false, true, true, true];
    let expect_unsafe = [false, false, false, true, false];
    let outcomes = [Success, ClientError, ServerError, ConnectFailed, NoResponse];
    for method in &idempotent {
        for (outcome, expected) in outcomes.iter().zip(expect_idempotent) {
            assert_eq!(
                retry.retryable(method, *outcome),
                expected,
                "{method} {outcome:?}"
            );
        }
    }
    for method in &unsafe_methods {
        for (outcome, expected) in outcomes.iter().zip(expect_unsafe) {
            assert_eq!(
                retry.retryable(method, *outcome),
                expected,
                "{method} {outcome:?}"
            );
        }
    }
}

#[test]
fn a_method_declared_idempotent_retries_5xx_and_timeouts() {
    let retry = retry(RetryConfig {
        treat_as_idempotent: vec!["POST".into()],
        ..RetryConfig::default()
    });
    assert!(retry.retryable(&Method::POST, Outcome::ServerError));
    assert!(retry.retryable(&Method::POST, Outcome::NoResponse));
    assert!(!retry.retryable(&Method::POST, Outcome::ClientError));
    assert!(!retry.retryable(&Method::PATCH, Outcome::ServerError));
}

#[tokio::test(start_paused = true)]
async fn three_attempts_in_all() {
    let retry = retry(RetryConfig::default());
    let rng = Rng::seeded(1);
    retry.budget().deposit();
    assert!(matches!(
        retry.decide(&Method::GET, 1, Outcome::ServerError, &rng),
        Decision::Retry { .. }
    ));
    assert!(matches!(
        retry.decide(&Method::GET, 2, Outcome::ServerError, &rng),
        Decision::Retry { .. }
    ));
    assert_eq!(
        retry.decide(&Method::GET, 3, Outcome::ServerError, &rng),
        Decision::Stop(StopReason::AttemptsExhausted)
    );
    assert_eq!(
        retry.decide(&Method::POST, 1, Outcome::ServerError, &rng),
        Decision::Stop(StopReason::NotRetryable)
    );
}

#[test]
fn backoff_has_full_jitter_under_a_doubling_ceiling() {
    let backoff = Backoff::new(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX);
    let ceilings: Vec<u64> = (0..8)
        .map(|r| backoff.ceiling(r).as_millis() as u64)
        .collect();
    assert_eq!(ceilings, [25, 50, 100, 200, 400, 800, 1000, 1000]);
    assert_eq!(backoff.ceiling(u32::MAX), DEFAULT_BACKOFF_MAX);

    let rng = Rng::seeded(9);
    for retry in 0..8 {
        let ceiling = backoff.ceiling(retry);
        let delays: Vec<Duration> = (0..2_000).map(|_| backoff.delay(retry, &rng)).collect();
        assert!(delays.iter().all(|d| *d < ceiling));
        let mean = delays.iter().sum::<Duration>() / 2_000;
        let half = ceiling / 2;
        assert!(
            mean.abs_diff(half) < ceiling / 20,
            "retry {retry}: mean {mean:?}"
        );
        assert!(delays.iter().any(|d| *d < ceiling / 10));
        assert!(delays.iter().any(|d| *d > ceiling * 9 / 10));
    }
}

/// Every call fails; a call retries as long as the policy and the budget allow.
/// Returns (calls, retries) over `seconds` at `rps`.
async fn all_failing(retry: &Retry, rps: u64, seconds: u64) -> (u64, u64) {
    let rng = Rng::seeded(5);
    let (mut calls, mut retries) = (0, 0);
    for _ in 0..rps * seconds {
        calls += 1;
        retry.budget().deposit();
        let mut attempts = 1;
        while let Decision::Retry { .. } =
            retry.decide(&Method::GET, attempts, Outcome::ServerError, &rng)
        {
            attempts += 1;
            retries += 1;
        }
        tokio::time::advance(Duration::from_micros(1_000_000 / rps)).await;
    }
    (calls, retries)
}

#[tokio::test(start_paused = true)]
async fn the_budget_holds_retries_to_twenty_percent_plus_the_floor() {
    for rps in [20, 100, 1_000] {
        let retry = retry(RetryConfig::default());
        let ttl = DEFAULT_BUDGET_TTL.as_secs();
        let floor = u64::from(DEFAULT_BUDGET_MIN_PER_SECOND) * ttl;
        // Each of three consecutive windows stays within 20 % of its calls plus the floor,
        // and uses most of it (the budget limits, not the attempt cap).
        for window in 0..3 {
            let (calls, retries) = all_failing(&retry, rps, ttl).await;
            let allowed = calls / 5 + floor;
            assert!(
                retries <= allowed,
                "{rps} rps, window {window}: {retries} > {allowed}"
            );
            let cap = calls * u64::from(DEFAULT_MAX_ATTEMPTS - 1);
            assert!(
                retries >= allowed.min(cap) * 9 / 10,
                "{rps} rps, window {window}: only {retries} of {allowed}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_stops_retries_and_refills_with_traffic() {
    let retry = retry(RetryConfig {
        budget_min_per_second: 0,
        ..RetryConfig::default()
    });
    let rng = Rng::seeded(2);
    assert_eq!(
        retry.decide(&Method::GET, 1, Outcome::ConnectFailed, &rng),
        Decision::Stop(StopReason::BudgetExhausted)
    );
    for _ in 0..5 {
        retry.budget().deposit();
    }
    assert!(matches!(
        retry.decide(&Method::GET, 1, Outcome::ConnectFailed, &rng),
        Decision::Retry { .. }
    ));
    assert_eq!(
        retry.decide(&Method::GET, 1, Outcome::ConnectFailed, &rng),
        Decision::Stop(StopReason::BudgetExhausted)
    );
}

#[tokio::test(start_paused = true)]
async fn refusals_by_policy_do_not_spend_the_budget() {
    let retry = retry(RetryConfig {
        budget_min_per_second: 0,
        ..RetryConfig::default()
    });
    let rng = Rng::seeded(2);
    for _ in 0..5 {
        retry.budget().deposit();
    }
    for _ in 0..100 {
        assert_eq!(
            retry.decide(&Method::POST, 1, Outcome::ServerError, &rng),
            Decision::Stop(StopReason::NotRetryable)
        );
        assert_eq!(
            retry.decide(&Method::GET, 3, Outcome::ServerError, &rng),
            Decision::Stop(StopReason::AttemptsExhausted)
        );
    }
    assert!(retry.budget().withdraw());
}
