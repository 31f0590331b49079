//! Request and response types of the DAP Query API (specs/dap.md §3).
//!
//! Parsing is lenient where the official client is strict: unknown fields are
//! ignored and unknown enum values are kept as `Unknown(..)`, so a server that
//! adds a field or a status does not break a running pipeline.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Declares a string enum that serializes as its wire value and keeps values it
/// does not know as `Unknown(String)`.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $wire:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version of the client does not know, kept as sent.
            Unknown(String),
        }

        impl $name {
            /// The value as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Unknown(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )+
                    other => Self::Unknown(other.to_string()),
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok(Self::from(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Ok(Self::from(s.as_ref()))
            }
        }
    };
}

wire_enum! {
    /// The format of a query's output objects.
    Format {
        /// Tab-separated values, escaped like PostgreSQL `COPY`.
        Tsv => "tsv",
        /// Comma-separated values (RFC 4180 with DAP's NULL rules).
        Csv => "csv",
        /// JSON Lines: one JSON object per record.
        Jsonl => "jsonl",
        /// Apache Parquet (not decoded by this crate's record stream).
        Parquet => "parquet",
    }
}

impl Format {
    /// The file suffix the service uses for objects of this format.
    pub fn extension(&self) -> &str {
        self.as_str()
    }
}

wire_enum! {
    /// How nested fixed-cardinality fields are laid out in tabular output.
    Mode {
        /// Each nested field gets its own column (`value.a.b`).
        Expanded => "expanded",
        /// Nested fields stay together as one JSON-valued column.
        Condensed => "condensed",
    }
}

wire_enum! {
    /// Where a job is in its lifetime.
    JobStatus {
        /// Queued, not started.
        Waiting => "waiting",
        /// Running.
        Running => "running",
        /// Finished with success; its objects can be fetched.
        Complete => "complete",
        /// Finished with failure; see [`Job::error`].
        Failed => "failed",
    }
}

wire_enum! {
    /// What an incremental record means for the replica.
    Action {
        /// Insert or update the record.
        Upsert => "U",
        /// Hard-delete the record (only the key is sent).
        Delete => "D",
    }
}

impl JobStatus {
    /// `true` for `complete` and `failed`: the job will not change any more.
    ///
    /// An unknown status is treated as still running, so a waiter keeps
    /// polling (up to its deadline) rather than misreading it as done.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Complete | Self::Failed)
    }
}

/// A snapshot query: the present state of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SnapshotQuery {
    /// Output format.
    pub format: Format,
    /// Output mode for tabular formats; the server's default when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

impl SnapshotQuery {
    /// A snapshot query in `format`, with the server's default mode.
    pub fn new(format: Format) -> Self {
        Self { format, mode: None }
    }

    /// Sets the output mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }
}

/// An incremental query: the changes committed since a point in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IncrementalQuery {
    /// Output format.
    pub format: Format,
    /// Output mode for tabular formats; the server's default when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Start of the range: usually the `at` of a snapshot or the `until` of
    /// the previous incremental job.
    pub since: DateTime<Utc>,
    /// End of the range; the latest commit when `None` (recommended).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

impl IncrementalQuery {
    /// An incremental query in `format` from `since` up to the latest commit.
    pub fn new(format: Format, since: DateTime<Utc>) -> Self {
        Self {
            format,
            mode: None,
            since,
            until: None,
        }
    }

    /// Sets the output mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets the end of the range.
    pub fn until(mut self, until: DateTime<Utc>) -> Self {
        self.until = Some(until);
        self
    }
}

/// Either kind of query, as taken by [`Client::get_table_data`](crate::Client::get_table_data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Query {
    /// A snapshot query.
    Snapshot(SnapshotQuery),
    /// An incremental query.
    Incremental(IncrementalQuery),
}

impl Query {
    /// The requested output format.
    pub fn format(&self) -> &Format {
        match self {
            Query::Snapshot(q) => &q.format,
            Query::Incremental(q) => &q.format,
        }
    }

    /// The requested output mode, if any.
    pub fn mode(&self) -> Option<&Mode> {
        match self {
            Query::Snapshot(q) => q.mode.as_ref(),
            Query::Incremental(q) => q.mode.as_ref(),
        }
    }
}

impl From<SnapshotQuery> for Query {
    fn from(q: SnapshotQuery) -> Self {
        Query::Snapshot(q)
    }
}

impl From<IncrementalQuery> for Query {
    fn from(q: IncrementalQuery) -> Self {
        Query::Incremental(q)
    }
}

/// A reference to an output object in the service's storage.
///
/// Identifiers are opaque; trade them for pre-signed URLs with
/// [`Client::resources`](crate::Client::resources).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Object {
    /// The object's identifier.
    pub id: String,
}

impl Object {
    /// An object reference with the given id.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }
}

/// A pre-signed URL to an object. Fetching it needs no authentication.
///
/// `Debug` hides the query string: it carries the URL's signature.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Resource {
    /// The pre-signed URL.
    pub url: String,
}

impl Resource {
    /// A resource for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into() }
    }

    /// The file name the URL's path ends with (percent-decoding not applied),
    /// or `None` when the path has no usable last segment.
    pub fn file_name(&self) -> Option<String> {
        let parsed = url::Url::parse(&self.url).ok()?;
        let name = parsed.path_segments()?.next_back()?.to_string();
        (!name.is_empty() && name != "." && name != "..").then_some(name)
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("url", &client_core::error::redact_url(&self.url))
            .finish()
    }
}

/// The answer of `POST /dap/object/url`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct ResourceResult {
    /// Pre-signed URLs keyed by object id.
    pub urls: HashMap<String, Resource>,
}

/// The answer of `GET /dap/query/{namespace}/table`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct TableList {
    /// Table names.
    pub tables: Vec<String>,
}

/// A table's JSON Schema at a specific version. Versions only grow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VersionedSchema {
    /// The JSON Schema of one record (`meta`, `key`, `value`).
    pub schema: serde_json::Value,
    /// The schema's version.
    pub version: i64,
}

impl VersionedSchema {
    /// The file name the official CLI saves this schema under.
    pub fn file_name(&self, table: &str) -> String {
        format!("{table}_schema_version_{}.json", self.version)
    }
}

/// The server's description of why a job failed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[non_exhaustive]
pub struct JobError {
    /// Machine-readable error type.
    #[serde(rename = "type", default)]
    pub error_type: Option<String>,
    /// Error id to quote to support.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.error_type, &self.message) {
            (Some(t), Some(m)) => write!(f, "{t}: {m}")?,
            (Some(t), None) => f.write_str(t)?,
            (None, Some(m)) => f.write_str(m)?,
            (None, None) => f.write_str("no details given")?,
        }
        if let Some(uuid) = &self.uuid {
            write!(f, " (error id {uuid})")?;
        }
        Ok(())
    }
}

/// A query job, in any state.
///
/// One type covers the official client's `TableJob`, `CompleteSnapshotJob`,
/// `CompleteIncrementalJob` and `FailedJob`: the fields that a state does
/// not have are `None` or empty.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct Job {
    /// Opaque job id.
    pub id: String,
    /// Current status.
    pub status: JobStatus,
    /// When the job and its objects stop being available.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Output objects (complete jobs).
    #[serde(default)]
    pub objects: Vec<Object>,
    /// Schema version the records conform to (complete jobs).
    #[serde(default)]
    pub schema_version: Option<i64>,
    /// State timestamp of a complete snapshot job.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Start of the range of a complete incremental job.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// End of the range of a complete incremental job.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Why the job failed (failed jobs).
    #[serde(default)]
    pub error: Option<JobError>,
}

impl Job {
    /// `true` once the job is complete or failed.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The timestamp identifying the table state the output reflects: `at`
    /// for a snapshot, `until` for an incremental job. Chain it as the next
    /// incremental query's `since`.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        self.at.or(self.until)
    }
}

/// What [`Client::get_table_data`](crate::Client::get_table_data) returns:
/// a completed job's objects and metadata.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GetTableDataResult {
    /// Schema version the records conform to.
    pub schema_version: Option<i64>,
    /// Table state timestamp (`at` or `until`).
    pub timestamp: Option<DateTime<Utc>>,
    /// The id of the job that produced the objects.
    pub job_id: String,
    /// The output objects.
    pub objects: Vec<Object>,
    /// The completed job itself.
    pub job: Job,
}

/// What [`Client::download_table_data`](crate::Client::download_table_data)
/// returns: the metadata and the files written.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DownloadTableDataResult {
    /// Schema version the records conform to.
    pub schema_version: Option<i64>,
    /// Table state timestamp (`at` or `until`).
    pub timestamp: Option<DateTime<Utc>>,
    /// The id of the job that produced the files.
    pub job_id: String,
    /// Paths of the files written, in object order.
    pub downloaded_files: Vec<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ignores_unknown_fields_and_keeps_unknown_status() {
        let job: Job = serde_json::from_str(
            r#"{"id":"j1","status":"paused","expires_at":"2024-05-02T09:40:00Z","shiny_new":1}"#,
        )
        .unwrap();
        assert_eq!(job.status, JobStatus::Unknown("paused".into()));
        assert!(!job.is_terminal());
        assert!(job.objects.is_empty());
    }

    #[test]
    fn complete_jobs_expose_their_timestamp() {
        let snap: Job = serde_json::from_str(
            r#"{"id":"j","status":"complete","objects":[{"id":"a/part-0.tsv.gz"}],
                "schema_version":3,"at":"2024-05-01T09:40:12.123Z"}"#,
        )
        .unwrap();
        assert_eq!(
            snap.timestamp().unwrap().to_rfc3339(),
            "2024-05-01T09:40:12.123+00:00"
        );
        assert_eq!(snap.objects, vec![Object::new("a/part-0.tsv.gz")]);
        let inc: Job = serde_json::from_str(
            r#"{"id":"j","status":"complete","objects":[],"schema_version":3,
                "since":"2024-05-01T09:40:12Z","until":"2024-05-01T13:40:12+00:00"}"#,
        )
        .unwrap();
        assert_eq!(inc.timestamp(), inc.until);
    }

    #[test]
    fn queries_serialize_like_the_official_client() {
        let since = "2024-01-01T01:02:03.456Z".parse().unwrap();
        let q = Query::from(IncrementalQuery::new(Format::Csv, since));
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"format":"csv","since":"2024-01-01T01:02:03.456Z"}"#
        );
        let q = Query::from(SnapshotQuery::new(Format::Tsv).mode(Mode::Condensed));
        assert_eq!(
            serde_json::to_string(&q).unwrap(),
            r#"{"format":"tsv","mode":"condensed"}"#
        );
    }

    #[test]
    fn resource_debug_hides_the_signature() {
        let r = Resource::new("https://b.example/x/part-1.tsv.gz?X-Amz-Signature=secret");
        assert!(!format!("{r:?}").contains("secret"));
        assert_eq!(r.file_name().as_deref(), Some("part-1.tsv.gz"));
        assert_eq!(Resource::new("https://b.example/").file_name(), None);
    }
}
