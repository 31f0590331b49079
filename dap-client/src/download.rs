//! Downloading query output: to files (the official client's
//! `download_*`), or as a record stream straight from the network.
//!
//! Pre-signed URLs are fetched without `Authorization` (the core's
//! [`Download::presigned`]); URLs are requested in batches, an expired URL
//! is re-resolved, and an object whose body breaks off is fetched again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use client_core::download::{Download, DownloadReader, error_from_io};
use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncWriteExt, BufReader};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::model::{
    DownloadTableDataResult, Format, GetTableDataResult, Job, Object, Query, Resource,
};
use crate::record::{DecodeError, Record, RecordReader};
use crate::schema::TableSchema;

/// Progress of one object's download, passed to the callback set with
/// [`ClientBuilder::progress`](crate::client::ClientBuilder::progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadProgress<'a> {
    /// The object (or, for bare resources, the file name).
    pub object_id: &'a str,
    /// Bytes received so far (compressed).
    pub bytes: u64,
    /// The object's size, when the server declared it.
    pub total: Option<u64>,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn for<'a> Fn(DownloadProgress<'a>) + Send + Sync>;

/// Records of a query job, with the job's metadata.
pub struct TableRecords {
    /// The job and its objects.
    pub result: GetTableDataResult,
    /// The schema the records were typed with.
    pub schema: Arc<TableSchema>,
    /// The records of all objects (objects are read concurrently, so
    /// records of different objects interleave).
    pub records: BoxStream<'static, Result<Record>>,
}

impl std::fmt::Debug for TableRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableRecords")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
pub(crate) async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let temp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    let mut file = tokio::fs::File::from_std(
        temp.as_file()
            .try_clone()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?,
    );
    file.write_all(bytes)
        .await
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    file.sync_all()
        .await
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
    temp.persist(path)
        .map_err(|e| Error::io(format!("renaming into {}", path.display()), e.error))?;
    Ok(())
}

/// Chooses distinct, safe file names for the objects of one download.
fn file_names(resources: &[(String, Resource)], decompress: bool) -> Vec<String> {
    let mut used = HashSet::new();
    resources
        .iter()
        .enumerate()
        .map(|(i, (_, r))| {
            let mut name = r.file_name().unwrap_or_else(|| format!("part-{i:05}.gz"));
            if decompress && let Some(stripped) = name.strip_suffix(".gz") {
                name = stripped.to_string();
            }
            // Two objects with the same base name must not overwrite each other.
            if !used.insert(name.clone()) {
                name = format!("{i:05}-{name}");
                used.insert(name.clone());
            }
            name
        })
        .collect()
}

fn is_transient(e: &client_core::Error) -> bool {
    match e {
        client_core::Error::Download { .. } | client_core::Error::Transport { .. } => true,
        client_core::Error::RetriesExhausted { last, .. } => is_transient(last),
        _ => false,
    }
}

impl Client {
    /// The download of one object, re-resolving its URL when it expired.
    /// An API error met while re-resolving is kept in `stash`.
    fn object_download(
        &self,
        object_id: &str,
        url: &str,
        stash: &Arc<Mutex<Option<Error>>>,
    ) -> Download {
        let mut download = Download::presigned(url);
        if !object_id.is_empty() {
            let client = self.clone();
            let object = Object::new(object_id);
            let stash = stash.clone();
            download = download.on_expired(move || {
                let (client, object, stash) = (client.clone(), object.clone(), stash.clone());
                async move {
                    match client.resources(std::slice::from_ref(&object)).await {
                        Ok(mut urls) => urls.remove(&object.id).map(|r| r.url).ok_or_else(|| {
                            client_core::Error::Config(format!(
                                "no URL returned for object {}",
                                object.id
                            ))
                        }),
                        Err(e) => {
                            let message = e.to_string();
                            *stash.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            Err(client_core::Error::Config(format!(
                                "re-resolving the URL failed: {message}"
                            )))
                        }
                    }
                }
            });
        }
        if let Some(progress) = &self.inner.progress {
            let progress = progress.clone();
            let id = object_id.to_string();
            download = download.progress(move |p| {
                progress(DownloadProgress {
                    object_id: &id,
                    bytes: p.bytes,
                    total: p.total,
                })
            });
        }
        download
    }

    /// Maps a core download failure, preferring the API error met while
    /// re-resolving the URL (e.g. the object expired with its job).
    fn download_error(
        object_id: &str,
        e: client_core::Error,
        stash: &Arc<Mutex<Option<Error>>>,
    ) -> Error {
        if let Some(api) = stash.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return api;
        }
        match e {
            client_core::Error::Download { message, url } => Error::Download {
                object_id: object_id.to_string(),
                message: format!("{url}: {message}"),
            },
            client_core::Error::Api(_) | client_core::Error::RetriesExhausted { .. } => {
                Error::Download {
                    object_id: object_id.to_string(),
                    message: e.to_string(),
                }
            }
            other => Error::from(other),
        }
    }

    /// Downloads one resolved object into `dir/name`, retrying a broken body.
    async fn fetch_to_file(
        &self,
        object_id: &str,
        url: &str,
        path: &Path,
        decompress: bool,
    ) -> Result<PathBuf> {
        let stash = Arc::new(Mutex::new(None));
        let download = self
            .object_download(object_id, url, &stash)
            .gzip(decompress);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = if decompress {
                self.save_decompressed(&download, path).await
            } else {
                download.to_file(&self.inner.http, path).await.map(|_| ())
            };
            match outcome {
                Ok(()) => return Ok(path.to_path_buf()),
                Err(e) if is_transient(&e) && attempt < self.inner.object_attempts => {
                    tracing::warn!(object_id, attempt, error = %e, "object download broke off; fetching it again");
                }
                Err(e) => return Err(Self::download_error(object_id, e, &stash)),
            }
        }
    }

    async fn save_decompressed(&self, download: &Download, path: &Path) -> client_core::Result<()> {
        let download = download
            .clone()
            .max_decompressed_bytes(self.inner.max_decompressed);
        let mut reader = download.open(&self.inner.http).await?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let io = |what: &str, e| client_core::Error::io(format!("{what} {}", path.display()), e);
        let temp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| io("creating a temporary file for", e))?;
        let std_file = temp.as_file().try_clone().map_err(|e| io("writing", e))?;
        let mut file = tokio::io::BufWriter::new(tokio::fs::File::from_std(std_file));
        tokio::io::copy(&mut reader, &mut file)
            .await
            .map_err(|e| match e.get_ref() {
                Some(inner) if inner.is::<client_core::Error>() => error_from_io(e),
                _ => io("writing", e),
            })?;
        file.flush().await.map_err(|e| io("writing", e))?;
        file.get_ref()
            .sync_all()
            .await
            .map_err(|e| io("syncing", e))?;
        temp.persist(path)
            .map_err(|e| io("renaming into", e.error))?;
        Ok(())
    }

    /// Downloads resolved `(object id, resource)` pairs concurrently into
    /// `dir`, keeping their order. Fails on the first error; files already
    /// written stay (each one is complete).
    async fn fetch_all(
        &self,
        items: Vec<(String, Resource)>,
        dir: &Path,
        decompress: bool,
    ) -> Result<Vec<PathBuf>> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let names = file_names(&items, decompress);
        stream::iter(items.into_iter().zip(names))
            .map(|((id, resource), name)| {
                let path = dir.join(name);
                async move {
                    self.fetch_to_file(&id, &resource.url, &path, decompress)
                        .await
                }
            })
            .buffered(self.inner.concurrency)
            .try_collect()
            .await
    }

    /// Downloads objects into `dir` (decompressed when asked: the `.gz`
    /// suffix is dropped and every gzip member is decoded). URLs for all
    /// objects are requested together; downloads run concurrently.
    /// Returns the paths in object order.
    pub async fn download_objects(
        &self,
        objects: &[Object],
        dir: impl AsRef<Path>,
        decompress: bool,
    ) -> Result<Vec<PathBuf>> {
        let urls = self.resources(objects).await?;
        let items = objects
            .iter()
            .filter_map(|o| urls.get(&o.id).map(|r| (o.id.clone(), r.clone())))
            .collect();
        self.fetch_all(items, dir.as_ref(), decompress).await
    }

    /// Downloads one object into `dir`; returns the file's path.
    pub async fn download_object(
        &self,
        object: &Object,
        dir: impl AsRef<Path>,
        decompress: bool,
    ) -> Result<PathBuf> {
        let mut paths = self
            .download_objects(std::slice::from_ref(object), dir, decompress)
            .await?;
        paths.pop().ok_or_else(|| Error::Download {
            object_id: object.id.clone(),
            message: "nothing was downloaded".into(),
        })
    }

    /// Downloads already resolved resources into `dir` (an expired URL
    /// cannot be re-resolved here: use [`Client::download_objects`]).
    pub async fn download_resources(
        &self,
        resources: &[Resource],
        dir: impl AsRef<Path>,
        decompress: bool,
    ) -> Result<Vec<PathBuf>> {
        let items = resources
            .iter()
            .map(|r| (String::new(), r.clone()))
            .collect();
        self.fetch_all(items, dir.as_ref(), decompress).await
    }

    /// Downloads one resolved resource into `dir`.
    pub async fn download_resource(
        &self,
        resource: &Resource,
        dir: impl AsRef<Path>,
        decompress: bool,
    ) -> Result<PathBuf> {
        let mut paths = self
            .download_resources(std::slice::from_ref(resource), dir, decompress)
            .await?;
        paths.pop().ok_or_else(|| Error::Download {
            object_id: String::new(),
            message: "nothing was downloaded".into(),
        })
    }

    /// Runs a query job and downloads its output into
    /// `{dir}/job_{job_id}/` (the official client's `download_table_data`).
    /// A job that expires before its objects are fetched is started again.
    pub async fn download_table_data(
        &self,
        namespace: &str,
        table: &str,
        query: impl Into<Query>,
        dir: impl AsRef<Path>,
        decompress: bool,
    ) -> Result<DownloadTableDataResult> {
        let query = query.into();
        if decompress && *query.format() == Format::Parquet {
            return Err(Error::Config(
                "decompression is not supported for the parquet format".into(),
            ));
        }
        let dir = dir.as_ref();
        self.with_fresh_job(namespace, table, &query, |job: Job| async move {
            let job_dir = dir.join(format!("job_{}", job.id));
            let files = self
                .download_objects(&job.objects, &job_dir, decompress)
                .await?;
            Ok(DownloadTableDataResult {
                schema_version: job.schema_version,
                timestamp: job.timestamp(),
                job_id: job.id,
                downloaded_files: files,
            })
        })
        .await
    }

    /// Opens one object as a decompressed byte stream, re-resolving its URL
    /// if it expired.
    pub async fn open_object(
        &self,
        object: &Object,
        resource: &Resource,
    ) -> Result<DownloadReader> {
        let stash = Arc::new(Mutex::new(None));
        self.object_download(&object.id, &resource.url, &stash)
            .gzip(true)
            .max_decompressed_bytes(self.inner.max_decompressed)
            .open(&self.inner.http)
            .await
            .map_err(|e| Self::download_error(&object.id, e, &stash))
    }

    /// The records of one object, decoded while it downloads (nothing is
    /// written to disk). If the body breaks off, the object is fetched again
    /// and the records already yielded are skipped, so every record is
    /// yielded exactly once.
    pub fn object_records(
        &self,
        object: Object,
        resource: Resource,
        format: Format,
        schema: Option<Arc<TableSchema>>,
    ) -> impl Stream<Item = Result<Record>> + Send + 'static {
        let state = ObjectRecords {
            client: self.clone(),
            object,
            resource,
            format,
            schema,
            reader: None,
            yielded: 0,
            attempt: 0,
        };
        stream::try_unfold(state, |mut state| async move {
            let next = state.next().await?;
            Ok(next.map(|r| (r, state)))
        })
    }

    /// The records of a complete job's objects. URLs are requested in one
    /// batch; up to [`download_concurrency`](crate::client::ClientBuilder::download_concurrency)
    /// objects are read at once (their downloads overlap; decoding runs on
    /// the consumer's task: wrap the stream in
    /// [`spawn_batched`](crate::record::spawn_batched) to move it to another).
    pub async fn job_records(
        &self,
        job: &Job,
        format: Format,
        schema: Option<Arc<TableSchema>>,
    ) -> Result<BoxStream<'static, Result<Record>>> {
        let urls = self.resources(&job.objects).await?;
        let client = self.clone();
        let per_object: Vec<_> = job
            .objects
            .iter()
            .filter_map(|o| urls.get(&o.id).map(|r| (o.clone(), r.clone())))
            .collect();
        let concurrency = self.inner.concurrency;
        Ok(stream::iter(per_object)
            .map(move |(o, r)| {
                client
                    .object_records(o, r, format.clone(), schema.clone())
                    .boxed()
            })
            .flatten_unordered(concurrency)
            .boxed())
    }

    /// Fetches the table's schema, runs the query job and streams its
    /// records, typed by the schema. A job that expired before its URLs
    /// were obtained is started again.
    ///
    /// ```no_run
    /// # async fn demo(client: dap_client::Client) -> dap_client::Result<()> {
    /// use futures::TryStreamExt;
    /// use dap_client::{Format, Mode, SnapshotQuery};
    ///
    /// let query = SnapshotQuery::new(Format::Tsv).mode(Mode::Condensed);
    /// let mut table = client.table_records("canvas", "accounts", query).await?;
    /// while let Some(record) = table.records.try_next().await? {
    ///     println!("{record}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn table_records(
        &self,
        namespace: &str,
        table: &str,
        query: impl Into<Query>,
    ) -> Result<TableRecords> {
        let query = query.into();
        let schema = Arc::new(TableSchema::from_versioned(
            &self.schema(namespace, table).await?,
        ));
        let format = query.format().clone();
        let (result, records) = self
            .with_fresh_job(namespace, table, &query, |job: Job| {
                let (format, schema) = (format.clone(), schema.clone());
                async move {
                    let records = self.job_records(&job, format, Some(schema)).await?;
                    let result = GetTableDataResult {
                        schema_version: job.schema_version,
                        timestamp: job.timestamp(),
                        job_id: job.id.clone(),
                        objects: job.objects.clone(),
                        job,
                    };
                    Ok((result, records))
                }
            })
            .await?;
        Ok(TableRecords {
            result,
            schema,
            records,
        })
    }
}

type Reader = RecordReader<BufReader<DownloadReader>>;

/// The state of one object's record stream.
struct ObjectRecords {
    client: Client,
    object: Object,
    resource: Resource,
    format: Format,
    schema: Option<Arc<TableSchema>>,
    reader: Option<Pin<Box<Reader>>>,
    yielded: u64,
    attempt: u32,
}

impl ObjectRecords {
    async fn open(&mut self) -> Result<()> {
        self.attempt += 1;
        let body = self
            .client
            .open_object(&self.object, &self.resource)
            .await?;
        let mut reader = RecordReader::new(
            BufReader::with_capacity(256 * 1024, body),
            self.format.clone(),
        )?
        .with_source_name(self.object.id.clone())
        .max_line_len(self.client.inner.max_line_len);
        if let Some(schema) = &self.schema {
            reader = reader.with_schema(schema.clone());
        }
        let mut reader = Box::pin(reader);
        // Skip what an earlier, broken attempt already yielded.
        for _ in 0..self.yielded {
            if reader.next_record().await?.is_none() {
                break;
            }
        }
        self.reader = Some(reader);
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<Record>> {
        loop {
            if self.reader.is_none() {
                match self.open().await {
                    Ok(()) => {}
                    Err(e) if self.retryable(&e) => continue,
                    Err(e) => return Err(self.finish_error(e)),
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            match reader.next_record().await {
                Ok(Some(record)) => {
                    self.yielded += 1;
                    return Ok(Some(record));
                }
                Ok(None) => return Ok(None),
                Err(e) => {
                    let e = Error::from(e);
                    self.reader = None;
                    if self.retryable(&e) {
                        tracing::warn!(object_id = %self.object.id, attempt = self.attempt, error = %e, "object stream broke off; reading it again");
                        continue;
                    }
                    return Err(self.finish_error(e));
                }
            }
        }
    }

    fn retryable(&self, e: &Error) -> bool {
        let transient = match e {
            Error::Decode(DecodeError::Io { .. }) | Error::Download { .. } => true,
            Error::Http(core) => is_transient(core),
            _ => false,
        };
        transient && self.attempt < self.client.inner.object_attempts
    }

    /// Turns an I/O error carrying a core download error into a typed one.
    fn finish_error(&self, e: Error) -> Error {
        match e {
            Error::Decode(DecodeError::Io { source, .. }) => match error_from_io(source) {
                client_core::Error::Download { message, url } => Error::Download {
                    object_id: self.object.id.clone(),
                    message: format!("{url}: {message}"),
                },
                other => Error::Download {
                    object_id: self.object.id.clone(),
                    message: other.to_string(),
                },
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_distinct_and_strip_gz() {
        let r = |u: &str| (String::new(), Resource::new(u));
        let names = file_names(
            &[
                r("https://b/x/part-1.tsv.gz?sig=1"),
                r("https://b/y/part-1.tsv.gz"),
                r("https://b/.."),
            ],
            true,
        );
        assert_eq!(names, ["part-1.tsv", "00001-part-1.tsv", "part-00002"]);
    }
}
