//! `POST /ls/api/oauth2/token` (resource-owner password grant), `GET /ls/api/oauth2/validate`,
//! `POST /ls/api/oauth2/setCommunity`, and bearer checks for the batch routes.

use super::state::{Ld, Token};
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use tokio::time::Instant;

/// An OAuth-style error answer `{"error","error_description"}` (also used by the batch routes).
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        (self.status, Json(body)).into_response()
    }
}

/// [`OAuthError`] as a response.
pub(crate) fn oauth_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> Response {
    OAuthError::new(status, error, description).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    username: Option<String>,
    password: Option<String>,
    scope: Option<String>,
}

/// The `community` of a space-delimited `k=v` scope.
fn community_of(scope: &str) -> Option<&str> {
    scope
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("community="))
}

pub(crate) async fn token(
    State(state): State<Arc<Ld>>,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Response {
    state.stats.record_token_request();
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected an application/x-www-form-urlencoded body",
        );
    };
    if form.grant_type.as_deref() != Some("password") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=password is supported",
        );
    }
    // The Java example sends no client credentials at all; when they are sent they must match.
    let client_ok = form
        .client_id
        .as_deref()
        .is_none_or(|id| id == state.config.client_id)
        && form
            .client_secret
            .as_deref()
            .is_none_or(|s| s == state.config.client_secret);
    if !client_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Bad client credentials",
        );
    }
    if form.username.as_deref() != Some(state.config.username.as_str())
        || form.password.as_deref() != Some(state.config.password.as_str())
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad credentials");
    }
    let scope = form.scope.unwrap_or_default();
    let community = community_of(&scope).map(str::to_owned);
    if community
        .as_deref()
        .is_some_and(|c| c != state.config.community)
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Unknown community",
        );
    }
    let ttl = state
        .faults
        .token_ttl()
        .map_or(state.config.token_ttl_secs, |d| d.as_secs());
    let access_token = uuid::Uuid::new_v4().to_string();
    let expires = Instant::now() + std::time::Duration::from_secs(ttl);
    state
        .lock()
        .tokens
        .insert(access_token.clone(), Token { expires, community });
    Json(json!({"access_token": access_token, "token_type": "bearer", "expires_in": ttl, "scope": scope})).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Why a request's token is refused.
#[derive(Debug)]
pub(crate) enum Denied {
    Invalid(&'static str),
    NoCommunity,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Invalid(why) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", why),
            Denied::NoCommunity => oauth_error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "no community selected: request the scope community=<name> or call /ls/api/oauth2/setCommunity",
            ),
        }
    }
}

/// The token of a valid bearer header.
pub(crate) fn check(
    state: &Ld,
    headers: &HeaderMap,
    need_community: bool,
) -> Result<String, Denied> {
    let token = bearer(headers).ok_or(Denied::Invalid("missing bearer token"))?;
    let inner = state.lock();
    let t = inner
        .tokens
        .get(token)
        .ok_or(Denied::Invalid("invalid access token"))?;
    if Instant::now() >= t.expires {
        return Err(Denied::Invalid("access token expired"));
    }
    if need_community && t.community.is_none() {
        return Err(Denied::NoCommunity);
    }
    Ok(token.to_owned())
}

pub(crate) async fn validate(State(state): State<Arc<Ld>>, headers: HeaderMap) -> Response {
    match check(&state, &headers, false) {
        Ok(_) => Json(json!({"valid": true})).into_response(),
        Err(d) => d.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CommunityForm {
    community: Option<String>,
}

pub(crate) async fn set_community(
    State(state): State<Arc<Ld>>,
    headers: HeaderMap,
    form: Result<Form<CommunityForm>, FormRejection>,
) -> Response {
    let token = match check(&state, &headers, false) {
        Ok(t) => t,
        Err(d) => return d.into_response(),
    };
    let community = form
        .ok()
        .and_then(|Form(f)| f.community)
        .unwrap_or_default();
    if community != state.config.community {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Unknown community",
        );
    }
    if let Some(t) = state.lock().tokens.get_mut(&token) {
        t.community = Some(community.clone());
    }
    Json(json!({"community": community})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn community_is_one_of_the_scope_pairs() {
        assert_eq!(
            community_of("deviceId=abc community=Demo hardwareId=1"),
            Some("Demo")
        );
        assert_eq!(community_of("deviceId=abc"), None);
    }
}
