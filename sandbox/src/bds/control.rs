//! `/__sandbox/bds/*`: move time, publish, expire, tune limits, and read the truth.

use super::api::{Problem, problem};
use super::catalog::DATA_SETS;
use super::extracts::Extract;
use super::rows::{KeyState, Row, build_row, column_names, fmt_time, key_of};
use super::state::Bds;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The rows a correctly synced copy of a data set holds at the current generation: every
/// present row (soft-deleted rows included, with `IsDeleted = True`; hard-deleted rows
/// absent), values exactly as the CSV spells them, `None` for NULL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedContent {
    /// Exact data set name.
    pub data_set: String,
    /// Its schema id.
    pub schema_id: String,
    /// The generation described (= number of differentials published).
    pub generation: u32,
    /// Column names in CSV order.
    pub columns: Vec<String>,
    /// Primary-key column names.
    pub primary_key: Vec<String>,
    /// Rows in primary-key generation order, one value per column.
    pub rows: Vec<Row>,
}

impl ExpectedContent {
    /// The rows keyed by their primary-key values (in `primary_key` order).
    pub fn rows_by_key(&self) -> BTreeMap<Vec<String>, Row> {
        let positions: Vec<usize> = self
            .primary_key
            .iter()
            .filter_map(|k| self.columns.iter().position(|c| c == k))
            .collect();
        self.rows
            .iter()
            .map(|r| {
                let key = positions
                    .iter()
                    .map(|i| r.get(*i).cloned().flatten().unwrap_or_default())
                    .collect();
                (key, r.clone())
            })
            .collect()
    }
}

pub(crate) async fn expected(state: Arc<Bds>, name: &str) -> Option<ExpectedContent> {
    let (index, def) = Bds::data_set(name)?;
    let generation = state.lock().timeline.generation();
    let evolution = state.evolution(index);
    let style = state.style(generation);
    let rows = tokio::task::spawn_blocking(move || {
        (0..evolution.key_count(generation))
            .filter_map(|k| {
                let s = evolution.state(k, generation);
                (s != KeyState::Absent).then(|| build_row(def, evolution.salt, k, s, style))
            })
            .collect::<Vec<Row>>()
    })
    .await
    .ok()?;
    debug_assert!(
        rows.len() as u64 <= evolution.key_count(generation)
            && key_of(def, 0).len() == def.primary_key.len()
    );
    Some(ExpectedContent {
        data_set: def.name.to_owned(),
        schema_id: def.schema_id.to_owned(),
        generation,
        columns: column_names(def, style)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        primary_key: def.primary_key.iter().map(|c| (*c).to_owned()).collect(),
        rows,
    })
}

pub(crate) fn routes(state: Arc<Bds>) -> Router {
    Router::new()
        .route("/__sandbox/bds/state", get(show_state))
        .route("/__sandbox/bds/advance", post(advance))
        .route("/__sandbox/bds/publish-full", post(publish_full))
        .route("/__sandbox/bds/expire", post(expire))
        .route("/__sandbox/bds/expected/{data_set}", get(expected_route))
        .route("/__sandbox/bds/limits", post(limits))
        .route("/__sandbox/bds/expire-tokens", post(expire_tokens))
        .route("/__sandbox/bds/refresh-token", post(new_refresh_token))
        .with_state(state)
}

/// Parses an optional JSON body (empty = all defaults).
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, format!("bad control body: {e}")))
}

fn extract_json(e: &Extract) -> serde_json::Value {
    json!({
        "data_set": e.def().name, "plugin_id": e.plugin(), "type": e.bds_type(), "generation": e.generation,
        "identifier": e.identifier(), "queued": fmt_time(e.queued), "created": fmt_time(e.created), "expired": e.expired,
    })
}

async fn show_state(State(state): State<Arc<Bds>>) -> Response {
    let inner = state.lock();
    let t = &inner.timeline;
    let extracts: Vec<_> = t.all().iter().map(extract_json).collect();
    axum::Json(
        json!({"now": fmt_time(t.now()), "generation": t.generation(), "extracts": extracts}),
    )
    .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    days: Option<u32>,
    seconds: Option<i64>,
}

async fn advance(State(state): State<Arc<Bds>>, bytes: Bytes) -> Response {
    let a: Advance = match body(&bytes) {
        Ok(a) => a,
        Err(p) => return p.into_response(),
    };
    let days = a.days.unwrap_or(if a.seconds.is_some() { 0 } else { 1 });
    state.advance(days, a.seconds.unwrap_or(0));
    show_state(State(state)).await
}

async fn publish_full(State(state): State<Arc<Bds>>) -> Response {
    state.publish_full();
    show_state(State(state)).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expire {
    #[serde(default)]
    generations: Vec<u32>,
    keep_last: Option<u32>,
}

async fn expire(State(state): State<Arc<Bds>>, bytes: Bytes) -> Response {
    let e: Expire = match body(&bytes) {
        Ok(e) => e,
        Err(p) => return p.into_response(),
    };
    let mut n = state.expire(&e.generations);
    if let Some(keep) = e.keep_last {
        n += state.lock().timeline.keep_last_differentials(keep);
    }
    axum::Json(json!({"expired": n})).into_response()
}

async fn expected_route(State(state): State<Arc<Bds>>, Path(name): Path<String>) -> Response {
    match expected(state, &name).await {
        Some(c) => axum::Json(c).into_response(),
        None => {
            let known: Vec<&str> = DATA_SETS.iter().map(|d| d.name).collect();
            problem(
                StatusCode::NOT_FOUND,
                &format!("unknown data set {name:?}; known: {known:?}"),
            )
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    credits_per_minute: Option<u64>,
    request_cost: Option<u64>,
    quota_403_next: Option<u64>,
    quota_retry_after_secs: Option<u64>,
}

async fn limits(State(state): State<Arc<Bds>>, bytes: Bytes) -> Response {
    let l: Limits = match body(&bytes) {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    let mut inner = state.lock();
    Bds::reset_bucket(&mut inner, l.credits_per_minute, l.request_cost);
    if let Some(n) = l.quota_403_next {
        inner.quota_403_next = n;
    }
    if let Some(s) = l.quota_retry_after_secs {
        inner.quota_retry_after = s;
    }
    axum::Json(json!({
        "credits_per_minute": inner.bucket.credits, "request_cost": inner.bucket.cost,
        "quota_403_next": inner.quota_403_next, "quota_retry_after_secs": inner.quota_retry_after,
    }))
    .into_response()
}

async fn expire_tokens(State(state): State<Arc<Bds>>) -> Response {
    let mut inner = state.lock();
    let n = inner.access.len();
    inner.access.clear();
    axum::Json(json!({"expired": n})).into_response()
}

async fn new_refresh_token(State(state): State<Arc<Bds>>) -> Response {
    let token = Bds::rotate_refresh_token(&mut state.lock());
    axum::Json(json!({"refresh_token": token})).into_response()
}
