//! A small seedable pseudo-random generator (SplitMix64).
//!
//! Used for retry jitter and by the simulator's data generator and fault
//! injection, where a fixed seed makes a run repeatable. Not for secrets.

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Thread-safe: each call advances one shared state atomically.
#[derive(Debug)]
pub struct SplitMix64 {
    state: AtomicU64,
}

/// A copy continues the same sequence from where the original is now (the
/// simulator tries a list of changes on a copy of the world before it keeps them).
impl Clone for SplitMix64 {
    fn clone(&self) -> Self {
        Self::new(self.state.load(Ordering::Relaxed))
    }
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: AtomicU64::new(seed) }
    }

    /// Seeded from the clock: for jitter, where repeatability does not matter.
    pub fn from_time() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::new(nanos ^ u64::from(std::process::id()).rotate_left(32))
    }

    pub fn next_u64(&self) -> u64 {
        let mut z = self.state.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed).wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, bound); 0 when bound is 0.
    pub fn below(&self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_repeats_its_sequence() {
        let a = SplitMix64::new(7);
        let b = SplitMix64::new(7);
        let first: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        assert_ne!(first[0], first[1]);
    }

    #[test]
    fn chance_matches_its_rate_roughly() {
        let rng = SplitMix64::new(1);
        let hits = (0..10_000).filter(|_| rng.chance(0.3)).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert!(!rng.chance(0.0));
        assert!((0..100).all(|_| rng.below(10) < 10));
    }
}
