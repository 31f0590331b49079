//! Throughput and memory of the sync of one User Enrollments full, against
//! the machine's raw limits on the same sandbox extract, in one run:
//!
//! | run | what is timed |
//! |---|---|
//! | ours, reader alone | unzip and CSV parse of the downloaded ZIP, no database |
//! | ours → PostgreSQL | `sync_data_set`: download, unzip, parse, `COPY` into staging, merge, commit |
//! | ours → SQLite | the same into a SQLite file |
//! | `unzip -p \| psql \copy` | into a table `LIKE` ours (same columns, same primary key) |
//! | `unzip -p \| psql \copy`, no key | into a text table without a primary key |
//! | `unzip -p \| psql \copy`, key after | into a table without a key, then `ADD PRIMARY KEY` (what a full could cost) |
//! | `sqlite3 .import` | the CSV (unzipped beforehand, untimed) into a table with our table's DDL, same pragmas as ours |
//! | `sqlite3 .import`, index after | into a table without a key, then `CREATE UNIQUE INDEX`, one transaction |
//!
//! Our syncs run in a child process (this test binary again, running
//! [`bench_child_sync`] only), so the peak RSS they report (`VmHWM`) is the
//! sync's alone, not the sandbox's that serves the extract from this process.
//! A measurement, not a test: it asserts row counts only and prints the rates.
//!
//! ```text
//! BDS_BENCH_ROWS=1000000 BDS_BENCH_ROUNDS=3 nice -n 5 cargo test --release -p bds-client \
//!     --all-features --test throughput -- --ignored --nocapture --test-threads=1 user_enrollments
//! ```
//!
//! `BDS_BENCH_ROUNDS` repeats the timed runs (fresh databases each round)
//! and prints the medians; `BDS_BENCH_BATCH_ROWS` sets the sync's batch size;
//! `BDS_BENCH_PERF=<prefix>` runs our syncs under `perf record -g`.
#![cfg(feature = "postgres")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bds_client::plan::{PlanKind, TableState, plan};
use bds_client::sync::{SyncEvent, SyncOptions, sync_data_set};
use bds_client::{
    ArchiveLimits, Client, ExtractArchive, MemoryTokenStore, PlanOptions, SecretString,
};
use sandbox::bds::{BdsConfig, BdsServer};

const DATA_SET: &str = "User Enrollments";
const TABLE: &str = "user_enrollments";
/// Set for the child process: the database URL it syncs into.
const CHILD_DATABASE: &str = "BDS_BENCH_CHILD_DATABASE";
/// What the child prints, followed by its figures.
const CHILD_MARK: &str = "bds-bench-child:";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --release -- --ignored --nocapture"]
async fn user_enrollments_sync_against_copy_and_import() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rows = env("BDS_BENCH_ROWS", 200_000);
    let rounds = env("BDS_BENCH_ROUNDS", 1).max(1);
    let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await else {
        return;
    };
    let config = BdsConfig {
        rows,
        initial_days: 0,
        ..BdsConfig::default()
    };
    let server = sandbox::bds::start(config, sandbox::Faults::new(), sandbox::Stats::new())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    // The extract, downloaded once: the references read this file, and the
    // sandbox has its ZIP cached before anything is timed.
    let zip = dir.path().join("user_enrollments.zip");
    let started = Instant::now();
    let zip_bytes = download_full(&server, &zip).await;
    let download = started.elapsed();
    let csv_bytes = ExtractArchive::open(&zip, ArchiveLimits::default())
        .unwrap()
        .declared_size();
    let zip_path = zip.clone();
    let reader = tokio::task::spawn_blocking(move || read_all(&zip_path))
        .await
        .unwrap();
    let csv = dir.path().join("user_enrollments.csv");
    shell(&format!(
        "unzip -p '{}' > '{}'",
        zip.display(),
        csv.display()
    ));
    let bench = Bench {
        server,
        pg,
        dir: dir.path().to_path_buf(),
        zip: zip.display().to_string(),
        csv: csv.display().to_string(),
        rows,
        csv_bytes,
    };

    println!(
        "\n{DATA_SET}: {rows} rows, ZIP {zip_bytes} bytes, CSV {csv_bytes} bytes, {rounds} round(s)"
    );
    println!(
        "download alone (warm-up)           {:>8.2} s",
        download.as_secs_f64()
    );
    bench.line("ours: unzip + CSV parse only", reader, None);
    let mut results = Vec::new();
    for round in 1..=rounds {
        let result = bench.round(round).await;
        bench.print(round, &result);
        results.push(result);
    }
    if rounds > 1 {
        let median = |f: &dyn Fn(&Round) -> f64| {
            let mut v: Vec<f64> = results.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let mid = v.len() / 2;
            if v.len().is_multiple_of(2) {
                (v[mid - 1] + v[mid]) / 2.0
            } else {
                v[mid]
            }
        };
        let peak =
            |f: &dyn Fn(&Round) -> u64| results.iter().map(f).max().unwrap_or(0) as f64 / 1024.0;
        println!(
            "median of {rounds} rounds: PostgreSQL ours at {:.0}% of \\copy keyed, {:.0}% of \\copy without key; \
             SQLite ours at {:.0}% of .import; highest peak RSS: PostgreSQL {:.1} MB, SQLite {:.1} MB",
            median(&|r| ratio(r.copy_keyed, r.ours_pg.total)),
            median(&|r| ratio(r.copy_plain, r.ours_pg.total)),
            median(&|r| ratio(r.import, r.ours_sqlite.total)),
            peak(&|r| r.ours_pg.peak_kib),
            peak(&|r| r.ours_sqlite.peak_kib),
        );
    }
}

/// The sandbox, the PostgreSQL server and the extract shared by the rounds.
struct Bench {
    server: BdsServer,
    pg: sql_sink::testing::TempPostgres,
    dir: std::path::PathBuf,
    zip: String,
    csv: String,
    rows: u64,
    csv_bytes: u64,
}

/// The timings of one round.
struct Round {
    load_before: String,
    load_after: String,
    ours_pg: ChildRun,
    ours_sqlite: ChildRun,
    copy_keyed: Duration,
    copy_plain: Duration,
    copy_late: Duration,
    import: Duration,
    import_late: Duration,
}

fn ratio(reference: Duration, ours: Duration) -> f64 {
    100.0 * reference.as_secs_f64() / ours.as_secs_f64()
}

impl Bench {
    /// Ours into fresh databases, then the references into tables like ours.
    async fn round(&self, round: u64) -> Round {
        let load_before = load_average();
        let rows = self.rows;
        let pg_url = self.pg.fresh_database().await.unwrap();
        let ours_pg = child_sync(&self.server, &pg_url);
        let sqlite_db = self.dir.join(format!("ours-{round}.db"));
        let ours_sqlite = child_sync(&self.server, &format!("sqlite://{}", sqlite_db.display()));
        assert_eq!(ours_pg.rows, rows, "PostgreSQL sync row count");
        assert_eq!(ours_sqlite.rows, rows, "SQLite sync row count");

        // PostgreSQL: unzip into psql's \copy, into a table like ours, into
        // one without a key (the raw limit), and into one whose key is
        // built after the load (what a full could cost).
        let ours_table = format!("bds.{TABLE}");
        let columns: Vec<String> = psql_lines(
            &pg_url,
            &format!(
                "SELECT quote_ident(attname) || ' text' FROM pg_attribute \
                 WHERE attrelid = '{ours_table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
            ),
        );
        let columns = columns.join(", ");
        psql(
            &pg_url,
            &format!(
                "CREATE TABLE ref_keyed (LIKE {ours_table} INCLUDING ALL); \
                 CREATE TABLE ref_plain ({columns}); CREATE TABLE ref_late ({columns})"
            ),
        );
        let copy = |table: &str| {
            shell(&format!(
                "unzip -p '{}' | psql -q -v ON_ERROR_STOP=1 '{pg_url}' -c '\\copy {table} FROM STDIN (FORMAT csv, HEADER)'",
                self.zip
            ))
        };
        let key = bds_client::PrimaryKeys::default()
            .get(DATA_SET)
            .expect("a known key")
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let copy_keyed = copy("ref_keyed");
        let copy_plain = copy("ref_plain");
        let copy_late = copy("ref_late")
            + timed(|| {
                psql(
                    &pg_url,
                    &format!("ALTER TABLE ref_late ADD PRIMARY KEY ({key})"),
                )
            });
        for table in ["ref_keyed", "ref_plain", "ref_late"] {
            let count = psql_lines(&pg_url, &format!("SELECT count(*) FROM {table}"));
            assert_eq!(count, [rows.to_string()], "{table} row count");
        }
        self.drop_database(&pg_url);

        // SQLite: sqlite3's .import of the unzipped CSV into a table with
        // our table's DDL, and into one whose unique index is built after,
        // in databases with our sink's pragmas.
        let ddl = sqlite_lines(
            &sqlite_db,
            &format!(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'bds__{TABLE}'"
            ),
        )
        .join("\n")
        .replacen(&format!("bds__{TABLE}"), "ref_import", 1);
        assert!(ddl.contains("ref_import"), "our table's DDL: {ddl}");
        let pragmas = "PRAGMA journal_mode = WAL;\nPRAGMA synchronous = NORMAL;\nPRAGMA cache_size = -65536;\n";
        let ref_db = self.dir.join(format!("ref-{round}.db"));
        let import = sqlite_script(
            &ref_db,
            &format!(
                "{pragmas}{ddl};\n.import --csv --skip 1 '{}' ref_import\n",
                self.csv
            ),
        );
        let count = sqlite_lines(&ref_db, "SELECT count(*) FROM ref_import");
        assert_eq!(count, [rows.to_string()], "ref_import row count");
        let late_db = self.dir.join(format!("late-{round}.db"));
        let import_late = sqlite_script(
            &late_db,
            &format!(
                "{pragmas}CREATE TABLE ref_late ({columns});\nBEGIN;\n\
                 .import --csv --skip 1 '{}' ref_late\n\
                 CREATE UNIQUE INDEX ref_late_key ON ref_late ({key});\nCOMMIT;\n",
                self.csv
            ),
        );
        for db in [sqlite_db, ref_db, late_db] {
            let _ = std::fs::remove_file(&db);
        }
        Round {
            load_before,
            load_after: load_average(),
            ours_pg,
            ours_sqlite,
            copy_keyed,
            copy_plain,
            copy_late,
            import,
            import_late,
        }
    }

    /// Drops a database made by `fresh_database` (they add up over rounds).
    fn drop_database(&self, url: &str) {
        let name = url
            .rsplit('/')
            .next()
            .and_then(|tail| tail.split('?').next())
            .expect("a database name");
        psql(self.pg.url(), &format!("DROP DATABASE \"{name}\""));
    }

    fn line(&self, name: &str, d: Duration, rss: Option<u64>) {
        let rss = rss.map_or_else(String::new, |kib| {
            format!("  peak RSS {:>6.1} MB", kib as f64 / 1024.0)
        });
        println!(
            "{name:<34} {:>8.2} s {:>10.0} rows/s {:>7.1} MB/s{rss}",
            d.as_secs_f64(),
            self.rows as f64 / d.as_secs_f64(),
            self.csv_bytes as f64 / 1e6 / d.as_secs_f64()
        );
    }

    fn print(&self, round: u64, r: &Round) {
        println!(
            "round {round}: load average before {}, after {}",
            r.load_before, r.load_after
        );
        for (name, run) in [
            ("ours -> PostgreSQL", &r.ours_pg),
            ("ours -> SQLite", &r.ours_sqlite),
        ] {
            self.line(name, run.total, Some(run.peak_kib));
            println!(
                "   of which download {:.2} s, load and commit {:.2} s; CPU {:.2} s; \
                 peak RSS {:.1} MB before the sync, {:.1} MB after the download",
                run.download.as_secs_f64(),
                (run.total - run.download).as_secs_f64(),
                run.cpu.as_secs_f64(),
                run.baseline_kib as f64 / 1024.0,
                run.download_kib as f64 / 1024.0
            );
        }
        self.line("unzip -p | psql \\copy (keyed)", r.copy_keyed, None);
        self.line("unzip -p | psql \\copy (no key)", r.copy_plain, None);
        self.line("  the same, key built after", r.copy_late, None);
        self.line("sqlite3 .import (import only)", r.import, None);
        self.line("  the same, unique index after", r.import_late, None);
        println!(
            "PostgreSQL: ours at {:.0}% of \\copy keyed, {:.0}% of \\copy without key, \
             {:.0}% of \\copy + key after (target >= 60%)",
            ratio(r.copy_keyed, r.ours_pg.total),
            ratio(r.copy_plain, r.ours_pg.total),
            ratio(r.copy_late, r.ours_pg.total)
        );
        println!(
            "SQLite: ours at {:.0}% of sqlite3 .import (target >= 100%), {:.0}% of .import + index after",
            ratio(r.import, r.ours_sqlite.total),
            ratio(r.import_late, r.ours_sqlite.total)
        );
    }
}

/// The benchmark's child: syncs the data set into `$BDS_BENCH_CHILD_DATABASE`
/// and prints its timings and peak RSS. Does nothing unless the benchmark
/// started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the benchmark's child process"]
async fn bench_child_sync() {
    let Ok(database) = std::env::var(CHILD_DATABASE) else {
        return;
    };
    let client = Client::from_env()
        .unwrap()
        .token_store(Arc::new(MemoryTokenStore::new()))
        .build()
        .unwrap();
    let mut sink = sql_sink::Sink::open(&database).await.unwrap();
    let baseline_kib = vm_hwm_kib();
    // When the first batch reached the database, and the peak RSS by then
    // (download and archive opened).
    let loading_from: Arc<Mutex<Option<(Instant, u64)>>> = Arc::default();
    let first_rows = loading_from.clone();
    let events: bds_client::sync::SyncEvents = Arc::new(move |event: &SyncEvent| {
        if let SyncEvent::Loading { .. } = event {
            let mut first = first_rows.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| (Instant::now(), vm_hwm_kib()));
        }
    });
    let mut options = SyncOptions::default();
    if let Some(rows) = std::env::var("BDS_BENCH_BATCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        options = options.batch_rows(rows);
    }
    let started = Instant::now();
    let report = sync_data_set(&client, &mut sink, DATA_SET, &options, Some(events))
        .await
        .unwrap();
    let total = started.elapsed();
    assert_eq!(report.plan, PlanKind::Initial);
    let (first_batch, download_kib) = loading_from
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .unwrap_or((started, 0));
    let rows: u64 = report.applied.iter().map(|a| a.rows).sum();
    println!(
        "{CHILD_MARK} rows={rows} total_ms={} download_ms={} vmhwm_kib={} baseline_kib={baseline_kib} download_kib={download_kib} cpu_ms={}",
        total.as_millis(),
        (first_batch - started).as_millis(),
        vm_hwm_kib(),
        cpu_ms()
    );
}

/// What a child sync reported.
struct ChildRun {
    rows: u64,
    total: Duration,
    /// Until the first batch reached the database: download and ZIP open.
    download: Duration,
    peak_kib: u64,
    /// Peak RSS before the sync started (runtime, client, open database).
    baseline_kib: u64,
    /// Peak RSS when the first batch reached the database.
    download_kib: u64,
    /// CPU time (user + system) of the whole child process.
    cpu: Duration,
}

/// Runs [`bench_child_sync`] in a fresh process against the sandbox.
/// With `BDS_BENCH_PERF=<prefix>` set, the child runs under `perf record`.
fn child_sync(server: &BdsServer, database: &str) -> ChildRun {
    let creds = server.credentials();
    let exe = std::env::current_exe().unwrap();
    let mut command = match std::env::var("BDS_BENCH_PERF") {
        // Profile the child: `perf record -g -o <prefix>.<backend>`.
        Ok(prefix) => {
            let backend = database.split(':').next().unwrap_or("db");
            let mut perf = Command::new("perf");
            perf.args(["record", "-g", "-o", &format!("{prefix}.{backend}"), "--"])
                .arg(exe);
            perf
        }
        Err(_) => Command::new(exe),
    };
    let output = command
        .args([
            "--exact",
            "bench_child_sync",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DATABASE, database)
        .env("D2L_BASE_URL", &creds.base_url)
        .env("D2L_AUTH_URL", &creds.auth_url)
        .env("D2L_CLIENT_ID", &creds.client_id)
        .env("D2L_CLIENT_SECRET", &creds.client_secret)
        .env("D2L_REFRESH_TOKEN", &creds.refresh_token)
        .env_remove("D2L_TOKEN_STORE")
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child sync failed:\n{stdout}");
    let figures = stdout
        .lines()
        .find_map(|l| l.split_once(CHILD_MARK).map(|(_, figures)| figures))
        .unwrap_or_else(|| panic!("the child printed no figures:\n{stdout}"));
    let figure = |name: &str| -> u64 {
        figures
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {figures}"))
    };
    ChildRun {
        rows: figure("rows"),
        total: Duration::from_millis(figure("total_ms")),
        download: Duration::from_millis(figure("download_ms")),
        peak_kib: figure("vmhwm_kib"),
        baseline_kib: figure("baseline_kib"),
        download_kib: figure("download_kib"),
        cpu: Duration::from_millis(figure("cpu_ms")),
    }
}

/// Downloads the newest full of the data set to `dest`; returns its size.
async fn download_full(server: &BdsServer, dest: &Path) -> u64 {
    let creds = server.credentials();
    let client = Client::builder()
        .base_url(&creds.base_url)
        .auth_url(&creds.auth_url)
        .credentials(
            &creds.client_id,
            SecretString::from(creds.client_secret.clone()),
        )
        .refresh_token(SecretString::from(creds.refresh_token.clone()))
        .token_store(Arc::new(MemoryTokenStore::new()))
        .build()
        .unwrap();
    let found = client.data_set_extracts(DATA_SET).await.unwrap();
    let first = plan(
        &TableState::default(),
        &found.extracts,
        &PlanOptions::default(),
    );
    assert_eq!(first.kind, PlanKind::Initial);
    client
        .download(&first.steps[0].extract, dest, None)
        .await
        .unwrap()
        .bytes
}

/// Reads every row of the archive as the sync does, without a database.
fn read_all(zip: &Path) -> Duration {
    let started = Instant::now();
    let mut archive = ExtractArchive::open(zip, ArchiveLimits::default()).unwrap();
    let mut rows = archive.rows().unwrap();
    let names = rows.header().names().to_vec();
    let map = rows.header().map_columns(&names);
    let mut row = bds_client::Row::default();
    let mut cells = 0usize;
    while rows.read_row(&mut row).unwrap() {
        cells += row.project(&map).flatten().map(str::len).sum::<usize>();
    }
    assert!(cells > 0);
    started.elapsed()
}

/// This process's peak resident set size (`VmHWM`), in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// CPU time of this process so far (user + system, `/proc/self/stat`), in ms.
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second on Linux).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    ticks * 10
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn timed(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

/// Runs a shell pipeline; returns its wall time.
fn shell(script: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "failed: {script}");
    took
}

fn psql(url: &str, sql: &str) {
    psql_lines(url, sql);
}

/// Runs one statement; returns the rows of its result, unaligned.
fn psql_lines(url: &str, sql: &str) -> Vec<String> {
    let output = Command::new("psql")
        .args(["-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "psql failed: {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    lines(&output.stdout)
}

fn sqlite_lines(db: &Path, sql: &str) -> Vec<String> {
    let output = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(
        output.status.success(),
        "sqlite3 failed: {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    lines(&output.stdout)
}

/// Feeds `script` to `sqlite3 db` on stdin; returns its wall time.
fn sqlite_script(db: &Path, script: &str) -> Duration {
    use std::io::Write;
    let started = Instant::now();
    let mut child = Command::new("sqlite3")
        .arg("-bail")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let status = child.wait().unwrap();
    let took = started.elapsed();
    assert!(status.success(), "sqlite3 failed on:\n{script}");
    took
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}
