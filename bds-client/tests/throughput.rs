//! Throughput of the sync into PostgreSQL against the machine's raw limit,
//! `unzip -p extract.zip | psql -c '\copy .. (FORMAT csv, HEADER)'`, on the
//! same sandbox extract. A measurement, not a test: it asserts correctness
//! only and prints the rates.
//!
//! ```text
//! BDS_BENCH_ROWS=500000 cargo test --release -p bds-client --all-features \
//!     --test throughput -- --ignored --nocapture
//! ```
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::Instant;

use bds_client::plan::{PlanKind, TableState, plan};
use bds_client::sync::{SyncOptions, sync_data_set};
use bds_client::{
    ArchiveLimits, Client, ExtractArchive, MemoryTokenStore, PlanOptions, SecretString,
};
use sandbox::bds::BdsConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --release -- --ignored --nocapture"]
async fn sync_into_postgres_against_unzip_and_psql_copy() {
    let rows: u64 = std::env::var("BDS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
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

    // The extract, downloaded once (this also warms the sandbox's ZIP cache).
    let dir = tempfile::tempdir().unwrap();
    let found = client.data_set_extracts("Users").await.unwrap();
    let first = plan(
        &TableState::default(),
        &found.extracts,
        &PlanOptions::default(),
    );
    assert_eq!(first.kind, PlanKind::Initial);
    let zip = dir.path().join("users.zip");
    let started = Instant::now();
    let saved = client
        .download(&first.steps[0].extract, &zip, None)
        .await
        .unwrap();
    let download = started.elapsed();
    let csv_bytes = ExtractArchive::open(&zip, ArchiveLimits::default())
        .unwrap()
        .declared_size();

    // Ours: download, unzip, parse, COPY into staging, merge, commit.
    let url = pg.fresh_database().await.unwrap();
    let mut sink = sql_sink::Sink::open(&url).await.unwrap();
    let started = Instant::now();
    let report = sync_data_set(&client, &mut sink, "Users", &SyncOptions::default(), None)
        .await
        .unwrap();
    let ours = started.elapsed();
    assert_eq!(report.applied[0].rows, rows);

    // The raw limit: unzip into psql's \copy, into a text table of the same columns.
    let header: Vec<String> = {
        let mut archive = ExtractArchive::open(&zip, ArchiveLimits::default()).unwrap();
        archive.rows().unwrap().header().names().to_vec()
    };
    let columns: Vec<String> = header.iter().map(|c| format!("\"{c}\" text")).collect();
    psql(
        &url,
        &format!("CREATE TABLE raw_users ({})", columns.join(", ")),
    );
    let started = Instant::now();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "unzip -p '{}' | psql -q -v ON_ERROR_STOP=1 '{url}' -c '\\copy raw_users FROM STDIN (FORMAT csv, HEADER)'",
            zip.display()
        ))
        .status()
        .unwrap();
    let raw = started.elapsed();
    assert!(status.success());

    let rate = |d: std::time::Duration| rows as f64 / d.as_secs_f64();
    let mb = |d: std::time::Duration| csv_bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "rows {rows}, zip {} bytes, csv {csv_bytes} bytes",
        saved.bytes
    );
    println!("download alone        {download:>10.2?}");
    println!(
        "sync (incl. download) {ours:>10.2?}  {:>10.0} rows/s {:>7.1} MB/s",
        rate(ours),
        mb(ours)
    );
    println!(
        "unzip -p | psql \\copy {raw:>10.2?}  {:>10.0} rows/s {:>7.1} MB/s",
        rate(raw),
        mb(raw)
    );
    println!(
        "sync / raw throughput: {:.0}%",
        100.0 * raw.as_secs_f64() / ours.as_secs_f64()
    );
}

fn psql(url: &str, sql: &str) {
    let status = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .status()
        .unwrap();
    assert!(status.success(), "psql failed: {sql}");
}
