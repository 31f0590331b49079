//! DAP error bodies and status codes (dap.md §5): `{"error":{"type","uuid","message",...}}` with
//! `Content-Type: application/json`, except the deliberately odd ones (504 with only a message,
//! 502 as HTML, 500 without an `error` key).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::faults::InjectedError;

/// Every error class the fake DAP server can answer with; the names are the `type` literals (and
/// the names accepted by `POST /__sandbox/dap/errors`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorKind {
    /// 401 `AuthenticationError`.
    AuthenticationError,
    /// 403 `AccountDisabled`.
    AccountDisabled,
    /// 403 `AccountNotOnboarded`.
    AccountNotOnboarded,
    /// 403 `AccountUnderMaintenance`.
    AccountUnderMaintenance,
    /// 403 `RequestTypeForbidden`.
    RequestTypeForbidden,
    /// 400 `ValidationError` with `location`.
    ValidationError,
    /// 404 `ObjectNotFound` with `id` and `kind`.
    ObjectNotFound,
    /// 400 `OutOfRange` with `since` (and `until`).
    OutOfRange,
    /// 400 `SnapshotRequired` with `since`.
    SnapshotRequired,
    /// 500 `ProcessingError` (type/uuid/message only).
    ProcessingError,
    /// 504 `{"error":{"message":...}}`.
    GatewayTimeout,
    /// 502 with an HTML body (not JSON).
    BadGateway,
    /// 500 JSON body without an `error` key.
    UnknownServerError,
    /// 429 `TooManyRequests` with `Retry-After`.
    TooManyRequests,
}

/// A DAP error response.
#[derive(Clone, Debug)]
pub struct DapError {
    /// Class.
    pub kind: ErrorKind,
    /// Human message.
    pub message: String,
    /// Extra fields of the error object (`id`/`kind`, `since`/`until`, `location`).
    pub extra: serde_json::Map<String, Value>,
    /// `Retry-After` seconds (429 only).
    pub retry_after: Option<u64>,
}

impl DapError {
    /// An error of `kind` with a message and typical extra fields.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let mut error = Self {
            kind: kind.clone(),
            message: message.into(),
            extra: serde_json::Map::new(),
            retry_after: None,
        };
        match kind {
            ErrorKind::ValidationError => {
                error = error.with("location", json!({"line": 1, "column": 1, "character": 1}));
            }
            ErrorKind::ObjectNotFound => {
                error = error
                    .with("id", json!(uuid::Uuid::nil().to_string()))
                    .with("kind", json!("job"));
            }
            ErrorKind::OutOfRange | ErrorKind::SnapshotRequired => {
                error = error.with("since", json!("2024-01-01T00:00:00Z"));
            }
            ErrorKind::TooManyRequests => error.retry_after = Some(1),
            _ => {}
        }
        error
    }

    /// Sets an extra field of the error object.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// 404 ObjectNotFound for a thing of `kind` (`job`, `table`, `namespace`, `object`).
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            ErrorKind::ObjectNotFound,
            format!("The {kind} '{id}' does not exist."),
        )
        .with("id", json!(id))
        .with("kind", json!(kind))
    }

    /// 400 ValidationError at a position of the request body.
    pub fn validation(message: impl Into<String>, line: usize, column: usize) -> Self {
        Self::new(ErrorKind::ValidationError, message).with(
            "location",
            json!({"line": line, "column": column, "character": column}),
        )
    }

    /// 401 AuthenticationError.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AuthenticationError, message)
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::AuthenticationError => StatusCode::UNAUTHORIZED,
            ErrorKind::AccountDisabled
            | ErrorKind::AccountNotOnboarded
            | ErrorKind::AccountUnderMaintenance
            | ErrorKind::RequestTypeForbidden => StatusCode::FORBIDDEN,
            ErrorKind::ValidationError | ErrorKind::OutOfRange | ErrorKind::SnapshotRequired => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::ObjectNotFound => StatusCode::NOT_FOUND,
            ErrorKind::ProcessingError | ErrorKind::UnknownServerError => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn type_literal(&self) -> &'static str {
        match self.kind {
            ErrorKind::AuthenticationError => "AuthenticationError",
            ErrorKind::AccountDisabled => "AccountDisabled",
            ErrorKind::AccountNotOnboarded => "AccountNotOnboarded",
            ErrorKind::AccountUnderMaintenance => "AccountUnderMaintenance",
            ErrorKind::RequestTypeForbidden => "RequestTypeForbidden",
            ErrorKind::ValidationError => "ValidationError",
            ErrorKind::ObjectNotFound => "ObjectNotFound",
            ErrorKind::OutOfRange => "OutOfRange",
            ErrorKind::SnapshotRequired => "SnapshotRequired",
            ErrorKind::ProcessingError => "ProcessingError",
            ErrorKind::GatewayTimeout => "GatewayTimeout",
            ErrorKind::BadGateway => "BadGateway",
            ErrorKind::UnknownServerError => "UnknownServerError",
            ErrorKind::TooManyRequests => "TooManyRequests",
        }
    }

    /// The `error` object (type, uuid, message, extras) as a failed job carries it.
    pub fn error_object(&self) -> Value {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), json!(self.type_literal()));
        object.insert("uuid".into(), json!(uuid::Uuid::new_v4().to_string()));
        object.insert("message".into(), json!(self.message));
        for (k, v) in &self.extra {
            object.insert(k.clone(), v.clone());
        }
        Value::Object(object)
    }
}

impl IntoResponse for DapError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = match self.kind {
            ErrorKind::BadGateway => {
                let html = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>";
                let mut r = (status, html).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                r
            }
            ErrorKind::GatewayTimeout => {
                (status, Json(json!({"error": {"message": self.message}}))).into_response()
            }
            ErrorKind::UnknownServerError => {
                (status, Json(json!({"message": self.message}))).into_response()
            }
            _ => (status, Json(json!({"error": self.error_object()}))).into_response(),
        };
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Renders generic injected faults as DAP errors (502 as HTML, 504 message-only, 429 typed).
pub fn render_injected(error: InjectedError) -> Response {
    let kind = match error {
        InjectedError::RateLimited => ErrorKind::TooManyRequests,
        InjectedError::Server(s) if s == StatusCode::BAD_GATEWAY => ErrorKind::BadGateway,
        InjectedError::Server(s) if s == StatusCode::GATEWAY_TIMEOUT => ErrorKind::GatewayTimeout,
        InjectedError::Server(_) => ErrorKind::ProcessingError,
    };
    let mut response = DapError::new(
        kind,
        "Injected fault: the service is temporarily unavailable.",
    )
    .into_response();
    if let InjectedError::Server(s) = error {
        *response.status_mut() = s;
    }
    response
}
