//! Sync of data sets into SQL tables (feature `sql`).
//!
//! One table per data set, keyed by its primary key, named after the data
//! set in snake case (`User Enrollments` → `bds.user_enrollments`). Columns
//! are the CSV's header names, as text (BDS files are all strings; `NULL` for
//! empty fields). Each extract of the [plan](mod@crate::plan) is applied in one
//! transaction together with the new [`TableState`] as the table's watermark:
//! a full replaces the table (hard deletes vanish), a differential upserts.
//! A crash or error leaves the table at the last committed extract, and the
//! next run continues from there.
//!
//! Progress: the `events` callback of [`sync_data_set`] receives
//! [`SyncEvent`]s (planned, bytes downloaded, rows loaded, extract
//! applied). To watch each extract's transaction more closely (started
//! with its schema change, batch written, committing, committed), install
//! a [`LoadObserver`] on the sink you pass in
//! ([`Sink::set_observer`](sql_sink::Sink::set_observer)); it is called
//! synchronously, which also lets a test stop the sync at an exact point.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bds_client::BdsError> {
//! use bds_client::sync::{SyncOptions, sync_data_set};
//!
//! let client = bds_client::Client::from_env()?.build()?;
//! let mut sink = sql_sink::Sink::open("sqlite://bds.db").await.expect("database");
//! let options = SyncOptions::default().primary_key("Survey Results", ["SurveyId", "UserId"]);
//! let report = sync_data_set(&client, &mut sink, "User Enrollments", &options, None).await?;
//! println!("{}: {} extracts applied ({})", report.table, report.applied.len(), report.plan);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sql_sink::{Column, RowBatch as SinkBatch, Sink, SqlType, TableDef, TableName, Watermark};
/// The sink's observer types, re-exported for [`Sink::set_observer`].
pub use sql_sink::{LoadEvent, LoadObserver};

use crate::archive::ExtractArchive;
use crate::client::Client;
use crate::error::{BdsError, Result};
use crate::known::PrimaryKeys;
use crate::model::Extract;
use crate::plan::{ApplyAction, Gap, Plan, PlanKind, PlanOptions, PlanStep, TableState, plan};
use crate::rows::{Header, Row};

/// How data sets are synced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Namespace (PostgreSQL schema / SQLite table prefix) of the tables.
    pub namespace: String,
    /// Primary keys by data set; the built-in ones plus overrides.
    pub primary_keys: PrimaryKeys,
    /// Planner knobs.
    pub plan: PlanOptions,
    /// Rows per batch handed to the database (default 4,096).
    pub batch_rows: usize,
    /// Where extracts are downloaded (default: a temporary directory).
    pub download_dir: Option<PathBuf>,
    /// Keep downloaded ZIPs after they were applied.
    pub keep_downloads: bool,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            namespace: "bds".into(),
            primary_keys: PrimaryKeys::default(),
            plan: PlanOptions::default(),
            // Larger batches buy no speed (the database is the bottleneck)
            // but cost about 0.8 MB of peak RSS per 1,000 rows (benchmark).
            batch_rows: 4_096,
            download_dir: None,
            keep_downloads: false,
        }
    }
}

impl SyncOptions {
    /// Sets the namespace of the tables.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets (or overrides) the primary key of a data set.
    pub fn primary_key<S: Into<String>>(
        mut self,
        data_set: &str,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.primary_keys.insert(data_set, columns);
        self
    }

    /// Replaces the whole key table (e.g. [`PrimaryKeys::empty`] plus your own).
    pub fn primary_keys(mut self, keys: PrimaryKeys) -> Self {
        self.primary_keys = keys;
        self
    }

    /// Sets the planner knobs.
    pub fn plan_options(mut self, options: PlanOptions) -> Self {
        self.plan = options;
        self
    }

    /// Sets the rows per database batch.
    pub fn batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    /// Downloads into `dir` (kept if [`SyncOptions::keep_downloads`]).
    pub fn download_dir(mut self, dir: impl Into<PathBuf>, keep: bool) -> Self {
        self.download_dir = Some(dir.into());
        self.keep_downloads = keep;
        self
    }
}

/// Progress of a sync, for progress bars and logs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SyncEvent {
    /// The plan is known.
    Planned {
        /// The data set.
        data_set: String,
        /// What will be applied.
        plan: Box<Plan>,
    },
    /// Bytes of step `step`'s download received so far.
    Downloading {
        /// Index into the plan's steps.
        step: usize,
        /// Bytes so far.
        bytes: u64,
        /// Expected total, if known.
        total: Option<u64>,
    },
    /// Rows of step `step` handed to the database so far.
    Loading {
        /// Index into the plan's steps.
        step: usize,
        /// Rows so far.
        rows: u64,
    },
    /// Step `step` was committed with its watermark.
    Applied {
        /// Index into the plan's steps.
        step: usize,
        /// Rows it upserted.
        rows: u64,
    },
}

/// Receives [`SyncEvent`]s; keep it cheap.
pub type SyncEvents = Arc<dyn Fn(&SyncEvent) + Send + Sync>;

/// One extract that was applied.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AppliedExtract {
    /// The extract.
    pub extract: Extract,
    /// Replace (full) or upsert (differential).
    pub action: ApplyAction,
    /// Rows loaded.
    pub rows: u64,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The data set, as the server names it.
    pub data_set: String,
    /// The table it is synced into.
    pub table: TableName,
    /// The kind of run and why (e.g. why a full is needed).
    pub plan: PlanKind,
    /// The extracts applied, in order.
    pub applied: Vec<AppliedExtract>,
    /// Set when the run stopped before an extract that is temporarily unavailable.
    pub stopped_before: Option<Extract>,
    /// Set when the run stopped at a hole in the listed differentials.
    pub gap: Option<Gap>,
    /// The table's state after the run.
    pub state: TableState,
}

/// What a sync of one data set would do, computed without downloading.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SyncPlan {
    /// The data set, as the server names it.
    pub data_set: String,
    /// The table it is synced into.
    pub table: TableName,
    /// Its primary key columns.
    pub primary_key: Vec<String>,
    /// The table's state now.
    pub state: TableState,
    /// The extracts to apply.
    pub plan: Plan,
}

/// Resolves a data set (name, schema id or plugin id), reads its table's
/// state and plans the sync. Fails with [`BdsError::UnknownPrimaryKey`]
/// before anything is downloaded if the key is not known.
pub async fn plan_sync(
    client: &Client,
    sink: &Sink,
    data_set: &str,
    options: &SyncOptions,
) -> Result<SyncPlan> {
    let resolved = client.data_set_extracts(data_set).await?;
    let name = resolved.name.clone();
    let primary_key = options
        .primary_keys
        .get(&name)
        .or_else(|| options.primary_keys.get(data_set))
        .ok_or_else(|| BdsError::UnknownPrimaryKey {
            data_set: name.clone(),
        })?
        .to_vec();
    let table = TableName::new(options.namespace.clone(), table_name(&name));
    let state = read_state(sink, &table).await.map_err(|e| match e {
        Read::Sql(source) => BdsError::Sql {
            data_set: name.clone(),
            source: Box::new(source),
        },
        Read::Bad(message) => BdsError::Config(format!(
            "the watermark of table {table} is unreadable: {message}"
        )),
    })?;
    let plan = plan(&state, &resolved.extracts, &options.plan);
    Ok(SyncPlan {
        data_set: name,
        table,
        primary_key,
        state,
        plan,
    })
}

/// Syncs one data set (name, schema id or plugin id) into `sink`: plans,
/// then downloads and applies each extract in its own transaction.
pub async fn sync_data_set(
    client: &Client,
    sink: &mut Sink,
    data_set: &str,
    options: &SyncOptions,
    events: Option<SyncEvents>,
) -> Result<SyncReport> {
    let SyncPlan {
        data_set: name,
        table,
        primary_key,
        mut state,
        plan: planned,
    } = plan_sync(client, sink, data_set, options).await?;
    tracing::info!(data_set = %name, %table, plan = %planned.kind, steps = planned.steps.len(), "BDS sync planned");
    emit(
        &events,
        &SyncEvent::Planned {
            data_set: name.clone(),
            plan: Box::new(planned.clone()),
        },
    );

    let scratch = Scratch::new(options)?;
    let mut applied = Vec::with_capacity(planned.steps.len());
    for (index, step) in planned.steps.iter().enumerate() {
        let zip = scratch.path_for(&step.extract);
        let saved = client
            .download(&step.extract, &zip, download_progress(&events, index))
            .await?;
        let next = state.after(step);
        let target = Target {
            table: &table,
            key: &primary_key,
            data_set: &name,
        };
        let rows = apply(
            client,
            sink,
            &target,
            step,
            &zip,
            next,
            options.batch_rows,
            index,
            &events,
        )
        .await;
        scratch.done_with(&zip);
        let rows = rows?;
        state = next;
        emit(&events, &SyncEvent::Applied { step: index, rows });
        tracing::info!(data_set = %name, extract = %step.extract.describe(), rows, "BDS extract applied");
        applied.push(AppliedExtract {
            extract: step.extract.clone(),
            action: step.action,
            rows,
            bytes: saved.bytes,
        });
    }
    Ok(SyncReport {
        data_set: name,
        table,
        plan: planned.kind,
        applied,
        stopped_before: planned.stopped_before,
        gap: planned.gap,
        state,
    })
}

/// `User Enrollments` → `user_enrollments`.
pub fn table_name(data_set: &str) -> String {
    let mut name = String::with_capacity(data_set.len());
    for c in data_set.chars() {
        if c.is_alphanumeric() {
            name.extend(c.to_lowercase());
        } else if !name.ends_with('_') && !name.is_empty() {
            name.push('_');
        }
    }
    name.trim_end_matches('_').to_string()
}

/// The watermark value of a table: its [`TableState`] as JSON.
pub fn watermark_for(state: &TableState, extract: &Extract) -> Watermark {
    let value = serde_json::to_string(state).unwrap_or_default();
    let mut watermark = Watermark::new(value).with_details(serde_json::json!({
        "extract": extract.describe(),
        "plugin_id": extract.plugin_id,
        "version": extract.version,
    }));
    if let Some(at) = state.watermark() {
        watermark = watermark.with_at(at);
    }
    watermark
}

enum Read {
    Sql(sql_sink::Error),
    Bad(String),
}

async fn read_state(sink: &Sink, table: &TableName) -> std::result::Result<TableState, Read> {
    match sink.watermark(table).await.map_err(Read::Sql)? {
        None => Ok(TableState::default()),
        Some(w) => {
            serde_json::from_str(&w.value).map_err(|e| Read::Bad(format!("{e} in {:?}", w.value)))
        }
    }
}

struct Target<'a> {
    table: &'a TableName,
    key: &'a [String],
    data_set: &'a str,
}

/// Loads one extract in one transaction, committed with `next` as watermark.
#[allow(clippy::too_many_arguments)]
async fn apply(
    client: &Client,
    sink: &mut Sink,
    target: &Target<'_>,
    step: &PlanStep,
    zip: &Path,
    next: TableState,
    batch_rows: usize,
    index: usize,
    events: &Option<SyncEvents>,
) -> Result<u64> {
    let sql = |source| sql_error(target.data_set, source);
    let job = CellJob {
        zip: zip.to_path_buf(),
        limits: client.archive_limits(),
        table: target.table.clone(),
        key: target.key.to_vec(),
        data_set: target.data_set.to_string(),
        batch_rows,
    };
    let mut reader = CellReader::spawn(job);
    let def = match reader.cells.recv().await {
        Some(Ok(Cells::Definition(def))) => def,
        Some(Err(e)) => return Err(e),
        _ => return Err(reader.failure().await),
    };
    let mut load = match step.action {
        ApplyAction::Replace => sink.begin_replace(&def).await,
        ApplyAction::Upsert => sink.begin_load(&def).await,
    }
    .map_err(sql)?;
    let mut rows = 0u64;
    // An error anywhere below drops `load`, which rolls the whole extract back.
    while let Some(item) = reader.cells.recv().await {
        let Cells::Rows(mut batch) = item? else {
            continue;
        };
        rows += batch.len() as u64;
        load.upsert(&mut batch).await.map_err(sql)?;
        let _ = reader.recycle.send(batch);
        emit(events, &SyncEvent::Loading { step: index, rows });
    }
    // The channel also closes when the reader dies; only a clean end commits.
    reader.finished().await?;
    load.commit(watermark_for(&next, &step.extract))
        .await
        .map_err(sql)?;
    Ok(rows)
}

fn sql_error(data_set: &str, source: sql_sink::Error) -> BdsError {
    BdsError::Sql {
        data_set: data_set.to_string(),
        source: Box::new(source),
    }
}

/// What the blocking reader thread needs.
struct CellJob {
    zip: PathBuf,
    limits: crate::archive::ArchiveLimits,
    table: TableName,
    key: Vec<String>,
    data_set: String,
    batch_rows: usize,
}

/// What the reader thread sends: the table definition, then row batches.
enum Cells {
    Definition(TableDef),
    Rows(SinkBatch),
}

/// Parses an extract on a blocking thread straight into the sink's batches,
/// which come back empty through `recycle` so their buffers are reused: no
/// allocation per row, and at most two batches in flight.
struct CellReader {
    cells: tokio::sync::mpsc::Receiver<Result<Cells>>,
    recycle: std::sync::mpsc::Sender<SinkBatch>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl CellReader {
    fn spawn(job: CellJob) -> Self {
        let (tx, cells) = tokio::sync::mpsc::channel(2);
        let (recycle, spare) = std::sync::mpsc::channel();
        let worker = tokio::task::spawn_blocking(move || {
            if let Err(e) = produce_cells(&job, &tx, &spare) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        CellReader {
            cells,
            recycle,
            worker: Some(worker),
        }
    }

    /// Waits for the reader thread; an error if it panicked.
    async fn finished(&mut self) -> Result<()> {
        match self.worker.take() {
            Some(worker) => worker
                .await
                .map_err(|e| BdsError::Task(format!("the extract reader failed: {e}"))),
            None => Ok(()),
        }
    }

    async fn failure(&mut self) -> BdsError {
        match self.finished().await {
            Err(e) => e,
            Ok(()) => BdsError::Task("the extract reader ended without a header".into()),
        }
    }
}

fn produce_cells(
    job: &CellJob,
    tx: &tokio::sync::mpsc::Sender<Result<Cells>>,
    spare: &std::sync::mpsc::Receiver<SinkBatch>,
) -> Result<()> {
    let mut archive = ExtractArchive::open(&job.zip, job.limits)?;
    let mut rows = archive.rows()?;
    let def = table_def(&job.table, rows.header(), &job.key)?;
    let names: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).collect();
    let map = rows.header().map_columns(&names);
    let columns = def.columns.len();
    if tx.blocking_send(Ok(Cells::Definition(def))).is_err() {
        return Ok(()); // the consumer went away
    }
    let mut row = Row::default();
    loop {
        let mut batch = spare
            .try_recv()
            .unwrap_or_else(|_| SinkBatch::with_capacity(columns, job.batch_rows, 32 * columns));
        let mut more = true;
        while batch.len() < job.batch_rows {
            if !rows.read_row(&mut row)? {
                more = false;
                break;
            }
            batch
                .push_row(row.project(&map))
                .map_err(|e| sql_error(&job.data_set, e))?;
        }
        if !batch.is_empty() && tx.blocking_send(Ok(Cells::Rows(batch))).is_err() {
            return Ok(());
        }
        if !more {
            return Ok(());
        }
    }
}

/// A text column per header name (first spelling wins among names equal
/// but for case), the key columns non-null, spelled as in the header.
fn table_def(table: &TableName, header: &Header, key: &[String]) -> Result<TableDef> {
    let key: Vec<String> = key
        .iter()
        .map(|k| header.require(k).map(|i| header.names()[i].clone()))
        .collect::<Result<_>>()?;
    let mut seen = std::collections::HashSet::new();
    let columns = header
        .names()
        .iter()
        .filter(|n| !n.is_empty() && seen.insert(n.to_lowercase()))
        .map(|n| Column::new(n.clone(), SqlType::Text, !key.contains(n)))
        .collect();
    Ok(TableDef::new(
        table.schema.clone(),
        table.name.clone(),
        columns,
        key,
    ))
}

fn emit(events: &Option<SyncEvents>, event: &SyncEvent) {
    if let Some(events) = events {
        events(event);
    }
}

fn download_progress(
    events: &Option<SyncEvents>,
    step: usize,
) -> Option<Arc<dyn Fn(client_core::download::Progress) + Send + Sync>> {
    let events = events.clone()?;
    Some(Arc::new(move |p| {
        events(&SyncEvent::Downloading {
            step,
            bytes: p.bytes,
            total: p.total,
        })
    }))
}

/// Where downloads go: the configured directory or a temporary one.
struct Scratch {
    dir: PathBuf,
    keep: bool,
    _temp: Option<tempfile::TempDir>,
}

impl Scratch {
    fn new(options: &SyncOptions) -> Result<Self> {
        match &options.download_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| BdsError::io(format!("cannot create {}", dir.display()), e))?;
                Ok(Scratch {
                    dir: dir.clone(),
                    keep: options.keep_downloads,
                    _temp: None,
                })
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("bds-sync-")
                    .tempdir()
                    .map_err(|e| BdsError::io("cannot create a temporary download directory", e))?;
                Ok(Scratch {
                    dir: temp.path().to_path_buf(),
                    keep: false,
                    _temp: Some(temp),
                })
            }
        }
    }

    fn path_for(&self, extract: &Extract) -> PathBuf {
        let when = extract.time().map_or(0, |t| t.timestamp());
        let plugin: String = extract
            .plugin_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        self.dir
            .join(format!("{}-{plugin}-{when}.zip", extract.bds_type))
    }

    fn done_with(&self, zip: &Path) {
        if !self.keep {
            let _ = std::fs::remove_file(zip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_snake_case() {
        assert_eq!(table_name("User Enrollments"), "user_enrollments");
        assert_eq!(
            table_name("Organizational Units (Full)"),
            "organizational_units_full"
        );
        assert_eq!(table_name("  Grade   Results "), "grade_results");
    }

    #[test]
    fn the_definition_keys_on_header_spelling_and_drops_duplicate_names() {
        let header = Header::new("x.csv", ["OrgUnitId", "UserId", "RoleName", "roleName", ""]);
        let table = TableName::new("bds", "user_enrollments");
        let def = table_def(&table, &header, &["orgunitid".into(), "USERID".into()]).unwrap();
        assert_eq!(def.primary_key, ["OrgUnitId", "UserId"]);
        let names: Vec<_> = def
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.nullable))
            .collect();
        assert_eq!(
            names,
            [("OrgUnitId", false), ("UserId", false), ("RoleName", true)]
        );
        let err = table_def(&table, &header, &["RoleId".into()]).unwrap_err();
        assert!(matches!(err, BdsError::MissingColumn { .. }));
    }

    #[test]
    fn the_watermark_round_trips_the_table_state() {
        use chrono::TimeZone;
        let t = chrono::Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        let state = TableState {
            last_full: Some(t),
            last_differential: None,
        };
        let extract = Extract::new("p", crate::BdsType::Full, t);
        let w = watermark_for(&state, &extract);
        assert_eq!(serde_json::from_str::<TableState>(&w.value).unwrap(), state);
        assert_eq!(w.at, Some(t));
    }
}
