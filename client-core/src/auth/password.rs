//! OAuth resource-owner password grant (LiquidAnalytics).

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::oauth::{InvalidGrant, exchange};
use super::{GrantedToken, TokenGrant};
use crate::Result;
use crate::http::{HttpClient, Request};

/// `POST {token_url}` with the form `grant_type=password&client_id&client_secret
/// &username&password[&scope]` (LiquidAnalytics: `/ls/api/oauth2/token`,
/// scope `community=<name>`).
#[derive(Clone)]
pub struct PasswordGrant {
    http: HttpClient,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    username: String,
    password: SecretString,
    scope: Option<String>,
}

impl PasswordGrant {
    /// A grant against `token_url` (absolute, or relative to `http`'s base URL).
    pub fn new(
        http: HttpClient,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        username: impl Into<String>,
        password: SecretString,
    ) -> Result<Self> {
        let token_url = token_url.into();
        http.resolve(&token_url)?;
        Ok(Self {
            http,
            token_url,
            client_id: client_id.into(),
            client_secret,
            username: username.into(),
            password,
            scope: None,
        })
    }

    /// Requests this `scope` (space-separated; LD: `community=<name>`).
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

impl fmt::Debug for PasswordGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordGrant")
            .field("token_url", &crate::error::redact_url(&self.token_url))
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenGrant for PasswordGrant {
    async fn fetch(&self) -> Result<GrantedToken> {
        let mut form = vec![
            ("grant_type", "password".to_string()),
            ("client_id", self.client_id.clone()),
            (
                "client_secret",
                self.client_secret.expose_secret().to_string(),
            ),
            ("username", self.username.clone()),
            ("password", self.password.expose_secret().to_string()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.clone()));
        }
        let request = Request::post(&self.token_url)
            .form(form)
            .without_auth()
            .idempotent(true);
        let reply = exchange(
            &self.http,
            request,
            InvalidGrant::BadCredentials,
            "check the client id, client secret, user name, password and community",
        )
        .await?;
        Ok(GrantedToken::new(reply.access_token, reply.expires_in))
    }
}
