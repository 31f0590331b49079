//! Fake Toucan Toco Operations API (toucan_ld.md part A, esp. A.10).
//!
//! | route | behaviour |
//! |---|---|
//! | `GET /` | backend version JSON |
//! | `POST /login` | JSON `{"username","password"}` → `{"token": "<jwt-shaped>"}`; bad credentials → 401 **plain text** `Login failed. Invalid username or password`; after `login_failures_per_minute` (5) failures within a minute every attempt, right credentials included, gets 429 `{"message":"Too many requests in a short time, please wait a bit and try again."}` |
//! | `POST /{sa}/data/sources[?validation=false][&stage=]` | multipart `data` = `{"filename": "<name>"}` (or a plain `filename` field) + `file` (+ single-chunk `dz*` fields) → `{"operation_id"}`; the file is streamed to disk and kept |
//! | `POST /{sa}/operations?stage=` | `{"origin"?, "operations": [...], "output_domains"?, "input_domains"?, "function_names"?}` → `{"operation_id"}`; 400 `{"message"}` for an empty list or an unknown operation |
//! | `POST /{sa}/data/preprocess?stage=` | `{"async": true}` or partial domains → `preprocess_data_sources` |
//! | `POST /{sa}/populate?stage=[&release]` | populate basemaps, reports, dashboards (+ `release`) |
//! | `POST /{sa}/data/release?stage=`, `POST /{sa}/release?stage=` | `release` |
//! | `POST /{sa}/config/operations?notify=&stage=` | same as `/{sa}/operations` (the form naas uses) |
//! | `GET /{sa}/operations/state/{id}` | `{"status": "pending"\|"running"\|"successful"\|"failed"}`; 404 unknown id |
//!
//! Small-app routes accept HTTP Basic (the configured user) or `Bearer <token from /login>`;
//! anything else gets 401 `{"statusCode":401,"message":"Unauthorized"}`. A small app other than
//! the configured one answers 404.
//!
//! # Choices where the spec is UNCONFIRMED
//!
//! - Without `stage` a call targets `production`; a stage other than `staging`/`production` is 400.
//! - Operations answer `pending` at the first state poll, `running` for the next
//!   `running_polls` polls, then `successful` (or `failed` when forced). An upload creates an
//!   operation named `upload_data_source` that is polled the same way.
//! - `validation` is recorded, not acted on: file contents are never validated.
//! - Data-source names must be plain file names; when `data_sources` is configured, names
//!   outside it are refused with 400 (the docs say the name must be declared in the ETL config).
//!   `dztotalchunkcount` > 1 is refused; a `dztotalfilesize` that disagrees with the bytes
//!   received is refused.
//! - Errors other than the login failure are JSON `{"message": ...}`.
//!
//! # Control API
//!
//! | route | effect |
//! |---|---|
//! | `GET /__sandbox/toucan/uploads` | every stored file: stage, filename, size, sha256, path, validation, operation id |
//! | `GET /__sandbox/toucan/uploads/{stage}/{filename}` | the stored bytes |
//! | `GET /__sandbox/toucan/operations` | every operation with its names, stage, domains, polls, status |
//! | `POST /__sandbox/toucan/fail-next` `{"count":1,"at":"running"\|"pending"}` | the next operations fail |
//! | `POST /__sandbox/toucan/reset-login-limit` | forgets failed logins |
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = sandbox::toucan::start(Default::default(), sandbox::Faults::new(), sandbox::Stats::new()).await?;
//! let c = server.credentials();
//! println!("{}/{}/operations?stage=staging as {}", c.api_url, c.small_app, c.username);
//! # Ok(()) }
//! ```

mod auth;
mod control;
pub mod operation;
mod routes;
mod state;
mod uploads;

pub use state::UploadRecord;

use crate::faults::{Faults, InjectedError};
use crate::server::ServerGuard;
use crate::stats::Stats;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use std::sync::Arc;

/// Configuration of the fake Toucan server.
#[derive(Clone, Debug)]
pub struct ToucanConfig {
    /// Port (0 = a free port).
    pub port: u16,
    /// Seed of operation ids.
    pub seed: u64,
    /// The one small app that exists.
    pub small_app: String,
    /// User with the contributor right.
    pub username: String,
    /// Their password.
    pub password: String,
    /// Data sources declared in the ETL config (empty = any plain file name).
    pub data_sources: Vec<String>,
    /// State polls an operation answers `running` before it ends.
    pub running_polls: u32,
    /// Failed logins per minute before every login attempt is refused.
    pub login_failures_per_minute: u32,
    /// Largest accepted upload in bytes.
    pub max_upload_bytes: u64,
}

impl Default for ToucanConfig {
    fn default() -> Self {
        ToucanConfig {
            port: 0,
            seed: 1,
            small_app: "sandbox-app".into(),
            username: "contributor@example.com".into(),
            password: "sandbox-password".into(),
            data_sources: Vec::new(),
            running_polls: 2,
            login_failures_per_minute: 5,
            max_upload_bytes: 4 << 30,
        }
    }
}

/// What a client needs to talk to the fake Toucan server (fake, public values).
#[derive(Clone, Debug, Serialize)]
pub struct ToucanCredentials {
    /// API root (`TOUCAN_API_URL`), without the small app.
    pub api_url: String,
    /// Small app name (`TOUCAN_SMALL_APP`).
    pub small_app: String,
    /// `TOUCAN_USERNAME`.
    pub username: String,
    /// `TOUCAN_PASSWORD`.
    pub password: String,
}

/// A running fake Toucan server; dropping it stops it and deletes stored uploads.
#[derive(Debug)]
pub struct ToucanServer {
    guard: ServerGuard,
    state: Arc<state::Toucan>,
}

impl ToucanServer {
    /// API root, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &str {
        self.guard.base_url()
    }
    /// Small app and user.
    pub fn credentials(&self) -> ToucanCredentials {
        let c = &self.state.config;
        ToucanCredentials {
            api_url: self.base_url().to_owned(),
            small_app: c.small_app.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
        }
    }
    /// The shared fault knobs.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }
    /// The shared request counters.
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }
    /// The directory holding stored uploads (`<stage>/<filename>`); deleted on drop.
    pub fn storage_dir(&self) -> &std::path::Path {
        self.state.dir.path()
    }
    /// Makes the next operation fail at the given point.
    pub fn fail_next_operation(&self, at: operation::FailAt) {
        self.state.lock().forced.push_back(at);
    }
    /// Every operation so far.
    pub fn operations(&self) -> Vec<operation::Operation> {
        self.state.lock().operations.clone()
    }
    /// Every stored data-source file.
    pub fn uploads(&self) -> Vec<UploadRecord> {
        self.state.lock().uploads.clone()
    }
}

fn render_injected(error: InjectedError) -> Response {
    auth::message(
        error.status(),
        format!("injected fault: {}", error.status()),
    )
    .into_response()
}

/// Starts the fake Toucan server on `127.0.0.1`.
pub async fn start(
    config: ToucanConfig,
    faults: Faults,
    stats: Stats,
) -> std::io::Result<ToucanServer> {
    let faults = faults.rendered_by(Arc::new(render_injected));
    let port = config.port;
    let limit =
        usize::try_from(config.max_upload_bytes.saturating_add(1 << 20)).unwrap_or(usize::MAX);
    let state = Arc::new(state::Toucan::new(config, faults.clone(), stats.clone())?);
    let weak = Arc::downgrade(&state);
    faults.on_expire_tokens(Arc::new(move || {
        if let Some(state) = weak.upgrade() {
            state.lock().tokens.clear();
        }
    }));
    let service_routes = Router::new()
        .route("/", get(routes::version))
        .route("/login", post(auth::login))
        .route("/{sa}/data/sources", post(uploads::upload))
        .route("/{sa}/operations", post(routes::operations))
        .route("/{sa}/config/operations", post(routes::operations))
        .route("/{sa}/operations/state/{id}", get(routes::operation_state))
        .route("/{sa}/data/preprocess", post(routes::preprocess))
        .route("/{sa}/populate", post(routes::populate))
        .route("/{sa}/data/release", post(routes::release))
        .route("/{sa}/release", post(routes::release))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone());
    let service = crate::server::instrument(service_routes, &faults, &stats)
        .merge(control::routes(state.clone()));
    let guard = crate::server::serve(service, port).await?;
    Ok(ToucanServer { guard, state })
}
