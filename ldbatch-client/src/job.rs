//! The job status response shared by import, export, status and cancel.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer};

use crate::content::ContentType;
use crate::status::JobStatus;

/// A batch job as the service reports it (`POST /ls/api/batch/status` and
/// the responses of import, export and cancel).
///
/// Unknown fields are kept in [`Job::extra`]; that is where export result
/// links live, since their field name is not documented
/// (see [`Job::download_links`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Job {
    /// The unique job identifier.
    pub job_id: String,
    /// The current status.
    pub status: JobStatus,
    /// A message that details the current status (e.g. why it was rejected).
    #[serde(default)]
    pub reason: Option<String>,
    /// When the job was submitted. Accepts `2015-05-26T13:35:25+0000` and
    /// RFC 3339; an unparseable value becomes `None` (with a warning).
    #[serde(default, deserialize_with = "de_timestamp")]
    pub submit_time: Option<DateTime<FixedOffset>>,
    /// The job's name.
    #[serde(default)]
    pub job_name: Option<String>,
    /// E-mail address notified of the job's status.
    #[serde(default)]
    pub notification_email: Option<String>,
    /// The data type of the job's file.
    #[serde(default)]
    pub content_type: Option<ContentType>,
    /// The LD item type the job imports or exports.
    #[serde(default)]
    pub item_type: Option<String>,
    /// Records processed so far (the service sends a number or a string).
    #[serde(default, deserialize_with = "de_counter")]
    pub records_processed: Option<u64>,
    /// Server run time so far (sent in milliseconds, as a number or a string).
    #[serde(default, deserialize_with = "de_millis")]
    pub run_time: Option<Duration>,
    /// Every field this client does not model, as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Job {
    /// Links to the results of an export job.
    ///
    /// The wiki says a finished export "will contain one or more links to
    /// download the results" without naming the field, so this collects
    /// every `http(s)` URL found in unknown fields whose name mentions
    /// `link`, `url`, `download` or `file` (strings, arrays of strings, or
    /// objects holding such strings), in the order they appear.
    pub fn download_links(&self) -> Vec<String> {
        let mut links = Vec::new();
        for (key, value) in &self.extra {
            let k = key.to_ascii_lowercase();
            if ["link", "url", "download", "file"]
                .iter()
                .any(|w| k.contains(w))
            {
                collect_urls(value, &mut links);
            }
        }
        links
    }
}

fn collect_urls(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s)
            if (s.starts_with("http://") || s.starts_with("https://")) && !out.contains(s) =>
        {
            out.push(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_urls(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_urls(v, out)),
        _ => {}
    }
}

/// Parses an LD timestamp: `2015-05-26T13:35:25+0000` (offset without a
/// colon, optional fractional seconds) or RFC 3339.
///
/// ```
/// let t = ldbatch_client::parse_timestamp("2015-05-26T13:35:25+0000").unwrap();
/// assert_eq!(t.to_rfc3339(), "2015-05-26T13:35:25+00:00");
/// ```
pub fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
}

/// A number or a string holding one (or null).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(serde_json::Number),
    Text(String),
}

fn counter_value(raw: Option<NumOrText>, field: &str) -> Option<u64> {
    let parsed = match &raw? {
        NumOrText::Num(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        NumOrText::Text(t) if t.trim().is_empty() => return None,
        NumOrText::Text(t) => t.trim().parse::<u64>().ok(),
    };
    if parsed.is_none() {
        tracing::warn!(
            field,
            "ignoring an LD counter that is not a non-negative number"
        );
    }
    parsed
}

fn de_counter<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(counter_value(
        Option::<NumOrText>::deserialize(d)?,
        "recordsProcessed",
    ))
}

fn de_millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Ok(counter_value(Option::<NumOrText>::deserialize(d)?, "runTime").map(Duration::from_millis))
}

fn de_timestamp<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    let parsed = parse_timestamp(&raw);
    if parsed.is_none() && !raw.trim().is_empty() {
        tracing::warn!(value = %raw, "ignoring an LD submitTime in an unknown format");
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_parses_with_string_counters() {
        let job: Job = serde_json::from_str(
            r#"{"submitTime": "2015-05-26T13:35:25+0000",
                "jobId": "e25a5d4b-f9a5-4794-9ac2-4e026c0df40d",
                "notificationEmail": "ops@example.com", "jobName": "Attendee Import Job",
                "contentType": "application/json", "itemType": "Attendee",
                "recordsProcessed": "0", "runTime": "0", "status": "Accepted",
                "reason": "The file has been stored and the job is ready for processing"}"#,
        )
        .unwrap();
        assert_eq!(job.status, JobStatus::Accepted);
        assert_eq!(job.records_processed, Some(0));
        assert_eq!(job.run_time, Some(Duration::ZERO));
        assert_eq!(job.content_type, Some(ContentType::Json));
        assert_eq!(job.submit_time.unwrap().timestamp(), 1_432_647_325);
    }

    #[test]
    fn numeric_counters_odd_timestamps_and_links() {
        let job: Job = serde_json::from_str(
            r#"{"jobId": "j", "status": "Completed", "recordsProcessed": 1250, "runTime": 8421,
                "submitTime": "yesterday", "contentType": "plain/text",
                "downloadUrls": ["https://files.example/a.json?sig=1", 7],
                "note": "https://not-a-link.example"}"#,
        )
        .unwrap();
        assert_eq!(job.records_processed, Some(1250));
        assert_eq!(job.run_time, Some(Duration::from_millis(8421)));
        assert_eq!(job.submit_time, None);
        assert_eq!(job.content_type, Some(ContentType::Csv));
        assert_eq!(
            job.download_links(),
            vec!["https://files.example/a.json?sig=1".to_string()]
        );
    }

    #[test]
    fn timestamps_with_fractions_and_rfc3339() {
        assert!(parse_timestamp("2015-05-26T13:35:25.123+0200").is_some());
        assert!(parse_timestamp("2015-05-26T13:35:25Z").is_some());
        assert!(parse_timestamp("2015-05-26 13:35").is_none());
    }
}
