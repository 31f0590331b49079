//! The blob-storage listener: pre-signed, expiring extract URLs on another origin.

use super::state::Bds;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub(crate) fn routes(state: Arc<Bds>) -> Router {
    Router::new()
        .route("/blobs/{plugin}/{identifier}/{file}", get(blob))
        .with_state(state)
}

/// An S3-style XML error.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        )],
        body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct Signed {
    #[serde(rename = "X-Amz-Date")]
    date: Option<String>,
    #[serde(rename = "X-Amz-Expires")]
    expires: Option<i64>,
    #[serde(rename = "X-Amz-Signature")]
    signature: Option<String>,
}

async fn blob(
    State(state): State<Arc<Bds>>,
    Path((plugin, identifier, _file)): Path<(String, i64, String)>,
    Query(signed): Query<Signed>,
    request: Request,
) -> Response {
    state.stats.record_blob_request(request.headers());
    if request.headers().contains_key(header::AUTHORIZATION) {
        // What S3 says when a pre-signed URL also carries a bearer token.
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        );
    }
    let issued = signed
        .date
        .as_deref()
        .and_then(|d| NaiveDateTime::parse_from_str(d, "%Y%m%dT%H%M%SZ").ok())
        .map(|d| Utc.from_utc_datetime(&d).timestamp());
    let (Some(issued), Some(ttl), Some(signature)) = (issued, signed.expires, signed.signature)
    else {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the X-Amz-Date, X-Amz-Expires and X-Amz-Signature parameters",
        );
    };
    let expires = issued.saturating_add(ttl);
    if state.sign(request.uri().path(), expires) != signature {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided",
        );
    }
    if state.now().timestamp() >= expires {
        return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    let Some(extract) = state.lock().timeline.find(&plugin, identifier).cloned() else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    let built = match state.file(&extract).await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "sandbox bds: extract file unavailable");
            return s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            );
        }
    };
    // A strong validator so resumed downloads (`Range` + `If-Range`) are safe.
    let etag = format!(
        "\"{}\"",
        state.sign(&built.path.to_string_lossy(), built.size as i64)
    );
    let if_range_ok = request
        .headers()
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes());
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_ok);
    let (start, end, partial) = match range.map(|r| parse_range(r, built.size)) {
        None | Some(RangeAsk::Ignore) => (0, built.size, false),
        Some(RangeAsk::Part(start, end)) => (start, end, true),
        Some(RangeAsk::Unsatisfiable) => {
            let mut r = s3_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", built.size)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let mut file = match tokio::fs::File::open(&built.path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "sandbox bds: cannot open extract file");
            return s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            );
        }
    };
    if start > 0
        && let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await
    {
        tracing::error!(error = %e, "sandbox bds: cannot seek in extract file");
        return s3_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        );
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(end - start),
        64 * 1024,
    ));
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(end - start)),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        ],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if partial {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{}", end - 1, built.size)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Bytes `start..end` (end exclusive).
    Part(u64, u64),
    /// Starts past the end: 416.
    Unsatisfiable,
    /// Not a single `bytes=` range we serve: send the whole file.
    Ignore,
}

fn parse_range(header: &str, size: u64) -> RangeAsk {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(start), Ok(last)) if last >= start => Some((start, last.saturating_add(1).min(size))),
        (Ok(start), Err(_)) if b.is_empty() => Some((start, size)),
        // `bytes=-N`: the last N bytes.
        (Err(_), Ok(n)) if a.is_empty() && n > 0 => Some((size.saturating_sub(n), size)),
        _ => None,
    };
    match parsed {
        Some((start, _)) if start >= size => RangeAsk::Unsatisfiable,
        Some((start, end)) => RangeAsk::Part(start, end),
        None => RangeAsk::Ignore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=10-", 100), RangeAsk::Part(10, 100));
        assert_eq!(parse_range("bytes=10-19", 100), RangeAsk::Part(10, 20));
        assert_eq!(parse_range("bytes=90-200", 100), RangeAsk::Part(90, 100));
        assert_eq!(parse_range("bytes=-5", 100), RangeAsk::Part(95, 100));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Ignore);
        assert_eq!(parse_range("bytes=9-3", 100), RangeAsk::Ignore);
    }
}
