//! Building a [`Client`]: tenant, OAuth app, token store, knobs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use client_core::auth::{
    BasicCredentials, FileTokenStore, RefreshTokenGrant, TokenCache, TokenStore,
};
use client_core::http::HttpClient;
use client_core::retry::{ForbiddenWithRetryAfter, RandomSource, RetryPolicy};
use client_core::time::{Clock, Sleeper, SystemClock, TokioSleeper};
use client_core::{SecretString, TokenProvider};

use super::rate::RateLimiter;
use super::{Client, Inner};
use crate::archive::ArchiveLimits;
use crate::error::{BdsError, Result};

/// Where tokens are issued unless told otherwise.
pub const DEFAULT_AUTH_URL: &str = "https://auth.brightspace.com";
/// The scopes every route of this crate needs.
pub const DEFAULT_SCOPE: &str =
    "datasets:bds:read datahub:dataexports:read datahub:dataexports:download";
/// The LP API version used unless told otherwise (has both route families).
pub const DEFAULT_LP_VERSION: &str = "1.43";
/// The token store file used when neither a store nor `D2L_TOKEN_STORE` is given.
pub const DEFAULT_TOKEN_STORE: &str = "d2l-refresh-token";

/// Builds a [`Client`]. Only the base URL and the credentials are required.
///
/// ```no_run
/// # fn demo() -> Result<(), bds_client::BdsError> {
/// use bds_client::{Client, SecretString};
///
/// let client = Client::builder()
///     .base_url("https://school.brightspace.com")
///     .credentials("client-id", SecretString::from("client-secret"))
///     .refresh_token(SecretString::from("first-refresh-token"))
///     .token_store_file("/var/lib/bds/refresh-token")
///     .build()?;
/// # drop(client);
/// # Ok(()) }
/// ```
#[must_use]
pub struct ClientBuilder {
    base_url: Option<String>,
    auth_url: String,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    refresh_token: Option<SecretString>,
    token_store: Option<Arc<dyn TokenStore>>,
    token_provider: Option<Arc<dyn TokenProvider>>,
    scope: Option<String>,
    lp_version: String,
    page_size: Option<u32>,
    retry_policy: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
    clock: Arc<dyn Clock>,
    random: Option<Arc<dyn RandomSource>>,
    archive_limits: ArchiveLimits,
    verify_download_size: bool,
    slow_down_below: u64,
    allow_insecure_http: bool,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            base_url: None,
            auth_url: DEFAULT_AUTH_URL.to_string(),
            client_id: None,
            client_secret: None,
            refresh_token: None,
            token_store: None,
            token_provider: None,
            scope: Some(DEFAULT_SCOPE.to_string()),
            lp_version: DEFAULT_LP_VERSION.to_string(),
            page_size: None,
            // D2L's download quota asks for waits of minutes; honour them.
            retry_policy: RetryPolicy::default()
                .with_max_retry_after(Duration::from_secs(600))
                .with_deadline(Duration::from_secs(1800)),
            sleeper: Arc::new(TokioSleeper),
            clock: Arc::new(SystemClock),
            random: None,
            archive_limits: ArchiveLimits::default(),
            verify_download_size: true,
            slow_down_below: 50,
            allow_insecure_http: false,
        }
    }
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("auth_url", &self.auth_url)
            .field("client_id", &self.client_id)
            .field("token_store", &self.token_store)
            .field("lp_version", &self.lp_version)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Reads the conventional environment variables: `D2L_BASE_URL`,
    /// `D2L_CLIENT_ID`, `D2L_CLIENT_SECRET` (required), `D2L_AUTH_URL`,
    /// `D2L_REFRESH_TOKEN` (the first refresh token; later ones live in the
    /// store) and `D2L_TOKEN_STORE` (the store file).
    pub fn from_env() -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let required = ["D2L_BASE_URL", "D2L_CLIENT_ID", "D2L_CLIENT_SECRET"];
        let missing: Vec<&str> = required.into_iter().filter(|n| var(n).is_none()).collect();
        if !missing.is_empty() {
            return Err(BdsError::Config(format!(
                "missing environment variables: {} (also read: D2L_AUTH_URL, D2L_REFRESH_TOKEN, D2L_TOKEN_STORE)",
                missing.join(", ")
            )));
        }
        let mut builder = ClientBuilder::default()
            .base_url(var("D2L_BASE_URL").unwrap_or_default())
            .credentials(
                var("D2L_CLIENT_ID").unwrap_or_default(),
                var("D2L_CLIENT_SECRET").unwrap_or_default().into(),
            );
        if let Some(auth) = var("D2L_AUTH_URL") {
            builder = builder.auth_url(auth);
        }
        if let Some(token) = var("D2L_REFRESH_TOKEN") {
            builder = builder.refresh_token(token.into());
        }
        if let Some(path) = var("D2L_TOKEN_STORE") {
            builder = builder.token_store_file(path);
        }
        Ok(builder)
    }

    /// The tenant, e.g. `https://school.brightspace.com`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The identity provider (default [`DEFAULT_AUTH_URL`]); the token
    /// endpoint is `{auth_url}/core/connect/token`.
    pub fn auth_url(mut self, url: impl Into<String>) -> Self {
        self.auth_url = url.into();
        self
    }

    /// The OAuth app's client id and secret (sent with HTTP Basic).
    pub fn credentials(
        mut self,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        self.client_id = Some(client_id.into());
        self.client_secret = Some(client_secret);
        self
    }

    /// The refresh token to start from while the store is empty.
    pub fn refresh_token(mut self, token: SecretString) -> Self {
        self.refresh_token = Some(token);
        self
    }

    /// Where rotated refresh tokens are kept (default: the file
    /// [`DEFAULT_TOKEN_STORE`]). Plug in a secrets manager by implementing
    /// [`TokenStore`].
    pub fn token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.token_store = Some(store);
        self
    }

    /// Keeps rotated refresh tokens in this file (written atomically, 0600).
    pub fn token_store_file(self, path: impl Into<PathBuf>) -> Self {
        self.token_store(Arc::new(FileTokenStore::new(path)))
    }

    /// Uses this provider for access tokens instead of the refresh-token
    /// grant (e.g. a service user's client-credentials grant).
    pub fn token_provider(mut self, provider: Arc<dyn TokenProvider>) -> Self {
        self.token_provider = Some(provider);
        self
    }

    /// The scopes to request (default [`DEFAULT_SCOPE`]); `None` sends none.
    pub fn scope(mut self, scope: Option<String>) -> Self {
        self.scope = scope;
        self
    }

    /// The LP API version in route paths (default [`DEFAULT_LP_VERSION`]).
    pub fn lp_version(mut self, version: impl Into<String>) -> Self {
        self.lp_version = version.into();
        self
    }

    /// `pageSize` sent to `/dataExport/bds` (default: the server's).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size.max(1));
        self
    }

    /// The retry policy of API calls and downloads (default: core's, with
    /// `Retry-After` honoured up to 10 minutes within 30 minutes).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = policy;
        self
    }

    /// How to wait (retries, rate-limit pauses); tests pass a recording sleeper.
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The clock for deadlines and token expiry.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The randomness of backoff jitter.
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = Some(random);
        self
    }

    /// Caps applied when reading downloaded archives.
    pub fn archive_limits(mut self, limits: ArchiveLimits) -> Self {
        self.archive_limits = limits;
        self
    }

    /// Whether a download must have the listed `DownloadSize` (default true).
    pub fn verify_download_size(mut self, verify: bool) -> Self {
        self.verify_download_size = verify;
        self
    }

    /// Below this many credits left, wait for the bucket to refill before the
    /// next call (default 50, five calls at D2L's usual cost of 10).
    pub fn slow_down_below(mut self, credits: u64) -> Self {
        self.slow_down_below = credits;
        self
    }

    /// Allows plain `http://` to hosts that are not loopback, for the API,
    /// the token endpoint and the storage a download is redirected to
    /// (default `false`: such URLs are refused, because tokens, refresh
    /// tokens and data would travel unencrypted). Loopback hosts are always
    /// allowed. Only for test rigs or proxies on a trusted network.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Builds the client. Fails on a missing base URL or credentials.
    pub fn build(self) -> Result<Client> {
        let base_url = self
            .base_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                BdsError::Config("no base URL: set D2L_BASE_URL or ClientBuilder::base_url".into())
            })?;
        let provider = match self.token_provider.clone() {
            Some(provider) => provider,
            None => self.refresh_token_provider()?,
        };
        let http = self
            .http_builder()
            .base_url(base_url.trim_end_matches('/'))
            .bearer(provider)
            .classifier(Arc::new(ForbiddenWithRetryAfter))
            .build()?;
        let rate = RateLimiter::new(
            self.slow_down_below,
            self.clock.clone(),
            self.sleeper.clone(),
        );
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                lp_version: self.lp_version,
                page_size: self.page_size,
                archive_limits: self.archive_limits,
                verify_download_size: self.verify_download_size,
                rate,
                sleeper: self.sleeper,
                random: self
                    .random
                    .unwrap_or_else(|| Arc::new(client_core::retry::SystemRandom)),
            }),
        })
    }

    fn http_builder(&self) -> client_core::http::HttpClientBuilder {
        let mut builder = HttpClient::builder()
            .user_agent(concat!("bds-client/", env!("CARGO_PKG_VERSION")))
            .retry_policy(self.retry_policy.clone())
            .sleeper(self.sleeper.clone())
            .clock(self.clock.clone())
            .allow_insecure_http(self.allow_insecure_http);
        if let Some(random) = &self.random {
            builder = builder.random(random.clone());
        }
        builder
    }

    fn refresh_token_provider(&self) -> Result<Arc<dyn TokenProvider>> {
        let (Some(id), Some(secret)) = (&self.client_id, &self.client_secret) else {
            return Err(BdsError::Config(
                "no credentials: set D2L_CLIENT_ID and D2L_CLIENT_SECRET, or ClientBuilder::credentials".into(),
            ));
        };
        let token_url = format!("{}/core/connect/token", self.auth_url.trim_end_matches('/'));
        let store = self
            .token_store
            .clone()
            .unwrap_or_else(|| Arc::new(FileTokenStore::new(DEFAULT_TOKEN_STORE)));
        let token_http = self
            .http_builder()
            .retry_policy(RetryPolicy::token_endpoint())
            .build()?;
        let mut grant = RefreshTokenGrant::new(
            token_http,
            token_url,
            BasicCredentials::new(id, secret.clone()),
            store,
        )?;
        if let Some(scope) = &self.scope {
            grant = grant.with_scope(scope.clone());
        }
        if let Some(token) = &self.refresh_token {
            grant = grant.with_initial_refresh_token(token.clone());
        }
        Ok(Arc::new(
            TokenCache::new(grant).with_clock(self.clock.clone()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use client_core::auth::MemoryTokenStore;

    use super::*;

    fn builder(base: &str, auth: &str) -> ClientBuilder {
        ClientBuilder::default()
            .base_url(base)
            .auth_url(auth)
            .credentials("id", SecretString::from("secret"))
            .token_store(Arc::new(MemoryTokenStore::with_token(SecretString::from(
                "refresh",
            ))))
    }

    fn refusal(result: Result<Client>) -> Option<String> {
        let message = match result {
            Ok(_) => return None,
            Err(BdsError::Core(client_core::Error::Config(m)) | BdsError::Config(m)) => m,
            Err(other) => panic!("unexpected error {other:?}"),
        };
        assert!(
            message.contains("refusing plain http://") && message.contains("allow_insecure_http"),
            "the refusal names the opt-in: {message}"
        );
        Some(message)
    }

    #[test]
    fn remote_plain_http_needs_the_builder_opt_in_for_api_and_token_endpoint() {
        let (remote, secure) = ("http://lms.example.invalid", "https://lms.example.invalid");
        assert!(
            refusal(builder(remote, secure).build()).is_some(),
            "API URL"
        );
        assert!(
            refusal(builder(secure, remote).build()).is_some(),
            "token URL"
        );
        for (base, auth) in [(remote, secure), (secure, remote), (remote, remote)] {
            builder(base, auth)
                .allow_insecure_http(true)
                .build()
                .unwrap_or_else(|e| panic!("{base} / {auth} with the opt-in: {e}"));
        }
        assert!(refusal(builder("http://127.0.0.1:9", "http://[::1]:9").build()).is_none());
    }
}
