#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
//!
//! # Model
//!
//! A table is described by a backend-neutral [`TableDef`]: namespace, name,
//! [`Column`]s with a [`SqlType`], and a (possibly composite) primary key.
//! Rows travel as [`RowBatch`]es of text cells (`None` = NULL) in column
//! order; the backend parses each cell for its column type. Text cells were
//! chosen because both sources produce text and PostgreSQL's text `COPY`
//! takes them nearly verbatim; a batch owns one text buffer and one offsets
//! buffer, which are reused from batch to batch, so loading does not
//! allocate per row.
//!
//! # Loads
//!
//! [`Sink::begin_load`] opens one transaction that first creates or evolves
//! the table ([`EvolutionReport`]), then takes any number of
//! [`Load::upsert`] and [`Load::delete`] batches, and finally
//! [`Load::commit`] writes the table's [`Watermark`] into the meta table and
//! commits. Either all of it lands or none of it: a crash, an error or
//! dropping the [`Load`] leaves the table and its watermark as they were,
//! so re-running converges. [`Sink::begin_replace`] loads a fresh copy and
//! swaps it in at commit (re-initialisation without readers ever seeing an
//! empty table). [`Sink::inject_fault`] makes the next load fail after k
//! batches, for crash-safety tests.
//!
//! # Meta table
//!
//! One row per managed table, in `sql_sink.tables` (PostgreSQL) or
//! `sql_sink__tables` (SQLite):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `namespace`, `name` | text, primary key | the table |
//! | `definition` | text (JSON of [`TableDef`]) | columns as they are in the database, including kept ones |
//! | `watermark` | text, NULL until the first commit | [`Watermark::value`] |
//! | `watermark_at` | timestamptz (SQLite: RFC 3339 text) | [`Watermark::at`] |
//! | `schema_version` | bigint | [`Watermark::schema_version`] |
//! | `details` | text (JSON) | [`Watermark::details`] |
//! | `updated_at` | timestamptz (SQLite: RFC 3339 text) | when the row last changed |
//!
//! # Backends
//!
//! * **SQLite** (default, bundled): table `users` of namespace `canvas` is
//!   `canvas__users` (namespaces cannot contain `__` or end with `_`, so the
//!   name is unambiguous). WAL mode, one
//!   dedicated thread per [`Sink`], prepared `INSERT .. ON CONFLICT DO
//!   UPDATE` statements, one transaction per load. Types map to affinities
//!   (see [`SqlType`]); values are parsed and checked by the sink, so the
//!   same bad value is refused by both backends.
//! * **PostgreSQL** (feature `postgres`): each namespace is a schema,
//!   tables keep their names (`canvas.users`). Rows travel as binary `COPY ..
//!   FROM STDIN` (cells are parsed by the sink, as for SQLite, so the server
//!   parses no numbers or times; tables with a `numeric` column use text
//!   `COPY`). A load into a table that was empty when it began streams one
//!   `COPY` straight into the table, in 8 MiB segments each under a
//!   savepoint, so the server works while the next batch is prepared. Into
//!   a populated table, or from the segment where a key repeats onwards,
//!   each batch goes into a temporary staging table and is merged with
//!   `INSERT .. SELECT .. ON CONFLICT (key) DO UPDATE` (deletes: `DELETE ..
//!   USING`); rows that would not change are not rewritten. Either way the
//!   whole load and its watermark are one transaction, and an error in a
//!   streamed batch may surface on a later call or at `commit`. Enums are `text` with a `CHECK`
//!   constraint, JSON is `jsonb`, the session time zone is UTC. With
//!   `sslmode=require` (or `verify-ca`/`verify-full`) the connection uses
//!   TLS (rustls) and verifies the server certificate against the system's
//!   roots; the default `prefer` and `disable` connect without TLS.
//!
//! Identifiers (namespaces, tables, columns) come from servers and are
//! validated ([`ident::validate`]) and always quoted ([`ident::quote`]).
//!
//! # Using it well
//!
//! * Batches of 10 000–100 000 rows (or a few MB, see
//!   [`RowBatch::text_bytes`]) amortise the per-batch work; reuse the same
//!   batch, [`Load::upsert`] hands it back empty.
//! * A full snapshot (DAP init, a BDS full extract) is best loaded with
//!   [`Sink::begin_replace`]: rows deleted upstream disappear, and the load
//!   runs at `COPY` speed. Incremental data (DAP sync, BDS differentials)
//!   goes through [`Sink::begin_load`].
//! * To load several tables at once, give each task its own connection
//!   ([`Sink::reopen`]); SQLite lets one writer in at a time, PostgreSQL
//!   loads them in parallel.
//! * The sink emits `tracing` events (load started, structure changed,
//!   columns kept, load committed) and never prints. For progress bars and
//!   metrics, install a [`LoadObserver`] ([`Sink::set_observer`]): it is
//!   called synchronously at each step of a load ([`LoadEvent`]).

mod error;
pub mod evolve;
pub mod ident;
mod model;
pub mod observe;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
mod sink;
mod sqlite;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod testing;
#[cfg(feature = "postgres")]
mod tls;
mod value;
mod watermark;

pub use error::{Error, Result};
pub use evolve::EvolutionReport;
pub use model::{Column, SqlType, TableDef, TableName};
pub use observe::{BatchKind, LoadEvent, LoadObserver};
pub use rows::{Row, RowBatch};
pub use sink::{BackendKind, Fault, Load, LoadSummary, Sink};
pub use value::Value;
pub use watermark::{TableStatus, Watermark};
