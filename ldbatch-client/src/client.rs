//! The LD batch client: configuration, the calls, waiting.

use std::sync::Arc;

use client_core::SecretString;
use client_core::auth::{PasswordGrant, TokenCache};
use client_core::http::{Auth, HttpClient, Multipart, Part, Request};
use client_core::retry::RetryPolicy;
use client_core::time::{Clock, Sleeper};
use client_core::waiter::{Acceptance, PollPolicy, Waiter};
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};
use crate::job::Job;
use crate::request::{ExportRequest, FileSource, ImportRequest};
use crate::status::StatusMonitor;

const TOKEN_PATH: &str = "/ls/api/oauth2/token";
const IMPORT_PATH: &str = "/ls/api/batch/import";
const EXPORT_PATH: &str = "/ls/api/batch/export";
const STATUS_PATH: &str = "/ls/api/batch/status";
const CANCEL_PATH: &str = "/ls/api/batch/cancel";

/// The environment variables [`Client::from_env`] reads.
pub const ENV_VARS: [&str; 6] = [
    "LD_BASE_URL",
    "LD_CLIENT_ID",
    "LD_CLIENT_SECRET",
    "LD_USERNAME",
    "LD_PASSWORD",
    "LD_COMMUNITY",
];

/// A client of the LD batch import/export API. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> ldbatch_client::Result<()> {
/// use ldbatch_client::{Client, ContentType, ImportRequest};
///
/// let client = Client::from_env()?;
/// let job = client
///     .import(&ImportRequest::new("Account", ContentType::Json, std::path::Path::new("accounts.json")))
///     .await?;
/// let done = client.wait(&job.job_id).await?; // Err(Error::Rejected{..}) etc. otherwise
/// println!("{} records", done.records_processed.unwrap_or(0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    http: HttpClient,
    waiter: Waiter,
    strict: bool,
}

/// Builds a [`Client`]. Base URL and all five credentials are required.
#[derive(Default)]
pub struct ClientBuilder {
    base_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    username: Option<String>,
    password: Option<SecretString>,
    community: Option<String>,
    poll_policy: Option<PollPolicy>,
    retry_policy: Option<RetryPolicy>,
    strict_transitions: bool,
    allow_insecure_http: bool,
    sleeper: Option<Arc<dyn Sleeper>>,
    clock: Option<Arc<dyn Clock>>,
    seed: Option<u64>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("community", &self.community)
            .field("strict_transitions", &self.strict_transitions)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The service root, e.g. `https://ldcloud.liquidanalytics.com`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The OAuth client id and secret.
    pub fn client(mut self, id: impl Into<String>, secret: SecretString) -> Self {
        self.client_id = Some(id.into());
        self.client_secret = Some(secret);
        self
    }

    /// The LD user name and password.
    pub fn user(mut self, username: impl Into<String>, password: SecretString) -> Self {
        self.username = Some(username.into());
        self.password = Some(password);
        self
    }

    /// The community, sent as the token scope `community=<name>` (it never
    /// appears in URLs).
    pub fn community(mut self, community: impl Into<String>) -> Self {
        self.community = Some(community.into());
        self
    }

    /// How [`Client::wait`] polls (default: 1 s growing to 30 s, at most 6 h).
    pub fn poll_policy(mut self, policy: PollPolicy) -> Self {
        self.poll_policy = Some(policy);
        self
    }

    /// The HTTP retry policy (default: the core's).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = Some(policy);
        self
    }

    /// Makes an observed illegal status change an error
    /// ([`Error::IllegalTransition`]) instead of a warning.
    pub fn strict_transitions(mut self, strict: bool) -> Self {
        self.strict_transitions = strict;
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

    /// Seeds the poll jitter, making delays reproducible (tests).
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Allows plain `http://` to a host that is not loopback, for the API
    /// and its token endpoint (default `false`: such URLs are refused at
    /// [`build`](Self::build), because the password and the data would
    /// travel unencrypted). Loopback hosts are always allowed. Only for
    /// test rigs or proxies on a trusted network.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Builds the client. No request is made until the first call.
    ///
    /// # Errors
    /// [`Error::Core`] with [`client_core::Error::Config`] naming what is
    /// missing or invalid.
    pub fn build(self) -> Result<Client> {
        let missing: Vec<&str> = [
            ("base URL", self.base_url.is_none()),
            ("client id/secret", self.client_id.is_none()),
            ("user name/password", self.username.is_none()),
            ("community", self.community.is_none()),
        ]
        .into_iter()
        .filter_map(|(what, absent)| absent.then_some(what))
        .collect();
        let (Some(base), Some(id), Some(secret), Some(user), Some(password), Some(community)) = (
            self.base_url,
            self.client_id,
            self.client_secret,
            self.username,
            self.password,
            self.community,
        ) else {
            return Err(config(format!(
                "the LD client needs: {}",
                missing.join(", ")
            )));
        };
        let mut http = HttpClient::builder()
            .base_url(base)
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
        let grant = PasswordGrant::new(http.clone(), TOKEN_PATH, id, secret, user, password)?
            .with_scope(format!("community={community}"));
        let mut cache = TokenCache::new(grant);
        if let Some(c) = &self.clock {
            cache = cache.with_clock(c.clone());
        }
        let http = http.with_auth(Auth::bearer(cache));
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
            http,
            waiter,
            strict: self.strict_transitions,
        })
    }
}

fn default_poll_policy() -> PollPolicy {
    PollPolicy::default()
        .min_interval(std::time::Duration::from_secs(1))
        .max_interval(std::time::Duration::from_secs(30))
        .max_wait(std::time::Duration::from_secs(6 * 3600))
}

fn user_agent() -> String {
    concat!("ldbatch-client/", env!("CARGO_PKG_VERSION")).to_string()
}

fn config(message: String) -> Error {
    Error::Core(client_core::Error::Config(message))
}

impl Client {
    /// A builder.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from `LD_BASE_URL`, `LD_CLIENT_ID`,
    /// `LD_CLIENT_SECRET`, `LD_USERNAME`, `LD_PASSWORD` and `LD_COMMUNITY`.
    ///
    /// # Errors
    /// A configuration error naming every missing variable.
    pub fn from_env() -> Result<Client> {
        Self::builder_from_env()?.build()
    }

    /// A builder filled from the `LD_*` variables, to adjust before
    /// building (e.g. [`ClientBuilder::strict_transitions`]).
    pub fn builder_from_env() -> Result<ClientBuilder> {
        Self::builder_from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Like [`Client::builder_from_env`], reading variables through `lookup`.
    pub fn builder_from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<ClientBuilder> {
        let values: Vec<Option<String>> = ENV_VARS.iter().map(|n| lookup(n)).collect();
        let missing: Vec<&str> = ENV_VARS
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            return Err(config(format!(
                "missing environment variables: {}",
                missing.join(", ")
            )));
        }
        let mut v = values.into_iter().flatten();
        let mut next = || v.next().unwrap_or_default();
        let (base, id, secret, user, password, community) =
            (next(), next(), next(), next(), next(), next());
        Ok(Client::builder()
            .base_url(base)
            .client(id, SecretString::from(secret))
            .user(user, SecretString::from(password))
            .community(community))
    }

    /// Starts an import: a multipart upload streamed from the file (or
    /// bytes), with the template as a second file part.
    ///
    /// The file is re-opened and streamed again on a retry; it is never read
    /// whole into memory. A job the service rejects comes back as a [`Job`]
    /// whose status is `Rejected` (see [`Client::wait`]).
    pub async fn import(&self, request: &ImportRequest) -> Result<Job> {
        if request.item_type.trim().is_empty() {
            return Err(Error::InvalidRequest("an import needs an itemType".into()));
        }
        if let FileSource::Path(p) = &request.file {
            // Fail early with the path in the message, before any token call.
            tokio::fs::metadata(p).await.map_err(|e| {
                client_core::Error::io(format!("cannot read the import file {}", p.display()), e)
            })?;
        }
        let mut form = Multipart::new().part(
            "file",
            file_part(&request.file)
                .content_type(request.content_type.import_value())
                .header("Expires", "0"),
        );
        if let Some(t) = &request.template {
            form = form.part(
                "template",
                file_part(t)
                    .content_type("application/json")
                    .header("Expires", "0"),
            );
        }
        for (name, value) in request.text_fields() {
            form = form.text(name, value);
        }
        tracing::info!(item_type = %request.item_type, file = %request.file.file_name(), "starting LD import");
        self.job_call(Request::post(IMPORT_PATH).multipart(form), None)
            .await
    }

    /// Starts an export. A SQL query wins over filters (see
    /// [`ExportRequest`]).
    pub async fn export(&self, request: &ExportRequest) -> Result<Job> {
        if request.item_type.trim().is_empty() {
            return Err(Error::InvalidRequest("an export needs an itemType".into()));
        }
        tracing::info!(item_type = %request.item_type, "starting LD export");
        self.job_call(Request::post(EXPORT_PATH).form(request.form_fields()), None)
            .await
    }

    /// The job's current status (`POST /ls/api/batch/status`).
    pub async fn status(&self, job_id: &str) -> Result<Job> {
        let req = Request::post(STATUS_PATH)
            .form([("jobId", job_id)])
            .idempotent(true);
        self.job_call(req, Some(job_id)).await
    }

    /// Asks the service to cancel the job (`POST /ls/api/batch/cancel`).
    /// The job usually moves to `Canceling`, then `Canceled`.
    pub async fn cancel(&self, job_id: &str) -> Result<Job> {
        // Cancelling twice has the same effect as once.
        let req = Request::post(CANCEL_PATH)
            .form([("jobId", job_id)])
            .idempotent(true);
        self.job_call(req, Some(job_id)).await
    }

    /// Polls the job until it reaches a terminal status, yielding every
    /// observed status (one item per poll) for progress display.
    ///
    /// The stream ends after the terminal status; it ends with an error if a
    /// poll fails, if the wait times out ([`client_core::Error::Timeout`]),
    /// or, in strict mode, on an illegal transition. Unsuccessful terminal
    /// statuses are yielded as `Ok`; [`Client::wait`] turns them into errors.
    pub fn watch(&self, job_id: &str) -> impl Stream<Item = Result<Job>> + Send + 'static {
        let client = self.clone();
        let job_id = job_id.to_string();
        let monitor = Arc::new(std::sync::Mutex::new(StatusMonitor::new(
            job_id.clone(),
            self.strict,
        )));
        let poll = move || {
            let client = client.clone();
            let job_id = job_id.clone();
            let monitor = monitor.clone();
            async move {
                let job = client.status(&job_id).await?;
                monitor
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .observe(&job.status)?;
                tracing::debug!(job_id = %job.job_id, status = %job.status, "LD job status");
                Ok::<Job, Error>(job)
            }
        };
        let accept = |job: &Job| {
            if job.status.is_terminal() {
                Acceptance::Success
            } else {
                Acceptance::Pending(None)
            }
        };
        self.waiter.stream(poll, accept)
    }

    /// Waits until the job ends and returns its final state if it
    /// `Completed`.
    ///
    /// # Errors
    /// [`Error::Rejected`], [`Error::Failed`] or [`Error::Canceled`] with
    /// the server's reason; a timeout or poll failure from the core;
    /// [`Error::IllegalTransition`] in strict mode.
    pub async fn wait(&self, job_id: &str) -> Result<Job> {
        self.wait_with(job_id, |_| {}).await
    }

    /// Like [`Client::wait`], calling `progress` with every observed state.
    pub async fn wait_with(&self, job_id: &str, mut progress: impl FnMut(&Job)) -> Result<Job> {
        let mut stream = std::pin::pin!(self.watch(job_id));
        let mut last = None;
        while let Some(item) = stream.next().await {
            let job = item?;
            progress(&job);
            last = Some(job);
        }
        let job =
            last.ok_or_else(|| Error::InvalidRequest("the wait ended without any status".into()))?;
        match Error::from_final_job(&job) {
            Some(e) => Err(e),
            None => Ok(job),
        }
    }

    /// The underlying HTTP client (for downloads and custom calls).
    pub(crate) fn http(&self) -> &HttpClient {
        &self.http
    }

    /// Sends a call answered by a job status body.
    /// Sends a job call and decodes the job. A status or cancel answer cut
    /// off mid-body is asked for again (those calls are idempotent); a
    /// start's is not, since the job may exist already.
    async fn job_call(&self, request: Request, job_id: Option<&str>) -> Result<Job> {
        self.http
            .send_json::<Job>(request)
            .await
            .map_err(|e| map_error(e, job_id))
    }
}

fn file_part(source: &FileSource) -> Part {
    match source {
        FileSource::Path(p) => Part::file(p.clone()),
        FileSource::Bytes { file_name, bytes } => {
            Part::bytes(bytes.clone()).file_name(file_name.clone())
        }
    }
}

/// Turns core errors into the LD taxonomy: token endpoint refusals become
/// [`Error::OAuth`], an unknown job id [`Error::JobNotFound`], a cancel of a
/// finished job [`Error::NotCancelable`].
pub(crate) fn map_error(e: client_core::Error, job_id: Option<&str>) -> Error {
    if let client_core::Error::Auth { message, status } = &e
        && let Some(oauth) = crate::error::parse_token_refusal(message, *status)
    {
        return oauth;
    }
    match (e.api().map(|a| (a.status, a.message.clone())), job_id) {
        (Some((404, message)), Some(id)) => Error::JobNotFound {
            job_id: id.to_string(),
            message,
        },
        (Some((409, message)), Some(id)) => Error::NotCancelable {
            job_id: id.to_string(),
            message,
        },
        _ => Error::Core(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder(base: &str) -> ClientBuilder {
        Client::builder()
            .base_url(base)
            .client("id", SecretString::from("secret"))
            .user("user", SecretString::from("password"))
            .community("community")
    }

    #[test]
    fn remote_plain_http_needs_the_builder_opt_in() {
        let Err(Error::Core(client_core::Error::Config(message))) =
            builder("http://ld.example.invalid").build()
        else {
            panic!("plain http to a remote host must be refused");
        };
        assert!(
            message.contains("refusing plain http://") && message.contains("allow_insecure_http"),
            "the refusal names the opt-in: {message}"
        );
        builder("http://ld.example.invalid")
            .allow_insecure_http(true)
            .build()
            .expect("the opt-in allows it");
        builder("http://localhost:9")
            .build()
            .expect("loopback needs no opt-in");
    }
}
