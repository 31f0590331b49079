//! Keeping a database in step with DAP (feature `sql`): `init`, `sync`,
//! `drop` and `list` of replicated tables, in SQLite (embedded, default) or
//! PostgreSQL (feature `postgres`), through [`sql_sink`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use dap_client::Client;
//! use dap_client::replicate::{Operation, ReplicateOptions, Replicator};
//!
//! let client = Client::from_env()?;
//! let replicator = Replicator::open(client, "sqlite://canvas.db").await?
//!     .with_options(ReplicateOptions::default().reinit_when_needed(true));
//! replicator.init("canvas", "accounts").await?;
//! // ... later, and as often as wanted:
//! let report = replicator.sync("canvas", "accounts").await?;
//! println!("{} upserted, {} deleted", report.upserted_rows, report.deleted_rows);
//! // Many tables at once (bounded concurrency), every table's outcome:
//! let outcome = replicator
//!     .run_many(Operation::Sync, "canvas", &["users", "courses"])
//!     .await;
//! for (table, result) in &outcome.results {
//!     println!("{table}: {}", if result.is_ok() { "ok" } else { "failed" });
//! }
//! outcome.into_result()?;
//! # Ok(()) }
//! ```
//!
//! # What each operation does
//!
//! * **init** — fetch the schema, create the table, run a snapshot job
//!   (`{"format":"tsv","mode":"condensed"}`), stream its objects into the
//!   table and set the watermark to the job's `at`. A table that already
//!   has a watermark is refused ([`ReplicateError::AlreadyInitialized`]).
//! * **sync** — fetch the schema, apply schema changes, run an incremental
//!   job `since` the watermark, upsert `U` rows, delete `D` keys and set
//!   the watermark to the job's `until`.
//! * **drop** — drop the table and its watermark (no API call).
//! * **list** — every replicated table with its watermark, staleness,
//!   schema version and row count.
//!
//! Each table's load — schema changes, rows, deletes and watermark — is
//! **one transaction**: a failure or a crash at any point leaves the table
//! and its watermark as they were, and running the command again converges
//! to the same content. (The official client commits per batch; a failed
//! `initdb` there needs manual cleanup.)
//!
//! `SnapshotRequired` and `OutOfRange` answers and schema changes that
//! cannot be applied in place are typed errors by default
//! ([`ReplicateError::needs_reinit`]); with
//! [`ReplicateOptions::reinit_when_needed`] the table is re-initialised
//! instead: a snapshot is loaded into a new table that replaces the old
//! one in the same transaction, so readers never see it empty.
//!
//! # Progress
//!
//! Object downloads report their bytes to the callback set with
//! [`ClientBuilder::progress`](crate::client::ClientBuilder::progress);
//! each table load reports its steps (started with its schema change,
//! batch written, committing, committed) to the observer set with
//! [`Replicator::with_load_observer`]. Both are called synchronously, so
//! a program can also stop at an exact point of a load, which is how the
//! crash tests of this workspace kill a replication mid-way.
//!
//! # JSON Schema → SQL types
//!
//! Key properties become the primary key (composite keys included) and are
//! NOT NULL; value properties are NOT NULL when listed in the schema's
//! `required`, nullable otherwise; `meta` is not stored.
//!
//! | JSON Schema | PostgreSQL | SQLite (affinity, stored form) |
//! |---|---|---|
//! | `integer`, `format: int16` | `smallint` | `INTEGER` |
//! | `integer`, `format: int32` | `integer` | `INTEGER` |
//! | `integer`, `format: int64` or none | `bigint` | `INTEGER` |
//! | `number`, `format: float32` | `real` | `REAL` |
//! | `number`, `format: float64` or none | `double precision` | `REAL` |
//! | `boolean` | `boolean` | `INTEGER` 0/1 |
//! | `string`, `format: date-time` | `timestamptz` (UTC) | `TEXT`, RFC 3339 UTC, µs |
//! | `string`, `format: date` | `date` | `TEXT` `YYYY-MM-DD` |
//! | `string`, `format: time` | `time` | `TEXT` `HH:MM:SS.ffffff` |
//! | `string`, `format: uuid` | `uuid` | `TEXT`, lowercase |
//! | `string` with `enum` | `text` + `CHECK (col IN (...))` | `TEXT`, values checked on load |
//! | `string` with `maxLength: n` | `varchar(n)` | `TEXT`, length checked |
//! | other `string` (incl. `duration`, `ipv4`, `ipv6`) | `text` | `TEXT` |
//! | `object` with `properties` (condensed) | `jsonb` | `TEXT`, validated JSON |
//! | `object` without properties, `array`, unions | `jsonb` | `TEXT`, validated JSON |
//!
//! Enums are `text` with a CHECK constraint rather than PostgreSQL enum
//! types because a value added by `ALTER TYPE .. ADD VALUE` cannot be used
//! in the transaction that adds it, and the schema change and the load
//! share one transaction.
//!
//! # Schema changes between runs
//!
//! Applied before loading, inside the load's transaction: new columns are
//! added (nullable: existing rows have no value), types are widened along
//! safe paths (`int16` → `int32` → `int64`, `varchar(n)` → larger →
//! `text`, ...), new enum values are allowed; a column removed upstream is
//! **kept** with its data, filled with NULL for new rows and reported in
//! [`TableReport::evolution`] (`kept_columns`). The official client drops
//! such columns.
//!
//! # Database layout
//!
//! * **PostgreSQL**: each DAP namespace is a schema and each table keeps
//!   its DAP name (`canvas.users`), as with the official replicator, so
//!   existing queries keep working.
//! * **SQLite**: no schemas, so the table is `<namespace>__<table>`
//!   (`canvas__users`).
//!
//! Watermarks live in the sink's meta table (`sql_sink.tables` in
//! PostgreSQL, `sql_sink__tables` in SQLite; see [`sql_sink`]), one row per
//! table: the watermark (`at` / `until`, RFC 3339), the schema version the
//! rows were loaded with, and details (`{"command": "initdb"|"syncdb",
//! "job_id": ...}`). It is not the official client's
//! `instructure_dap.table_sync`; a database is managed by one or the other.
//!
//! # Data path
//!
//! Objects are downloaded (several at once), decompressed and parsed by
//! reader tasks straight from the network into reusable row batches, which
//! a bounded channel carries to the loader: loading overlaps downloading,
//! nothing is spooled to disk, and memory stays flat whatever the table's
//! size. Object bodies that break off are read again, skipping the rows
//! already loaded; expired pre-signed URLs are re-resolved.

mod error;
mod many;
mod mapping;
mod pipeline;
mod replicator;

pub use error::{ReplicateError, Result};
pub use many::{ManyError, ManyOutcome};
pub use replicator::{Operation, ReplicateOptions, ReplicatedTable, Replicator, TableReport};
/// The sink types that appear in this module's API, re-exported.
pub use sql_sink::{BatchKind, EvolutionReport, Fault, LoadEvent, LoadObserver, Sink};
