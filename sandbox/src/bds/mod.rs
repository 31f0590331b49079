//! Fake D2L Brightspace Data Sets (BDS) tenant: OAuth with rotating refresh tokens, the
//! legacy `/dataExport/bds` routes, the newer `/datasets/bds` routes, downloads through a
//! redirect to a separate blob origin, rate-limit headers, and a control API that moves
//! time forward and tells tests what a correctly synced database must contain.
//!
//! [`start`] runs three listeners on `127.0.0.1`, mirroring D2L's three hosts:
//!
//! | listener | routes |
//! |---|---|
//! | API (the tenant, `https://<school>.brightspace.com`) | `/d2l/api/lp/{ver}/dataExport/bds[/list]`, `…/dataExport/bds/download/{plugin}`, `…/dataExport/bds/{plugin}/{identifier}`, `…/datasets/bds`, `…/datasets/bds/{schema}/extracts`, `…/datasets/bds/{schema}/plugins/{plugin}/extracts[/{extractId}]`, and the `/__sandbox/bds/*` control routes |
//! | auth (`https://auth.brightspace.com`) | `POST /core/connect/token` (also reached as `//core/connect/token`) |
//! | blob storage (S3-like, another port) | `GET /blobs/{plugin}/{identifier}/{file}?X-Amz-Expires=…&X-Amz-Signature=…` |
//!
//! # Behaviour
//!
//! - **Tokens.** `grant_type=refresh_token` with the client authenticated by HTTP Basic or by
//!   `client_id`/`client_secret` in the form. Refresh tokens are single-use: each grant returns
//!   a new one and the old one answers 400 `{"error":"invalid_grant"}`. Access tokens live
//!   `access_token_ttl_secs` of *virtual* time (or `token_ttl_secs` from the fault knobs).
//!   Publishing a day moves the virtual clock a day, so access tokens issued before are
//!   expired afterwards (401); clients refresh as they would in production.
//!   The granted scope is the requested one (default: the three BDS scopes); routes check it
//!   and answer 403 without `Retry-After` when it is missing (a permission error).
//! - **Extracts.** Four data sets (User Enrollments, Users, Organizational Units, Grade
//!   Results; see [`catalog`]) with a full and a differential plugin each. Time is virtual:
//!   the tenant starts with the fulls of generation 0 and `initial_days` days of
//!   differentials; each further day (control `advance`) publishes a differential per data
//!   set, and every `full_every_days` a full. Differentials hold inserts and updates only
//!   (bds.md §8): User Enrollments loses rows by hard delete (visible only by comparing
//!   fulls), Organizational Units soft-deletes (`IsDeleted = True` arrives as an update).
//!   Differentials older than `diff_retention_days` and all but the newest `full_retention`
//!   fulls expire (unlisted; their links answer 404); the control API can expire chosen
//!   generations to create a gap a client must notice.
//! - **Downloads.** Every download route answers `302 Found` with a pre-signed URL on the
//!   blob listener, valid `url_ttl_secs` of virtual time (or `url_ttl_secs` from the fault
//!   knobs). The blob listener rejects any request carrying `Authorization` (400, S3's
//!   "Only one auth mechanism allowed", counted in [`Stats`]), a bad signature (403
//!   `SignatureDoesNotMatch`) and an expired URL (403 `AccessDenied`, "Request has expired").
//!   The body is the ZIP (one CSV, see [`zipcache`]) streamed from a temp cache with
//!   `Content-Length`, an `ETag`, and single `Range` requests (`If-Range` honoured) answered 206.
//! - **Rate limits.** Every authenticated API call costs `request_cost` credits from a bucket
//!   of `credits_per_minute` that refills a (real) minute after its first use; answers carry
//!   `X-Rate-Limit-Remaining`, `X-Rate-Limit-Reset` and `X-Request-Cost`. An empty bucket
//!   answers 429 with `Retry-After` and none of the X- headers. The control knob
//!   `quota_403_next` makes the next download calls answer 403 with `Retry-After` (D2L's
//!   quota signal).
//!
//! # Choices where bds.md is UNCERTAIN
//!
//! - Default `pageSize` of `/dataExport/bds` is 5 (so the eight plugins span two pages);
//!   `page` is 1-based; generated links use lower-case `dataexport`; both spellings route.
//! - `/datasets/bds*` pages are `{"Objects": [...], "Next": url|null}` (default page size 100,
//!   `pageSize` accepted); extract lists are returned in a scrambled (deterministic) order.
//! - `extractId` on the new routes and `identifier` on the legacy route are the epoch seconds
//!   of `QueuedForProcessingDate`; new-route `DownloadLink`s point at the legacy download route.
//! - `PreviousDataSets` lists the other available extracts of the same plugin, newest first.
//! - CSV: booleans `True`/`False` (`bools_as_digits` for `1`/`0`), datetimes
//!   `YYYY-MM-DDTHH:MM:SS.fffZ`, CRLF line ends, CSV name `<DataSet>_<Full|Differential>_<gen>.csv`.
//! - Column evolution: with `append_column_from_day`, extracts from that generation on end
//!   with an extra nullable `ExternalId` column (minor versions append, bds.md §7); it is NULL
//!   for rows last changed before, so differentials and fulls stay consistent.
//! - Error bodies are JSON `{"Title","Status","Detail"}`; OAuth errors are `{"error","error_description"}`.
//! - Downloads cost rate-limit credits like any other call.
//!
//! # Control API (on the API listener, never rate limited or faulted)
//!
//! | route | effect |
//! |---|---|
//! | `GET /__sandbox/bds/state` | virtual now, generation, every extract (expired too) |
//! | `POST /__sandbox/bds/advance` `{"days":1,"seconds":0}` | publish `days` days, then move the clock `seconds` |
//! | `POST /__sandbox/bds/publish-full` | publish fulls of the current generation now |
//! | `POST /__sandbox/bds/expire` `{"generations":[2]}` or `{"keep_last":3}` | expire differentials |
//! | `GET /__sandbox/bds/expected/{data set name or schema id}` | the truth: every row a synced table must hold |
//! | `POST /__sandbox/bds/limits` `{"credits_per_minute":..,"request_cost":..,"quota_403_next":..,"quota_retry_after_secs":..}` | rate-limit knobs (omitted = unchanged), resets the bucket |
//! | `POST /__sandbox/bds/expire-tokens` | every issued access token becomes invalid |
//! | `POST /__sandbox/bds/refresh-token` | issues a fresh refresh token (a human redoing consent) and returns it |
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sandbox::bds::{self, BdsConfig};
//! let server = bds::start(BdsConfig::default(), sandbox::Faults::new(), sandbox::Stats::new()).await?;
//! println!("{} (token endpoint {})", server.base_url(), server.credentials().token_url);
//! server.advance_days(1); // publish the next differentials
//! let truth = server.expected("User Enrollments").await;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod blob;
pub mod catalog;
mod control;
mod extracts;
pub mod rows;
mod state;
pub mod zipcache;

use crate::faults::Faults;
use crate::server::ServerGuard;
use crate::stats::Stats;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

pub use control::ExpectedContent;

/// Configuration of the fake BDS tenant. Defaults: 200 rows per data set, 3 days of history.
#[derive(Clone, Debug)]
pub struct BdsConfig {
    /// API listener port (0 = a free port).
    pub port: u16,
    /// Auth (token endpoint) listener port (0 = a free port).
    pub auth_port: u16,
    /// Blob storage listener port (0 = a free port).
    pub blob_port: u16,
    /// Seed of the generated data.
    pub seed: u64,
    /// Rows of every data set at generation 0.
    pub rows: u64,
    /// Per data set overrides of `rows`, keyed by exact name (e.g. `"Users"`).
    pub rows_per_data_set: HashMap<String, u64>,
    /// Rows inserted per data set per day (`None` = 2 % of `rows`, at least 1).
    pub inserts_per_day: Option<u64>,
    /// Chance per mille that a row is updated on a given day.
    pub updates_per_mille: u64,
    /// Chance per mille that a row is deleted on a given day (data sets that delete).
    pub deletes_per_mille: u64,
    /// Days of differentials published at start.
    pub initial_days: u32,
    /// A full is published every this many days (0 = only the initial fulls).
    pub full_every_days: u32,
    /// Differentials older than this many days expire.
    pub diff_retention_days: u32,
    /// How many fulls per data set stay available.
    pub full_retention: usize,
    /// Default `pageSize` of `/dataExport/bds`.
    pub page_size: usize,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// The first valid refresh token.
    pub refresh_token: String,
    /// Access token lifetime in seconds of virtual time.
    pub access_token_ttl_secs: u64,
    /// Pre-signed blob URL lifetime in seconds of virtual time.
    pub url_ttl_secs: u64,
    /// Rate-limit bucket size per minute.
    pub credits_per_minute: u64,
    /// Credits one call costs.
    pub request_cost: u64,
    /// Write `bit` columns as `1`/`0` instead of `True`/`False`.
    pub bools_as_digits: bool,
    /// From this day (generation) on, extracts carry one more column at the end,
    /// `ExternalId`, like a BDS minor version; rows last changed before then hold NULL in it.
    pub append_column_from_day: Option<u32>,
    /// The BDS schema `Version` reported for extracts.
    pub version: String,
}

impl Default for BdsConfig {
    fn default() -> Self {
        BdsConfig {
            port: 0,
            auth_port: 0,
            blob_port: 0,
            seed: 1,
            rows: 200,
            rows_per_data_set: HashMap::new(),
            inserts_per_day: None,
            updates_per_mille: 50,
            deletes_per_mille: 10,
            initial_days: 3,
            full_every_days: 7,
            diff_retention_days: 14,
            full_retention: 2,
            page_size: 5,
            client_id: "sandbox-bds-client".into(),
            client_secret: "sandbox-bds-secret".into(),
            refresh_token: "sandbox-bds-refresh-0".into(),
            access_token_ttl_secs: 3600,
            url_ttl_secs: 900,
            credits_per_minute: 50_000,
            request_cost: 10,
            bools_as_digits: false,
            append_column_from_day: None,
            version: "9.1".into(),
        }
    }
}

/// What a client needs to talk to the fake tenant (fake, public values).
#[derive(Clone, Debug, Serialize)]
pub struct BdsCredentials {
    /// Tenant base URL (`D2L_BASE_URL`).
    pub base_url: String,
    /// Auth service base URL (`D2L_AUTH_URL`); the token endpoint is `{auth_url}/core/connect/token`.
    pub auth_url: String,
    /// Full token endpoint URL.
    pub token_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// The currently valid (single-use) refresh token.
    pub refresh_token: String,
    /// Scopes to request.
    pub scope: String,
}

/// A running fake BDS tenant; dropping it stops all three listeners.
#[derive(Debug)]
pub struct BdsServer {
    api: ServerGuard,
    auth: ServerGuard,
    blob: ServerGuard,
    state: Arc<state::Bds>,
}

impl BdsServer {
    /// Tenant base URL, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &str {
        self.api.base_url()
    }
    /// Auth service base URL.
    pub fn auth_url(&self) -> &str {
        self.auth.base_url()
    }
    /// Blob storage base URL (the redirect target origin).
    pub fn blob_url(&self) -> &str {
        self.blob.base_url()
    }
    /// Client id, secret and the currently valid refresh token.
    pub fn credentials(&self) -> BdsCredentials {
        BdsCredentials {
            base_url: self.base_url().to_owned(),
            auth_url: self.auth_url().to_owned(),
            token_url: format!("{}/core/connect/token", self.auth_url()),
            client_id: self.state.config.client_id.clone(),
            client_secret: self.state.config.client_secret.clone(),
            refresh_token: self.state.current_refresh_token(),
            scope: auth::DEFAULT_SCOPE.to_owned(),
        }
    }
    /// The shared fault knobs.
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }
    /// The shared request counters (blob requests carrying `Authorization` included).
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }
    /// The newest generation (= differentials published so far).
    pub fn generation(&self) -> u32 {
        self.state.lock().timeline.generation()
    }
    /// The tenant's virtual "now".
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.state.now()
    }
    /// Publishes `days` more days of differentials (and fulls when scheduled).
    pub fn advance_days(&self, days: u32) {
        self.state.advance(days, 0);
    }
    /// Moves the virtual clock without publishing (token, URL expiry).
    pub fn advance_seconds(&self, seconds: i64) {
        self.state.advance(0, seconds);
    }
    /// Publishes fulls of the current generation now.
    pub fn publish_full(&self) {
        self.state.publish_full();
    }
    /// Expires the differentials of these generations; returns how many extracts expired.
    pub fn expire_generations(&self, generations: &[u32]) -> usize {
        self.state.expire(generations)
    }
    /// The rows a correctly synced copy of `data_set` (name or schema id) holds now.
    pub async fn expected(&self, data_set: &str) -> Option<ExpectedContent> {
        control::expected(self.state.clone(), data_set).await
    }
}

/// Starts the fake tenant's API, auth and blob listeners on `127.0.0.1`.
pub async fn start(config: BdsConfig, faults: Faults, stats: Stats) -> std::io::Result<BdsServer> {
    let faults = faults.rendered_by(Arc::new(api::render_injected));
    let (api_port, auth_port, blob_port) = (config.port, config.auth_port, config.blob_port);
    let state = Arc::new(state::Bds::new(config, faults.clone(), stats.clone())?);
    let weak = Arc::downgrade(&state);
    faults.on_expire_tokens(Arc::new(move || {
        if let Some(state) = weak.upgrade() {
            state.lock().access.clear();
        }
    }));
    // Blob URLs carry their virtual issue time and lifetime; moving the virtual clock past
    // the lifetime expires every URL issued so far and none issued afterwards.
    let weak = Arc::downgrade(&state);
    faults.on_expire_urls(Arc::new(move || {
        if let Some(state) = weak.upgrade() {
            let ttl = state
                .faults
                .url_ttl()
                .map_or(state.config.url_ttl_secs, |d| d.as_secs());
            let past = i64::try_from(ttl).unwrap_or(i64::MAX / 4).saturating_add(1);
            state.advance(0, past);
        }
    }));
    let blob = crate::server::serve(
        crate::server::instrument(blob::routes(state.clone()), &faults, &stats),
        blob_port,
    )
    .await?;
    state.urls.set_blob(blob.base_url());
    let auth = crate::server::serve(
        crate::server::instrument(auth::routes(state.clone()), &faults, &stats),
        auth_port,
    )
    .await?;
    let service = crate::server::instrument(api::routes(state.clone()), &faults, &stats)
        .merge(control::routes(state.clone()));
    let api = crate::server::serve(service, api_port).await?;
    state.urls.set_api(api.base_url());
    Ok(BdsServer {
        api,
        auth,
        blob,
        state,
    })
}
