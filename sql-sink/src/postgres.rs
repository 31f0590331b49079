//! The PostgreSQL backend (feature `postgres`).
//!
//! Each namespace is a schema and each table keeps its name. A batch of
//! upserts is streamed with text `COPY` into a temporary staging table and
//! merged with `INSERT .. SELECT .. ON CONFLICT (key) DO UPDATE`; deletes go
//! through a staging table of keys and `DELETE .. USING`.
//!
//! A load that starts on an empty table (an initial load) copies its batches
//! straight into the table instead, through one `COPY` that stays open
//! across batches, so the server parses and inserts rows while the next
//! batch is being prepared, without a round trip per batch. Each such
//! segment of up to [`SEGMENT`] bytes runs under a savepoint and keeps the
//! data it sent; if it hits a key conflict (the source repeated a key), the
//! segment is undone, its data replayed through the staged merge, and the
//! rest of the load takes the staged path. That makes initial loads run at
//! `COPY` speed with the same results as the merge.
//!
//! `COPY` data is binary: cells are parsed here, by the same functions as
//! the SQLite backend uses, so both backends accept the same values and
//! the server does not parse numbers and times (about a third of its work
//! on typical rows). A table with a decimal column is loaded in text.

use std::fmt::Write as _;
use std::pin::{Pin, pin};
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Datelike, Timelike, Utc};
use futures::SinkExt;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, CopyInSink, NoTls, Transaction};

use crate::error::{Error, Result};
use crate::evolve::{self, EvolutionReport, Step};
use crate::ident::{push_quoted, quote, quote_literal};
use crate::model::{Column, SqlType, TableDef, TableName};
use crate::rows::RowBatch;
use crate::sink::LoadSummary;
use crate::value::{self, Value};
use crate::watermark::{TableStatus, Watermark};

const META: &str = "\"sql_sink\".\"tables\"";
/// The sink's own schema (meta table, replacements being loaded).
const META_SCHEMA: &str = "sql_sink";
/// Arbitrary constant naming the advisory lock that serialises creation of
/// the meta table by concurrent sinks.
const META_LOCK: i64 = 0x5351_4c53_494e_4b00;
/// COPY data is sent in chunks of about this size.
const CHUNK: usize = 1 << 20;
/// A direct `COPY` is confirmed (finished, its savepoint released, the data
/// kept for a replay dropped) after about this many bytes.
const SEGMENT: usize = 8 << 20;

/// A connection to PostgreSQL.
pub(crate) struct PgSink {
    client: Client,
    config: Config,
}

fn qualified(schema: &str, name: &str) -> String {
    let mut s = quote(schema);
    s.push('.');
    push_quoted(&mut s, name);
    s
}

fn fnv64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A short, collision-resistant constraint name for an enum column.
fn enum_constraint(column: &str) -> String {
    format!("sql_sink_enum_{:016x}", fnv64(column))
}

/// A replacement is built in the sink's own schema, so creating or dropping
/// it can never touch a table of the user's.
fn replacement_name(table: &TableName) -> String {
    format!(
        "replace_{:016x}",
        fnv64(&format!("{}\u{1}{}", table.schema, table.name))
    )
}

fn enum_check(column: &str, values: &[String]) -> String {
    let col = quote(column);
    if values.is_empty() {
        return format!("CHECK ({col} IS NULL)");
    }
    let list: Vec<String> = values.iter().map(|v| quote_literal(v)).collect();
    format!("CHECK ({col} IN ({}))", list.join(", "))
}

impl PgSink {
    pub(crate) async fn connect_url(url: &str) -> Result<Self> {
        // The driver's parse errors name the option, never its value.
        let url = crate::tls::normalize_sslmode(url);
        let config = Config::from_str(&url).map_err(|e| Error::InvalidUrl {
            reason: e.to_string(),
        })?;
        Self::connect(config).await
    }

    pub(crate) async fn reconnect(&self) -> Result<Self> {
        Self::connect(self.config.clone()).await
    }

    async fn connect(config: Config) -> Result<Self> {
        let context = || format!("connecting to {}", describe(&config));
        let client = match config.get_ssl_mode() {
            SslMode::Require => {
                let tls = crate::tls::RustlsConnector::with_system_roots()?;
                let (client, connection) = config
                    .connect(tls)
                    .await
                    .map_err(Error::postgres(context()))?;
                tokio::spawn(drive(connection));
                client
            }
            _ => {
                let (client, connection) = config
                    .connect(NoTls)
                    .await
                    .map_err(Error::postgres(context()))?;
                tokio::spawn(drive(connection));
                client
            }
        };
        let mut sink = Self { client, config };
        sink.setup().await?;
        Ok(sink)
    }

    async fn setup(&mut self) -> Result<()> {
        self.client
            .batch_execute("SET TimeZone = 'UTC'; SET client_min_messages = warning;")
            .await
            .map_err(Error::postgres("configuring the session"))?;
        let tx = self
            .client
            .transaction()
            .await
            .map_err(Error::postgres("starting a transaction"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&META_LOCK])
            .await
            .map_err(Error::postgres("locking the meta table"))?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"sql_sink\";
             CREATE TABLE IF NOT EXISTS {META} (
                namespace text NOT NULL,
                name text NOT NULL,
                definition text NOT NULL,
                watermark text,
                watermark_at timestamptz,
                schema_version bigint,
                details text,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (namespace, name)
             )"
        ))
        .await
        .map_err(Error::postgres("creating the meta table"))?;
        tx.commit()
            .await
            .map_err(Error::postgres("creating the meta table"))
    }

    pub(crate) fn describe(&self) -> String {
        describe(&self.config)
    }

    pub(crate) async fn ensure(&mut self, def: &TableDef) -> Result<EvolutionReport> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(Error::postgres("starting a transaction"))?;
        let (report, _) = evolve_in(&tx, def).await?;
        tx.commit().await.map_err(Error::postgres(format!(
            "committing the change of {}",
            def.table_name()
        )))?;
        Ok(report)
    }

    pub(crate) async fn begin(
        &mut self,
        def: &TableDef,
        replace: bool,
    ) -> Result<(PgLoad<'_>, EvolutionReport)> {
        let table = def.table_name();
        let tx = self
            .client
            .transaction()
            .await
            .map_err(Error::postgres("starting a load transaction"))?;
        let (report, physical, target) = if replace {
            lock(&tx, &table).await?;
            let plan = evolve::plan(None, def)?;
            let target = qualified(META_SCHEMA, &replacement_name(&table));
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}; DROP TABLE IF EXISTS {target}; {}",
                quote(&table.schema),
                create_sql(&target, &plan.physical)
            ))
            .await
            .map_err(Error::postgres(format!(
                "creating the replacement of {table}"
            )))?;
            (plan.report, plan.physical, target)
        } else {
            let (report, physical) = evolve_in(&tx, def).await?;
            (report, physical, qualified(&table.schema, &table.name))
        };
        let empty: bool = tx
            .query_one(&format!("SELECT NOT EXISTS (SELECT 1 FROM {target})"), &[])
            .await
            .map_err(Error::postgres(format!("looking into {table}")))?
            .get(0);
        let def = def.normalized();
        let check = |name: &String| {
            let ty = physical
                .columns
                .iter()
                .find(|c| &c.name == name)
                .map_or(SqlType::Text, |c| c.sql_type.clone());
            Codec::new(name, ty)
        };
        let column_checks: Vec<Codec> = def.columns.iter().map(|c| check(&c.name)).collect();
        let key_checks = def.primary_key.iter().map(check).collect();
        // Binary COPY spares the server the parsing of numbers and times
        // (a third of its work on typical rows); decimals, whose binary form
        // is not written here, keep the load in text.
        let binary = column_checks.iter().all(|c| c.binary_supported());
        let load = PgLoad {
            binary,
            column_checks,
            key_checks,
            tx,
            columns: column_list(def.columns.iter().map(|c| c.name.as_str())),
            keys: column_list(def.primary_key.iter().map(String::as_str)),
            table,
            target,
            replace,
            def,
            physical,
            stage_ready: false,
            key_stage_ready: false,
            direct: empty,
            segment: None,
            buf: BytesMut::with_capacity(CHUNK + 64 * 1024),
            rows: 0,
            deleted: 0,
            batches: 0,
        };
        Ok((load, report))
    }

    pub(crate) async fn status(&self, only: Option<&TableName>) -> Result<Vec<TableStatus>> {
        let sql = format!(
            "SELECT namespace, name, definition, watermark, watermark_at, schema_version, details, updated_at \
             FROM {META} WHERE ($1::text IS NULL OR (namespace = $1 AND name = $2)) ORDER BY namespace, name"
        );
        let (ns, name) = match only {
            Some(t) => (Some(t.schema.as_str()), Some(t.name.as_str())),
            None => (None, None),
        };
        let rows = self
            .client
            .query(&sql, &[&ns, &name])
            .await
            .map_err(Error::postgres("reading the meta table"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let names = row
                .try_get::<_, String>(0)
                .and_then(|ns| Ok((ns, row.try_get::<_, String>(1)?)));
            let table = match names {
                Ok((ns, name)) => TableName::new(ns, name),
                Err(e) => return Err(Error::postgres("reading the meta table")(e)),
            };
            let meta = meta_from_row(&table, &row, 2)?;
            let count: i64 = self
                .client
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}",
                        qualified(&table.schema, &table.name)
                    ),
                    &[],
                )
                .await
                .map_err(Error::postgres(format!("counting the rows of {table}")))?
                .get(0);
            out.push(TableStatus {
                table,
                definition: meta.0,
                watermark: meta.1,
                updated_at: meta.2,
                row_count: u64::try_from(count).unwrap_or(0),
            });
        }
        Ok(out)
    }

    pub(crate) async fn drop_table(&mut self, table: &TableName) -> Result<bool> {
        let tx = self
            .client
            .transaction()
            .await
            .map_err(Error::postgres("starting a transaction"))?;
        lock(&tx, table).await?;
        let n = tx
            .execute(
                &format!("DELETE FROM {META} WHERE namespace = $1 AND name = $2"),
                &[&table.schema, &table.name],
            )
            .await
            .map_err(Error::postgres(format!("deleting the meta row of {table}")))?;
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {}",
            qualified(&table.schema, &table.name)
        ))
        .await
        .map_err(Error::postgres(format!("dropping {table}")))?;
        tx.commit()
            .await
            .map_err(Error::postgres(format!("committing the drop of {table}")))?;
        Ok(n > 0)
    }

    pub(crate) async fn read_rows(&self, table: &TableName) -> Result<Vec<Vec<Value>>> {
        let status = self
            .status(Some(table))
            .await?
            .pop()
            .ok_or_else(|| Error::UnknownTable {
                table: table.clone(),
            })?;
        let def = status.definition;
        let cols: Vec<String> = def
            .columns
            .iter()
            .map(|c| format!("{}::text", quote(&c.name)))
            .collect();
        // Qualified sort keys: a bare name would sort by the `::text` output column.
        let order: Vec<String> = def
            .primary_key
            .iter()
            .map(|k| format!("s.{}", quote(k)))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} AS s ORDER BY {}",
            cols.join(", "),
            qualified(&table.schema, &table.name),
            order.join(", ")
        );
        let rows = self
            .client
            .query(&sql, &[])
            .await
            .map_err(Error::postgres(format!("reading {table}")))?;
        let mut out = Vec::with_capacity(rows.len());
        for (r, row) in rows.iter().enumerate() {
            let mut values = Vec::with_capacity(def.columns.len());
            for (i, c) in def.columns.iter().enumerate() {
                let text: Option<&str> = row
                    .try_get(i)
                    .map_err(|e| Error::postgres(format!("reading {table}"))(e))?;
                values.push(match text {
                    None => Value::Null,
                    Some(t) => value::value_from_text(&c.sql_type, t).map_err(|reason| {
                        Error::InvalidValue {
                            table: table.clone(),
                            column: c.name.clone(),
                            row: r,
                            reason,
                        }
                    })?,
                });
            }
            out.push(values);
        }
        Ok(out)
    }
}

/// Run a connection until it closes.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "PostgreSQL connection ended with an error");
    }
}

fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgresql://{host}:{port}/{}",
        config.get_dbname().unwrap_or("")
    )
}

fn column_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut s = String::new();
    for (i, n) in names.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        push_quoted(&mut s, n);
    }
    s
}

/// Serialise changes to one table across connections for this transaction.
async fn lock(tx: &Transaction<'_>, table: &TableName) -> Result<()> {
    let key = format!("{}\u{1}{}", table.schema, table.name);
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&key],
    )
    .await
    .map_err(Error::postgres(format!("locking {table}")))?;
    Ok(())
}

type Meta = (TableDef, Option<Watermark>, DateTime<Utc>);

fn meta_from_row(table: &TableName, row: &tokio_postgres::Row, at: usize) -> Result<Meta> {
    let corrupt = |reason: String| Error::CorruptMeta {
        table: table.clone(),
        reason,
    };
    // `try_get`: a meta table altered by hand must give an error, not a panic.
    let field = |e: tokio_postgres::Error| corrupt(format!("unexpected column type: {e}"));
    let definition: &str = row.try_get(at).map_err(field)?;
    let definition: TableDef =
        serde_json::from_str(definition).map_err(|e| corrupt(format!("definition: {e}")))?;
    let watermark = match row.try_get::<_, Option<String>>(at + 1).map_err(field)? {
        None => None,
        Some(value) => Some(Watermark {
            value,
            at: row.try_get(at + 2).map_err(field)?,
            schema_version: row.try_get(at + 3).map_err(field)?,
            details: row
                .try_get::<_, Option<&str>>(at + 4)
                .map_err(field)?
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt(format!("details: {e}")))?,
        }),
    };
    Ok((definition, watermark, row.try_get(at + 5).map_err(field)?))
}

async fn read_meta(tx: &Transaction<'_>, table: &TableName) -> Result<Option<Meta>> {
    let row = tx
        .query_opt(
            &format!(
                "SELECT definition, watermark, watermark_at, schema_version, details, updated_at \
                 FROM {META} WHERE namespace = $1 AND name = $2 FOR UPDATE"
            ),
            &[&table.schema, &table.name],
        )
        .await
        .map_err(Error::postgres(format!("reading the meta row of {table}")))?;
    row.map(|r| meta_from_row(table, &r, 0)).transpose()
}

async fn write_meta(
    tx: &Transaction<'_>,
    def: &TableDef,
    watermark: Option<&Watermark>,
) -> Result<()> {
    let table = def.table_name();
    let definition = serde_json::to_string(def).map_err(|e| Error::CorruptMeta {
        table: table.clone(),
        reason: format!("definition cannot be encoded: {e}"),
    })?;
    let ctx = format!("writing the meta row of {table}");
    match watermark {
        None => tx
            .execute(
                &format!(
                    "INSERT INTO {META} (namespace, name, definition, updated_at) VALUES ($1, $2, $3, now()) \
                     ON CONFLICT (namespace, name) DO UPDATE SET definition = EXCLUDED.definition, \
                     updated_at = EXCLUDED.updated_at"
                ),
                &[&def.schema, &def.name, &definition],
            )
            .await
            .map_err(Error::postgres(ctx))?,
        Some(w) => {
            let details = w.details.as_ref().map(|d| d.to_string());
            tx.execute(
                &format!(
                    "INSERT INTO {META} (namespace, name, definition, watermark, watermark_at, schema_version, \
                     details, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
                     ON CONFLICT (namespace, name) DO UPDATE SET definition = EXCLUDED.definition, \
                     watermark = EXCLUDED.watermark, watermark_at = EXCLUDED.watermark_at, \
                     schema_version = EXCLUDED.schema_version, details = EXCLUDED.details, \
                     updated_at = EXCLUDED.updated_at"
                ),
                &[&def.schema, &def.name, &definition, &w.value, &w.at, &w.schema_version, &details],
            )
            .await
            .map_err(Error::postgres(ctx))?
        }
    };
    Ok(())
}

fn column_sql(c: &Column, not_null: bool) -> String {
    let mut s = quote(&c.name);
    s.push(' ');
    s.push_str(&c.sql_type.postgres_type());
    if not_null {
        s.push_str(" NOT NULL");
    }
    s
}

fn create_sql(target: &str, def: &TableDef) -> String {
    let mut parts: Vec<String> = def
        .columns
        .iter()
        .map(|c| column_sql(c, !c.nullable))
        .collect();
    for c in &def.columns {
        if let SqlType::Enum { values, .. } = &c.sql_type {
            parts.push(format!(
                "CONSTRAINT {} {}",
                quote(&enum_constraint(&c.name)),
                enum_check(&c.name, values)
            ));
        }
    }
    parts.push(format!(
        "PRIMARY KEY ({})",
        column_list(def.primary_key.iter().map(String::as_str))
    ));
    format!("CREATE TABLE {target} ({})", parts.join(", "))
}

fn step_sql(target: &str, def: &TableDef, step: &Step) -> String {
    match step {
        Step::Create => format!(
            "CREATE SCHEMA IF NOT EXISTS {}; {}",
            quote(&def.schema),
            create_sql(target, def)
        ),
        Step::AddColumn(c) => {
            let mut sql = format!("ALTER TABLE {target} ADD COLUMN {}", column_sql(c, false));
            if let SqlType::Enum { values, .. } = &c.sql_type {
                let _ = write!(
                    sql,
                    ", ADD CONSTRAINT {} {}",
                    quote(&enum_constraint(&c.name)),
                    enum_check(&c.name, values)
                );
            }
            sql
        }
        Step::SetType { column, from, to } => {
            let mut sql = format!("ALTER TABLE {target} ");
            if matches!(from, SqlType::Enum { .. }) {
                let _ = write!(
                    sql,
                    "DROP CONSTRAINT IF EXISTS {}, ",
                    quote(&enum_constraint(column))
                );
            }
            let ty = to.postgres_type();
            let _ = write!(
                sql,
                "ALTER COLUMN {col} TYPE {ty} USING {col}::{ty}",
                col = quote(column)
            );
            sql
        }
        Step::SetEnumValues { column, values } => {
            let name = quote(&enum_constraint(column));
            format!(
                "ALTER TABLE {target} DROP CONSTRAINT IF EXISTS {name}, ADD CONSTRAINT {name} {}",
                enum_check(column, values)
            )
        }
        Step::DropNotNull(column) => format!(
            "ALTER TABLE {target} ALTER COLUMN {} DROP NOT NULL",
            quote(column)
        ),
    }
}

async fn evolve_in(tx: &Transaction<'_>, def: &TableDef) -> Result<(EvolutionReport, TableDef)> {
    let table = def.table_name();
    lock(tx, &table).await?;
    let existing = read_meta(tx, &table).await?;
    let plan = evolve::plan(existing.as_ref().map(|m| &m.0), def)?;
    let target = qualified(&table.schema, &table.name);
    for step in &plan.steps {
        tx.batch_execute(&step_sql(&target, &plan.physical, step))
            .await
            .map_err(Error::postgres(format!(
                "changing the structure of {table}"
            )))?;
    }
    if !plan.report.is_unchanged() || existing.is_none() {
        write_meta(tx, &plan.physical, existing.and_then(|m| m.1).as_ref()).await?;
    }
    Ok((plan.report, plan.physical))
}

/// How one column's cells are encoded for `COPY`.
#[derive(Debug, Clone)]
struct Codec {
    name: String,
    /// The column's type in the table (after evolution).
    ty: SqlType,
    /// For text `COPY`: what is checked before sending.
    check: CellCheck,
}

/// The binary `COPY` signature, flags and header extension length.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary `COPY` trailer (a tuple with -1 fields).
const BINARY_TRAILER: &[u8] = &[0xff, 0xff];
/// 2000-01-01 (PostgreSQL's epoch) in microseconds since 1970-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// 2000-01-01 in days since 1970-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

impl Codec {
    fn new(name: &str, ty: SqlType) -> Self {
        Self {
            name: name.to_string(),
            check: CellCheck::of(&ty),
            ty,
        }
    }

    fn binary_supported(&self) -> bool {
        !matches!(self.ty, SqlType::Decimal { .. })
    }

    /// Append `cell` in binary `COPY` form (length, then the value),
    /// parsed as the SQLite backend parses it, so both accept the same.
    fn put_binary(&self, buf: &mut BytesMut, cell: &str) -> std::result::Result<(), String> {
        match &self.ty {
            SqlType::Bool => {
                buf.put_i32(1);
                buf.put_u8(u8::from(value::parse_bool(cell)?));
            }
            SqlType::Int16 => {
                let v = value::parse_int(cell, &self.ty)?;
                buf.put_i32(2);
                buf.put_i16(i16::try_from(v).map_err(|e| e.to_string())?);
            }
            SqlType::Int32 => {
                let v = value::parse_int(cell, &self.ty)?;
                buf.put_i32(4);
                buf.put_i32(i32::try_from(v).map_err(|e| e.to_string())?);
            }
            SqlType::Int64 => {
                buf.put_i32(8);
                buf.put_i64(value::parse_int(cell, &self.ty)?);
            }
            SqlType::Float32 => {
                let v = value::parse_float(cell, &self.ty)?;
                buf.put_i32(4);
                buf.put_f32(v as f32);
            }
            SqlType::Float64 => {
                buf.put_i32(8);
                buf.put_f64(value::parse_float(cell, &self.ty)?);
            }
            SqlType::Text | SqlType::Enum { .. } => put_text(buf, cell, &[])?,
            SqlType::Varchar(n) => {
                let len = cell.chars().count();
                if len > *n as usize {
                    return Err(format!("{len} characters do not fit varchar({n})"));
                }
                put_text(buf, cell, &[])?;
            }
            SqlType::Timestamp => {
                buf.put_i32(8);
                buf.put_i64(value::timestamp_micros(cell)? - PG_EPOCH_MICROS);
            }
            SqlType::Date => {
                let days =
                    value::parse_date(cell)?.num_days_from_ce() - value::UNIX_EPOCH_DAYS_FROM_CE;
                let days = i64::from(days) - PG_EPOCH_DAYS;
                buf.put_i32(4);
                buf.put_i32(i32::try_from(days).map_err(|e| e.to_string())?);
            }
            SqlType::Time => {
                let t = value::parse_time(cell)?;
                let micros = i64::from(t.num_seconds_from_midnight()) * 1_000_000
                    + i64::from(t.nanosecond() / 1000);
                buf.put_i32(8);
                buf.put_i64(micros);
            }
            SqlType::Uuid => {
                let u = uuid::Uuid::parse_str(cell.trim())
                    .map_err(|_| format!("`{}` is not a UUID", value::shown(cell)))?;
                buf.put_i32(16);
                buf.put_slice(u.as_bytes());
            }
            // jsonb's binary form: version 1, then the text (the server
            // parses and checks it).
            SqlType::Json => put_text(buf, cell, &[1])?,
            SqlType::Decimal { .. } => {
                return Err("decimals are not sent in binary COPY".into());
            }
        }
        Ok(())
    }
}

/// Append a text value (after `prefix`) in binary `COPY` form.
fn put_text(buf: &mut BytesMut, cell: &str, prefix: &[u8]) -> std::result::Result<(), String> {
    if cell.contains('\0') {
        return Err("text contains a NUL character, which PostgreSQL cannot store".into());
    }
    let len = i32::try_from(cell.len() + prefix.len())
        .map_err(|_| format!("a value of {} bytes is too large", cell.len()))?;
    buf.put_i32(len);
    buf.put_slice(prefix);
    buf.put_slice(cell.as_bytes());
    Ok(())
}

/// What the COPY encoder checks itself, so PostgreSQL accepts exactly what
/// the SQLite backend accepts (PostgreSQL alone would take `now` or
/// `yesterday` as a timestamp, or `tr` as a boolean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CellCheck {
    /// Sent as is; the server's own parsing matches ours.
    None,
    /// Parsed here and sent as `t`/`f`.
    Bool,
    /// Dates, times, timestamps: special words are refused.
    Temporal,
}

impl CellCheck {
    fn of(ty: &SqlType) -> Self {
        match ty {
            SqlType::Bool => Self::Bool,
            SqlType::Timestamp | SqlType::Date | SqlType::Time => Self::Temporal,
            _ => Self::None,
        }
    }

    /// The text to send for `cell`, or why it is refused.
    fn apply(self, cell: &str) -> std::result::Result<&str, String> {
        match self {
            Self::None => Ok(cell),
            Self::Bool => value::parse_bool(cell).map(|b| if b { "t" } else { "f" }),
            Self::Temporal => {
                if cell.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
                    Ok(cell)
                } else {
                    Err(format!("`{}` is not a date or time", value::shown(cell)))
                }
            }
        }
    }
}

/// Append one cell in COPY text format.
fn push_cell(buf: &mut BytesMut, cell: Option<&str>) {
    let Some(cell) = cell else {
        buf.put_slice(b"\\N");
        return;
    };
    let bytes = cell.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        buf.put_slice(&bytes[start..i]);
        buf.put_slice(esc);
        start = i + 1;
    }
    buf.put_slice(&bytes[start..]);
}

/// A load in progress on PostgreSQL.
pub(crate) struct PgLoad<'a> {
    /// The direct `COPY` in progress, if any. Declared (so dropped) before
    /// `tx`: its end must reach the server before the rollback.
    segment: Option<Segment>,
    tx: Transaction<'a>,
    table: TableName,
    /// Qualified, quoted table the rows go to.
    target: String,
    replace: bool,
    def: TableDef,
    physical: TableDef,
    /// Quoted list of the definition's columns.
    columns: String,
    /// Quoted list of the key columns.
    keys: String,
    /// Per column of the definition: name and what the encoder checks.
    column_checks: Vec<Codec>,
    /// The same for the key columns.
    key_checks: Vec<Codec>,
    /// Whether `COPY` data is binary (else text).
    binary: bool,
    stage_ready: bool,
    key_stage_ready: bool,
    /// Copy batches straight into the table until a key conflict shows up.
    direct: bool,
    buf: BytesMut,
    rows: u64,
    deleted: u64,
    batches: usize,
}

/// A direct `COPY` into the target table under the savepoint
/// `sql_sink_direct`, with the data sent so far (kept for a replay through
/// the staged merge if the server reports a key conflict).
struct Segment {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    sent: Vec<Bytes>,
    bytes: usize,
}

const STAGE: &str = "\"sql_sink_stage\"";
const KEY_STAGE: &str = "\"sql_sink_keys\"";

impl PgLoad<'_> {
    fn physical_type(&self, name: &str) -> String {
        let ty = self
            .physical
            .columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.sql_type.postgres_type());
        ty.unwrap_or_else(|| "text".into())
    }

    fn stage_sql(&self, table: &str, names: &[String]) -> String {
        let cols: Vec<String> = names
            .iter()
            .map(|n| format!("{} {}", quote(n), self.physical_type(n)))
            .collect();
        format!(
            "CREATE TEMPORARY TABLE {table} ({}) ON COMMIT DROP",
            cols.join(", ")
        )
    }

    /// The tuples of `batch` in the load's `COPY` format (cells checked
    /// and converted by `checks`), without header or trailer.
    fn encode(&mut self, checks: &[Codec], batch: &RowBatch) -> Result<Bytes> {
        self.buf.clear();
        let binary = self.binary;
        let fields = i16::try_from(batch.columns()).map_err(|_| Error::InvalidValue {
            table: self.table.clone(),
            column: String::new(),
            row: 0,
            reason: format!("{} columns are more than COPY takes", batch.columns()),
        })?;
        for (r, row) in batch.rows().enumerate() {
            if binary {
                self.buf.put_i16(fields);
            }
            for (i, cell) in row.iter().enumerate() {
                let codec = checks.get(i);
                let invalid = |reason| Error::InvalidValue {
                    table: self.table.clone(),
                    column: codec.map(|c| c.name.clone()).unwrap_or_default(),
                    row: r,
                    reason,
                };
                match (cell, codec) {
                    (None, _) if binary => self.buf.put_i32(-1),
                    (Some(c), Some(codec)) if binary => {
                        codec.put_binary(&mut self.buf, c).map_err(invalid)?;
                    }
                    (Some(c), None) if binary => {
                        put_text(&mut self.buf, c, &[]).map_err(invalid)?
                    }
                    (cell, codec) => {
                        if i > 0 {
                            self.buf.put_u8(b'\t');
                        }
                        let cell = match (cell, codec) {
                            (Some(c), Some(codec)) => Some(codec.check.apply(c).map_err(invalid)?),
                            (cell, _) => cell,
                        };
                        push_cell(&mut self.buf, cell);
                    }
                }
            }
            if !binary {
                self.buf.put_u8(b'\n');
            }
        }
        Ok(self.buf.split().freeze())
    }

    /// The `COPY .. FROM STDIN` statement for the load's format.
    fn copy_sql(&self, into: &str, columns: &str) -> String {
        let format = if self.binary { " (FORMAT binary)" } else { "" };
        format!("COPY {into} ({columns}) FROM STDIN{format}")
    }

    /// One `COPY into (columns)` of `chunks` (tuples from
    /// [`encode`](Self::encode)), waited for.
    async fn copy_chunks(&self, into: &str, columns: &str, chunks: &[Bytes]) -> Result<u64> {
        let ctx = || format!("copying a batch into {}", self.table);
        let sink = self
            .tx
            .copy_in(&self.copy_sql(into, columns))
            .await
            .map_err(Error::postgres(ctx()))?;
        let mut sink = pin!(sink);
        let (header, trailer) = self.framing();
        let framed = std::iter::once(&header)
            .chain(chunks)
            .chain(std::iter::once(&trailer));
        for chunk in framed {
            for piece in chunk.chunks(CHUNK) {
                sink.send(chunk.slice_ref(piece))
                    .await
                    .map_err(Error::postgres(ctx()))?;
            }
        }
        sink.as_mut().finish().await.map_err(Error::postgres(ctx()))
    }

    /// Stream `batch` (cells in the order of `columns`) into `COPY into`.
    async fn copy(
        &mut self,
        into: &str,
        columns: &str,
        checks: &[Codec],
        batch: &RowBatch,
    ) -> Result<u64> {
        let data = self.encode(checks, batch)?;
        self.copy_chunks(into, columns, &[data]).await
    }

    async fn exec(&self, sql: &str, what: &str) -> Result<u64> {
        self.tx
            .execute(sql, &[])
            .await
            .map_err(Error::postgres(format!("{what} {}", self.table)))
    }

    /// What starts and ends `COPY` data in the load's format.
    fn framing(&self) -> (Bytes, Bytes) {
        if self.binary {
            (
                Bytes::from_static(BINARY_HEADER),
                Bytes::from_static(BINARY_TRAILER),
            )
        } else {
            (Bytes::new(), Bytes::new())
        }
    }

    pub(crate) async fn upsert(&mut self, batch: &RowBatch) -> Result<()> {
        if self.direct {
            let checks = std::mem::take(&mut self.column_checks);
            let data = self.encode(&checks, batch);
            self.column_checks = checks;
            self.upsert_direct(data?).await?;
        } else {
            self.prepare_stage().await?;
            let columns = self.columns.clone();
            let checks = std::mem::take(&mut self.column_checks);
            let copied = self.copy(STAGE, &columns, &checks, batch).await;
            self.column_checks = checks;
            copied?;
            self.merge_stage().await?;
        }
        self.finish_batch(batch.len() as u64);
        Ok(())
    }

    /// Create the staging table, or empty it.
    async fn prepare_stage(&mut self) -> Result<()> {
        if self.stage_ready {
            self.exec(
                &format!("TRUNCATE {STAGE}"),
                "emptying the staging table of",
            )
            .await?;
        } else {
            let names: Vec<String> = self.def.columns.iter().map(|c| c.name.clone()).collect();
            let sql = self.stage_sql(STAGE, &names);
            self.exec(&sql, "creating the staging table of").await?;
            self.stage_ready = true;
        }
        Ok(())
    }

    /// Merge the staging table into the target.
    async fn merge_stage(&mut self) -> Result<()> {
        let merge = self.merge_sql(false);
        // Duplicate keys within one batch make ON CONFLICT fail; then keep
        // the last row of each key (ctid order = COPY order in a fresh table).
        self.exec("SAVEPOINT sql_sink_merge", "merging into")
            .await?;
        match self.tx.execute(&merge, &[]).await {
            Ok(_) => {
                self.exec("RELEASE SAVEPOINT sql_sink_merge", "merging into")
                    .await?;
            }
            Err(e) if e.code() == Some(&SqlState::CARDINALITY_VIOLATION) => {
                self.exec("ROLLBACK TO SAVEPOINT sql_sink_merge", "merging into")
                    .await?;
                let dedup = self.merge_sql(true);
                self.exec(&dedup, "merging into").await?;
            }
            Err(e) => {
                return Err(Error::postgres(format!(
                    "merging a batch into {}",
                    self.table
                ))(e));
            }
        }
        Ok(())
    }

    /// Send `data` (one encoded batch) through the open direct `COPY`,
    /// opening a segment first if none is open and confirming it once it
    /// is large enough. The server works on the data while the caller
    /// prepares the next batch.
    async fn upsert_direct(&mut self, data: Bytes) -> Result<()> {
        if self.segment.is_none() {
            self.exec("SAVEPOINT sql_sink_direct", "copying into")
                .await?;
            let stmt = self.copy_sql(&self.target, &self.columns);
            let ctx = || format!("copying into {}", self.table);
            let mut sink = Box::pin(
                self.tx
                    .copy_in(&stmt)
                    .await
                    .map_err(Error::postgres(ctx()))?,
            );
            let (header, _) = self.framing();
            if !header.is_empty() {
                sink.send(header).await.map_err(Error::postgres(ctx()))?;
            }
            self.segment = Some(Segment {
                sink,
                sent: Vec::new(),
                bytes: 0,
            });
        }
        let Some(segment) = self.segment.as_mut() else {
            return Ok(());
        };
        segment.bytes += data.len();
        segment.sent.push(data.clone());
        let mut failed = None;
        for piece in data.chunks(CHUNK) {
            if let Err(e) = segment.sink.send(data.slice_ref(piece)).await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            // The server's error (a key conflict, say) comes with `finish`.
            Some(_) => self.close_segment().await,
            None if segment.bytes >= SEGMENT => self.close_segment().await,
            None => Ok(()),
        }
    }

    /// Confirm the open direct segment, if any. On a key conflict the
    /// segment is undone and its data merged through the staging table,
    /// and the rest of the load is staged.
    async fn close_segment(&mut self) -> Result<()> {
        let Some(mut segment) = self.segment.take() else {
            return Ok(());
        };
        let (_, trailer) = self.framing();
        let mut finished = Ok(());
        if !trailer.is_empty() {
            finished = segment.sink.send(trailer).await;
        }
        let finished = match finished {
            Ok(()) => segment.sink.as_mut().finish().await,
            Err(e) => Err(e),
        };
        match finished {
            Ok(_) => {
                self.exec("RELEASE SAVEPOINT sql_sink_direct", "copying into")
                    .await?;
                Ok(())
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                drop(segment.sink);
                self.exec("ROLLBACK TO SAVEPOINT sql_sink_direct", "copying into")
                    .await?;
                self.direct = false;
                tracing::debug!(table = %self.table, "key conflict in a direct COPY; merging from now on");
                self.prepare_stage().await?;
                let columns = self.columns.clone();
                self.copy_chunks(STAGE, &columns, &segment.sent).await?;
                self.merge_stage().await
            }
            Err(e) => Err(Error::postgres(format!("copying into {}", self.table))(e)),
        }
    }

    fn merge_sql(&self, dedup: bool) -> String {
        let non_key: Vec<String> = self
            .def
            .columns
            .iter()
            .filter(|c| !self.def.primary_key.contains(&c.name))
            .map(|c| quote(&c.name))
            .collect();
        let updates: Vec<String> = non_key
            .iter()
            .map(|q| format!("{q} = EXCLUDED.{q}"))
            .collect();
        let source = if dedup {
            let desc: Vec<String> = self.def.primary_key.iter().map(|k| quote(k)).collect();
            format!(
                "SELECT DISTINCT ON ({keys}) {cols} FROM {STAGE} ORDER BY {}, ctid DESC",
                desc.join(", "),
                keys = self.keys,
                cols = self.columns
            )
        } else {
            format!("SELECT {} FROM {STAGE}", self.columns)
        };
        let action = if updates.is_empty() {
            "DO NOTHING".to_string()
        } else {
            // Rows that would not change are left alone: re-running a load
            // (after a crash) then writes no new row versions.
            let old: Vec<String> = non_key.iter().map(|q| format!("sql_sink_t.{q}")).collect();
            let new: Vec<String> = non_key.iter().map(|q| format!("EXCLUDED.{q}")).collect();
            format!(
                "DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})",
                updates.join(", "),
                old.join(", "),
                new.join(", ")
            )
        };
        format!(
            "INSERT INTO {} AS sql_sink_t ({}) {source} ON CONFLICT ({}) {action}",
            self.target, self.columns, self.keys
        )
    }

    fn finish_batch(&mut self, rows: u64) {
        self.rows += rows;
        self.batches += 1;
    }

    pub(crate) async fn delete(&mut self, keys: &RowBatch) -> Result<()> {
        // Deletes apply after the upserts before them.
        self.close_segment().await?;
        if self.key_stage_ready {
            self.exec(
                &format!("TRUNCATE {KEY_STAGE}"),
                "emptying the key staging table of",
            )
            .await?;
        } else {
            let sql = self.stage_sql(KEY_STAGE, &self.def.primary_key.clone());
            self.exec(&sql, "creating the key staging table of").await?;
            self.key_stage_ready = true;
        }
        let key_list = self.keys.clone();
        let checks = std::mem::take(&mut self.key_checks);
        let copied = self.copy(KEY_STAGE, &key_list, &checks, keys).await;
        self.key_checks = checks;
        copied?;
        let cond: Vec<String> = self
            .def
            .primary_key
            .iter()
            .map(|k| format!("t.{q} = k.{q}", q = quote(k)))
            .collect();
        let sql = format!(
            "DELETE FROM {} AS t USING {KEY_STAGE} AS k WHERE {}",
            self.target,
            cond.join(" AND ")
        );
        self.deleted += self.exec(&sql, "deleting keys from").await?;
        self.batches += 1;
        Ok(())
    }

    pub(crate) async fn commit(mut self, watermark: &Watermark) -> Result<LoadSummary> {
        self.close_segment().await?;
        if self.replace {
            let live = qualified(&self.table.schema, &self.table.name);
            self.tx
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {live}; ALTER TABLE {} SET SCHEMA {}; ALTER TABLE {} RENAME TO {}",
                    self.target,
                    quote(&self.table.schema),
                    qualified(&self.table.schema, &replacement_name(&self.table)),
                    quote(&self.table.name)
                ))
                .await
                .map_err(Error::postgres(format!(
                    "swapping in the new {}",
                    self.table
                )))?;
        }
        write_meta(&self.tx, &self.physical, Some(watermark)).await?;
        let summary = LoadSummary {
            upserted_rows: self.rows,
            deleted_rows: self.deleted,
            batches: self.batches,
        };
        let table = self.table.clone();
        self.tx
            .commit()
            .await
            .map_err(Error::postgres(format!("committing the load of {table}")))?;
        Ok(summary)
    }

    pub(crate) async fn rollback(mut self) -> Result<()> {
        // Ends the COPY (CopyFail) so the rollback can run after it.
        drop(self.segment.take());
        let table = self.table.clone();
        self.tx
            .rollback()
            .await
            .map_err(Error::postgres(format!("rolling back the load of {table}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escaping() {
        let mut buf = BytesMut::new();
        push_cell(&mut buf, Some("a\tb\nc\\d\re"));
        buf.put_u8(b'|');
        push_cell(&mut buf, None);
        buf.put_u8(b'|');
        push_cell(&mut buf, Some("\\N"));
        assert_eq!(&buf[..], b"a\\tb\\nc\\\\d\\re|\\N|\\\\N");
    }

    fn users() -> TableDef {
        TableDef::new(
            "direct",
            "users",
            vec![
                crate::Column::new("id", SqlType::Int64, false),
                crate::Column::new("name", SqlType::Text, true),
            ],
            ["id"],
        )
    }

    fn rows(from: u32, to: u32, name: &str) -> RowBatch {
        let mut b = RowBatch::new(2);
        for i in from..to {
            b.push_row([Some(i.to_string().as_str()), Some(name)])
                .unwrap();
        }
        b
    }

    /// A key repeated in a later batch of the same open `COPY` segment (the
    /// server reports it only when the segment is confirmed) is replayed
    /// through the merge: the later row wins, nothing is lost or doubled,
    /// and the load goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_conflict_inside_an_open_segment_is_merged() {
        let Some(pg) = crate::testing::TempPostgres::start_or_skip().await else {
            return;
        };
        let mut sink = crate::Sink::open(pg.url()).await.unwrap();
        let def = users();
        let mut load = sink.begin_load(&def).await.unwrap();
        load.upsert(&mut rows(0, 1000, "first")).await.unwrap();
        load.upsert(&mut rows(900, 1100, "second")).await.unwrap();
        load.upsert(&mut rows(1100, 1200, "third")).await.unwrap();
        let mut keys = RowBatch::new(1);
        keys.push_row([Some("5")]).unwrap();
        load.delete(&mut keys).await.unwrap();
        load.upsert(&mut rows(1150, 1160, "fourth")).await.unwrap();
        let summary = load.commit(Watermark::new("w")).await.unwrap();
        assert_eq!(summary.upserted_rows, 1310);
        let back = sink.read_rows(&def.table_name()).await.unwrap();
        assert_eq!(back.len(), 1199);
        let name = |id: i64| {
            back.iter()
                .find(|r| r[0] == Value::Int(id))
                .map(|r| r[1].clone())
        };
        assert_eq!(name(5), None);
        assert_eq!(name(899), Some(Value::Text("first".into())));
        assert_eq!(name(900), Some(Value::Text("second".into())));
        assert_eq!(name(1100), Some(Value::Text("third".into())));
        assert_eq!(name(1155), Some(Value::Text("fourth".into())));
    }

    /// A load rolled back (or dropped) while its `COPY` is open leaves
    /// nothing behind and the connection usable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_with_an_open_copy_rolls_back_cleanly() {
        let Some(pg) = crate::testing::TempPostgres::start_or_skip().await else {
            return;
        };
        let mut sink = crate::Sink::open(pg.url()).await.unwrap();
        let def = users();
        let mut load = sink.begin_load(&def).await.unwrap();
        load.upsert(&mut rows(0, 100, "x")).await.unwrap();
        load.rollback().await.unwrap();
        let mut load = sink.begin_load(&def).await.unwrap();
        load.upsert(&mut rows(0, 100, "y")).await.unwrap();
        drop(load);
        assert_eq!(sink.watermark(&def.table_name()).await.unwrap(), None);
        let mut load = sink.begin_load(&def).await.unwrap();
        load.upsert(&mut rows(0, 10, "z")).await.unwrap();
        load.commit(Watermark::new("w")).await.unwrap();
        assert_eq!(sink.read_rows(&def.table_name()).await.unwrap().len(), 10);
    }

    /// Every type goes through binary COPY (initial load, then the staged
    /// merge) and reads back as sent; a table with a decimal column loads
    /// in text.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_type_round_trips_through_binary_and_text_copy() {
        use crate::Column;
        let Some(pg) = crate::testing::TempPostgres::start_or_skip().await else {
            return;
        };
        let mut sink = crate::Sink::open(pg.url()).await.unwrap();
        let types = [
            ("b", SqlType::Bool),
            ("i16", SqlType::Int16),
            ("i32", SqlType::Int32),
            ("f32", SqlType::Float32),
            ("f64", SqlType::Float64),
            ("v", SqlType::Varchar(5)),
            ("e", SqlType::enumeration("t__e", ["x", "y"])),
            ("ts", SqlType::Timestamp),
            ("d", SqlType::Date),
            ("t", SqlType::Time),
            ("u", SqlType::Uuid),
            ("j", SqlType::Json),
        ];
        let mut columns = vec![Column::new("id", SqlType::Int64, false)];
        columns.extend(types.iter().map(|(n, t)| Column::new(*n, t.clone(), true)));
        let def = TableDef::new("bin", "all", columns.clone(), ["id"]);
        let cells = [
            "yes",
            "-32768",
            "2147483647",
            "1.5",
            "-2.25e-3",
            "héllo",
            "y",
            "1969-07-20 20:17:40.5+00",
            "0900-02-28",
            "23:59:59.999999",
            "{936DA01F-9ABD-4D9D-80C7-02AF85C822A8}",
            "{\"a\": [1, null]}",
        ];
        let row = |id: &'static str| {
            let mut b = RowBatch::new(13);
            b.push_row(std::iter::once(Some(id)).chain(cells.iter().map(|c| Some(*c))))
                .unwrap();
            b
        };
        let mut nulls = RowBatch::new(13);
        nulls
            .push_row(std::iter::once(Some("3")).chain(std::iter::repeat_n(None, 12)))
            .unwrap();
        for mut batch in [row("1"), nulls] {
            let mut load = sink.begin_load(&def).await.unwrap();
            load.upsert(&mut batch).await.unwrap();
            load.commit(Watermark::new("w")).await.unwrap();
        }
        let mut load = sink.begin_load(&def).await.unwrap();
        load.upsert(&mut row("2")).await.unwrap();
        load.commit(Watermark::new("w2")).await.unwrap();
        let back = sink.read_rows(&def.table_name()).await.unwrap();
        let want = vec![
            Value::Bool(true),
            Value::Int(-32768),
            Value::Int(2_147_483_647),
            Value::Float(1.5),
            Value::Float(-2.25e-3),
            Value::Text("héllo".into()),
            Value::Text("y".into()),
            Value::Timestamp(value::parse_timestamp("1969-07-20T20:17:40.5Z").unwrap()),
            Value::Date(value::parse_date("0900-02-28").unwrap()),
            Value::Time(value::parse_time("23:59:59.999999").unwrap()),
            Value::Uuid("936da01f-9abd-4d9d-80c7-02af85c822a8".into()),
            Value::Json(serde_json::json!({"a": [1, null]})),
        ];
        assert_eq!(back.len(), 3);
        for (id, row) in [(1, &back[0]), (2, &back[1])] {
            assert_eq!(row[0], Value::Int(id));
            assert_eq!(&row[1..], &want[..], "row {id}");
        }
        assert!(back[2][1..].iter().all(|v| *v == Value::Null));

        columns.push(Column::new(
            "amount",
            SqlType::Decimal {
                precision: Some(10),
                scale: 2,
            },
            true,
        ));
        let def = TableDef::new("bin", "decimal", columns, ["id"]);
        let mut load = sink.begin_load(&def).await.unwrap();
        let mut b = RowBatch::new(14);
        b.push_row(
            std::iter::once(Some("1"))
                .chain(cells.iter().map(|c| Some(*c)))
                .chain([Some("12.50")]),
        )
        .unwrap();
        load.upsert(&mut b).await.unwrap();
        load.commit(Watermark::new("w")).await.unwrap();
        let back = sink.read_rows(&def.table_name()).await.unwrap();
        assert_eq!(&back[0][1..13], &want[..]);
        assert_eq!(back[0][13], Value::Decimal("12.5".into()));
    }

    #[test]
    fn constraint_names_are_short_and_stable() {
        let long = "x".repeat(63);
        assert!(enum_constraint(&long).len() < 63);
        assert_eq!(enum_constraint("a"), enum_constraint("a"));
        assert_ne!(enum_constraint("a"), enum_constraint("b"));
    }
}
