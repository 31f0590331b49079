//! Typed requests for batch import and export.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;

use crate::content::ContentType;

/// Where the bytes of an uploaded file come from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FileSource {
    /// A file on disk, streamed in chunks (never read whole into memory).
    Path(PathBuf),
    /// Bytes already in memory, uploaded under `file_name`.
    Bytes {
        /// The file name declared in the multipart part.
        file_name: String,
        /// The content.
        bytes: Bytes,
    },
}

impl FileSource {
    /// The file name the part declares: the path's last component, or the
    /// given name.
    pub fn file_name(&self) -> String {
        match self {
            FileSource::Path(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "data".to_string()),
            FileSource::Bytes { file_name, .. } => file_name.clone(),
        }
    }
}

impl From<PathBuf> for FileSource {
    fn from(p: PathBuf) -> Self {
        FileSource::Path(p)
    }
}

impl From<&std::path::Path> for FileSource {
    fn from(p: &std::path::Path) -> Self {
        FileSource::Path(p.to_path_buf())
    }
}

/// A batch import (`POST /ls/api/batch/import`).
///
/// ```
/// use ldbatch_client::{ContentType, ImportRequest};
/// let req = ImportRequest::new("Attendee", ContentType::Json, std::path::Path::new("attendees.json"))
///     .job_name("Attendee Import Job")
///     .merge(true)
///     .notification_email("ops@example.com");
/// assert_eq!(req.text_fields()[0], ("itemType", "Attendee".to_string()));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImportRequest {
    /// LD item type the file holds (e.g. `Account`).
    pub item_type: String,
    /// JSON or CSV.
    pub content_type: ContentType,
    /// The data file.
    pub file: FileSource,
    /// Job name (defaults to `"<itemType> import"`).
    pub job_name: Option<String>,
    /// Mapping template, used for CSV files (sent as an `application/json` part).
    pub template: Option<FileSource>,
    /// Merge with existing data instead of overriding it (server default: override).
    pub merge: Option<bool>,
    /// Whether the CSV file has a header row.
    pub header_row: Option<bool>,
    /// E-mail address notified of the job's status.
    pub notification_email: Option<String>,
}

impl ImportRequest {
    /// An import of `file` holding items of `item_type` in `content_type`.
    pub fn new(
        item_type: impl Into<String>,
        content_type: ContentType,
        file: impl Into<FileSource>,
    ) -> Self {
        Self {
            item_type: item_type.into(),
            content_type,
            file: file.into(),
            job_name: None,
            template: None,
            merge: None,
            header_row: None,
            notification_email: None,
        }
    }

    /// Sets the job name.
    pub fn job_name(mut self, name: impl Into<String>) -> Self {
        self.job_name = Some(name.into());
        self
    }

    /// Sets the mapping template file.
    pub fn template(mut self, template: impl Into<FileSource>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Merge with existing data (`true`) or override it (`false`).
    pub fn merge(mut self, merge: bool) -> Self {
        self.merge = Some(merge);
        self
    }

    /// Declares whether the CSV file has a header row.
    pub fn header_row(mut self, header: bool) -> Self {
        self.header_row = Some(header);
        self
    }

    /// Sets the e-mail address notified of the job's status.
    pub fn notification_email(mut self, email: impl Into<String>) -> Self {
        self.notification_email = Some(email.into());
        self
    }

    /// The text fields of the multipart form, in wire spelling. Fields that
    /// are not set are left out, as the reference scripts do.
    pub fn text_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("itemType", self.item_type.clone()),
            ("contentType", self.content_type.import_value().to_string()),
            (
                "jobName",
                self.job_name
                    .clone()
                    .unwrap_or_else(|| format!("{} import", self.item_type)),
            ),
        ];
        if let Some(m) = self.merge {
            fields.push(("merge", bool_value(m)));
        }
        if let Some(h) = self.header_row {
            fields.push(("headerRow", bool_value(h)));
        }
        if let Some(e) = &self.notification_email {
            fields.push(("notificationEmail", e.clone()));
        }
        fields
    }
}

/// The wiki writes `{True, False}`; both servers seen accept lowercase.
fn bool_value(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

/// Export filters: `field -> value`; only items matching all of them are
/// exported. Sent as a JSON object in the `filters` field.
pub type Filters = BTreeMap<String, String>;

/// A batch export (`POST /ls/api/batch/export`).
///
/// Select items with either a SQL query or filters. The service ignores
/// filters when a query is given; this client enforces the same rule before
/// sending (the filters are dropped with a `tracing` warning) so what is
/// sent is what runs. With neither, every item of the type is exported.
///
/// ```
/// use ldbatch_client::{ContentType, ExportRequest};
/// let req = ExportRequest::new("Account", ContentType::Csv)
///     .filter("region", "EMEA")
///     .sql_query("select * from Account")
///     .row_header(true);
/// let fields = req.form_fields();
/// assert!(fields.iter().any(|(k, _)| *k == "sqlQuery"));
/// assert!(!fields.iter().any(|(k, _)| *k == "filters"));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ExportRequest {
    /// LD item type to export.
    pub item_type: String,
    /// JSON or CSV.
    pub content_type: ContentType,
    /// Job name (defaults to `"<itemType> export"`).
    pub job_name: Option<String>,
    /// Put a header row in a CSV export.
    pub row_header: Option<bool>,
    /// Velocity template converting items to CSV (its contents, sent inline).
    pub template: Option<String>,
    /// SQL query selecting the items; wins over [`ExportRequest::filters`].
    pub sql_query: Option<String>,
    /// Field filters, used only without a SQL query.
    pub filters: Filters,
    /// E-mail address notified of the job's status.
    pub notification_email: Option<String>,
}

impl ExportRequest {
    /// An export of every item of `item_type` in `content_type`.
    pub fn new(item_type: impl Into<String>, content_type: ContentType) -> Self {
        Self {
            item_type: item_type.into(),
            content_type,
            job_name: None,
            row_header: None,
            template: None,
            sql_query: None,
            filters: Filters::new(),
            notification_email: None,
        }
    }

    /// Sets the job name.
    pub fn job_name(mut self, name: impl Into<String>) -> Self {
        self.job_name = Some(name.into());
        self
    }

    /// Asks for a header row in a CSV export.
    pub fn row_header(mut self, header: bool) -> Self {
        self.row_header = Some(header);
        self
    }

    /// Sets the velocity template (its contents, not a path).
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Selects items with a SQL query (filters are then ignored).
    pub fn sql_query(mut self, query: impl Into<String>) -> Self {
        self.sql_query = Some(query.into());
        self
    }

    /// Adds one filter `field = value`.
    pub fn filter(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.filters.insert(field.into(), value.into());
        self
    }

    /// Sets the e-mail address notified of the job's status.
    pub fn notification_email(mut self, email: impl Into<String>) -> Self {
        self.notification_email = Some(email.into());
        self
    }

    /// The urlencoded form fields, in wire spelling, with the
    /// query-wins-over-filters rule applied.
    pub fn form_fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("itemType", self.item_type.clone()),
            ("contentType", self.content_type.export_value().to_string()),
            (
                "jobName",
                self.job_name
                    .clone()
                    .unwrap_or_else(|| format!("{} export", self.item_type)),
            ),
        ];
        if let Some(h) = self.row_header {
            fields.push(("rowHeader", bool_value(h)));
        }
        if let Some(t) = &self.template {
            fields.push(("template", t.clone()));
        }
        match &self.sql_query {
            Some(q) => {
                if !self.filters.is_empty() {
                    tracing::warn!(
                        item_type = %self.item_type,
                        filters = self.filters.len(),
                        "export has both a SQL query and filters; the query wins and the filters are not sent"
                    );
                }
                fields.push(("sqlQuery", q.clone()));
            }
            None if !self.filters.is_empty() => {
                // BTreeMap<String, String> always serializes to JSON.
                let json = serde_json::to_string(&self.filters).unwrap_or_default();
                fields.push(("filters", json));
            }
            None => {}
        }
        if let Some(e) = &self.notification_email {
            fields.push(("notificationEmail", e.clone()));
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_fields_use_the_import_spelling_and_skip_unset() {
        let req = ImportRequest::new(
            "Account",
            ContentType::Csv,
            FileSource::Bytes {
                file_name: "a.csv".into(),
                bytes: Bytes::from_static(b"x"),
            },
        );
        let fields = req.text_fields();
        assert!(fields.contains(&("contentType", "plain/text".to_string())));
        assert!(fields.contains(&("jobName", "Account import".to_string())));
        assert!(
            !fields
                .iter()
                .any(|(k, _)| *k == "merge" || *k == "notificationEmail")
        );
        let merged = req.merge(false).text_fields();
        assert!(merged.contains(&("merge", "false".to_string())));
    }

    #[test]
    fn export_sends_filters_as_json_without_a_query() {
        let req = ExportRequest::new("Account", ContentType::Csv)
            .filter("b", "2")
            .filter("a", "1");
        let fields = req.form_fields();
        assert!(fields.contains(&("filters", r#"{"a":"1","b":"2"}"#.to_string())));
        assert!(fields.contains(&("contentType", "text/plain".to_string())));
        assert!(!fields.iter().any(|(k, _)| *k == "sqlQuery"));
    }

    #[test]
    fn file_source_names() {
        assert_eq!(
            FileSource::from(std::path::Path::new("/tmp/x/data.json")).file_name(),
            "data.json"
        );
    }
}
