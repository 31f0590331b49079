//! [`Replicator`]: one table's `init`, `sync`, `drop`, and `list`.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use sql_sink::{BackendKind, EvolutionReport, Fault, LoadObserver, Sink, TableName, Watermark};
use tokio::sync::Semaphore;

use super::error::{ReplicateError, Result};
use super::mapping;
use super::pipeline::{self, Limits};
use crate::client::Client;
use crate::model::{Format, IncrementalQuery, Job, Mode, SnapshotQuery};
use crate::schema::TableSchema;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Create and load a table from a snapshot.
    Init,
    /// Apply the changes since the watermark.
    Sync,
    /// Drop a table and its watermark.
    Drop,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Operation::Init => "initdb",
            Operation::Sync => "syncdb",
            Operation::Drop => "dropdb",
        })
    }
}

/// How the replicator works.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicateOptions {
    /// Re-initialise a table (snapshot into a new table swapped in at
    /// commit) when DAP answers `SnapshotRequired`/`OutOfRange` or the
    /// schema changed incompatibly, instead of failing. Default `false`.
    pub reinit_when_needed: bool,
    /// Tables processed at once by [`Replicator::run_many`] (default 4).
    pub table_concurrency: usize,
    /// Objects of one table downloaded and parsed at once (default 4; a
    /// [`Replicator`] starts from its client's
    /// [`download_concurrency`](crate::Client::download_concurrency)).
    pub download_concurrency: usize,
    /// Rows per batch handed to the database (default 5 000).
    pub batch_rows: usize,
    /// Text bytes at which a batch is handed over early (default 2 MiB).
    /// About 15 batches exist at once (readers, channel, pool, the one
    /// being written), so this bounds the pipeline's memory.
    pub batch_bytes: usize,
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        Self {
            reinit_when_needed: false,
            table_concurrency: 4,
            download_concurrency: 4,
            batch_rows: 5_000,
            batch_bytes: 2 * 1024 * 1024,
        }
    }
}

impl ReplicateOptions {
    /// See [`ReplicateOptions::reinit_when_needed`](field@Self::reinit_when_needed).
    pub fn reinit_when_needed(mut self, yes: bool) -> Self {
        self.reinit_when_needed = yes;
        self
    }

    /// Tables processed at once (at least 1).
    pub fn table_concurrency(mut self, n: usize) -> Self {
        self.table_concurrency = n.max(1);
        self
    }

    /// Objects downloaded at once per table (at least 1).
    pub fn download_concurrency(mut self, n: usize) -> Self {
        self.download_concurrency = n.max(1);
        self
    }

    /// Rows per batch (at least 1).
    pub fn batch_rows(mut self, n: usize) -> Self {
        self.batch_rows = n.max(1);
        self
    }

    /// Text bytes per batch (at least 1).
    pub fn batch_bytes(mut self, n: usize) -> Self {
        self.batch_bytes = n.max(1);
        self
    }

    fn limits(&self) -> Limits {
        Limits {
            batch_rows: self.batch_rows.max(1),
            batch_bytes: self.batch_bytes.max(1),
            readers: self.download_concurrency.max(1),
            object_attempts: 4,
        }
    }
}

/// What an operation did to one table.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TableReport {
    /// DAP namespace.
    pub namespace: String,
    /// DAP table name.
    pub table: String,
    /// The operation.
    pub operation: Operation,
    /// The query job whose output was loaded (none for `drop`).
    pub job_id: Option<String>,
    /// Rows inserted or updated.
    pub upserted_rows: u64,
    /// Rows deleted (keys that were present).
    pub deleted_rows: u64,
    /// The watermark now committed (`at` of a snapshot, `until` of an
    /// incremental job); `None` after `drop`.
    pub watermark: Option<DateTime<Utc>>,
    /// The schema version the rows were loaded with.
    pub schema_version: Option<i64>,
    /// What the load did to the table's structure (created, columns added,
    /// types widened, enum values added, columns kept after they vanished
    /// upstream).
    pub evolution: EvolutionReport,
    /// `true` when `sync` re-initialised the table from a snapshot
    /// (see [`ReplicateOptions::reinit_when_needed`](field@ReplicateOptions::reinit_when_needed)).
    pub reinitialized: bool,
    /// For `drop`: whether the table was known.
    pub dropped: bool,
}

/// One replicated table, as [`Replicator::list`] reports it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReplicatedTable {
    /// DAP namespace.
    pub namespace: String,
    /// DAP table name.
    pub table: String,
    /// The committed watermark.
    pub watermark: Option<DateTime<Utc>>,
    /// How far the watermark lags behind now.
    pub staleness: Option<chrono::Duration>,
    /// The schema version the rows were loaded with.
    pub schema_version: Option<i64>,
    /// The command that last committed (`initdb` or `syncdb`).
    pub last_command: Option<String>,
    /// Rows in the table.
    pub row_count: u64,
    /// Columns in the table (including ones kept after they vanished
    /// upstream).
    pub columns: Vec<String>,
}

/// Replicates DAP tables into one database. Safe to share: every table
/// operation uses its own database connection.
pub struct Replicator {
    pub(super) client: Client,
    sink: tokio::sync::Mutex<Sink>,
    pub(super) options: ReplicateOptions,
    /// SQLite has one writer at a time: loads queue here rather than on the
    /// database's busy timeout.
    load_gate: Arc<Semaphore>,
    fault: Mutex<Option<Fault>>,
    /// Installed on every table's connection.
    observer: Option<Arc<dyn LoadObserver>>,
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicator")
            .field("client", &self.client)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn label(namespace: &str, table: &str) -> String {
    format!("{namespace}.{table}")
}

/// Runs `attempt`, and once more if its job or objects expired before they
/// were read (nothing was committed then, so a second job is safe).
async fn once_more_if_expired(
    namespace: &str,
    table: &str,
    mut attempt: impl AsyncFnMut() -> Result<TableReport>,
) -> Result<TableReport> {
    match attempt().await {
        Err(e) if job_expired(&e) => {
            tracing::warn!(table = %label(namespace, table), error = %e, "the job expired before its output was read; running it again");
            attempt().await
        }
        other => other,
    }
}

/// A job (or one of its objects) that no longer exists: running the query
/// again is the remedy.
fn job_expired(e: &ReplicateError) -> bool {
    match e {
        ReplicateError::Api { source, .. } => {
            crate::jobs::is_expired_job(source) || matches!(source, crate::Error::JobExpired { .. })
        }
        _ => false,
    }
}

fn format_ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl Replicator {
    /// A replicator writing through an open [`Sink`].
    pub fn new(client: Client, sink: Sink) -> Self {
        let writers = match sink.backend() {
            BackendKind::Sqlite => 1,
            _ => Semaphore::MAX_PERMITS,
        };
        let options =
            ReplicateOptions::default().download_concurrency(client.download_concurrency());
        Self {
            client,
            sink: tokio::sync::Mutex::new(sink),
            options,
            load_gate: Arc::new(Semaphore::new(writers)),
            fault: Mutex::new(None),
            observer: None,
        }
    }

    /// Opens the database named by a connection string — `sqlite://path.db`
    /// (the default kind) or `postgresql://user:pass@host:port/db` (feature
    /// `postgres`) — and returns a replicator writing to it.
    pub async fn open(client: Client, connection_string: &str) -> Result<Self> {
        let sink = Sink::open(connection_string)
            .await
            .map_err(ReplicateError::db(""))?;
        Ok(Self::new(client, sink))
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: ReplicateOptions) -> Self {
        self.options = options;
        self
    }

    /// Reports every table load's steps to `observer`: the load started
    /// (with its schema change), each batch written, the commit about to
    /// happen, the commit done ([`sql_sink::LoadEvent`]; the event names
    /// the table). Called synchronously, in order, from the task loading
    /// the table; tables loaded at once call it concurrently. Download
    /// progress comes from
    /// [`ClientBuilder::progress`](crate::client::ClientBuilder::progress).
    ///
    /// ```no_run
    /// # async fn demo(client: dap_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use dap_client::replicate::{LoadEvent, Replicator};
    ///
    /// let replicator = Replicator::open(client, "sqlite://canvas.db")
    ///     .await?
    ///     .with_load_observer(Arc::new(|event: &LoadEvent<'_>| {
    ///         if let LoadEvent::Committed { table, summary, .. } = event {
    ///             eprintln!("{table}: {} rows committed", summary.upserted_rows);
    ///         }
    ///     }));
    /// replicator.sync("canvas", "users").await?;
    /// # Ok(()) }
    /// ```
    pub fn with_load_observer(mut self, observer: Arc<dyn LoadObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The options in use.
    pub fn options(&self) -> &ReplicateOptions {
        &self.options
    }

    /// Makes the next table load fail as described and roll back (for
    /// crash-safety tests; one shot).
    pub fn inject_fault(&self, fault: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(fault);
    }

    /// A connection of its own for one table operation.
    async fn table_sink(&self, table: &str) -> Result<Sink> {
        let mut sink = self
            .sink
            .lock()
            .await
            .reopen()
            .await
            .map_err(ReplicateError::db(table))?;
        sink.set_observer(self.observer.clone());
        if let Some(fault) = self.fault.lock().unwrap_or_else(|p| p.into_inner()).take() {
            sink.inject_fault(fault);
        }
        Ok(sink)
    }

    /// Creates the table and loads a snapshot; the watermark becomes the
    /// snapshot's `at`. Fails with [`ReplicateError::AlreadyInitialized`]
    /// if the table has a watermark.
    pub async fn init(&self, namespace: &str, table: &str) -> Result<TableReport> {
        let label = label(namespace, table);
        let mut sink = self.table_sink(&label).await?;
        let name = TableName::new(namespace, table);
        if let Some(w) = sink
            .watermark(&name)
            .await
            .map_err(ReplicateError::db(&label))?
        {
            return Err(ReplicateError::AlreadyInitialized {
                table: label,
                watermark: w.value,
            });
        }
        self.snapshot(&mut sink, namespace, table, false).await
    }

    /// Applies the changes since the watermark (schema changes first); the
    /// watermark becomes the incremental job's `until`.
    pub async fn sync(&self, namespace: &str, table: &str) -> Result<TableReport> {
        let label = label(namespace, table);
        let mut sink = self.table_sink(&label).await?;
        let name = TableName::new(namespace, table);
        let watermark = sink
            .watermark(&name)
            .await
            .map_err(ReplicateError::db(&label))?
            .ok_or_else(|| ReplicateError::NotInitialized {
                table: label.clone(),
            })?;
        let since = match watermark.at {
            Some(at) => at,
            None => DateTime::parse_from_rfc3339(&watermark.value)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| ReplicateError::Internal {
                    table: label.clone(),
                    message: format!(
                        "the stored watermark {:?} is unreadable: {e}",
                        watermark.value
                    ),
                })?,
        };
        match self.incremental(&mut sink, namespace, table, since).await {
            Err(e) if e.needs_reinit() && self.options.reinit_when_needed => {
                tracing::warn!(table = %label, error = %e, "re-initialising the table from a snapshot");
                let mut report = self.snapshot(&mut sink, namespace, table, true).await?;
                report.operation = Operation::Sync;
                report.reinitialized = true;
                Ok(report)
            }
            other => other,
        }
    }

    /// Drops the table and its watermark (no API call). Returns whether the
    /// table was replicated here.
    pub async fn drop(&self, namespace: &str, table: &str) -> Result<TableReport> {
        let label = label(namespace, table);
        let dropped = self
            .sink
            .lock()
            .await
            .drop_table(&TableName::new(namespace, table))
            .await
            .map_err(ReplicateError::db(&label))?;
        Ok(TableReport {
            namespace: namespace.to_string(),
            table: table.to_string(),
            operation: Operation::Drop,
            job_id: None,
            upserted_rows: 0,
            deleted_rows: 0,
            watermark: None,
            schema_version: None,
            evolution: EvolutionReport::default(),
            reinitialized: false,
            dropped,
        })
    }

    /// The replicated tables (of one namespace, or all), by namespace and
    /// name.
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<ReplicatedTable>> {
        let tables = self
            .sink
            .lock()
            .await
            .list_tables()
            .await
            .map_err(ReplicateError::db(namespace.unwrap_or("")))?;
        let now = Utc::now();
        Ok(tables
            .into_iter()
            .filter(|s| namespace.is_none_or(|ns| s.table.schema == ns))
            .map(|s| {
                let watermark = s.watermark.as_ref().and_then(|w| w.at);
                ReplicatedTable {
                    namespace: s.table.schema.clone(),
                    table: s.table.name.clone(),
                    watermark,
                    staleness: watermark.map(|w| now - w),
                    schema_version: s.watermark.as_ref().and_then(|w| w.schema_version),
                    last_command: s
                        .watermark
                        .as_ref()
                        .and_then(|w| w.details.as_ref())
                        .and_then(|d| d.get("command"))
                        .and_then(|c| c.as_str())
                        .map(str::to_string),
                    row_count: s.row_count,
                    columns: s
                        .definition
                        .columns
                        .iter()
                        .map(|c| c.name.clone())
                        .collect(),
                }
            })
            .collect())
    }

    /// The schema, its table definition, and the parsed schema.
    async fn table_def(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<(Arc<TableSchema>, sql_sink::TableDef)> {
        let label = label(namespace, table);
        let doc = self
            .client
            .schema(namespace, table)
            .await
            .map_err(ReplicateError::api(&label))?;
        let schema = Arc::new(TableSchema::from_versioned(&doc));
        let def = mapping::table_def(namespace, table, &schema).map_err(|reason| {
            ReplicateError::UnsupportedSchema {
                table: label.clone(),
                reason,
            }
        })?;
        Ok((schema, def))
    }

    /// The schema again when the job was answered with another schema
    /// version than the one fetched before it (the data follows the job's).
    async fn schema_of_job(
        &self,
        namespace: &str,
        table: &str,
        fetched: (Arc<TableSchema>, sql_sink::TableDef),
        job: &Job,
    ) -> Result<(Arc<TableSchema>, sql_sink::TableDef)> {
        match job.schema_version {
            Some(v) if v != fetched.0.version => {
                tracing::info!(table = %label(namespace, table), fetched = fetched.0.version, job = v,
                    "the schema changed while the job ran; fetching it again");
                self.table_def(namespace, table).await
            }
            _ => Ok(fetched),
        }
    }

    /// Loads a snapshot: into the table (`replace == false`, the table must
    /// be new or empty of a watermark) or into a new table swapped in at
    /// commit.
    async fn snapshot_once(
        &self,
        sink: &mut Sink,
        namespace: &str,
        table: &str,
        replace: bool,
    ) -> Result<TableReport> {
        let label = label(namespace, table);
        let fetched = self.table_def(namespace, table).await?;
        let query = SnapshotQuery::new(Format::Tsv).mode(Mode::Condensed);
        let job = self
            .client
            .execute_job(namespace, table, query)
            .await
            .map_err(ReplicateError::api(&label))?;
        let at = job.at.ok_or_else(|| ReplicateError::MissingTimestamp {
            table: label.clone(),
            job_id: job.id.clone(),
            field: "at",
        })?;
        let (schema, def) = self.schema_of_job(namespace, table, fetched, &job).await?;
        let target = LoadTarget {
            namespace,
            table,
            def: &def,
            schema_version: schema.version,
            mark: at,
            operation: Operation::Init,
            replace,
        };
        self.load(sink, target, job).await
    }

    /// Loads the changes since `since`.
    async fn incremental_once(
        &self,
        sink: &mut Sink,
        namespace: &str,
        table: &str,
        since: DateTime<Utc>,
    ) -> Result<TableReport> {
        let label = label(namespace, table);
        let fetched = self.table_def(namespace, table).await?;
        let query = IncrementalQuery::new(Format::Tsv, since).mode(Mode::Condensed);
        let job = match self.client.execute_job(namespace, table, query).await {
            Ok(job) => job,
            Err(source @ crate::Error::SnapshotRequired { .. }) => {
                return Err(ReplicateError::SnapshotRequired {
                    table: label,
                    source,
                });
            }
            Err(source @ crate::Error::OutOfRange { .. }) => {
                return Err(ReplicateError::OutOfRange {
                    table: label,
                    since,
                    source,
                });
            }
            Err(e) => return Err(ReplicateError::api(&label)(e)),
        };
        let until = job.until.ok_or_else(|| ReplicateError::MissingTimestamp {
            table: label.clone(),
            job_id: job.id.clone(),
            field: "until",
        })?;
        let (schema, def) = self.schema_of_job(namespace, table, fetched, &job).await?;
        let target = LoadTarget {
            namespace,
            table,
            def: &def,
            schema_version: schema.version,
            mark: until,
            operation: Operation::Sync,
            replace: false,
        };
        self.load(sink, target, job).await
    }

    /// [`Self::snapshot_once`], run again once if the job or its objects
    /// expired before they were read (nothing was committed).
    async fn snapshot(
        &self,
        sink: &mut Sink,
        namespace: &str,
        table: &str,
        replace: bool,
    ) -> Result<TableReport> {
        once_more_if_expired(namespace, table, async || {
            self.snapshot_once(sink, namespace, table, replace).await
        })
        .await
    }

    /// [`Self::incremental_once`], run again once if the job or its objects
    /// expired before they were read (nothing was committed).
    async fn incremental(
        &self,
        sink: &mut Sink,
        namespace: &str,
        table: &str,
        since: DateTime<Utc>,
    ) -> Result<TableReport> {
        once_more_if_expired(namespace, table, async || {
            self.incremental_once(sink, namespace, table, since).await
        })
        .await
    }

    /// Streams the job's objects into one transaction with the watermark.
    async fn load(&self, sink: &mut Sink, target: LoadTarget<'_>, job: Job) -> Result<TableReport> {
        let label = label(target.namespace, target.table);
        let urls = if job.objects.is_empty() {
            Default::default()
        } else {
            self.client
                .resources(&job.objects)
                .await
                .map_err(ReplicateError::api(&label))?
        };
        let objects: Vec<_> = job
            .objects
            .iter()
            .filter_map(|o| urls.get(&o.id).map(|r| (o.clone(), r.clone())))
            .collect();
        let _permit = self
            .load_gate
            .acquire()
            .await
            .map_err(|e| ReplicateError::Internal {
                table: label.clone(),
                message: e.to_string(),
            })?;
        let started = if target.replace {
            sink.begin_replace(target.def).await
        } else {
            sink.begin_load(target.def).await
        };
        let mut load = started.map_err(ReplicateError::db(&label))?;
        let evolution = load.evolution().clone();
        if !evolution.kept_columns.is_empty() {
            tracing::warn!(table = %label, columns = ?evolution.kept_columns,
                "columns vanished from the schema; they are kept with their data and filled with NULL from now on");
        }
        let streamed = pipeline::stream_objects(
            &self.client,
            &label,
            target.def,
            objects,
            &mut load,
            self.options.limits(),
        )
        .await?;
        let watermark = Watermark::new(format_ts(&target.mark))
            .with_at(target.mark)
            .with_schema_version(target.schema_version)
            .with_details(json!({"command": target.operation.to_string(), "job_id": job.id}));
        let summary = load
            .commit(watermark)
            .await
            .map_err(ReplicateError::db(&label))?;
        tracing::info!(table = %label, operation = %target.operation, upserts = streamed.upserts,
            delete_keys = streamed.deletes, deleted = summary.deleted_rows, watermark = %format_ts(&target.mark),
            "table committed");
        Ok(TableReport {
            namespace: target.namespace.to_string(),
            table: target.table.to_string(),
            operation: target.operation,
            job_id: Some(job.id),
            upserted_rows: summary.upserted_rows,
            deleted_rows: summary.deleted_rows,
            watermark: Some(target.mark),
            schema_version: Some(target.schema_version),
            evolution,
            reinitialized: false,
            dropped: false,
        })
    }
}

/// Where and how a job's output is loaded.
struct LoadTarget<'a> {
    namespace: &'a str,
    table: &'a str,
    def: &'a sql_sink::TableDef,
    schema_version: i64,
    mark: DateTime<Utc>,
    operation: Operation,
    replace: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sandbox::dap::{DapConfig, TableSpec};
    use sql_sink::LoadEvent;

    use super::*;

    #[tokio::test]
    async fn the_load_observer_sees_each_table_load_in_order() {
        let config = DapConfig::default()
            .with_tables(vec![TableSpec::new("canvas", "users", 25)])
            .with_rows_per_part(10)
            .with_pacing(0, 0);
        let server = sandbox::dap::start(config, sandbox::Faults::new(), sandbox::Stats::new())
            .await
            .unwrap();
        let creds = server.credentials();
        let client = Client::builder()
            .base_url(server.base_url())
            .credentials(
                creds.client_id,
                client_core::SecretString::from(creds.client_secret),
            )
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let replicator = Replicator::open(
            client,
            &format!("sqlite://{}", dir.path().join("r.db").display()),
        )
        .await
        .unwrap()
        .with_options(ReplicateOptions::default().batch_rows(10))
        .with_load_observer(Arc::new(move |e: &LoadEvent<'_>| {
            let line = match e {
                LoadEvent::Started { evolution, .. } => format!("started {}", evolution.created),
                LoadEvent::BatchWritten { rows, .. } => format!("batch {rows}"),
                LoadEvent::Committing { watermark, .. } => {
                    format!("committing {:?}", watermark.details)
                }
                LoadEvent::Committed { summary, .. } => {
                    format!("committed {}", summary.upserted_rows)
                }
                other => format!("{other:?}"),
            };
            log.lock().unwrap().push(format!("{} {line}", e.table()));
        }));
        let report = replicator.init("canvas", "users").await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let job = report.job_id.unwrap();
        let rows: usize = seen
            .iter()
            .filter_map(|l| l.strip_prefix("canvas.users batch "))
            .map(|n| n.parse::<usize>().unwrap())
            .sum();
        assert_eq!(rows, 25, "{seen:?}");
        assert!(seen.len() >= 3 + 3, "25 rows in batches of 10: {seen:?}");
        assert_eq!(seen[0], "canvas.users started true");
        assert_eq!(
            seen[seen.len() - 2..],
            [
                format!(
                    "canvas.users committing {:?}",
                    Some(json!({"command": "initdb", "job_id": job}))
                ),
                "canvas.users committed 25".to_string(),
            ]
        );
    }
}
