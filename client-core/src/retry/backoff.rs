//! Randomness for jitter, injectable so tests are deterministic.

use std::fmt;
use std::sync::Mutex;

use rand::{Rng as _, SeedableRng as _};

/// A source of uniform random fractions in `[0, 1]` for backoff jitter.
pub trait RandomSource: Send + Sync + fmt::Debug {
    /// The next fraction.
    fn next_unit(&self) -> f64;
}

/// Thread-local OS-seeded randomness; the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRandom;

impl RandomSource for SystemRandom {
    fn next_unit(&self) -> f64 {
        rand::rng().random::<f64>()
    }
}

/// A seeded generator: the same seed gives the same delays.
#[derive(Debug)]
pub struct SeededRandom {
    rng: Mutex<rand::rngs::StdRng>,
}

impl SeededRandom {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)),
        }
    }
}

impl RandomSource for SeededRandom {
    fn next_unit(&self) -> f64 {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.random::<f64>()
    }
}

/// Always the same fraction: `0.0` makes every backoff zero (so only server
/// hints cause delays), `1.0` makes every backoff its upper bound.
#[derive(Debug, Clone, Copy)]
pub struct FixedRandom(f64);

impl FixedRandom {
    /// Always returns `fraction`, clamped to `[0, 1]`.
    pub fn new(fraction: f64) -> Self {
        Self(if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        })
    }
}

impl RandomSource for FixedRandom {
    fn next_unit(&self) -> f64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_random_repeats_and_stays_in_range() {
        let a = SeededRandom::new(7);
        let b = SeededRandom::new(7);
        for _ in 0..100 {
            let x = a.next_unit();
            assert_eq!(x, b.next_unit());
            assert!((0.0..=1.0).contains(&x));
        }
    }
}
