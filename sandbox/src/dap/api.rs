//! The DAP API routes (E1-E5 and the token endpoint) and the blob route (E6).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, SubsecRound as _, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::encode::{Format, Mode};
use super::errors::{DapError, ErrorKind};
use super::model::{commit_time, epoch_zero};
use super::objects::{QueryKey, amz_date, parse_amz_date};
use super::state::{DapState, Endpoint, Job, JobStatus, lock};
use crate::data::{format_ts, mix};

/// Shared state handle of the handlers.
pub type AppState = Arc<DapState>;

/// The bucket segment of blob URLs.
pub const BUCKET: &str = "dap-sandbox-objects";

fn json_response(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, Json(body)).into_response()
}

/// Injected error, rate limit and bearer check, in that order.
fn guard(state: &DapState, endpoint: Endpoint, headers: &HeaderMap) -> Result<(), DapError> {
    if let Some(error) = state.take_injection(endpoint) {
        return Err(error);
    }
    state.rate_limit(endpoint)?;
    authorize(state, headers)
}

fn authorize(state: &DapState, headers: &HeaderMap) -> Result<(), DapError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-instauth").and_then(|v| v.to_str().ok()))
        .ok_or_else(|| DapError::unauthorized("Missing bearer token: send `Authorization: Bearer <access_token>` obtained from /ids/auth/login."))?;
    let exp = lock(&state.tokens).get(token.trim()).copied();
    match exp {
        None => Err(DapError::unauthorized(
            "The access token is not valid (unknown or revoked); log in again.",
        )),
        Some(exp) if exp <= Utc::now().timestamp() => Err(DapError::unauthorized(
            "The access token has expired; log in again.",
        )),
        Some(_) => Ok(()),
    }
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    grant_type: Option<String>,
}

/// `POST /ids/auth/login`.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    state.stats.record_token_request();
    login_inner(&state, &headers, form).unwrap_or_else(IntoResponse::into_response)
}

fn login_inner(
    state: &DapState,
    headers: &HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, DapError> {
    if let Some(error) = state.take_injection(Endpoint::Token) {
        return Err(error);
    }
    let (id, secret) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        })
        .ok_or_else(|| {
            DapError::unauthorized(
                "Missing client credentials: send HTTP Basic `client_id:client_secret`.",
            )
        })?;
    if id != state.config.client_id || secret != state.config.client_secret {
        return Err(DapError::unauthorized("Invalid client id or secret."));
    }
    let form = form.map(|f| f.0).map_err(|e| {
        DapError::validation(
            format!("Expected a form body `grant_type=client_credentials`: {e}"),
            1,
            1,
        )
    })?;
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(DapError::validation(
            "grant_type must be `client_credentials`.",
            1,
            1,
        ));
    }
    let ttl = state
        .faults
        .token_ttl()
        .map_or(state.config.token_ttl_secs, |d| d.as_secs());
    let now = Utc::now().timestamp();
    let exp = now + i64::try_from(ttl).unwrap_or(i64::MAX / 2);
    let token = make_jwt(&id, now, exp, state.next_token_serial());
    lock(&state.tokens).insert(token.clone(), exp);
    Ok(json_response(
        200,
        json!({
            "access_token": token,
            "expires_in": ttl,
            "scope": "dap principal:sandbox partner:sandbox region:us-east-1",
            "token_type": "Bearer",
        }),
    ))
}

/// A three-part JWT with integer `exp`; the signature is a keyed hash (clients do not verify it).
fn make_jwt(subject: &str, iat: i64, exp: i64, serial: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({"iss": "sandbox-dap", "sub": subject, "iat": iat, "exp": exp, "jti": serial.to_string()});
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let digest = format!("{header}.{payload}")
        .bytes()
        .fold(0xD1CE_u64, |h, b| mix(h ^ u64::from(b)));
    let signature = URL_SAFE_NO_PAD.encode(
        [
            mix(digest),
            mix(digest ^ 1),
            mix(digest ^ 2),
            mix(digest ^ 3),
        ]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect::<Vec<u8>>(),
    );
    format!("{header}.{payload}.{signature}")
}

/// `GET /dap/query/{namespace}/table`.
pub async fn tables(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = guard(&state, Endpoint::Tables, &headers).and_then(|()| {
        let tables = state.tables.read().unwrap_or_else(|p| p.into_inner());
        let names: Vec<&str> = tables
            .keys()
            .filter(|(ns, _)| *ns == namespace)
            .map(|(_, t)| t.as_str())
            .collect();
        if names.is_empty() {
            return Err(DapError::not_found("namespace", &namespace));
        }
        Ok(json_response(200, json!({"tables": names})))
    });
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /dap/query/{namespace}/table/{table}/schema`.
pub async fn schema(
    State(state): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    guard(&state, Endpoint::Schema, &headers)
        .and_then(|()| find_table(&state, &namespace, &table))
        .map(|t| json_response(200, t.versioned_schema()))
        .unwrap_or_else(IntoResponse::into_response)
}

fn find_table(
    state: &DapState,
    namespace: &str,
    table: &str,
) -> Result<super::model::TableVersion, DapError> {
    if !state.has_namespace(namespace) {
        return Err(DapError::not_found("namespace", namespace));
    }
    state
        .table(namespace, table)
        .ok_or_else(|| DapError::not_found("table", table))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    format: Format,
    #[serde(default)]
    mode: Option<Mode>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>, DapError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            DapError::validation(
                format!("`{field}` must be an RFC 3339 date-time with a zone (e.g. 2024-01-01T00:00:00Z): {e}"),
                1,
                1,
            )
        })
}

/// `POST /dap/query/{namespace}/table/{table}/data`.
pub async fn query(
    State(state): State<AppState>,
    Path((namespace, table)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match create_job(&state, &namespace, &table, &headers, &body) {
        Ok((status, doc)) => json_response(status, doc),
        Err(error) => error.into_response(),
    }
}

fn create_job(
    state: &Arc<DapState>,
    namespace: &str,
    table_name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(u16, Value), DapError> {
    guard(state, Endpoint::Query, headers)?;
    let table = find_table(state, namespace, table_name)?;
    let query: QueryBody = serde_json::from_slice(body)
        .map_err(|e| DapError::validation(format!("Invalid query: {e}"), e.line(), e.column()))?;
    let now_commit = commit_time(table.epoch);
    let window = match (&query.since, &query.until) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(DapError::validation(
                "`until` needs `since` (an incremental query).",
                1,
                1,
            ));
        }
        (Some(since), until) => {
            let since = parse_time("since", since)?;
            let until = match until {
                Some(u) => parse_time("until", u)?.min(now_commit),
                None => now_commit,
            };
            if since < epoch_zero() {
                return Err(DapError::new(
                    ErrorKind::SnapshotRequired,
                    format!(
                        "`since` is before the table's initial snapshot ({}); run a snapshot query first.",
                        format_ts(&epoch_zero())
                    ),
                )
                .with("since", json!(format_ts(&since))));
            }
            if since > until {
                return Err(DapError::new(
                    ErrorKind::OutOfRange,
                    "There is no data in the requested range: `since` is after the latest commit or after `until`.",
                )
                .with("since", json!(format_ts(&since)))
                .with("until", json!(format_ts(&until))));
            }
            Some((since, until))
        }
    };
    let key = QueryKey::new(&table, query.format, query.mode, window);
    // De-duplication: an identical query while its job is alive returns that job.
    let mut jobs = lock(&state.jobs);
    if let Some(id) = lock(&state.dedup).get(&key)
        && let Some(job) = jobs.get(id)
        && !job.expired
        && job.expires_at > Utc::now()
        && job.status() != JobStatus::Failed
    {
        return Ok(job.document());
    }
    let id = uuid::Uuid::new_v4().to_string();
    // Whole seconds: some clients' ISO parsers reject nanosecond fractions.
    let created = Utc::now().trunc_subsecs(0);
    let ttl = i64::try_from(state.config.job_ttl_secs).unwrap_or(86_400);
    let mut failure = None;
    if state
        .fail_next_jobs
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        failure = Some(DapError::new(
            ErrorKind::ProcessingError,
            "Injected job failure (sandbox control API).",
        ));
    }
    let result = if query.format == Format::Parquet {
        failure = Some(DapError::new(
            ErrorKind::ProcessingError,
            "The sandbox does not generate parquet output; use tsv, csv or jsonl.",
        ));
        Arc::new(OnceCell::new_with(Some(Err(
            "parquet is not generated".to_owned()
        ))))
    } else {
        let cell = state.cache.cell(&key);
        let generator = state.clone();
        let gen_key = key.clone();
        tokio::spawn(async move {
            let outcome = generator.cache.generate(gen_key, table).await;
            if let Err(error) = outcome {
                tracing::warn!(%error, "sandbox dap: generating a query result failed");
            }
        });
        cell
    };
    let job = Job {
        id: id.clone(),
        key: key.clone(),
        created,
        expires_at: created + Duration::seconds(ttl),
        polls: 0,
        pacing: *lock(&state.pacing),
        failure,
        result,
        expired: false,
    };
    let doc = job.document();
    jobs.insert(id.clone(), job);
    lock(&state.dedup).insert(key, id);
    Ok(doc)
}

/// `GET /dap/job/{id}`: every call is one poll and may advance the job.
pub async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = guard(&state, Endpoint::Job, &headers).and_then(|()| {
        let mut jobs = lock(&state.jobs);
        let job = jobs
            .get_mut(&id)
            .filter(|j| !j.expired && j.expires_at > Utc::now())
            .ok_or_else(|| DapError::not_found("job", &id))?;
        job.polls = job.polls.saturating_add(1);
        Ok(job.document())
    });
    match result {
        Ok((status, doc)) => json_response(status, doc),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectRef {
    id: String,
}

/// `POST /dap/object/url`: one pre-signed URL per requested object.
pub async fn object_urls(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = guard(&state, Endpoint::Url, &headers).and_then(|()| {
        let refs: Vec<ObjectRef> = serde_json::from_slice(&body).map_err(|e| {
            DapError::validation(
                format!("Expected a JSON array of {{\"id\": ...}} objects: {e}"),
                e.line(),
                e.column(),
            )
        })?;
        if refs.is_empty() {
            return Err(DapError::validation("The list of objects is empty.", 1, 1));
        }
        let mut urls = serde_json::Map::new();
        for r in refs {
            let url = presign(&state, &r.id)?;
            urls.insert(r.id, json!({"url": url}));
        }
        Ok(json_response(200, json!({"urls": urls})))
    });
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The file of a live, complete job's object, or None.
pub fn object_file(state: &DapState, object_id: &str) -> Option<super::objects::ObjectFile> {
    let (job_id, name) = object_id.split_once('/')?;
    let jobs = lock(&state.jobs);
    let job = jobs.get(job_id)?;
    if job.expired || job.expires_at <= Utc::now() || job.status() != JobStatus::Complete {
        return None;
    }
    match job.result.get() {
        Some(Ok(files)) => files.iter().find(|f| f.name == name).cloned(),
        _ => None,
    }
}

fn presign(state: &DapState, object_id: &str) -> Result<String, DapError> {
    if object_file(state, object_id).is_none() {
        return Err(DapError::not_found("object", object_id));
    }
    let base = state.blob_base.get().map_or("", String::as_str);
    let path = format!("/{BUCKET}/{object_id}");
    let date = amz_date(&Utc::now());
    let expires = state
        .faults
        .url_ttl()
        .map_or(state.config.url_ttl_secs, |d| d.as_secs());
    let generation = state.url_generation.load(Ordering::SeqCst);
    let signature = state.signer.sign(&path, &date, expires, generation);
    Ok(format!(
        "{base}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}"
    ))
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

/// `GET /{bucket}/{job}/{file}` on the blob listener (E6): no auth, signature and expiry checked,
/// raw gzip bytes with `Content-Length` and no `Content-Encoding`.
pub async fn blob(
    State(state): State<AppState>,
    Path((bucket, job_id, file)): Path<(String, String, String)>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    state.stats.record_blob_request(&headers);
    if headers.contains_key(header::AUTHORIZATION) {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        );
    }
    let path = format!("/{bucket}/{job_id}/{file}");
    let (Some(date), Some(expires), Some(signature)) = (
        params.get("X-Amz-Date"),
        params
            .get("X-Amz-Expires")
            .and_then(|e| e.parse::<u64>().ok()),
        params.get("X-Amz-Signature"),
    ) else {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the X-Amz-Date, X-Amz-Expires and X-Amz-Signature parameters",
        );
    };
    let current = state.url_generation.load(Ordering::SeqCst);
    let matched = (0..=current)
        .rev()
        .find(|g| state.signer.sign(&path, date, expires, *g) == *signature);
    let Some(generation) = matched else {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    };
    let issued = parse_amz_date(date);
    let expired = generation < current
        || issued.is_none_or(|t| {
            Utc::now() >= t + Duration::seconds(i64::try_from(expires).unwrap_or(0))
        });
    if expired || bucket != BUCKET {
        return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    let Some(object) = object_file(&state, &format!("{job_id}/{file}")) else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    let file = match tokio::fs::File::open(&object.path).await {
        Ok(f) => f,
        Err(error) => {
            tracing::warn!(%error, "sandbox dap: cached object is unreadable");
            return s3_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "We encountered an internal error. Please try again.",
            );
        }
    };
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 16);
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(object.len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("binary/octet-stream"),
    );
    response
}
