//! Operation routes: `/{sa}/operations`, the older preprocess/populate/release shortcuts, and
//! `/{sa}/operations/state/{id}`.

use super::auth::{Refusal, guard, message};
use super::operation::{KNOWN_OPERATIONS, OpStatus, Operation};
use super::state::Toucan;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Query parameters the small-app routes take.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StageQuery {
    pub stage: Option<String>,
    pub validation: Option<String>,
}

/// Body of operation requests; every field optional, unknown fields ignored.
#[derive(Debug, Default, Deserialize)]
struct OpsBody {
    operations: Option<Vec<String>>,
    origin: Option<String>,
    output_domains: Option<Vec<String>>,
    input_domains: Option<Vec<String>>,
    function_names: Option<Vec<String>>,
    functions: Option<Vec<String>>,
}

fn parse_body(body: &Bytes) -> Result<OpsBody, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(OpsBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Refusal::Message(StatusCode::BAD_REQUEST, format!("Invalid JSON body: {e}")))
}

/// Validates and registers an operation; `names` overrides the body's `operations`.
fn start(
    state: &Toucan,
    headers: &HeaderMap,
    sa: &str,
    q: &StageQuery,
    body: &Bytes,
    names: Option<Vec<String>>,
) -> Result<Response, Refusal> {
    let stage = guard(state, headers, sa, q.stage.as_deref())?;
    let body = parse_body(body)?;
    let operations = names.or(body.operations).unwrap_or_default();
    if operations.is_empty() {
        return Err(Refusal::Message(
            StatusCode::BAD_REQUEST,
            "'operations' must be a non-empty list".into(),
        ));
    }
    if let Some(unknown) = operations
        .iter()
        .find(|o| !KNOWN_OPERATIONS.contains(&o.as_str()))
    {
        return Err(Refusal::Message(
            StatusCode::BAD_REQUEST,
            format!(
                "Unknown operation: {unknown} (known: {})",
                KNOWN_OPERATIONS.join(", ")
            ),
        ));
    }
    let op = Operation {
        id: String::new(),
        operations,
        stage,
        origin: body.origin,
        input_domains: body.input_domains,
        output_domains: body.output_domains,
        function_names: body.function_names.or(body.functions),
        polls: 0,
        status: OpStatus::Pending,
        fail: None,
    };
    let id = state.create_operation(op);
    Ok(Json(json!({"operation_id": id})).into_response())
}

fn respond(r: Result<Response, Refusal>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn operations(
    State(state): State<Arc<Toucan>>,
    Path(sa): Path<String>,
    Query(q): Query<StageQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(start(&state, &headers, &sa, &q, &body, None))
}

pub(crate) async fn preprocess(
    State(state): State<Arc<Toucan>>,
    Path(sa): Path<String>,
    Query(q): Query<StageQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(start(
        &state,
        &headers,
        &sa,
        &q,
        &body,
        Some(vec!["preprocess_data_sources".into()]),
    ))
}

/// `/{sa}/populate?stage=staging[&release]`: the populate steps, plus `release` when asked.
pub(crate) async fn populate(
    State(state): State<Arc<Toucan>>,
    Path(sa): Path<String>,
    Query(q): Query<StageQuery>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let release = raw.unwrap_or_default().split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k == "release" && !v.eq_ignore_ascii_case("false")
    });
    let mut names: Vec<String> = [
        "populate_basemaps",
        "populate_reports",
        "populate_dashboards",
    ]
    .map(String::from)
    .into();
    if release {
        names.push("release".into());
    }
    respond(start(&state, &headers, &sa, &q, &body, Some(names)))
}

pub(crate) async fn release(
    State(state): State<Arc<Toucan>>,
    Path(sa): Path<String>,
    Query(q): Query<StageQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(start(
        &state,
        &headers,
        &sa,
        &q,
        &body,
        Some(vec!["release".into()]),
    ))
}

pub(crate) async fn operation_state(
    State(state): State<Arc<Toucan>>,
    Path((sa, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = guard(&state, &headers, &sa, None) {
        return r.into_response();
    }
    let running_polls = state.config.running_polls;
    let mut inner = state.lock();
    match inner.operations.iter_mut().find(|o| o.id == id) {
        Some(op) => Json(json!({"status": op.poll(running_polls)})).into_response(),
        None => message(StatusCode::NOT_FOUND, format!("Operation {id} not found")),
    }
}

/// `GET /`: the backend version, as the sysadmin FAQ describes.
pub(crate) async fn version() -> Response {
    Json(json!({"version": concat!("sandbox-", env!("CARGO_PKG_VERSION"))})).into_response()
}
