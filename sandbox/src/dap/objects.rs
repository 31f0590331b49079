//! Job output files: generated once per distinct query into a temporary cache directory, as
//! single-member gzip parts, and streamed from disk; plus the signing of pre-signed-looking URLs.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::sync::OnceCell;

use super::encode::{Encoder, Format, Mode, write_records};
use super::model::{RowState, TableVersion};
use crate::data::mix;

/// Everything that decides the bytes of a query result.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryKey {
    /// Namespace.
    pub namespace: String,
    /// Table.
    pub table: String,
    /// Schema version at query time.
    pub schema_version: u64,
    /// Table epoch at query time.
    pub epoch: u64,
    /// Output format.
    pub format: Format,
    /// Output mode, normalised: absent and JSONL both mean condensed (same bytes, same files).
    pub mode: Mode,
    /// `(since, until)` of an incremental query.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl QueryKey {
    /// The key of a query on the current version of `table`.
    pub fn new(
        table: &TableVersion,
        format: Format,
        mode: Option<Mode>,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Self {
        let mode = match format {
            Format::Tsv | Format::Csv => mode.unwrap_or(Mode::Condensed),
            Format::Jsonl | Format::Parquet => Mode::Condensed,
        };
        Self {
            namespace: table.namespace.clone(),
            table: table.name.clone(),
            schema_version: table.schema_version,
            epoch: table.epoch,
            format,
            mode,
            window,
        }
    }

    /// A stable 64-bit digest (names the cache directory and object ids).
    pub fn digest(&self) -> u64 {
        let text = format!("{self:?}");
        text.bytes().fold(0x5EED_u64, |h, b| mix(h ^ u64::from(b)))
    }
}

/// One generated object file.
#[derive(Clone, Debug)]
pub struct ObjectFile {
    /// File name, e.g. `part-00000-1a2b3c4d5e6f7081.tsv.gz`.
    pub name: String,
    /// Where it is on disk.
    pub path: PathBuf,
    /// Size in bytes.
    pub len: u64,
    /// Records in it.
    pub records: u64,
}

/// The outcome of generating a query result.
pub type Generated = Result<Arc<Vec<ObjectFile>>, String>;

/// The cache of generated results, keyed by [`QueryKey`]; identical queries share files.
#[derive(Debug)]
pub struct ObjectCache {
    dir: tempfile::TempDir,
    rows_per_part: u64,
    entries: Mutex<HashMap<QueryKey, Arc<OnceCell<Generated>>>>,
}

impl ObjectCache {
    /// A cache in a fresh temporary directory (removed when the cache is dropped).
    pub fn new(rows_per_part: u64) -> std::io::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new().prefix("sandbox-dap-").tempdir()?,
            rows_per_part: rows_per_part.max(1),
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// The shared cell of a key; the first caller of [`generate`](Self::generate) fills it.
    pub fn cell(&self, key: &QueryKey) -> Arc<OnceCell<Generated>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.entry(key.clone()).or_default().clone()
    }

    /// Generates (once) the files of `key` from `table`, on blocking threads.
    pub async fn generate(&self, key: QueryKey, table: TableVersion) -> Generated {
        let cell = self.cell(&key);
        let dir = self.dir.path().join(format!("{:016x}", key.digest()));
        let rows_per_part = self.rows_per_part;
        let generating_key = key.clone();
        let outcome = cell
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    write_parts(&dir, &generating_key, &table, rows_per_part)
                        .map_err(|e| e.to_string())
                })
                .await
                .unwrap_or_else(|e| Err(format!("generation task failed: {e}")))
                .map(Arc::new)
            })
            .await
            .clone();
        if outcome.is_err() {
            // Forget the failure so the next job with this query tries again (the failed job
            // keeps its own handle on the error).
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.remove(&key);
        }
        outcome
    }
}

/// The rows of one part.
enum PartRows {
    /// Snapshot: every live id in `[start, end)`.
    Range(u64, u64),
    /// Incremental: these changed rows.
    List(Vec<(u64, RowState)>),
}

fn plan_parts(key: &QueryKey, table: &TableVersion, rows_per_part: u64) -> Vec<PartRows> {
    match key.window {
        None => {
            let mut parts = Vec::new();
            let mut start = 1;
            while start < table.next_id {
                let end = start.saturating_add(rows_per_part).min(table.next_id);
                parts.push(PartRows::Range(start, end));
                start = end;
            }
            if parts.is_empty() {
                parts.push(PartRows::List(Vec::new()));
            }
            parts
        }
        Some((since, until)) => {
            let changed: Vec<(u64, RowState)> = table
                .touched
                .iter()
                .filter(|(id, s)| {
                    let ts = table.row_ts(**id, s.epoch);
                    since < ts && ts <= until
                })
                .map(|(id, s)| (*id, *s))
                .collect();
            let per = usize::try_from(rows_per_part).unwrap_or(usize::MAX);
            let mut parts: Vec<PartRows> = changed
                .chunks(per)
                .map(|c| PartRows::List(c.to_vec()))
                .collect();
            if parts.is_empty() {
                parts.push(PartRows::List(Vec::new()));
            }
            parts
        }
    }
}

fn write_parts(
    dir: &Path,
    key: &QueryKey,
    table: &TableVersion,
    rows_per_part: u64,
) -> std::io::Result<Vec<ObjectFile>> {
    std::fs::create_dir_all(dir)?;
    let parts = plan_parts(key, table, rows_per_part);
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(parts.len());
    let results: Mutex<Vec<Option<std::io::Result<ObjectFile>>>> =
        Mutex::new((0..parts.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(part) = parts.get(i) else { break };
                    let outcome = write_part(dir, key, table, i, part);
                    let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Some(outcome);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("part not generated"))))
        .collect()
}

fn write_part(
    dir: &Path,
    key: &QueryKey,
    table: &TableVersion,
    index: usize,
    part: &PartRows,
) -> std::io::Result<ObjectFile> {
    let name = format!(
        "part-{index:05}-{:016x}.{}.gz",
        key.digest(),
        key.format.extension()
    );
    let path = dir.join(&name);
    // Written under a temporary name and renamed when complete: no half-written object is served.
    let partial = dir.join(format!("{name}.partial"));
    let encoder = Encoder::new(table, key.format, Some(key.mode), key.window.is_some());
    let file = BufWriter::with_capacity(1 << 16, File::create(&partial)?);
    let mut gz = GzEncoder::new(file, Compression::fast());
    let records = match part {
        PartRows::Range(start, end) => {
            let rows = (*start..*end)
                .filter_map(|id| table.row_state(id).filter(|s| !s.deleted).map(|s| (id, s)));
            write_records(&encoder, rows, true, &mut gz)?
        }
        PartRows::List(list) => write_records(&encoder, list.iter().copied(), true, &mut gz)?,
    };
    let mut file = gz.finish()?;
    file.flush()?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let len = file.metadata()?.len();
    drop(file);
    std::fs::rename(&partial, &path)?;
    Ok(ObjectFile {
        name,
        path,
        len,
        records,
    })
}

/// Signs and checks pre-signed-looking URLs (`X-Amz-Date`, `X-Amz-Expires`, `X-Amz-Signature`).
/// The signature is a keyed hash, not AWS SigV4; it only has to be unforgeable by accident.
#[derive(Debug, Clone, Copy)]
pub struct Signer {
    secret: u64,
}

impl Signer {
    /// A signer with a key.
    pub fn new(secret: u64) -> Self {
        Self { secret }
    }

    /// The 64-hex-digit signature of (path, date, expires, generation).
    pub fn sign(&self, path: &str, date: &str, expires: u64, generation: u64) -> String {
        let text = format!("{path}\n{date}\n{expires}\n{generation}");
        let h0 = text.bytes().fold(self.secret, |h, b| mix(h ^ u64::from(b)));
        (1..=4u64)
            .map(|i| format!("{:016x}", mix(h0 ^ mix(i))))
            .collect()
    }
}

/// `YYYYMMDDTHHMMSSZ`, the `X-Amz-Date` format.
pub fn amz_date(ts: &DateTime<Utc>) -> String {
    ts.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Parses an `X-Amz-Date`.
pub fn parse_amz_date(text: &str) -> Option<DateTime<Utc>> {
    chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|n| n.and_utc())
}
