//! The random source of balancing, ejection jitter and backoff: SplitMix64 over one atomic
//! counter, so it is shared between tasks without a lock, never allocates, and replays the
//! same sequence from the same seed in tests.
//!
//! Not cryptographic: it only spreads load and decorrelates timers.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The SplitMix64 increment (the golden ratio in 64 bits).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A lock-free pseudo-random source.
pub(crate) struct Rng {
    state: AtomicU64,
}

impl fmt::Debug for Rng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rng").finish_non_exhaustive()
    }
}

impl Rng {
    /// A source that replays the same sequence for the same `seed`.
    pub(crate) fn seeded(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A source seeded from the process's hash keys (random per process).
    pub(crate) fn from_entropy() -> Self {
        Self::seeded(RandomState::new().hash_one(0u64))
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&self) -> u64 {
        let z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        mix(z)
    }

    /// A uniform index in `0..n`; 0 when `n` is 0 (Lemire's multiply-shift, without the
    /// rejection step: the bias is below 2⁻³² for any realistic `n`).
    pub(crate) fn below(&self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform float in `[0, 1)`.
    pub(crate) fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform duration in `[0, max)`; zero when `max` is zero.
    pub(crate) fn duration_below(&self, max: Duration) -> Duration {
        max.mul_f64(self.unit())
    }
}

/// The SplitMix64 finalizer: a bijection that spreads every input bit over the output.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of `bytes` (FNV-1a, then [`mix`]): the same on every machine and
/// every build, so callers agree on a key's place on the ring.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = KeyHasher::default();
    hasher.update(bytes);
    hasher.finish()
}

/// [`hash_bytes`] fed piece by piece: as a [`fmt::Write`](std::fmt::Write), it hashes a
/// value's `Display` form without building the string.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl Default for KeyHasher {
    fn default() -> Self {
        Self(0xCBF2_9CE4_8422_2325)
    }
}

impl KeyHasher {
    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }

    /// The hash of everything written.
    pub(crate) fn finish(self) -> u64 {
        mix(self.0)
    }
}

impl std::fmt::Write for KeyHasher {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.update(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (a, b) = (Rng::seeded(7), Rng::seeded(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let rng = Rng::seeded(1);
        let mut seen = [0u32; 7];
        for _ in 0..7_000 {
            seen[rng.below(7)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn a_display_form_hashes_as_its_bytes() {
        use std::fmt::Write;
        let mut hasher = KeyHasher::default();
        write!(hasher, "user-{}", 42).unwrap();
        assert_eq!(hasher.finish(), hash_bytes(b"user-42"));
        assert_ne!(hash_bytes(b"user-42"), hash_bytes(b"user-43"));
    }

    #[test]
    fn unit_is_half_open() {
        let rng = Rng::seeded(3);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
