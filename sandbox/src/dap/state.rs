//! The mutable state of the fake DAP server: tables, jobs, tokens, injected errors, rate limits.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::DapConfig;
use super::errors::{DapError, ErrorKind};
use super::model::{TableVersion, commit_time};
use super::objects::{Generated, ObjectCache, QueryKey, Signer};
use crate::data::format_ts;
use crate::faults::Faults;
use crate::stats::Stats;

/// The API endpoints, for rate limits and error injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `POST /ids/auth/login`.
    Token,
    /// `GET /dap/query/{ns}/table`.
    Tables,
    /// `GET /dap/query/{ns}/table/{t}/schema`.
    Schema,
    /// `POST /dap/query/{ns}/table/{t}/data`.
    Query,
    /// `GET /dap/job/{id}`.
    Job,
    /// `POST /dap/object/url`.
    Url,
    /// Any of the above.
    Any,
}

/// Requests per minute per endpoint (None = unlimited). [`RateLimits::documented`] are the
/// limits Instructure documents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// List tables.
    pub tables: Option<u32>,
    /// Get schema.
    pub schema: Option<u32>,
    /// Create job.
    pub query: Option<u32>,
    /// Get job.
    pub job: Option<u32>,
    /// Create pre-signed URLs.
    pub url: Option<u32>,
}

impl RateLimits {
    /// The documented limits: tables 5, schema 500, query 5, job 500, url 200 per minute.
    pub fn documented() -> Self {
        Self {
            tables: Some(5),
            schema: Some(500),
            query: Some(5),
            job: Some(500),
            url: Some(200),
        }
    }

    fn of(&self, endpoint: Endpoint) -> Option<u32> {
        match endpoint {
            Endpoint::Tables => self.tables,
            Endpoint::Schema => self.schema,
            Endpoint::Query => self.query,
            Endpoint::Job => self.job,
            Endpoint::Url => self.url,
            Endpoint::Token | Endpoint::Any => None,
        }
    }
}

/// An error queued by `POST /__sandbox/dap/errors`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    /// Which endpoint answers with it.
    #[serde(default = "any_endpoint")]
    pub endpoint: Endpoint,
    /// The error class.
    pub error: ErrorKind,
    /// How many calls in a row get it.
    #[serde(default = "one")]
    pub times: u32,
}

fn any_endpoint() -> Endpoint {
    Endpoint::Any
}

fn one() -> u32 {
    1
}

/// How many polls a job spends in each state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobPacing {
    /// Polls answered `waiting` (the creating POST counts as none).
    pub waiting_polls: u32,
    /// Polls answered `running` after that.
    pub running_polls: u32,
}

impl Default for JobPacing {
    fn default() -> Self {
        Self {
            waiting_polls: 1,
            running_polls: 1,
        }
    }
}

/// One query job.
#[derive(Debug)]
pub struct Job {
    /// Job id (a UUID).
    pub id: String,
    /// The query.
    pub key: QueryKey,
    /// Creation time (real clock).
    pub created: DateTime<Utc>,
    /// Expiry (real clock).
    pub expires_at: DateTime<Utc>,
    /// Polls so far.
    pub polls: u32,
    /// Pacing fixed at creation.
    pub pacing: JobPacing,
    /// Set when the job must fail.
    pub failure: Option<DapError>,
    /// The generated files.
    pub result: Arc<OnceCell<Generated>>,
    /// Expired by the control API.
    pub expired: bool,
}

/// The status a job reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    /// Queued.
    Waiting,
    /// Being computed.
    Running,
    /// Done, objects ready.
    Complete,
    /// Done, with an error.
    Failed,
}

impl Job {
    /// The status now (does not advance).
    pub fn status(&self) -> JobStatus {
        if self.polls < self.pacing.waiting_polls {
            return JobStatus::Waiting;
        }
        let ready = self.result.get();
        if self.polls < self.pacing.waiting_polls + self.pacing.running_polls || ready.is_none() {
            return JobStatus::Running;
        }
        match (ready, &self.failure) {
            (Some(Ok(_)), None) => JobStatus::Complete,
            _ => JobStatus::Failed,
        }
    }

    /// The object ids of a complete job.
    pub fn object_ids(&self) -> Vec<String> {
        match self.result.get() {
            Some(Ok(files)) => files
                .iter()
                .map(|f| format!("{}/{}", self.id, f.name))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The job document exactly as dap.md §3 shapes it, and its status code.
    pub fn document(&self) -> (u16, Value) {
        let expires_at = format_ts(&self.expires_at);
        match self.status() {
            JobStatus::Waiting => (
                202,
                json!({"id": self.id, "status": "waiting", "expires_at": expires_at}),
            ),
            JobStatus::Running => (
                202,
                json!({"id": self.id, "status": "running", "expires_at": expires_at}),
            ),
            JobStatus::Failed => {
                let error = match (&self.failure, self.result.get()) {
                    (Some(failure), _) => failure.error_object(),
                    (None, Some(Err(message))) => DapError::new(
                        ErrorKind::ProcessingError,
                        format!("The query could not be processed: {message}"),
                    )
                    .error_object(),
                    _ => DapError::new(ErrorKind::ProcessingError, "The query failed.")
                        .error_object(),
                };
                (
                    200,
                    json!({"id": self.id, "status": "failed", "expires_at": expires_at, "error": error}),
                )
            }
            JobStatus::Complete => {
                let objects: Vec<Value> = self
                    .object_ids()
                    .into_iter()
                    .map(|id| json!({"id": id}))
                    .collect();
                let mut doc = json!({
                    "id": self.id,
                    "status": "complete",
                    "expires_at": expires_at,
                    "objects": objects,
                    "schema_version": self.key.schema_version,
                });
                match self.key.window {
                    None => doc["at"] = json!(format_ts(&commit_time(self.key.epoch))),
                    Some((since, until)) => {
                        doc["since"] = json!(format_ts(&since));
                        doc["until"] = json!(format_ts(&until));
                    }
                }
                (200, doc)
            }
        }
    }
}

/// Fixed one-minute windows per endpoint.
#[derive(Debug, Default)]
pub struct RateWindows {
    windows: HashMap<Endpoint, (Instant, u32)>,
}

impl RateWindows {
    /// Counts a call; `Err(retry_after_secs)` when over the limit.
    pub fn hit(&mut self, endpoint: Endpoint, limit: Option<u32>) -> Result<(), u64> {
        let Some(limit) = limit else { return Ok(()) };
        let now = Instant::now();
        let window = self.windows.entry(endpoint).or_insert((now, 0));
        let age = now.duration_since(window.0);
        if age.as_secs() >= 60 {
            *window = (now, 0);
        }
        if window.1 >= limit {
            let left = 60u64.saturating_sub(now.duration_since(window.0).as_secs());
            return Err(left.max(1));
        }
        window.1 += 1;
        Ok(())
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct DapState {
    /// Configuration at start.
    pub config: DapConfig,
    /// Tables by (namespace, name).
    pub tables: RwLock<BTreeMap<(String, String), TableVersion>>,
    /// Jobs by id.
    pub jobs: Mutex<HashMap<String, Job>>,
    /// Live job id per query (de-duplication).
    pub dedup: Mutex<HashMap<QueryKey, String>>,
    /// Generated files.
    pub cache: ObjectCache,
    /// Access tokens issued: token -> exp (unix seconds).
    pub tokens: Mutex<HashMap<String, i64>>,
    /// Bumped by `expire-urls`; URLs signed with an older generation are expired.
    pub url_generation: AtomicU64,
    /// URL signer.
    pub signer: Signer,
    /// Queued errors.
    pub injections: Mutex<VecDeque<Injection>>,
    /// Jobs created from now on that fail.
    pub fail_next_jobs: AtomicU64,
    /// Per-endpoint limits in force.
    pub limits: Mutex<RateLimits>,
    /// Rate windows.
    pub windows: Mutex<RateWindows>,
    /// Job pacing for new jobs.
    pub pacing: Mutex<JobPacing>,
    /// Shared fault knobs.
    pub faults: Faults,
    /// Shared counters.
    pub stats: Stats,
    /// Base URL of the blob listener (set after it binds).
    pub blob_base: OnceLock<String>,
}

/// Locks a mutex, ignoring poisoning (the data stays consistent: every update is one assignment).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl DapState {
    /// Takes a queued error for `endpoint`, if any.
    pub fn take_injection(&self, endpoint: Endpoint) -> Option<DapError> {
        let mut queue = lock(&self.injections);
        let index = queue
            .iter()
            .position(|i| i.endpoint == endpoint || i.endpoint == Endpoint::Any)?;
        let injection = queue.get_mut(index)?;
        let kind = injection.error.clone();
        injection.times = injection.times.saturating_sub(1);
        if injection.times == 0 {
            queue.remove(index);
        }
        Some(DapError::new(kind, "Injected error (sandbox control API)."))
    }

    /// Applies rate limits of `endpoint`.
    pub fn rate_limit(&self, endpoint: Endpoint) -> Result<(), DapError> {
        let limit = lock(&self.limits).of(endpoint);
        lock(&self.windows).hit(endpoint, limit).map_err(|secs| {
            let mut e = DapError::new(
                ErrorKind::TooManyRequests,
                "Rate limit exceeded for this endpoint; retry later.",
            );
            e.retry_after = Some(secs);
            e
        })
    }

    /// A copy of a table.
    pub fn table(&self, namespace: &str, name: &str) -> Option<TableVersion> {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// True if some table lives in this namespace.
    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|(ns, _)| ns == namespace)
    }

    /// Replaces a table with `f(table)`; returns the new version.
    pub fn update_table(
        &self,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&TableVersion) -> Result<TableVersion, DapError>,
    ) -> Result<TableVersion, DapError> {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_owned(), name.to_owned());
        let current = tables
            .get(&key)
            .ok_or_else(|| DapError::not_found("table", name))?;
        let next = f(current)?;
        tables.insert(key, next.clone());
        Ok(next)
    }

    /// Counter used for token ids.
    pub fn next_token_serial(&self) -> u64 {
        static SERIAL: AtomicU64 = AtomicU64::new(1);
        SERIAL.fetch_add(1, Ordering::Relaxed)
    }
}
