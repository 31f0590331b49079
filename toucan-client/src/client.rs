//! The Toucan client: configuration, auth modes, operations and waiting.

use std::sync::Arc;

use client_core::SecretString;
use client_core::auth::{BasicCredentials, JsonLoginGrant, TokenCache};
use client_core::http::{Auth, HttpClient, Request};
use client_core::retry::RetryPolicy;
use client_core::time::{Clock, Sleeper};
use client_core::waiter::{Acceptance, PollPolicy, Waiter};
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};
use crate::operation::{OperationId, OperationStatus, Stage};
use crate::request::{DomainSelection, OperationsRequest, PartialOperation};

/// The environment variables [`Client::from_env`] reads.
pub const ENV_VARS: [&str; 4] = [
    "TOUCAN_API_URL",
    "TOUCAN_SMALL_APP",
    "TOUCAN_USERNAME",
    "TOUCAN_PASSWORD",
];

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMode {
    /// HTTP Basic with the user name and password on every request (what
    /// the Toucan docs' `curl --user` does).
    #[default]
    Basic,
    /// `POST /login` once, then `Authorization: Bearer <token>`; a rejected
    /// token triggers one new login.
    Login,
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "basic" => Ok(AuthMode::Basic),
            "login" | "token" => Ok(AuthMode::Login),
            other => Err(format!(
                "unknown auth mode {other:?}: expected basic or login"
            )),
        }
    }
}

/// A client of one small app's operations API. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> toucan_client::Result<()> {
/// use toucan_client::{Client, Stage};
///
/// let client = Client::from_env()?;
/// let id = client.populate_and_release(Stage::Staging).await?;
/// client.wait_with(&id, |s| println!("{}", s.status)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) http: HttpClient,
    pub(crate) small_app: String,
    waiter: Waiter,
}

/// Builds a [`Client`]. API URL, small app, user name and password are
/// required.
#[derive(Default)]
pub struct ClientBuilder {
    api_url: Option<String>,
    small_app: Option<String>,
    username: Option<String>,
    password: Option<SecretString>,
    auth_mode: AuthMode,
    allow_insecure_http: bool,
    poll_policy: Option<PollPolicy>,
    retry_policy: Option<RetryPolicy>,
    sleeper: Option<Arc<dyn Sleeper>>,
    clock: Option<Arc<dyn Clock>>,
    seed: Option<u64>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("api_url", &self.api_url)
            .field("small_app", &self.small_app)
            .field("username", &self.username)
            .field("auth_mode", &self.auth_mode)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The API root, e.g. `https://api-acme.toucantoco.com`.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = Some(url.into());
        self
    }

    /// The small app (the first path segment of every route).
    pub fn small_app(mut self, app: impl Into<String>) -> Self {
        self.small_app = Some(app.into());
        self
    }

    /// The user (with the contributor right on the small app).
    pub fn credentials(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.username = Some(username.into());
        self.password = Some(password);
        self
    }

    /// Basic (default) or login token.
    pub fn auth_mode(mut self, mode: AuthMode) -> Self {
        self.auth_mode = mode;
        self
    }

    /// How [`Client::wait`] polls (default: 500 ms growing to 10 s, at most 2 h).
    pub fn poll_policy(mut self, policy: PollPolicy) -> Self {
        self.poll_policy = Some(policy);
        self
    }

    /// The HTTP retry policy (default: the core's).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = Some(policy);
        self
    }

    /// Sleeps with `sleeper` between retries and polls (tests).
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = Some(sleeper);
        self
    }

    /// Reads time from `clock` (tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Seeds the poll jitter (tests).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Allows plain `http://` to a host that is not loopback, for the API
    /// and its login route (default `false`: such URLs are refused at
    /// [`build`](Self::build), because the password or token and the data
    /// would travel unencrypted). Loopback hosts are always allowed. Only
    /// for test rigs or proxies on a trusted network.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Builds the client. With [`AuthMode::Login`] the login happens on the
    /// first call.
    ///
    /// # Errors
    /// A configuration error naming what is missing or invalid.
    pub fn build(self) -> Result<Client> {
        let (Some(api), Some(app), Some(user), Some(password)) =
            (self.api_url, self.small_app, self.username, self.password)
        else {
            return Err(config(
                "the Toucan client needs an API URL, a small app, a user name and a password",
            ));
        };
        check_small_app(&app)?;
        let mut http = HttpClient::builder()
            .base_url(api)
            .user_agent(user_agent())
            .allow_insecure_http(self.allow_insecure_http);
        if let Some(p) = self.retry_policy {
            http = http.retry_policy(p);
        }
        if let Some(s) = &self.sleeper {
            http = http.sleeper(s.clone());
        }
        if let Some(c) = &self.clock {
            http = http.clock(c.clone());
        }
        let http = http.build()?;
        let auth = match self.auth_mode {
            AuthMode::Basic => Auth::Basic(BasicCredentials::new(user, password)),
            AuthMode::Login => {
                let grant = JsonLoginGrant::new(http.clone(), "/login", user, password)?;
                let mut cache = TokenCache::new(grant);
                if let Some(c) = &self.clock {
                    cache = cache.with_clock(c.clone());
                }
                Auth::bearer(cache)
            }
        };
        let mut waiter = Waiter::new(self.poll_policy.unwrap_or_else(default_poll_policy));
        if let Some(s) = self.sleeper {
            waiter = waiter.with_sleeper(s);
        }
        if let Some(c) = self.clock {
            waiter = waiter.with_clock(c);
        }
        if let Some(seed) = self.seed {
            waiter = waiter.with_rng_seed(seed);
        }
        Ok(Client {
            http: http.with_auth(auth),
            small_app: app,
            waiter,
        })
    }
}

fn check_small_app(app: &str) -> Result<()> {
    let bad = app.is_empty()
        || app
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '%'));
    if bad {
        return Err(config(&format!(
            "small app {app:?} is not a plain path segment; give its name, e.g. \"my-app\""
        )));
    }
    Ok(())
}

fn default_poll_policy() -> PollPolicy {
    use std::time::Duration;
    PollPolicy::default()
        .min_interval(Duration::from_millis(500))
        .max_interval(Duration::from_secs(10))
        .max_wait(Duration::from_secs(2 * 3600))
}

fn user_agent() -> String {
    concat!("toucan-client/", env!("CARGO_PKG_VERSION")).to_string()
}

pub(crate) fn config(message: &str) -> Error {
    Error::Core(client_core::Error::Config(message.to_string()))
}

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from `TOUCAN_API_URL`, `TOUCAN_SMALL_APP`,
    /// `TOUCAN_USERNAME` and `TOUCAN_PASSWORD` with Basic auth.
    ///
    /// # Errors
    /// A configuration error naming every missing variable.
    pub fn from_env() -> Result<Client> {
        Self::builder_from_env()?.build()
    }

    /// A builder filled from the `TOUCAN_*` variables, to adjust before
    /// building (e.g. [`ClientBuilder::auth_mode`]).
    pub fn builder_from_env() -> Result<ClientBuilder> {
        Self::builder_from_lookup(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    }

    /// A builder filled from variables read through `lookup` (see
    /// [`Client::from_env`]), to adjust before building.
    pub fn builder_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<ClientBuilder> {
        let values: Vec<Option<String>> = ENV_VARS.iter().map(|n| lookup(n)).collect();
        let missing: Vec<&str> = ENV_VARS
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            return Err(config(&format!(
                "missing environment variables: {}",
                missing.join(", ")
            )));
        }
        let mut v = values.into_iter().flatten();
        let mut next = || v.next().unwrap_or_default();
        let (api, app, user, password) = (next(), next(), next(), next());
        Ok(Client::builder()
            .api_url(api)
            .small_app(app)
            .credentials(user, SecretString::from(password)))
    }

    /// The small app this client targets.
    pub fn small_app(&self) -> &str {
        &self.small_app
    }

    pub(crate) fn route(&self, path: &str) -> String {
        format!("/{}/{}", self.small_app, path)
    }

    /// Starts `request`'s operations on `stage` (`POST /{app}/operations`).
    ///
    /// # Errors
    /// [`Error::UnknownOperation`] if the server rejects an operation name;
    /// [`Error::NoOperationId`] if it answers without an id.
    pub async fn start_operations(
        &self,
        stage: Stage,
        request: &OperationsRequest,
    ) -> Result<OperationId> {
        if request.operations.is_empty() {
            return Err(config("no operations to start"));
        }
        let req = with_stage(Request::post(self.route("operations")), stage).json(request);
        tracing::info!(app = %self.small_app, %stage, operations = request.operations.len(), "starting Toucan operations");
        let (id, body) = self.start(req, true).await?;
        id.ok_or(Error::NoOperationId { body })
    }

    /// The documented full chain on `stage`: preprocess, populate basemaps,
    /// reports and dashboards, release.
    pub async fn populate_and_release(&self, stage: Stage) -> Result<OperationId> {
        self.start_operations(stage, &OperationsRequest::populate_and_release())
            .await
    }

    /// A partial preprocess, populate, or populate-and-release of the
    /// domains `selection` picks (union semantics, see [`DomainSelection`]).
    ///
    /// Returns the operation id when the server gives one (these routes'
    /// answers are not documented).
    pub async fn partial(
        &self,
        stage: Stage,
        operation: PartialOperation,
        selection: &DomainSelection,
    ) -> Result<Option<OperationId>> {
        let mut target = self.route(operation.path());
        if operation.releases() {
            // The docs spell the flag as a bare `release` key.
            target.push_str("?release");
        }
        let req = with_stage(Request::post(target), stage).json(selection);
        tracing::info!(app = %self.small_app, %stage, %operation, "starting a partial Toucan operation");
        Ok(self.start(req, true).await?.0)
    }

    /// The current state of an operation (`GET /{app}/operations/state/{id}`).
    pub async fn operation_status(&self, id: &OperationId) -> Result<OperationStatus> {
        let req =
            Request::get(self.route(&format!("operations/state/{}", encode_segment(id.as_str()))));
        // A state answer cut off mid-body is asked for again (a GET).
        Ok(self.http.send_json(req).await?)
    }

    /// Polls the operation until it ends, yielding every observed state
    /// (one item per poll). Ends with an error if a poll fails or the wait
    /// times out; a `failed` state is yielded as `Ok` (see [`Client::wait`]).
    pub fn watch(
        &self,
        id: &OperationId,
    ) -> impl Stream<Item = Result<OperationStatus>> + Send + 'static {
        let client = self.clone();
        let id = id.clone();
        let poll = move || {
            let client = client.clone();
            let id = id.clone();
            async move { client.operation_status(&id).await }
        };
        let accept = |s: &OperationStatus| {
            if s.status.is_terminal() {
                Acceptance::Success
            } else {
                Acceptance::Pending(None)
            }
        };
        self.waiter.stream(poll, accept)
    }

    /// Waits until the operation ends.
    ///
    /// # Errors
    /// [`Error::OperationFailed`] if it ends `failed`; a core timeout or
    /// poll failure otherwise.
    pub async fn wait(&self, id: &OperationId) -> Result<OperationStatus> {
        self.wait_with(id, |_| {}).await
    }

    /// Like [`Client::wait`], calling `progress` with every observed state.
    pub async fn wait_with(
        &self,
        id: &OperationId,
        mut progress: impl FnMut(&OperationStatus),
    ) -> Result<OperationStatus> {
        let mut stream = std::pin::pin!(self.watch(id));
        let mut last = None;
        while let Some(item) = stream.next().await {
            let status = item?;
            progress(&status);
            last = Some(status);
        }
        match last {
            Some(s) if s.status.is_success() => Ok(s),
            Some(s) => Err(Error::OperationFailed {
                id: id.clone(),
                message: s.message,
            }),
            None => Err(config("the wait ended without any state")),
        }
    }

    /// Sends a request that starts work and reads the operation id, if any.
    async fn start(
        &self,
        req: Request,
        on_operations: bool,
    ) -> Result<(Option<OperationId>, String)> {
        let response = self.http.execute(req).await?;
        let status = response.status();
        let (method, url, retry_after) = (
            response.method().to_string(),
            response.url().to_string(),
            response.retry_after(),
        );
        let body = response.text().await?;
        if !(200..300).contains(&status) {
            return Err(Error::from_response(
                &method,
                &url,
                status,
                &body,
                retry_after,
                on_operations,
            ));
        }
        let id = OperationId::from_start_response(body.as_bytes());
        Ok((id, client_core::error::snippet(body.as_bytes(), 200)))
    }
}

pub(crate) fn with_stage(req: Request, stage: Stage) -> Request {
    match stage.query_value() {
        Some(v) => req.query("stage", v),
        None => req,
    }
}

/// Percent-encodes an id for use as one path segment.
pub(crate) fn encode_segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(api: &str) -> ClientBuilder {
        Client::builder()
            .api_url(api)
            .small_app("demo")
            .credentials("user", SecretString::from("password"))
    }

    #[test]
    fn remote_plain_http_needs_the_builder_opt_in() {
        for mode in [AuthMode::Basic, AuthMode::Login] {
            let Err(Error::Core(client_core::Error::Config(message))) =
                builder("http://toucan.example.invalid")
                    .auth_mode(mode)
                    .build()
            else {
                panic!("{mode:?}: plain http to a remote host must be refused");
            };
            assert!(
                message.contains("refusing plain http://")
                    && message.contains("allow_insecure_http"),
                "the refusal names the opt-in: {message}"
            );
            builder("http://toucan.example.invalid")
                .auth_mode(mode)
                .allow_insecure_http(true)
                .build()
                .expect("the opt-in allows it");
        }
        builder("http://127.0.0.1:9")
            .build()
            .expect("loopback needs no opt-in");
    }
}
