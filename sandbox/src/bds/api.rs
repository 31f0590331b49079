//! The tenant's API routes: legacy `/dataExport/bds*` and newer `/datasets/bds*`.

use super::auth::{self, Denied};
use super::catalog::DATA_SETS;
use super::extracts::Extract;
use super::rows::{fmt_time, mix};
use super::state::{Bds, Charge};
use crate::faults::InjectedError;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

const SCOPE_READ: &str = "datahub:dataexports:read";
const SCOPE_DOWNLOAD: &str = "datahub:dataexports:download";
const SCOPE_DATASETS: &str = "datasets:bds:read";
const DATASETS_PAGE_SIZE: usize = 100;

pub(crate) fn routes(state: Arc<Bds>) -> Router {
    let mut router = Router::new();
    // Generated links use `dataexport`; the docs say `dataExport`. Both route.
    for export in ["dataExport", "dataexport"] {
        let base = format!("/d2l/api/lp/{{ver}}/{export}/bds");
        router = router
            .route(&base, get(list_paged))
            .route(&format!("{base}/list"), get(list_latest))
            .route(&format!("{base}/download/{{plugin}}"), get(download_latest))
            .route(
                &format!("{base}/{{plugin}}/{{identifier}}"),
                get(download_extract),
            );
    }
    router
        .route("/d2l/api/lp/{ver}/datasets/bds", get(schemas))
        .route(
            "/d2l/api/lp/{ver}/datasets/bds/{schema}/extracts",
            get(schema_extracts),
        )
        .route(
            "/d2l/api/lp/{ver}/datasets/bds/{schema}/plugins/{plugin}/extracts",
            get(plugin_extracts),
        )
        .route(
            "/d2l/api/lp/{ver}/datasets/bds/{schema}/plugins/{plugin}/extracts/{extract}",
            get(one_extract),
        )
        .route_layer(from_fn_with_state(state.clone(), rate_limit))
        .with_state(state)
}

/// An error answer: JSON `{"Title","Status","Detail"}` plus optional `Retry-After`.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    detail: String,
    retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }
    fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = json!({"Title": title, "Status": self.status.as_u16(), "Detail": self.detail});
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        r
    }
}

/// A JSON problem response.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    Problem::new(status, detail).into_response()
}

/// Injected faults in the tenant's own error format.
pub(crate) fn render_injected(error: InjectedError) -> Response {
    problem(error.status(), "injected fault")
}

fn denied(d: Denied) -> Problem {
    match d {
        Denied::Unauthenticated(why) => Problem::new(StatusCode::UNAUTHORIZED, why),
        Denied::MissingScope(scope) => Problem::new(
            StatusCode::FORBIDDEN,
            format!("the access token lacks the scope {scope}"),
        ),
    }
}

fn io_error(e: &std::io::Error) -> Problem {
    tracing::error!(error = %e, "sandbox bds: building an extract failed");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the extract file could not be produced",
    )
}

/// Charges the credit bucket; adds the `X-Rate-Limit-*` headers or answers 429.
async fn rate_limit(State(state): State<Arc<Bds>>, request: Request, next: Next) -> Response {
    match state.charge() {
        Charge::Exhausted { retry_after } => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; retry after the indicated number of seconds",
        )
        .retry_after(retry_after)
        .into_response(),
        Charge::Ok {
            remaining,
            reset_secs,
            cost,
        } => {
            let mut r = next.run(request).await;
            let h = r.headers_mut();
            h.insert("X-Rate-Limit-Remaining", HeaderValue::from(remaining));
            h.insert("X-Rate-Limit-Reset", HeaderValue::from(reset_secs));
            h.insert("X-Request-Cost", HeaderValue::from(cost));
            r
        }
    }
}

fn valid_version(v: &str) -> bool {
    let mut parts = v.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// Common prologue: version check and bearer/scope check.
fn guard(state: &Bds, ver: &str, headers: &HeaderMap, scope: &'static str) -> Result<(), Problem> {
    if !valid_version(ver) {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("unknown API version {ver:?}"),
        ));
    }
    auth::check(state, headers, scope).map_err(denied)
}

#[derive(Debug, Deserialize)]
struct Paging {
    page: Option<usize>,
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
}

impl Paging {
    /// (1-based page, page size), both at least 1.
    fn resolve(&self, default_size: usize) -> (usize, usize) {
        (
            self.page.unwrap_or(1).max(1),
            self.page_size.unwrap_or(default_size).clamp(1, 1000),
        )
    }
}

fn page_of<T: Clone>(items: &[T], page: usize, size: usize) -> (Vec<T>, bool) {
    let start = (page - 1).saturating_mul(size);
    let slice: Vec<T> = items.iter().skip(start).take(size).cloned().collect();
    (slice, start.saturating_add(size) < items.len())
}

fn legacy_link(state: &Bds, ver: &str, e: &Extract) -> String {
    format!(
        "{}/d2l/api/lp/{ver}/dataexport/bds/{}/{}",
        state.urls.api(),
        e.plugin(),
        e.identifier()
    )
}

async fn report_info(
    state: &Bds,
    ver: &str,
    e: &Extract,
    previous: Option<Vec<Value>>,
) -> Result<Value, Problem> {
    let size = state.file(e).await.map_err(|err| io_error(&err))?.size;
    Ok(json!({
        "PreviousDataSets": previous,
        "PluginId": e.plugin(),
        "Name": e.def().name,
        "Description": e.def().description,
        "FullDataSet": e.full,
        "CreatedDate": fmt_time(e.created),
        "DownloadLink": legacy_link(state, ver, e),
        "DownloadSize": size,
        "Version": state.config.version,
        "QueuedForProcessingDate": fmt_time(e.queued),
        "CurrentlyAvailable": true,
    }))
}

/// Every plugin id in listing order, with its data set.
fn plugins() -> Vec<(usize, bool)> {
    (0..DATA_SETS.len())
        .flat_map(|i| [(i, true), (i, false)])
        .collect()
}

fn plugin_id(dataset: usize, full: bool) -> &'static str {
    let d = &DATA_SETS[dataset];
    if full { d.full_plugin } else { d.diff_plugin }
}

/// Available extracts of one plugin, newest first.
fn history(state: &Bds, plugin: &str) -> Vec<Extract> {
    let inner = state.lock();
    let mut v: Vec<Extract> = inner
        .timeline
        .available()
        .filter(|e| e.plugin().eq_ignore_ascii_case(plugin))
        .cloned()
        .collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.queued));
    v
}

async fn plugin_entry(
    state: &Bds,
    ver: &str,
    dataset: usize,
    full: bool,
) -> Result<Value, Problem> {
    let plugin = plugin_id(dataset, full);
    let extracts = history(state, plugin);
    let Some((latest, older)) = extracts.split_first() else {
        let d = &DATA_SETS[dataset];
        return Ok(json!({
            "PreviousDataSets": null, "PluginId": plugin, "Name": d.name, "Description": d.description,
            "FullDataSet": full, "CreatedDate": null, "DownloadLink": null, "DownloadSize": null,
            "Version": null, "QueuedForProcessingDate": null, "CurrentlyAvailable": false,
        }));
    };
    let mut previous = Vec::with_capacity(older.len());
    for e in older {
        previous.push(report_info(state, ver, e, None).await?);
    }
    report_info(state, ver, latest, Some(previous)).await
}

async fn list_paged(
    State(state): State<Arc<Bds>>,
    Path(ver): Path<String>,
    Query(paging): Query<Paging>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    guard(&state, &ver, &headers, SCOPE_READ)?;
    let (page, size) = paging.resolve(state.config.page_size);
    let (slice, more) = page_of(&plugins(), page, size);
    let mut items = Vec::with_capacity(slice.len());
    for (dataset, full) in slice {
        items.push(plugin_entry(&state, &ver, dataset, full).await?);
    }
    let link = |p: usize| {
        format!(
            "{}/d2l/api/lp/{ver}/dataexport/bds?page={p}&pageSize={size}",
            state.urls.api()
        )
    };
    Ok(axum::Json(json!({
        "NextPageUrl": more.then(|| link(page + 1)),
        "PrevPageUrl": (page > 1).then(|| link(page - 1)),
        "BrightspaceDataSets": items,
    }))
    .into_response())
}

async fn list_latest(
    State(state): State<Arc<Bds>>,
    Path(ver): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    guard(&state, &ver, &headers, SCOPE_READ)?;
    let mut items = Vec::new();
    for (dataset, full) in plugins() {
        let plugin = plugin_id(dataset, full);
        let latest = history(&state, plugin).into_iter().next();
        let size = match &latest {
            Some(e) => Some(state.file(e).await.map_err(|err| io_error(&err))?.size),
            None => None,
        };
        let d = &DATA_SETS[dataset];
        items.push(json!({
            "PluginId": plugin,
            "Name": d.name,
            "Description": d.description,
            "CreatedDate": latest.as_ref().map(|e| fmt_time(e.created)),
            "DownloadLink": latest.as_ref().map(|_| format!("{}/d2l/api/lp/{ver}/dataexport/bds/download/{plugin}", state.urls.api())),
            "DownloadSize": size,
        }));
    }
    Ok(axum::Json(Value::Array(items)).into_response())
}

/// 302 to a pre-signed blob URL for `e`, or the download-route errors.
async fn redirect_to_blob(state: &Bds, e: Option<Extract>) -> Result<Response, Problem> {
    if let Some(retry_after) = state.take_quota_403() {
        let p = Problem::new(
            StatusCode::FORBIDDEN,
            "download quota exceeded; retry after the indicated number of seconds",
        );
        return Err(p.retry_after(retry_after));
    }
    let e = e.filter(|e| !e.expired).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "no such extract (it may have expired)",
        )
    })?;
    let built = state.file(&e).await.map_err(|err| io_error(&err))?;
    let file = built
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("extract.zip");
    let path = format!("/blobs/{}/{}/{file}", e.plugin(), e.identifier());
    let ttl = state
        .faults
        .url_ttl()
        .map_or(state.config.url_ttl_secs, |d| d.as_secs());
    let issued = state.now();
    let expires = issued
        .timestamp()
        .saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX / 2));
    let url = format!(
        "{}{path}?X-Amz-Algorithm=SANDBOX-HMAC&X-Amz-Date={}&X-Amz-Expires={ttl}&X-Amz-Signature={}",
        state.urls.blob(),
        issued.format("%Y%m%dT%H%M%SZ"),
        state.sign(&path, expires)
    );
    let location = HeaderValue::from_str(&url).map_err(|_| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not build the download URL",
        )
    })?;
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

async fn download_latest(
    State(state): State<Arc<Bds>>,
    Path((ver, plugin)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    guard(&state, &ver, &headers, SCOPE_DOWNLOAD)?;
    let latest = history(&state, &plugin).into_iter().next();
    redirect_to_blob(&state, latest).await
}

async fn download_extract(
    State(state): State<Arc<Bds>>,
    Path((ver, plugin, identifier)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    guard(&state, &ver, &headers, SCOPE_DOWNLOAD)?;
    let found = identifier
        .parse::<i64>()
        .ok()
        .and_then(|id| state.lock().timeline.find(&plugin, id).cloned());
    redirect_to_blob(&state, found).await
}

fn extracts_link(state: &Bds, ver: &str, schema: &str, plugin: Option<&str>) -> String {
    let api = state.urls.api();
    match plugin {
        Some(p) => format!("{api}/d2l/api/lp/{ver}/datasets/bds/{schema}/plugins/{p}/extracts"),
        None => format!("{api}/d2l/api/lp/{ver}/datasets/bds/{schema}/extracts"),
    }
}

fn object_page(items: &[Value], paging: &Paging, next_base: &str) -> Result<Response, Problem> {
    let (page, size) = paging.resolve(DATASETS_PAGE_SIZE);
    let (objects, more) = page_of(items, page, size);
    let next = more.then(|| format!("{next_base}?page={}&pageSize={size}", page + 1));
    Ok(axum::Json(json!({"Objects": objects, "Next": next})).into_response())
}

async fn schemas(
    State(state): State<Arc<Bds>>,
    Path(ver): Path<String>,
    Query(paging): Query<Paging>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    guard(&state, &ver, &headers, SCOPE_DATASETS)?;
    let plugin = |d: &super::catalog::DataSetDef, p: &str| json!({"PluginId": p, "Name": d.name, "Description": d.description, "ExtractsLink": extracts_link(&state, &ver, d.schema_id, Some(p))});
    let items: Vec<Value> = DATA_SETS
        .iter()
        .map(|d| {
            json!({
                "SchemaId": d.schema_id,
                "Full": plugin(d, d.full_plugin),
                "Differential": plugin(d, d.diff_plugin),
                "ExtractsLink": extracts_link(&state, &ver, d.schema_id, None),
            })
        })
        .collect();
    object_page(
        &items,
        &paging,
        &format!("{}/d2l/api/lp/{ver}/datasets/bds", state.urls.api()),
    )
}

async fn extract_record(state: &Bds, ver: &str, e: &Extract) -> Result<Value, Problem> {
    let size = state.file(e).await.map_err(|err| io_error(&err))?.size;
    Ok(json!({
        "SchemaId": e.def().schema_id,
        "PluginId": e.plugin(),
        "BdsType": e.bds_type(),
        "CreatedDate": fmt_time(e.created),
        "DownloadLink": legacy_link(state, ver, e),
        "DownloadSize": size,
        "QueuedForProcessingDate": fmt_time(e.queued),
        "Version": state.config.version,
    }))
}

/// Available extracts of a schema (optionally one plugin), deliberately not in date order.
async fn extract_list(
    state: &Bds,
    ver: &str,
    schema: &str,
    plugin: Option<&str>,
    paging: &Paging,
) -> Result<Response, Problem> {
    let Some((_, def)) =
        Bds::data_set(schema).filter(|(_, d)| d.schema_id.eq_ignore_ascii_case(schema))
    else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "unknown schema id"));
    };
    if plugin.is_some_and(|p| {
        !p.eq_ignore_ascii_case(def.full_plugin) && !p.eq_ignore_ascii_case(def.diff_plugin)
    }) {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown plugin id for this schema",
        ));
    }
    let mut extracts: Vec<Extract> = {
        let inner = state.lock();
        inner
            .timeline
            .available()
            .filter(|e| {
                e.def().kind == def.kind
                    && plugin.is_none_or(|p| e.plugin().eq_ignore_ascii_case(p))
            })
            .cloned()
            .collect()
    };
    extracts.sort_by_key(|e| mix(e.identifier() as u64, e.dataset as u64, u64::from(e.full)));
    let mut items = Vec::with_capacity(extracts.len());
    for e in &extracts {
        items.push(extract_record(state, ver, e).await?);
    }
    object_page(
        &items,
        paging,
        &extracts_link(state, ver, def.schema_id, plugin),
    )
}

async fn schema_extracts(
    State(state): State<Arc<Bds>>,
    Path((ver, schema)): Path<(String, String)>,
    Query(paging): Query<Paging>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    guard(&state, &ver, &headers, SCOPE_DATASETS)?;
    extract_list(&state, &ver, &schema, None, &paging).await
}

async fn plugin_extracts(
    State(state): State<Arc<Bds>>,
    Path((ver, schema, plugin)): Path<(String, String, String)>,
    Query(paging): Query<Paging>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    guard(&state, &ver, &headers, SCOPE_DATASETS)?;
    extract_list(&state, &ver, &schema, Some(&plugin), &paging).await
}

async fn one_extract(
    State(state): State<Arc<Bds>>,
    Path((ver, schema, plugin, extract)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    guard(&state, &ver, &headers, SCOPE_DATASETS)?;
    let found = extract
        .parse::<i64>()
        .ok()
        .and_then(|id| state.lock().timeline.find(&plugin, id).cloned());
    let e = found
        .filter(|e| !e.expired && e.def().schema_id.eq_ignore_ascii_case(&schema))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "no such extract (it may have expired)",
            )
        })?;
    Ok(axum::Json(extract_record(&state, &ver, &e).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_pages() {
        assert!(
            valid_version("1.43")
                && !valid_version("1")
                && !valid_version("x.1")
                && !valid_version("1.2.3")
        );
        let items: Vec<u32> = (0..8).collect();
        assert_eq!(page_of(&items, 1, 5), (vec![0, 1, 2, 3, 4], true));
        assert_eq!(page_of(&items, 2, 5), (vec![5, 6, 7], false));
        assert_eq!(page_of(&items, 3, 5), (vec![], false));
    }
}
