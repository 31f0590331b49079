//! Rotating single-use refresh tokens (D2L Brightspace).

use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::oauth::{InvalidGrant, exchange};
use super::{BasicCredentials, GrantedToken, TokenGrant, TokenStore};
use crate::http::{HttpClient, Request};
use crate::{Error, Result};

/// `POST {token_url}` with `Authorization: Basic base64(id:secret)` and the
/// form `grant_type=refresh_token&refresh_token=..[&scope=..]` (D2L:
/// `https://auth.brightspace.com/core/connect/token`).
///
/// Refresh tokens rotate: every answer carries a new one and the old one is
/// spent. The grant saves the new token to its [`TokenStore`] **before** it
/// returns the access token; a server that sends no new token keeps the old
/// one in use. A spent token (`400 invalid_grant`) is
/// [`Error::RefreshTokenSpent`], which tells the user to obtain a new one.
/// Wrap the grant in a [`TokenCache`](super::TokenCache): its single flight
/// guarantees a token is never traded twice concurrently.
///
/// ```no_run
/// # fn demo() -> client_core::Result<()> {
/// use std::sync::Arc;
/// use client_core::auth::{BasicCredentials, FileTokenStore, RefreshTokenGrant, TokenCache};
/// use client_core::http::HttpClient;
/// use client_core::SecretString;
///
/// let grant = RefreshTokenGrant::new(
///     HttpClient::builder().build()?,
///     "https://auth.brightspace.com/core/connect/token",
///     BasicCredentials::new("client-id", SecretString::from("client-secret")),
///     Arc::new(FileTokenStore::new("d2l-refresh-token")),
/// )?
/// .with_scope("datasets:bds:read datahub:dataexports:read datahub:dataexports:download");
/// let provider = TokenCache::new(grant);
/// # drop(provider);
/// # Ok(()) }
/// ```
pub struct RefreshTokenGrant {
    http: HttpClient,
    token_url: String,
    credentials: BasicCredentials,
    store: Arc<dyn TokenStore>,
    scope: Option<String>,
    initial: Option<SecretString>,
    /// The newest refresh token this process holds, in case saving it failed.
    latest: tokio::sync::Mutex<Option<SecretString>>,
}

impl RefreshTokenGrant {
    /// A grant against `token_url` (absolute, or relative to `http`'s base
    /// URL) whose refresh token lives in `store`.
    pub fn new(
        http: HttpClient,
        token_url: impl Into<String>,
        credentials: BasicCredentials,
        store: Arc<dyn TokenStore>,
    ) -> Result<Self> {
        let token_url = token_url.into();
        http.resolve(&token_url)?;
        Ok(Self {
            http,
            token_url,
            credentials,
            store,
            scope: None,
            initial: None,
            latest: tokio::sync::Mutex::new(None),
        })
    }

    /// Requests this `scope` on refresh.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The refresh token to use while the store is empty (e.g. from
    /// `D2L_REFRESH_TOKEN`). Once the store holds a token, the store wins:
    /// it has the newest one.
    pub fn with_initial_refresh_token(mut self, token: SecretString) -> Self {
        self.initial = Some(token);
        self
    }

    async fn current_refresh_token(&self, latest: &Option<SecretString>) -> Result<SecretString> {
        if let Some(token) = latest {
            return Ok(token.clone());
        }
        if let Some(token) = self.store.load().await? {
            return Ok(token);
        }
        self.initial.clone().ok_or_else(|| Error::Auth {
            message: format!(
                "no refresh token: the token store {:?} is empty and none was configured; \
                 authorize the app once to obtain a refresh token and put it in the store",
                self.store
            ),
            status: None,
        })
    }
}

impl fmt::Debug for RefreshTokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenGrant")
            .field("token_url", &crate::error::redact_url(&self.token_url))
            .field("client_id", &self.credentials.username())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenGrant for RefreshTokenGrant {
    async fn fetch(&self) -> Result<GrantedToken> {
        // Held for the whole exchange: one trade of a refresh token at a time,
        // even without a TokenCache in front.
        let mut latest = self.latest.lock().await;
        let refresh = self.current_refresh_token(&latest).await?;
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh.expose_secret().to_string()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope.clone()));
        }
        // Not idempotent: a lost answer may already have spent the token, so
        // only failures before sending are retried (plus 5xx/429 statuses).
        let request = Request::post(&self.token_url)
            .form(form)
            .basic_auth(self.credentials.clone());
        let reply = exchange(
            &self.http,
            request,
            InvalidGrant::RefreshTokenSpent,
            "check the client id and client secret",
        )
        .await?;
        if let Some(new_refresh) = reply.refresh_token {
            *latest = Some(new_refresh.clone());
            self.store
                .save(&new_refresh)
                .await
                .map_err(|e| Error::Auth {
                    message: format!(
                        "the new refresh token could not be saved ({e}); the previous one is \
                     spent. This process keeps the new one in memory and will retry \
                     saving it; if it exits first, obtain a new refresh token"
                    ),
                    status: None,
                })?;
            *latest = None;
        }
        Ok(GrantedToken::new(reply.access_token, reply.expires_in))
    }
}
