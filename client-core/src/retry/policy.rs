//! The retry budget and backoff parameters.

use std::time::Duration;

use super::RandomSource;

/// How often and how long to retry a request.
///
/// The defaults follow object_store: up to 10 attempts within 3 minutes,
/// backoff from 200 ms doubling up to 15 s with full jitter, and a server's
/// `Retry-After` honoured up to 60 s. Build variations with the `with_*`
/// methods:
///
/// ```
/// use std::time::Duration;
/// use client_core::retry::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .with_max_attempts(4)
///     .with_deadline(Duration::from_secs(30));
/// assert_eq!(policy.max_attempts, 4);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (1 = never retry).
    pub max_attempts: u32,
    /// Overall time budget from the first attempt; no retry is scheduled
    /// whose delay would end past it.
    pub deadline: Duration,
    /// Upper bound of the first backoff delay.
    pub initial_backoff: Duration,
    /// Upper bound of any backoff delay.
    pub max_backoff: Duration,
    /// Growth of the backoff bound per retry.
    pub multiplier: f64,
    /// Cap on a server's `Retry-After` (a server asking for an hour gets this).
    pub max_retry_after: Duration,
    /// How long one attempt may wait for the response's status line and
    /// headers (None = no limit beyond the client's connect and read
    /// timeouts). An attempt that outwaits it fails as a
    /// [`TransportKind::Timeout`](crate::TransportKind::Timeout), retried
    /// like any timeout: only for idempotent requests. The body is not
    /// covered, so long healthy downloads are never cut off by it.
    pub response_timeout: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            deadline: Duration::from_secs(180),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(15),
            multiplier: 2.0,
            max_retry_after: Duration::from_secs(60),
            response_timeout: None,
        }
    }
}

impl RetryPolicy {
    /// A policy that makes exactly one attempt.
    pub fn no_retries() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The budget of token endpoints: as many attempts as any request (a
    /// token fetch that gives up fails every call waiting for it, so a
    /// long sync would die of one unlucky fetch), but within 60 s, so a
    /// token endpoint that is down is reported within a minute.
    pub fn token_endpoint() -> Self {
        Self {
            deadline: Duration::from_secs(60),
            ..Self::default()
        }
    }

    /// Sets [`max_attempts`](Self::max_attempts) (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the overall [`deadline`](Self::deadline).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets the backoff bounds and growth.
    pub fn with_backoff(mut self, initial: Duration, max: Duration, multiplier: f64) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self.multiplier = if multiplier.is_finite() && multiplier >= 1.0 {
            multiplier
        } else {
            1.0
        };
        self
    }

    /// Sets the [`response_timeout`](Self::response_timeout) of every attempt.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = Some(timeout);
        self
    }

    /// Sets the cap on `Retry-After`.
    pub fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// The full-jitter backoff before retry number `retry` (1 = first retry):
    /// a uniform random fraction of `min(max, initial * multiplier^(retry-1))`.
    pub fn backoff(&self, retry: u32, random: &dyn RandomSource) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let bound_secs = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let bound = if bound_secs.is_finite() {
            Duration::from_secs_f64(bound_secs.min(self.max_backoff.as_secs_f64()))
        } else {
            self.max_backoff
        };
        bound.mul_f64(random.next_unit().clamp(0.0, 1.0))
    }

    /// The delay before retry number `retry`: the larger of the backoff and
    /// the server's hint, the hint capped at
    /// [`max_retry_after`](Self::max_retry_after).
    pub fn delay(
        &self,
        retry: u32,
        server_hint: Option<Duration>,
        random: &dyn RandomSource,
    ) -> Duration {
        let backoff = self.backoff(retry, random);
        match server_hint {
            Some(hint) => backoff.max(hint.min(self.max_retry_after)),
            None => backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::FixedRandom;

    #[test]
    fn backoff_grows_to_the_cap() {
        let p = RetryPolicy::default().with_backoff(
            Duration::from_secs(1),
            Duration::from_secs(5),
            2.0,
        );
        let all = FixedRandom::new(1.0);
        let got: Vec<_> = (1..=5).map(|n| p.backoff(n, &all)).collect();
        let secs = [1, 2, 4, 5, 5].map(Duration::from_secs);
        assert_eq!(got, secs);
        assert_eq!(p.backoff(3, &FixedRandom::new(0.5)), Duration::from_secs(2));
        assert_eq!(p.backoff(u32::MAX, &all), Duration::from_secs(5));
    }

    #[test]
    fn delay_takes_the_larger_of_backoff_and_capped_hint() {
        let p = RetryPolicy::default().with_max_retry_after(Duration::from_secs(10));
        let zero = FixedRandom::new(0.0);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3)), &zero),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(999)), &zero),
            Duration::from_secs(10)
        );
        let full = FixedRandom::new(1.0);
        assert_eq!(
            p.delay(1, Some(Duration::ZERO), &full),
            Duration::from_millis(200)
        );
    }
}
