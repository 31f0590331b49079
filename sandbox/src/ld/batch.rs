//! `/ls/api/batch/{import,export,status,cancel}` and the export download route.

use super::auth::{OAuthError, check, oauth_error};
use super::count::{CsvCounter, JsonCounter};
use super::job::{Fate, Job, JobKind, JobStatus};
use super::state::Ld;
use crate::data::RowGen;
use axum::body::Bytes;
use axum::extract::multipart::Field;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::FormRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

const IMPORT_TYPES: &[&str] = &["application/json", "plain/text"];
const EXPORT_TYPES: &[&str] = &["application/json", "text/plain", "plain/text"];
const MAX_TEXT_FIELD: usize = 1 << 20;

fn bad_request(description: impl Into<String>) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn internal(e: &std::io::Error) -> OAuthError {
    tracing::error!(error = %e, "sandbox ld: storing a file failed");
    OAuthError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the server could not store the file",
    )
}

/// `True`/`False` (any case), `1`/`0`; `Err` for anything else.
fn parse_bool(v: &str) -> Result<bool, ()> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(()),
    }
}

/// A received upload: on disk under a temp name, with its counts and digest.
struct Upload {
    tmp: tempfile::NamedTempFile,
    bytes: u64,
    sha256: String,
    json: Result<u64, String>,
    csv: CsvCounter,
    file_name: Option<String>,
}

async fn receive_file(state: &Ld, mut field: Field<'_>) -> Result<Upload, OAuthError> {
    let file_name = field.file_name().map(str::to_owned);
    let tmp = tempfile::NamedTempFile::new_in(state.dir.path()).map_err(|e| internal(&e))?;
    let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(|e| internal(&e))?);
    let (mut bytes, mut hash, mut json, mut csv) = (
        0u64,
        Sha256::new(),
        JsonCounter::default(),
        CsvCounter::default(),
    );
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad_request(format!("the upload broke off: {e}")))?
    {
        bytes += chunk.len() as u64;
        if bytes > state.config.max_upload_bytes {
            let limit = state.config.max_upload_bytes;
            return Err(OAuthError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                format!("files are limited to {limit} bytes"),
            ));
        }
        hash.update(&chunk);
        json.feed(&chunk);
        csv.feed(&chunk);
        out.write_all(&chunk).await.map_err(|e| internal(&e))?;
    }
    out.flush().await.map_err(|e| internal(&e))?;
    out.sync_all().await.map_err(|e| internal(&e))?;
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Upload {
        tmp,
        bytes,
        sha256,
        json: json.finish(),
        csv,
        file_name,
    })
}

async fn text_field(mut field: Field<'_>) -> Result<String, OAuthError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad_request(format!("the request broke off: {e}")))?
    {
        if buf.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(bad_request("text fields are limited to 1 MiB"));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| bad_request("text fields must be UTF-8"))
}

#[derive(Debug, Default)]
struct ImportFields {
    job_name: Option<String>,
    email: Option<String>,
    content_type: Option<String>,
    item_type: Option<String>,
    merge: Option<String>,
    header_row: Option<String>,
    template: Option<String>,
}

fn new_job(
    kind: JobKind,
    name: Option<String>,
    email: Option<String>,
    content_type: Option<String>,
    item_type: Option<String>,
) -> Job {
    Job {
        id: uuid::Uuid::new_v4().to_string(),
        kind,
        name,
        email,
        content_type,
        item_type,
        submitted: chrono::Utc::now(),
        status: JobStatus::Initialized,
        reason: "A new job has been received and is being accepted".into(),
        records_total: 0,
        records_processed: 0,
        run_time_ms: 0,
        processing_polls: 0,
        fate: Fate::Complete,
    }
}

/// Validation first (a bad job is rejected whatever the control API asked), then a forced fate.
fn decide(state: &Ld, problems: Vec<String>) -> Fate {
    if let Some(first) = problems.into_iter().next() {
        return Fate::Reject(first);
    }
    state.lock().forced.pop_front().unwrap_or(Fate::Complete)
}

fn content_type_problem(ct: Option<&str>, allowed: &[&str]) -> Option<String> {
    match ct {
        None => Some(format!("contentType is required (one of {allowed:?})")),
        Some(ct) if !allowed.contains(&ct) => Some(format!(
            "unsupported contentType {ct:?}: use one of {allowed:?}"
        )),
        Some(_) => None,
    }
}

fn reply(state: &Ld, job: &Job) -> Response {
    Json(job.status_json(state.config.numbers_as_strings, None)).into_response()
}

pub(crate) async fn import(
    State(state): State<Arc<Ld>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    if let Err(d) = check(&state, &headers, true) {
        return d.into_response();
    }
    let Ok(mut multipart) = multipart else {
        return bad_request("expected a multipart/form-data body").into_response();
    };
    let mut f = ImportFields::default();
    let mut upload = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return bad_request(format!("malformed multipart body: {e}")).into_response(),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let slot = match name.as_str() {
            "file" => {
                match receive_file(&state, field).await {
                    Ok(u) => upload = Some(u),
                    Err(e) => return e.into_response(),
                }
                continue;
            }
            "jobName" => &mut f.job_name,
            "notificationEmail" => &mut f.email,
            "contentType" => &mut f.content_type,
            "itemType" => &mut f.item_type,
            "merge" => &mut f.merge,
            "headerRow" => &mut f.header_row,
            "template" => &mut f.template,
            // Unknown fields are ignored, like a lenient server would.
            _ => continue,
        };
        match text_field(field).await {
            Ok(v) => *slot = Some(v),
            Err(e) => return e.into_response(),
        }
    }
    let Some(upload) = upload else {
        return bad_request("the multipart part `file` is required").into_response();
    };
    let mut problems = item_and_content_problems(
        f.item_type.as_deref(),
        f.content_type.as_deref(),
        IMPORT_TYPES,
    );
    let merge = f.merge.as_deref().map(parse_bool).transpose();
    problems.extend(
        merge
            .is_err()
            .then(|| "merge must be True or False".to_owned()),
    );
    let header_row = f.header_row.as_deref().map(parse_bool).transpose();
    problems.extend(
        header_row
            .is_err()
            .then(|| "headerRow must be true or false".to_owned()),
    );
    if let Some(t) = &f.template {
        problems.extend(
            serde_json::from_str::<Value>(t)
                .err()
                .map(|e| format!("the template is not valid JSON: {e}")),
        );
    }
    let header_row = header_row.ok().flatten();
    let records = match f.content_type.as_deref() {
        Some("plain/text") => upload.csv.finish(header_row.unwrap_or(false)),
        _ => upload.json.clone(),
    };
    let records = records.unwrap_or_else(|e| {
        problems.push(format!("the file was rejected: {e}"));
        0
    });
    let fate = decide(&state, problems);
    let kind = JobKind::Import {
        path: None,
        bytes: upload.bytes,
        sha256: upload.sha256.clone(),
        merge: merge.ok().flatten(),
        header_row,
        template: f.template,
        file_name: upload.file_name.clone(),
    };
    let mut job = new_job(kind, f.job_name, f.email, f.content_type, f.item_type);
    let path = state.dir.path().join(format!("{}.upload", job.id));
    if let Err(e) = upload.tmp.persist(&path) {
        return internal(&e.error).into_response();
    }
    if let JobKind::Import { path: p, .. } = &mut job.kind {
        *p = Some(path);
    }
    job.records_total = records;
    job.fate = fate;
    let response = reply(&state, &job);
    state.lock().jobs.push(job);
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct ExportForm {
    #[serde(rename = "jobName")]
    job_name: Option<String>,
    #[serde(rename = "notificationEmail")]
    email: Option<String>,
    #[serde(rename = "itemType")]
    item_type: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(rename = "sqlQuery")]
    sql_query: Option<String>,
    filters: Option<String>,
    template: Option<String>,
    #[serde(rename = "rowHeader", alias = "headerRow")]
    row_header: Option<String>,
}

/// `LIMIT n` at the end of a SQL query, if any.
fn sql_limit(sql: &str) -> Option<u64> {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let n = words.len();
    (n >= 2 && words[n - 2].eq_ignore_ascii_case("limit"))
        .then(|| words[n - 1].trim_end_matches(';').parse().ok())
        .flatten()
}

pub(crate) async fn export(
    State(state): State<Arc<Ld>>,
    headers: HeaderMap,
    form: Result<Form<ExportForm>, FormRejection>,
) -> Response {
    if let Err(d) = check(&state, &headers, true) {
        return d.into_response();
    }
    let Ok(Form(f)) = form else {
        return bad_request("expected an application/x-www-form-urlencoded body").into_response();
    };
    let mut problems = item_and_content_problems(
        f.item_type.as_deref(),
        f.content_type.as_deref(),
        EXPORT_TYPES,
    );
    let row_header = f.row_header.as_deref().map(parse_bool).transpose();
    problems.extend(
        row_header
            .is_err()
            .then(|| "rowHeader must be true or false".to_owned()),
    );
    let fate = decide(&state, problems);
    let records = f
        .sql_query
        .as_deref()
        .and_then(sql_limit)
        .unwrap_or(state.config.export_rows)
        .min(state.config.export_rows.max(1) * 100);
    let kind = JobKind::Export {
        sql_query: f.sql_query,
        // `"0"` is the examples' way of saying "no filters".
        filters: f
            .filters
            .filter(|s| !s.trim().is_empty() && s.trim() != "0"),
        row_header: row_header.ok().flatten().unwrap_or(false),
        template: f.template.filter(|t| !t.is_empty()),
        download_token: uuid::Uuid::new_v4().simple().to_string(),
    };
    let mut job = new_job(kind, f.job_name, f.email, f.content_type, f.item_type);
    job.records_total = records;
    job.fate = fate;
    let response = reply(&state, &job);
    state.lock().jobs.push(job);
    response
}

#[derive(Debug, Deserialize)]
pub(crate) struct JobForm {
    #[serde(rename = "jobId")]
    job_id: Option<String>,
}

fn job_id(form: Result<Form<JobForm>, FormRejection>) -> Result<String, OAuthError> {
    form.ok()
        .and_then(|Form(f)| f.job_id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| bad_request("the form field jobId is required"))
}

fn not_found(id: &str) -> Response {
    oauth_error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no batch job with id {id}"),
    )
}

fn download_links(state: &Ld, job: &Job) -> Option<Vec<String>> {
    match &job.kind {
        JobKind::Export { download_token, .. } if job.status == JobStatus::Completed => {
            Some(vec![format!(
                "{}/ls/api/batch/download/{}/{download_token}",
                state.base(),
                job.id
            )])
        }
        _ => None,
    }
}

pub(crate) async fn status(
    State(state): State<Arc<Ld>>,
    headers: HeaderMap,
    form: Result<Form<JobForm>, FormRejection>,
) -> Response {
    if let Err(d) = check(&state, &headers, true) {
        return d.into_response();
    }
    let id = match job_id(form) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let mut inner = state.lock();
    let Some(job) = inner.job_mut(&id) else {
        return not_found(&id);
    };
    job.step(state.config.processing_polls);
    Json(job.status_json(state.config.numbers_as_strings, download_links(&state, job)))
        .into_response()
}

pub(crate) async fn cancel(
    State(state): State<Arc<Ld>>,
    headers: HeaderMap,
    form: Result<Form<JobForm>, FormRejection>,
) -> Response {
    if let Err(d) = check(&state, &headers, true) {
        return d.into_response();
    }
    let id = match job_id(form) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let mut inner = state.lock();
    let Some(job) = inner.job_mut(&id) else {
        return not_found(&id);
    };
    match job.cancel() {
        Ok(()) => Json(job.status_json(state.config.numbers_as_strings, None)).into_response(),
        Err(s) => oauth_error(
            StatusCode::CONFLICT,
            "conflict",
            format!("the job already ended with status {s:?}; nothing to cancel"),
        ),
    }
}

/// Deterministic export rows: JSON objects, or CSV with an optional header row.
fn export_body(seed: u64, item_type: &str, rows: u64, csv: bool, header: bool) -> Vec<u8> {
    let salt = item_type
        .bytes()
        .fold(seed, |h, b| crate::data::mix(h ^ u64::from(b)));
    let item = |i: u64| {
        let g = RowGen::new(salt, i);
        json!({
            "id": format!("{item_type}-{i:06}"),
            "name": g.text(1),
            "amount": g.float(2),
            "active": g.boolean(3),
            "updatedAt": g.timestamp(4).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "notes": g.nullable_text(5),
        })
    };
    if !csv {
        return serde_json::to_vec(&(0..rows).map(item).collect::<Vec<_>>()).unwrap_or_default();
    }
    let columns = ["id", "name", "amount", "active", "updatedAt", "notes"];
    let mut out = Vec::new();
    let mut record = |fields: Vec<Option<String>>| {
        let line: Vec<String> = fields
            .into_iter()
            .map(|f| match f {
                None => String::new(),
                Some(v) if v.is_empty() || v.contains([',', '"', '\n', '\r']) => {
                    format!("\"{}\"", v.replace('"', "\"\""))
                }
                Some(v) => v,
            })
            .collect();
        out.extend_from_slice(line.join(",").as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    if header {
        record(columns.iter().map(|c| Some((*c).to_owned())).collect());
    }
    for i in 0..rows {
        let v = item(i);
        record(
            columns
                .iter()
                .map(|c| match &v[*c] {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect(),
        );
    }
    out
}

/// The checks imports and exports share: an `itemType`, and a `contentType` the route accepts.
fn item_and_content_problems(
    item_type: Option<&str>,
    content_type: Option<&str>,
    allowed: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(
        item_type
            .is_none_or(str::is_empty)
            .then(|| "itemType is required".to_owned()),
    );
    problems.extend(content_type_problem(content_type, allowed));
    problems
}

pub(crate) async fn download(
    State(state): State<Arc<Ld>>,
    Path((id, token)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    // A capability URL like a pre-signed one: count any bearer token sent to it.
    state.stats.record_blob_request(&headers);
    let job = state.lock().jobs.iter().find(|j| j.id == id).cloned();
    let Some(job) = job else {
        return not_found(&id);
    };
    let (
        JobKind::Export {
            download_token,
            row_header,
            ..
        },
        JobStatus::Completed,
    ) = (&job.kind, job.status)
    else {
        return oauth_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this job has no downloadable result",
        );
    };
    if *download_token != token {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "access_denied",
            "invalid download link",
        );
    }
    let csv = job.content_type.as_deref() != Some("application/json");
    let item_type = job.item_type.as_deref().unwrap_or("Item");
    let body = export_body(
        state.config.seed,
        item_type,
        job.records_total,
        csv,
        *row_header,
    );
    let (mime, ext) = if csv {
        ("text/plain; charset=utf-8", "csv")
    } else {
        ("application/json", "json")
    };
    let disposition = format!("attachment; filename=\"export-{id}.{ext}\"");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or(HeaderValue::from_static("attachment")),
            ),
        ],
        Bytes::from(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_limits_and_booleans() {
        assert_eq!(sql_limit("select * from Account limit 7;"), Some(7));
        assert_eq!(sql_limit("select * from Account"), None);
        assert_eq!(parse_bool("False"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn export_bodies_are_deterministic_and_well_formed() {
        let json = export_body(1, "Account", 5, false, false);
        assert_eq!(json, export_body(1, "Account", 5, false, false));
        let parsed: Vec<Value> = serde_json::from_slice(&json).expect("json array");
        assert_eq!(parsed.len(), 5);
        let csv = export_body(1, "Account", 5, true, true);
        let mut counter = CsvCounter::default();
        counter.feed(&csv);
        assert_eq!(counter.finish(true), Ok(5));
        assert!(csv.starts_with(b"id,name,amount,active,updatedAt,notes\r\n"));
    }
}
