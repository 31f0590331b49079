//! The sink's error type.

use crate::model::TableName;

/// Result alias for the sink.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the sink. Messages never contain
/// passwords or connection strings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection string could not be used.
    #[error("invalid database URL: {reason}")]
    InvalidUrl {
        /// What is wrong (never the URL itself, which may hold a password).
        reason: String,
    },

    /// The URL names a backend this build does not include.
    #[error("database URL scheme `{scheme}` is not supported: {hint}")]
    UnsupportedBackend {
        /// The URL scheme.
        scheme: String,
        /// What to do about it.
        hint: &'static str,
    },

    /// A table, namespace or column name is unusable.
    #[error("invalid {what} name `{name}`: {reason}")]
    InvalidIdentifier {
        /// What the name is for ("table", "column", "namespace").
        what: &'static str,
        /// The name (shortened, NUL made visible).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A table definition is inconsistent.
    #[error("invalid definition of table {table}: {reason}")]
    InvalidDefinition {
        /// The table.
        table: TableName,
        /// What is wrong.
        reason: String,
    },

    /// A column's type changed in a way that cannot be applied without
    /// losing data.
    #[error(
        "table {table}: column `{column}` cannot change from {from} to {to} without losing data; \
         re-initialise the table (load it with `Sink::begin_replace`) or keep the old type upstream"
    )]
    IncompatibleChange {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// Type in the database.
        from: String,
        /// Type requested.
        to: String,
    },

    /// The primary key changed; rows cannot be matched by the old key.
    #[error(
        "table {table}: primary key changed from ({from}) to ({to}); \
         re-initialise the table (load it with `Sink::begin_replace`)"
    )]
    PrimaryKeyChanged {
        /// The table.
        table: TableName,
        /// Key in the database.
        from: String,
        /// Key requested.
        to: String,
    },

    /// A row batch does not have one cell per column.
    #[error("a row has {got} cells but the batch has {expected} columns")]
    RowShape {
        /// Columns of the batch.
        expected: usize,
        /// Cells given.
        got: usize,
    },

    /// A batch's column count does not match the table (or its key).
    #[error("table {table}: batch has {got} columns, expected {expected} ({what})")]
    BatchShape {
        /// The table.
        table: TableName,
        /// What was expected ("one per column", "one per key column").
        what: &'static str,
        /// Expected column count.
        expected: usize,
        /// Column count of the batch.
        got: usize,
    },

    /// A cell could not be stored in its column. Nothing of the load was
    /// committed.
    #[error("table {table}, column `{column}`, row {row} of the batch: {reason}")]
    InvalidValue {
        /// The table.
        table: TableName,
        /// The column.
        column: String,
        /// Zero-based row within the batch.
        row: usize,
        /// What is wrong with the value.
        reason: String,
    },

    /// An earlier batch of this load failed, so the load was abandoned; drop
    /// it (nothing was committed) and start again.
    #[error(
        "table {table}: an earlier batch of this load failed; nothing was committed, start a new load"
    )]
    LoadAborted {
        /// The table.
        table: TableName,
    },

    /// The table is not managed by this sink (no meta row).
    #[error("table {table} is not known to the sink (no row in its meta table)")]
    UnknownTable {
        /// The table.
        table: TableName,
    },

    /// A fault injected with [`crate::Sink::inject_fault`] fired; the load was
    /// rolled back.
    #[error("injected failure after {after_batches} batch(es); the load was rolled back")]
    InjectedFailure {
        /// Batches that had been applied (and are now rolled back).
        after_batches: usize,
    },

    /// The SQLite database reported an error.
    #[error("SQLite error while {context}: {source}")]
    Sqlite {
        /// What the sink was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },

    /// PostgreSQL reported an error.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL error while {context}: {message}")]
    Postgres {
        /// What the sink was doing.
        context: String,
        /// The server's message, detail and hint (or the driver's message).
        message: String,
        /// The SQLSTATE code, if the server sent one.
        code: Option<String>,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },

    /// The background SQLite thread is gone (it panicked or was shut down).
    #[error("the SQLite worker thread stopped; open the sink again")]
    WorkerGone,

    /// Reading the meta table found data the sink did not write.
    #[error("meta table row for {table} is unreadable: {reason}")]
    CorruptMeta {
        /// The table.
        table: TableName,
        /// What could not be read.
        reason: String,
    },
}

impl Error {
    pub(crate) fn sqlite(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
        let context = context.into();
        move |source| Error::Sqlite { context, source }
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn postgres(
        context: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let context = context.into();
        move |source| {
            let (message, code) = match source.as_db_error() {
                Some(db) => {
                    let mut m = db.message().to_string();
                    if let Some(d) = db.detail() {
                        m.push_str(" (");
                        m.push_str(d);
                        m.push(')');
                    }
                    if let Some(h) = db.hint() {
                        m.push_str("; hint: ");
                        m.push_str(h);
                    }
                    if let Some(w) = db.where_() {
                        m.push_str("; at ");
                        m.push_str(w);
                    }
                    (m, Some(db.code().code().to_string()))
                }
                None => {
                    // The driver's Display omits the cause ("error performing TLS handshake").
                    let mut m = source.to_string();
                    let mut cause = std::error::Error::source(&source);
                    while let Some(c) = cause {
                        m.push_str(": ");
                        m.push_str(&c.to_string());
                        cause = c.source();
                    }
                    (m, None)
                }
            };
            Error::Postgres {
                context,
                message,
                code,
                source,
            }
        }
    }

    /// The SQLSTATE code of a PostgreSQL error, if this is one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}
