//! The replicator's error type.

use chrono::{DateTime, Utc};

/// Result alias of the replicator.
pub type Result<T, E = ReplicateError> = std::result::Result<T, E>;

/// Why replicating a table failed. Every variant names the table; nothing
/// of a failed load is committed (the table and its watermark are as they
/// were before).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicateError {
    /// A DAP API call failed (after the client's retries).
    #[error("{table}: {source}")]
    Api {
        /// `namespace.table`.
        table: String,
        /// The API error.
        #[source]
        source: crate::Error,
    },

    /// The database refused an operation.
    #[error("{table}: {source}")]
    Database {
        /// `namespace.table` (empty for database-wide operations).
        table: String,
        /// The sink's error.
        #[source]
        source: sql_sink::Error,
    },

    /// `sync` was asked for a table that was never initialised.
    #[error("{table} is not initialised in this database; run initdb (`init`) first")]
    NotInitialized {
        /// `namespace.table`.
        table: String,
    },

    /// `init` was asked for a table that is already replicated.
    #[error(
        "{table} is already initialised (watermark {watermark}); run syncdb (`sync`) to update it, \
         or dropdb (`drop`) first to start over"
    )]
    AlreadyInitialized {
        /// `namespace.table`.
        table: String,
        /// Its current watermark.
        watermark: String,
    },

    /// DAP refused the incremental query: the table was reloaded upstream
    /// and needs a new snapshot.
    #[error(
        "{table}: DAP requires a new snapshot of this table ({source}); re-initialise it \
         (option `reinit_when_needed`, CLI `--reinit`) or run dropdb + initdb"
    )]
    SnapshotRequired {
        /// `namespace.table`.
        table: String,
        /// The API error.
        #[source]
        source: crate::Error,
    },

    /// DAP refused the incremental query because the watermark is outside
    /// the range it can answer (e.g. older than its retention).
    #[error(
        "{table}: the watermark {since} is outside the range DAP can answer ({source}); \
         re-initialise the table (option `reinit_when_needed`, CLI `--reinit`)"
    )]
    OutOfRange {
        /// `namespace.table`.
        table: String,
        /// The watermark the query started from.
        since: DateTime<Utc>,
        /// The API error.
        #[source]
        source: crate::Error,
    },

    /// The schema changed in a way that cannot be applied to the existing
    /// table (a type narrowed or changed kind, the primary key changed).
    #[error(
        "{table}: the new schema cannot be applied to the existing table ({source}); \
         re-initialise it (option `reinit_when_needed`, CLI `--reinit`)"
    )]
    IncompatibleSchema {
        /// `namespace.table`.
        table: String,
        /// The sink's explanation.
        #[source]
        source: sql_sink::Error,
    },

    /// The table's schema cannot be replicated (e.g. it has no key).
    #[error("{table}: the schema cannot be replicated: {reason}")]
    UnsupportedSchema {
        /// `namespace.table`.
        table: String,
        /// What is wrong.
        reason: String,
    },

    /// An output object does not match the schema it was requested with.
    #[error("{table}: object {object_id} does not match the table schema: {reason}")]
    UnexpectedData {
        /// `namespace.table`.
        table: String,
        /// The object.
        object_id: String,
        /// What is wrong (a column the schema does not know, an unknown
        /// action, ...).
        reason: String,
    },

    /// A complete job lacked the timestamp that becomes the watermark.
    #[error("{table}: job {job_id} completed without `{field}`; the watermark cannot be set")]
    MissingTimestamp {
        /// `namespace.table`.
        table: String,
        /// The job.
        job_id: String,
        /// `at` (snapshot) or `until` (incremental).
        field: &'static str,
    },

    /// The table was not attempted because an earlier table failed with a
    /// fatal error (see [`ReplicateError::is_fatal`]).
    #[error("{table} was skipped because another table failed with a fatal error")]
    Skipped {
        /// `namespace.table`.
        table: String,
    },

    /// A worker task stopped unexpectedly (a bug; please report it).
    #[error("{table}: a worker task stopped unexpectedly: {message}")]
    Internal {
        /// `namespace.table`.
        table: String,
        /// What happened.
        message: String,
    },
}

impl ReplicateError {
    /// `true` when the error will fail every other table in the same way
    /// (bad credentials, a disabled account, an unreachable service or
    /// database), so a multi-table run stops starting new tables.
    pub fn is_fatal(&self) -> bool {
        match self {
            ReplicateError::Api { source, .. } => source.is_fatal(),
            ReplicateError::Database { source, .. } => matches!(
                source,
                sql_sink::Error::InvalidUrl { .. }
                    | sql_sink::Error::UnsupportedBackend { .. }
                    | sql_sink::Error::WorkerGone
            ),
            _ => false,
        }
    }

    /// The table the error is about (`namespace.table`).
    pub fn table(&self) -> &str {
        match self {
            ReplicateError::Api { table, .. }
            | ReplicateError::Database { table, .. }
            | ReplicateError::NotInitialized { table }
            | ReplicateError::AlreadyInitialized { table, .. }
            | ReplicateError::SnapshotRequired { table, .. }
            | ReplicateError::OutOfRange { table, .. }
            | ReplicateError::IncompatibleSchema { table, .. }
            | ReplicateError::UnsupportedSchema { table, .. }
            | ReplicateError::UnexpectedData { table, .. }
            | ReplicateError::MissingTimestamp { table, .. }
            | ReplicateError::Skipped { table }
            | ReplicateError::Internal { table, .. } => table,
        }
    }

    /// `true` for the errors that re-initialising the table resolves
    /// (snapshot required, out of range, incompatible schema change).
    pub fn needs_reinit(&self) -> bool {
        matches!(
            self,
            ReplicateError::SnapshotRequired { .. }
                | ReplicateError::OutOfRange { .. }
                | ReplicateError::IncompatibleSchema { .. }
        )
    }

    pub(crate) fn api(table: &str) -> impl FnOnce(crate::Error) -> ReplicateError + '_ {
        move |source| ReplicateError::Api {
            table: table.to_string(),
            source,
        }
    }

    pub(crate) fn db(table: &str) -> impl FnOnce(sql_sink::Error) -> ReplicateError + '_ {
        move |source| match source {
            sql_sink::Error::IncompatibleChange { .. }
            | sql_sink::Error::PrimaryKeyChanged { .. } => ReplicateError::IncompatibleSchema {
                table: table.to_string(),
                source,
            },
            source => ReplicateError::Database {
                table: table.to_string(),
                source,
            },
        }
    }
}
