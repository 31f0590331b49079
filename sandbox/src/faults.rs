//! Fault injection: a cloneable [`Faults`] state, its control routes and the middleware applying
//! the generic knobs.
//!
//! Generic knobs, applied by [`Faults::apply`] to every service route (never to `/__sandbox/*`),
//! optionally restricted to path prefixes with `only_paths`:
//!
//! | knob | effect |
//! |---|---|
//! | `latency_ms` | sleep before answering |
//! | `error_rate` + `error_status` | answer that fraction of calls (seeded RNG, `seed`) with `error_status` (default 503) |
//! | `rate_limit_every` + `retry_after_secs` | every k-th call gets 429 with `Retry-After: <secs>` |
//! | `drop_every` | every k-th call: the connection is closed without any response |
//! | `truncate_every` | every k-th call: the body is cut at half its `Content-Length`, then the connection is closed |
//! | `spike_every` + `spike_ms` | every k-th call waits `spike_ms` (default 1000) more before it is answered: a latency spike beyond a client's timeout |
//! | `expire_tokens_every` | every k-th call: the service first revokes every access token it issued, so the call meets the service's own expired-token answer |
//! | `expire_urls_every` | every k-th call: the service first expires every pre-signed URL it issued (services without such URLs ignore it) |
//! | `max_faults` | stop injecting after this many faults (e.g. "fail twice, then work") |
//!
//! Service-specific knobs are read by the services themselves: `url_ttl_secs` (lifetime of
//! pre-signed URLs) and `token_ttl_secs` (lifetime of issued access tokens).
//!
//! Control: `GET /__sandbox/faults` returns the current [`FaultConfig`]; `POST /__sandbox/faults`
//! replaces it (omitted fields take their defaults, unknown fields are rejected with 400) and
//! resets the call counter and RNG; `DELETE /__sandbox/faults` clears all faults.
//!
//! Over HTTP: `curl -X POST $BASE/__sandbox/faults -d '{"rate_limit_every":2,"retry_after_secs":1}'`.
//! In process:
//!
//! ```
//! use sandbox::{FaultConfig, Faults};
//! let faults = Faults::new();
//! let mut knobs = FaultConfig::default();
//! knobs.rate_limit_every = 2; // every second call: 429 + Retry-After
//! knobs.max_faults = Some(1); // ...but only once
//! faults.set(knobs);
//! assert_eq!(faults.config().rate_limit_every, 2);
//! ```

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::server::ConnectionControl;
use crate::stats::Stats;

/// The fault knobs of one service. Every field is optional in JSON; `0` / empty means "off".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Delay added before every in-scope response, in milliseconds.
    pub latency_ms: u64,
    /// Fraction (0.0..=1.0) of in-scope calls answered with `error_status`.
    pub error_rate: f64,
    /// Status used for `error_rate` faults (default 503). The service renders its own error body.
    pub error_status: u16,
    /// Every k-th in-scope call is answered 429 (0 = off).
    pub rate_limit_every: u64,
    /// `Retry-After` seconds sent with injected 429s (default 1).
    pub retry_after_secs: u64,
    /// Every k-th in-scope call has its connection closed without a response (0 = off).
    pub drop_every: u64,
    /// Every k-th in-scope call gets a body cut short of its `Content-Length` (0 = off).
    pub truncate_every: u64,
    /// Every k-th in-scope call is delayed by `spike_ms` on top of `latency_ms` (0 = off).
    pub spike_every: u64,
    /// The extra delay of a latency spike, in milliseconds (default 1000).
    pub spike_ms: u64,
    /// Every k-th in-scope call: before it is handled, the service revokes every access token it
    /// has issued (as if they had all expired), so that call and the ones after it meet the
    /// service's own expired-token answer until the client gets a new token (0 = off).
    pub expire_tokens_every: u64,
    /// Every k-th in-scope call: before it is handled, every pre-signed URL the service has
    /// issued expires, so that call (if it is a download) meets the storage's expiry answer;
    /// URLs issued afterwards work (0 = off). Services without pre-signed URLs ignore it.
    pub expire_urls_every: u64,
    /// Path prefixes the generic faults apply to; empty = every service route.
    pub only_paths: Vec<String>,
    /// Stop injecting generic faults after this many (None = no limit).
    pub max_faults: Option<u64>,
    /// Seed of the RNG deciding `error_rate` faults.
    pub seed: u64,
    /// Lifetime of pre-signed / blob URLs issued from now on, in seconds (None = service default).
    pub url_ttl_secs: Option<u64>,
    /// Lifetime of access tokens issued from now on, in seconds (None = service default).
    pub token_ttl_secs: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_rate: 0.0,
            error_status: 503,
            rate_limit_every: 0,
            retry_after_secs: 1,
            drop_every: 0,
            truncate_every: 0,
            spike_every: 0,
            spike_ms: 1000,
            expire_tokens_every: 0,
            expire_urls_every: 0,
            only_paths: Vec::new(),
            max_faults: None,
            seed: 0,
            url_ttl_secs: None,
            token_ttl_secs: None,
        }
    }
}

/// What an injected error response should say; the service turns it into its own error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InjectedError {
    /// A 429 rate-limit answer (the middleware adds `Retry-After`).
    RateLimited,
    /// A server error with this status (from `error_status`).
    Server(StatusCode),
}

impl InjectedError {
    /// The HTTP status of this error.
    pub fn status(self) -> StatusCode {
        match self {
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Server(status) => status,
        }
    }
}

/// Renders an injected error in the service's own error format.
pub type ErrorRenderer = Arc<dyn Fn(InjectedError) -> Response + Send + Sync>;

/// The decision for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Pass,
    Error(InjectedError),
    Drop,
    Truncate,
}

struct FaultState {
    config: FaultConfig,
    calls: u64,
    injected: u64,
    rng: StdRng,
}

impl FaultState {
    fn new(config: FaultConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self {
            config,
            calls: 0,
            injected: 0,
            rng,
        }
    }

    fn in_scope(&self, path: &str) -> bool {
        !path.starts_with("/__sandbox/")
            && (self.config.only_paths.is_empty()
                || self.config.only_paths.iter().any(|p| path.starts_with(p)))
    }

    fn decide(&mut self) -> Verdict {
        self.calls += 1;
        let n = self.calls;
        let latency_ms = self.config.latency_ms;
        if self
            .config
            .max_faults
            .is_some_and(|max| self.injected >= max)
        {
            return Verdict::pass(latency_ms);
        }
        let every = |k: u64| k > 0 && n.is_multiple_of(k);
        let decision = if every(self.config.drop_every) {
            Decision::Drop
        } else if every(self.config.rate_limit_every) {
            Decision::Error(InjectedError::RateLimited)
        } else if self.config.error_rate > 0.0 && self.rng.random::<f64>() < self.config.error_rate
        {
            let status = StatusCode::from_u16(self.config.error_status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Decision::Error(InjectedError::Server(status))
        } else if every(self.config.truncate_every) {
            Decision::Truncate
        } else {
            Decision::Pass
        };
        let spike = every(self.config.spike_every);
        let expire_tokens = every(self.config.expire_tokens_every);
        let expire_urls = every(self.config.expire_urls_every);
        // One call counts once against `max_faults`, however many knobs hit it.
        if decision != Decision::Pass || spike || expire_tokens || expire_urls {
            self.injected += 1;
        }
        Verdict {
            decision,
            latency_ms,
            spike_ms: if spike { self.config.spike_ms } else { 0 },
            expire_tokens,
            expire_urls,
        }
    }
}

/// What happens to one in-scope call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Verdict {
    decision: Decision,
    /// The constant delay before anything else.
    latency_ms: u64,
    /// A spike's extra delay (0 = no spike).
    spike_ms: u64,
    /// Revoke the service's access tokens before handling the call.
    expire_tokens: bool,
    /// Expire the service's pre-signed URLs before handling the call.
    expire_urls: bool,
}

impl Verdict {
    fn pass(latency_ms: u64) -> Self {
        Self {
            decision: Decision::Pass,
            latency_ms,
            spike_ms: 0,
            expire_tokens: false,
            expire_urls: false,
        }
    }
}

/// Revokes what a service has issued (access tokens, pre-signed URLs); registered by the
/// service with [`Faults::on_expire_tokens`] / [`Faults::on_expire_urls`].
pub type Revoker = Arc<dyn Fn() + Send + Sync>;

/// The revokers a service registered.
#[derive(Default)]
struct Revokers {
    tokens: Option<Revoker>,
    urls: Option<Revoker>,
}

/// Shared fault state of one service: cheap to clone, all clones see the same knobs.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    renderer: ErrorRenderer,
    revokers: Arc<Mutex<Revokers>>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("config", &self.config())
            .finish_non_exhaustive()
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults {
    /// No faults; injected errors are rendered as `{"error":{"message":"..."}}` JSON.
    pub fn new() -> Self {
        Self::with_renderer(Arc::new(|error: InjectedError| {
            let body = serde_json::json!({"error": {"message": format!("injected fault: {}", error.status())}});
            (error.status(), Json(body)).into_response()
        }))
    }

    /// No faults; injected errors are rendered by `renderer` (the service's error format).
    pub fn with_renderer(renderer: ErrorRenderer) -> Self {
        Self {
            state: Arc::new(Mutex::new(FaultState::new(FaultConfig::default()))),
            renderer,
            revokers: Arc::new(Mutex::new(Revokers::default())),
        }
    }

    /// The same shared knobs with a different error renderer (used by each service).
    pub fn rendered_by(&self, renderer: ErrorRenderer) -> Self {
        Self {
            state: self.state.clone(),
            renderer,
            revokers: self.revokers.clone(),
        }
    }

    /// Registers how this service revokes its access tokens, for `expire_tokens_every`.
    /// The hook should hold the service state weakly: the state holds these faults.
    pub fn on_expire_tokens(&self, revoker: Revoker) {
        self.lock_revokers().tokens = Some(revoker);
    }

    /// Registers how this service expires its pre-signed URLs, for `expire_urls_every`.
    /// The hook should hold the service state weakly: the state holds these faults.
    pub fn on_expire_urls(&self, revoker: Revoker) {
        self.lock_revokers().urls = Some(revoker);
    }

    fn lock_revokers(&self) -> MutexGuard<'_, Revokers> {
        self.revokers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Runs the revokers the verdict asks for (outside the lock: they take service locks).
    fn revoke(&self, verdict: &Verdict) {
        let (tokens, urls) = {
            let revokers = self.lock_revokers();
            (revokers.tokens.clone(), revokers.urls.clone())
        };
        if let (true, Some(revoke)) = (verdict.expire_tokens, tokens) {
            revoke();
        }
        if let (true, Some(revoke)) = (verdict.expire_urls, urls) {
            revoke();
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// The current knobs.
    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    /// In-scope calls since the knobs were last set.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// In-scope calls hit by at least one fault since the knobs were last set (spikes and
    /// revocations included, unlike [`StatsSnapshot::faults_injected`](crate::StatsSnapshot)).
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Replaces the knobs and resets the call counter and RNG.
    pub fn set(&self, config: FaultConfig) {
        *self.lock() = FaultState::new(config);
    }

    /// Lifetime of pre-signed URLs, if a test set one.
    pub fn url_ttl(&self) -> Option<Duration> {
        self.lock().config.url_ttl_secs.map(Duration::from_secs)
    }

    /// Lifetime of access tokens, if a test set one.
    pub fn token_ttl(&self) -> Option<Duration> {
        self.lock().config.token_ttl_secs.map(Duration::from_secs)
    }

    /// Renders an error in the service's format (services use this for their own 429s too).
    pub fn render(&self, error: InjectedError) -> Response {
        (self.renderer)(error)
    }

    /// The verdict for a request path, or None when the path is out of scope.
    fn decide(&self, path: &str) -> Option<Verdict> {
        let mut state = self.lock();
        if !state.in_scope(path) {
            return None;
        }
        Some(state.decide())
    }

    /// `GET`/`POST`/`DELETE /__sandbox/faults`.
    pub fn control_routes(&self) -> Router {
        Router::new()
            .route(
                "/__sandbox/faults",
                get(|State(f): State<Faults>| async move { Json(f.config()) })
                    .post(
                        |State(f): State<Faults>, Json(config): Json<FaultConfig>| async move {
                            f.set(config);
                            Json(f.config())
                        },
                    )
                    .delete(|State(f): State<Faults>| async move {
                        f.set(FaultConfig::default());
                        Json(f.config())
                    }),
            )
            .with_state(self.clone())
    }

    /// Middleware applying the generic knobs. Install with
    /// `router.layer(axum::middleware::from_fn_with_state((faults, stats), Faults::apply))`.
    pub async fn apply(
        State((faults, stats)): State<(Faults, Stats)>,
        request: Request,
        next: Next,
    ) -> Response {
        let Some(verdict) = faults.decide(request.uri().path()) else {
            return next.run(request).await;
        };
        let delay = verdict.latency_ms.saturating_add(verdict.spike_ms);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        // The counter is of replaced responses; spikes and revocations leave the answer alone.
        if verdict.decision != Decision::Pass {
            stats.record_fault();
        }
        faults.revoke(&verdict);
        match verdict.decision {
            Decision::Pass => next.run(request).await,
            Decision::Error(error) => {
                // Read a small request body before answering, as a gateway does:
                // answering first would break the client's pipe mid-upload, which
                // is the dropped-connection fault, not this one.
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_BEFORE_ERROR).await;
                let retry_after = faults.lock().config.retry_after_secs;
                let mut response = faults.render(error);
                if error == InjectedError::RateLimited {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
                }
                response
            }
            Decision::Drop => {
                let control = request.extensions().get::<ConnectionControl>().cloned();
                drop(request);
                drop_connection(control).await
            }
            Decision::Truncate => truncate(next.run(request).await),
        }
    }
}

/// How much of a request body an injected error reads before answering.
const DRAIN_BEFORE_ERROR: usize = 8 << 20;

/// Closes the request's connection; never returns a response when the connection can be killed.
async fn drop_connection(control: Option<ConnectionControl>) -> Response {
    match control {
        Some(control) => {
            control.drop_connection();
            // The connection task drops this future together with the connection.
            std::future::pending::<Response>().await
        }
        // Not served through `server::serve` (e.g. a router called directly): fail the body.
        None => Response::new(Body::from_stream(futures::stream::once(async {
            Err::<Bytes, _>(std::io::Error::other("injected dropped connection"))
        }))),
    }
}

/// Keeps the status and headers, announces the full `Content-Length`, sends half the bytes, then
/// fails the body so the server closes the connection mid-body.
fn truncate(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| body.size_hint().exact());
    let keep = declared.map(|len| len / 2);
    if let Some(len) = declared {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let stream = body.into_data_stream();
    let cut = futures::stream::unfold(
        (stream, keep, false),
        |(mut stream, remaining, done)| async move {
            if done {
                return None;
            }
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let limit = remaining.unwrap_or((chunk.len() / 2) as u64);
                    let take = usize::try_from(limit)
                        .unwrap_or(usize::MAX)
                        .min(chunk.len());
                    if take < chunk.len() || remaining.is_none() {
                        // Emit the cut piece; the chained error follows.
                        Some((Ok(chunk.slice(..take)), (stream, Some(0), true)))
                    } else {
                        let left = remaining.map(|r| r - take as u64);
                        Some((Ok(chunk), (stream, left, false)))
                    }
                }
                Some(Err(error)) => Some((Err(std::io::Error::other(error)), (stream, None, true))),
                None => None,
            }
        },
    );
    let failing = cut.chain(futures::stream::once(async {
        // Give the server a moment to flush the head and the partial body; failing the body
        // right away would make hyper discard its write buffer and the client would see no
        // response at all (that is the `drop_every` fault, not this one).
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err::<Bytes, _>(std::io::Error::other("injected truncated body"))
    }));
    Response::from_parts(parts, Body::from_stream(failing))
}
