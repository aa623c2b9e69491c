//! Exponential backoff with jitter, bounded.

use std::time::Duration;

/// Delays between failed attempts: doubling from `min` up to `max`, each delay drawn
/// uniformly from its upper half ("equal jitter") so that a fleet that failed together does
/// not retry together, while every delay stays at least half the nominal one.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    nominal: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let min = min.min(max);
        Self {
            min,
            max,
            nominal: min,
        }
    }

    /// The next delay, with `unit` a uniform sample of `[0, 1)`.
    pub(crate) fn next_with(&mut self, unit: f64) -> Duration {
        let delay = self.nominal.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
        self.nominal = self.nominal.saturating_mul(2).min(self.max);
        delay
    }

    /// The next delay, jittered at random.
    pub(crate) fn next(&mut self) -> Duration {
        self.next_with(fastrand::f64())
    }

    /// Back to the shortest delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.nominal = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_up_to_the_bound_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(700));
        let upper: Vec<Duration> = (0..6).map(|_| b.next_with(1.0)).collect();
        let ms = |v: u64| Duration::from_millis(v);
        assert_eq!(
            upper,
            [ms(100), ms(200), ms(400), ms(700), ms(700), ms(700)]
        );
        b.reset();
        assert_eq!(
            b.next_with(0.0),
            ms(50),
            "the lowest jitter is half the nominal delay"
        );
    }

    proptest! {
        #[test]
        fn every_delay_stays_within_bounds(
            min_ms in 1u64..1000,
            max_ms in 1u64..60_000,
            samples in proptest::collection::vec(0.0f64..1.0, 1..40),
        ) {
            let (min, max) = (Duration::from_millis(min_ms), Duration::from_millis(max_ms));
            let mut b = Backoff::new(min, max);
            for unit in samples {
                let delay = b.next_with(unit);
                prop_assert!(delay <= max);
                prop_assert!(delay >= min.min(max) / 2);
            }
        }
    }
}
