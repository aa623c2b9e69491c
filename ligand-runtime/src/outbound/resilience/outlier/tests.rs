use std::sync::Mutex;

use super::*;
use crate::outbound::resilience::balance::tests::pick_address;
use crate::outbound::resilience::balance::{BalancerConfig, Pool, Strategy};

fn addresses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:8443")).collect()
}

/// A round-robin pool over `n` endpoints whose events are kept.
fn new_pool(n: usize, config: OutlierConfig) -> (Pool, Vec<String>, Arc<Mutex<Vec<OutlierEvent>>>) {
    let set = addresses(n);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink: Sink<OutlierEvent> = {
        let events = events.clone();
        Arc::new(move |e: &OutlierEvent| events.lock().unwrap().push(e.clone()))
    };
    let balancer = BalancerConfig {
        strategy: Strategy::RoundRobin,
        ..BalancerConfig::default()
    };
    let pool = Pool::new(&balancer, config, &set, Rng::seeded(42), sink).unwrap();
    (pool, set, events)
}

fn fail(pool: &Pool, address: &str, times: usize) {
    for _ in 0..times {
        let picked = pick_address(pool, address);
        pool.record(picked, Outcome::ServerError);
    }
}

fn ejected_for(events: &[OutlierEvent]) -> Vec<(u32, Duration)> {
    events
        .iter()
        .filter_map(|e| match e {
            OutlierEvent::Ejected {
                times, duration, ..
            } => Some((*times, *duration)),
            OutlierEvent::Reinstated { .. } => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn five_consecutive_failures_eject() {
    let (pool, set, events) = new_pool(10, OutlierConfig::default());
    fail(&pool, &set[0], 4);
    // A 4xx is not the endpoint's fault: it resets the count.
    let picked = pick_address(&pool, &set[0]);
    pool.record(picked, Outcome::ClientError);
    fail(&pool, &set[0], 4);
    assert!(pool.ejected().is_empty());

    fail(&pool, &set[0], 1);
    assert_eq!(pool.ejected(), vec![Arc::<str>::from(set[0].as_str())]);
    let events = events.lock().unwrap();
    let [
        OutlierEvent::Ejected {
            address,
            reason,
            times,
            duration,
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert_eq!(address.as_ref(), set[0]);
    assert_eq!(*reason, EjectionReason::ConsecutiveFailures);
    assert_eq!(*times, 1);
    assert!(
        (DEFAULT_BASE_EJECTION_TIME..DEFAULT_BASE_EJECTION_TIME + DEFAULT_EJECTION_JITTER)
            .contains(duration)
    );
}

#[tokio::test(start_paused = true)]
async fn reinstatement_after_base_times_n_within_the_jitter() {
    let (pool, set, events) = new_pool(10, OutlierConfig::default());
    for n in 1..=3u32 {
        fail(&pool, &set[0], 5);
        let (times, duration) = *ejected_for(&events.lock().unwrap()).last().unwrap();
        assert_eq!(times, n);
        let base = DEFAULT_BASE_EJECTION_TIME * n;
        assert!(
            (base..base + DEFAULT_EJECTION_JITTER).contains(&duration),
            "{duration:?}"
        );

        // Still out a moment before the base time; back in once base + jitter has passed.
        tokio::time::advance(base - Duration::from_millis(1)).await;
        assert_eq!(pool.ejected().len(), 1);
        tokio::time::advance(DEFAULT_EJECTION_JITTER + Duration::from_millis(1)).await;
        assert!(pool.ejected().is_empty());
        // The next outcome runs the interval's sweep, which reports the reinstatement.
        let picked = pick_address(&pool, &set[1]);
        pool.record(picked, Outcome::Success);
        assert!(matches!(
            events.lock().unwrap().last(),
            Some(OutlierEvent::Reinstated { address }) if address.as_ref() == set[0]
        ));
    }
}

#[tokio::test(start_paused = true)]
async fn ejection_time_is_capped() {
    let config = OutlierConfig::default();
    assert_eq!(config.ejection_time(1), Duration::from_secs(30));
    assert_eq!(config.ejection_time(4), Duration::from_secs(120));
    assert_eq!(config.ejection_time(10), Duration::from_secs(300));
    assert_eq!(config.ejection_time(u32::MAX), Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn at_most_ten_percent_but_one_of_two_or_more() {
    let config = OutlierConfig::default();
    let cap: Vec<usize> = [0, 1, 2, 3, 9, 10, 19, 20, 35, 100]
        .iter()
        .map(|&n| config.max_ejected(n))
        .collect();
    assert_eq!(cap, [0, 0, 1, 1, 1, 1, 1, 2, 3, 10]);

    let (pool, set, events) = new_pool(20, OutlierConfig::default());
    for address in &set[..3] {
        fail(&pool, address, 5);
    }
    assert_eq!(pool.ejected().len(), 2);
    assert_eq!(ejected_for(&events.lock().unwrap()).len(), 2);

    let (single, set, _) = new_pool(1, OutlierConfig::default());
    fail(&single, &set[0], 20);
    assert!(single.ejected().is_empty());
}

#[tokio::test(start_paused = true)]
async fn success_rate_ejects_the_outlier() {
    let config = OutlierConfig {
        consecutive_failures: 0,
        ..OutlierConfig::default()
    };
    let (pool, set, events) = new_pool(6, config);
    // 120 attempts each; the last endpoint fails every other one, the rest one in forty.
    for round in 0..120 {
        for (i, address) in set.iter().enumerate() {
            let picked = pick_address(&pool, address);
            let failed = if i == 5 {
                round % 2 == 0
            } else {
                round % 40 == 0
            };
            let outcome = if failed {
                Outcome::ServerError
            } else {
                Outcome::Success
            };
            pool.record(picked, outcome);
        }
    }
    assert!(pool.ejected().is_empty(), "judged only at the interval");
    tokio::time::advance(DEFAULT_INTERVAL).await;
    let picked = pick_address(&pool, &set[0]);
    pool.record(picked, Outcome::Success);
    assert_eq!(pool.ejected(), vec![Arc::<str>::from(set[5].as_str())]);
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        OutlierEvent::Ejected {
            reason: EjectionReason::SuccessRate,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn success_rate_needs_volume_and_hosts() {
    let config = OutlierConfig {
        consecutive_failures: 0,
        ..OutlierConfig::default()
    };
    // Four endpoints are fewer than the five the statistics need.
    let (pool, set, _) = new_pool(4, config);
    for round in 0..120 {
        for (i, address) in set.iter().enumerate() {
            let picked = pick_address(&pool, address);
            let failed = i == 3 && round % 2 == 0;
            pool.record(
                picked,
                if failed {
                    Outcome::ServerError
                } else {
                    Outcome::Success
                },
            );
        }
    }
    tokio::time::advance(DEFAULT_INTERVAL).await;
    let picked = pick_address(&pool, &set[0]);
    pool.record(picked, Outcome::Success);
    assert!(pool.ejected().is_empty());
}

#[tokio::test(start_paused = true)]
async fn latency_ejection_when_enabled() {
    let config = OutlierConfig {
        interval: Duration::from_secs(3600),
        latency: LatencyEjection {
            enabled: true,
            ..LatencyEjection::default()
        },
        ..OutlierConfig::default()
    };
    let (pool, set, events) = new_pool(5, config.clone());
    let (off, off_set, _) = new_pool(
        5,
        OutlierConfig {
            latency: LatencyEjection::default(),
            ..config
        },
    );
    for (pool, set) in [(&pool, &set), (&off, &off_set)] {
        for _ in 0..100 {
            for (i, address) in set.iter().enumerate() {
                let picked = pick_address(pool, address);
                let ms = if i == 2 { 100 } else { 10 + i as u64 };
                tokio::time::advance(Duration::from_millis(ms)).await;
                pool.record(picked, Outcome::Success);
            }
        }
    }
    tokio::time::advance(Duration::from_secs(3600)).await;
    for (pool, set) in [(&pool, &set), (&off, &off_set)] {
        let picked = pick_address(pool, &set[0]);
        pool.record(picked, Outcome::Success);
    }
    assert_eq!(pool.ejected(), vec![Arc::<str>::from(set[2].as_str())]);
    assert!(off.ejected().is_empty(), "off by default");
    assert!(events.lock().unwrap().iter().any(|e| matches!(
        e,
        OutlierEvent::Ejected {
            reason: EjectionReason::Latency,
            ..
        }
    )));
}
