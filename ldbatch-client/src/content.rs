//! The data format of an import or export file.

use serde::{Deserialize, Serialize};

/// The data format of a job's file.
///
/// The service spells CSV differently per call, and this type sends exactly
/// what it documents: imports say `plain/text` (sic), exports say
/// `text/plain`. JSON is `application/json` in both.
///
/// ```
/// use ldbatch_client::ContentType;
/// assert_eq!(ContentType::Csv.import_value(), "plain/text");
/// assert_eq!(ContentType::Csv.export_value(), "text/plain");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ContentType {
    /// JSON (`application/json`).
    Json,
    /// CSV (`plain/text` on import, `text/plain` on export).
    Csv,
    /// Any other value, sent verbatim.
    Other(String),
}

impl ContentType {
    /// The value of the `contentType` field of an import.
    pub fn import_value(&self) -> &str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Csv => "plain/text",
            ContentType::Other(s) => s,
        }
    }

    /// The value of the `contentType` field of an export.
    pub fn export_value(&self) -> &str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Csv => "text/plain",
            ContentType::Other(s) => s,
        }
    }

    /// The usual file extension of this format (`json`, `csv`, or `dat`).
    pub fn extension(&self) -> &'static str {
        match self {
            ContentType::Json => "json",
            ContentType::Csv => "csv",
            ContentType::Other(_) => "dat",
        }
    }
}

impl From<String> for ContentType {
    fn from(s: String) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "application/json" | "json" => ContentType::Json,
            "plain/text" | "text/plain" | "text/csv" | "csv" => ContentType::Csv,
            _ => ContentType::Other(s),
        }
    }
}

impl From<ContentType> for String {
    fn from(c: ContentType) -> Self {
        c.import_value().to_string()
    }
}

impl std::fmt::Display for ContentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContentType::Json => "JSON",
            ContentType::Csv => "CSV",
            ContentType::Other(s) => s,
        })
    }
}
