//! `POST /login` and the Basic-or-Bearer check of every small-app route.

use super::state::Toucan;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const LOGIN_FAILED: &str = "Login failed. Invalid username or password";
const TOO_MANY: &str = "Too many requests in a short time, please wait a bit and try again.";
const WINDOW: Duration = Duration::from_secs(60);

/// A JSON `{"message": ...}` error.
pub(crate) fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(json!({"message": text.into()}))).into_response()
}

/// The documented 401 body.
pub(crate) fn unauthorized() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        Json(json!({"statusCode": 401, "message": "Unauthorized"})),
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"toucan\""),
    );
    r
}

#[derive(Debug, Deserialize)]
struct Login {
    username: Option<String>,
    password: Option<String>,
}

pub(crate) async fn login(State(state): State<Arc<Toucan>>, body: Bytes) -> Response {
    state.stats.record_token_request();
    let now = Instant::now();
    {
        let mut inner = state.lock();
        while inner
            .login_failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            inner.login_failures.pop_front();
        }
        // Once the limit is reached every attempt is refused, right credentials included.
        if inner.login_failures.len() >= state.config.login_failures_per_minute as usize {
            return message(StatusCode::TOO_MANY_REQUESTS, TOO_MANY);
        }
    }
    let Ok(login) = serde_json::from_slice::<Login>(&body) else {
        return message(
            StatusCode::BAD_REQUEST,
            "expected a JSON body {\"username\": ..., \"password\": ...}",
        );
    };
    let ok = login.username.as_deref() == Some(state.config.username.as_str())
        && login.password.as_deref() == Some(state.config.password.as_str());
    let mut inner = state.lock();
    if !ok {
        inner.login_failures.push_back(now);
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            LOGIN_FAILED,
        )
            .into_response();
    }
    // JWT-shaped but opaque: three base64url segments.
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let token = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({"sub": state.config.username, "jti": uuid::Uuid::new_v4().to_string()})),
        uuid::Uuid::new_v4().simple()
    );
    inner.tokens.insert(token.clone());
    Json(json!({"token": token})).into_response()
}

/// Accepts `Basic` with the configured user or `Bearer` with a token from `/login`.
pub(crate) fn authorized(state: &Toucan, headers: &HeaderMap) -> bool {
    let Some((scheme, value)) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
    else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        return state.lock().tokens.contains(value.trim());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok();
    let text = decoded.as_deref().and_then(|d| std::str::from_utf8(d).ok());
    text.and_then(|t| t.split_once(':'))
        .is_some_and(|(u, p)| u == state.config.username && p == state.config.password)
}

/// Why a small-app request is refused before it is handled.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No or bad credentials.
    Unauthorized,
    /// Anything else, as `{"message": ...}`.
    Message(StatusCode, String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => unauthorized(),
            Refusal::Message(status, text) => message(status, text),
        }
    }
}

/// Checks credentials, the small app and the `stage` query value; returns the stage.
pub(crate) fn guard(
    state: &Toucan,
    headers: &HeaderMap,
    small_app: &str,
    stage: Option<&str>,
) -> Result<String, Refusal> {
    if !authorized(state, headers) {
        return Err(Refusal::Unauthorized);
    }
    if small_app != state.config.small_app {
        return Err(Refusal::Message(
            StatusCode::NOT_FOUND,
            format!("Small app '{small_app}' not found"),
        ));
    }
    match stage {
        None => Ok("production".into()),
        Some(s @ ("staging" | "production")) => Ok(s.into()),
        Some(other) => Err(Refusal::Message(
            StatusCode::BAD_REQUEST,
            format!("Unknown stage '{other}': use staging or production"),
        )),
    }
}
