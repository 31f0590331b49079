//! Data source uploads (`POST /{app}/data/sources`).

use std::path::{Path, PathBuf};

use client_core::http::{Multipart, Part, Request};
use futures::StreamExt;

use crate::client::{Client, with_stage};
use crate::error::{Error, Result};
use crate::operation::{OperationId, Stage};

/// One data source file to upload.
///
/// The declared name (the `filename` of the `data` part) must match a data
/// source of the small app's ETL config; it defaults to the file's name.
///
/// ```
/// use toucan_client::Upload;
/// let u = Upload::new("/data/sales-2024.csv").unwrap();
/// assert_eq!(u.name(), "sales-2024.csv");
/// let u = Upload::new("/data/export.csv").unwrap().named("sales.csv").validation(false);
/// assert_eq!(u.name(), "sales.csv");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    path: PathBuf,
    name: String,
    validation: Option<bool>,
    stage: Option<Stage>,
}

impl Upload {
    /// An upload of the file at `path`, declared under its file name.
    ///
    /// # Errors
    /// [`Error::File`] if the path has no file name.
    pub fn new(path: impl Into<PathBuf>) -> Result<Upload> {
        let path = path.into();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::File {
                path: path.clone(),
                message: "the path has no file name".into(),
            })?;
        Ok(Upload {
            path,
            name,
            validation: None,
            stage: None,
        })
    }

    /// Declares the data source under `name` instead of the file name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sends `?validation=<flag>`; `false` skips the server's data source
    /// validation (the server's default applies when unset).
    pub fn validation(mut self, validate: bool) -> Self {
        self.validation = Some(validate);
        self
    }

    /// Targets a stage explicitly. The documented upload call sends no
    /// `stage` (the server's default applies); set one to be explicit.
    pub fn stage(mut self, stage: Stage) -> Self {
        self.stage = Some(stage);
        self
    }

    /// The file to upload.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The declared data source name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// One upload per regular, non-hidden file directly in `dir`, sorted by
    /// name, each declared under its file name.
    ///
    /// # Errors
    /// [`Error::File`] if the directory cannot be read.
    pub fn from_dir(dir: &Path) -> Result<Vec<Upload>> {
        let file_err = |e: std::io::Error| Error::File {
            path: dir.to_path_buf(),
            message: e.to_string(),
        };
        let mut uploads = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(file_err)? {
            let entry = entry.map_err(file_err)?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().map_err(file_err)?.is_file() {
                uploads.push(Upload::new(entry.path())?);
            }
        }
        uploads.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(uploads)
    }
}

/// What the server said about one uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadReceipt {
    /// The declared data source name.
    pub name: String,
    /// Bytes sent.
    pub bytes: u64,
    /// The operation processing the upload, when the server runs it
    /// asynchronously and says so.
    pub operation_id: Option<OperationId>,
}

/// The outcome of one file of a batch upload.
#[derive(Debug)]
#[non_exhaustive]
pub struct UploadOutcome {
    /// The upload.
    pub upload: Upload,
    /// Its result.
    pub result: Result<UploadReceipt>,
}

impl Client {
    /// Uploads one data source file: multipart `data` = `{"filename": <name>}`
    /// plus `file`, streamed from disk (re-opened whole on a retry).
    ///
    /// # Errors
    /// [`Error::File`] if the file cannot be read; HTTP errors typed as in
    /// [`Error`].
    pub async fn upload(&self, upload: &Upload) -> Result<UploadReceipt> {
        let meta = tokio::fs::metadata(&upload.path)
            .await
            .map_err(|e| Error::File {
                path: upload.path.clone(),
                message: e.to_string(),
            })?;
        if !meta.is_file() {
            return Err(Error::File {
                path: upload.path.clone(),
                message: "not a regular file".into(),
            });
        }
        let data = serde_json::json!({ "filename": upload.name }).to_string();
        let form = Multipart::new().part("data", Part::text(data)).part(
            "file",
            Part::file(upload.path.clone()).file_name(upload.name.clone()),
        );
        // Uploading a data source again replaces it, so a retry after a
        // dropped connection is safe (the file is re-opened and sent whole).
        let mut req = Request::post(self.route("data/sources"))
            .multipart(form)
            .idempotent(true);
        if let Some(v) = upload.validation {
            req = req.query("validation", v);
        }
        if let Some(stage) = upload.stage {
            req = with_stage(req, stage);
        }
        tracing::info!(app = %self.small_app, name = %upload.name, bytes = meta.len(), "uploading a Toucan data source");
        let response = self.http.send(req).await?;
        let body = response.bytes().await?;
        let operation_id = OperationId::from_start_response(&body);
        Ok(UploadReceipt {
            name: upload.name.clone(),
            bytes: meta.len(),
            operation_id,
        })
    }

    /// Uploads several files, at most `concurrency` at a time, and returns
    /// one outcome per file in the input order. One file failing does not
    /// stop the others.
    pub async fn upload_all(&self, uploads: Vec<Upload>, concurrency: usize) -> Vec<UploadOutcome> {
        self.upload_all_with(uploads, concurrency, |_| {}).await
    }

    /// Like [`Client::upload_all`], calling `on_done` as each file finishes
    /// (in completion order), e.g. to advance a progress bar.
    pub async fn upload_all_with(
        &self,
        uploads: Vec<Upload>,
        concurrency: usize,
        on_done: impl Fn(&UploadOutcome) + Sync,
    ) -> Vec<UploadOutcome> {
        let on_done = &on_done;
        futures::stream::iter(uploads)
            .map(|upload| async move {
                let result = self.upload(&upload).await;
                if let Err(e) = &result {
                    tracing::warn!(name = %upload.name, error = %e, "Toucan upload failed");
                }
                let outcome = UploadOutcome { upload, result };
                on_done(&outcome);
                outcome
            })
            .buffered(concurrency.max(1))
            .collect()
            .await
    }

    /// Uploads every regular, non-hidden file of `dir` (see
    /// [`Upload::from_dir`]) with `validation` applied to each.
    ///
    /// # Errors
    /// [`Error::File`] if the directory cannot be listed; per-file failures
    /// are in the outcomes.
    pub async fn upload_dir(
        &self,
        dir: &Path,
        validation: Option<bool>,
        concurrency: usize,
    ) -> Result<Vec<UploadOutcome>> {
        let uploads = Upload::from_dir(dir)?
            .into_iter()
            .map(|u| match validation {
                Some(v) => u.validation(v),
                None => u,
            })
            .collect();
        Ok(self.upload_all(uploads, concurrency).await)
    }
}
