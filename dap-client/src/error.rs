//! The error taxonomy of the DAP Query API (specs/dap.md §5) and its mapping
//! from HTTP responses.
//!
//! Unlike the official client, the class is chosen by the error body's `type`
//! first (so `SnapshotRequired` is reachable and distinct from `OutOfRange`),
//! then by the fields it carries, then by the status.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::model::JobError;
use crate::record::DecodeError;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The common part of every error body the service sends:
/// `{"error": {"type": .., "uuid": .., "message": ..}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationError {
    /// HTTP status of the response.
    pub status: u16,
    /// Machine-readable error type (e.g. `ObjectNotFound`); empty if absent.
    pub error_type: String,
    /// Error id to quote when contacting support.
    pub uuid: Option<String>,
    /// The server's human-readable message; empty if absent.
    pub message: String,
}

impl fmt::Display for OperationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str("the server gave no message")?;
        } else {
            f.write_str(&self.message)?;
        }
        if !self.error_type.is_empty() {
            write!(f, " [{}]", self.error_type)?;
        }
        write!(f, " (HTTP {}", self.status)?;
        if let Some(uuid) = &self.uuid {
            write!(f, ", error id {uuid}; quote it to Instructure support")?;
        }
        f.write_str(")")
    }
}

/// Where in the request the server found invalid input (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Location {
    /// Line number.
    pub line: Option<u64>,
    /// Column number within the line.
    pub column: Option<u64>,
    /// Character offset from the start of the input.
    pub character: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        write!(
            f,
            "line {}, column {} (character {})",
            show(self.line),
            show(self.column),
            show(self.character)
        )
    }
}

fn range_text(since: &Option<DateTime<Utc>>, until: &Option<DateTime<Utc>>) -> String {
    match (since, until) {
        (Some(s), Some(u)) => format!("; the permitted range is {s} to {u}"),
        (Some(s), None) => format!("; the earliest permitted timestamp is {s}"),
        (None, Some(u)) => format!("; the latest permitted timestamp is {u}"),
        (None, None) => String::new(),
    }
}

fn origin_text(method: &str, url: &str) -> String {
    match (method, url) {
        ("", "") => "the DAP service".to_string(),
        (m, u) => format!("{m} {u}").trim().to_string(),
    }
}

fn not_found_text(kind: &Option<String>, id: &Option<String>) -> String {
    match (kind, id) {
        (Some(k), Some(i)) => format!("{k} {i:?} does not exist or has expired"),
        (None, Some(i)) => format!("{i:?} does not exist or has expired"),
        (Some(k), None) => format!("the {k} does not exist or has expired"),
        (None, None) => "the requested entity does not exist or has expired".to_string(),
    }
}

/// Everything that can go wrong talking to DAP.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The credentials were rejected (HTTP 401 or the token endpoint refused).
    #[error(
        "DAP rejected the credentials: {0}. Check DAP_CLIENT_ID and DAP_CLIENT_SECRET \
         (API keys are issued at identity.instructure.com)"
    )]
    Authentication(OperationError),

    /// The account is onboarded but access is disabled.
    #[error("the DAP account is disabled: {0}")]
    AccountDisabled(OperationError),

    /// The account has not been onboarded to DAP.
    #[error("the DAP account is not onboarded: {0}")]
    AccountNotOnboarded(OperationError),

    /// The account is temporarily under maintenance.
    #[error("the DAP account is under maintenance, try again later: {0}")]
    AccountUnderMaintenance(OperationError),

    /// The account may not make this kind of request.
    #[error("this request type is forbidden for the account: {0}")]
    RequestTypeForbidden(OperationError),

    /// Access was denied for a reason this client does not know.
    #[error("access denied: {0}")]
    Forbidden(OperationError),

    /// The request was malformed.
    #[error("the request was rejected as invalid: {error}{}", location.map(|l| format!(" at {l}")).unwrap_or_default())]
    Validation {
        /// The error body.
        error: Box<OperationError>,
        /// Where the invalid input is.
        location: Option<Location>,
    },

    /// A namespace, table, job or object does not exist or has expired.
    #[error("{}: {error}", not_found_text(kind, id))]
    NotFound {
        /// The error body.
        error: Box<OperationError>,
        /// Identifier of the missing entity (table name, job id, ...).
        id: Option<String>,
        /// What is missing: `namespace`, `table`, `job`, `object`, ...
        kind: Option<String>,
    },

    /// The query's time range is outside what the service can answer.
    #[error(
        "the requested time range is not available: {error}{}",
        range_text(since, until)
    )]
    OutOfRange {
        /// The error body.
        error: Box<OperationError>,
        /// Earliest permitted timestamp.
        since: Option<DateTime<Utc>>,
        /// Latest permitted timestamp.
        until: Option<DateTime<Utc>>,
    },

    /// The table was reloaded; incremental queries from before the reload
    /// are refused and a new snapshot is needed to stay consistent.
    #[error(
        "a new snapshot of the table is required (the table was reloaded): {error}{}",
        range_text(since, until)
    )]
    SnapshotRequired {
        /// The error body.
        error: Box<OperationError>,
        /// Earliest permitted timestamp.
        since: Option<DateTime<Utc>>,
        /// Latest permitted timestamp.
        until: Option<DateTime<Utc>>,
    },

    /// The server failed to process the request.
    #[error("the DAP service could not process the request: {0}")]
    Processing(OperationError),

    /// The API gateway timed out waiting for the service.
    #[error("the DAP gateway timed out (HTTP {status}): {message}")]
    GatewayTimeout {
        /// HTTP status (504).
        status: u16,
        /// The gateway's message.
        message: String,
    },

    /// The server answered with an error status and a body that is not a DAP
    /// error (an HTML page from a proxy, an unknown JSON shape, ...).
    #[error(
        "{} returned HTTP {status} with an unexpected body: {body_snippet}",
        origin_text(method, url)
    )]
    Server {
        /// HTTP method (empty when the body was classified with
        /// [`Error::from_body`]).
        method: String,
        /// URL without its query string (empty when the body was
        /// classified with [`Error::from_body`]).
        url: String,
        /// HTTP status.
        status: u16,
        /// The first bytes of the body.
        body_snippet: String,
        /// `Retry-After` the server gave, if any.
        retry_after: Option<Duration>,
    },

    /// A successful response could not be understood.
    #[error(
        "could not understand the response of {url}: {message}; body starts with: {body_snippet}"
    )]
    UnexpectedResponse {
        /// URL without its query string.
        url: String,
        /// What was wrong.
        message: String,
        /// The first bytes of the body.
        body_snippet: String,
    },

    /// A query job ended with status `failed`.
    #[error("query job {job_id} failed: {error}")]
    JobFailed {
        /// The job id.
        job_id: String,
        /// The server's explanation.
        error: JobError,
    },

    /// A job did not finish before the wait deadline.
    #[error(
        "query job {job_id} was still running after {elapsed:?} and {polls} polls; \
         raise the wait deadline or fetch it later with `job({job_id:?})`"
    )]
    JobTimeout {
        /// The job id.
        job_id: String,
        /// Time spent waiting.
        elapsed: Duration,
        /// Polls made.
        polls: u32,
    },

    /// A job expired again after being restarted.
    #[error("query job {job_id} expired before its output could be fetched, even after a restart")]
    JobExpired {
        /// The last job id.
        job_id: String,
    },

    /// An object could not be downloaded.
    #[error("download of object {object_id} failed: {message}")]
    Download {
        /// The object id.
        object_id: String,
        /// What went wrong (URLs without query strings).
        message: String,
    },

    /// An output file could not be decoded into records.
    #[error(transparent)]
    Decode(#[from] DecodeError),

    /// A transport, retry or other core failure.
    #[error(transparent)]
    Http(client_core::Error),

    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, including the path.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The client was configured wrongly.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// `true` when the error will fail every other table of a multi-table run
    /// in the same way (bad credentials, a disabled account, an unreachable
    /// or broken service, a local disk problem), so the run should stop.
    /// Per-table problems (a failed job, a missing table, an out-of-range or
    /// snapshot-required query, a corrupt object) are not fatal.
    pub fn is_fatal(&self) -> bool {
        match self {
            Error::Authentication(_)
            | Error::AccountDisabled(_)
            | Error::AccountNotOnboarded(_)
            | Error::AccountUnderMaintenance(_)
            | Error::Config(_)
            | Error::Io { .. } => true,
            Error::Server { status, .. } => *status >= 500 || *status == 429,
            Error::Http(e) => matches!(
                e,
                client_core::Error::Auth { .. }
                    | client_core::Error::Config(_)
                    | client_core::Error::Transport {
                        kind: client_core::TransportKind::Connect,
                        ..
                    }
            ),
            _ => false,
        }
    }

    /// `true` when the table must be re-initialised from a snapshot.
    pub fn requires_snapshot(&self) -> bool {
        matches!(self, Error::SnapshotRequired { .. })
    }

    /// The HTTP status behind the error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Authentication(e)
            | Error::AccountDisabled(e)
            | Error::AccountNotOnboarded(e)
            | Error::AccountUnderMaintenance(e)
            | Error::RequestTypeForbidden(e)
            | Error::Forbidden(e)
            | Error::Processing(e) => Some(e.status),
            Error::Validation { error, .. }
            | Error::NotFound { error, .. }
            | Error::OutOfRange { error, .. }
            | Error::SnapshotRequired { error, .. } => Some(error.status),
            Error::GatewayTimeout { status, .. } | Error::Server { status, .. } => Some(*status),
            Error::Http(e) => e.status(),
            _ => None,
        }
    }

    /// The DAP error body, for the classes that carry one.
    pub fn operation_error(&self) -> Option<&OperationError> {
        match self {
            Error::Authentication(e)
            | Error::AccountDisabled(e)
            | Error::AccountNotOnboarded(e)
            | Error::AccountUnderMaintenance(e)
            | Error::RequestTypeForbidden(e)
            | Error::Forbidden(e)
            | Error::Processing(e) => Some(e),
            Error::Validation { error, .. }
            | Error::NotFound { error, .. }
            | Error::OutOfRange { error, .. }
            | Error::SnapshotRequired { error, .. } => Some(error),
            _ => None,
        }
    }

    #[allow(dead_code)] // used by the download pipeline
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Classifies an error response of the DAP API from its HTTP status and
    /// body, as the client does with every non-2xx answer (specs/dap.md §5):
    /// by the body's `error.type` first (so `SnapshotRequired` and
    /// `OutOfRange` stay distinct), then by the fields the body carries,
    /// then by the status. A body that is not a DAP error (an HTML page
    /// from a proxy, other JSON) becomes [`Error::Server`] with a snippet
    /// of it and no method or URL. Bytes that are not UTF-8 are decoded
    /// lossily.
    ///
    /// Useful to classify a response obtained some other way (a proxy log,
    /// a recorded exchange) and to fuzz the classification directly. Never
    /// panics, whatever the bytes.
    ///
    /// ```
    /// use dap_client::Error;
    ///
    /// let body = br#"{"error":{"type":"SnapshotRequired","uuid":"u-1","message":"table reloaded"}}"#;
    /// let e = Error::from_body(400, body);
    /// assert!(e.requires_snapshot());
    /// assert!(matches!(Error::from_body(502, b"<html>Bad Gateway</html>"), Error::Server { status: 502, .. }));
    /// ```
    pub fn from_body(status: u16, body: &[u8]) -> Self {
        Self::from_response("", "", status, body, None)
    }

    /// Classifies an error response from its status and body.
    pub(crate) fn from_response(
        method: &str,
        url: &str,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> Self {
        let server = || Error::Server {
            method: method.to_string(),
            url: client_core::error::redact_url(url),
            status,
            body_snippet: client_core::error::snippet(body, 512),
            retry_after,
        };
        // Invalid UTF-8 inside a message must not hide the error's class.
        let text = String::from_utf8_lossy(body);
        let Ok(Value::Object(mut root)) = serde_json::from_str::<Value>(&text) else {
            return server();
        };
        let Some(Value::Object(fields)) = root.remove("error") else {
            return server();
        };
        classify(status, &fields).unwrap_or_else(server)
    }
}

impl From<client_core::Error> for Error {
    /// Maps core failures, turning HTTP error responses into DAP classes.
    fn from(e: client_core::Error) -> Self {
        if let Some(api) = e.api() {
            return Error::from_response(
                &api.method,
                &api.url,
                api.status,
                api.body_snippet.as_bytes(),
                api.retry_after,
            );
        }
        match e {
            client_core::Error::Auth { message, status } => Error::Authentication(OperationError {
                status: status.unwrap_or(401),
                error_type: String::new(),
                uuid: None,
                message,
            }),
            client_core::Error::Io { context, source } => Error::Io { context, source },
            client_core::Error::Config(m) => Error::Config(m),
            other => Error::Http(other),
        }
    }
}

fn text(fields: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    match fields.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn timestamp(fields: &serde_json::Map<String, Value>, name: &str) -> Option<DateTime<Utc>> {
    text(fields, name)?.parse().ok()
}

fn location(fields: &serde_json::Map<String, Value>) -> Option<Location> {
    let loc = fields.get("location")?.as_object()?;
    let num = |k: &str| loc.get(k).and_then(Value::as_u64);
    Some(Location {
        line: num("line"),
        column: num("column"),
        character: num("character"),
    })
}

/// Picks the class of a DAP error object; `None` means "not a DAP error".
fn classify(status: u16, fields: &serde_json::Map<String, Value>) -> Option<Error> {
    let error_type = text(fields, "type").unwrap_or_default();
    let op = OperationError {
        status,
        error_type: error_type.clone(),
        uuid: text(fields, "uuid"),
        message: text(fields, "message").unwrap_or_default(),
    };
    if status == 401 {
        return Some(Error::Authentication(op));
    }
    // The account classes are matched on any status: the docs list them
    // under 500 while the official client expects 403.
    match error_type.as_str() {
        "AccountDisabled" => return Some(Error::AccountDisabled(op)),
        "AccountNotOnboarded" => return Some(Error::AccountNotOnboarded(op)),
        "AccountUnderMaintenance" => return Some(Error::AccountUnderMaintenance(op)),
        "RequestTypeForbidden" => return Some(Error::RequestTypeForbidden(op)),
        _ => {}
    }
    if status == 403 {
        return Some(Error::Forbidden(op));
    }
    let (since, until) = (timestamp(fields, "since"), timestamp(fields, "until"));
    let by_type = error_type.trim_end_matches("Error");
    match by_type {
        "SnapshotRequired" => {
            return Some(Error::SnapshotRequired {
                error: Box::new(op),
                since,
                until,
            });
        }
        "OutOfRange" => {
            return Some(Error::OutOfRange {
                error: Box::new(op),
                since,
                until,
            });
        }
        "ObjectNotFound" | "NotFound" | "TableNotFound" | "NamespaceNotFound" | "JobNotFound" => {
            return Some(not_found(op, fields));
        }
        "Validation" => {
            return Some(Error::Validation {
                location: location(fields),
                error: Box::new(op),
            });
        }
        "Processing" => return Some(Error::Processing(op)),
        _ => {}
    }
    // An unknown type: fall back to the fields the body carries.
    if fields.contains_key("location") {
        return Some(Error::Validation {
            location: location(fields),
            error: Box::new(op),
        });
    }
    if fields.contains_key("kind") && fields.contains_key("id") {
        return Some(not_found(op, fields));
    }
    if since.is_some() {
        return Some(Error::OutOfRange {
            error: Box::new(op),
            since,
            until,
        });
    }
    if error_type.is_empty() {
        // `{"error":{"message":..}}`: the gateway's timeout shape.
        return (status == 504).then_some(Error::GatewayTimeout {
            status,
            message: op.message,
        });
    }
    Some(Error::Processing(op))
}

fn not_found(error: OperationError, fields: &serde_json::Map<String, Value>) -> Error {
    Error::NotFound {
        id: text(fields, "id"),
        kind: text(fields, "kind"),
        error: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(status: u16, body: &str) -> Error {
        Error::from_response(
            "POST",
            "https://api.example/dap/x?sig=1",
            status,
            body.as_bytes(),
            None,
        )
    }

    #[test]
    fn the_four_account_types_on_403_and_unknown_403() {
        for (t, check) in [
            (
                "AccountDisabled",
                (|e| matches!(e, &Error::AccountDisabled(_))) as fn(&Error) -> bool,
            ),
            ("AccountNotOnboarded", |e| {
                matches!(e, &Error::AccountNotOnboarded(_))
            }),
            ("AccountUnderMaintenance", |e| {
                matches!(e, &Error::AccountUnderMaintenance(_))
            }),
            ("RequestTypeForbidden", |e| {
                matches!(e, &Error::RequestTypeForbidden(_))
            }),
            ("SomethingElse", |e| matches!(e, &Error::Forbidden(_))),
        ] {
            let e = map(
                403,
                &format!(r#"{{"error":{{"type":"{t}","uuid":"u-1","message":"m"}}}}"#),
            );
            assert!(check(&e), "{t} mapped to {e:?}");
            assert_eq!(e.status(), Some(403));
        }
        // Documented under 500 too.
        let e = map(
            500,
            r#"{"error":{"type":"AccountNotOnboarded","uuid":"u","message":"m"}}"#,
        );
        assert!(matches!(e, Error::AccountNotOnboarded(_)));
        assert!(e.is_fatal());
    }

    #[test]
    fn snapshot_required_is_distinct_from_out_of_range() {
        let e = map(
            400,
            r#"{"error":{"type":"SnapshotRequired","uuid":"u","message":"reloaded","since":"2024-01-01T00:00:00Z"}}"#,
        );
        let Error::SnapshotRequired { since, until, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(since.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert!(until.is_none());
        assert!(e.requires_snapshot() && !e.is_fatal());
        let e = map(
            400,
            r#"{"error":{"type":"OutOfRange","uuid":"u","message":"m","since":"2024-01-01T00:00:00Z","until":"2024-02-01T00:00:00Z"}}"#,
        );
        assert!(matches!(e, Error::OutOfRange { until: Some(_), .. }));
        assert!(!e.requires_snapshot());
        assert!(e.to_string().contains("permitted range"), "{e}");
    }

    #[test]
    fn not_found_keeps_id_and_kind() {
        let e = map(
            404,
            r#"{"error":{"type":"ObjectNotFound","uuid":"123","message":"Job does not exist.","id":"j-9","kind":"job"}}"#,
        );
        let Error::NotFound { id, kind, error } = &e else {
            panic!("{e:?}")
        };
        assert_eq!((id.as_deref(), kind.as_deref()), (Some("j-9"), Some("job")));
        assert_eq!(error.uuid.as_deref(), Some("123"));
        assert!(e.to_string().contains(r#"job "j-9" does not exist"#), "{e}");
    }

    #[test]
    fn validation_by_type_or_by_location() {
        for t in ["ValidationError", "SomethingNew"] {
            let e = map(
                400,
                &format!(
                    r#"{{"error":{{"type":"{t}","uuid":"u","message":"bad","location":{{"line":1,"column":12,"character":12}}}}}}"#
                ),
            );
            let Error::Validation {
                location: Some(loc),
                ..
            } = &e
            else {
                panic!("{e:?}")
            };
            assert_eq!(loc.column, Some(12));
            assert!(e.to_string().contains("line 1, column 12"));
        }
    }

    #[test]
    fn authentication_processing_and_gateway_timeout() {
        let e = map(
            401,
            r#"{"error":{"type":"Unauthorized","uuid":"u","message":"bad token"}}"#,
        );
        assert!(matches!(e, Error::Authentication(_)) && e.is_fatal());
        let e = map(500, r#"{"error":{"type":"ProcessingError","uuid":"u-7"}}"#);
        assert!(matches!(e, Error::Processing(_)) && !e.is_fatal());
        assert!(
            e.to_string().contains("u-7"),
            "the error id helps support: {e}"
        );
        let e = map(504, r#"{"error":{"message":"Endpoint request timed out"}}"#);
        assert!(
            matches!(e, Error::GatewayTimeout { status: 504, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn html_and_unknown_bodies_become_server_errors_with_a_snippet() {
        let e = map(502, "<html><body><h1>502 Bad Gateway</h1></body></html>");
        let Error::Server {
            status,
            body_snippet,
            url,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*status, 502);
        assert!(body_snippet.contains("Bad Gateway"));
        assert_eq!(
            url, "https://api.example/dap/x",
            "query strings stay out of errors"
        );
        assert!(e.is_fatal());
        assert!(matches!(
            map(400, r#"{"detail":"nope"}"#),
            Error::Server { status: 400, .. }
        ));
        assert!(matches!(
            map(400, r#"{"error":"flat"}"#),
            Error::Server { .. }
        ));
        assert!(matches!(
            map(418, r#"{"error":{"message":"tea"}}"#),
            Error::Server { .. }
        ));
    }

    #[test]
    fn from_body_classifies_without_a_request() {
        let e = Error::from_body(
            400,
            br#"{"error":{"type":"SnapshotRequired","uuid":"u","message":"reloaded"}}"#,
        );
        assert!(e.requires_snapshot(), "{e:?}");
        // Invalid UTF-8 in the message does not hide the class.
        let e = Error::from_body(
            404,
            b"{\"error\":{\"type\":\"ObjectNotFound\",\"message\":\"no \xff\",\"id\":\"t\",\"kind\":\"table\"}}",
        );
        assert!(
            matches!(&e, Error::NotFound { kind: Some(k), .. } if k == "table"),
            "{e:?}"
        );
        // Not a DAP error: a server error whose message does not start
        // with an empty method and URL.
        let e = Error::from_body(503, b"\xff\xfe<html>down</html>");
        assert!(matches!(&e, Error::Server { status: 503, .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with("the DAP service returned HTTP 503") && text.contains("down"),
            "{text}"
        );
    }

    #[test]
    fn extra_fields_in_error_bodies_are_ignored() {
        let e = map(
            404,
            r#"{"error":{"type":"ObjectNotFound","uuid":"u","message":"m","id":"t","kind":"table","new":[1]},"trace":"x"}"#,
        );
        assert!(matches!(e, Error::NotFound { .. }));
    }
}
