//! The fault matrix (issue 10): every main operation of the four clients,
//! run against the sandbox with each fault alone and with all of them
//! together, compared with a fault-free run of the same operation on a
//! fresh sandbox holding the same data.
//!
//! A cell passes when the run produced exactly the baseline's data (rows,
//! bytes, watermark: compared as a canonical, sorted form and shown as a
//! checksum) or ended with the typed error that fault must produce (a
//! non-idempotent start whose answer never arrived is not repeated) — and
//! in both cases left nothing half-written: no partial or foreign files in
//! the output directory, no partial upload on the server, and a database
//! from which a fault-free re-run reaches the baseline exactly. A cell also
//! fails when its fault hit no call, or (tokens, URLs) when the client never
//! had to fetch a new token or URL. Faults that cannot happen to a service
//! are printed as `n/a` with the reason. The matrix is printed before
//! anything is asserted.
//!
//! Determinism and speed: retry and poll sleeps last at most 5 ms (so
//! `Retry-After` costs no wall time), the backoff randomness is fixed, the
//! sandbox's fault RNG is seeded, data is small and every operation
//! downloads one object at a time (except where concurrency is the point).
//! Latency spikes are real: the clients get a 400 ms response timeout in
//! the columns with spikes, the sandbox delays every spiked call by 1.5 s.
//! Rows run concurrently, each on its own sandboxes.
//!
//! ```text
//! cargo test --all-features --test fault_matrix -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use client_core::retry::{FixedRandom, RetryPolicy};
use client_core::{PollPolicy, SecretString, TransportKind};
use futures::{StreamExt, TryStreamExt};
use sandbox::FaultConfig;
use sql_sink::{Sink, TableName};

// ------------------------------------------------------------------ faults

/// One column of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The fault-free baseline (not a column).
    None,
    ServerErrors,
    RateLimits,
    Drops,
    Truncation,
    Spikes,
    UrlExpiry,
    TokenExpiry,
    Rotation,
    All,
}

impl Fault {
    const COLUMNS: [Fault; 9] = [
        Fault::ServerErrors,
        Fault::RateLimits,
        Fault::Drops,
        Fault::Truncation,
        Fault::Spikes,
        Fault::UrlExpiry,
        Fault::TokenExpiry,
        Fault::Rotation,
        Fault::All,
    ];

    fn title(self) -> &'static str {
        match self {
            Fault::None => "baseline",
            Fault::ServerErrors => "30% 5xx",
            Fault::RateLimits => "429 + Retry-After every 3rd",
            Fault::Drops => "dropped connections (every 5th)",
            Fault::Truncation => "truncated bodies (every 4th)",
            Fault::Spikes => "latency spikes 1.5 s > 400 ms timeout (every 6th)",
            Fault::UrlExpiry => "pre-signed URLs expire (every 3rd call)",
            Fault::TokenExpiry => "access tokens revoked mid-run (every 5th call)",
            Fault::Rotation => {
                "refresh-token rotation under concurrency (tokens revoked every 7th call)"
            }
            Fault::All => "all of the above together (tokens revoked every 11th call)",
        }
    }

    /// The sandbox's knobs for this column.
    fn knobs(self) -> FaultConfig {
        let mut k = FaultConfig::default();
        k.seed = 7;
        match self {
            Fault::None => {}
            Fault::ServerErrors => k.error_rate = 0.3,
            Fault::RateLimits => {
                k.rate_limit_every = 3;
                k.retry_after_secs = 1;
            }
            Fault::Drops => k.drop_every = 5,
            Fault::Truncation => k.truncate_every = 4,
            Fault::Spikes => {
                k.spike_every = 6;
                k.spike_ms = SPIKE_MS;
            }
            Fault::UrlExpiry => {
                k.expire_urls_every = 3;
                k.url_ttl_secs = Some(60);
            }
            Fault::TokenExpiry => k.expire_tokens_every = 5,
            Fault::Rotation => k.expire_tokens_every = 7,
            Fault::All => {
                k.error_rate = 0.3;
                k.rate_limit_every = 3;
                k.retry_after_secs = 1;
                k.drop_every = 5;
                k.truncate_every = 4;
                k.spike_every = 6;
                k.spike_ms = SPIKE_MS;
                k.expire_urls_every = 3;
                k.url_ttl_secs = Some(60);
                // Every 5th with ~40 attempts per request would revoke the
                // token more often than one request may refresh it (3 times).
                k.expire_tokens_every = 11;
            }
        }
        k
    }

    /// Whether the sandbox delays some calls beyond the clients' timeout.
    fn spikes(self) -> bool {
        matches!(self, Fault::Spikes | Fault::All)
    }

    /// Whether a non-idempotent start may lose its answer in this column
    /// (dropped, cut off, or not arrived within the timeout).
    fn may_lose_answers(self) -> bool {
        matches!(
            self,
            Fault::Drops | Fault::Truncation | Fault::Spikes | Fault::All
        )
    }
}

const SPIKE_MS: u64 = 1_500;
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(400);

/// The retry policy of every client: the default budget, plus the short
/// response timeout in the columns with latency spikes. With all faults on,
/// about 70% of calls fail (every 3rd, 5th and 6th call, 30% of the rest,
/// and bodies of every 4th), so one request outlasts the default 10
/// attempts a few times per run: that column gets 40 attempts, as a user
/// facing such a network would configure.
fn retry_policy(fault: Fault) -> RetryPolicy {
    let policy = if fault == Fault::All {
        RetryPolicy::default()
            .with_max_attempts(40)
            .with_deadline(Duration::from_secs(3600))
    } else {
        RetryPolicy::default()
    };
    if fault.spikes() {
        policy.with_response_timeout(RESPONSE_TIMEOUT)
    } else {
        policy
    }
}

/// Waits at most 5 ms, whatever the client asks: a `Retry-After` or a
/// backoff costs no wall time, yet a poll loop does not spin while the
/// sandbox prepares a job's files in the background.
#[derive(Debug)]
struct BriefSleeper;

impl client_core::time::Sleeper for BriefSleeper {
    fn sleep<'life0, 'async_trait>(
        &'life0 self,
        duration: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(tokio::time::sleep(duration.min(Duration::from_millis(5))))
    }
}

fn sleeper() -> Arc<BriefSleeper> {
    Arc::new(BriefSleeper)
}

/// Polls as fast as the sandbox allows (its jobs advance per poll); the
/// sleeps go to a recording sleeper anyway.
fn polls() -> PollPolicy {
    PollPolicy::default()
        .min_interval(Duration::from_millis(10))
        .max_interval(Duration::from_millis(50))
        .max_wait(Duration::from_secs(3600))
}

/// Authorization headers the sandboxes saw on pre-signed/blob URLs, over the
/// whole matrix.
static BLOB_AUTHORIZATION: AtomicU64 = AtomicU64::new(0);
/// Requests to pre-signed/blob URLs over the whole matrix (so the zero
/// above is not vacuous).
static BLOB_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// How much of a run the faults hit.
#[derive(Clone, Copy, Debug)]
struct Hits {
    /// Calls hit by a fault.
    faults: u64,
    /// Calls the fault layer saw (every route: API, token, blob).
    calls: u64,
    /// Requests to the token endpoint.
    tokens: u64,
    /// Requests to pre-signed/blob URLs.
    blobs: u64,
}

/// Ends a run's faults: reads how many calls they hit, clears them, and
/// adds the run's blob counters to the matrix totals.
fn finish(faults: &sandbox::Faults, stats: &sandbox::Stats) -> Hits {
    let s = stats.snapshot();
    let hits = Hits {
        faults: faults.injected(),
        calls: faults.calls(),
        tokens: s.token_requests,
        blobs: s.blob_requests,
    };
    faults.set(FaultConfig::default());
    BLOB_REQUESTS.fetch_add(s.blob_requests, Ordering::SeqCst);
    BLOB_AUTHORIZATION.fetch_add(s.blob_authorization_headers, Ordering::SeqCst);
    hits
}

// ------------------------------------------------------------------ outcomes

/// What a run produced, in a canonical form compared with the baseline.
#[derive(Clone, Debug)]
struct Produced {
    /// A short human summary ("300 records").
    summary: String,
    /// The canonical content (sorted lines); compared exactly.
    canonical: Vec<String>,
}

impl Produced {
    fn new(summary: impl Into<String>, mut canonical: Vec<String>) -> Self {
        canonical.sort();
        Self {
            summary: summary.into(),
            canonical,
        }
    }

    fn checksum(&self) -> String {
        let mut h = DefaultHasher::new();
        self.canonical.hash(&mut h);
        format!("{:08x}", h.finish() as u32)
    }
}

/// One run of one operation.
struct Run {
    result: Result<Produced, RunError>,
    /// Half-written things found after the run (must be empty).
    leftovers: Vec<String>,
    /// Extra facts worth printing (server-side jobs after an error, ...).
    note: Option<String>,
    /// After a failed run: the state a fault-free re-run on the same
    /// database reached, which must be the baseline's.
    resumed: Option<Result<Produced, String>>,
    /// What the faults hit.
    hits: Hits,
}

/// Why a run ended without data.
struct RunError {
    /// The error as the user sees it.
    shown: String,
    /// The exact variant, when it is the one this fault must produce.
    expected: Option<String>,
}

impl RunError {
    fn unexpected(e: impl std::fmt::Display + std::fmt::Debug) -> Self {
        Self {
            shown: format!("{e} [{e:?}]"),
            expected: None,
        }
    }
}

/// The verdict printed in a cell.
enum Cell {
    NotApplicable(&'static str),
    Same {
        summary: String,
        checksum: String,
        hits: Hits,
    },
    ExpectedError {
        variant: String,
        note: Option<String>,
    },
    Failed(String),
}

impl Cell {
    fn short(&self) -> String {
        match self {
            Cell::NotApplicable(_) => "n/a".into(),
            Cell::Same { checksum, .. } => format!("ok ={checksum}"),
            Cell::ExpectedError { .. } => "typed err".into(),
            Cell::Failed(_) => "FAILED".into(),
        }
    }
}

/// The verdict of one run of `fault`, against the fault-free run (its data
/// and what it asked of the service).
fn judge(baseline: &Produced, calm: Hits, fault: Fault, run: Run) -> Cell {
    if !run.leftovers.is_empty() {
        return Cell::Failed(format!(
            "half-written: {}{}",
            run.leftovers.join("; "),
            run.result
                .as_ref()
                .err()
                .map(|e| format!(" (after the error: {})", e.shown))
                .unwrap_or_default()
        ));
    }
    match &run.resumed {
        Some(Ok(resumed)) if resumed.canonical != baseline.canonical => {
            return Cell::Failed(format!(
                "a fault-free re-run on what the failed run left reached {} (checksum {}), \
                 not the baseline's {} (checksum {})",
                resumed.summary,
                resumed.checksum(),
                baseline.summary,
                baseline.checksum()
            ));
        }
        Some(Err(e)) => {
            return Cell::Failed(format!(
                "a fault-free re-run on what the failed run left failed: {e}"
            ));
        }
        _ => {}
    }
    match run.result {
        // A fault that hit no call, or that the client never had to
        // answer, proves nothing.
        Ok(_) if run.hits.faults == 0 => Cell::Failed(format!(
            "the fault never hit any of the run's {} calls",
            run.hits.calls
        )),
        Ok(_)
            if matches!(fault, Fault::TokenExpiry | Fault::Rotation)
                && run.hits.tokens <= calm.tokens =>
        {
            Cell::Failed(format!(
                "tokens were revoked but never fetched again ({} token requests, fault-free {})",
                run.hits.tokens, calm.tokens
            ))
        }
        Ok(_) if fault == Fault::UrlExpiry && run.hits.blobs <= calm.blobs => {
            Cell::Failed(format!(
                "no download met an expired URL ({} blob requests, fault-free {})",
                run.hits.blobs, calm.blobs
            ))
        }
        Ok(p) if p.canonical == baseline.canonical => Cell::Same {
            summary: p.summary.clone(),
            checksum: p.checksum(),
            hits: run.hits,
        },
        Ok(p) => {
            let first = p
                .canonical
                .iter()
                .zip(&baseline.canonical)
                .position(|(a, b)| a != b)
                .unwrap_or(p.canonical.len().min(baseline.canonical.len()));
            Cell::Failed(format!(
                "differs from the baseline: {} (checksum {}) vs {} (checksum {}); first \
                 difference at line {first}: {:?} vs {:?}",
                p.summary,
                p.checksum(),
                baseline.summary,
                baseline.checksum(),
                p.canonical.get(first),
                baseline.canonical.get(first),
            ))
        }
        Err(RunError {
            expected: Some(variant),
            ..
        }) => Cell::ExpectedError {
            variant,
            note: match (run.note, run.resumed.is_some()) {
                (Some(n), true) => Some(format!(
                    "{n}; a fault-free re-run on what it left reached the baseline"
                )),
                (None, true) => {
                    Some("a fault-free re-run on what it left reached the baseline".into())
                }
                (note, false) => note,
            },
        },
        Err(RunError { shown, .. }) => Cell::Failed(format!("unexpected error: {shown}")),
    }
}

// ------------------------------------------------------------------ operations

/// The rows of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    DapRecords,
    DapFiles,
    DapReplicate,
    BdsSync,
    BdsDownload,
    LdImport,
    LdExport,
    ToucanChain,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::DapRecords,
        Op::DapFiles,
        Op::DapReplicate,
        Op::BdsSync,
        Op::BdsDownload,
        Op::LdImport,
        Op::LdExport,
        Op::ToucanChain,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::DapRecords => "DAP snapshot -> record stream",
            Op::DapFiles => "DAP download_table_data (files)",
            Op::DapReplicate => "DAP replicate init+sync (SQLite)",
            Op::BdsSync => "BDS sync full+diffs (SQLite)",
            Op::BdsDownload => "BDS extract file downloads",
            Op::LdImport => "LD import + wait",
            Op::LdExport => "LD export + wait + results",
            Op::ToucanChain => "Toucan upload/preprocess/populate/release",
        }
    }

    /// Why a fault cannot happen to this operation, if it cannot.
    fn not_applicable(self, fault: Fault) -> Option<&'static str> {
        let dap = matches!(self, Op::DapRecords | Op::DapFiles | Op::DapReplicate);
        let bds = matches!(self, Op::BdsSync | Op::BdsDownload);
        match fault {
            Fault::UrlExpiry if self == Op::LdImport => {
                Some("an LD import downloads nothing: no pre-signed URL involved")
            }
            Fault::UrlExpiry if self == Op::LdExport => Some(
                "LD result links are unguessable tokens without an expiry in the sandbox \
                 (their lifetime is undocumented): nothing to expire",
            ),
            Fault::UrlExpiry if self == Op::ToucanChain => {
                Some("Toucan hands out no pre-signed URLs")
            }
            Fault::Rotation if dap => {
                Some("DAP uses client credentials: there is no refresh token to rotate")
            }
            Fault::Rotation if matches!(self, Op::LdImport | Op::LdExport) => {
                Some("LD uses the password grant: there is no refresh token to rotate")
            }
            Fault::Rotation if self == Op::ToucanChain => {
                Some("Toucan's login returns a bare token: there is no refresh token to rotate")
            }
            Fault::Rotation if bds => None,
            _ => None,
        }
    }

    async fn run(self, fault: Fault) -> Run {
        match self {
            Op::DapRecords => dap::records(fault).await,
            Op::DapFiles => dap::files(fault).await,
            Op::DapReplicate => dap::replicate(fault).await,
            Op::BdsSync => bds::sync(fault).await,
            Op::BdsDownload => bds::download(fault).await,
            Op::LdImport => ld::import(fault).await,
            Op::LdExport => ld::export(fault).await,
            Op::ToucanChain => toucan::chain(fault).await,
        }
    }
}

/// A digest of bytes, for canonical lines.
fn digest(bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Every file below `dir`, recursively (relative paths).
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Half-written files in `dir`: any file that differs from every file of
/// the baseline (`known`, by digest), and after a successful run any file
/// the operation did not report (a temporary file left behind). A failed
/// run may keep the complete files of the objects it finished.
fn stray_files(
    dir: &Path,
    succeeded: bool,
    reported: &[PathBuf],
    known: Option<&[String]>,
) -> Vec<String> {
    files_below(dir)
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_default();
            let complete = known.is_none_or(|k| k.contains(&digest(&bytes)));
            let listed = reported.contains(&path);
            ((succeeded && !listed) || !complete).then(|| {
                format!(
                    "{} ({} bytes{}{})",
                    path.strip_prefix(dir).unwrap_or(&path).display(),
                    bytes.len(),
                    if listed { "" } else { ", not reported" },
                    if complete {
                        ""
                    } else {
                        ", matches no baseline file"
                    }
                )
            })
        })
        .collect()
}

/// The rows of a table as sorted debug lines, with its watermark.
async fn table_lines(sink: &Sink, table: &TableName) -> Result<(Vec<String>, String), String> {
    let Some(status) = sink.table_status(table).await.map_err(|e| e.to_string())? else {
        return Ok((Vec::new(), "no table".into()));
    };
    let rows = sink.read_rows(table).await.map_err(|e| e.to_string())?;
    let mut lines: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
    lines.sort();
    let watermark = status.watermark.as_ref().map_or_else(
        || "no watermark".to_string(),
        |w| {
            format!(
                "watermark {} at {:?} schema {:?}",
                w.value, w.at, w.schema_version
            )
        },
    );
    Ok((lines, watermark))
}

// ------------------------------------------------------------------ DAP

mod dap {
    use super::*;
    use dap_client::replicate::{ReplicateError, ReplicateOptions, Replicator};
    use dap_client::{Client, Format, SnapshotQuery};
    use sandbox::dap::{DapConfig, DapServer, TableSpec};

    pub(super) async fn server() -> DapServer {
        let config = DapConfig::default()
            .with_tables(vec![TableSpec::new("canvas", "users", 240)])
            .with_rows_per_part(60)
            .with_pacing(1, 1);
        sandbox::dap::start(config, sandbox::Faults::new(), sandbox::Stats::new())
            .await
            .expect("the DAP sandbox starts")
    }

    pub(super) fn client(server: &DapServer, fault: Fault) -> Client {
        let creds = server.credentials();
        Client::builder()
            .base_url(server.base_url())
            .credentials(creds.client_id, SecretString::from(creds.client_secret))
            .sleeper(sleeper())
            .random(Arc::new(FixedRandom::new(0.5)))
            .rng_seed(3)
            .retry_policy(retry_policy(fault))
            .poll_policy(polls())
            .download_concurrency(1)
            .build()
            .expect("the DAP client builds")
    }

    pub(super) async fn records(fault: Fault) -> Run {
        let server = server().await;
        let client = client(&server, fault);
        server.faults().set(fault.knobs());
        let result = async {
            let table = client
                .table_records("canvas", "users", SnapshotQuery::new(Format::Jsonl))
                .await?;
            let records: Vec<dap_client::Record> = table.records.try_collect().await?;
            Ok::<_, dap_client::Error>(records)
        }
        .await;
        let hits = finish(server.faults(), server.stats());
        Run {
            result: result
                .map(|records| {
                    let lines: Vec<String> = records.iter().map(|r| r.to_string()).collect();
                    Produced::new(format!("{} records", lines.len()), lines)
                })
                .map_err(RunError::unexpected),
            leftovers: Vec::new(),
            note: None,
            resumed: None,
            hits,
        }
    }

    /// Digests of the files a fault-free run writes (to tell complete
    /// files from partial ones after a failed run).
    static BASELINE_FILES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

    pub(super) async fn files(fault: Fault) -> Run {
        let server = server().await;
        let client = client(&server, fault);
        let dir = tempfile::tempdir().expect("a temporary directory");
        server.faults().set(fault.knobs());
        let result = client
            .download_table_data(
                "canvas",
                "users",
                SnapshotQuery::new(Format::Csv),
                dir.path(),
                true,
            )
            .await;
        let hits = finish(server.faults(), server.stats());
        let reported = result
            .as_ref()
            .map(|r| r.downloaded_files.clone())
            .unwrap_or_default();
        let contents: Vec<Vec<u8>> = reported
            .iter()
            .map(|p| std::fs::read(p).unwrap_or_default())
            .collect();
        if fault == Fault::None {
            let _ = BASELINE_FILES.set(contents.iter().map(|c| digest(c)).collect());
        }
        // A failed run may keep complete files, never partial ones.
        let leftovers = stray_files(
            dir.path(),
            result.is_ok(),
            &reported,
            BASELINE_FILES.get().map(Vec::as_slice),
        );
        Run {
            result: result
                .map(|r| {
                    // One line per CSV row; part boundaries are not part of
                    // the data, headers are counted once per file.
                    let mut lines = Vec::new();
                    for text in contents.iter().map(|c| String::from_utf8_lossy(c)) {
                        lines.extend(text.lines().map(str::to_owned));
                    }
                    Produced::new(
                        format!("{} files, {} lines", r.downloaded_files.len(), lines.len()),
                        lines,
                    )
                })
                .map_err(RunError::unexpected),
            leftovers,
            note: None,
            resumed: None,
            hits,
        }
    }

    /// The table's rows and watermark as canonical lines.
    async fn replica_state(url: &str) -> Result<(Vec<String>, String), String> {
        let sink = Sink::open(url).await.map_err(|e| e.to_string())?;
        table_lines(&sink, &TableName::new("canvas", "users")).await
    }

    async fn mutate(server: &DapServer) {
        client_core::HttpClient::builder()
            .base_url(server.base_url())
            .build()
            .expect("control client")
            .send(
                client_core::Request::post("/__sandbox/dap/tables/canvas/users/mutate")
                    .json(&serde_json::json!({"inserts": 7, "updates": 11, "deletes": 5})),
            )
            .await
            .expect("the control API mutates the table");
    }

    /// Init (unless the replica already has a watermark), the mutation
    /// (unless done), sync. Returns the row counts of init and sync.
    async fn init_mutate_sync(
        client: &Client,
        url: &str,
        server: &DapServer,
        mutated: &std::sync::atomic::AtomicBool,
    ) -> Result<String, ReplicateError> {
        let replicator = Replicator::open(client.clone(), url)
            .await?
            .with_options(ReplicateOptions::default());
        let initialized = replica_state(url)
            .await
            .is_ok_and(|(_, watermark)| watermark.starts_with("watermark"));
        let init = if initialized {
            "already initialized".to_string()
        } else {
            let r = replicator.init("canvas", "users").await?;
            format!("init {} rows", r.upserted_rows)
        };
        // Mutated through the control API, which faults never touch.
        if !mutated.swap(true, Ordering::SeqCst) {
            mutate(server).await;
        }
        let sync = replicator.sync("canvas", "users").await?;
        Ok(format!(
            "{init}, sync +{} -{}",
            sync.upserted_rows, sync.deleted_rows
        ))
    }

    async fn produced(url: &str, what: String) -> Result<Produced, String> {
        let (lines, watermark) = replica_state(url).await?;
        let summary = format!("{what}; {} rows, {watermark}", lines.len());
        let mut canonical = lines;
        canonical.push(watermark);
        Ok(Produced::new(summary, canonical))
    }

    pub(super) async fn replicate(fault: Fault) -> Run {
        let server = server().await;
        let client = client(&server, fault);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("replica.db").display());
        let mutated = std::sync::atomic::AtomicBool::new(false);
        server.faults().set(fault.knobs());
        let result = init_mutate_sync(&client, &url, &server, &mutated).await;
        let hits = finish(server.faults(), server.stats());
        // After a failure the replica must resume: a fault-free run on it
        // converges to the baseline.
        let resumed = match &result {
            Ok(_) => None,
            Err(_) => {
                let calm = self::client(&server, Fault::None);
                Some(
                    match init_mutate_sync(&calm, &url, &server, &mutated).await {
                        Ok(what) => produced(&url, what).await,
                        Err(e) => Err(e.to_string()),
                    },
                )
            }
        };
        let result = match result {
            Ok(what) => produced(&url, what).await.map_err(RunError::unexpected),
            Err(e) => Err(RunError::unexpected(e)),
        };
        Run {
            result,
            leftovers: Vec::new(),
            note: None,
            resumed,
            hits,
        }
    }
}

// ------------------------------------------------------------------ BDS

mod bds {
    use super::*;
    use bds_client::sync::{SyncOptions, sync_data_set, table_name};
    use bds_client::{BdsError, Client, MemoryTokenStore, TokenStore};
    use sandbox::bds::{BdsConfig, BdsServer};

    /// Two data sets, synced by one client (one token cache, one rotating
    /// refresh token); at the same time in the rotation column.
    const DATA_SETS: [&str; 2] = ["Users", "Organizational Units"];

    async fn server() -> BdsServer {
        let config = BdsConfig {
            rows: 80,
            ..BdsConfig::default()
        };
        let server = sandbox::bds::start(config, sandbox::Faults::new(), sandbox::Stats::new())
            .await
            .expect("the BDS sandbox starts");
        // A full and two differentials to apply.
        server.advance_days(2);
        server
    }

    fn client(server: &BdsServer, fault: Fault, store: Arc<dyn TokenStore>) -> Client {
        let creds = server.credentials();
        Client::builder()
            .base_url(&creds.base_url)
            .auth_url(&creds.auth_url)
            .credentials(
                &creds.client_id,
                SecretString::from(creds.client_secret.clone()),
            )
            .token_store(store)
            .sleeper(sleeper())
            .random(Arc::new(FixedRandom::new(0.5)))
            .retry_policy(retry_policy(fault))
            .build()
            .expect("the BDS client builds")
    }

    /// The token store, seeded with the tenant's refresh token.
    fn store(server: &BdsServer) -> Arc<MemoryTokenStore> {
        Arc::new(MemoryTokenStore::with_token(SecretString::from(
            server.credentials().refresh_token,
        )))
    }

    /// After a rotation run: the stored refresh token is the one the
    /// tenant accepts now (a fresh client starting from the store works).
    async fn stored_token_is_live(
        server: &BdsServer,
        store: Arc<MemoryTokenStore>,
    ) -> Option<String> {
        let fresh = client(server, Fault::None, store);
        match fresh.list_plugins().await {
            Ok(_) => None,
            Err(e) => Some(format!(
                "the stored refresh token is not the tenant's current one: {e}"
            )),
        }
    }

    /// Syncs every data set, each into its own database in `dir`, and
    /// returns the tables' rows and watermarks. `at_once`: the syncs run
    /// concurrently (one token cache, one rotating refresh token for both);
    /// otherwise one after the other, so the faults hit the same calls in
    /// every run.
    async fn sync_all(client: &Client, dir: &Path, at_once: bool) -> Result<Produced, BdsError> {
        let runs = DATA_SETS.iter().map(|name| {
            let db = dir.join(format!("{}.db", table_name(name)));
            async move {
                let mut sink = Sink::open_sqlite(&db).await.map_err(sink_error)?;
                let report =
                    sync_data_set(client, &mut sink, name, &SyncOptions::default(), None).await?;
                let (lines, watermark) =
                    table_lines(&sink, &TableName::new("bds", table_name(name)))
                        .await
                        .map_err(BdsError::Config)?;
                Ok::<_, BdsError>((name, report.applied.len(), lines, watermark))
            }
        });
        let mut canonical = Vec::new();
        let mut summary = Vec::new();
        let results = if at_once {
            futures::future::join_all(runs).await
        } else {
            let mut results = Vec::new();
            for run in runs {
                results.push(run.await);
            }
            results
        };
        for result in results {
            let (name, applied, lines, watermark) = result?;
            summary.push(format!("{name}: {applied} extracts, {} rows", lines.len()));
            canonical.extend(lines.into_iter().map(|l| format!("{name} {l}")));
            canonical.push(format!("{name} {watermark}"));
        }
        Ok(Produced::new(summary.join("; "), canonical))
    }

    fn sink_error(e: sql_sink::Error) -> BdsError {
        BdsError::Config(format!("cannot open the database: {e}"))
    }

    /// The typed error a lost answer of the refresh-token POST must be: the
    /// token may be spent, so it is not sent again.
    fn expected(fault: Fault, e: &BdsError) -> Option<String> {
        match e {
            BdsError::Core(core) if fault.may_lose_answers() => {
                lost_start_answer(core, "/core/connect/token")
                    .map(|v| format!("bds_client::BdsError::{v}"))
            }
            _ => None,
        }
    }

    /// A client holding a refresh token the tenant issues now (after a run
    /// that may have spent the stored one).
    async fn fresh_client(server: &BdsServer) -> Client {
        let control = client_core::HttpClient::builder()
            .base_url(server.base_url())
            .build()
            .expect("control client");
        let answer: serde_json::Value = control
            .send_json(client_core::Request::post("/__sandbox/bds/refresh-token"))
            .await
            .expect("the control API issues a refresh token");
        let token = answer["refresh_token"].as_str().unwrap_or_default();
        let store = Arc::new(MemoryTokenStore::with_token(SecretString::from(token)));
        client(server, Fault::None, store)
    }

    pub(super) async fn sync(fault: Fault) -> Run {
        let server = server().await;
        let store = store(&server);
        let client = client(&server, fault, store.clone());
        let dir = tempfile::tempdir().expect("a temporary directory");
        server.faults().set(fault.knobs());
        let result = sync_all(&client, dir.path(), fault == Fault::Rotation).await;
        let hits = finish(server.faults(), server.stats());
        let mut leftovers = Vec::new();
        if fault == Fault::Rotation
            && let Some(problem) = stored_token_is_live(&server, store).await
        {
            leftovers.push(problem);
        }
        // After a failure, the databases must resume: a fault-free sync
        // into them converges to the baseline.
        let resumed = match &result {
            Ok(_) => None,
            Err(_) => Some(
                sync_all(&fresh_client(&server).await, dir.path(), false)
                    .await
                    .map_err(|e| e.to_string()),
            ),
        };
        Run {
            result: result.map_err(|e| RunError {
                expected: expected(fault, &e),
                shown: e.to_string(),
            }),
            leftovers,
            note: None,
            resumed,
            hits,
        }
    }

    static BASELINE_FILES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

    pub(super) async fn download(fault: Fault) -> Run {
        let server = server().await;
        let store = store(&server);
        let client = client(&server, fault, store.clone());
        let dir = tempfile::tempdir().expect("a temporary directory");
        server.faults().set(fault.knobs());
        let result = async {
            let listed = client.data_set_extracts("Users").await?;
            let downloads = listed
                .extracts
                .iter()
                .filter(|e| e.currently_available)
                .enumerate()
                .map(|(i, extract)| {
                    let dest = dir.path().join(format!("{i:02}-{}.zip", extract.plugin_id));
                    let client = &client;
                    async move { client.download(extract, &dest, None).await }
                });
            // Three at a time in the rotation column (one token cache, one
            // rotating refresh token); one at a time elsewhere, so the
            // faults hit the same calls in every run.
            let at_once = if fault == Fault::Rotation { 3 } else { 1 };
            let mut saved: Vec<bds_client::SavedFile> = futures::stream::iter(downloads)
                .buffer_unordered(at_once)
                .try_collect()
                .await?;
            saved.sort_by(|a, b| a.path.cmp(&b.path));
            Ok::<_, bds_client::BdsError>(saved)
        }
        .await;
        let hits = finish(server.faults(), server.stats());
        let reported: Vec<PathBuf> = result
            .as_ref()
            .map(|s| s.iter().map(|f| f.path.clone()).collect())
            .unwrap_or_default();
        let contents: Vec<(String, Vec<u8>)> = reported
            .iter()
            .map(|p| {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                (
                    name.unwrap_or_default(),
                    std::fs::read(p).unwrap_or_default(),
                )
            })
            .collect();
        if fault == Fault::None {
            let _ = BASELINE_FILES.set(contents.iter().map(|(_, c)| digest(c)).collect());
        }
        let mut leftovers = stray_files(
            dir.path(),
            result.is_ok(),
            &reported,
            BASELINE_FILES.get().map(Vec::as_slice),
        );
        if fault == Fault::Rotation
            && let Some(problem) = stored_token_is_live(&server, store).await
        {
            leftovers.push(problem);
        }
        Run {
            result: result
                .map(|saved| {
                    let bytes: u64 = saved.iter().map(|s| s.bytes).sum();
                    let lines = contents
                        .iter()
                        .map(|(name, c)| format!("{name} {} {}", c.len(), digest(c)))
                        .collect();
                    Produced::new(format!("{} files, {bytes} bytes", saved.len()), lines)
                })
                .map_err(|e| RunError {
                    expected: expected(fault, &e),
                    shown: format!("{e} [{e:?}]"),
                }),
            leftovers,
            note: None,
            resumed: None,
            hits,
        }
    }
}

// ------------------------------------------------------------------ LD

/// The typed error a non-idempotent start must end with when its answer
/// was lost: the core's transport error on that very POST, not retried.
fn lost_start_answer(core: &client_core::Error, route: &str) -> Option<String> {
    match core {
        client_core::Error::Transport {
            kind: kind @ (TransportKind::Interrupted | TransportKind::Timeout),
            method,
            url,
            ..
        } if method == "POST" && url.ends_with(route) => Some(format!(
            "Core(Transport {{ kind: {kind:?} }}) on POST {route}, not retried"
        )),
        _ => None,
    }
}

mod ld {
    use super::*;
    use ldbatch_client::{Client, ContentType, Error, ExportRequest, ImportRequest};
    use sandbox::ld::job::JobKind;
    use sandbox::ld::{LdConfig, LdServer};

    async fn server() -> LdServer {
        let config = LdConfig {
            export_rows: 150,
            // Enough polls for every fault to meet a few of them.
            processing_polls: 6,
            ..LdConfig::default()
        };
        sandbox::ld::start(config, sandbox::Faults::new(), sandbox::Stats::new())
            .await
            .expect("the LD sandbox starts")
    }

    fn client(server: &LdServer, fault: Fault) -> Client {
        let c = server.credentials();
        Client::builder()
            .base_url(&c.base_url)
            .client(c.client_id, SecretString::from(c.client_secret))
            .user(c.username, SecretString::from(c.password))
            .community(c.community)
            .poll_policy(polls())
            .retry_policy(retry_policy(fault))
            .sleeper(sleeper())
            .jitter_seed(11)
            .build()
            .expect("the LD client builds")
    }

    fn expected(fault: Fault, e: &Error, route: &str) -> Option<String> {
        match e {
            Error::Core(core) if fault.may_lose_answers() => {
                lost_start_answer(core, route).map(|v| format!("ldbatch_client::Error::{v}"))
            }
            _ => None,
        }
    }

    /// What the server holds after the run, for the matrix.
    fn server_jobs(server: &LdServer) -> String {
        let jobs = server.jobs();
        let list: Vec<String> = jobs
            .iter()
            .map(|j| format!("{} {:?}", j.id, j.status))
            .collect();
        format!("server jobs: [{}]", list.join(", "))
    }

    /// The uploads a fault-free import leaves on the server (size, hash).
    static BASELINE_IMPORTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

    pub(super) async fn import(fault: Fault) -> Run {
        let server = server().await;
        let client = client(&server, fault);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("accounts.json");
        let records: Vec<serde_json::Value> = (0..400)
            .map(|i| serde_json::json!({"id": format!("A-{i:04}"), "name": format!("account {i}")}))
            .collect();
        std::fs::write(&file, serde_json::to_vec(&records).expect("json")).expect("write");
        server.faults().set(fault.knobs());
        let request = ImportRequest::new("Account", ContentType::Json, file.as_path())
            .job_name("fault matrix import");
        let result = async {
            let job = client.import(&request).await?;
            client.wait(&job.job_id).await
        }
        .await;
        let hits = finish(server.faults(), server.stats());
        let note = Some(server_jobs(&server));
        let jobs = server.jobs();
        let imports: Vec<String> = jobs
            .iter()
            .filter_map(|j| match &j.kind {
                JobKind::Import { bytes, sha256, .. } => Some(format!("import {bytes} {sha256}")),
                _ => None,
            })
            .collect();
        if fault == Fault::None {
            let _ = BASELINE_IMPORTS.set(imports.clone());
        }
        // Whatever happened, an import the server took holds the whole file.
        let leftovers = imports
            .iter()
            .filter(|i| BASELINE_IMPORTS.get().is_some_and(|b| !b.contains(i)))
            .map(|i| format!("a partial or different upload on the server: {i}"))
            .collect();
        Run {
            result: match result {
                Ok(done) => {
                    let mut lines = vec![format!(
                        "status {} processed {:?}",
                        done.status, done.records_processed
                    )];
                    // The server's copy of the upload: size and hash.
                    lines.extend(imports.iter().cloned());
                    lines.push(format!("jobs {}", jobs.len()));
                    Ok(Produced::new(
                        format!(
                            "{} {:?} records, {} job(s)",
                            done.status,
                            done.records_processed,
                            jobs.len()
                        ),
                        lines,
                    ))
                }
                Err(e) => Err(RunError {
                    expected: expected(fault, &e, "/ls/api/batch/import"),
                    shown: format!("{e} [{e:?}]"),
                }),
            },
            leftovers,
            note,
            resumed: None,
            hits,
        }
    }

    static BASELINE_FILES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

    pub(super) async fn export(fault: Fault) -> Run {
        let server = server().await;
        let client = client(&server, fault);
        let dir = tempfile::tempdir().expect("a temporary directory");
        server.faults().set(fault.knobs());
        let request = ExportRequest::new("Account", ContentType::Json)
            .sql_query("select * from Account")
            .job_name("fault matrix export");
        let result = async {
            let job = client.export(&request).await?;
            let done = client.wait(&job.job_id).await?;
            let files = client.download_results(&done, dir.path()).await?;
            Ok::<_, Error>((done, files))
        }
        .await;
        let hits = finish(server.faults(), server.stats());
        let reported = result.as_ref().map(|(_, f)| f.clone()).unwrap_or_default();
        let contents: Vec<Vec<u8>> = reported
            .iter()
            .map(|p| std::fs::read(p).unwrap_or_default())
            .collect();
        if fault == Fault::None {
            let _ = BASELINE_FILES.set(contents.iter().map(|c| digest(c)).collect());
        }
        let leftovers = stray_files(
            dir.path(),
            result.is_ok(),
            &reported,
            BASELINE_FILES.get().map(Vec::as_slice),
        );
        let note = Some(server_jobs(&server));
        Run {
            result: match result {
                Ok((done, files)) => {
                    let mut lines = vec![format!(
                        "status {} processed {:?}",
                        done.status, done.records_processed
                    )];
                    lines.extend(
                        contents
                            .iter()
                            .map(|c| format!("{} {}", c.len(), digest(c))),
                    );
                    Ok(Produced::new(
                        format!(
                            "{:?} records, {} file(s), {} bytes",
                            done.records_processed,
                            files.len(),
                            contents.iter().map(Vec::len).sum::<usize>()
                        ),
                        lines,
                    ))
                }
                Err(e) => Err(RunError {
                    expected: expected(fault, &e, "/ls/api/batch/export"),
                    shown: format!("{e} [{e:?}]"),
                }),
            },
            leftovers,
            note,
            resumed: None,
            hits,
        }
    }
}

// ------------------------------------------------------------------ Toucan

mod toucan {
    use super::*;
    use sandbox::toucan::{ToucanConfig, ToucanServer};
    use toucan_client::{AuthMode, Client, Error, Operation, OperationsRequest, Stage, Upload};

    async fn server() -> ToucanServer {
        sandbox::toucan::start(
            ToucanConfig::default(),
            sandbox::Faults::new(),
            sandbox::Stats::new(),
        )
        .await
        .expect("the Toucan sandbox starts")
    }

    fn client(server: &ToucanServer, fault: Fault) -> Client {
        let c = server.credentials();
        Client::builder()
            .api_url(c.api_url)
            .small_app(c.small_app)
            .credentials(c.username, SecretString::from(c.password))
            // Login tokens, so that token expiry has something to expire.
            .auth_mode(AuthMode::Login)
            .poll_policy(polls())
            .retry_policy(retry_policy(fault))
            .sleeper(sleeper())
            .jitter_seed(5)
            .build()
            .expect("the Toucan client builds")
    }

    /// The data sources a fault-free run leaves on the server.
    static BASELINE_UPLOADS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

    /// What the small app holds: uploaded data sources and operations run.
    fn server_state(server: &ToucanServer) -> Vec<String> {
        let mut lines: Vec<String> = server
            .uploads()
            .iter()
            .map(|u| format!("upload {} {} {} {}", u.stage, u.filename, u.size, u.sha256))
            .collect();
        lines.extend(
            server
                .operations()
                .iter()
                .map(|o| format!("operation {:?} on {} {:?}", o.operations, o.stage, o.status)),
        );
        lines
    }

    pub(super) async fn chain(fault: Fault) -> Run {
        let server = server().await;
        let client = client(&server, fault);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let regions = dir.path().join("regions.csv");
        let mut csv = String::from("region,accounts\n");
        for i in 0..200 {
            let _ = writeln!(csv, "region-{i},{}", i * 7 % 100);
        }
        std::fs::write(&regions, csv).expect("write");
        server.faults().set(fault.knobs());
        let result = async {
            let upload = Upload::new(&regions)?.validation(false);
            let receipt = client.upload(&upload).await?;
            if let Some(id) = receipt.operation_id {
                client.wait(&id).await?;
            }
            for operations in [
                vec![Operation::PreprocessDataSources],
                vec![
                    Operation::PopulateBasemaps,
                    Operation::PopulateReports,
                    Operation::PopulateDashboards,
                ],
                vec![Operation::Release],
            ] {
                let id = client
                    .start_operations(Stage::Staging, &OperationsRequest::new(operations))
                    .await?;
                client.wait(&id).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        let hits = finish(server.faults(), server.stats());
        let state = server_state(&server);
        let uploads: Vec<String> = state
            .iter()
            .filter(|l| l.starts_with("upload "))
            .cloned()
            .collect();
        if fault == Fault::None {
            let _ = BASELINE_UPLOADS.set(uploads.clone());
        }
        // Whatever happened, a data source on the server is the whole file.
        let leftovers = uploads
            .iter()
            .filter(|u| BASELINE_UPLOADS.get().is_some_and(|b| !b.contains(u)))
            .map(|u| format!("a partial or different data source on the server: {u}"))
            .collect();
        let note = Some(format!("server: [{}]", state.join("; ")));
        Run {
            result: match result {
                Ok(()) => Ok(Produced::new(
                    format!("{} uploads/operations on the server", state.len()),
                    state,
                )),
                Err(e) => Err(RunError {
                    expected: match &e {
                        Error::Core(core) if fault.may_lose_answers() => {
                            lost_start_answer(core, "/operations")
                                .map(|v| format!("toucan_client::Error::{v}"))
                        }
                        _ => None,
                    },
                    shown: format!("{e} [{e:?}]"),
                }),
            },
            leftovers,
            note,
            resumed: None,
            hits,
        }
    }
}

// ------------------------------------------------------------------ the matrix

/// Runs one row: the baseline, then every column.
async fn row(op: Op) -> (Op, Produced, Vec<(Fault, Cell)>, Duration) {
    let started = Instant::now();
    let baseline = op.run(Fault::None).await;
    let calm = baseline.hits;
    let baseline = match (baseline.result, baseline.leftovers.is_empty()) {
        (Ok(p), true) => p,
        (Ok(_), false) => panic!(
            "{}: the fault-free run left {:?}",
            op.name(),
            baseline.leftovers
        ),
        (Err(e), _) => panic!("{}: the fault-free run failed: {}", op.name(), e.shown),
    };
    let mut cells = Vec::new();
    let only = std::env::var("FAULT_MATRIX_COLUMNS").unwrap_or_default();
    for fault in Fault::COLUMNS
        .into_iter()
        .filter(|f| f.title().contains(&only))
    {
        let cell = match op.not_applicable(fault) {
            Some(reason) => Cell::NotApplicable(reason),
            None => judge(&baseline, calm, fault, op.run(fault).await),
        };
        cells.push((fault, cell));
    }
    (op, baseline, cells, started.elapsed())
}

type Row = (Op, Produced, Vec<(Fault, Cell)>, Duration);

fn print_matrix(rows: &[Row], elapsed: Duration) -> String {
    let mut out = String::new();
    let name_width = Op::ALL.iter().map(|o| o.name().len()).max().unwrap_or(10);
    let _ = writeln!(out, "\nFAULT MATRIX (issue 10): operations x faults\n");
    let _ = write!(out, "{:name_width$}  {:>10}", "operation", "baseline");
    for (i, _) in Fault::COLUMNS.iter().enumerate() {
        let _ = write!(out, "  {:>12}", format!("F{}", i + 1));
    }
    let _ = writeln!(out);
    for (op, baseline, cells, _) in rows {
        let _ = write!(
            out,
            "{:name_width$}  {:>10}",
            op.name(),
            format!("={}", baseline.checksum())
        );
        for (_, cell) in cells {
            let _ = write!(out, "  {:>12}", cell.short());
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "\ncolumns:");
    for (i, fault) in Fault::COLUMNS.iter().enumerate() {
        let _ = writeln!(out, "  F{} {}", i + 1, fault.title());
    }
    let _ = writeln!(
        out,
        "\n`ok =<checksum>`: exactly the baseline's data (same checksum as the baseline column).\n"
    );
    for (op, baseline, cells, took) in rows {
        let _ = writeln!(
            out,
            "{} (baseline: {}; row took {:.1}s)",
            op.name(),
            baseline.summary,
            took.as_secs_f64()
        );
        for (fault, cell) in cells {
            let text = match cell {
                Cell::NotApplicable(why) => format!("n/a: {why}"),
                Cell::Same {
                    summary,
                    checksum,
                    hits,
                } => format!(
                    "= baseline ({summary}, checksum {checksum}); faults hit {} of {} calls; \
                     {} token, {} blob requests",
                    hits.faults, hits.calls, hits.tokens, hits.blobs
                ),
                Cell::ExpectedError { variant, note } => format!(
                    "expected typed error {variant}; nothing half-written{}",
                    note.as_deref()
                        .map(|n| format!("; {n}"))
                        .unwrap_or_default()
                ),
                Cell::Failed(why) => format!("FAILED: {why}"),
            };
            let _ = writeln!(out, "  {:<52} {text}", fault.title());
        }
    }
    let _ = writeln!(
        out,
        "\nblob/pre-signed requests: {}, of which with an Authorization header: {}",
        BLOB_REQUESTS.load(Ordering::SeqCst),
        BLOB_AUTHORIZATION.load(Ordering::SeqCst)
    );
    let _ = writeln!(out, "matrix time: {:.1}s", elapsed.as_secs_f64());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix() {
    let started = Instant::now();
    // Rows are independent (each run has its own sandbox); running them at
    // once keeps the matrix short. Within a row, runs are sequential.
    // `FAULT_MATRIX_ROWS=BDS` and `FAULT_MATRIX_COLUMNS=429` (substrings of
    // row and column titles) run part of the matrix, and `RUST_LOG=warn`
    // shows the clients' retries, when digging into a cell.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let only = std::env::var("FAULT_MATRIX_ROWS").unwrap_or_default();
    let selected = Op::ALL.into_iter().filter(|op| op.name().contains(&only));
    let rows: Vec<_> = futures::future::join_all(selected.map(row)).await;
    let printed = print_matrix(&rows, started.elapsed());
    // Written to stderr directly, past the harness's capture, so the matrix
    // shows in every run (CI's included), not only with --nocapture.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{printed}\n").as_bytes());

    let failures: BTreeMap<String, String> = rows
        .iter()
        .flat_map(|(op, _, cells, _)| {
            cells.iter().filter_map(move |(f, c)| match c {
                Cell::Failed(why) => Some((format!("{} x {}", op.name(), f.title()), why.clone())),
                _ => None,
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} cell(s) failed:\n{failures:#?}",
        failures.len()
    );
    assert!(
        BLOB_REQUESTS.load(Ordering::SeqCst) > 0,
        "the matrix downloaded from pre-signed URLs"
    );
    assert_eq!(
        BLOB_AUTHORIZATION.load(Ordering::SeqCst),
        0,
        "no Authorization header may reach a pre-signed/blob URL"
    );
}
