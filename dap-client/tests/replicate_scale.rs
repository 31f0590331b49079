//! Scale run of the replicator (ignored by default; it needs a release build
//! of the sandbox binary and takes minutes):
//!
//! ```text
//! cargo build -p sandbox --release
//! REPLICATE_SCALE_ROWS=1000000 cargo test --release -p dap-client --all-features \
//!     --test replicate_scale -- --ignored --nocapture
//! ```
//!
//! Starts the sandbox binary with one table of `REPLICATE_SCALE_ROWS` rows
//! (default 1 000 000), then per backend (SQLite; PostgreSQL when one can be
//! started) runs `init`, changes 10% of the rows (1% inserts, 8% updates, 1%
//! deletes) and runs `sync`, printing rows/s, wall time and this process's
//! peak RSS, and checks that the peak stays under 150 MB and the row counts
//! match the sandbox.

#![cfg(feature = "sql")]

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Instant;

use dap_client::replicate::{ReplicateOptions, Replicator};
use dap_client::{Client, SecretString};
use serde_json::{Value, json};

const PEAK_RSS_LIMIT_MB: u64 = 150;

/// Kills the sandbox process when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// Resets the peak RSS counter (Linux: `5` to `clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn control(base: &str, path: &str, body: Value) -> Value {
    let http = client_core::http::HttpClient::builder()
        .base_url(base)
        .build()
        .unwrap();
    http.send_json(client_core::http::Request::post(path).json(&body))
        .await
        .unwrap()
}

async fn live_rows(base: &str) -> u64 {
    let http = client_core::http::HttpClient::builder()
        .base_url(base)
        .build()
        .unwrap();
    let state: Value = http
        .send_json(client_core::http::Request::get("/__sandbox/dap/state"))
        .await
        .unwrap();
    state["tables"][0]["rows"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "scale run; see the file's docs"]
async fn init_and_sync_at_scale_with_flat_memory() {
    let rows: u64 = std::env::var("REPLICATE_SCALE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let bin = std::env::var("SANDBOX_BIN")
        .unwrap_or_else(|_| format!("{}/../target/release/sandbox", env!("CARGO_MANIFEST_DIR")));
    if !std::path::Path::new(&bin).is_file() {
        eprintln!("SKIPPED: no sandbox binary at {bin}; run `cargo build -p sandbox --release`");
        return;
    }
    let mut dbs: Vec<(String, String, Box<dyn std::any::Any>)> = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    dbs.push((
        "sqlite".into(),
        format!("sqlite://{}", dir.path().join("scale.db").display()),
        Box::new(()),
    ));
    #[cfg(feature = "postgres")]
    if let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await {
        dbs.push(("postgres".into(), pg.url().to_string(), Box::new(pg)));
    }
    let mut over: Vec<String> = Vec::new();
    for (name, url, _guard) in &dbs {
        // A fresh sandbox per backend, so both load the same data.
        let mut child = Command::new(&bin)
            .args(["--services", "dap", "--dap-pacing", "0,0"])
            .arg(format!("--dap-table=canvas.users={rows}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let _child = Child(child);
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let info: Value = serde_json::from_str(&line).unwrap();
        let base = info["dap"]["base_url"].as_str().unwrap().to_string();
        let client = Client::builder()
            .base_url(&base)
            .credentials(
                info["dap"]["credentials"]["client_id"].as_str().unwrap(),
                SecretString::from(
                    info["dap"]["credentials"]["client_secret"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                ),
            )
            .build()
            .unwrap();
        let replicator = Replicator::open(client, url)
            .await
            .unwrap()
            .with_options(ReplicateOptions::default());

        reset_peak_rss();
        let started = Instant::now();
        let report = replicator.init("canvas", "users").await.unwrap();
        let init_secs = started.elapsed().as_secs_f64();
        let init_rss = peak_rss_mb();
        assert_eq!(report.upserted_rows, rows);
        println!(
            "{name}: initdb {rows} rows in {init_secs:.1} s = {:.0} rows/s, peak RSS {init_rss} MB",
            rows as f64 / init_secs
        );

        let (inserts, updates, deletes) = (rows / 100, rows * 8 / 100, rows / 100);
        control(
            &base,
            "/__sandbox/dap/tables/canvas/users/mutate",
            json!({"inserts": inserts, "updates": updates, "deletes": deletes}),
        )
        .await;
        reset_peak_rss();
        let started = Instant::now();
        let report = replicator.sync("canvas", "users").await.unwrap();
        let sync_secs = started.elapsed().as_secs_f64();
        let sync_rss = peak_rss_mb();
        let changed = report.upserted_rows + report.deleted_rows;
        println!(
            "{name}: syncdb {changed} changed rows in {sync_secs:.1} s = {:.0} rows/s, peak RSS {sync_rss} MB",
            changed as f64 / sync_secs
        );
        let listed = replicator.list(Some("canvas")).await.unwrap();
        assert_eq!(listed[0].row_count, live_rows(&base).await);
        for (what, rss) in [("init", init_rss), ("sync", sync_rss)] {
            if rss >= PEAK_RSS_LIMIT_MB {
                over.push(format!("{name}: {what} peak RSS {rss} MB"));
            }
        }
    }
    // Checked after every backend ran, so one run measures them all.
    assert!(over.is_empty(), "over {PEAK_RSS_LIMIT_MB} MB: {over:?}");
}
