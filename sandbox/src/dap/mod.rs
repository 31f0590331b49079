//! Fake Instructure DAP (Canvas Data 2) Query API, faithful to `specs/dap.md` §1-§7 and the §13
//! checklist of what the official client 2.3.1 requires.
//!
//! [`start`] runs two listeners on `127.0.0.1`: the API (`base_url`, like
//! `https://api-gateway.instructure.com`) and a blob store (another port, so pre-signed URLs are
//! cross-origin like S3's).
//!
//! | route | behaviour |
//! |---|---|
//! | `POST /ids/auth/login` | HTTP Basic `client_id:client_secret` + form `grant_type=client_credentials` → exactly `access_token` (3-part JWT with integer `exp`), `expires_in`, `scope`, `token_type` |
//! | `GET /dap/query/{ns}/table` | `{"tables": [...]}` |
//! | `GET /dap/query/{ns}/table/{t}/schema` | `{"schema": {...}, "version": N}` in the §8.1 shape (`$schema`, `additionalProperties: false` everywhere, whitelisted keywords) |
//! | `POST /dap/query/{ns}/table/{t}/data` | snapshot (`{"format","mode"?}`) or incremental (`+"since","until"?`) job; identical live queries return the same job |
//! | `GET /dap/job/{id}` | each call is a poll: `waiting` → `running` → `complete`/`failed` |
//! | `POST /dap/object/url` | JSON array of `{"id"}` (any length) → `{"urls": {id: {"url": ...}}}` |
//! | blob `GET /dap-sandbox-objects/{job}/{part}` | single-member gzip, `Content-Length`, no `Content-Encoding`; pre-signed query string checked; 403 `AccessDenied` "Request has expired" after `url_ttl_secs` |
//!
//! Every JSON answer, errors included, is `application/json` with exactly the documented keys and
//! `Z` datetimes. Errors follow §5: `{"error":{"type","uuid","message",...}}` with 400
//! (`ValidationError` + `location`, `OutOfRange`/`SnapshotRequired` + `since`), 401
//! `AuthenticationError`, 403 (`AccountDisabled`, `AccountNotOnboarded`,
//! `AccountUnderMaintenance`, `RequestTypeForbidden`), 404 `ObjectNotFound` + `id`/`kind`, 429
//! `TooManyRequests` + `Retry-After`, 500 `ProcessingError`, 500 without `error` key, 502 HTML,
//! 504 `{"error":{"message"}}`. Each is reachable with `POST /__sandbox/dap/errors`.
//!
//! # Data
//!
//! Tables (default: `canvas.accounts` 25 rows, `canvas.courses` 200, `canvas.users` 1 000,
//! `canvas.submissions` 5 000, `canvas_logs.web_logs` 2 000; see [`DapConfig::tables`]) share one
//! column set: `key.id` (int64) and `name` (string, maxLength 255), `description`,
//! `workflow_state` (enum), `created_at`/`updated_at` (date-time with ms or µs fractions),
//! `score` (float64), `big_number` (int64, with `i64::MIN`/`MAX`), `is_public`, `settings` (object
//! `{a, b}`, split by `mode=expanded`) and `tags` (array). Text values contain tabs, newlines,
//! quotes, commas, backslashes, a literal `\N`, unicode; empty strings and NULLs both occur. Row
//! values are a function of `(seed, table, id, epoch)`, so any size from 1 to 10 million rows
//! costs no memory. Results are written once per distinct query to a temporary directory as gzip
//! parts of `rows_per_part` rows (id ranges) and streamed from disk.
//!
//! Virtual time: epoch 0 (the initial load) commits at `2024-01-01T00:00:00Z`; each mutation
//! batch (`POST /__sandbox/dap/tables/{ns}/{t}/mutate`) is the next epoch, one hour later. A
//! snapshot's `at` is the commit time of the table's latest epoch; an incremental query returns
//! the latest state of rows whose commit `meta.ts` satisfies `since < ts <= until` (`until`
//! defaults to, and is capped at, the latest commit).
//!
//! # Choices where dap.md is UNCERTAIN
//!
//! - Snapshot records carry only `meta.ts`; incremental ones `meta.ts` + `meta.action` (`U`/`D`);
//!   `D` records have only `key` (JSONL) or NULL value columns (TSV/CSV).
//! - JSONL omits NULL properties. CSV: NULL is an empty unquoted field, the empty string is `""`,
//!   lines end in CRLF, header first. TSV: PostgreSQL COPY text escaping, `\N` for NULL.
//! - Object ids are `{job_id}/part-{nnnnn}-{digest}.{tsv|csv|jsonl}.gz`; blob responses are
//!   `binary/octet-stream`. Parquet is not generated: such jobs end `failed` with a
//!   `ProcessingError` naming the reason.
//! - `since` before the initial load (`2024-01-01T00:00:00Z`) → 400 `SnapshotRequired`;
//!   `since` after the latest commit or after `until` → 400 `OutOfRange`; `since == until`
//!   (nothing new) → a complete job with empty objects. The sandbox keeps only the latest state of
//!   a row, so a row changed again after an explicit earlier `until` appears only in the later
//!   window.
//! - Account errors use 403 (what 2.3.1 expects); an unknown namespace or table is 404
//!   `ObjectNotFound` with `kind` `namespace`/`table`; unknown or expired jobs `kind: job`;
//!   unknown objects in `/dap/object/url` `kind: object`. Bad credentials at login: 401
//!   `AuthenticationError`.
//! - A failed job answers 200 with `error` `{type, uuid, message}`; an injected failure
//!   (`POST /__sandbox/dap/fail-jobs`) is a `ProcessingError`.
//! - Rate limits (§5) are off by default so client test suites are not slowed down; enable them
//!   with [`DapConfig::rate_limits`] = [`RateLimits::documented`] or
//!   `POST /__sandbox/dap/rate-limits`. Over the limit: 429 `TooManyRequests` with `Retry-After`
//!   = seconds left in the one-minute window.
//! - A blob request carrying `Authorization` is rejected 400 `InvalidArgument` (as S3 does for
//!   two auth mechanisms) and counted in the stats.
//!
//! # Benchmark
//!
//! `bench_serve` (see the crate README) on the 2-core development machine, release build, TSV,
//! condensed, one snapshot job, parts downloaded 4 at a time by a client in another process:
//!
//! | rows | parts | gzip size | first job (generate, 2 threads) | serve from cache | sandbox peak RSS |
//! |---|---|---|---|---|---|
//! | 1 000 000 | 10 | 90 MiB | 4.0 s (252 k rows/s) | 0.12 s (772 MiB/s) | 10.0 MiB |
//! | 10 000 000 | 20 | 902 MiB | 58.8 s (170 k rows/s, machine shared) | 1.2 s (725 MiB/s) | 10.9 MiB |
//!
//! Generation (row values + TSV escaping + gzip level 1) happens once per distinct query; every
//! later job with the same query, and every download, is served from the temporary cache, so a
//! client benchmark measures the client once the files exist: warm them first with
//! `--dap-warm tsv` (binary), `POST /__sandbox/dap/warm/{ns}/{t}` or
//! [`DapServer::warm_snapshots`]. JSONL (1M rows, 103 MiB) takes 8.2 s to generate and 0.12 s
//! to serve. Since these runs the tabular encoder writes fields straight into its buffer: 1M TSV
//! rows now cost 4.3 CPU-seconds of generation (all threads; `bench_serve` prints this figure,
//! which unlike wall time holds on a busy machine).
//!
//! # Control API (never faulted or rate limited)
//!
//! | route | effect |
//! |---|---|
//! | `GET /__sandbox/dap/state` | tables (live rows, schema version, epoch, `at`), job count, pacing, limits |
//! | `POST /__sandbox/dap/tables/{ns}/{t}/mutate` `{"inserts":5,"updates":5,"deletes":2}` | next epoch: deterministic inserts, updates, hard deletes |
//! | `POST /__sandbox/dap/tables/{ns}/{t}/columns` `{"name":"extra"}` | new nullable text column; schema version + 1; NULL in rows written before the next epoch |
//! | `POST /__sandbox/dap/tables/{ns}/{t}/enum-values` `{"value":"archived"}` | new `workflow_state` value; schema version + 1 |
//! | `POST /__sandbox/dap/warm/{ns}/{t}` `{"format":"tsv","mode":"condensed"}` | generate that snapshot's files now; answers `{"objects","records","bytes"}` when they are on disk |
//! | `GET /__sandbox/dap/expected/{ns}/{t}` | the truth, streamed: `[{"id":1,"name":..,..}, ...]`, live rows by id, NULL as `null` |
//! | `POST /__sandbox/dap/errors` `{"endpoint":"query","error":"SnapshotRequired","times":1}` | the next calls of that endpoint (`token`, `tables`, `schema`, `query`, `job`, `url`, `any`) answer with that error class; `DELETE` clears |
//! | `POST /__sandbox/dap/fail-jobs` `{"count":1}` | the next jobs created end `failed` |
//! | `POST /__sandbox/dap/pacing` `{"waiting_polls":1,"running_polls":1}` | polls per state for new jobs (`0,0` = complete as soon as generated) |
//! | `POST /__sandbox/dap/rate-limits` `{"query":5,"job":500,...}` | per-minute limits (omitted = unlimited) |
//! | `POST /__sandbox/dap/expire-tokens` / `expire-urls` / `expire-jobs` | revoke every issued token / invalidate issued URLs (403 "Request has expired") / expire jobs (404) |
//!
//! Plus the shared `/__sandbox/faults` and `/__sandbox/stats` on both listeners (they share
//! state). `url_ttl_secs` and `token_ttl_secs` from the fault knobs override the configured
//! lifetimes of URLs and tokens issued afterwards.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sandbox::dap::{self, DapConfig};
//! let server = dap::start(DapConfig::default(), sandbox::Faults::new(), sandbox::Stats::new()).await?;
//! let creds = server.credentials();
//! println!("DAP_API_URL={} DAP_CLIENT_ID={}", server.base_url(), creds.client_id);
//! # Ok(()) }
//! ```

mod api;
mod control;
pub mod encode;
pub mod errors;
pub mod model;
mod objects;
pub mod state;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use axum::Router;
use axum::routing::{get, post};
use serde::Serialize;

use crate::faults::Faults;
use crate::server::{ServerGuard, instrument, serve};
use crate::stats::Stats;

pub use model::Mutation;
pub use state::{JobPacing, RateLimits};

/// One generated table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    /// Namespace (`canvas`, `canvas_logs`, ...).
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Rows of the initial load (1 to 10 million and more).
    pub rows: u64,
}

impl TableSpec {
    /// A table spec.
    pub fn new(namespace: &str, name: &str, rows: u64) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            rows,
        }
    }
}

/// Configuration of the fake DAP service.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DapConfig {
    /// API port (0 = a free port).
    pub port: u16,
    /// Blob store port (0 = a free port).
    pub blob_port: u16,
    /// Data seed.
    pub seed: u64,
    /// The tables served.
    pub tables: Vec<TableSpec>,
    /// Accepted client id (the region prefix `us-east-1#` is what real ids look like).
    pub client_id: String,
    /// Accepted client secret.
    pub client_secret: String,
    /// Access token lifetime (default 3600 s).
    pub token_ttl_secs: u64,
    /// Pre-signed URL lifetime (default 900 s).
    pub url_ttl_secs: u64,
    /// Job and object lifetime (default 24 h).
    pub job_ttl_secs: u64,
    /// Rows per object part of a snapshot (default 100 000).
    pub rows_per_part: u64,
    /// Polls per job state.
    pub pacing: JobPacing,
    /// Per-endpoint rate limits (default: none).
    pub rate_limits: RateLimits,
}

impl Default for DapConfig {
    fn default() -> Self {
        Self {
            port: 0,
            blob_port: 0,
            seed: 1,
            tables: vec![
                TableSpec::new("canvas", "accounts", 25),
                TableSpec::new("canvas", "courses", 200),
                TableSpec::new("canvas", "users", 1_000),
                TableSpec::new("canvas", "submissions", 5_000),
                TableSpec::new("canvas_logs", "web_logs", 2_000),
            ],
            client_id: "us-east-1#sandbox-client".to_owned(),
            client_secret: "sandbox-secret".to_owned(),
            token_ttl_secs: 3600,
            url_ttl_secs: 900,
            job_ttl_secs: 86_400,
            rows_per_part: 100_000,
            pacing: JobPacing::default(),
            rate_limits: RateLimits::default(),
        }
    }
}

impl DapConfig {
    /// Serves exactly these tables instead of the defaults.
    pub fn with_tables(mut self, tables: Vec<TableSpec>) -> Self {
        self.tables = tables;
        self
    }

    /// Sets the data seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the job pacing.
    pub fn with_pacing(mut self, waiting_polls: u32, running_polls: u32) -> Self {
        self.pacing = JobPacing {
            waiting_polls,
            running_polls,
        };
        self
    }

    /// Sets the rows per snapshot part.
    pub fn with_rows_per_part(mut self, rows: u64) -> Self {
        self.rows_per_part = rows;
        self
    }

    /// Sets the API and blob ports (0 = free ports).
    pub fn with_ports(mut self, port: u16, blob_port: u16) -> Self {
        self.port = port;
        self.blob_port = blob_port;
        self
    }
}

/// What a DAP client needs besides the base URL (fake, public values).
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct DapCredentials {
    /// `DAP_CLIENT_ID`.
    pub client_id: String,
    /// `DAP_CLIENT_SECRET`.
    pub client_secret: String,
}

/// A running fake DAP service; dropping it stops both listeners and deletes the object cache.
#[derive(Debug)]
pub struct DapServer {
    api: ServerGuard,
    blob: ServerGuard,
    state: Arc<state::DapState>,
}

impl DapServer {
    /// `DAP_API_URL`, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &str {
        self.api.base_url()
    }

    /// Base URL of the blob store the pre-signed URLs point at.
    pub fn blob_url(&self) -> &str {
        self.blob.base_url()
    }

    /// Client id and secret.
    pub fn credentials(&self) -> DapCredentials {
        DapCredentials {
            client_id: self.state.config.client_id.clone(),
            client_secret: self.state.config.client_secret.clone(),
        }
    }

    /// The fault knobs (shared with `/__sandbox/faults`).
    pub fn faults(&self) -> &Faults {
        &self.state.faults
    }

    /// The counters (shared with `/__sandbox/stats`).
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    /// Generates the snapshot files of every table in `format`/`mode` now (what
    /// `POST /__sandbox/dap/warm/{ns}/{t}` does for one table), so later snapshot jobs are served
    /// from the cache at once.
    pub async fn warm_snapshots(
        &self,
        format: encode::Format,
        mode: Option<encode::Mode>,
    ) -> std::io::Result<()> {
        let tables: Vec<model::TableVersion> = self
            .state
            .tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for table in tables {
            let key = objects::QueryKey::new(&table, format, mode, None);
            self.state
                .cache
                .generate(key, table)
                .await
                .map_err(std::io::Error::other)?;
        }
        Ok(())
    }
}

/// Starts the fake DAP service (API + blob listeners) on `127.0.0.1`.
pub async fn start(config: DapConfig, faults: Faults, stats: Stats) -> std::io::Result<DapServer> {
    let faults = faults.rendered_by(Arc::new(errors::render_injected));
    let mut tables = BTreeMap::new();
    for spec in &config.tables {
        let table = model::TableVersion::new(&spec.namespace, &spec.name, config.seed, spec.rows);
        tables.insert((spec.namespace.clone(), spec.name.clone()), table);
    }
    let state = Arc::new(state::DapState {
        cache: objects::ObjectCache::new(config.rows_per_part)?,
        tables: RwLock::new(tables),
        jobs: Mutex::new(HashMap::new()),
        dedup: Mutex::new(HashMap::new()),
        tokens: Mutex::new(HashMap::new()),
        url_generation: AtomicU64::new(0),
        signer: objects::Signer::new(crate::data::mix(config.seed ^ 0x5167)),
        injections: Mutex::new(VecDeque::new()),
        fail_next_jobs: AtomicU64::new(0),
        limits: Mutex::new(config.rate_limits),
        windows: Mutex::new(state::RateWindows::default()),
        pacing: Mutex::new(config.pacing),
        faults: faults.clone(),
        stats: stats.clone(),
        blob_base: OnceLock::new(),
        config: config.clone(),
    });
    let weak = Arc::downgrade(&state);
    faults.on_expire_tokens(Arc::new(move || {
        if let Some(state) = weak.upgrade() {
            state::lock(&state.tokens).clear();
        }
    }));
    let weak = Arc::downgrade(&state);
    faults.on_expire_urls(Arc::new(move || {
        if let Some(state) = weak.upgrade() {
            state
                .url_generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }));
    let blob_routes = Router::new()
        .route("/{bucket}/{job}/{file}", get(api::blob))
        .with_state(state.clone());
    let blob = serve(instrument(blob_routes, &faults, &stats), config.blob_port).await?;
    // Set once, right after the bind; nothing reads it before the API listener exists.
    let _ = state.blob_base.set(blob.base_url().to_owned());
    let api_routes = Router::new()
        .route("/ids/auth/login", post(api::login))
        .route("/dap/query/{namespace}/table", get(api::tables))
        .route(
            "/dap/query/{namespace}/table/{table}/schema",
            get(api::schema),
        )
        .route(
            "/dap/query/{namespace}/table/{table}/data",
            post(api::query),
        )
        .route("/dap/job/{id}", get(api::job))
        .route("/dap/object/url", post(api::object_urls))
        .with_state(state.clone());
    let router = instrument(api_routes, &faults, &stats).merge(control::routes(state.clone()));
    let api = serve(router, config.port).await?;
    Ok(DapServer { api, blob, state })
}
