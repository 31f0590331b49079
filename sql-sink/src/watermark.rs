//! What a table's meta row says: [`Watermark`] and [`TableStatus`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{TableDef, TableName};

/// How far a table has been loaded, committed with the rows it describes.
///
/// `value` is opaque to the sink (a DAP `until` timestamp, a BDS extract id,
/// a cursor...); the other fields are there so callers need not encode
/// everything into one string.
///
/// ```
/// use chrono::{TimeZone, Utc};
/// let w = sql_sink::Watermark::new("2024-05-01T10:11:12Z")
///     .with_at(Utc.with_ymd_and_hms(2024, 5, 1, 10, 11, 12).unwrap())
///     .with_schema_version(3);
/// assert_eq!(w.schema_version, Some(3));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Watermark {
    /// Opaque position, e.g. the DAP job's `until` or the last applied extract id.
    pub value: String,
    /// The instant the position stands for, when there is one.
    pub at: Option<DateTime<Utc>>,
    /// Version of the source schema the rows were loaded with.
    pub schema_version: Option<i64>,
    /// Anything else the caller wants to keep next to it (stored as JSON text).
    pub details: Option<serde_json::Value>,
}

impl Watermark {
    /// A watermark with just an opaque value.
    pub fn new(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            at: None,
            schema_version: None,
            details: None,
        }
    }

    /// Set the instant the watermark stands for.
    pub fn with_at(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self
    }

    /// Set the source schema version.
    pub fn with_schema_version(mut self, version: i64) -> Self {
        self.schema_version = Some(version);
        self
    }

    /// Attach free-form details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// A managed table as the meta table and the table itself describe it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TableStatus {
    /// The table.
    pub table: TableName,
    /// The definition the table has now (including columns kept after they
    /// disappeared upstream).
    pub definition: TableDef,
    /// The last committed watermark; `None` if the table was created but no
    /// load has committed yet.
    pub watermark: Option<Watermark>,
    /// When the meta row last changed.
    pub updated_at: DateTime<Utc>,
    /// Rows in the table now.
    pub row_count: u64,
}
