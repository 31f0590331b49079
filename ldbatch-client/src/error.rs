//! The LD client's error type.

use crate::job::Job;
use crate::status::{IllegalTransition, JobStatus};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to the LD batch API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint refused the password grant
    /// (`{"error": .., "error_description": ..}`).
    #[error("LD sign-in failed{}: {}{}; check LD_CLIENT_ID, LD_CLIENT_SECRET, LD_USERNAME, LD_PASSWORD and LD_COMMUNITY",
        status.map(|s| format!(" (HTTP {s})")).unwrap_or_default(),
        error.as_deref().unwrap_or("no error code"),
        description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    OAuth {
        /// The OAuth error code, e.g. `invalid_grant`, if the server sent one.
        error: Option<String>,
        /// The server's `error_description`.
        description: Option<String>,
        /// HTTP status of the token response.
        status: Option<u16>,
    },

    /// The job was rejected before processing (bad parameters or file).
    #[error("LD job {job_id} was rejected: {}", reason_text(.reason))]
    Rejected {
        /// The job.
        job_id: String,
        /// The server's reason.
        reason: Option<String>,
    },

    /// The job failed during processing.
    #[error("LD job {job_id} failed: {}", reason_text(.reason))]
    Failed {
        /// The job.
        job_id: String,
        /// The server's reason.
        reason: Option<String>,
    },

    /// The job was canceled.
    #[error("LD job {job_id} was canceled: {}", reason_text(.reason))]
    Canceled {
        /// The job.
        job_id: String,
        /// The server's reason.
        reason: Option<String>,
    },

    /// In strict mode, the job's status moved in a way the table forbids.
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),

    /// The service does not know the job id (HTTP 404).
    #[error("LD job {job_id} was not found{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    JobNotFound {
        /// The job id asked about.
        job_id: String,
        /// The server's message.
        message: Option<String>,
    },

    /// The job can no longer be canceled, usually because it already ended
    /// (HTTP 409).
    #[error("LD job {job_id} cannot be canceled{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    NotCancelable {
        /// The job.
        job_id: String,
        /// The server's message.
        message: Option<String>,
    },

    /// A finished export carried no link to download its results.
    #[error(
        "LD export job {job_id} completed but its status response has no download link; \
         the results may have been sent to the notification e-mail address instead"
    )]
    NoDownloadLink {
        /// The job.
        job_id: String,
    },

    /// The request was invalid before it was sent.
    #[error("invalid LD request: {0}")]
    InvalidRequest(String),

    /// An HTTP, transport, decoding, waiting or file error from the core
    /// (server errors are [`client_core::Error::Api`] with status and message).
    #[error(transparent)]
    Core(#[from] client_core::Error),
}

fn reason_text(reason: &Option<String>) -> &str {
    reason.as_deref().unwrap_or("the server gave no reason")
}

impl Error {
    /// The error a job ending in `job`'s status stands for, if it is an
    /// unsuccessful terminal status (`Rejected`, `Failed`, `Canceled`).
    pub fn from_final_job(job: &Job) -> Option<Error> {
        let job_id = job.job_id.clone();
        let reason = job.reason.clone();
        match job.status {
            JobStatus::Rejected => Some(Error::Rejected { job_id, reason }),
            JobStatus::Failed => Some(Error::Failed { job_id, reason }),
            JobStatus::Canceled => Some(Error::Canceled { job_id, reason }),
            _ => None,
        }
    }

    /// The HTTP status behind this error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::OAuth { status, .. } => *status,
            Error::Core(e) => e.status(),
            _ => None,
        }
    }

    /// Reads a token-endpoint refusal out of the message of the core's
    /// [`client_core::Error::Auth`] (`token endpoint POST <url> returned
    /// HTTP <status>: <code>: <description>; <advice>`) into
    /// [`Error::OAuth`]; `None` for any other text. Never panics.
    ///
    /// Hidden from the docs because its input is the core's message text,
    /// not a stable format: the client applies it to every sign-in failure
    /// itself. It is public so the fuzz targets can feed it arbitrary text
    /// directly instead of through an HTTP exchange.
    #[doc(hidden)]
    pub fn from_token_refusal(message: &str, status: Option<u16>) -> Option<Error> {
        parse_token_refusal(message, status)
    }
}

/// What the core's password grant reports about a refused token request:
/// `token endpoint POST <url> returned HTTP <status>: <code>: <description>; <advice>`.
/// Returns `None` for any other authentication error.
pub(crate) fn parse_token_refusal(message: &str, status: Option<u16>) -> Option<Error> {
    let rest = message.strip_prefix("token endpoint ")?;
    let after_status = &rest[rest.find("returned HTTP ")? + "returned HTTP ".len()..];
    let what = &after_status[after_status
        .find(": ")
        .map(|i| i + 2)
        .unwrap_or(after_status.len())..];
    let what = match what.rfind("; check ") {
        Some(i) => &what[..i],
        None => what,
    };
    let is_code =
        |c: &str| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_');
    let (error, description) = match what.split_once(": ") {
        Some((code, desc)) if is_code(code) => (Some(code.to_string()), Some(desc.to_string())),
        None if is_code(what) => (Some(what.to_string()), None),
        _ if what.trim().is_empty() => (None, None),
        _ => (None, Some(what.to_string())),
    };
    Some(Error::OAuth {
        error,
        description,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_message_names_the_code_and_what_to_check() {
        let e = Error::OAuth {
            error: Some("invalid_grant".into()),
            description: Some("Bad credentials".into()),
            status: Some(400),
        };
        let s = e.to_string();
        assert!(
            s.contains("invalid_grant") && s.contains("Bad credentials") && s.contains("HTTP 400"),
            "{s}"
        );
        assert!(s.contains("LD_PASSWORD"));
    }

    #[test]
    fn token_refusals_are_parsed_into_code_and_description() {
        let msg = "token endpoint POST http://127.0.0.1:1/ls/api/oauth2/token returned HTTP 400: \
                   invalid_grant: Bad credentials; check the client id, client secret, user name, password and community";
        match parse_token_refusal(msg, Some(400)) {
            Some(Error::OAuth {
                error,
                description,
                status,
            }) => {
                assert_eq!(error.as_deref(), Some("invalid_grant"));
                assert_eq!(description.as_deref(), Some("Bad credentials"));
                assert_eq!(status, Some(400));
            }
            other => panic!("{other:?}"),
        }
        let bare = "token endpoint POST u returned HTTP 401: unauthorized_client; check it";
        assert!(matches!(parse_token_refusal(bare, Some(401)),
            Some(Error::OAuth { error: Some(e), description: None, .. }) if e == "unauthorized_client"));
        assert!(parse_token_refusal("GET u returned HTTP 401", Some(401)).is_none());
    }

    #[test]
    fn rejected_job_keeps_its_reason() {
        let job: Job = serde_json::from_str(
            r#"{"jobId":"j1","status":"Rejected","reason":"itemType missing"}"#,
        )
        .unwrap();
        let e = Error::from_final_job(&job).unwrap();
        assert!(matches!(&e, Error::Rejected { reason: Some(r), .. } if r == "itemType missing"));
        assert_eq!(e.to_string(), "LD job j1 was rejected: itemType missing");
    }
}
