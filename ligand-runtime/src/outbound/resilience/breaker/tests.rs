use std::sync::{Arc, Mutex};

use super::*;

fn breaker(config: BreakerConfig) -> (Breaker, Arc<Mutex<Vec<Transition>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink: Sink<Transition> = {
        let events = events.clone();
        Arc::new(move |t: &Transition| events.lock().unwrap().push(*t))
    };
    (Breaker::new(config, sink).unwrap(), events)
}

fn call(breaker: &Breaker, outcome: Outcome) {
    breaker.allow().unwrap().record(outcome);
}

fn transition(from: State, to: State) -> Transition {
    Transition { from, to }
}

/// Opens a default breaker with ten failures in a row.
fn opened() -> (Breaker, Arc<Mutex<Vec<Transition>>>) {
    let (breaker, events) = breaker(BreakerConfig::default());
    for _ in 0..DEFAULT_CONSECUTIVE_FAILURES {
        call(&breaker, Outcome::ServerError);
    }
    assert_eq!(breaker.state(), State::Open);
    (breaker, events)
}

#[tokio::test(start_paused = true)]
async fn opens_on_the_failure_ratio_once_the_volume_is_reached() {
    let (breaker, events) = breaker(BreakerConfig {
        consecutive_failures: 0,
        ..BreakerConfig::default()
    });
    // Alternating: a 50 % ratio, never a streak. 19 outcomes are below the minimum volume.
    for i in 0..19 {
        call(
            &breaker,
            if i % 2 == 0 {
                Outcome::NoResponse
            } else {
                Outcome::Success
            },
        );
    }
    assert_eq!(breaker.state(), State::Closed);
    call(&breaker, Outcome::ConnectFailed);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        *events.lock().unwrap(),
        [transition(State::Closed, State::Open)]
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_do_not_count_as_failures() {
    let (breaker, _) = breaker(BreakerConfig::default());
    for _ in 0..100 {
        call(&breaker, Outcome::ClientError);
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_window_forgets_old_outcomes() {
    let (breaker, _) = breaker(BreakerConfig {
        consecutive_failures: 0,
        ..BreakerConfig::default()
    });
    for _ in 0..15 {
        call(&breaker, Outcome::ServerError);
    }
    // Past the window the fifteen failures no longer count: ten successes and five
    // failures make twenty with a ratio of 25 %.
    tokio::time::advance(DEFAULT_WINDOW + Duration::from_secs(1)).await;
    for _ in 0..10 {
        call(&breaker, Outcome::Success);
    }
    for _ in 0..9 {
        call(&breaker, Outcome::ServerError);
    }
    assert_eq!(breaker.state(), State::Closed);
    // Within the window: twenty outcomes, ten failed.
    call(&breaker, Outcome::ServerError);
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_whatever_the_volume() {
    let (breaker, events) = breaker(BreakerConfig::default());
    for _ in 0..DEFAULT_CONSECUTIVE_FAILURES - 1 {
        call(&breaker, Outcome::ServerError);
    }
    call(&breaker, Outcome::Success);
    for _ in 0..DEFAULT_CONSECUTIVE_FAILURES - 1 {
        call(&breaker, Outcome::ServerError);
    }
    assert_eq!(breaker.state(), State::Closed);
    call(&breaker, Outcome::ServerError);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn closed_open_half_open_closed() {
    let (breaker, events) = opened();
    assert_eq!(
        breaker.allow().unwrap_err(),
        BreakerError::Open {
            retry_after: DEFAULT_OPEN_DURATION
        }
    );
    tokio::time::advance(DEFAULT_OPEN_DURATION - Duration::from_millis(1)).await;
    assert!(matches!(breaker.allow(), Err(BreakerError::Open { .. })));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), State::HalfOpen);

    let probe = breaker.allow().unwrap();
    assert!(probe.is_probe());
    probe.record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        *events.lock().unwrap(),
        [
            transition(State::Closed, State::Open),
            transition(State::Open, State::HalfOpen),
            transition(State::HalfOpen, State::Closed),
        ]
    );
    assert!(!breaker.allow().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_a_longer_cool_down() {
    let (breaker, events) = opened();
    for cool_down in [5, 10, 20, 40, 60, 60] {
        let cool_down = Duration::from_secs(cool_down);
        assert_eq!(
            breaker.allow().unwrap_err(),
            BreakerError::Open {
                retry_after: cool_down
            }
        );
        tokio::time::advance(cool_down).await;
        breaker.allow().unwrap().record(Outcome::ServerError);
        assert_eq!(breaker.state(), State::Open);
    }
    {
        let events = events.lock().unwrap();
        assert_eq!(events[1], transition(State::Open, State::HalfOpen));
        assert_eq!(events[2], transition(State::HalfOpen, State::Open));
    }

    // Closing resets the cool-down.
    tokio::time::advance(Duration::from_secs(60)).await;
    breaker.allow().unwrap().record(Outcome::Success);
    for _ in 0..DEFAULT_CONSECUTIVE_FAILURES {
        call(&breaker, Outcome::ServerError);
    }
    assert_eq!(
        breaker.allow().unwrap_err(),
        BreakerError::Open {
            retry_after: DEFAULT_OPEN_DURATION
        }
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_a_bounded_number_of_probes() {
    let (breaker, _) = opened();
    tokio::time::advance(DEFAULT_OPEN_DURATION).await;
    let probes: Vec<_> = (0..DEFAULT_HALF_OPEN_PROBES)
        .map(|_| breaker.allow().unwrap())
        .collect();
    assert_eq!(breaker.allow().unwrap_err(), BreakerError::ProbesBusy);
    // A cancelled probe frees its slot and decides nothing.
    let mut probes = probes.into_iter();
    drop(probes.next());
    assert_eq!(breaker.state(), State::HalfOpen);
    let again = breaker.allow().unwrap();
    assert_eq!(breaker.allow().unwrap_err(), BreakerError::ProbesBusy);
    again.record(Outcome::Success);
    assert_eq!(breaker.state(), State::Closed);
    // The other probes finish after the transition and are ignored.
    for probe in probes {
        probe.record(Outcome::ServerError);
    }
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_calls_admitted_before_a_transition_are_ignored() {
    let (breaker, _) = breaker(BreakerConfig::default());
    let slow = breaker.allow().unwrap();
    for _ in 0..DEFAULT_CONSECUTIVE_FAILURES {
        call(&breaker, Outcome::ServerError);
    }
    tokio::time::advance(DEFAULT_OPEN_DURATION).await;
    assert_eq!(breaker.state(), State::HalfOpen);
    // A call admitted while closed is not a probe: its success does not close the circuit.
    slow.record(Outcome::Success);
    assert_eq!(breaker.state(), State::HalfOpen);
}

#[test]
fn cool_down_doubles_up_to_the_maximum() {
    let config = BreakerConfig::default();
    let secs: Vec<u64> = (1..=7).map(|t| config.cool_down(t).as_secs()).collect();
    assert_eq!(secs, [5, 10, 20, 40, 60, 60, 60]);
    assert_eq!(config.cool_down(u32::MAX), DEFAULT_MAX_OPEN_DURATION);
}

#[tokio::test(start_paused = true)]
async fn a_success_that_reaches_the_volume_opens_on_the_failures_in_the_window() {
    let (breaker, events) = breaker(BreakerConfig {
        consecutive_failures: 0,
        ..BreakerConfig::default()
    });
    // Ten failures, then nine successes: below the minimum volume, so closed.
    for _ in 0..10 {
        call(&breaker, Outcome::ServerError);
    }
    for _ in 0..9 {
        call(&breaker, Outcome::Success);
    }
    assert_eq!(breaker.state(), State::Closed);
    // The twentieth outcome is a success, and ten of twenty failed: the ratio is reached.
    call(&breaker, Outcome::Success);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        *events.lock().unwrap(),
        [transition(State::Closed, State::Open)]
    );
}

#[tokio::test(start_paused = true)]
async fn failures_in_the_last_slice_of_the_window_still_count_for_a_success() {
    let config = BreakerConfig {
        consecutive_failures: 0,
        ..BreakerConfig::default()
    };
    let (inside, _) = breaker(config.clone());
    for _ in 0..10 {
        call(&inside, Outcome::ServerError);
    }
    // Just inside the window (its oldest slice still holds the failures)...
    let slice = DEFAULT_WINDOW / BUCKETS as u32;
    tokio::time::advance(DEFAULT_WINDOW - slice).await;
    for _ in 0..9 {
        call(&inside, Outcome::Success);
    }
    assert_eq!(inside.state(), State::Closed);
    call(&inside, Outcome::Success);
    assert_eq!(
        inside.state(),
        State::Open,
        "the failures were still in the window"
    );

    // ...and once they have left it, successes alone never open the circuit.
    let (past, _) = breaker(config);
    for _ in 0..10 {
        call(&past, Outcome::ServerError);
    }
    tokio::time::advance(DEFAULT_WINDOW).await;
    for _ in 0..100 {
        call(&past, Outcome::Success);
    }
    assert_eq!(past.state(), State::Closed);
}
