//! The error base shared by every service crate.
//!
//! Every variant's `Display` says what happened in words a person can act on:
//! the status, the server's message and request id where present, and the URL
//! *without its query string* (pre-signed URLs carry their signature there).
//! No variant ever holds a secret.

use std::time::Duration;

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a request failed before any HTTP status was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// The connection could not be established; the request was never sent.
    Connect,
    /// The request timed out.
    Timeout,
    /// The connection was reset, closed or ended early (including a body
    /// shorter than its declared length).
    Interrupted,
    /// Anything else the transport reported.
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "connection failed",
            Self::Timeout => "timed out",
            Self::Interrupted => "connection interrupted",
            Self::Other => "transport error",
        })
    }
}

/// An HTTP response with an error status, as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiError {
    /// HTTP method of the request.
    pub method: String,
    /// Request URL without its query string.
    pub url: String,
    /// HTTP status code.
    pub status: u16,
    /// The server's message, extracted from the body where it could be.
    pub message: Option<String>,
    /// The server's request id header (e.g. `x-request-id`), where present.
    pub request_id: Option<String>,
    /// The first bytes of the body (at most 2 KiB, lossily decoded).
    pub body_snippet: String,
    /// `Retry-After` the server gave, if any.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} returned HTTP {}",
            self.method, self.url, self.status
        )?;
        match &self.message {
            Some(m) => write!(f, ": {m}")?,
            None if !self.body_snippet.is_empty() => write!(f, ": {}", self.body_snippet)?,
            None => {}
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// The core's error type. Service crates wrap it in their own enums.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with an error status (after any retries).
    #[error("{0}")]
    Api(Box<ApiError>),

    /// The request failed at the transport level (after any retries).
    #[error("{method} {url}: {kind}: {message}")]
    Transport {
        /// What kind of transport failure.
        kind: TransportKind,
        /// HTTP method.
        method: String,
        /// URL without query string.
        url: String,
        /// Description of the underlying error (never includes the query string).
        message: String,
    },

    /// Authentication failed: bad credentials, a rejected token, or a token
    /// endpoint error. `message` says what to do about it.
    #[error("authentication failed: {message}")]
    Auth {
        /// What went wrong and how to fix it.
        message: String,
        /// HTTP status of the failing response, if there was one.
        status: Option<u16>,
    },

    /// A rotating refresh token was rejected as already used or revoked
    /// (`invalid_grant`). A new one must be obtained out of band.
    #[error(
        "the stored refresh token was rejected ({reason}); it has been used or revoked. \
         Obtain a new refresh token from the identity provider (authorize the app again) \
         and put it in the token store"
    )]
    RefreshTokenSpent {
        /// The server's `error_description` or `error`.
        reason: String,
    },

    /// The response body could not be decoded into the expected type.
    #[error("could not decode the response of {url}: {message}; body starts with: {body_snippet}")]
    Decode {
        /// URL without query string.
        url: String,
        /// What the decoder said.
        message: String,
        /// The first bytes of the body.
        body_snippet: String,
    },

    /// The retry loop gave up: the attempt budget or the deadline ran out.
    /// `last` is the final attempt's error.
    #[error("gave up after {attempts} attempts in {elapsed:?}: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last error seen.
        last: Box<Error>,
    },

    /// A waited-for job did not reach a final state before the deadline.
    #[error("gave up waiting after {elapsed:?} and {polls} polls; the job is still running")]
    Timeout {
        /// Time spent waiting.
        elapsed: Duration,
        /// Number of polls made.
        polls: u32,
    },

    /// A waited-for job ended in a failure state.
    #[error("the job failed: {details}")]
    JobFailed {
        /// The server's description of the failure.
        details: String,
    },

    /// A download ended early, had the wrong length, or was otherwise corrupt.
    #[error("download of {url} is incomplete or corrupt: {message}")]
    Download {
        /// URL without query string.
        url: String,
        /// What was wrong.
        message: String,
    },

    /// A local file operation failed (downloads, token store).
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, including the path.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The client was configured wrongly (bad URL, missing credential, ...).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A request could not be built (invalid header, body that does not
    /// serialise, target that is not a URL). Nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// The HTTP status of the error, if it came from an HTTP response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            Error::Auth { status, .. } => *status,
            Error::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The API error, if this is (or wraps) an HTTP error response.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            Error::RetriesExhausted { last, .. } => last.api(),
            _ => None,
        }
    }

    /// A copy of this error, for handing one failure to several waiters.
    /// The source of an [`Error::Io`] keeps its kind and message.
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Api(e) => Error::Api(e.clone()),
            Error::Transport {
                kind,
                method,
                url,
                message,
            } => Error::Transport {
                kind: *kind,
                method: method.clone(),
                url: url.clone(),
                message: message.clone(),
            },
            Error::Auth { message, status } => Error::Auth {
                message: message.clone(),
                status: *status,
            },
            Error::RefreshTokenSpent { reason } => Error::RefreshTokenSpent {
                reason: reason.clone(),
            },
            Error::Decode {
                url,
                message,
                body_snippet,
            } => Error::Decode {
                url: url.clone(),
                message: message.clone(),
                body_snippet: body_snippet.clone(),
            },
            Error::RetriesExhausted {
                attempts,
                elapsed,
                last,
            } => Error::RetriesExhausted {
                attempts: *attempts,
                elapsed: *elapsed,
                last: Box::new(last.duplicate()),
            },
            Error::Timeout { elapsed, polls } => Error::Timeout {
                elapsed: *elapsed,
                polls: *polls,
            },
            Error::JobFailed { details } => Error::JobFailed {
                details: details.clone(),
            },
            Error::Download { url, message } => Error::Download {
                url: url.clone(),
                message: message.clone(),
            },
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Config(m) => Error::Config(m.clone()),
            Error::InvalidRequest(m) => Error::InvalidRequest(m.clone()),
        }
    }

    /// Builds an [`Error::Io`] with a context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Returns `url` without its query string and fragment, for messages and logs.
///
/// ```
/// assert_eq!(
///     client_core::error::redact_url("https://bucket.example/a/b.gz?X-Amz-Signature=abc"),
///     "https://bucket.example/a/b.gz"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    url[..end].to_string()
}

/// The first `max` bytes of `body`, lossily decoded, on a char boundary.
pub fn snippet(body: &[u8], max: usize) -> String {
    let cut = &body[..body.len().min(max)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if body.len() > max {
        s.push('…');
    }
    s
}
