//! [`Sink`]: the one entry point, whatever the backend, and [`Load`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::evolve::EvolutionReport;
use crate::model::{TableDef, TableName};
use crate::observe::{BatchKind, LoadEvent, LoadObserver};
use crate::rows::RowBatch;
use crate::sqlite::{self, LoadCmd, SqliteSink};
use crate::value::Value;
use crate::watermark::{TableStatus, Watermark};

#[cfg(feature = "postgres")]
use crate::postgres::{PgLoad, PgSink};

/// Which database a [`Sink`] writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A fault to inject into the next load, for crash-safety tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// After this many batches (upserts or deletes) have been applied, the
    /// next batch, or the commit, fails with [`Error::InjectedFailure`] and
    /// the load is rolled back.
    FailAfterBatches(usize),
}

/// What a committed load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LoadSummary {
    /// Rows given to [`Load::upsert`].
    pub upserted_rows: u64,
    /// Rows that [`Load::delete`] removed (keys not present do not count).
    pub deleted_rows: u64,
    /// Non-empty batches applied.
    pub batches: usize,
}

enum Backend {
    Sqlite(SqliteSink),
    #[cfg(feature = "postgres")]
    Postgres(Box<PgSink>),
}

/// A database that keyed tables are loaded into: SQLite or PostgreSQL.
///
/// ```no_run
/// use sql_sink::{Column, RowBatch, Sink, SqlType, TableDef, Watermark};
/// # async fn demo() -> Result<(), sql_sink::Error> {
/// let mut sink = Sink::open("sqlite://replica.db").await?;
/// let def = TableDef::new("canvas", "users", vec![
///     Column::new("id", SqlType::Int64, false),
///     Column::new("name", SqlType::Text, true),
/// ], ["id"]);
/// let mut load = sink.begin_load(&def).await?;
/// let mut rows = RowBatch::new(2);
/// rows.push_row([Some("1"), Some("Ada")])?;
/// load.upsert(&mut rows).await?;
/// let mut gone = RowBatch::new(1);
/// gone.push_row([Some("7")])?;
/// load.delete(&mut gone).await?;
/// load.commit(Watermark::new("2024-05-01T00:00:00Z")).await?;
/// # Ok(()) }
/// ```
pub struct Sink {
    backend: Backend,
    fault: Option<Fault>,
    observer: Option<Arc<dyn LoadObserver>>,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the connection string: it may hold a password.
        match &self.backend {
            Backend::Sqlite(s) => f.debug_struct("Sink").field("sqlite", &s.path()).finish(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => f
                .debug_struct("Sink")
                .field("postgres", &p.describe())
                .finish(),
        }
    }
}

/// Where a connection string points.
enum Target {
    Sqlite(PathBuf),
    Postgres,
}

fn classify(url: &str) -> Result<Target> {
    if let Some(rest) = url.strip_prefix("sqlite://") {
        if rest.is_empty() {
            return Err(Error::InvalidUrl {
                reason: "`sqlite://` needs a file path, e.g. sqlite://replica.db or sqlite:///var/lib/replica.db".into(),
            });
        }
        return Ok(Target::Sqlite(PathBuf::from(rest)));
    }
    if let Some(rest) = url.strip_prefix("sqlite:")
        && !rest.is_empty()
    {
        return Ok(Target::Sqlite(PathBuf::from(rest)));
    }
    if url.starts_with("postgresql://") || url.starts_with("postgres://") {
        return Ok(Target::Postgres);
    }
    let scheme = url.split_once("://").map(|(s, _)| s.to_string());
    match scheme {
        Some(scheme) => Err(Error::UnsupportedBackend {
            scheme,
            hint: "use sqlite://path.db or postgresql://user:pass@host:port/db",
        }),
        // No scheme at all: a plain file path means SQLite.
        None => Ok(Target::Sqlite(PathBuf::from(url))),
    }
}

impl Sink {
    /// Open a sink from a connection string: `sqlite://path.db` (relative),
    /// `sqlite:///abs/path.db`, a bare file path (SQLite), or
    /// `postgresql://user:pass@host:port/db` (feature `postgres`).
    ///
    /// Creates the meta table if needed.
    pub async fn open(url: &str) -> Result<Sink> {
        match classify(url)? {
            Target::Sqlite(path) => Self::open_sqlite(&path).await,
            Target::Postgres => Self::open_postgres(url).await,
        }
    }

    /// Open (or create) a SQLite database file.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<Sink> {
        Ok(Sink {
            backend: Backend::Sqlite(SqliteSink::open(path.as_ref()).await?),
            fault: None,
            observer: None,
        })
    }

    #[cfg(feature = "postgres")]
    async fn open_postgres(url: &str) -> Result<Sink> {
        Ok(Sink {
            backend: Backend::Postgres(Box::new(PgSink::connect_url(url).await?)),
            fault: None,
            observer: None,
        })
    }

    #[cfg(not(feature = "postgres"))]
    async fn open_postgres(_url: &str) -> Result<Sink> {
        Err(Error::UnsupportedBackend {
            scheme: "postgresql".into(),
            hint: "this build of sql-sink lacks the `postgres` feature; enable it",
        })
    }

    /// Open another connection to the same database (for loading several
    /// tables at once; SQLite still runs one writer at a time). The new
    /// sink shares this one's [observer](Sink::set_observer).
    pub async fn reopen(&self) -> Result<Sink> {
        let backend = match &self.backend {
            Backend::Sqlite(s) => Backend::Sqlite(SqliteSink::open(s.path()).await?),
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => Backend::Postgres(Box::new(p.reconnect().await?)),
        };
        Ok(Sink {
            backend,
            fault: None,
            observer: self.observer.clone(),
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> BackendKind {
        match &self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Install (or, with `None`, remove) the observer that receives the
    /// [`LoadEvent`]s of this sink's loads: progress, metrics, or a stop at
    /// an exact point in a crash test. See [`crate::observe`].
    pub fn set_observer(&mut self, observer: Option<Arc<dyn LoadObserver>>) {
        self.observer = observer;
    }

    /// The installed observer, if any.
    pub fn observer(&self) -> Option<&Arc<dyn LoadObserver>> {
        self.observer.as_ref()
    }

    /// Make the next load fail as described (one shot).
    pub fn inject_fault(&mut self, fault: Fault) {
        self.fault = Some(fault);
    }

    /// Create the table, or evolve it towards `def` (see [`crate::evolve`]),
    /// in its own transaction. Loads do this themselves; call it to see the
    /// report before loading, or to create an empty table.
    pub async fn ensure_table(&mut self, def: &TableDef) -> Result<EvolutionReport> {
        def.validate()?;
        match &mut self.backend {
            Backend::Sqlite(s) => s.ensure(def).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.ensure(def).await,
        }
    }

    /// Start a load into the table: creates or evolves it, then accepts
    /// batches of upserts and deletes; [`Load::commit`] writes them with the
    /// watermark in one transaction. Dropping the [`Load`] rolls everything
    /// back, including the table change.
    pub async fn begin_load(&mut self, def: &TableDef) -> Result<Load<'_>> {
        self.begin(def, false).await
    }

    /// Start a load into a new, empty copy of the table that replaces the
    /// old one (data, columns, key) when committed, in the same transaction:
    /// readers see the old table until then, never an empty one. Use it to
    /// re-initialise a table, e.g. after an incompatible schema change.
    pub async fn begin_replace(&mut self, def: &TableDef) -> Result<Load<'_>> {
        self.begin(def, true).await
    }

    async fn begin(&mut self, def: &TableDef, replace: bool) -> Result<Load<'_>> {
        def.validate()?;
        let fail_after = self.fault.take().map(|Fault::FailAfterBatches(k)| k);
        let common = LoadCommon {
            table: def.table_name(),
            columns: def.columns.len(),
            key_columns: def.primary_key.len(),
            batches: 0,
            fail_after,
            poisoned: false,
            observer: self.observer.clone(),
        };
        let (inner, report) = match &mut self.backend {
            Backend::Sqlite(s) => {
                let (cmds, report) = s.begin(def, replace).await?;
                (
                    LoadInner::Sqlite(
                        SqliteLoad {
                            cmds,
                            pending: None,
                            spare: Vec::new(),
                            deleted: 0,
                        },
                        std::marker::PhantomData,
                    ),
                    report,
                )
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => {
                let (load, report) = p.begin(def, replace).await?;
                (LoadInner::Postgres(Box::new(load)), report)
            }
        };
        if report.is_unchanged() {
            tracing::debug!(table = %common.table, replace, "load started");
        } else {
            tracing::info!(
                table = %common.table,
                replace,
                created = report.created,
                added = ?report.added_columns,
                widened = report.widened_columns.len(),
                enum_values_added = report.enum_values_added.len(),
                "load started; table structure changed"
            );
        }
        if !report.kept_columns.is_empty() {
            tracing::warn!(
                table = %common.table,
                kept = ?report.kept_columns,
                "columns missing from the definition are kept with their data"
            );
        }
        common.emit(&LoadEvent::Started {
            table: &common.table,
            replace,
            evolution: &report,
        });
        Ok(Load {
            inner,
            common,
            report,
            _sink: std::marker::PhantomData,
        })
    }

    /// The table's committed watermark; `None` if the table is unknown or
    /// no load has committed.
    pub async fn watermark(&self, table: &TableName) -> Result<Option<Watermark>> {
        Ok(self.table_status(table).await?.and_then(|s| s.watermark))
    }

    /// The table's definition, watermark and row count, if the sink manages it.
    pub async fn table_status(&self, table: &TableName) -> Result<Option<TableStatus>> {
        table.validate()?;
        let mut v = match &self.backend {
            Backend::Sqlite(s) => s.status(Some(table)).await?,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.status(Some(table)).await?,
        };
        Ok(v.pop())
    }

    /// All managed tables, ordered by namespace and name.
    pub async fn list_tables(&self) -> Result<Vec<TableStatus>> {
        match &self.backend {
            Backend::Sqlite(s) => s.status(None).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.status(None).await,
        }
    }

    /// Drop the table and its meta row in one transaction. Returns whether
    /// the sink knew the table.
    pub async fn drop_table(&mut self, table: &TableName) -> Result<bool> {
        table.validate()?;
        match &mut self.backend {
            Backend::Sqlite(s) => s.drop_table(table).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.drop_table(table).await,
        }
    }

    /// Every row of the table, ordered by primary key, columns in the order
    /// of its current definition ([`TableStatus::definition`]), values
    /// normalised so both backends return equal results. Meant for tests and
    /// small tables: it holds the whole table in memory.
    pub async fn read_rows(&self, table: &TableName) -> Result<Vec<Vec<Value>>> {
        table.validate()?;
        match &self.backend {
            Backend::Sqlite(s) => s.read_rows(table).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(p) => p.read_rows(table).await,
        }
    }
}

struct LoadCommon {
    table: TableName,
    columns: usize,
    key_columns: usize,
    batches: usize,
    fail_after: Option<usize>,
    poisoned: bool,
    observer: Option<Arc<dyn LoadObserver>>,
}

impl LoadCommon {
    fn emit(&self, event: &LoadEvent<'_>) {
        if let Some(observer) = &self.observer {
            observer.on_event(event);
        }
    }

    fn batch_written(&self, kind: BatchKind, rows: usize) {
        self.emit(&LoadEvent::BatchWritten {
            table: &self.table,
            kind,
            rows,
            batches: self.batches,
        });
    }

    /// Shape check and fault injection before a batch or the commit.
    fn admit(&mut self, batch: Option<(&RowBatch, usize, &'static str)>) -> Result<()> {
        if self.poisoned {
            return Err(Error::LoadAborted {
                table: self.table.clone(),
            });
        }
        if let Some((b, expected, what)) = batch
            && b.columns() != expected
        {
            return Err(Error::BatchShape {
                table: self.table.clone(),
                what,
                expected,
                got: b.columns(),
            });
        }
        if self.fail_after.is_some_and(|k| self.batches >= k) {
            self.poisoned = true;
            return Err(Error::InjectedFailure {
                after_batches: self.batches,
            });
        }
        Ok(())
    }
}

enum Pending {
    Upsert(oneshot::Receiver<Result<RowBatch>>),
    Delete(oneshot::Receiver<Result<(RowBatch, u64)>>),
}

struct SqliteLoad {
    cmds: mpsc::Sender<LoadCmd>,
    /// The batch the worker is applying while the caller fills the next one.
    pending: Option<Pending>,
    /// Emptied batches handed back by the worker, for reuse.
    spare: Vec<RowBatch>,
    deleted: u64,
}

impl SqliteLoad {
    async fn settle(&mut self) -> Result<()> {
        let batch = match self.pending.take() {
            None => return Ok(()),
            Some(Pending::Upsert(rx)) => rx.await.map_err(|_| Error::WorkerGone)??,
            Some(Pending::Delete(rx)) => {
                let (batch, n) = rx.await.map_err(|_| Error::WorkerGone)??;
                self.deleted += n;
                batch
            }
        };
        if self.spare.len() < 2 {
            self.spare.push(batch);
        }
        Ok(())
    }

    fn take_batch(&mut self, batch: &mut RowBatch) -> RowBatch {
        let columns = batch.columns();
        let fresh = match self.spare.iter().position(|b| b.columns() == columns) {
            Some(i) => self.spare.swap_remove(i),
            None => RowBatch::new(columns),
        };
        std::mem::replace(batch, fresh)
    }

    async fn send(&mut self, cmd: LoadCmd) -> Result<()> {
        self.cmds.send(cmd).await.map_err(|_| Error::WorkerGone)
    }
}

enum LoadInner<'a> {
    /// The marker keeps `'a` used when the `postgres` feature is off.
    Sqlite(SqliteLoad, std::marker::PhantomData<&'a mut ()>),
    #[cfg(feature = "postgres")]
    Postgres(Box<PgLoad<'a>>),
}

/// A load in progress: one transaction holding upserts, deletes and, at
/// [`commit`](Load::commit), the watermark. Dropping it without committing
/// rolls everything back.
///
/// Batches are applied in the order given. On SQLite a batch is applied on
/// the worker thread while the caller fills the next one, and a PostgreSQL
/// initial load streams batches into one open `COPY`, so an error in a
/// batch may be reported by the following call or by `commit`; either way
/// nothing of the load is committed. After any failed call, or a call whose
/// future was dropped before it finished, the load refuses further batches
/// and its commit ([`Error::LoadAborted`]).
pub struct Load<'a> {
    inner: LoadInner<'a>,
    common: LoadCommon,
    report: EvolutionReport,
    _sink: std::marker::PhantomData<&'a mut Sink>,
}

impl fmt::Debug for Load<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Load")
            .field("table", &self.common.table)
            .field("batches", &self.common.batches)
            .finish_non_exhaustive()
    }
}

impl Load<'_> {
    /// What starting the load did to the table (created, columns added,
    /// columns kept although gone upstream, ...).
    pub fn evolution(&self) -> &EvolutionReport {
        &self.report
    }

    /// The table being loaded.
    pub fn table(&self) -> &TableName {
        &self.common.table
    }

    /// Insert or update the rows of `rows` (one cell per column of the
    /// definition, in its order); a row whose key exists replaces the stored
    /// values of the definition's columns. Within a batch the last row with
    /// a key wins. On return `rows` is empty, its buffers ready for reuse.
    pub async fn upsert(&mut self, rows: &mut RowBatch) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let columns = self.common.columns;
        self.common.admit(Some((rows, columns, "one per column")))?;
        // If this future is dropped half-way (a timeout, `select!`), the
        // batch may or may not have been applied: the flag stays set and the
        // load can only be rolled back.
        self.common.poisoned = true;
        let n = rows.len();
        let r = self.upsert_inner(rows).await;
        self.after(r)?;
        self.common.batch_written(BatchKind::Upsert, n);
        Ok(())
    }

    async fn upsert_inner(&mut self, rows: &mut RowBatch) -> Result<()> {
        match &mut self.inner {
            LoadInner::Sqlite(s, _) => {
                s.settle().await?;
                let batch = s.take_batch(rows);
                let (tx, rx) = oneshot::channel();
                s.send(LoadCmd::Upsert(batch, tx)).await?;
                s.pending = Some(Pending::Upsert(rx));
                Ok(())
            }
            #[cfg(feature = "postgres")]
            LoadInner::Postgres(p) => {
                p.upsert(rows).await?;
                rows.clear();
                Ok(())
            }
        }
    }

    /// Delete rows by key: `keys` has one cell per primary key column, in
    /// key order. Keys that do not exist are ignored. On return `keys` is
    /// empty.
    pub async fn delete(&mut self, keys: &mut RowBatch) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let key_columns = self.common.key_columns;
        self.common
            .admit(Some((keys, key_columns, "one per key column")))?;
        // If this future is dropped half-way (a timeout, `select!`), the
        // batch may or may not have been applied: the flag stays set and the
        // load can only be rolled back.
        self.common.poisoned = true;
        let n = keys.len();
        let r = self.delete_inner(keys).await;
        self.after(r)?;
        self.common.batch_written(BatchKind::Delete, n);
        Ok(())
    }

    async fn delete_inner(&mut self, keys: &mut RowBatch) -> Result<()> {
        match &mut self.inner {
            LoadInner::Sqlite(s, _) => {
                s.settle().await?;
                let batch = s.take_batch(keys);
                let (tx, rx) = oneshot::channel();
                s.send(LoadCmd::Delete(batch, tx)).await?;
                s.pending = Some(Pending::Delete(rx));
                Ok(())
            }
            #[cfg(feature = "postgres")]
            LoadInner::Postgres(p) => {
                p.delete(keys).await?;
                keys.clear();
                Ok(())
            }
        }
    }

    fn after(&mut self, r: Result<()>) -> Result<()> {
        match r {
            Ok(()) => {
                self.common.poisoned = false;
                self.common.batches += 1;
                Ok(())
            }
            Err(e) => {
                self.common.poisoned = true;
                Err(e)
            }
        }
    }

    /// Commit every batch together with the table's new watermark. If this
    /// fails, nothing of the load is kept.
    pub async fn commit(mut self, watermark: Watermark) -> Result<LoadSummary> {
        self.common.admit(None)?;
        let common = self.common;
        let committing = LoadEvent::Committing {
            table: &common.table,
            watermark: &watermark,
        };
        let summary = match self.inner {
            LoadInner::Sqlite(mut s, _) => {
                // Every batch applied before the event, so it means what it says.
                s.settle().await?;
                common.emit(&committing);
                let sent = watermark.clone();
                let mut summary = sqlite::load_call(&s.cmds, |r| LoadCmd::Commit(sent, r)).await?;
                summary.deleted_rows = s.deleted;
                summary
            }
            #[cfg(feature = "postgres")]
            LoadInner::Postgres(p) => {
                common.emit(&committing);
                p.commit(&watermark).await?
            }
        };
        tracing::info!(
            table = %common.table,
            upserted = summary.upserted_rows,
            deleted = summary.deleted_rows,
            batches = summary.batches,
            watermark = %watermark.value,
            "load committed"
        );
        common.emit(&LoadEvent::Committed {
            table: &common.table,
            watermark: &watermark,
            summary: &summary,
        });
        Ok(summary)
    }

    /// Abandon the load; the database is left as it was before
    /// [`Sink::begin_load`]. (Dropping the load does the same.)
    pub async fn rollback(self) -> Result<()> {
        match self.inner {
            LoadInner::Sqlite(mut s, _) => {
                // Wait for the batch in flight so the rollback has happened
                // before the sink is used again.
                let _ = s.settle().await;
                Ok(())
            }
            #[cfg(feature = "postgres")]
            LoadInner::Postgres(p) => p.rollback().await,
        }
    }
}
