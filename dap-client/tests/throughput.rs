//! Throughput of the record stream against `gzip -dc` on the same object,
//! for TSV and JSON Lines. A measurement, not a test: run it in release mode.
//!
//! ```text
//! cargo test --release -p dap-client --test throughput -- --ignored --nocapture
//! DAP_BENCH_ROWS=2000000 cargo test --release -p dap-client --test throughput -- --ignored --nocapture
//! ```
//!
//! Per format it times, on one gzip object of `DAP_BENCH_ROWS` rows
//! (default 1 000 000): `gzip -dc > /dev/null`; borrowed rows
//! ([`RecordReader::next_row`], TSV only); typed records one at a time
//! ([`RecordReader::next_record`]); typed records from
//! [`RecordReader::into_parallel_stream`] with 0 workers (reading on its own
//! task, typing on the consumer's) and with one worker per core; and the same rows as 4 objects, each on its own task through
//! [`spawn_batched`](dap_client::record::spawn_batched), against `gzip -dc`
//! of the 4 objects one after another. Ratios are against `gzip -dc` in the
//! same run; the machine's load moves both.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_compression::tokio::bufread::GzipDecoder;
use dap_client::{Format, Record, RecordReader, TableSchema, VersionedSchema};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tokio::io::BufReader;

/// One DAP-like row, as TSV (condensed, with escapes) and as JSON Lines.
fn row(id: u64, tsv: &mut String, jsonl: &mut String) {
    use std::fmt::Write as _;
    let name = format!("name {id} {:x}", id * 2_654_435_761 % 1_000_003);
    let description = if id.is_multiple_of(7) {
        "tab\there"
    } else {
        "plain description text"
    };
    let created_at = format!("2023-12-0{}T02:25:17.322357Z", 1 + id % 9);
    let score = format!("{}.{}", id % 10_000, id % 1000 + 1);
    let big_number = (id as i64) * -7919;
    let is_public = id.is_multiple_of(2);
    let a = id % 1000;
    let _ = writeln!(
        tsv,
        "2024-01-01T00:00:00Z\t{id}\t{name}\t{}\tactive\t{created_at}\t{score}\t{big_number}\t{is_public}\t{{\"a\":{a},\"b\":\"x\\\\ny\"}}\t[\"t{id}\"]",
        description.replace('\t', "\\t"),
    );
    let _ = writeln!(
        jsonl,
        "{{\"key\":{{\"id\":{id}}},\"value\":{{\"name\":\"{name}\",\"description\":\"{}\",\"workflow_state\":\"active\",\"created_at\":\"{created_at}\",\"score\":{score},\"big_number\":{big_number},\"is_public\":{is_public},\"settings\":{{\"a\":{a},\"b\":\"x\\ny\"}},\"tags\":[\"t{id}\"]}},\"meta\":{{\"ts\":\"2024-01-01T00:00:00Z\"}}}}",
        description.replace('\t', "\\t"),
    );
}

/// Writes rows `ids` as one gzip object per format; returns the
/// uncompressed sizes (TSV, JSON Lines).
fn write_objects(tsv_path: &Path, jsonl_path: &Path, ids: std::ops::Range<u64>) -> (u64, u64) {
    let gz = |path: &Path| {
        let file = std::fs::File::create(path).unwrap();
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast())
    };
    let (mut tsv_gz, mut jsonl_gz) = (gz(tsv_path), gz(jsonl_path));
    let header = "meta.ts\tkey.id\tvalue.name\tvalue.description\tvalue.workflow_state\tvalue.created_at\tvalue.score\tvalue.big_number\tvalue.is_public\tvalue.settings\tvalue.tags\n";
    tsv_gz.write_all(header.as_bytes()).unwrap();
    let mut sizes = (header.len() as u64, 0);
    let (mut tsv, mut jsonl) = (String::new(), String::new());
    for id in ids {
        tsv.clear();
        jsonl.clear();
        row(id, &mut tsv, &mut jsonl);
        tsv_gz.write_all(tsv.as_bytes()).unwrap();
        jsonl_gz.write_all(jsonl.as_bytes()).unwrap();
        sizes.0 += tsv.len() as u64;
        sizes.1 += jsonl.len() as u64;
    }
    tsv_gz.finish().unwrap().flush().unwrap();
    jsonl_gz.finish().unwrap().flush().unwrap();
    sizes
}

fn schema() -> Arc<TableSchema> {
    let doc: VersionedSchema = serde_json::from_value(json!({"version": 1, "schema": {"properties": {
        "key": {"type": "object", "properties": {"id": {"type": "integer"}}},
        "value": {"type": "object", "properties": {
            "name": {"type": "string"}, "description": {"type": "string"}, "workflow_state": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"}, "score": {"type": "number"},
            "big_number": {"type": "integer"}, "is_public": {"type": "boolean"},
            "settings": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}},
            "tags": {"type": "array", "items": {"type": "string"}}}}}}}))
    .unwrap();
    Arc::new(TableSchema::from_versioned(&doc))
}

type Reader = RecordReader<BufReader<GzipDecoder<BufReader<tokio::fs::File>>>>;

async fn reader(path: &Path, format: Format) -> Reader {
    let file = tokio::fs::File::open(path).await.unwrap();
    let mut gz = GzipDecoder::new(BufReader::with_capacity(256 * 1024, file));
    gz.multiple_members(true);
    RecordReader::new(BufReader::with_capacity(256 * 1024, gz), format)
        .unwrap()
        .with_schema(schema())
}

/// Seconds `gzip -dc` takes to decompress `paths` one after another.
fn gzip_dc(paths: &[&Path]) -> f64 {
    let t = Instant::now();
    for path in paths {
        let status = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("gzip is installed");
        assert!(status.success());
    }
    t.elapsed().as_secs_f64()
}

fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

fn report(what: &str, mb: f64, rows: u64, secs: f64, gzip_secs: f64) {
    println!(
        "  {what:<34} {:>7.1} MB/s {:>9.0} rows/s  {:.2} of gzip -dc",
        mb / secs,
        rows as f64 / secs,
        gzip_secs / secs
    );
}

/// Times every way through one format's objects; returns the first record.
async fn measure(format: Format, one: &Path, parts: &[&Path], rows: u64, mb: f64) -> Record {
    println!("{format}: {rows} rows, {mb:.1} MB uncompressed");
    let gzip_secs = gzip_dc(&[one]);
    println!(
        "  {:<34} {:>7.1} MB/s {:>9.0} rows/s",
        "gzip -dc",
        mb / gzip_secs,
        rows as f64 / gzip_secs
    );

    if let Format::Tsv = format {
        let t = Instant::now();
        let mut r = reader(one, format.clone()).await;
        let mut n = 0u64;
        while r.next_row().await.unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, rows);
        report(
            "rows (borrowed cells)",
            mb,
            rows,
            t.elapsed().as_secs_f64(),
            gzip_secs,
        );
    }

    let t = Instant::now();
    let mut r = reader(one, format.clone()).await;
    let first = r.next_record().await.unwrap().unwrap();
    let mut n = 1u64;
    while r.next_record().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, rows);
    report(
        "typed records, next_record",
        mb,
        rows,
        t.elapsed().as_secs_f64(),
        gzip_secs,
    );

    for workers in [0, workers()] {
        let t = Instant::now();
        let n = reader(one, format.clone())
            .await
            .into_parallel_stream(workers)
            .try_fold(0u64, |n, _| async move { Ok(n + 1) })
            .await
            .unwrap();
        assert_eq!(n, rows);
        let what = format!("typed records, into_parallel_stream({workers})");
        report(&what, mb, rows, t.elapsed().as_secs_f64(), gzip_secs);
    }

    // The job pipeline: the same rows as 4 objects, each decoded on its own
    // task, against `gzip -dc` of the 4 objects one after another.
    let gzip_parts_secs = gzip_dc(parts);
    let t = Instant::now();
    let mut streams = Vec::new();
    for p in parts {
        let records = reader(p, format.clone()).await.into_stream();
        streams.push(dap_client::record::spawn_batched(records, 1024, 4).boxed());
    }
    let n = futures::stream::iter(streams)
        .flatten_unordered(4)
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap();
    assert_eq!(n, rows);
    report(
        "typed records, 4 objects on tasks",
        mb,
        rows,
        t.elapsed().as_secs_f64(),
        gzip_parts_secs,
    );
    first
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run in release mode with --ignored --nocapture"]
async fn record_stream_against_gzip() {
    let rows: u64 = std::env::var("DAP_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (tsv_size, jsonl_size) = write_objects(
        &path("part-00000.tsv.gz"),
        &path("part-00000.jsonl.gz"),
        0..rows,
    );
    let quarter = rows / 4;
    for i in 0..4 {
        let end = if i == 3 { rows } else { (i + 1) * quarter };
        write_objects(
            &path(&format!("part-{i}.tsv.gz")),
            &path(&format!("part-{i}.jsonl.gz")),
            i * quarter..end,
        );
    }
    let parts = |ext: &str| -> Vec<std::path::PathBuf> {
        (0..4)
            .map(|i| path(&format!("part-{i}.{ext}.gz")))
            .collect()
    };
    let (tsv_parts, jsonl_parts) = (parts("tsv"), parts("jsonl"));
    let tsv_first = measure(
        Format::Tsv,
        &path("part-00000.tsv.gz"),
        &tsv_parts.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        rows,
        tsv_size as f64 / 1e6,
    )
    .await;
    let jsonl_first = measure(
        Format::Jsonl,
        &path("part-00000.jsonl.gz"),
        &jsonl_parts.iter().map(|p| p.as_path()).collect::<Vec<_>>(),
        rows,
        jsonl_size as f64 / 1e6,
    )
    .await;
    // Both formats carry the same data.
    assert_eq!(tsv_first, jsonl_first);
}
