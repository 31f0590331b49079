//! Fake LiquidAnalytics "Liquid Decisions" batch import/export API (toucan_ld.md part B).
//!
//! | route | behaviour |
//! |---|---|
//! | `POST /ls/api/oauth2/token` | form `grant_type=password`, `username`, `password`, optional `client_id`/`client_secret`, `scope=community=<c>` → `{"access_token","token_type":"bearer","expires_in","scope"}`; errors `{"error","error_description"}`: 400 `unsupported_grant_type`, 401 `invalid_client`, 400 `invalid_grant` ("Bad credentials"), 400 `invalid_scope` (unknown community) |
//! | `GET /ls/api/oauth2/validate` | 200 for a live token, 401 otherwise |
//! | `POST /ls/api/oauth2/setCommunity` | form `community`: binds a token issued without one |
//! | `POST /ls/api/batch/import` | multipart `file` (streamed to disk, counted, hashed), `template` (JSON file), `jobName`, `notificationEmail`, `contentType`, `itemType`, `merge`, `headerRow` → the job status (`Initialized`) |
//! | `POST /ls/api/batch/export` | form `jobName`, `notificationEmail`, `itemType`, `contentType`, `sqlQuery`, `filters`, `template`, `rowHeader` → the job status (`Initialized`) |
//! | `POST /ls/api/batch/status` | form `jobId` → moves the job one step (see [`job`]) and returns its status; 404 unknown id |
//! | `POST /ls/api/batch/cancel` | form `jobId` → `Canceling` (then `Canceled` on the next poll); 409 if the job already ended |
//! | `GET /ls/api/batch/download/{jobId}/{token}` | a completed export's file (the link from `downloadLinks`) |
//!
//! Every batch route needs `Authorization: Bearer <token>` (401 `invalid_token` otherwise) and a
//! token bound to a community (403 `access_denied` otherwise). The community never appears in
//! URLs, as in the official examples.
//!
//! # Choices where the spec is UNCERTAIN or UNCONFIRMED
//!
//! - Import `contentType` must be spelled as documented, `application/json` or `plain/text`
//!   (sic); anything else (including `text/plain`) gets the job `Rejected` with a reason.
//!   Exports accept `application/json`, `text/plain` and `plain/text`.
//! - Job-level problems are reported in the job (`Rejected` at the first poll, with `reason`),
//!   not as HTTP errors: missing `itemType`/`contentType`, a file that is not JSON objects (an
//!   array of objects, or one object per line) or not well-formed CSV, a template that is not
//!   JSON, a `merge`/`headerRow` that is not a boolean. A request without a `file` part is a
//!   malformed request: 400.
//! - CSV record counts skip the header when `headerRow=true`; quoted newlines stay in a record.
//! - `recordsProcessed` and `runTime` are strings (`"0"`), as in the wiki's only example
//!   (`numbers_as_strings: false` sends numbers). `submitTime` is `2015-05-26T13:35:25+0000`.
//! - A completed export carries `"downloadLinks": ["<url>"]` (field name undocumented). The
//!   link holds an unguessable token and works with or without a bearer token; the file is
//!   generated deterministic data of the `itemType` (`export_rows` items, or `LIMIT n` of
//!   `sqlQuery`): a JSON array, or CSV with a header row when `rowHeader=true`.
//! - Cancel of a finished job answers 409 `{"error":"conflict",…}`; unknown ids 404.
//!
//! # Control API
//!
//! | route | effect |
//! |---|---|
//! | `POST /__sandbox/ld/next-job` `{"fate":"fail"\|"reject","reason"?,"count"?}` | the next valid jobs fail while processing / are rejected |
//! | `GET /__sandbox/ld/jobs` | every job with its parameters and fate |
//! | `GET /__sandbox/ld/imports` | what was imported: job id, item type, records, bytes, sha256, merge, template |
//! | `GET /__sandbox/ld/imports/{jobId}/file` | the uploaded bytes as received |
//! | `POST /__sandbox/ld/expire-tokens` | invalidates every access token |
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = sandbox::ld::start(Default::default(), sandbox::Faults::new(), sandbox::Stats::new()).await?;
//! let c = server.credentials();
//! println!("POST {}/ls/api/oauth2/token as {} in community {}", c.base_url, c.username, c.community);
//! # Ok(()) }
//! ```

mod auth;
mod batch;
mod control;
mod count;
pub mod job;
mod state;

use crate::faults::{Faults, InjectedError};
use crate::server::ServerGuard;
use crate::stats::Stats;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;
use std::sync::Arc;

/// Configuration of the fake LD server.
#[derive(Clone, Debug)]
pub struct LdConfig {
    /// Port (0 = a free port).
    pub port: u16,
    /// Seed of generated export data.
    pub seed: u64,
    /// OAuth client id (checked when sent).
    pub client_id: String,
    /// OAuth client secret (checked when sent).
    pub client_secret: String,
    /// User name of the password grant.
    pub username: String,
    /// Password of the password grant.
    pub password: String,
    /// The one community that exists.
    pub community: String,
    /// Access token lifetime in seconds (real time).
    pub token_ttl_secs: u64,
    /// Status polls a job spends in `Processing` before it ends.
    pub processing_polls: u32,
    /// Send `recordsProcessed`/`runTime` as strings, like the wiki example.
    pub numbers_as_strings: bool,
    /// Items an export produces (without `LIMIT` in `sqlQuery`).
    pub export_rows: u64,
    /// Largest accepted upload in bytes.
    pub max_upload_bytes: u64,
}

impl Default for LdConfig {
    fn default() -> Self {
        LdConfig {
            port: 0,
            seed: 1,
            client_id: "sandbox-ld-client".into(),
            client_secret: "sandbox-ld-secret".into(),
            username: "sandbox-user@example.com".into(),
            password: "sandbox-password".into(),
            community: "SandboxCommunity".into(),
            token_ttl_secs: 3600,
            processing_polls: 2,
            numbers_as_strings: true,
            export_rows: 25,
            max_upload_bytes: 4 << 30,
        }
    }
}

/// What a client needs to talk to the fake LD server (fake, public values).
#[derive(Clone, Debug, Serialize)]
pub struct LdCredentials {
    /// Base URL (`LD_BASE_URL`).
    pub base_url: String,
    /// `LD_CLIENT_ID`.
    pub client_id: String,
    /// `LD_CLIENT_SECRET`.
    pub client_secret: String,
    /// `LD_USERNAME`.
    pub username: String,
    /// `LD_PASSWORD`.
    pub password: String,
    /// `LD_COMMUNITY`.
    pub community: String,
}

/// A running fake LD server; dropping it stops it and deletes stored uploads.
#[derive(Debug)]
pub struct LdServer {
    guard: ServerGuard,
    state: Arc<state::Ld>,
}

impl LdServer {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &str {
        self.guard.base_url()
    }
    /// Credentials and community.
    pub fn credentials(&self) -> LdCredentials {
        let c = &self.state.config;
        LdCredentials {
            base_url: self.base_url().to_owned(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
            community: c.community.clone(),
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
    /// Every job so far (imports keep their stored file's path, size and SHA-256).
    pub fn jobs(&self) -> Vec<job::Job> {
        self.state.lock().jobs.clone()
    }
    /// Makes the next valid job end with `fate` instead of completing.
    pub fn force_next_job(&self, fate: job::Fate) {
        self.state.lock().forced.push_back(fate);
    }
}

/// Injected faults in LD's error format.
fn render_injected(error: InjectedError) -> Response {
    let code = if error == InjectedError::RateLimited {
        "rate_limited"
    } else {
        "server_error"
    };
    auth::oauth_error(error.status(), code, "injected fault")
}

/// Starts the fake LD server on `127.0.0.1`.
pub async fn start(config: LdConfig, faults: Faults, stats: Stats) -> std::io::Result<LdServer> {
    let faults = faults.rendered_by(Arc::new(render_injected));
    let port = config.port;
    let limit =
        usize::try_from(config.max_upload_bytes.saturating_add(1 << 20)).unwrap_or(usize::MAX);
    let state = Arc::new(state::Ld::new(config, faults.clone(), stats.clone())?);
    let weak = Arc::downgrade(&state);
    faults.on_expire_tokens(Arc::new(move || {
        if let Some(state) = weak.upgrade() {
            state.lock().tokens.clear();
        }
    }));
    let routes = Router::new()
        .route("/ls/api/oauth2/token", post(auth::token))
        .route("/ls/api/oauth2/validate", get(auth::validate))
        .route("/ls/api/oauth2/setCommunity", post(auth::set_community))
        .route("/ls/api/batch/import", post(batch::import))
        .route("/ls/api/batch/export", post(batch::export))
        .route("/ls/api/batch/status", post(batch::status))
        .route("/ls/api/batch/cancel", post(batch::cancel))
        .route(
            "/ls/api/batch/download/{job_id}/{token}",
            get(batch::download),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone());
    let service =
        crate::server::instrument(routes, &faults, &stats).merge(control::routes(state.clone()));
    let guard = crate::server::serve(service, port).await?;
    let _ = state.base_url.set(guard.base_url().to_owned());
    Ok(LdServer { guard, state })
}
