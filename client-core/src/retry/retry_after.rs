//! `Retry-After`: delta-seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

use reqwest::header::{DATE, HeaderMap, RETRY_AFTER};

/// The delay a response's `Retry-After` header asks for.
///
/// An HTTP-date is measured from the response's own `Date` header when it has
/// one (so client clock skew does not matter), else from `now`. A date in the
/// past means "retry now" (zero). Unparseable values are ignored.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    let reference = headers
        .get(DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or(now);
    parse_retry_after_value(value, reference)
}

/// Parses one `Retry-After` value relative to `now`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use client_core::retry::parse_retry_after_value;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// assert_eq!(parse_retry_after_value("2", now), Some(Duration::from_secs(2)));
/// let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
/// assert_eq!(parse_retry_after_value(&later, now), Some(Duration::from_secs(90)));
/// assert_eq!(parse_retry_after_value("soon", now), None);
/// ```
pub fn parse_retry_after_value(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn http_date_is_measured_from_the_date_header() {
        let mut h = HeaderMap::new();
        h.insert(
            DATE,
            HeaderValue::from_str(&httpdate::fmt_http_date(at(1_000_000))).unwrap(),
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(at(1_000_007))).unwrap(),
        );
        // our own clock is far off; the server's Date wins
        assert_eq!(parse_retry_after(&h, at(5)), Some(Duration::from_secs(7)));
    }

    #[test]
    fn past_dates_and_garbage() {
        assert_eq!(
            parse_retry_after_value(&httpdate::fmt_http_date(at(10)), at(20)),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after_value("-3", at(0)), None);
        assert_eq!(
            parse_retry_after_value(" 12 ", at(0)),
            Some(Duration::from_secs(12))
        );
        assert_eq!(parse_retry_after(&HeaderMap::new(), at(0)), None);
    }
}
