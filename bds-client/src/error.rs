//! The error type of this crate.
//!
//! Every variant says what went wrong and, where there is one, what to do about
//! it. No variant holds a secret; URLs are shown without their query string.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = BdsError> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to Brightspace Data Sets or
/// reading its extracts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BdsError {
    /// An HTTP, authentication, retry or download failure from the shared core.
    #[error(transparent)]
    Core(client_core::Error),

    /// The stored refresh token was already traded in or revoked.
    #[error(
        "the stored D2L refresh token was rejected ({reason}): refresh tokens are single-use and this one \
         is spent or revoked. Authorize the app again in Brightspace (OAuth 2.0 authorization-code flow \
         with refresh tokens enabled), then write the new refresh token into the token store \
         (the file named by D2L_TOKEN_STORE), or delete that file and set D2L_REFRESH_TOKEN"
    )]
    RefreshTokenSpent {
        /// What the token endpoint said.
        reason: String,
    },

    /// The client was configured wrongly, e.g. a missing environment variable.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The extract has no download link or is temporarily unavailable.
    #[error("the {kind} extract of {plugin_id} queued at {queued} cannot be downloaded: {reason}")]
    NotDownloadable {
        /// Plugin id of the extract.
        plugin_id: String,
        /// `Full`, `Differential` or what the server said.
        kind: String,
        /// When it was queued for processing, as text.
        queued: String,
        /// Why.
        reason: String,
    },

    /// No data set of that name or plugin id is visible to this app.
    #[error(
        "no Brightspace data set named or with plugin id {0:?} is visible to this app; \
         check the name with `list`, and that the app has the datasets:bds:read scope"
    )]
    UnknownDataSet(String),

    /// The data set's primary key is not known, so its rows cannot be keyed.
    #[error(
        "the primary key of data set {data_set:?} is not known; set it with \
         SyncOptions::primary_key (the example's --primary-key \"{data_set}=Col1,Col2\")"
    )]
    UnknownPrimaryKey {
        /// Name of the data set.
        data_set: String,
    },

    /// The extract's header lacks a column the table needs (e.g. a key column).
    #[error("the CSV of {entry} has no column {column:?}; its header is: {header}")]
    MissingColumn {
        /// Name of the CSV inside the archive.
        entry: String,
        /// The missing column.
        column: String,
        /// The header that was found.
        header: String,
    },

    /// The file is not a readable ZIP archive.
    #[error("{path} is not a valid ZIP archive: {message}")]
    Archive {
        /// Path of the archive.
        path: PathBuf,
        /// What the ZIP reader said.
        message: String,
    },

    /// An entry's name would escape the directory it is unpacked into.
    #[error(
        "the archive {path} holds an entry with an unsafe name {name:?} (absolute or escaping with ..); refusing to read it"
    )]
    UnsafeEntryName {
        /// Path of the archive.
        path: PathBuf,
        /// The offending entry name.
        name: String,
    },

    /// The archive does not hold exactly one CSV file.
    #[error("the archive {path} should hold exactly one CSV file but holds: {entries:?}")]
    UnexpectedEntries {
        /// Path of the archive.
        path: PathBuf,
        /// The file entries found.
        entries: Vec<String>,
    },

    /// Decompressing would exceed the configured cap: a zip bomb or an
    /// extract larger than allowed.
    #[error(
        "decompressing {entry} would exceed the limit of {limit} bytes ({detail}); \
         if the extract is genuine, raise ArchiveLimits::max_uncompressed_bytes"
    )]
    DecompressionLimit {
        /// Name of the entry.
        entry: String,
        /// The configured limit in bytes.
        limit: u64,
        /// What was seen.
        detail: String,
    },

    /// The entry compresses far better than any CSV does: a zip bomb.
    #[error(
        "{entry} declares a compression ratio of {ratio}:1, above the limit of {limit}:1; \
         refusing to decompress a likely zip bomb (raise ArchiveLimits::max_compression_ratio if genuine)"
    )]
    CompressionRatio {
        /// Name of the entry.
        entry: String,
        /// Declared uncompressed size divided by compressed size.
        ratio: u64,
        /// The configured limit.
        limit: u64,
    },

    /// One CSV record is larger than the configured cap.
    #[error(
        "a record of {entry} starting on line {line} is longer than {limit} bytes; raise ArchiveLimits::max_record_bytes if genuine"
    )]
    RecordTooLarge {
        /// Name of the entry.
        entry: String,
        /// Line where the record starts.
        line: u64,
        /// The configured limit.
        limit: u64,
    },

    /// The CSV could not be parsed (bad UTF-8, unequal field counts, ...).
    #[error("cannot parse {entry} at line {line}: {message}")]
    Csv {
        /// Name of the entry.
        entry: String,
        /// Line of the error (1-based), 0 if unknown.
        line: u64,
        /// What the parser said.
        message: String,
    },

    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, including the path.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A database operation of the sync failed.
    #[cfg(feature = "sql")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sql")))]
    #[error("database error while syncing {data_set}: {source}")]
    Sql {
        /// The data set being synced.
        data_set: String,
        /// The sink's error (boxed: it is large).
        #[source]
        source: Box<sql_sink::Error>,
    },

    /// A background task died (a bug or a panic in a callback).
    #[error("background task failed: {0}")]
    Task(String),
}

impl From<client_core::Error> for BdsError {
    fn from(e: client_core::Error) -> Self {
        match e {
            // Say it the D2L way: where the token lives and how to get a new one.
            client_core::Error::RefreshTokenSpent { reason } => {
                BdsError::RefreshTokenSpent { reason }
            }
            other => BdsError::Core(other),
        }
    }
}

impl BdsError {
    /// Builds a [`BdsError::Io`] with a context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BdsError::Io {
            context: context.into(),
            source,
        }
    }

    /// The HTTP status of the error, if it came from an HTTP response.
    pub fn status(&self) -> Option<u16> {
        match self {
            BdsError::Core(e) => e.status(),
            _ => None,
        }
    }
}
