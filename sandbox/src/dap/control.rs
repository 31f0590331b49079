//! `/__sandbox/dap/*`: mutate tables, queue errors, pace jobs, expire tokens/URLs/jobs, set rate
//! limits, and stream the expected content of a table.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::api::AppState;
use super::encode::{Format, Mode};
use super::errors::{DapError, ErrorKind};
use super::model::{Mutation, TableVersion, commit_time};
use super::objects::QueryKey;
use super::state::{Injection, JobPacing, RateLimits, lock};
use crate::data::format_ts;

/// The control routes of the DAP service.
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/__sandbox/dap/state", get(describe))
        .route(
            "/__sandbox/dap/tables/{namespace}/{table}/mutate",
            post(mutate),
        )
        .route(
            "/__sandbox/dap/tables/{namespace}/{table}/columns",
            post(add_column),
        )
        .route(
            "/__sandbox/dap/tables/{namespace}/{table}/enum-values",
            post(add_enum_value),
        )
        .route("/__sandbox/dap/expected/{namespace}/{table}", get(expected))
        .route("/__sandbox/dap/warm/{namespace}/{table}", post(warm))
        .route(
            "/__sandbox/dap/errors",
            post(inject).delete(clear_injections),
        )
        .route("/__sandbox/dap/fail-jobs", post(fail_jobs))
        .route("/__sandbox/dap/pacing", post(set_pacing))
        .route("/__sandbox/dap/rate-limits", post(set_limits))
        .route("/__sandbox/dap/expire-tokens", post(expire_tokens))
        .route("/__sandbox/dap/expire-urls", post(expire_urls))
        .route("/__sandbox/dap/expire-jobs", post(expire_jobs))
        .with_state(state)
}

fn table_info(t: &TableVersion) -> Value {
    json!({
        "namespace": t.namespace,
        "table": t.name,
        "rows": t.live_rows(),
        "schema_version": t.schema_version,
        "epoch": t.epoch,
        "at": format_ts(&commit_time(t.epoch)),
    })
}

async fn describe(State(state): State<AppState>) -> Json<Value> {
    let tables: Vec<Value> = state
        .tables
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(table_info)
        .collect();
    Json(json!({
        "tables": tables,
        "jobs": lock(&state.jobs).len(),
        "pacing": *lock(&state.pacing),
        "rate_limits": *lock(&state.limits),
    }))
}

/// Parses an optional JSON body (empty = default), answering 400 on bad JSON.
fn optional_body<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, DapError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        DapError::validation(format!("Invalid control body: {e}"), e.line(), e.column())
    })
}

async fn mutate(
    State(state): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    optional_body::<Mutation>(&body)
        .and_then(|m| state.update_table(&namespace, &table, |t| Ok(t.mutate(m))))
        .map(|t| Json(table_info(&t)).into_response())
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewColumn {
    name: String,
}

fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

async fn add_column(
    State(state): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    Json(column): Json<NewColumn>,
) -> Response {
    state
        .update_table(&namespace, &table, |t| {
            if !valid_identifier(&column.name) || t.has_column(&column.name) {
                return Err(DapError::validation(
                    format!(
                        "column name `{}` is taken or not a lower-case identifier",
                        column.name
                    ),
                    1,
                    1,
                ));
            }
            Ok(t.add_column(&column.name))
        })
        .map(|t| Json(table_info(&t)).into_response())
        .unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEnumValue {
    value: String,
}

async fn add_enum_value(
    State(state): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    Json(new): Json<NewEnumValue>,
) -> Response {
    state
        .update_table(&namespace, &table, |t| {
            if !valid_identifier(&new.value) || t.has_enum_value(&new.value) {
                return Err(DapError::validation(
                    format!(
                        "enum value `{}` exists or is not a lower-case identifier",
                        new.value
                    ),
                    1,
                    1,
                ));
            }
            Ok(t.add_enum_value(&new.value))
        })
        .map(|t| Json(table_info(&t)).into_response())
        .unwrap_or_else(IntoResponse::into_response)
}

/// Streams `[{"id":..,"<col>":..}, ...]`: every live row, ordered by id, NULLs as `null`.
async fn expected(
    State(state): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
) -> Response {
    let Some(table) = state.table(&namespace, &table) else {
        return DapError::not_found("table", &table).into_response();
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.push(b'[');
        let mut first = true;
        for id in 1..table.next_id {
            let Some(row) = table.row_state(id).filter(|s| !s.deleted) else {
                continue;
            };
            let mut object = Map::new();
            object.insert("id".into(), json!(id));
            for (c, cell) in table.columns.iter().zip(table.row_values(id, row.epoch)) {
                object.insert(c.name.clone(), cell.to_json());
            }
            if !first {
                buf.push(b',');
            }
            first = false;
            let _ = serde_json::to_writer(&mut buf, &Value::Object(object));
            if buf.len() >= 1 << 16
                && tx
                    .blocking_send(Bytes::from(std::mem::take(&mut buf)))
                    .is_err()
            {
                return; // the client went away
            }
        }
        buf.push(b']');
        let _ = tx.blocking_send(Bytes::from(buf));
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn inject(State(state): State<AppState>, Json(injection): Json<Injection>) -> Json<Value> {
    let mut queue = lock(&state.injections);
    queue.push_back(injection);
    Json(json!({"queued": queue.len()}))
}

async fn clear_injections(State(state): State<AppState>) -> Json<Value> {
    lock(&state.injections).clear();
    Json(json!({"queued": 0}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Count {
    count: u64,
}

async fn fail_jobs(State(state): State<AppState>, Json(count): Json<Count>) -> Json<Value> {
    state.fail_next_jobs.store(count.count, Ordering::SeqCst);
    Json(json!({"fail_next_jobs": count.count}))
}

async fn set_pacing(
    State(state): State<AppState>,
    Json(pacing): Json<JobPacing>,
) -> Json<JobPacing> {
    *lock(&state.pacing) = pacing;
    Json(pacing)
}

async fn set_limits(
    State(state): State<AppState>,
    Json(limits): Json<RateLimits>,
) -> Json<RateLimits> {
    *lock(&state.limits) = limits;
    *lock(&state.windows) = Default::default();
    Json(limits)
}

async fn expire_tokens(State(state): State<AppState>) -> Json<Value> {
    let mut tokens = lock(&state.tokens);
    let revoked = tokens.len();
    tokens.clear();
    Json(json!({"revoked": revoked}))
}

async fn expire_urls(State(state): State<AppState>) -> Json<Value> {
    let generation = state.url_generation.fetch_add(1, Ordering::SeqCst) + 1;
    Json(json!({"url_generation": generation}))
}

async fn expire_jobs(State(state): State<AppState>) -> Json<Value> {
    let mut jobs = lock(&state.jobs);
    for job in jobs.values_mut() {
        job.expired = true;
    }
    lock(&state.dedup).clear();
    Json(json!({"expired": jobs.len()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmBody {
    format: Format,
    #[serde(default)]
    mode: Option<Mode>,
}

/// Generates the snapshot files of a table now and answers when they are on disk, so a client
/// benchmark that follows measures the client, not the generation.
async fn warm(
    State(state): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    Json(body): Json<WarmBody>,
) -> Response {
    let Some(table) = state.table(&namespace, &table) else {
        return DapError::not_found("table", &table).into_response();
    };
    if body.format == Format::Parquet {
        return DapError::validation("parquet output is not generated by the sandbox", 1, 1)
            .into_response();
    }
    let key = QueryKey::new(&table, body.format, body.mode, None);
    match state.cache.generate(key, table).await {
        Ok(files) => Json(json!({
            "objects": files.len(),
            "records": files.iter().map(|f| f.records).sum::<u64>(),
            "bytes": files.iter().map(|f| f.len).sum::<u64>(),
        }))
        .into_response(),
        Err(message) => DapError::new(ErrorKind::ProcessingError, message).into_response(),
    }
}
