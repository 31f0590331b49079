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
    let file = match tokio::fs::File::open(&built.path).await {
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
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(built.size)),
        ],
        body,
    )
        .into_response()
}
