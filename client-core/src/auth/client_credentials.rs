//! OAuth client-credentials grant with HTTP Basic (DAP).

use std::fmt;

use super::oauth::{InvalidGrant, exchange};
use super::{BasicCredentials, GrantedToken, TokenGrant};
use crate::Result;
use crate::http::{HttpClient, Request};

/// `POST {token_url}` with `Authorization: Basic base64(id:secret)` and the
/// form `grant_type=client_credentials` (Instructure DAP:
/// `{base}/ids/auth/login`).
#[derive(Clone)]
pub struct ClientCredentialsGrant {
    http: HttpClient,
    token_url: String,
    credentials: BasicCredentials,
    scope: Option<String>,
}

impl ClientCredentialsGrant {
    /// A grant against `token_url` (absolute, or relative to `http`'s base
    /// URL). `http` should carry no auth of its own; the grant sends Basic.
    pub fn new(
        http: HttpClient,
        token_url: impl Into<String>,
        credentials: BasicCredentials,
    ) -> Result<Self> {
        let token_url = token_url.into();
        http.resolve(&token_url)?;
        Ok(Self {
            http,
            token_url,
            credentials,
            scope: None,
        })
    }

    /// Requests this `scope`.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

impl fmt::Debug for ClientCredentialsGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentialsGrant")
            .field("token_url", &crate::error::redact_url(&self.token_url))
            .field("client_id", &self.credentials.username())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenGrant for ClientCredentialsGrant {
    async fn fetch(&self) -> Result<GrantedToken> {
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.clone()));
        }
        let request = Request::post(&self.token_url)
            .form(form)
            .basic_auth(self.credentials.clone())
            // Asking twice for a token is harmless, so timeouts may be retried.
            .idempotent(true);
        let reply = exchange(
            &self.http,
            request,
            InvalidGrant::BadCredentials,
            "check the client id and client secret",
        )
        .await?;
        Ok(GrantedToken::new(reply.access_token, reply.expires_in))
    }
}
