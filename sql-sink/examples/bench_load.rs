//! Load N generated rows into SQLite and (with feature `postgres`) a
//! throwaway PostgreSQL, and compare with the databases' own bulk loaders on
//! the same CSV file, measured in the same run:
//!
//! ```text
//! cargo run --release -p sql-sink --features postgres --example bench_load -- [ROWS] [REPEAT]
//! ```
//!
//! ROWS defaults to 1 000 000, REPEAT to 3; each figure is the best of REPEAT
//! runs (each into a fresh database), which filters out noise from other
//! processes. The reference for SQLite is `sqlite3 .import` (if `sqlite3` is
//! installed), for PostgreSQL `psql \copy` (if `psql` is installed), both
//! into a table of the same shape with the same primary key. Our figures
//! include parsing the CSV, as the references do.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sql_sink::{Column, RowBatch, Sink, SqlType, TableDef, Watermark};

const BATCH_ROWS: usize = 50_000;

fn table() -> TableDef {
    TableDef::new(
        "bench",
        "events",
        vec![
            Column::new("id", SqlType::Int64, false),
            Column::new("user_id", SqlType::Int64, false),
            Column::new("name", SqlType::Text, true),
            Column::new(
                "workflow_state",
                SqlType::enumeration("events__state", ["active", "deleted"]),
                false,
            ),
            Column::new("created_at", SqlType::Timestamp, false),
            Column::new("score", SqlType::Float64, true),
            Column::new("active", SqlType::Bool, true),
        ],
        ["id"],
    )
}

/// Deterministic rows; every 10th name is NULL (empty unquoted CSV field).
/// `version` changes every name and score, so loading version 2 over
/// version 1 really updates every row.
fn write_csv(path: &Path, rows: u64, version: u64) -> std::io::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "id,user_id,name,workflow_state,created_at,score,active"
    )?;
    for i in 0..rows {
        let name = if i % 10 == 0 {
            String::new()
        } else {
            format!("\"user, number {i} v{version}\"")
        };
        let state = if i % 7 == 0 { "deleted" } else { "active" };
        let secs = 1_700_000_000 + i;
        let ts = chrono::DateTime::from_timestamp(secs as i64, ((i % 1000) * 1_000_000) as u32)
            .unwrap_or_default();
        writeln!(
            out,
            "{i},{},{name},{state},{},{}.{},{}",
            i % 5000,
            ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            i % 100 + version,
            i % 13,
            i % 2 == 0
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Parse the CSV and load it through the sink in batches.
async fn load_csv(
    sink: &mut Sink,
    def: &TableDef,
    csv_path: &Path,
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(csv_path)?;
    let mut record = csv::ByteRecord::new();
    let mut batch = RowBatch::with_capacity(def.columns.len(), BATCH_ROWS, 100);
    let mut load = sink.begin_load(def).await?;
    let mut rows = 0u64;
    while reader.read_byte_record(&mut record)? {
        // Empty field = NULL, as in PostgreSQL's CSV COPY (the generated
        // file has no quoted empty strings).
        batch.push_row(record.iter().map(|f| match std::str::from_utf8(f) {
            Ok("") => None,
            Ok(s) => Some(s),
            Err(_) => Some(""),
        }))?;
        rows += 1;
        if batch.len() >= BATCH_ROWS {
            load.upsert(&mut batch).await?;
        }
    }
    load.upsert(&mut batch).await?;
    load.commit(Watermark::new(format!("rows={rows}"))).await?;
    Ok(rows)
}

fn report(label: &str, rows: u64, bytes: u64, took: Duration) {
    let secs = took.as_secs_f64().max(1e-9);
    println!(
        "{label:<44} {rows:>10} rows  {:>8.2} s  {:>12.0} rows/s  {:>7.1} MB/s",
        secs,
        rows as f64 / secs,
        bytes as f64 / secs / 1e6
    );
}

fn sqlite_sql_schema() -> &'static str {
    "CREATE TABLE bench__events (id INTEGER NOT NULL, user_id INTEGER, name TEXT, workflow_state TEXT, \
     created_at TEXT, score REAL, active INTEGER, PRIMARY KEY (id));"
}

fn sqlite_reference(dir: &Path, csv_path: &Path, run: usize) -> Result<Duration, String> {
    let db = dir.join(format!("reference-{run}.db"));
    let script = format!(
        "{}\n.mode csv\n.import --skip 1 {} bench__events\n",
        sqlite_sql_schema(),
        csv_path.display()
    );
    let start = Instant::now();
    let out = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            if let Some(stdin) = child.stdin.as_mut() {
                stdin.write_all(script.as_bytes())?;
            }
            child.wait_with_output()
        });
    match out {
        Ok(o) if o.status.success() => Ok(start.elapsed()),
        Ok(o) => Err(format!(
            "sqlite3 .import failed: {}",
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!(
            "sqlite3 not available ({e}); install the sqlite3 package"
        )),
    }
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let repeat: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(3)
        .max(1);
    let dir = tempfile::tempdir()?;
    let csv_path = dir.path().join("events.csv");
    let bytes = write_csv(&csv_path, rows, 1)?;
    let csv_v2 = dir.path().join("events-v2.csv");
    write_csv(&csv_v2, rows, 2)?;
    println!(
        "{rows} rows, {:.1} MB of CSV, batches of {BATCH_ROWS}, best of {repeat}",
        bytes as f64 / 1e6
    );
    let def = table();

    let (mut fresh, mut again, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    let mut reference_error = None;
    for run in 0..repeat {
        let db = dir.path().join(format!("sink-{run}.db"));
        let mut sink = Sink::open(&format!("sqlite://{}", db.display())).await?;
        let start = Instant::now();
        load_csv(&mut sink, &def, &csv_path).await?;
        fresh.push(start.elapsed());
        let start = Instant::now();
        load_csv(&mut sink, &def, &csv_v2).await?;
        again.push(start.elapsed());
        drop(sink);
        match sqlite_reference(dir.path(), &csv_path, run) {
            Ok(t) => reference.push(t),
            Err(e) => reference_error = Some(e),
        }
    }
    report(
        "sql-sink SQLite: load into empty table",
        rows,
        bytes,
        best(&fresh),
    );
    report(
        "sql-sink SQLite: upsert changing every row",
        rows,
        bytes,
        best(&again),
    );
    match reference_error {
        Some(e) => println!("reference: {e}"),
        None => report("reference: sqlite3 .import", rows, bytes, best(&reference)),
    }

    #[cfg(feature = "postgres")]
    postgres(&def, [&csv_path, &csv_v2], rows, bytes, repeat).await?;
    #[cfg(not(feature = "postgres"))]
    println!("PostgreSQL: skipped (build with --features postgres)");
    Ok(())
}

#[cfg(feature = "postgres")]
async fn postgres(
    def: &TableDef,
    [csv_path, csv_v2]: [&Path; 2],
    rows: u64,
    bytes: u64,
    repeat: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let pg = match sql_sink::testing::TempPostgres::start().await {
        Ok(pg) => pg,
        Err(e) => {
            println!("PostgreSQL: skipped ({e})");
            return Ok(());
        }
    };
    let (mut fresh, mut again, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    let mut reference_error = None;
    for _ in 0..repeat {
        let mut sink = Sink::open(&pg.fresh_database().await?).await?;
        let start = Instant::now();
        load_csv(&mut sink, def, csv_path).await?;
        fresh.push(start.elapsed());
        let start = Instant::now();
        load_csv(&mut sink, def, csv_v2).await?;
        again.push(start.elapsed());
        drop(sink);
        match psql_copy(&pg.fresh_database().await?, csv_path) {
            Ok(t) => reference.push(t),
            Err(e) => reference_error = Some(e),
        }
    }
    report(
        "sql-sink PostgreSQL: load into empty table",
        rows,
        bytes,
        best(&fresh),
    );
    report(
        "sql-sink PostgreSQL: upsert changing every row",
        rows,
        bytes,
        best(&again),
    );
    match reference_error {
        Some(e) => println!("reference: {e}"),
        None => report("reference: psql \\copy", rows, bytes, best(&reference)),
    }
    Ok(())
}

/// Time `psql \copy` of the CSV into a table of the same shape.
#[cfg(feature = "postgres")]
fn psql_copy(url: &str, csv_path: &Path) -> Result<Duration, String> {
    let schema = "CREATE SCHEMA bench; CREATE TABLE bench.events (id bigint NOT NULL PRIMARY KEY, \
                  user_id bigint NOT NULL, name text, workflow_state text NOT NULL \
                  CHECK (workflow_state IN ('active', 'deleted')), created_at timestamptz NOT NULL, \
                  score double precision, active boolean);";
    let psql = |sql: &str| {
        Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
            .output()
            .map_err(|e| format!("psql not available ({e})"))
            .and_then(|o| {
                if o.status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "psql failed: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ))
                }
            })
    };
    psql(schema)?;
    let copy = format!(
        "\\copy bench.events FROM '{}' WITH (FORMAT csv, HEADER)",
        csv_path.display()
    );
    let start = Instant::now();
    psql(&copy)?;
    Ok(start.elapsed())
}
