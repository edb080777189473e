//! Random fractions for retry, polling and scheduling jitter.
//!
//! Jitter needs neither a seed nor secrecy, only values that differ between
//! processes and between calls, so the source is std's per-process random
//! SipHash keys applied to a counter: no generator crate, nothing to seed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Thread-safe: each call hashes the next value of one shared counter.
#[derive(Debug, Default)]
pub struct Jitter {
    keys: RandomState,
    counter: AtomicU64,
}

impl Jitter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn next_u64(&self) -> u64 {
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(self.counter.fetch_add(1, Ordering::Relaxed));
        hasher.finish()
    }

    /// Uniform in [0, 1).
    pub fn fraction(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_stay_in_the_unit_interval_and_spread_over_it() {
        let jitter = Jitter::new();
        let samples: Vec<f64> = (0..10_000).map(|_| jitter.fraction()).collect();
        assert!(samples.iter().all(|f| (0.0..1.0).contains(f)));
        let low = samples.iter().filter(|f| **f < 0.5).count();
        assert!((4_500..5_500).contains(&low), "{low} of 10000 below one half");
    }

    #[test]
    fn two_processes_worth_of_jitter_differ() {
        // Each value gets its own keys, as each process does.
        assert_ne!(Jitter::new().next_u64(), Jitter::new().next_u64());
    }
}
