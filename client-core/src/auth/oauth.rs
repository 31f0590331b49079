//! The token-endpoint exchange shared by the grants (RFC 6749 §5).

use std::time::Duration;

use secrecy::SecretString;

use crate::error::{redact_url, snippet};
use crate::http::{HttpClient, Request};
use crate::retry::is_retryable_transport;
use crate::{Error, Result};

/// What a token endpoint answered.
pub(crate) struct TokenReply {
    pub(crate) access_token: SecretString,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) refresh_token: Option<SecretString>,
}

/// The fields we read; anything else the server adds is ignored.
#[derive(serde::Deserialize)]
struct RawReply {
    access_token: Option<SecretString>,
    /// Toucan's login answers `{"token": ...}`.
    token: Option<SecretString>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<SecretString>,
}

#[derive(serde::Deserialize)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
    message: Option<String>,
}

/// How to report an `invalid_grant`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvalidGrant {
    /// The refresh token was used or revoked: [`Error::RefreshTokenSpent`].
    RefreshTokenSpent,
    /// Wrong credentials: [`Error::Auth`].
    BadCredentials,
}

/// Sends a token request (with the token-endpoint retry budget) and
/// interprets the answer. Token responses are never quoted in errors: they
/// hold the secrets.
pub(crate) async fn exchange(
    http: &HttpClient,
    request: Request,
    invalid_grant: InvalidGrant,
    advice: &str,
) -> Result<TokenReply> {
    let method = request.method().to_string();
    let policy = crate::retry::RetryPolicy::token_endpoint();
    let request = request.retry_policy(policy.clone());
    let idempotent = request.is_idempotent();
    let mut attempt: u32 = 1;
    let response = loop {
        let response = http.execute(request.clone()).await?;
        if !response.is_success() {
            break response;
        }
        let url = redact_url(response.url().as_str());
        match response.bytes().await {
            Ok(body) => return parse_reply(&body, &method, &url),
            // A grant that only mints another token may be asked again; a
            // rotating refresh token may already be spent, so not that one.
            Err(Error::Transport { kind, url, .. })
                if is_retryable_transport(kind, idempotent) && attempt < policy.max_attempts =>
            {
                http.pause_after_broken_body(&policy, attempt, kind, &url)
                    .await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let status = response.status();
    let url = redact_url(response.url().as_str());
    if status >= 500 || status == 429 || status == 408 {
        return Err(response.into_api_error().await);
    }
    let body = response.bytes().await?;
    let parsed: Option<OAuthError> = serde_json::from_slice(&body).ok();
    let code = parsed.as_ref().and_then(|e| e.error.clone());
    let description = parsed
        .as_ref()
        .and_then(|e| e.error_description.clone().or_else(|| e.message.clone()));
    if code.as_deref() == Some("invalid_grant") && invalid_grant == InvalidGrant::RefreshTokenSpent
    {
        let reason = match &description {
            Some(d) => format!("invalid_grant: {d}"),
            None => "invalid_grant".to_string(),
        };
        return Err(Error::RefreshTokenSpent { reason });
    }
    let what = match (code, description) {
        (Some(c), Some(d)) => format!("{c}: {d}"),
        (Some(c), None) => c,
        (None, Some(d)) => d,
        (None, None) if parsed.is_none() => snippet(&body, 200),
        (None, None) => String::new(),
    };
    // A missing endpoint is a configuration problem, not a credential one.
    let advice = if matches!(status, 404 | 405) {
        "check the token URL"
    } else {
        advice
    };
    Err(Error::Auth {
        message: format!("token endpoint {method} {url} returned HTTP {status}: {what}; {advice}"),
        status: Some(status),
    })
}

fn parse_reply(body: &[u8], method: &str, url: &str) -> Result<TokenReply> {
    let unexpected = |what: &str| Error::Auth {
        message: format!(
            "token endpoint {method} {url} answered with success but {what}; \
             check that the token URL points at the token endpoint"
        ),
        status: None,
    };
    let raw: RawReply =
        serde_json::from_slice(body).map_err(|_| unexpected("not with a JSON object"))?;
    let access_token = raw
        .access_token
        .or(raw.token)
        .ok_or_else(|| unexpected("without an access token"))?;
    Ok(TokenReply {
        access_token,
        expires_in: raw.expires_in.as_ref().and_then(seconds),
        refresh_token: raw.refresh_token,
    })
}

/// `expires_in` as a number or a numeric string.
fn seconds(value: &serde_json::Value) -> Option<Duration> {
    let secs = match value {
        serde_json::Value::Number(n) => n.as_f64()?,
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn reply_shapes() {
        let r = parse_reply(
            br#"{"access_token":"a","expires_in":3599,"x":1}"#,
            "POST",
            "u",
        )
        .unwrap();
        assert_eq!(r.access_token.expose_secret(), "a");
        assert_eq!(r.expires_in, Some(Duration::from_secs(3599)));
        let r = parse_reply(br#"{"token":"t","expires_in":"60"}"#, "POST", "u").unwrap();
        assert_eq!(r.access_token.expose_secret(), "t");
        assert_eq!(r.expires_in, Some(Duration::from_secs(60)));
        let e = parse_reply(br#"{"refresh_token":"SECRET"}"#, "POST", "u")
            .err()
            .unwrap();
        assert!(!e.to_string().contains("SECRET"));
        assert!(
            parse_reply(b"not json SECRET", "POST", "u")
                .err()
                .unwrap()
                .to_string()
                .contains("JSON")
        );
    }
}
