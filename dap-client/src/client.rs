//! The DAP client: configuration, authentication and the plain API calls
//! (specs/dap.md §1-§3). Job waiting is in `jobs`, downloads in `download`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use client_core::auth::{BasicCredentials, ClientCredentialsGrant, TokenCache};
use client_core::http::{Auth, HttpClient, Request};
use client_core::retry::{RandomSource, RetryPolicy};
use client_core::time::{Clock, Sleeper, SystemClock, TokioSleeper};
use client_core::waiter::{PollPolicy, Waiter};
use client_core::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::model::{
    IncrementalQuery, Job, Object, Query, Resource, ResourceResult, SnapshotQuery, TableList,
    VersionedSchema,
};

/// The base URL used when none is configured.
pub const DEFAULT_BASE_URL: &str = "https://api-gateway.instructure.com";
/// Downloads run in parallel by default.
pub const DEFAULT_DOWNLOAD_CONCURRENCY: usize = 4;
/// Objects per `POST /dap/object/url` request by default.
pub const DEFAULT_URL_BATCH_SIZE: usize = 100;
/// The default cap on what one object may decompress to: 64 GiB. Far above
/// any real DAP object (they are split into parts of a few hundred MiB), yet
/// a gzip bomb stops here instead of filling the disk. Change it with
/// [`ClientBuilder::max_decompressed_bytes`].
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// A client of the DAP Query API. Cheap to clone.
///
/// ```no_run
/// # async fn demo() -> dap_client::Result<()> {
/// use dap_client::{Client, Format, SnapshotQuery};
///
/// let client = Client::from_env()?; // DAP_API_URL, DAP_CLIENT_ID, DAP_CLIENT_SECRET
/// let tables = client.tables("canvas").await?;
/// let result = client
///     .download_table_data("canvas", &tables[0], SnapshotQuery::new(Format::Jsonl), "downloads", false)
///     .await?;
/// println!("{} files at {:?}", result.downloaded_files.len(), result.timestamp);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: HttpClient,
    pub(crate) waiter: Waiter,
    pub(crate) sleeper: Arc<dyn Sleeper>,
    pub(crate) concurrency: usize,
    pub(crate) url_batch_size: usize,
    pub(crate) max_decompressed: u64,
    pub(crate) max_line_len: usize,
    pub(crate) object_attempts: u32,
    pub(crate) progress: Option<crate::download::ProgressFn>,
}

impl Client {
    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client configured from `DAP_API_URL` (optional, default
    /// [`DEFAULT_BASE_URL`]), `DAP_CLIENT_ID` and `DAP_CLIENT_SECRET`.
    pub fn from_env() -> Result<Self> {
        ClientBuilder::from_env().build()
    }

    /// How many objects are downloaded at once, as set with
    /// [`ClientBuilder::download_concurrency`] (default 4). The replicator
    /// starts from this setting.
    pub fn download_concurrency(&self) -> usize {
        self.inner.concurrency
    }

    /// Lists the tables of `namespace` (e.g. `canvas`).
    pub async fn tables(&self, namespace: &str) -> Result<Vec<String>> {
        let list: TableList = self
            .call(Request::get(format!("/dap/query/{}/table", seg(namespace))))
            .await?;
        Ok(list.tables)
    }

    /// The current versioned schema of a table.
    pub async fn schema(&self, namespace: &str, table: &str) -> Result<VersionedSchema> {
        self.call(Request::get(format!(
            "/dap/query/{}/table/{}/schema",
            seg(namespace),
            seg(table)
        )))
        .await
    }

    /// Fetches a table's schema and saves it, like the official CLI, as
    /// `{dir}/{table}_schema_version_{version}.json` (written atomically).
    /// Returns the path.
    pub async fn download_schema(
        &self,
        namespace: &str,
        table: &str,
        dir: impl AsRef<Path>,
    ) -> Result<PathBuf> {
        let schema = self.schema(namespace, table).await?;
        let dir = dir.as_ref();
        let path = dir.join(schema.file_name(table));
        let mut text = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut text, formatter);
        serde::Serialize::serialize(&schema, &mut ser)
            .map_err(|e| Error::Config(format!("the schema could not be serialised: {e}")))?;
        crate::download::write_atomically(&path, &text).await?;
        Ok(path)
    }

    /// Starts a snapshot query job (or gets the identical job already
    /// running). The job is usually not complete yet: see
    /// [`Client::wait_for_job`].
    pub async fn query_snapshot(
        &self,
        namespace: &str,
        table: &str,
        query: &SnapshotQuery,
    ) -> Result<Job> {
        self.post_query(namespace, table, &Query::Snapshot(query.clone()))
            .await
    }

    /// Starts an incremental query job (changes since `query.since`).
    pub async fn query_incremental(
        &self,
        namespace: &str,
        table: &str,
        query: &IncrementalQuery,
    ) -> Result<Job> {
        self.post_query(namespace, table, &Query::Incremental(query.clone()))
            .await
    }

    pub(crate) async fn post_query(
        &self,
        namespace: &str,
        table: &str,
        query: &Query,
    ) -> Result<Job> {
        // The server de-duplicates identical queries, so a retried POST
        // cannot start a second job.
        let request = Request::post(format!(
            "/dap/query/{}/table/{}/data",
            seg(namespace),
            seg(table)
        ))
        .json(query)
        .idempotent(true);
        self.call(request).await
    }

    /// The current state of a job.
    pub async fn job(&self, job_id: &str) -> Result<Job> {
        self.call(Request::get(format!("/dap/job/{}", seg(job_id))))
            .await
    }

    /// The objects of a complete job. Fails with [`Error::JobFailed`] for a
    /// failed job and [`Error::UnexpectedResponse`] for one still running.
    pub async fn objects(&self, job_id: &str) -> Result<Vec<Object>> {
        let job = self.job(job_id).await?;
        crate::jobs::require_complete(job).map(|j| j.objects)
    }

    /// Pre-signed URLs for many objects, in as few requests as possible
    /// ([`ClientBuilder::url_batch_size`] objects per request). The result
    /// maps object ids to resources; every requested id is present.
    pub async fn resources(&self, objects: &[Object]) -> Result<HashMap<String, Resource>> {
        let mut all = HashMap::with_capacity(objects.len());
        for chunk in objects.chunks(self.inner.url_batch_size.max(1)) {
            let request = Request::post("/dap/object/url")
                .json(chunk)
                .idempotent(true);
            let result: ResourceResult = self.call(request).await?;
            all.extend(result.urls);
        }
        if let Some(missing) = objects.iter().find(|o| !all.contains_key(&o.id)) {
            return Err(Error::UnexpectedResponse {
                url: "/dap/object/url".into(),
                message: format!("no URL was returned for object {:?}", missing.id),
                body_snippet: String::new(),
            });
        }
        Ok(all)
    }

    /// Sends an API request and decodes a JSON success body, mapping error
    /// statuses through the DAP error taxonomy.
    ///
    /// The core retries until response headers arrive; a body that then
    /// breaks off is retried here (all DAP calls are safe to repeat: reads,
    /// and job creation and URL requests, which the server de-duplicates).
    pub(crate) async fn call<T: DeserializeOwned>(&self, request: Request) -> Result<T> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(request.clone()).await {
                Err(Error::Http(e)) if attempt < BODY_ATTEMPTS && is_broken_body(&e) => {
                    tracing::warn!(attempt, error = %e, "response body broke off; sending the request again");
                }
                other => return other,
            }
        }
    }

    async fn call_once<T: DeserializeOwned>(&self, request: Request) -> Result<T> {
        let method = request.method().to_string();
        let response = self.inner.http.execute(request).await?;
        let status = response.status();
        let url = client_core::error::redact_url(response.url().as_str());
        let retry_after = response.retry_after();
        let body = response.bytes().await?;
        if !(200..300).contains(&status) {
            return Err(Error::from_response(
                &method,
                &url,
                status,
                &body,
                retry_after,
            ));
        }
        serde_json::from_slice(&body).map_err(|e| Error::UnexpectedResponse {
            url,
            message: e.to_string(),
            body_snippet: client_core::error::snippet(&body, 512),
        })
    }
}

/// Attempts of one API call when its body breaks off after the headers.
const BODY_ATTEMPTS: u32 = 3;

fn is_broken_body(e: &client_core::Error) -> bool {
    matches!(
        e,
        client_core::Error::Transport { .. } | client_core::Error::Download { .. }
    )
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("http", &self.http)
            .field("concurrency", &self.concurrency)
            .field("url_batch_size", &self.url_batch_size)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes one path segment (names and ids are user input).
fn seg(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Builds a [`Client`].
///
/// ```no_run
/// # fn demo() -> dap_client::Result<()> {
/// use std::time::Duration;
/// use dap_client::{Client, PollPolicy, SecretString};
///
/// let client = Client::builder()
///     .base_url("https://api-gateway.instructure.com")
///     .credentials("us-east-1#client-id", SecretString::from("secret"))
///     .poll_policy(PollPolicy::default().max_wait(Duration::from_secs(3600)))
///     .download_concurrency(8)
///     .build()?;
/// # drop(client); Ok(()) }
/// ```
#[derive(Default)]
pub struct ClientBuilder {
    base_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    poll_policy: Option<PollPolicy>,
    retry_policy: Option<RetryPolicy>,
    concurrency: Option<usize>,
    url_batch_size: Option<usize>,
    max_decompressed: Option<u64>,
    max_line_len: Option<usize>,
    allow_insecure_http: bool,
    sleeper: Option<Arc<dyn Sleeper>>,
    clock: Option<Arc<dyn Clock>>,
    random: Option<Arc<dyn RandomSource>>,
    seed: Option<u64>,
    user_agent: Option<String>,
    token_refresh_margin: Option<Duration>,
    progress: Option<crate::download::ProgressFn>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder pre-filled from `DAP_API_URL`, `DAP_CLIENT_ID` and
    /// `DAP_CLIENT_SECRET` (unset variables are left unset).
    pub fn from_env() -> Self {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        Self {
            base_url: var("DAP_API_URL"),
            client_id: var("DAP_CLIENT_ID"),
            client_secret: var("DAP_CLIENT_SECRET").map(SecretString::from),
            ..Self::default()
        }
    }

    /// The API base URL (default [`DEFAULT_BASE_URL`]); a trailing `/` is ignored.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The API key's client id and secret.
    pub fn credentials(
        mut self,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        self.client_id = Some(client_id.into());
        self.client_secret = Some(client_secret);
        self
    }

    /// How jobs are polled (default: about 1 s growing to 5 s with jitter,
    /// for at most an hour).
    pub fn poll_policy(mut self, policy: PollPolicy) -> Self {
        self.poll_policy = Some(policy);
        self
    }

    /// How failed requests are retried (default: the core's policy, 10
    /// attempts within 3 minutes, honouring `Retry-After`).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry_policy = Some(policy);
        self
    }

    /// How many objects are downloaded at once (default 4).
    pub fn download_concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// How many objects one `POST /dap/object/url` asks for (default 100).
    pub fn url_batch_size(mut self, n: usize) -> Self {
        self.url_batch_size = Some(n.max(1));
        self
    }

    /// Refuses objects that decompress to more than this many bytes
    /// (default [`DEFAULT_MAX_DECOMPRESSED_BYTES`], 64 GiB). Applies to
    /// decompressed downloads and to record streams; pass `u64::MAX` to
    /// lift the cap.
    pub fn max_decompressed_bytes(mut self, limit: u64) -> Self {
        self.max_decompressed = Some(limit);
        self
    }

    /// Caps one line (one JSONL record, one TSV/CSV row) in the record
    /// streams of [`Client::object_records`], [`Client::job_records`] and
    /// [`Client::table_records`] (default
    /// [`DEFAULT_MAX_LINE_LEN`](crate::record::DEFAULT_MAX_LINE_LEN),
    /// 64 MiB). A longer line ends the stream with
    /// [`DecodeError::LineTooLong`](crate::record::DecodeError::LineTooLong)
    /// instead of growing a buffer without bound; lower it on
    /// low-memory workers.
    pub fn max_line_len(mut self, bytes: usize) -> Self {
        self.max_line_len = Some(bytes.max(1));
        self
    }

    /// Allows plain `http://` to a host that is not loopback, for the API
    /// and its token endpoint (default `false`: such URLs are refused at
    /// [`build`](Self::build), because the client secret and the data
    /// would travel unencrypted). Loopback hosts are always allowed. Only
    /// for test rigs or proxies on a trusted network.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// How to wait between retries and polls (tests: a recording sleeper).
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = Some(sleeper);
        self
    }

    /// The clock deadlines and token lifetimes are measured with.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The randomness of retry backoff jitter.
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = Some(random);
        self
    }

    /// Seeds the poll jitter, making poll delays reproducible.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Refresh the token when less than this much of its lifetime is left
    /// (default 5 minutes).
    pub fn token_refresh_margin(mut self, margin: Duration) -> Self {
        self.token_refresh_margin = Some(margin);
        self
    }

    /// Called as object downloads progress (for progress bars).
    pub fn progress(
        mut self,
        callback: impl for<'a> Fn(crate::download::DownloadProgress<'a>) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// Builds the client. Fails with [`Error::Config`] when the client id or
    /// secret is missing or the base URL is invalid.
    pub fn build(self) -> Result<Client> {
        let client_id = self.client_id.ok_or_else(|| {
            Error::Config(
                "missing DAP client ID: set DAP_CLIENT_ID or pass --client-id \
                 (obtain an API key at identity.instructure.com)"
                    .into(),
            )
        })?;
        let secret = self.client_secret.ok_or_else(|| {
            Error::Config(
                "missing DAP client secret: set DAP_CLIENT_SECRET or pass --client-secret \
                 (obtain an API key at identity.instructure.com)"
                    .into(),
            )
        })?;
        if client_id.trim().is_empty() || secret.expose_secret().trim().is_empty() {
            return Err(Error::Config(
                "the DAP client ID and secret must not be empty".into(),
            ));
        }
        let base = self
            .base_url
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        let base = base.trim_end_matches('/').to_string();
        let sleeper = self.sleeper.unwrap_or_else(|| Arc::new(TokioSleeper));
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let mut http = HttpClient::builder()
            .base_url(&base)
            .user_agent(self.user_agent.unwrap_or_else(|| {
                concat!("bulkdata-dap-client/", env!("CARGO_PKG_VERSION")).into()
            }))
            .retry_policy(self.retry_policy.unwrap_or_default())
            .sleeper(sleeper.clone())
            .clock(clock.clone())
            .allow_insecure_http(self.allow_insecure_http);
        if let Some(random) = self.random {
            http = http.random(random);
        }
        let http = http.build()?;
        let grant = ClientCredentialsGrant::new(
            http.with_auth(Auth::None),
            "/ids/auth/login",
            BasicCredentials::new(client_id, secret),
        )?;
        let mut cache = TokenCache::new(grant).with_clock(clock.clone());
        if let Some(margin) = self.token_refresh_margin {
            cache = cache.with_refresh_margin(margin);
        }
        let http = http.with_auth(Auth::bearer(cache));
        let mut waiter = Waiter::new(self.poll_policy.unwrap_or_default())
            .with_clock(clock)
            .with_sleeper(sleeper.clone());
        if let Some(seed) = self.seed {
            waiter = waiter.with_rng_seed(seed);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                waiter,
                sleeper,
                concurrency: self.concurrency.unwrap_or(DEFAULT_DOWNLOAD_CONCURRENCY),
                url_batch_size: self.url_batch_size.unwrap_or(DEFAULT_URL_BATCH_SIZE),
                max_decompressed: self
                    .max_decompressed
                    .unwrap_or(DEFAULT_MAX_DECOMPRESSED_BYTES),
                max_line_len: self
                    .max_line_len
                    .unwrap_or(crate::record::DEFAULT_MAX_LINE_LEN),
                object_attempts: 4,
                progress: self.progress,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("canvas"), "canvas");
        assert_eq!(seg("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn missing_credentials_name_the_variables() {
        let e = Client::builder().build().unwrap_err();
        assert!(e.to_string().contains("DAP_CLIENT_ID"), "{e}");
        let e = Client::builder()
            .base_url("https://x.example")
            .credentials("id", SecretString::from(""))
            .build();
        assert!(matches!(e, Err(Error::Config(_))));
    }

    fn builder(base: &str) -> ClientBuilder {
        Client::builder()
            .base_url(base)
            .credentials("id", SecretString::from("secret"))
    }

    #[test]
    fn remote_plain_http_needs_the_builder_opt_in() {
        let Err(Error::Config(message)) = builder("http://dap.example.invalid").build() else {
            panic!("plain http to a remote host must be refused");
        };
        assert!(
            message.contains("refusing plain http://") && message.contains("allow_insecure_http"),
            "the refusal names the opt-in: {message}"
        );
        builder("http://dap.example.invalid")
            .allow_insecure_http(true)
            .build()
            .expect("the opt-in allows it");
        builder("http://127.0.0.1:9")
            .build()
            .expect("loopback needs no opt-in");
    }

    #[test]
    fn decompression_and_line_caps_have_safe_defaults_and_can_be_changed() {
        let client = builder("https://dap.example.invalid").build().unwrap();
        assert_eq!(
            client.inner.max_decompressed,
            DEFAULT_MAX_DECOMPRESSED_BYTES
        );
        assert_eq!(
            client.inner.max_line_len,
            crate::record::DEFAULT_MAX_LINE_LEN
        );
        let client = builder("https://dap.example.invalid")
            .max_decompressed_bytes(1 << 20)
            .max_line_len(4096)
            .build()
            .unwrap();
        assert_eq!(client.inner.max_decompressed, 1 << 20);
        assert_eq!(client.inner.max_line_len, 4096);
    }
}
