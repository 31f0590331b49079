//! The Toucan client's error type and error-body parsing.

use std::path::PathBuf;
use std::time::Duration;

use crate::operation::OperationId;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error response body: Toucan sends JSON on most routes but plain text
/// on a failed login.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorBody {
    /// A JSON body, e.g. `{"statusCode":401,"message":"Unauthorized"}`.
    Json(serde_json::Value),
    /// A plain-text body, e.g. `Login failed. Invalid username or password`.
    Text(String),
    /// No body.
    Empty,
}

impl ErrorBody {
    /// Classifies a raw body.
    ///
    /// ```
    /// use toucan_client::ErrorBody;
    /// let b = ErrorBody::parse("{\"message\":\"Too many requests\"}");
    /// assert_eq!(b.message().as_deref(), Some("Too many requests"));
    /// assert_eq!(ErrorBody::parse("Login failed").message().as_deref(), Some("Login failed"));
    /// ```
    pub fn parse(body: &str) -> Self {
        let trimmed = body.trim();
        if trimmed.is_empty() {
            return ErrorBody::Empty;
        }
        if trimmed.starts_with(['{', '[', '"'])
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(trimmed)
        {
            return ErrorBody::Json(v);
        }
        ErrorBody::Text(trimmed.to_string())
    }

    /// The human message in the body: a JSON `message`, `error`, `detail`
    /// or `reason` string (or a bare JSON string), or the text itself.
    pub fn message(&self) -> Option<String> {
        match self {
            ErrorBody::Json(serde_json::Value::String(s)) => Some(s.clone()),
            ErrorBody::Json(v) => ["message", "error", "detail", "reason", "msg"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_string)),
            ErrorBody::Text(t) => Some(t.clone()),
            ErrorBody::Empty => None,
        }
    }
}

/// Everything that can go wrong talking to the Toucan operations API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The credentials or token were refused (bad login, 401, 403).
    #[error(
        "Toucan refused the credentials (HTTP {status}): {message}; check TOUCAN_USERNAME and TOUCAN_PASSWORD and that the user has the contributor right on the small app"
    )]
    Auth {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },

    /// Too many requests, e.g. more than 5 failed logins in a minute
    /// (every login is then refused for a while, even a correct one).
    #[error("Toucan rate limit (HTTP {status}): {message}{}", retry_after.map(|d| format!("; retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// How long the server asked to wait, if it said.
        retry_after: Option<Duration>,
    },

    /// The server rejected an operation name (HTTP 400 on the operations route).
    #[error("Toucan rejected the operations request: {message}")]
    UnknownOperation {
        /// The server's message.
        message: String,
    },

    /// Any other error response, with its parsed body.
    #[error("{method} {url} returned HTTP {status}: {}", body.message().unwrap_or_else(|| "no message".to_string()))]
    Api {
        /// HTTP method.
        method: String,
        /// URL without query string.
        url: String,
        /// HTTP status.
        status: u16,
        /// The body, JSON or text.
        body: ErrorBody,
    },

    /// A waited-for operation ended `failed`.
    #[error("Toucan operation {id} failed{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    OperationFailed {
        /// The operation.
        id: OperationId,
        /// The server's message, if it gave one.
        message: Option<String>,
    },

    /// The server answered 200 without an operation id where one was
    /// expected.
    #[error("Toucan accepted the request but returned no operation id (body: {body})")]
    NoOperationId {
        /// The body snippet.
        body: String,
    },

    /// A file to upload could not be read or named.
    #[error("cannot upload {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// Transport, decoding, waiting or configuration errors from the core.
    #[error(transparent)]
    Core(client_core::Error),
}

impl Error {
    /// The HTTP status behind this error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Auth { status, .. }
            | Error::RateLimited { status, .. }
            | Error::Api { status, .. } => Some(*status),
            Error::UnknownOperation { .. } => Some(400),
            Error::Core(e) => e.status(),
            _ => None,
        }
    }

    /// Maps an HTTP error response to the matching variant.
    /// `on_operations` says whether it answered the operations route,
    /// where a 400 means an unknown operation.
    pub fn from_response(
        method: &str,
        url: &str,
        status: u16,
        body: &str,
        retry_after: Option<Duration>,
        on_operations: bool,
    ) -> Self {
        let body = ErrorBody::parse(body);
        let message = body
            .message()
            .unwrap_or_else(|| format!("HTTP {status} with no message"));
        match status {
            429 => Error::RateLimited {
                status,
                message,
                retry_after,
            },
            // The login limit's documented message, whatever status carries it.
            _ if message.to_ascii_lowercase().contains("too many requests") => Error::RateLimited {
                status,
                message,
                retry_after,
            },
            401 | 403 => Error::Auth { status, message },
            400 if on_operations => Error::UnknownOperation { message },
            _ => Error::Api {
                method: method.to_string(),
                url: client_core::error::redact_url(url),
                status,
                body,
            },
        }
    }
}

impl From<client_core::Error> for Error {
    /// HTTP error responses (also when the retry loop gave up on one) are
    /// mapped by status and body; refused logins become [`Error::Auth`], or
    /// [`Error::RateLimited`] when the server's message is the login limit;
    /// everything else stays a core error.
    fn from(e: client_core::Error) -> Self {
        if let Some(api) = e.api() {
            return Error::from_response(
                &api.method,
                &api.url,
                api.status,
                &api.body_snippet,
                api.retry_after,
                false,
            );
        }
        match e {
            client_core::Error::Auth { message, status } => {
                let server_message = server_part(&message).to_string();
                let status = status.unwrap_or(401);
                if server_message
                    .to_ascii_lowercase()
                    .contains("too many requests")
                {
                    Error::RateLimited {
                        status,
                        message: server_message,
                        retry_after: None,
                    }
                } else {
                    Error::Auth {
                        status,
                        message: server_message,
                    }
                }
            }
            other => Error::Core(other),
        }
    }
}

/// The server's words inside a core authentication message
/// (`... returned HTTP 401: <server words>; <advice>`), or all of it.
fn server_part(message: &str) -> &str {
    let Some(start) = message.find("returned HTTP ") else {
        return message;
    };
    let rest = &message[start..];
    let Some(colon) = rest.find(": ") else {
        return message;
    };
    let words = &rest[colon + 2..];
    match words.find("; ") {
        Some(end) => &words[..end],
        None => words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_failure_text_is_an_auth_error() {
        let e = Error::from_response(
            "POST",
            "http://x/login",
            401,
            "Login failed. Invalid username or password",
            None,
            false,
        );
        assert!(
            matches!(&e, Error::Auth { message, .. } if message == "Login failed. Invalid username or password")
        );
    }

    #[test]
    fn login_limit_is_rate_limited_even_without_429() {
        let body =
            r#"{"message":"Too many requests in a short time, please wait a bit and try again."}"#;
        for status in [429, 401, 403] {
            let e = Error::from_response("POST", "http://x/login", status, body, None, false);
            assert!(
                matches!(&e, Error::RateLimited { message, .. } if message.starts_with("Too many requests")),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_operation_and_generic_json_errors() {
        let e = Error::from_response(
            "POST",
            "http://x/app/operations?stage=staging",
            400,
            r#"{"error":"unknown operation frob"}"#,
            None,
            true,
        );
        assert!(
            matches!(&e, Error::UnknownOperation { message } if message == "unknown operation frob")
        );
        let e = Error::from_response(
            "POST",
            "http://x/app/data/sources?validation=false",
            500,
            "{\"statusCode\":500}",
            None,
            false,
        );
        assert!(matches!(
            &e,
            Error::Api {
                status: 500,
                body: ErrorBody::Json(_),
                ..
            }
        ));
        assert!(
            !e.to_string().contains("validation"),
            "query string must not be shown: {e}"
        );
    }
}
