use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::{ProptestConfig, any, prop_assert_eq, proptest};

use super::*;
use crate::outbound::resilience::discard;

fn addresses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:8443")).collect()
}

fn pool(strategy: Strategy, addresses: &[String], seed: u64) -> Pool {
    let balancer = BalancerConfig {
        strategy,
        ..BalancerConfig::default()
    };
    Pool::new(
        &balancer,
        OutlierConfig::default(),
        addresses,
        Rng::seeded(seed),
        discard(),
    )
    .unwrap()
}

/// Picks `n` times, each attempt ended at once; the count per address.
fn spread(pool: &Pool, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let picked = pool.pick().unwrap();
        *counts.entry(picked.address().to_owned()).or_default() += 1;
    }
    counts
}

fn assert_roughly_uniform(counts: &HashMap<String, usize>, endpoints: usize, picks: usize) {
    assert_eq!(counts.len(), endpoints, "{counts:?}");
    let mean = picks / endpoints;
    for (address, &count) in counts {
        assert!(
            count.abs_diff(mean) < mean / 10,
            "{address}: {count} picks, expected about {mean}: {counts:?}"
        );
    }
}

/// An attempt on `address` whatever the strategy would choose.
fn attempt_on(pool: &Pool, address: &str) -> Picked {
    let slot = pool.slot(address).unwrap();
    slot.in_flight.fetch_add(1, Ordering::Relaxed);
    Picked {
        slot,
        started: Instant::now(),
    }
}

/// Picks until `address` comes up (the others' attempts end at once).
pub(in crate::outbound::resilience) fn pick_address(pool: &Pool, address: &str) -> Picked {
    for _ in 0..10_000 {
        let picked = pool.pick().unwrap();
        if picked.address() == address {
            return picked;
        }
    }
    panic!("{address} never picked");
}

#[tokio::test(start_paused = true)]
async fn round_robin_is_exact() {
    let set = addresses(3);
    let pool = pool(Strategy::RoundRobin, &set, 1);
    let order: Vec<String> = (0..9)
        .map(|_| pool.pick().unwrap().address().to_owned())
        .collect();
    let expected: Vec<String> = set.iter().cycle().take(9).cloned().collect();
    assert_eq!(order, expected);
    let counts = spread(&pool, 300);
    assert!(counts.values().all(|&n| n == 100), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn random_is_roughly_uniform() {
    let pool = pool(Strategy::Random, &addresses(4), 7);
    assert_roughly_uniform(&spread(&pool, 10_000), 4, 10_000);
}

#[tokio::test(start_paused = true)]
async fn p2c_is_roughly_uniform_over_equal_endpoints() {
    for strategy in [Strategy::P2cEwma, Strategy::LeastRequest] {
        let pool = pool(strategy, &addresses(4), 11);
        assert_roughly_uniform(&spread(&pool, 10_000), 4, 10_000);
    }
}

#[tokio::test(start_paused = true)]
async fn p2c_ewma_avoids_the_slow_endpoint() {
    let set = addresses(3);
    let pool = pool(Strategy::P2cEwma, &set, 3);
    // One answer each: the first endpoint in 200 ms, the others in 5 ms.
    for (address, latency) in [(&set[0], 200), (&set[1], 5), (&set[2], 5)] {
        let picked = pick_address(&pool, address);
        tokio::time::advance(Duration::from_millis(latency)).await;
        pool.record(picked, Outcome::Success);
    }
    // Two distinct draws out of three always include a fast endpoint.
    let counts = spread(&pool, 1_000);
    assert_eq!(counts.get(&set[0]), None, "{counts:?}");

    // Load outweighs latency: with about forty attempts in flight on each fast endpoint
    // (5 ms × 41 > 200 ms), the slow one gets its share.
    let held: Vec<Picked> = (0..200).map(|_| pool.pick().unwrap()).collect();
    let slow = held.iter().filter(|p| p.address() == set[0]).count();
    assert!(
        (1..100).contains(&slow),
        "{slow} of 200 on the slow endpoint"
    );
}

#[tokio::test(start_paused = true)]
async fn p2c_ewma_weighs_load_with_latency() {
    let set = addresses(2);
    let pool = pool(Strategy::P2cEwma, &set, 5);
    // Equal latency estimates, but one attempt in flight on one endpoint: twice the cost.
    let busy = pool.pick().unwrap();
    let other = set.iter().find(|a| *a != busy.address()).unwrap();
    let counts = spread(&pool, 100);
    assert_eq!(counts.get(other), Some(&100), "{counts:?}");
    let slot = pool.slot(busy.address()).unwrap();
    assert_eq!(slot.in_flight(), 1);
    drop(busy);
    assert_eq!(slot.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn least_request_prefers_the_idle_endpoint() {
    let set = addresses(2);
    let pool = pool(Strategy::LeastRequest, &set, 9);
    let _busy = pick_address(&pool, &set[0]);
    let counts = spread(&pool, 100);
    assert_eq!(counts.get(&set[1]), Some(&100), "{counts:?}");
}

#[test]
fn peak_ewma_jumps_up_and_decays_down() {
    let decay = DEFAULT_EWMA_DECAY.as_nanos() as f64;
    let slot = Slot::new("a:1".into(), DEFAULT_RTT, 1);
    let ms = |v: f64| v / 1e6;
    assert!((ms(slot.rtt_estimate(1, decay)) - 30.0).abs() < 1e-9);
    // A slower sample replaces the estimate at once.
    slot.observe_rtt(Duration::from_millis(300), 1, decay);
    assert!((ms(slot.rtt_recorded()) - 300.0).abs() < 1e-9);
    // A faster sample one decay period later is blended with weight 1 − 1/e.
    let later = 1 + DEFAULT_EWMA_DECAY.as_nanos() as u64;
    slot.observe_rtt(Duration::from_millis(10), later, decay);
    let expected = 300.0 / std::f64::consts::E + 10.0 * (1.0 - 1.0 / std::f64::consts::E);
    assert!((ms(slot.rtt_recorded()) - expected).abs() < 1e-6);
    // Reading an idle endpoint decays toward zero without writing.
    let idle = later + 2 * DEFAULT_EWMA_DECAY.as_nanos() as u64;
    let read = ms(slot.rtt_estimate(idle, decay));
    assert!((read - expected / std::f64::consts::E.powi(2)).abs() < 1e-6);
    assert!((ms(slot.rtt_recorded()) - expected).abs() < 1e-6);
}

#[tokio::test(start_paused = true)]
async fn ring_hash_is_sticky() {
    let pool = pool(Strategy::RingHash, &addresses(5), 1);
    for user in 0..200 {
        let key = format!("user-{user}");
        let first = pool
            .pick_keyed(key.as_bytes())
            .unwrap()
            .address()
            .to_owned();
        for _ in 0..3 {
            assert_eq!(pool.pick_keyed(key.as_bytes()).unwrap().address(), first);
        }
    }
    // The ring spreads keys over every endpoint.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for user in 0..10_000 {
        let key = format!("user-{user}");
        *counts
            .entry(
                pool.pick_keyed(key.as_bytes())
                    .unwrap()
                    .address()
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 5);
    assert!(
        counts.values().all(|&n| n.abs_diff(2_000) < 600),
        "{counts:?}"
    );
}

fn owners(pool: &Pool, keys: usize) -> Vec<String> {
    (0..keys)
        .map(|k| {
            pool.pick_keyed(format!("key-{k}").as_bytes())
                .unwrap()
                .address()
                .to_owned()
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn ring_hash_remaps_minimally() {
    let mut set = addresses(9);
    let pool = pool(Strategy::RingHash, &set, 1);
    let before = owners(&pool, 10_000);

    // Adding a tenth endpoint moves only the keys it takes, about a tenth of them.
    set.push("10.0.1.99:8443".into());
    pool.update(&set);
    let after = owners(&pool, 10_000);
    let moved: Vec<usize> = (0..before.len())
        .filter(|&k| before[k] != after[k])
        .collect();
    assert!(moved.iter().all(|&k| after[k] == set[9]));
    assert!((600..1_500).contains(&moved.len()), "{} moved", moved.len());

    // Removing one moves only its keys.
    let removed = set.remove(3);
    pool.update(&set);
    let again = owners(&pool, 10_000);
    for k in 0..after.len() {
        if after[k] != removed {
            assert_eq!(after[k], again[k], "key-{k}");
        } else {
            assert_ne!(again[k], removed);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Removing any endpoint from any set moves exactly the keys it owned.
    #[test]
    fn ring_removal_moves_only_the_removed_keys(
        n in 2usize..12,
        gone in 0usize..12,
        keys in proptest::collection::vec(any::<u64>(), 1..200),
    ) {
        let gone = gone % n;
        let set = addresses(n);
        let full = Ring::new(set.iter().map(String::as_str), 16);
        let rest: Vec<&str> = set.iter().enumerate().filter(|&(i, _)| i != gone).map(|(_, a)| a.as_str()).collect();
        let smaller = Ring::new(rest.iter().copied(), 16);
        for key in keys {
            let before = full.lookup(key, |_| false).unwrap();
            let after = rest[smaller.lookup(key, |_| false).unwrap()];
            if before != gone {
                prop_assert_eq!(set[before].as_str(), after);
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn ring_hash_without_a_key_picks_at_random() {
    let pool = pool(Strategy::RingHash, &addresses(4), 2);
    assert_roughly_uniform(&spread(&pool, 10_000), 4, 10_000);
}

#[tokio::test(start_paused = true)]
async fn an_empty_pool_has_no_endpoints() {
    let pool = pool(Strategy::P2cEwma, &[], 1);
    assert_eq!(pool.pick().unwrap_err(), NoEndpoints);
    assert_eq!(pool.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn updates_keep_the_statistics_of_endpoints_that_stay() {
    let set = addresses(3);
    let pool = pool(Strategy::RoundRobin, &set, 1);
    let held = pick_address(&pool, &set[1]);
    let before = pool.slot(&set[1]).unwrap();

    pool.update(&[
        set[1].clone(),
        set[2].clone(),
        "10.0.2.1:8443".into(),
        set[1].clone(),
    ]);
    assert_eq!(pool.len(), 3, "duplicates are kept once");
    let after = pool.slot(&set[1]).unwrap();
    assert!(Arc::ptr_eq(&before, &after));
    assert_eq!(after.in_flight(), 1);
    assert!(pool.slot(&set[0]).is_none());

    pool.record(held, Outcome::ServerError);
    assert_eq!(after.in_flight(), 0);
    assert_eq!(after.last_outcome(), Some(Outcome::ServerError));
}

#[tokio::test(start_paused = true)]
async fn every_strategy_skips_ejected_endpoints() {
    for strategy in Strategy::ALL {
        let set = addresses(3);
        let pool = pool(strategy, &set, 4);
        // Five failed attempts on the first endpoint (made on it directly: after one, a
        // latency-aware strategy would not pick it again).
        for _ in 0..5 {
            pool.record(attempt_on(&pool, &set[0]), Outcome::ConnectFailed);
        }
        assert_eq!(pool.ejected(), vec![Arc::<str>::from(set[0].as_str())]);
        for k in 0..1_000 {
            let picked = if k % 2 == 0 {
                pool.pick().unwrap()
            } else {
                pool.pick_keyed(format!("k{k}").as_bytes()).unwrap()
            };
            assert_ne!(picked.address(), set[0], "{strategy}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn when_every_endpoint_is_ejected_ejection_is_ignored() {
    let set = addresses(2);
    let pool = pool(Strategy::RoundRobin, &set, 1);
    for _ in 0..5 {
        let picked = pick_address(&pool, &set[0]);
        pool.record(picked, Outcome::ServerError);
    }
    assert_eq!(pool.ejected().len(), 1);
    // The registry drops the healthy endpoint: the ejected one is all there is.
    pool.update(&set[..1]);
    assert_eq!(pool.pick().unwrap().address(), set[0]);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_fails_fast_is_not_preferred() {
    let set = addresses(2);
    let pool = pool(Strategy::P2cEwma, &set, 11);
    // The first endpoint refuses at once, the second answers in 20 ms.
    let refused = pick_address(&pool, &set[0]);
    pool.record(refused, Outcome::ConnectFailed);
    let answered = pick_address(&pool, &set[1]);
    tokio::time::advance(Duration::from_millis(20)).await;
    pool.record(answered, Outcome::Success);
    let counts = spread(&pool, 100);
    assert_eq!(counts.get(&set[0]), None, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_avoids_the_endpoint_that_just_failed_while_another_remains() {
    for strategy in Strategy::ALL {
        let set = addresses(3);
        let pool = pool(strategy, &set, 13);
        for _ in 0..200 {
            assert_ne!(
                pool.pick_other(&set[1]).unwrap().address(),
                set[1],
                "{strategy}"
            );
        }
        // The only endpoint left is picked again rather than none.
        let single = self::pool(strategy, &set[..1], 13);
        assert_eq!(single.pick_other(&set[0]).unwrap().address(), set[0]);
        // An address no longer in the set avoids nothing.
        assert!(pool.pick_other("10.9.9.9:1").is_ok());
    }
}
