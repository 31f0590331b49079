//! Toucan's JSON login.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::oauth::{InvalidGrant, exchange};
use super::{GrantedToken, TokenGrant};
use crate::Result;
use crate::http::{HttpClient, Request};

/// `POST {login_url}` with the JSON `{"username": .., "password": ..}`,
/// answered by `{"token": ".."}` (Toucan Toco: `{api_root}/login`). The
/// token has no stated lifetime: it is used until the server rejects it.
#[derive(Clone)]
pub struct JsonLoginGrant {
    http: HttpClient,
    login_url: String,
    username: String,
    password: SecretString,
}

impl JsonLoginGrant {
    /// A login against `login_url` (absolute, or relative to `http`'s base URL).
    pub fn new(
        http: HttpClient,
        login_url: impl Into<String>,
        username: impl Into<String>,
        password: SecretString,
    ) -> Result<Self> {
        let login_url = login_url.into();
        http.resolve(&login_url)?;
        Ok(Self {
            http,
            login_url,
            username: username.into(),
            password,
        })
    }
}

impl fmt::Debug for JsonLoginGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLoginGrant")
            .field("login_url", &crate::error::redact_url(&self.login_url))
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenGrant for JsonLoginGrant {
    async fn fetch(&self) -> Result<GrantedToken> {
        let body = serde_json::json!({
            "username": self.username,
            "password": self.password.expose_secret(),
        });
        // A login only mints another token: repeating it after a lost
        // answer is safe.
        let request = Request::post(&self.login_url)
            .json(&body)
            .without_auth()
            .idempotent(true);
        let reply = exchange(
            &self.http,
            request,
            InvalidGrant::BadCredentials,
            "check the user name and password (the user needs the contributor right on the app)",
        )
        .await?;
        Ok(GrantedToken::new(reply.access_token, reply.expires_in))
    }
}
