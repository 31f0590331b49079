//! When and how long to retry: the [`RetryPolicy`], full-jitter backoff with
//! an injectable [`RandomSource`], `Retry-After` parsing, and the
//! classification of responses and transport failures (with a per-service
//! [`RetryClassifier`] hook).
//!
//! The loop that applies all this lives in [`HttpClient`](crate::http::HttpClient):
//! it rebuilds the request for each attempt, so every attempt carries the
//! current token and a complete body.

mod backoff;
mod classify;
mod policy;
mod retry_after;

pub use backoff::{FixedRandom, RandomSource, SeededRandom, SystemRandom};
pub use classify::{
    ForbiddenWithRetryAfter, ResponseView, RetryClassifier, RetryDecision, is_idempotent_method,
    is_retryable_status, is_retryable_transport,
};
pub use policy::RetryPolicy;
pub use retry_after::{parse_retry_after, parse_retry_after_value};
