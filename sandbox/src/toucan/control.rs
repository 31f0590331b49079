//! `/__sandbox/toucan/*`: uploaded files, operations, forced failures, login limiter reset.

use super::auth::message;
use super::operation::FailAt;
use super::state::Toucan;
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(crate) fn routes(state: Arc<Toucan>) -> Router {
    Router::new()
        .route("/__sandbox/toucan/uploads", get(uploads))
        .route(
            "/__sandbox/toucan/uploads/{stage}/{filename}",
            get(upload_bytes),
        )
        .route("/__sandbox/toucan/operations", get(operations))
        .route("/__sandbox/toucan/fail-next", post(fail_next))
        .route(
            "/__sandbox/toucan/reset-login-limit",
            post(reset_login_limit),
        )
        .with_state(state)
}

async fn uploads(State(state): State<Arc<Toucan>>) -> Response {
    Json(json!(state.lock().uploads)).into_response()
}

async fn upload_bytes(
    State(state): State<Arc<Toucan>>,
    Path((stage, filename)): Path<(String, String)>,
) -> Response {
    let path = state
        .lock()
        .uploads
        .iter()
        .find(|u| u.stage == stage && u.filename == filename)
        .map(|u| u.path.clone());
    let Some(path) = path else {
        return message(
            StatusCode::NOT_FOUND,
            format!("no upload {stage}/{filename}"),
        );
    };
    match tokio::fs::File::open(&path).await {
        Ok(f) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            Body::from_stream(tokio_util::io::ReaderStream::new(f)),
        )
            .into_response(),
        Err(e) => message(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the stored upload: {e}"),
        ),
    }
}

async fn operations(State(state): State<Arc<Toucan>>) -> Response {
    Json(json!(state.lock().operations)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailNext {
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    at: FailAt,
}

fn one() -> usize {
    1
}

async fn fail_next(State(state): State<Arc<Toucan>>, body: Bytes) -> Response {
    let f: FailNext = if body.iter().all(u8::is_ascii_whitespace) {
        FailNext {
            count: 1,
            at: FailAt::Running,
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(f) => f,
            Err(e) => return message(StatusCode::BAD_REQUEST, format!("bad control body: {e}")),
        }
    };
    let mut inner = state.lock();
    inner.forced.extend(std::iter::repeat_n(f.at, f.count));
    Json(json!({"pending": inner.forced.len()})).into_response()
}

async fn reset_login_limit(State(state): State<Arc<Toucan>>) -> Response {
    state.lock().login_failures.clear();
    Json(json!({"login_failures": 0})).into_response()
}
