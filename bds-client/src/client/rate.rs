//! D2L's per-app credit bucket, seen through its response headers.
//!
//! Every API answer carries `X-Rate-Limit-Remaining` (credits left this
//! minute) and `X-Rate-Limit-Reset` (seconds until the bucket refills). When
//! few credits are left the client waits for the refill *before* the next
//! call, instead of spending the rest and collecting 429s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client_core::http::HeaderMap;
use client_core::time::{Clock, Sleeper};

/// The bucket as of the last API answer that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitStatus {
    /// Credits left in the current window (`X-Rate-Limit-Remaining`).
    pub remaining: u64,
    /// Time until the bucket refills, as reported (`X-Rate-Limit-Reset`).
    pub reset_after: Duration,
    /// What the call cost (`X-Request-Cost`), if reported.
    pub request_cost: Option<u64>,
}

impl RateLimitStatus {
    /// Reads the three headers; `None` when the remaining credits or the
    /// reset time are absent (429 answers and unlimited tenants omit them).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let number = |name: &str| {
            headers
                .get(name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
        };
        Some(RateLimitStatus {
            remaining: number("x-rate-limit-remaining")? as u64,
            reset_after: Duration::from_secs_f64(number("x-rate-limit-reset")?),
            request_cost: number("x-request-cost").map(|c| c as u64),
        })
    }
}

/// Longest pause for a refill; a reset far in the future is a server bug,
/// not a reason to hang.
const MAX_PAUSE: Duration = Duration::from_secs(120);

/// Tracks the bucket and paces calls when it runs low. Shared by clones.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    last: Arc<Mutex<Option<(RateLimitStatus, Instant)>>>,
    slow_down_below: u64,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
}

impl RateLimiter {
    pub(crate) fn new(
        slow_down_below: u64,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Self {
        RateLimiter {
            last: Arc::default(),
            slow_down_below,
            clock,
            sleeper,
        }
    }

    /// Records the bucket reported by an answer.
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        if let Some(status) = RateLimitStatus::from_headers(headers) {
            tracing::trace!(remaining = status.remaining, reset_after = ?status.reset_after, "D2L rate limit");
            *self.lock() = Some((status, self.clock.now()));
        }
    }

    /// The last reported bucket.
    pub(crate) fn status(&self) -> Option<RateLimitStatus> {
        self.lock().map(|(s, _)| s)
    }

    /// Waits for the refill if the bucket is nearly empty.
    pub(crate) async fn pace(&self) {
        let Some(wait) = self.pause_needed() else {
            return;
        };
        tracing::info!(
            ?wait,
            "D2L rate-limit bucket nearly empty; waiting for it to refill"
        );
        self.sleeper.sleep(wait).await;
        // The window has turned over; the next answer reports the new bucket.
        *self.lock() = None;
    }

    fn pause_needed(&self) -> Option<Duration> {
        let (status, seen_at) = (*self.lock())?;
        if status.remaining >= self.slow_down_below {
            return None;
        }
        let elapsed = self.clock.now().saturating_duration_since(seen_at);
        let wait = status.reset_after.saturating_sub(elapsed).min(MAX_PAUSE);
        (!wait.is_zero()).then_some(wait)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(RateLimitStatus, Instant)>> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client_core::http::HeaderValue;
    use client_core::time::{ManualClock, RecordingSleeper};

    fn headers(remaining: &str, reset: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "X-Rate-Limit-Remaining",
            HeaderValue::from_str(remaining).unwrap(),
        );
        h.insert("X-Rate-Limit-Reset", HeaderValue::from_str(reset).unwrap());
        h.insert("X-Request-Cost", HeaderValue::from_static("10"));
        h
    }

    #[test]
    fn reads_the_headers_and_ignores_garbage() {
        let s = RateLimitStatus::from_headers(&headers("490", "42")).unwrap();
        assert_eq!(
            (s.remaining, s.reset_after, s.request_cost),
            (490, Duration::from_secs(42), Some(10))
        );
        assert!(RateLimitStatus::from_headers(&headers("lots", "42")).is_none());
        assert!(RateLimitStatus::from_headers(&HeaderMap::new()).is_none());
    }

    #[tokio::test]
    async fn a_nearly_empty_bucket_waits_for_the_rest_of_the_window_once() {
        let clock = ManualClock::new();
        let sleeper = RecordingSleeper::with_clock(clock.clone());
        let limiter = RateLimiter::new(50, Arc::new(clock.clone()), Arc::new(sleeper.clone()));
        limiter.observe(&headers("500", "30"));
        limiter.pace().await;
        assert!(sleeper.sleeps().is_empty(), "plenty left");

        limiter.observe(&headers("20", "30"));
        clock.advance(Duration::from_secs(10));
        limiter.pace().await;
        limiter.pace().await;
        assert_eq!(
            sleeper.sleeps(),
            vec![Duration::from_secs(20)],
            "only the rest of the window, only once"
        );
    }
}
