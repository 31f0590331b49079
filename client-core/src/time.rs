//! Injectable time: a [`Clock`] to read "now" and a [`Sleeper`] to wait.
//!
//! Retry loops, token caches and job waiters take both, so tests can run
//! them with [`ManualClock`] and [`RecordingSleeper`]: no real time passes and
//! every requested delay is recorded for assertions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A monotonic clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// Waits for a duration.
#[async_trait::async_trait]
pub trait Sleeper: Send + Sync + std::fmt::Debug {
    /// Sleeps for `duration`.
    async fn sleep(&self, duration: Duration);
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Sleeps with `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

#[async_trait::async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A clock that only moves when told to. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Instant>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock starting at the real current instant.
    pub fn new() -> Self {
        Self {
            now: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A sleeper that returns at once, records each requested delay, and
/// advances an optional [`ManualClock`] by it, so deadlines still work.
#[derive(Debug, Clone, Default)]
pub struct RecordingSleeper {
    sleeps: Arc<Mutex<Vec<Duration>>>,
    clock: Option<ManualClock>,
}

impl RecordingSleeper {
    /// A sleeper that records only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sleeper that also advances `clock` by each delay.
    pub fn with_clock(clock: ManualClock) -> Self {
        Self {
            sleeps: Arc::default(),
            clock: Some(clock),
        }
    }

    /// The delays requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait::async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, duration: Duration) {
        self.sleeps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(duration);
        if let Some(clock) = &self.clock {
            clock.advance(duration);
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recording_sleeper_advances_the_manual_clock() {
        let clock = ManualClock::new();
        let start = clock.now();
        let sleeper = RecordingSleeper::with_clock(clock.clone());
        sleeper.sleep(Duration::from_secs(3)).await;
        sleeper.sleep(Duration::from_millis(500)).await;
        assert_eq!(
            sleeper.sleeps(),
            vec![Duration::from_secs(3), Duration::from_millis(500)]
        );
        assert_eq!(clock.now() - start, Duration::from_millis(3500));
    }
}
