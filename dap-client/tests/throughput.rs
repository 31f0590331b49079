//! Throughput of the record stream against `gzip -dc` on the same object.
//! A measurement, not a test: run it in release mode.
//!
//! ```text
//! cargo test --release -p dap-client --test throughput -- --ignored --nocapture
//! DAP_BENCH_ROWS=2000000 cargo test --release -p dap-client --test throughput -- --ignored --nocapture
//! ```

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_compression::tokio::bufread::GzipDecoder;
use dap_client::{Format, RecordReader, TableSchema, VersionedSchema};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tokio::io::BufReader;

/// Writes `rows` DAP-like TSV rows (condensed, with escapes) as one gzip file;
/// returns the uncompressed size.
fn write_object(path: &Path, rows: u64) -> u64 {
    let file = std::fs::File::create(path).unwrap();
    let mut gz =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut size = 0u64;
    let mut line = String::new();
    let header = "meta.ts\tkey.id\tvalue.name\tvalue.description\tvalue.workflow_state\tvalue.created_at\tvalue.score\tvalue.big_number\tvalue.is_public\tvalue.settings\tvalue.tags\n";
    gz.write_all(header.as_bytes()).unwrap();
    size += header.len() as u64;
    for id in 0..rows {
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            "2024-01-01T00:00:00Z\t{id}\tname {id} {:x}\t{}\tactive\t2023-12-0{}T02:25:17.322357Z\t{}.{}\t{}\t{}\t{{\"a\":{},\"b\":\"x\\\\ny\"}}\t[\"t{id}\"]",
            id * 2_654_435_761 % 1_000_003,
            if id % 7 == 0 {
                "tab\\there"
            } else {
                "plain description text"
            },
            1 + id % 9,
            id % 10_000,
            id % 1000,
            (id as i64) * -7919,
            id % 2 == 0,
            id % 1000,
        );
        gz.write_all(line.as_bytes()).unwrap();
        size += line.len() as u64;
    }
    gz.finish().unwrap().flush().unwrap();
    size
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

async fn reader(path: &Path) -> RecordReader<BufReader<GzipDecoder<BufReader<tokio::fs::File>>>> {
    let file = tokio::fs::File::open(path).await.unwrap();
    let mut gz = GzipDecoder::new(BufReader::with_capacity(256 * 1024, file));
    gz.multiple_members(true);
    RecordReader::new(BufReader::with_capacity(256 * 1024, gz), Format::Tsv)
        .unwrap()
        .with_schema(schema())
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run in release mode with --ignored --nocapture"]
async fn tsv_record_stream_against_gzip() {
    let rows: u64 = std::env::var("DAP_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("part-00000.tsv.gz");
    let size = write_object(&path, rows);
    let mb = size as f64 / 1e6;

    let t = Instant::now();
    let status = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("gzip is installed");
    assert!(status.success());
    let gzip_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut r = reader(&path).await;
    let mut n = 0u64;
    while r.next_row().await.unwrap().is_some() {
        n += 1;
    }
    let rows_secs = t.elapsed().as_secs_f64();
    assert_eq!(n, rows);

    let t = Instant::now();
    let mut r = reader(&path).await;
    let mut n = 0u64;
    while r.next_record().await.unwrap().is_some() {
        n += 1;
    }
    let records_secs = t.elapsed().as_secs_f64();
    assert_eq!(n, rows);

    // The job pipeline: the same rows as 4 objects, each decoded on its own
    // task (as `Client::job_records` does), against `gzip -dc` of the 4
    // objects one after another.
    let parts: Vec<_> = (0..4)
        .map(|i| dir.path().join(format!("part-{i}.tsv.gz")))
        .collect();
    for p in &parts {
        write_object(p, rows / 4);
    }
    let t = Instant::now();
    for p in &parts {
        let status = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(p)
            .stdout(std::process::Stdio::null())
            .status();
        assert!(status.unwrap().success());
    }
    let gzip_parts_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut streams = Vec::new();
    for p in &parts {
        streams.push(
            dap_client::record::spawn_batched(reader(p).await.into_stream(), 1024, 4).boxed(),
        );
    }
    let n = futures::stream::iter(streams)
        .flatten_unordered(4)
        .try_fold(0u64, |n, _| async move { Ok(n + 1) })
        .await
        .unwrap();
    let pipeline_secs = t.elapsed().as_secs_f64();
    assert_eq!(n, rows / 4 * 4);

    println!("{rows} rows, {mb:.1} MB uncompressed");
    println!("gzip -dc:              {:>8.1} MB/s", mb / gzip_secs);
    for (what, secs) in [
        ("rows (borrowed cells)", rows_secs),
        ("typed records", records_secs),
    ] {
        println!(
            "{what:<22} {:>8.1} MB/s {:>10.0} rows/s  ({:.2} of gzip -dc)",
            mb / secs,
            rows as f64 / secs,
            gzip_secs / secs
        );
    }
    println!(
        "typed records, 4 objects on tasks: {:>8.1} MB/s ({:.2} of gzip -dc on the same 4 objects)",
        mb / pipeline_secs,
        gzip_parts_secs / pipeline_secs
    );
}
