//! The SQLite backend: one dedicated thread per [`crate::Sink`] owns the
//! connection; the async API sends it commands over channels.
//!
//! Layout: SQLite has no schemas, so table `users` of namespace `canvas` is
//! the table `canvas__users` (namespaces may not contain `__`), and the meta
//! table is `sql_sink__tables`. The database runs in WAL mode with
//! `synchronous = NORMAL` (a committed load survives a crash of the program;
//! the last commits may be lost on power failure), and a load holds the write
//! lock (`BEGIN IMMEDIATE`) from its start to its commit. A database the
//! sink creates uses 16 KiB pages. A load into a table that is empty when
//! the load begins writes with `INSERT OR REPLACE`, other loads with
//! `INSERT .. ON CONFLICT DO UPDATE`; either way a later row with the same
//! key wins.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::LoadSummary;
use crate::error::{Error, Result};
use crate::evolve::{self, EvolutionReport, Step};
use crate::ident::{push_quoted, quote};
use crate::model::{SqlType, TableDef, TableName};
use crate::rows::RowBatch;
use crate::value::{self, Value};
use crate::watermark::{TableStatus, Watermark};

const META_TABLE: &str = "sql_sink__tables";

/// How long a connection waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(300);

/// The physical SQLite table name of a table.
pub(crate) fn physical_name(table: &TableName) -> String {
    format!("{}__{}", table.schema, table.name)
}

/// Where a replacement is loaded: its namespace part is the reserved
/// `sql_sink`, so no managed table can have this name.
fn replace_name(table: &TableName) -> String {
    format!("sql_sink__replace__{}__{}", table.schema, table.name)
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Cmd {
    Ensure(TableDef, Reply<EvolutionReport>),
    Begin {
        def: TableDef,
        replace: bool,
        reply: Reply<EvolutionReport>,
        load: mpsc::Receiver<LoadCmd>,
    },
    Status(Option<TableName>, Reply<Vec<TableStatus>>),
    Drop(TableName, Reply<bool>),
    Read(TableName, Reply<Vec<Vec<Value>>>),
}

pub(crate) enum LoadCmd {
    Upsert(RowBatch, Reply<RowBatch>),
    Delete(RowBatch, Reply<(RowBatch, u64)>),
    Commit(Watermark, Reply<LoadSummary>),
}

/// Handle to the worker thread.
pub(crate) struct SqliteSink {
    cmds: mpsc::Sender<Cmd>,
    path: PathBuf,
}

impl SqliteSink {
    pub(crate) async fn open(path: &Path) -> Result<Self> {
        let (cmds, rx) = mpsc::channel(4);
        let (ready_tx, ready_rx) = oneshot::channel();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("sql-sink-sqlite".into())
            .spawn(move || match open_connection(&owned) {
                Ok(conn) => {
                    let _ = ready_tx.send(Ok(()));
                    worker(conn, rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| Error::InvalidUrl {
                reason: format!("cannot start the SQLite thread: {e}"),
            })?;
        ready_rx.await.map_err(|_| Error::WorkerGone)??;
        Ok(Self {
            cmds,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(make(tx))
            .await
            .map_err(|_| Error::WorkerGone)?;
        rx.await.map_err(|_| Error::WorkerGone)?
    }

    pub(crate) async fn ensure(&self, def: &TableDef) -> Result<EvolutionReport> {
        let def = def.clone();
        self.call(|r| Cmd::Ensure(def, r)).await
    }

    pub(crate) async fn begin(
        &self,
        def: &TableDef,
        replace: bool,
    ) -> Result<(mpsc::Sender<LoadCmd>, EvolutionReport)> {
        let (load_tx, load_rx) = mpsc::channel(2);
        let def = def.clone();
        let report = self
            .call(|reply| Cmd::Begin {
                def,
                replace,
                reply,
                load: load_rx,
            })
            .await?;
        Ok((load_tx, report))
    }

    pub(crate) async fn status(&self, table: Option<&TableName>) -> Result<Vec<TableStatus>> {
        let table = table.cloned();
        self.call(|r| Cmd::Status(table, r)).await
    }

    pub(crate) async fn drop_table(&self, table: &TableName) -> Result<bool> {
        let table = table.clone();
        self.call(|r| Cmd::Drop(table, r)).await
    }

    pub(crate) async fn read_rows(&self, table: &TableName) -> Result<Vec<Vec<Value>>> {
        let table = table.clone();
        self.call(|r| Cmd::Read(table, r)).await
    }
}

/// Send one load command and wait for its reply.
pub(crate) async fn load_call<T>(
    load: &mpsc::Sender<LoadCmd>,
    make: impl FnOnce(Reply<T>) -> LoadCmd,
) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    load.send(make(tx)).await.map_err(|_| Error::WorkerGone)?;
    rx.await.map_err(|_| Error::WorkerGone)?
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn =
        Connection::open(path).map_err(Error::sqlite(format!("opening {}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(Error::sqlite("setting the busy timeout"))?;
    // `page_size` must come first: it only takes effect on a database
    // that has no content yet (a new file), and bulk-loaded tables are
    // cheaper to build in 16 KiB pages (fewer page splits, WAL frames and
    // cache look-ups per row). Existing databases keep their page size.
    conn.execute_batch(
        "PRAGMA page_size = 16384;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -65536;
         PRAGMA temp_store = MEMORY;",
    )
    .map_err(Error::sqlite("configuring the database"))?;
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {} (
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            definition TEXT NOT NULL,
            watermark TEXT,
            watermark_at TEXT,
            schema_version INTEGER,
            details TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (namespace, name)
        )",
        quote(META_TABLE)
    ))
    .map_err(Error::sqlite("creating the meta table"))?;
    Ok(conn)
}

fn worker(mut conn: Connection, mut rx: mpsc::Receiver<Cmd>) {
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Cmd::Ensure(def, reply) => {
                let _ = reply.send(ensure(&mut conn, &def));
            }
            Cmd::Begin {
                def,
                replace,
                reply,
                load,
            } => load_session(&mut conn, &def, replace, reply, load),
            Cmd::Status(table, reply) => {
                let _ = reply.send(status(&conn, table.as_ref()));
            }
            Cmd::Drop(table, reply) => {
                let _ = reply.send(drop_table(&mut conn, &table));
            }
            Cmd::Read(table, reply) => {
                let _ = reply.send(read_rows(&conn, &table));
            }
        }
    }
}

// ---------------------------------------------------------------- meta table

struct MetaRow {
    definition: TableDef,
    watermark: Option<Watermark>,
    updated_at: DateTime<Utc>,
}

fn read_meta(conn: &Connection, table: &TableName) -> Result<Option<MetaRow>> {
    let sql = format!(
        "SELECT definition, watermark, watermark_at, schema_version, details, updated_at FROM {} \
         WHERE namespace = ?1 AND name = ?2",
        quote(META_TABLE)
    );
    let raw = conn
        .query_row(&sql, (&table.schema, &table.name), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
            ))
        })
        .optional()
        .map_err(Error::sqlite(format!("reading the meta row of {table}")))?;
    let Some((definition, wm, wm_at, version, details, updated)) = raw else {
        return Ok(None);
    };
    let corrupt = |reason: String| Error::CorruptMeta {
        table: table.clone(),
        reason,
    };
    let definition: TableDef =
        serde_json::from_str(&definition).map_err(|e| corrupt(format!("definition: {e}")))?;
    let watermark = match wm {
        None => None,
        Some(value) => Some(Watermark {
            value,
            at: wm_at
                .map(|t| value::parse_timestamp(&t))
                .transpose()
                .map_err(|e| corrupt(format!("watermark_at: {e}")))?,
            schema_version: version,
            details: details
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(|e| corrupt(format!("details: {e}")))?,
        }),
    };
    let updated_at =
        value::parse_timestamp(&updated).map_err(|e| corrupt(format!("updated_at: {e}")))?;
    Ok(Some(MetaRow {
        definition,
        watermark,
        updated_at,
    }))
}

fn write_meta(conn: &Connection, def: &TableDef, watermark: Option<&Watermark>) -> Result<()> {
    let definition = serde_json::to_string(def).map_err(|e| Error::CorruptMeta {
        table: def.table_name(),
        reason: format!("definition cannot be encoded: {e}"),
    })?;
    let now = value::format_timestamp(&Utc::now());
    let ctx = || format!("writing the meta row of {}", def.table_name());
    match watermark {
        None => {
            let sql = format!(
                "INSERT INTO {} (namespace, name, definition, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (namespace, name) DO UPDATE SET definition = excluded.definition, \
                 updated_at = excluded.updated_at",
                quote(META_TABLE)
            );
            conn.execute(&sql, (&def.schema, &def.name, &definition, &now))
                .map_err(Error::sqlite(ctx()))?;
        }
        Some(w) => {
            let sql = format!(
                "INSERT INTO {} (namespace, name, definition, watermark, watermark_at, schema_version, details, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (namespace, name) DO UPDATE SET definition = excluded.definition, \
                 watermark = excluded.watermark, watermark_at = excluded.watermark_at, \
                 schema_version = excluded.schema_version, details = excluded.details, \
                 updated_at = excluded.updated_at",
                quote(META_TABLE)
            );
            // Microseconds, rounded, as PostgreSQL stores them.
            let at =
                w.at.map(|t| t.duration_round(TimeDelta::microseconds(1)).unwrap_or(t))
                    .as_ref()
                    .map(value::format_timestamp);
            let details = w.details.as_ref().map(|d| d.to_string());
            conn.execute(
                &sql,
                rusqlite::params![
                    def.schema,
                    def.name,
                    definition,
                    w.value,
                    at,
                    w.schema_version,
                    details,
                    now
                ],
            )
            .map_err(Error::sqlite(ctx()))?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- DDL

fn create_sql(physical: &str, def: &TableDef) -> String {
    let mut sql = String::from("CREATE TABLE ");
    push_quoted(&mut sql, physical);
    sql.push_str(" (");
    for c in &def.columns {
        push_quoted(&mut sql, &c.name);
        sql.push(' ');
        sql.push_str(c.sql_type.sqlite_type());
        if def.primary_key.contains(&c.name) {
            sql.push_str(" NOT NULL");
        }
        sql.push_str(", ");
    }
    sql.push_str("PRIMARY KEY (");
    for (i, k) in def.primary_key.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        push_quoted(&mut sql, k);
    }
    sql.push_str("))");
    sql
}

/// Bring the table to `def` inside `tx`; returns the report and the physical
/// definition now in force.
fn evolve_in(tx: &Transaction<'_>, def: &TableDef) -> Result<(EvolutionReport, TableDef)> {
    let table = def.table_name();
    let existing = read_meta(tx, &table)?;
    let plan = evolve::plan(existing.as_ref().map(|m| &m.definition), def)?;
    let physical = physical_name(&table);
    for step in &plan.steps {
        let ddl = match step {
            Step::Create => create_sql(&physical, &plan.physical),
            Step::AddColumn(c) => format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                quote(&physical),
                quote(&c.name),
                c.sql_type.sqlite_type()
            ),
            // Types are affinities in SQLite and NOT NULL is enforced by the
            // sink for non-key columns, so these only change the stored definition.
            Step::SetType { .. } | Step::SetEnumValues { .. } | Step::DropNotNull(_) => continue,
        };
        tx.execute_batch(&ddl)
            .map_err(Error::sqlite(format!("changing the structure of {table}")))?;
    }
    if !plan.report.is_unchanged() || existing.is_none() {
        write_meta(
            tx,
            &plan.physical,
            existing.and_then(|m| m.watermark).as_ref(),
        )?;
    }
    Ok((plan.report, plan.physical))
}

fn ensure(conn: &mut Connection, def: &TableDef) -> Result<EvolutionReport> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(Error::sqlite("starting a transaction"))?;
    let (report, _) = evolve_in(&tx, def)?;
    tx.commit()
        .map_err(Error::sqlite("committing a table change"))?;
    Ok(report)
}

// ---------------------------------------------------------------- loads

/// How to turn one cell of a column into what SQLite stores.
struct ColumnPlan {
    name: String,
    ty: SqlType,
    nullable: bool,
    enum_values: EnumValues,
}

/// Allowed enum values; small sets are scanned, large ones hashed.
enum EnumValues {
    None,
    Few(Vec<String>),
    Many(HashSet<String>),
}

impl EnumValues {
    fn contains(&self, v: &str) -> bool {
        match self {
            Self::None => false,
            Self::Few(list) => list.iter().any(|x| x == v),
            Self::Many(set) => set.contains(v),
        }
    }
}

impl ColumnPlan {
    fn new(physical: &TableDef, name: &str) -> Self {
        let col = physical.columns.iter().find(|c| c.name == name);
        let ty = col.map(|c| c.sql_type.clone()).unwrap_or(SqlType::Text);
        let enum_values = match &ty {
            SqlType::Enum { values, .. } if values.len() <= 16 => EnumValues::Few(values.clone()),
            SqlType::Enum { values, .. } => EnumValues::Many(values.iter().cloned().collect()),
            _ => EnumValues::None,
        };
        Self {
            name: name.to_string(),
            nullable: col.is_none_or(|c| c.nullable)
                && !physical.primary_key.iter().any(|k| k == name),
            ty,
            enum_values,
        }
    }

    /// The value to bind for `cell`; `scratch` holds converted text until
    /// it is bound (SQLite copies bound text).
    fn convert<'a>(
        &self,
        cell: Option<&'a str>,
        scratch: &'a mut String,
    ) -> Result<ToSqlOutput<'a>, String> {
        let Some(cell) = cell else {
            return if self.nullable {
                Ok(ToSqlOutput::Owned(SqlValue::Null))
            } else {
                Err("NULL in a column that does not accept NULL".into())
            };
        };
        let text = |s: &'a str| Ok(ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())));
        match &self.ty {
            SqlType::Bool => Ok(ToSqlOutput::Owned(SqlValue::Integer(i64::from(
                value::parse_bool(cell)?,
            )))),
            SqlType::Int16 | SqlType::Int32 | SqlType::Int64 => Ok(ToSqlOutput::Owned(
                SqlValue::Integer(value::parse_int(cell, &self.ty)?),
            )),
            SqlType::Float32 | SqlType::Float64 => Ok(ToSqlOutput::Owned(SqlValue::Real(
                value::parse_float(cell, &self.ty)?,
            ))),
            SqlType::Decimal { .. } => text(value::check_decimal(cell)?),
            SqlType::Text => {
                reject_nul(cell)?;
                text(cell)
            }
            SqlType::Varchar(n) => {
                reject_nul(cell)?;
                let len = cell.chars().count();
                if len > *n as usize {
                    return Err(format!("{len} characters do not fit varchar({n})"));
                }
                text(cell)
            }
            SqlType::Enum { .. } => {
                if self.enum_values.contains(cell) {
                    text(cell)
                } else {
                    Err(format!(
                        "`{}` is not one of the enum's values; add it to the table definition",
                        value::shown(cell)
                    ))
                }
            }
            SqlType::Timestamp => {
                if !value::fast_timestamp(cell, scratch) {
                    *scratch = value::format_timestamp(&value::parse_timestamp(cell)?);
                }
                Ok(ToSqlOutput::Borrowed(ValueRef::Text(scratch.as_bytes())))
            }
            SqlType::Date => Ok(ToSqlOutput::Owned(SqlValue::Text(
                value::parse_date(cell)?.format("%Y-%m-%d").to_string(),
            ))),
            SqlType::Time => Ok(ToSqlOutput::Owned(SqlValue::Text(value::format_time(
                &value::parse_time(cell)?,
            )))),
            SqlType::Uuid => Ok(ToSqlOutput::Owned(SqlValue::Text(value::parse_uuid(cell)?))),
            SqlType::Json => {
                value::check_json(cell)?;
                reject_nul(cell)?;
                text(cell)
            }
        }
    }
}

fn reject_nul(cell: &str) -> Result<(), String> {
    if cell.contains('\0') {
        Err("text contains a NUL character, which PostgreSQL cannot store".into())
    } else {
        Ok(())
    }
}

struct LoadState {
    table: TableName,
    /// Physical table the rows go to (the replacement table when replacing).
    target: String,
    /// Definition the table has after evolution.
    physical: TableDef,
    columns: Vec<ColumnPlan>,
    keys: Vec<ColumnPlan>,
    upsert_sql: String,
    /// The upsert of [`rows_per_insert`](Self::rows_per_insert) rows at once.
    upsert_many_sql: String,
    rows_per_insert: usize,
    delete_sql: String,
    replace: bool,
    rows: u64,
    deleted: u64,
    batches: usize,
}

fn load_session(
    conn: &mut Connection,
    def: &TableDef,
    replace: bool,
    reply: Reply<EvolutionReport>,
    mut cmds: mpsc::Receiver<LoadCmd>,
) {
    let tx = match conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(Error::sqlite("starting a load transaction"))
    {
        Ok(tx) => tx,
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    let mut state = match start_load(&tx, def, replace) {
        Ok((state, report)) => {
            if reply.send(Ok(report)).is_err() {
                return;
            }
            state
        }
        Err(e) => {
            let _ = reply.send(Err(e));
            return;
        }
    };
    // After the first error the transaction is only rolled back; later
    // commands are answered with a short error instead of being applied.
    let mut failed = false;
    while let Some(cmd) = cmds.blocking_recv() {
        match cmd {
            LoadCmd::Upsert(mut batch, reply) => {
                let r = if failed {
                    Err(aborted(&state.table))
                } else {
                    upsert(&tx, &mut state, &batch).map(|()| {
                        batch.clear();
                        batch
                    })
                };
                failed |= r.is_err();
                let _ = reply.send(r);
            }
            LoadCmd::Delete(mut batch, reply) => {
                let r = if failed {
                    Err(aborted(&state.table))
                } else {
                    delete(&tx, &mut state, &batch).map(|n| {
                        batch.clear();
                        (batch, n)
                    })
                };
                failed |= r.is_err();
                let _ = reply.send(r);
            }
            LoadCmd::Commit(watermark, reply) => {
                let r = if failed {
                    Err(aborted(&state.table))
                } else {
                    finish(tx, &state, &watermark)
                };
                let _ = reply.send(r);
                return;
            }
        }
    }
    // The Load was dropped without commit: `tx` rolls back when dropped here.
}

fn aborted(table: &TableName) -> Error {
    Error::LoadAborted {
        table: table.clone(),
    }
}

fn start_load(
    tx: &Transaction<'_>,
    def: &TableDef,
    replace: bool,
) -> Result<(LoadState, EvolutionReport)> {
    let table = def.table_name();
    let (report, physical, target) = if replace {
        let plan = evolve::plan(None, def)?;
        let target = replace_name(&table);
        tx.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}; {}",
            quote(&target),
            create_sql(&target, &plan.physical)
        ))
        .map_err(Error::sqlite(format!(
            "creating the replacement of {table}"
        )))?;
        (plan.report, plan.physical, target)
    } else {
        let (report, physical) = evolve_in(tx, def)?;
        (report, physical, physical_name(&table))
    };
    let def = def.normalized();
    let columns: Vec<ColumnPlan> = def
        .columns
        .iter()
        .map(|c| ColumnPlan::new(&physical, &c.name))
        .collect();
    let keys: Vec<ColumnPlan> = def
        .primary_key
        .iter()
        .map(|k| ColumnPlan::new(&physical, k))
        .collect();
    let conflict = if is_empty(tx, &target)? {
        Conflict::Replace
    } else {
        Conflict::Update
    };
    let rows_per_insert = rows_per_insert(def.columns.len());
    let upsert_many_sql = upsert_sql(&target, &def, rows_per_insert, conflict);
    let upsert_sql = upsert_sql(&target, &def, 1, conflict);
    let delete_sql = delete_sql(&target, &def);
    Ok((
        LoadState {
            table,
            target,
            physical,
            columns,
            keys,
            upsert_sql,
            upsert_many_sql,
            rows_per_insert,
            delete_sql,
            replace,
            rows: 0,
            deleted: 0,
            batches: 0,
        },
        report,
    ))
}

/// Rows one multi-row upsert statement takes: fewer statement runs per row,
/// within SQLite's smallest limit on parameters (999).
fn rows_per_insert(columns: usize) -> usize {
    (999 / columns.max(1)).clamp(1, 32)
}

/// Whether `target` holds no rows (read inside the load's transaction).
fn is_empty(tx: &Transaction<'_>, target: &str) -> Result<bool> {
    let any: Option<i64> = tx
        .query_row(
            &format!("SELECT 1 FROM {} LIMIT 1", quote(target)),
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(Error::sqlite(format!("checking whether {target} is empty")))?;
    Ok(any.is_none())
}

/// What an upsert does with a row whose key is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conflict {
    /// `ON CONFLICT (key) DO UPDATE` of the definition's columns: columns
    /// the table keeps although they are gone upstream keep their values.
    Update,
    /// `INSERT OR REPLACE`: the stored row is deleted and the new one
    /// inserted, which SQLite does with less work per row than an upsert
    /// clause. Only for loads into a table that was empty when the load
    /// began: every stored row then came from this load with exactly the
    /// definition's columns, so replacing it is the same as updating it.
    Replace,
}

/// `INSERT .. VALUES (..), ..` of `rows` rows that lets a row replace the
/// stored row with its key (see [`Conflict`]); SQLite applies the rows in
/// order, so a later row with the same key wins, as with one statement per
/// row.
fn upsert_sql(target: &str, def: &TableDef, rows: usize, conflict: Conflict) -> String {
    let mut sql = String::from(match conflict {
        Conflict::Update => "INSERT INTO ",
        Conflict::Replace => "INSERT OR REPLACE INTO ",
    });
    push_quoted(&mut sql, target);
    sql.push_str(" (");
    for (i, c) in def.columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        push_quoted(&mut sql, &c.name);
    }
    sql.push_str(") VALUES ");
    for r in 0..rows {
        sql.push_str(if r > 0 { ", (" } else { "(" });
        for i in 0..def.columns.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
        }
        sql.push(')');
    }
    if conflict == Conflict::Replace {
        return sql;
    }
    sql.push_str(" ON CONFLICT (");
    for (i, k) in def.primary_key.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        push_quoted(&mut sql, k);
    }
    let updates: Vec<&str> = def
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| !def.primary_key.iter().any(|k| k == c))
        .collect();
    if updates.is_empty() {
        sql.push_str(") DO NOTHING");
    } else {
        sql.push_str(") DO UPDATE SET ");
        for (i, c) in updates.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            push_quoted(&mut sql, c);
            sql.push_str(" = excluded.");
            push_quoted(&mut sql, c);
        }
    }
    sql
}

fn delete_sql(target: &str, def: &TableDef) -> String {
    let mut sql = String::from("DELETE FROM ");
    push_quoted(&mut sql, target);
    sql.push_str(" WHERE ");
    for (i, k) in def.primary_key.iter().enumerate() {
        if i > 0 {
            sql.push_str(" AND ");
        }
        push_quoted(&mut sql, k);
        sql.push_str(" = ?");
        sql.push_str(&(i + 1).to_string());
    }
    sql
}

fn invalid(state: &LoadState, plan: &ColumnPlan, row: usize, reason: String) -> Error {
    Error::InvalidValue {
        table: state.table.clone(),
        column: plan.name.clone(),
        row,
        reason,
    }
}

fn upsert(tx: &Transaction<'_>, state: &mut LoadState, batch: &RowBatch) -> Result<()> {
    let prepare = |sql: &str| {
        tx.prepare_cached(sql).map_err(Error::sqlite(format!(
            "preparing the upsert into {}",
            state.table
        )))
    };
    let per = state.rows_per_insert;
    let mut many = match batch.len() >= per && per > 1 {
        true => Some(prepare(&state.upsert_many_sql)?),
        false => None,
    };
    let mut one = prepare(&state.upsert_sql)?;
    let columns = state.columns.len();
    let mut scratch = String::with_capacity(64);
    let mut rows = batch.rows().enumerate().peekable();
    while let Some(&(first, _)) = rows.peek() {
        let (stmt, n) = match many.as_mut() {
            Some(stmt) if batch.len() - first >= per => (stmt, per),
            _ => (&mut one, 1),
        };
        for k in 0..n {
            let Some((r, row)) = rows.next() else { break };
            for (i, plan) in state.columns.iter().enumerate() {
                let v = plan
                    .convert(row.get(i), &mut scratch)
                    .map_err(|e| invalid(state, plan, r, e))?;
                // Contexts are built only on error: this runs once per cell.
                stmt.raw_bind_parameter(k * columns + i + 1, v)
                    .map_err(|e| {
                        Error::sqlite(format!("binding a value for {}", state.table))(e)
                    })?;
            }
        }
        stmt.raw_execute().map_err(|e| {
            let rows = match n {
                1 => format!("row {first}"),
                _ => format!("rows {first}..{}", first + n),
            };
            Error::sqlite(format!("upserting {rows} of a batch into {}", state.table))(e)
        })?;
    }
    state.rows += batch.len() as u64;
    state.batches += 1;
    Ok(())
}

fn delete(tx: &Transaction<'_>, state: &mut LoadState, batch: &RowBatch) -> Result<u64> {
    let mut stmt = tx
        .prepare_cached(&state.delete_sql)
        .map_err(Error::sqlite(format!(
            "preparing the delete from {}",
            state.table
        )))?;
    let mut deleted = 0u64;
    let mut scratch = String::with_capacity(64);
    for (r, row) in batch.rows().enumerate() {
        for (i, plan) in state.keys.iter().enumerate() {
            let v = plan
                .convert(row.get(i), &mut scratch)
                .map_err(|e| invalid(state, plan, r, e))?;
            stmt.raw_bind_parameter(i + 1, v)
                .map_err(|e| Error::sqlite(format!("binding a key for {}", state.table))(e))?;
        }
        deleted += stmt.raw_execute().map_err(|e| {
            Error::sqlite(format!("deleting key {r} of a batch from {}", state.table))(e)
        })? as u64;
    }
    state.deleted += deleted;
    state.batches += 1;
    Ok(deleted)
}

fn finish(tx: Transaction<'_>, state: &LoadState, watermark: &Watermark) -> Result<LoadSummary> {
    if state.replace {
        let live = physical_name(&state.table);
        tx.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}; ALTER TABLE {} RENAME TO {}",
            quote(&live),
            quote(&state.target),
            quote(&live)
        ))
        .map_err(Error::sqlite(format!(
            "swapping in the new {}",
            state.table
        )))?;
    }
    write_meta(&tx, &state.physical, Some(watermark))?;
    tx.commit().map_err(Error::sqlite(format!(
        "committing the load of {}",
        state.table
    )))?;
    Ok(LoadSummary {
        upserted_rows: state.rows,
        deleted_rows: state.deleted,
        batches: state.batches,
    })
}

// ---------------------------------------------------------------- reading

fn status(conn: &Connection, only: Option<&TableName>) -> Result<Vec<TableStatus>> {
    let names: Vec<TableName> = match only {
        Some(t) => vec![t.clone()],
        None => {
            let sql = format!(
                "SELECT namespace, name FROM {} ORDER BY namespace, name",
                quote(META_TABLE)
            );
            let mut stmt = conn
                .prepare(&sql)
                .map_err(Error::sqlite("listing tables"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(TableName::new(
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                    ))
                })
                .map_err(Error::sqlite("listing tables"))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(Error::sqlite("listing tables"))?
        }
    };
    let mut out = Vec::with_capacity(names.len());
    for table in names {
        let Some(meta) = read_meta(conn, &table)? else {
            continue;
        };
        let count: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {}", quote(&physical_name(&table))),
                [],
                |r| r.get(0),
            )
            .map_err(Error::sqlite(format!("counting the rows of {table}")))?;
        out.push(TableStatus {
            table,
            definition: meta.definition,
            watermark: meta.watermark,
            updated_at: meta.updated_at,
            row_count: u64::try_from(count).unwrap_or(0),
        });
    }
    Ok(out)
}

fn drop_table(conn: &mut Connection, table: &TableName) -> Result<bool> {
    table.validate()?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(Error::sqlite("starting a transaction"))?;
    let existed = tx
        .execute(
            &format!(
                "DELETE FROM {} WHERE namespace = ?1 AND name = ?2",
                quote(META_TABLE)
            ),
            (&table.schema, &table.name),
        )
        .map_err(Error::sqlite(format!("deleting the meta row of {table}")))?
        > 0;
    tx.execute_batch(&format!(
        "DROP TABLE IF EXISTS {}",
        quote(&physical_name(table))
    ))
    .map_err(Error::sqlite(format!("dropping {table}")))?;
    tx.commit()
        .map_err(Error::sqlite(format!("committing the drop of {table}")))?;
    Ok(existed)
}

fn read_rows(conn: &Connection, table: &TableName) -> Result<Vec<Vec<Value>>> {
    let meta = read_meta(conn, table)?.ok_or_else(|| Error::UnknownTable {
        table: table.clone(),
    })?;
    let def = meta.definition;
    let cols: Vec<String> = def.columns.iter().map(|c| quote(&c.name)).collect();
    let keys: Vec<String> = def.primary_key.iter().map(|k| quote(k)).collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        cols.join(", "),
        quote(&physical_name(table)),
        keys.join(", ")
    );
    let ctx = || format!("reading {table}");
    let mut stmt = conn.prepare(&sql).map_err(Error::sqlite(ctx()))?;
    let mut rows = stmt.query([]).map_err(Error::sqlite(ctx()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(Error::sqlite(ctx()))? {
        let mut values = Vec::with_capacity(def.columns.len());
        for (i, c) in def.columns.iter().enumerate() {
            let v = row.get_ref(i).map_err(Error::sqlite(ctx()))?;
            values.push(
                stored_value(&c.sql_type, v).map_err(|reason| Error::InvalidValue {
                    table: table.clone(),
                    column: c.name.clone(),
                    row: out.len(),
                    reason,
                })?,
            );
        }
        out.push(values);
    }
    Ok(out)
}

fn stored_value(ty: &SqlType, v: ValueRef<'_>) -> std::result::Result<Value, String> {
    Ok(match (ty, v) {
        (_, ValueRef::Null) => Value::Null,
        (SqlType::Bool, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (SqlType::Int16 | SqlType::Int32 | SqlType::Int64, ValueRef::Integer(i)) => Value::Int(i),
        (SqlType::Float32 | SqlType::Float64, ValueRef::Integer(i)) => {
            Value::Float(value::round_float(i as f64, ty))
        }
        (SqlType::Float32 | SqlType::Float64, ValueRef::Real(f)) => {
            Value::Float(value::round_float(f, ty))
        }
        (SqlType::Decimal { .. }, ValueRef::Integer(i)) => Value::Decimal(i.to_string()),
        (_, ValueRef::Text(t)) => {
            let s = std::str::from_utf8(t).map_err(|e| format!("stored text is not UTF-8: {e}"))?;
            value::value_from_text(ty, s)?
        }
        (ty, other) => return Err(format!("stored {:?} does not fit {ty}", other.data_type())),
    })
}

#[cfg(test)]
mod tests {
    use crate::{Column, RowBatch, Sink, SqlType, TableDef, Value, Watermark};

    fn def(columns: &[&str]) -> TableDef {
        let mut cols = vec![Column::new("id", SqlType::Int64, false)];
        cols.extend(columns.iter().map(|c| Column::new(*c, SqlType::Text, true)));
        TableDef::new("t", "items", cols, ["id"])
    }

    /// Rows `(id, "<tag><id>")` for each id, in order.
    fn rows(ids: impl IntoIterator<Item = i64>, tag: &str) -> RowBatch {
        let mut b = RowBatch::new(2);
        append(&mut b, ids, tag);
        b
    }

    fn append(b: &mut RowBatch, ids: impl IntoIterator<Item = i64>, tag: &str) {
        for id in ids {
            b.push_row([Some(id.to_string().as_str()), Some(&format!("{tag}{id}"))])
                .unwrap();
        }
    }

    fn cell(rows: &[Vec<Value>], id: i64, column: usize) -> Value {
        rows.iter()
            .find(|r| r[0] == Value::Int(id))
            .map(|r| r[column].clone())
            .unwrap_or_else(|| panic!("no row {id}"))
    }

    #[tokio::test]
    async fn initial_load_keeps_the_later_row_of_a_repeated_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::open_sqlite(dir.path().join("db.sqlite"))
            .await
            .unwrap();
        let def = def(&["v"]);
        let mut load = sink.begin_load(&def).await.unwrap();
        // 32 rows go in one statement: key 5 repeats inside the first
        // statement, keys 40..50 (from the second) in the single-row tail,
        // key 3 in the next batch.
        let mut batch = rows(0..20, "a");
        batch.push_row([Some("5"), Some("b5")]).unwrap();
        append(&mut batch, 20..100, "a");
        append(&mut batch, 40..50, "d");
        load.upsert(&mut batch).await.unwrap();
        let mut batch = rows([3, 100], "c");
        load.upsert(&mut batch).await.unwrap();
        load.commit(Watermark::new("w")).await.unwrap();

        let stored = sink.read_rows(&def.table_name()).await.unwrap();
        assert_eq!(stored.len(), 101);
        assert_eq!(cell(&stored, 0, 1), Value::Text("a0".into()));
        assert_eq!(cell(&stored, 3, 1), Value::Text("c3".into()));
        assert_eq!(cell(&stored, 5, 1), Value::Text("b5".into()));
        assert_eq!(cell(&stored, 6, 1), Value::Text("a6".into()));
        assert_eq!(cell(&stored, 45, 1), Value::Text("d45".into()));
        assert_eq!(cell(&stored, 100, 1), Value::Text("c100".into()));
    }

    #[tokio::test]
    async fn a_load_into_a_populated_table_updates_rows_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::open_sqlite(dir.path().join("db.sqlite"))
            .await
            .unwrap();
        let old = def(&["v", "legacy"]);
        let mut load = sink.begin_load(&old).await.unwrap();
        let mut batch = RowBatch::new(3);
        for id in 0..40 {
            let id = id.to_string();
            batch
                .push_row([Some(id.as_str()), Some("old"), Some("kept")])
                .unwrap();
        }
        load.upsert(&mut batch).await.unwrap();
        load.commit(Watermark::new("w1")).await.unwrap();

        // `legacy` is gone upstream: the table keeps it, and updating a row
        // through the new definition must not wipe it.
        let new = def(&["v"]);
        let mut load = sink.begin_load(&new).await.unwrap();
        assert_eq!(load.evolution().kept_columns, vec!["legacy"]);
        let mut batch = rows((0..40).chain([0, 41]), "new");
        load.upsert(&mut batch).await.unwrap();
        load.commit(Watermark::new("w2")).await.unwrap();

        let stored = sink.read_rows(&new.table_name()).await.unwrap();
        assert_eq!(stored.len(), 41);
        assert_eq!(cell(&stored, 0, 1), Value::Text("new0".into()));
        assert_eq!(cell(&stored, 0, 2), Value::Text("kept".into()));
        assert_eq!(cell(&stored, 39, 2), Value::Text("kept".into()));
        assert_eq!(cell(&stored, 41, 2), Value::Null);
    }

    #[tokio::test]
    async fn new_databases_get_16_kib_pages_and_old_ones_keep_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |path: &std::path::Path| -> i64 {
            let conn = rusqlite::Connection::open(path).unwrap();
            conn.query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap()
        };
        let fresh = dir.path().join("fresh.sqlite");
        drop(Sink::open_sqlite(&fresh).await.unwrap());
        assert_eq!(page_size(&fresh), 16384);

        let old = dir.path().join("old.sqlite");
        rusqlite::Connection::open(&old)
            .unwrap()
            .execute_batch("PRAGMA page_size = 4096; CREATE TABLE other (x INTEGER)")
            .unwrap();
        let mut sink = Sink::open_sqlite(&old).await.unwrap();
        let def = def(&["v"]);
        let mut load = sink.begin_load(&def).await.unwrap();
        load.upsert(&mut rows(0..3, "a")).await.unwrap();
        load.commit(Watermark::new("w")).await.unwrap();
        assert_eq!(sink.read_rows(&def.table_name()).await.unwrap().len(), 3);
        drop(sink);
        assert_eq!(page_size(&old), 4096);
    }
}
