//! The client, its builder and its auth modes.

use std::fmt;
use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use url::{Host, Url};

use crate::auth::{BasicCredentials, TokenProvider};
use crate::retry::{RandomSource, RetryClassifier, RetryPolicy, SystemRandom};
use crate::time::{Clock, Sleeper, SystemClock, TokioSleeper};
use crate::{Error, Result};

/// How the client authenticates its requests.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <token>` from a provider, fetched per attempt.
    Bearer(Arc<dyn TokenProvider>),
    /// `Authorization: Basic ...` on every request.
    Basic(BasicCredentials),
}

impl Auth {
    /// Bearer tokens from `provider`.
    pub fn bearer(provider: impl TokenProvider + 'static) -> Self {
        Auth::Bearer(Arc::new(provider))
    }
}

/// The HTTP client every service crate builds on: base URL, auth, the retry
/// loop, redirects and error mapping. Cheap to clone (shared connection pool).
///
/// ```no_run
/// # async fn demo() -> client_core::Result<()> {
/// use client_core::http::{HttpClient, Request};
///
/// let client = HttpClient::builder()
///     .base_url("https://api.example.com/v1")
///     .user_agent("my-app/1.0")
///     .build()?;
/// let tables: serde_json::Value = client.send(Request::get("/tables")).await?.json().await?;
/// # drop(tables);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpClient {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Clone)]
pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base: Option<Url>,
    pub(crate) auth: Auth,
    pub(crate) policy: RetryPolicy,
    pub(crate) classifier: Option<Arc<dyn RetryClassifier>>,
    pub(crate) sleeper: Arc<dyn Sleeper>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn RandomSource>,
    pub(crate) allow_insecure_http: bool,
}

impl HttpClient {
    /// A builder with the defaults: no base URL, no auth, the default
    /// [`RetryPolicy`], real time, 30 s connect and 5 min read timeouts.
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::default()
    }

    /// The base URL paths are joined to, if one was set.
    pub fn base_url(&self) -> Option<&Url> {
        self.inner.base.as_ref()
    }

    /// The default retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// A client sharing this one's connections and settings, with another
    /// auth mode (e.g. [`Auth::None`] for a token endpoint).
    pub fn with_auth(&self, auth: Auth) -> HttpClient {
        let mut inner = (*self.inner).clone();
        inner.auth = auth;
        HttpClient {
            inner: Arc::new(inner),
        }
    }

    /// A client sharing this one's connections and settings, with another
    /// default retry policy.
    pub fn with_retry_policy(&self, policy: RetryPolicy) -> HttpClient {
        let mut inner = (*self.inner).clone();
        inner.policy = policy;
        HttpClient {
            inner: Arc::new(inner),
        }
    }

    /// The URL a request target resolves to, checked against the
    /// plain-HTTP rule.
    pub fn resolve(&self, target: &str) -> Result<Url> {
        let url = if target.starts_with("http://") || target.starts_with("https://") {
            Url::parse(target).map_err(|e| {
                Error::InvalidRequest(format!(
                    "{} is not a valid URL: {e}",
                    crate::error::redact_url(target)
                ))
            })?
        } else {
            let base = self.inner.base.as_ref().ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "relative target {target:?} but the client has no base URL"
                ))
            })?;
            join(base, target)?
        };
        check_scheme(&url, self.inner.allow_insecure_http)?;
        Ok(url)
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("base_url", &self.inner.base.as_ref().map(|u| u.as_str()))
            .field("auth", &self.inner.auth)
            .field("retry_policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// Joins `target` below `base`'s path (a leading `/` does not escape it).
fn join(base: &Url, target: &str) -> Result<Url> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join(target.trim_start_matches('/')).map_err(|e| {
        Error::InvalidRequest(format!(
            "path {target:?} cannot be joined to the base URL: {e}"
        ))
    })
}

/// Refuses `http://` unless the host is loopback or insecure HTTP was allowed.
pub(crate) fn check_scheme(url: &Url, allow_insecure_http: bool) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        "http" => Err(Error::Config(format!(
            "refusing plain http:// to {}: credentials and data would travel unencrypted. \
             Use https://, or, on a trusted network only, opt in with \
             `.allow_insecure_http(true)` on the client's builder (the service crates' \
             `ClientBuilder` and client_core's `HttpClientBuilder` all have it)",
            url.host_str().unwrap_or("?")
        ))),
        other => Err(Error::Config(format!(
            "unsupported URL scheme {other:?} in {}; use https://",
            crate::error::redact_url(url.as_str())
        ))),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Builds an [`HttpClient`]. Every setter is optional.
#[derive(Default)]
pub struct HttpClientBuilder {
    base: Option<String>,
    auth: Auth,
    policy: Option<RetryPolicy>,
    classifier: Option<Arc<dyn RetryClassifier>>,
    sleeper: Option<Arc<dyn Sleeper>>,
    clock: Option<Arc<dyn Clock>>,
    random: Option<Arc<dyn RandomSource>>,
    user_agent: Option<String>,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    timeout: Option<Duration>,
    headers: Vec<(String, String)>,
    allow_insecure_http: bool,
}

impl fmt::Debug for HttpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClientBuilder")
            .field(
                "base_url",
                &self.base.as_deref().map(crate::error::redact_url),
            )
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl HttpClientBuilder {
    /// The base URL relative request paths are joined to. `http://` is refused
    /// at [`build`](Self::build) unless the host is loopback or
    /// [`allow_insecure_http`](Self::allow_insecure_http) is set.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base = Some(url.into());
        self
    }

    /// The auth mode.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Bearer tokens from a shared provider.
    pub fn bearer(self, provider: Arc<dyn TokenProvider>) -> Self {
        self.auth(Auth::Bearer(provider))
    }

    /// HTTP Basic on every request.
    pub fn basic(self, credentials: BasicCredentials) -> Self {
        self.auth(Auth::Basic(credentials))
    }

    /// The default retry policy.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// A service-specific retry classifier.
    pub fn classifier(mut self, classifier: Arc<dyn RetryClassifier>) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// How to wait between attempts (tests: [`RecordingSleeper`](crate::time::RecordingSleeper)).
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = Some(sleeper);
        self
    }

    /// The clock deadlines are measured with.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The randomness for backoff jitter (tests: [`FixedRandom`](crate::retry::FixedRandom)
    /// or [`SeededRandom`](crate::retry::SeededRandom)).
    pub fn random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = Some(random);
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Timeout for establishing a connection (default 30 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Timeout for each read from the connection (default 5 min); unlike a
    /// total timeout it does not cut off long, healthy downloads.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// A total timeout per attempt, connect to end of body (default none).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A header sent with every request.
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Allows `http://` to non-loopback hosts (for test rigs behind a trusted
    /// network only).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<HttpClient> {
        install_crypto_provider();
        let base = self.base.as_deref().map(parse_base).transpose()?;
        if let Some(base) = &base {
            check_scheme(base, self.allow_insecure_http)?;
        }
        let http = reqwest::Client::builder()
            .user_agent(self.user_agent.unwrap_or_else(default_user_agent))
            .default_headers(header_map(&self.headers)?)
            .connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(30)))
            .read_timeout(self.read_timeout.unwrap_or(Duration::from_secs(300)))
            .redirect(super::redirect::policy(self.allow_insecure_http));
        let http = match self.timeout {
            Some(t) => http.timeout(t),
            None => http,
        };
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("could not build the HTTP client: {e}")))?;
        Ok(HttpClient {
            inner: Arc::new(Inner {
                http,
                base,
                auth: self.auth,
                policy: self.policy.unwrap_or_default(),
                classifier: self.classifier,
                sleeper: self.sleeper.unwrap_or_else(|| Arc::new(TokioSleeper)),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                random: self.random.unwrap_or_else(|| Arc::new(SystemRandom)),
                allow_insecure_http: self.allow_insecure_http,
            }),
        })
    }
}

fn parse_base(raw: &str) -> Result<Url> {
    let url = Url::parse(raw).map_err(|e| {
        Error::Config(format!(
            "base URL {:?} is not valid: {e}",
            crate::error::redact_url(raw)
        ))
    })?;
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(Error::Config(format!("base URL {raw:?} has no host")));
    }
    Ok(url)
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let n = HeaderName::try_from(name.as_str())
            .map_err(|_| Error::Config(format!("invalid default header name {name:?}")))?;
        let v = HeaderValue::try_from(value.as_str())
            .map_err(|_| Error::Config(format!("invalid value for default header {name:?}")))?;
        map.insert(n, v);
    }
    Ok(map)
}

fn default_user_agent() -> String {
    concat!("bulkdata-client-core/", env!("CARGO_PKG_VERSION")).to_string()
}

/// reqwest is built without a rustls provider (`rustls-no-provider`) so the
/// workspace does not compile aws-lc; ring is installed as the process
/// default. If the application installed one already, that one is kept.
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means a provider is already installed, which is what we need.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_stays_below_the_base_path() {
        let base = Url::parse("https://h.example/api").unwrap();
        assert_eq!(
            join(&base, "/v1/x").unwrap().as_str(),
            "https://h.example/api/v1/x"
        );
        assert_eq!(
            join(&base, "v1/x?a=1").unwrap().as_str(),
            "https://h.example/api/v1/x?a=1"
        );
        let root = Url::parse("https://h.example").unwrap();
        assert_eq!(
            join(&root, "/ids/auth/login").unwrap().as_str(),
            "https://h.example/ids/auth/login"
        );
    }

    #[test]
    fn plain_http_only_for_loopback_or_opt_in() {
        for ok in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://[::1]/",
            "https://e.com/",
        ] {
            assert!(
                check_scheme(&Url::parse(ok).unwrap(), false).is_ok(),
                "{ok}"
            );
        }
        let remote = Url::parse("http://example.com/x").unwrap();
        assert!(matches!(
            check_scheme(&remote, false),
            Err(Error::Config(_))
        ));
        assert!(check_scheme(&remote, true).is_ok());
        assert!(check_scheme(&Url::parse("ftp://example.com/").unwrap(), true).is_err());
    }
}
