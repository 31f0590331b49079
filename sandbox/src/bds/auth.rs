//! The auth listener (`POST /core/connect/token`) and bearer-token checks for API routes.

use super::state::{AccessToken, Bds};
use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use chrono::Duration;
use serde::Deserialize;
use std::sync::Arc;

/// Scopes granted when the request names none.
pub(crate) const DEFAULT_SCOPE: &str =
    "datasets:bds:read datahub:dataexports:read datahub:dataexports:download";

pub(crate) fn routes(state: Arc<Bds>) -> Router {
    Router::new()
        .route("/core/connect/token", post(token))
        // The D2L sample builds `https://auth.brightspace.com//core/connect/token`; it works there.
        .fallback(double_slash_token)
        .with_state(state)
}

async fn double_slash_token(State(state): State<Arc<Bds>>, request: Request) -> Response {
    let normalized: String = request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    if request.method() != axum::http::Method::POST || normalized != "core/connect/token" {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    let headers = request.headers().clone();
    let form = Form::<TokenForm>::from_request(request, &()).await;
    token(State(state), headers, form).await
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    refresh_token: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `(user, password)` of an HTTP Basic header.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, pass) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn token(
    State(state): State<Arc<Bds>>,
    headers: HeaderMap,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    state.stats.record_token_request();
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.body_text()),
    };
    let client = basic_credentials(&headers)
        .or_else(|| form.client_id.clone().zip(form.client_secret.clone()));
    let Some((id, secret)) = client else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required (HTTP Basic or client_id/client_secret)",
        );
    };
    if id != state.config.client_id || secret != state.config.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    if form.grant_type.as_deref() != Some("refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=refresh_token is supported",
        );
    }
    let Some(presented) = form.refresh_token.filter(|t| !t.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token is required",
        );
    };
    let scope = form
        .scope
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SCOPE.to_owned());
    let ttl = state
        .faults
        .token_ttl()
        .map_or(state.config.access_token_ttl_secs, |d| d.as_secs());
    let mut inner = state.lock();
    if presented != inner.refresh_token {
        // Single use: an old (already traded-in) or unknown token is refused.
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the refresh token is invalid, expired or was already used",
        );
    }
    let refresh_token = Bds::rotate_refresh_token(&mut inner);
    let access_token = format!("at.{}", uuid::Uuid::new_v4().simple());
    let expires =
        inner.timeline.now() + Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX / 4_000));
    let scopes = scope.split_whitespace().map(str::to_owned).collect();
    inner
        .access
        .insert(access_token.clone(), AccessToken { expires, scopes });
    drop(inner);
    axum::Json(serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl,
        "refresh_token": refresh_token,
        "scope": scope,
    }))
    .into_response()
}

/// Whether a granted scope (segments may be `*`) covers a required one.
fn covers(granted: &str, required: &str) -> bool {
    let (g, r): (Vec<&str>, Vec<&str>) =
        (granted.split(':').collect(), required.split(':').collect());
    g.len() == r.len() && g.iter().zip(&r).all(|(g, r)| *g == "*" || g == r)
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    /// Missing, unknown or expired: 401.
    Unauthenticated(&'static str),
    /// Valid but lacking the scope: 403 without `Retry-After`.
    MissingScope(&'static str),
}

/// Checks the request's bearer token against the virtual clock and the required scope.
pub(crate) fn check(
    state: &Bds,
    headers: &HeaderMap,
    required: &'static str,
) -> Result<(), Denied> {
    let token = bearer(headers).ok_or(Denied::Unauthenticated("missing bearer token"))?;
    let inner = state.lock();
    let grant = inner
        .access
        .get(token)
        .ok_or(Denied::Unauthenticated("unknown access token"))?;
    if inner.timeline.now() >= grant.expires {
        return Err(Denied::Unauthenticated("access token expired"));
    }
    if grant.scopes.iter().any(|g| covers(g, required)) {
        Ok(())
    } else {
        Err(Denied::MissingScope(required))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_scopes_cover_their_segment() {
        assert!(covers(
            "datahub:dataexports:*",
            "datahub:dataexports:download"
        ));
        assert!(covers("datahub:*:*", "datahub:dataexports:read"));
        assert!(!covers(
            "datahub:dataexports:read",
            "datahub:dataexports:download"
        ));
        assert!(!covers("core:*:*", "datasets:bds:read"));
    }

    #[test]
    fn basic_headers_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Basic dXNlcjpwYTpzcw==".parse().expect("header"),
        );
        assert_eq!(basic_credentials(&h), Some(("user".into(), "pa:ss".into())));
    }
}
