//! Which failures are worth another attempt.

use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::Method;
use reqwest::header::HeaderMap;
use url::Url;

use crate::TransportKind;

/// Whether a status is transient by default: 408, 429, 500, 502, 503, 504.
///
/// Everything else, including 501 (Not Implemented will not start working)
/// and the other 4xx, is final unless a [`RetryClassifier`] says otherwise.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether a transport failure may be retried.
///
/// A failed connect never reached the server, so it is always safe. A
/// timeout or an interrupted connection may have reached it, so only
/// idempotent requests are repeated.
pub fn is_retryable_transport(kind: TransportKind, idempotent: bool) -> bool {
    match kind {
        TransportKind::Connect => true,
        TransportKind::Timeout | TransportKind::Interrupted => idempotent,
        _ => false,
    }
}

/// Whether a method is idempotent by definition (GET, HEAD, PUT, DELETE,
/// OPTIONS, TRACE).
pub fn is_idempotent_method(method: &Method) -> bool {
    method.is_idempotent()
}

/// What a classifier sees of an error response.
#[derive(Debug)]
#[non_exhaustive]
pub struct ResponseView<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URL (with query; do not log it, use
    /// [`redact_url`](crate::error::redact_url)).
    pub url: &'a Url,
    /// Whether the request may be repeated safely.
    pub idempotent: bool,
    /// The response status.
    pub status: u16,
    /// The response headers.
    pub headers: &'a HeaderMap,
    /// The first bytes of the body (up to 64 KiB).
    pub body_prefix: &'a [u8],
}

impl ResponseView<'_> {
    /// The response's `Retry-After`, if it has a valid one.
    pub fn retry_after(&self) -> Option<Duration> {
        super::parse_retry_after(self.headers, SystemTime::now())
    }
}

/// A classifier's verdict on an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryDecision {
    /// No opinion: apply the default status rules.
    Default,
    /// Retry (within the policy's budget), waiting at least `after` if given
    /// (capped like `Retry-After`).
    Retry {
        /// The server's requested delay, if any.
        after: Option<Duration>,
    },
    /// Do not retry, whatever the status.
    DoNotRetry,
}

/// A per-service hook that sees each error response (status, headers, start
/// of the body) before the default rules, e.g. to treat D2L's
/// `403 + Retry-After` as a quota signal, or a `429 insufficient_quota` as
/// final.
pub trait RetryClassifier: Send + Sync + fmt::Debug {
    /// Decides about one non-2xx response.
    fn classify(&self, response: &ResponseView<'_>) -> RetryDecision;
}

/// Treats a `403` that carries `Retry-After` as "quota exhausted, wait and
/// retry" (D2L Brightspace's download quota); a `403` without it stays a
/// permission error.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForbiddenWithRetryAfter;

impl RetryClassifier for ForbiddenWithRetryAfter {
    fn classify(&self, response: &ResponseView<'_>) -> RetryDecision {
        if response.status != 403 {
            return RetryDecision::Default;
        }
        match response.retry_after() {
            Some(after) => RetryDecision::Retry { after: Some(after) },
            None => RetryDecision::Default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_matrix() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 409, 422, 501, 505] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn transport_matrix() {
        assert!(is_retryable_transport(TransportKind::Connect, false));
        assert!(is_retryable_transport(TransportKind::Timeout, true));
        assert!(!is_retryable_transport(TransportKind::Timeout, false));
        assert!(is_retryable_transport(TransportKind::Interrupted, true));
        assert!(!is_retryable_transport(TransportKind::Interrupted, false));
        assert!(!is_retryable_transport(TransportKind::Other, true));
    }
}
