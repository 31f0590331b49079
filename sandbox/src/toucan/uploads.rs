//! `POST /{sa}/data/sources`: data-source upload, streamed to disk and kept for tests.

use super::auth::{Refusal, guard, message};
use super::operation::{OpStatus, Operation};
use super::routes::StageQuery;
use super::state::{Toucan, UploadRecord};
use axum::Json;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

fn bad(text: impl Into<String>) -> Refusal {
    Refusal::Message(StatusCode::BAD_REQUEST, text.into())
}

fn io_failure(e: &std::io::Error) -> Refusal {
    tracing::error!(error = %e, "sandbox toucan: storing an upload failed");
    Refusal::Message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the upload could not be stored".into(),
    )
}

/// The file part, on disk under a temporary name.
struct Received {
    tmp: tempfile::NamedTempFile,
    size: u64,
    sha256: String,
}

async fn receive(state: &Toucan, mut field: Field<'_>) -> Result<Received, Refusal> {
    let tmp = tempfile::NamedTempFile::new_in(state.dir.path()).map_err(|e| io_failure(&e))?;
    let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(|e| io_failure(&e))?);
    let (mut size, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad(format!("the upload broke off: {e}")))?
    {
        size += chunk.len() as u64;
        if size > state.config.max_upload_bytes {
            return Err(Refusal::Message(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "files are limited to {} bytes",
                    state.config.max_upload_bytes
                ),
            ));
        }
        hash.update(&chunk);
        out.write_all(&chunk).await.map_err(|e| io_failure(&e))?;
    }
    out.flush().await.map_err(|e| io_failure(&e))?;
    out.sync_all().await.map_err(|e| io_failure(&e))?;
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Received { tmp, size, sha256 })
}

async fn text(field: Field<'_>) -> Result<String, Refusal> {
    let bytes = field
        .bytes()
        .await
        .map_err(|e| bad(format!("the request broke off: {e}")))?;
    if bytes.len() > 64 * 1024 {
        return Err(bad("text fields are limited to 64 KiB"));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("text fields must be UTF-8"))
}

#[derive(Debug, Deserialize)]
struct DataPart {
    filename: Option<String>,
}

/// The form fields besides the file.
#[derive(Debug, Default)]
struct Fields {
    filename: Option<String>,
    total_size: Option<String>,
    chunk_count: Option<String>,
}

/// A data-source name must be a plain file name: it becomes a path on our disk.
fn check_name(state: &Toucan, name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
        return Err(bad(format!("invalid data source filename {name:?}")));
    }
    let declared = &state.config.data_sources;
    if !declared.is_empty() && !declared.iter().any(|d| d == name) {
        return Err(bad(format!(
            "Unknown data source '{name}': it is not declared in the small app's ETL config ({})",
            declared.join(", ")
        )));
    }
    Ok(())
}

async fn upload_inner(
    state: &Toucan,
    sa: &str,
    q: &StageQuery,
    headers: &HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, Refusal> {
    let stage = guard(state, headers, sa, q.stage.as_deref())?;
    let mut multipart = multipart.map_err(|_| bad("expected a multipart/form-data body"))?;
    let (mut fields, mut received) = (Fields::default(), None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("malformed multipart body: {e}")))?
    {
        match field.name().unwrap_or_default() {
            "file" => received = Some(receive(state, field).await?),
            "data" => {
                let data: DataPart = serde_json::from_str(&text(field).await?).map_err(|e| {
                    bad(format!(
                        "the 'data' part must be JSON {{\"filename\": ...}}: {e}"
                    ))
                })?;
                fields.filename = data.filename.or(fields.filename);
            }
            "filename" => fields.filename = Some(text(field).await?),
            "dztotalfilesize" => fields.total_size = Some(text(field).await?),
            "dztotalchunkcount" => fields.chunk_count = Some(text(field).await?),
            _ => {} // dzuuid, dzchunkindex, dzchunkbyteoffset and unknown fields
        }
    }
    let received = received.ok_or_else(|| bad("missing 'file' part"))?;
    let filename = fields
        .filename
        .ok_or_else(|| bad("missing data source filename: send data={\"filename\": \"<name>\"}"))?;
    check_name(state, &filename)?;
    if fields
        .chunk_count
        .as_deref()
        .is_some_and(|c| c.trim() != "1")
    {
        return Err(bad(
            "chunked uploads (dztotalchunkcount > 1) are not supported; send the file in one chunk",
        ));
    }
    let declared = fields
        .total_size
        .as_deref()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|d| *d != received.size) {
        return Err(bad(format!(
            "dztotalfilesize says {declared} bytes but {} were received",
            received.size
        )));
    }
    let dir = state.dir.path().join(&stage);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| io_failure(&e))?;
    let path = dir.join(&filename);
    received
        .tmp
        .persist(&path)
        .map_err(|e| io_failure(&e.error))?;
    let op = Operation {
        id: String::new(),
        operations: vec!["upload_data_source".into()],
        stage: stage.clone(),
        origin: None,
        input_domains: None,
        output_domains: None,
        function_names: None,
        polls: 0,
        status: OpStatus::Pending,
        fail: None,
    };
    let operation_id = state.create_operation(op);
    let record = UploadRecord {
        stage,
        filename,
        size: received.size,
        sha256: received.sha256,
        path,
        validation: q.validation.clone(),
        operation_id: operation_id.clone(),
    };
    let mut inner = state.lock();
    // A re-upload replaces the file (the rename above already did) and its record.
    inner
        .uploads
        .retain(|u| !(u.stage == record.stage && u.filename == record.filename));
    inner.uploads.push(record);
    Ok(Json(json!({"operation_id": operation_id})).into_response())
}

pub(crate) async fn upload(
    State(state): State<Arc<Toucan>>,
    Path(sa): Path<String>,
    Query(q): Query<StageQuery>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    match upload_inner(&state, &sa, &q, &headers, multipart).await {
        Ok(r) => r,
        Err(Refusal::Message(status, text)) => message(status, text),
        Err(r) => r.into_response(),
    }
}
