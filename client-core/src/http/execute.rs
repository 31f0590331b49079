//! The retry loop: one attempt after another until a final answer.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::client::Auth;
use super::multipart::open_file_body;
use super::request::{Body, RequestAuth};
use super::transport::transport_error;
use super::{HttpClient, Request, Response};
use crate::auth::AccessToken;
use crate::error::redact_url;
use crate::retry::{ResponseView, RetryDecision, is_retryable_status, is_retryable_transport};
use crate::{Error, Result, TransportKind};

/// Why another attempt may be made.
enum Retryable {
    Response(Box<Response>),
    Failure(Error),
}

impl HttpClient {
    /// Sends `request` with retries and returns the final response whatever
    /// its status, so service crates can parse their own error bodies.
    ///
    /// Each attempt rebuilds the request (fresh token, whole body). Statuses
    /// 408/429/500/502/503/504 are retried (and whatever the classifier
    /// says); connect failures always; timeouts and interrupted connections
    /// only for idempotent requests. A `401` on a bearer request invalidates
    /// the token and is retried at once (the first time for free, later
    /// times at the cost of an attempt: tokens revoked again while the
    /// request is retried); the fourth `401` is [`Error::Auth`], as is a
    /// `401` to the client's Basic credentials. Transport failures that
    /// outlast the budget are [`Error::RetriesExhausted`] (or
    /// [`Error::Transport`] if only one attempt was made).
    ///
    /// The client's credentials go only to the origin of its base URL; a
    /// request to another host (a pre-signed URL, a link elsewhere) is sent
    /// without them, as are requests marked [`Request::without_auth`].
    pub async fn execute(&self, request: Request) -> Result<Response> {
        if let Some(problem) = &request.invalid {
            return Err(Error::InvalidRequest(problem.clone()));
        }
        let url = self.request_url(&request)?;
        let request = self.confine_credentials(request, &url);
        let policy = request.retry.as_ref().unwrap_or(&self.inner.policy);
        let started = self.inner.clock.now();
        let mut attempt: u32 = 0;
        let mut refresh = RefreshState::default();
        loop {
            attempt += 1;
            let (last, hint) = match self.step(&request, &url, &mut refresh).await {
                Step::Done(result) => return result,
                Step::Refreshed { first } => {
                    // The first 401 refresh is not part of the retry budget;
                    // a later one (the token was revoked again while this
                    // request was being retried) is.
                    if first {
                        attempt -= 1;
                    }
                    continue;
                }
                Step::Retryable(last, hint) => (last, hint),
            };
            let elapsed = self.inner.clock.now().saturating_duration_since(started);
            let delay = policy.delay(attempt, hint, self.inner.random.as_ref());
            if attempt >= policy.max_attempts || elapsed + delay > policy.deadline {
                return give_up(last, attempt, elapsed);
            }
            log_retry(&request, &url, attempt, policy.max_attempts, delay, &last);
            self.inner.sleeper.sleep(delay).await;
        }
    }

    /// Like [`execute`](Self::execute), but a final status the request does
    /// not accept (by default: anything but 2xx) becomes [`Error::Api`] with
    /// the server's message, request id and `Retry-After` (wrapped in
    /// [`Error::RetriesExhausted`] when the retry budget ran out on it).
    pub async fn send(&self, request: Request) -> Result<Response> {
        let expected = request.expect_status.clone();
        let response = self.execute(request).await?;
        let accepted = match &expected {
            Some(statuses) => statuses.contains(&response.status()),
            None => response.is_success(),
        };
        if accepted {
            return Ok(response);
        }
        Err(response.into_api_error().await)
    }

    /// Sends `request` (as [`send`](Self::send)) and decodes the JSON body.
    ///
    /// The retry loop ends when the headers arrive, so a body that breaks
    /// off mid-transfer is handled here: an idempotent request is sent
    /// again (after a backoff, up to the policy's attempts); any other
    /// request ends with the [`Error::Transport`] of the broken body. A body
    /// that arrives whole but is not the expected JSON is
    /// [`Error::Decode`], never retried.
    pub async fn send_json<T: serde::de::DeserializeOwned>(&self, request: Request) -> Result<T> {
        let policy = request.retry.as_ref().unwrap_or(&self.inner.policy);
        let (max_attempts, idempotent) = (policy.max_attempts, request.is_idempotent());
        let mut attempt: u32 = 1;
        loop {
            let response = self.send(request.clone()).await?;
            match response.json().await {
                Err(Error::Transport { kind, url, .. })
                    if is_retryable_transport(kind, idempotent) && attempt < max_attempts =>
                {
                    self.pause_after_broken_body(policy, attempt, kind, &url)
                        .await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Logs a body that broke off and waits the policy's backoff before
    /// the request is sent again (callers decide whether it may be).
    pub(crate) async fn pause_after_broken_body(
        &self,
        policy: &crate::retry::RetryPolicy,
        attempt: u32,
        kind: TransportKind,
        url: &str,
    ) {
        let delay = policy.backoff(attempt, self.inner.random.as_ref());
        tracing::warn!(
            attempt,
            max_attempts = policy.max_attempts,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            cause = %kind,
            url = %url,
            "response body broke off; requesting it again"
        );
        self.inner.sleeper.sleep(delay).await;
    }

    fn request_url(&self, request: &Request) -> Result<Url> {
        let mut url = self.resolve(&request.target)?;
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(request.query.iter());
        }
        Ok(url)
    }

    /// The client's credentials are only for its own origin (scheme, host
    /// and port of the base URL): a request to any other host, such as a
    /// pre-signed storage URL or an absolute link elsewhere, is sent without
    /// them. Explicit [`Request::basic_auth`] is kept.
    fn confine_credentials(&self, mut request: Request, url: &Url) -> Request {
        if let (RequestAuth::Client, Some(base)) = (&request.auth, &self.inner.base)
            && base.origin() != url.origin()
        {
            tracing::debug!(
                url = %redact_url(url.as_str()),
                "request to another origin than the base URL: sent without the client's credentials"
            );
            request.auth = RequestAuth::None;
        }
        request
    }

    /// Whether the client's own credentials went out with the request; a
    /// request with explicit [`Request::basic_auth`] (a token endpoint) gets
    /// its 401 back as a response to interpret.
    fn sends_client_credentials(&self, request: &Request) -> bool {
        matches!(request.auth, RequestAuth::Client) && !matches!(self.inner.auth, Auth::None)
    }

    async fn current_token(&self, request: &Request) -> Result<Option<AccessToken>> {
        match (&request.auth, &self.inner.auth) {
            (RequestAuth::Client, Auth::Bearer(provider)) => Ok(Some(provider.token().await?)),
            _ => Ok(None),
        }
    }

    /// One attempt: build a fresh HTTP request and send it.
    async fn attempt(
        &self,
        request: &Request,
        url: &Url,
        token: Option<&AccessToken>,
    ) -> Result<Response> {
        let mut builder = self.inner.http.request(request.method.clone(), url.clone());
        builder = builder.headers(request.headers.clone());
        if let Some(value) = self.authorization(request, token)? {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder = match &request.body {
            Body::Empty => builder,
            Body::Bytes(b) => builder.body(b.clone()),
            Body::Form(fields) => builder.form(fields),
            Body::Multipart(form) => builder.multipart(form.to_reqwest().await?),
            Body::File(path) => {
                let (body, len) = open_file_body(path).await?;
                builder
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(body)
            }
        };
        if let Some(t) = request.timeout {
            builder = builder.timeout(t);
        }
        let policy = request.retry.as_ref().unwrap_or(&self.inner.policy);
        let sent = match policy.response_timeout {
            Some(limit) => match tokio::time::timeout(limit, builder.send()).await {
                Ok(sent) => sent,
                Err(_) => return Err(response_timed_out(request, url, limit)),
            },
            None => builder.send().await,
        };
        match sent {
            Ok(r) => Ok(Response::from_reqwest(request.method.clone(), r)),
            Err(e) => Err(transport_error(e, request.method.as_str(), url.as_str())),
        }
    }

    fn authorization(
        &self,
        request: &Request,
        token: Option<&AccessToken>,
    ) -> Result<Option<HeaderValue>> {
        let secret: SecretString = match (&request.auth, &self.inner.auth, token) {
            (RequestAuth::None, _, _) => return Ok(None),
            (RequestAuth::Basic(creds), _, _) => creds.header_value(),
            (RequestAuth::Client, Auth::Basic(creds), _) => creds.header_value(),
            (RequestAuth::Client, Auth::Bearer(_), Some(t)) => {
                SecretString::from(format!("Bearer {}", t.secret().expose_secret()))
            }
            _ => return Ok(None),
        };
        let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| Error::Auth {
            message: "the credentials contain characters that cannot be sent in an HTTP header"
                .to_string(),
            status: None,
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    fn classify(
        &self,
        request: &Request,
        url: &Url,
        idempotent: bool,
        response: &Response,
    ) -> RetryDecision {
        let Some(classifier) = &self.inner.classifier else {
            return RetryDecision::Default;
        };
        let view = ResponseView {
            method: &request.method,
            url,
            idempotent,
            status: response.status(),
            headers: response.headers(),
            body_prefix: response.prefix(),
        };
        classifier.classify(&view)
    }

    /// One attempt and its verdict.
    async fn step(&self, request: &Request, url: &Url, refresh: &mut RefreshState) -> Step {
        let idempotent = request.is_idempotent();
        let token = match self.current_token(request).await {
            Ok(t) => t,
            Err(e) => return Step::Done(Err(e)),
        };
        let mut response = match self.attempt(request, url, token.as_ref()).await {
            Ok(r) => r,
            Err(e) => return retry_if_transient(e, idempotent),
        };
        if response.status() == 401 && self.sends_client_credentials(request) {
            if let (Some(t), Auth::Bearer(p)) = (&token, &self.inner.auth)
                && refresh.may_refresh()
                && p.can_refresh()
            {
                tracing::info!(
                    url = %redact_url(url.as_str()),
                    refreshes = refresh.refreshes + 1,
                    "HTTP 401: refreshing the access token and retrying"
                );
                p.invalidate(t).await;
                let first = refresh.refreshes == 0;
                refresh.refreshes += 1;
                return Step::Refreshed { first };
            }
            return Step::Done(Err(rejected_credentials(response, token.is_some()).await));
        }
        if response.is_success() {
            return Step::Done(Ok(response));
        }
        if let Err(e) = response.buffer_prefix().await {
            // The error body broke off: like any interrupted exchange.
            return retry_if_transient(e, idempotent);
        }
        let hint = match self.classify(request, url, idempotent, &response) {
            RetryDecision::DoNotRetry => return Step::Done(Ok(response)),
            RetryDecision::Retry { after } => after.or_else(|| response.retry_after()),
            _ if is_retryable_status(response.status()) => response.retry_after(),
            _ => return Step::Done(Ok(response)),
        };
        Step::Retryable(Retryable::Response(Box::new(response)), hint)
    }
}

/// What one attempt leads to.
// Lives for one attempt and is moved once; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Step {
    /// A final answer.
    Done(Result<Response>),
    /// The token was refreshed after a 401; try again at once. `first`:
    /// the request's first refresh, which costs no attempt.
    Refreshed { first: bool },
    /// Worth another attempt, after at least this server hint.
    Retryable(Retryable, Option<Duration>),
}

/// The failure of an attempt whose response did not start within the
/// policy's response timeout.
fn response_timed_out(request: &Request, url: &Url, limit: Duration) -> Error {
    Error::Transport {
        kind: TransportKind::Timeout,
        method: request.method.to_string(),
        url: redact_url(url.as_str()),
        message: format!(
            "no response within {} ms (the retry policy's response timeout)",
            limit.as_millis()
        ),
    }
}

/// Refreshing after a `401`, per request: a `401` to a bearer token
/// refreshes it, at most [`MAX_REFRESHES`] times. One refresh is not enough
/// when tokens are revoked in waves while a request is being retried (or
/// between a refresh and the token's first use); a server that rejects
/// every fresh token (bad credentials or rights) still fails fast.
#[derive(Debug, Default)]
struct RefreshState {
    refreshes: u32,
}

/// Token refreshes one request may trigger with its `401`s.
const MAX_REFRESHES: u32 = 3;

impl RefreshState {
    fn may_refresh(&self) -> bool {
        self.refreshes < MAX_REFRESHES
    }
}

fn retry_if_transient(error: Error, idempotent: bool) -> Step {
    match &error {
        Error::Transport { kind, .. } if is_retryable_transport(*kind, idempotent) => {
            Step::Retryable(Retryable::Failure(error), None)
        }
        _ => Step::Done(Err(error)),
    }
}

fn log_retry(
    request: &Request,
    url: &Url,
    attempt: u32,
    max: u32,
    delay: Duration,
    last: &Retryable,
) {
    let cause = match last {
        Retryable::Response(r) => format!("HTTP {}", r.status()),
        Retryable::Failure(Error::Transport { kind, .. }) => kind.to_string(),
        Retryable::Failure(e) => e.to_string(),
    };
    tracing::warn!(
        attempt,
        max_attempts = max,
        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        cause = %cause,
        method = %request.method,
        url = %redact_url(url.as_str()),
        "retrying request"
    );
}

/// The final outcome when retrying stops: the last response as is (marked
/// exhausted), or the last failure.
fn give_up(last: Retryable, attempts: u32, elapsed: Duration) -> Result<Response> {
    match last {
        Retryable::Response(mut r) => {
            r.exhausted = (attempts > 1).then_some((attempts, elapsed));
            Ok(*r)
        }
        Retryable::Failure(e) if attempts > 1 => Err(Error::RetriesExhausted {
            attempts,
            elapsed,
            last: Box::new(e),
        }),
        Retryable::Failure(e) => Err(e),
    }
}

/// The error for a `401` that refreshing could not fix.
async fn rejected_credentials(response: Response, bearer: bool) -> Error {
    let status = response.status();
    let (method, url) = (
        response.method().to_string(),
        redact_url(response.url().as_str()),
    );
    let detail = match response.into_api_error().await {
        Error::Api(api) => api.to_string(),
        // The body broke off: the status is the answer, not a transport
        // failure to report as the reason.
        _ => format!("{method} {url} returned HTTP {status} (its body broke off)"),
    };
    let advice = if bearer {
        "the server rejected a freshly obtained access token; check that the client's \
         credentials are valid and allowed to call this endpoint"
    } else {
        "the server rejected the credentials; check the user name and password"
    };
    Error::Auth {
        message: format!("{detail}; {advice}"),
        status: Some(status),
    }
}
