//! `/__sandbox/ld/*`: force the next jobs' fate, list jobs and imports, fetch an upload.

use super::auth::oauth_error;
use super::job::{Fate, Job, JobKind};
use super::state::Ld;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

pub(crate) fn routes(state: Arc<Ld>) -> Router {
    Router::new()
        .route("/__sandbox/ld/next-job", post(next_job))
        .route("/__sandbox/ld/jobs", get(jobs))
        .route("/__sandbox/ld/imports", get(imports))
        .route("/__sandbox/ld/imports/{job_id}/file", get(import_file))
        .route("/__sandbox/ld/expire-tokens", post(expire_tokens))
        .with_state(state)
}

/// Body of `POST /__sandbox/ld/next-job`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextJob {
    /// `"fail"` or `"reject"`.
    fate: String,
    reason: Option<String>,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

async fn next_job(State(state): State<Arc<Ld>>, body: Bytes) -> Response {
    let n: NextJob = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("bad control body: {e}"),
            );
        }
    };
    let fate = match n.fate.as_str() {
        "fail" => Fate::Fail(
            n.reason
                .unwrap_or_else(|| "Processing failed: injected by the sandbox".into()),
        ),
        "reject" => Fate::Reject(
            n.reason
                .unwrap_or_else(|| "The job was rejected: injected by the sandbox".into()),
        ),
        other => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("fate must be \"fail\" or \"reject\", not {other:?}"),
            );
        }
    };
    let mut inner = state.lock();
    inner.forced.extend(std::iter::repeat_n(fate, n.count));
    Json(json!({"pending": inner.forced.len()})).into_response()
}

use axum::Json;

/// One job as the control API shows it: the wire status plus the sandbox's own view.
#[derive(Debug, Serialize)]
struct JobView<'a> {
    #[serde(flatten)]
    job: &'a Job,
    records_total: u64,
}

async fn jobs(State(state): State<Arc<Ld>>) -> Response {
    let inner = state.lock();
    let views: Vec<JobView<'_>> = inner
        .jobs
        .iter()
        .map(|job| JobView {
            job,
            records_total: job.records_total,
        })
        .collect();
    Json(json!(views)).into_response()
}

async fn imports(State(state): State<Arc<Ld>>) -> Response {
    let inner = state.lock();
    let list: Vec<serde_json::Value> = inner
        .jobs
        .iter()
        .filter_map(|j| match &j.kind {
            JobKind::Import { bytes, sha256, merge, header_row, template, file_name, .. } => Some(json!({
                "jobId": j.id, "jobName": j.name, "itemType": j.item_type, "contentType": j.content_type,
                "status": j.status, "records": j.records_total, "bytes": bytes, "sha256": sha256,
                "merge": merge, "headerRow": header_row, "template": template, "fileName": file_name,
            })),
            JobKind::Export { .. } => None,
        })
        .collect();
    Json(json!(list)).into_response()
}

async fn import_file(State(state): State<Arc<Ld>>, Path(job_id): Path<String>) -> Response {
    let path = state
        .lock()
        .jobs
        .iter()
        .find(|j| j.id == job_id)
        .and_then(|j| match &j.kind {
            JobKind::Import { path, .. } => path.clone(),
            JobKind::Export { .. } => None,
        });
    let Some(path) = path else {
        return oauth_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no import job {job_id}"),
        );
    };
    match tokio::fs::File::open(&path).await {
        Ok(file) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            )],
            Body::from_stream(tokio_util::io::ReaderStream::new(file)),
        )
            .into_response(),
        Err(e) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("cannot read the stored upload: {e}"),
        ),
    }
}

async fn expire_tokens(State(state): State<Arc<Ld>>) -> Response {
    let mut inner = state.lock();
    let n = inner.tokens.len();
    inner.tokens.clear();
    Json(json!({"expired": n})).into_response()
}
