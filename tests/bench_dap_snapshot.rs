//! End-to-end DAP benchmark (ignored by default; it needs release builds and
//! takes minutes):
//!
//! ```text
//! cargo build --release -p sandbox --bin sandbox
//! cargo build --release --example dap
//! nice -n 5 cargo test --release --test bench_dap_snapshot -- --ignored --nocapture
//! DAP_BENCH_ROWS=5000000 nice -n 5 cargo test --release --test bench_dap_snapshot -- --ignored --nocapture
//! ```
//!
//! Starts the sandbox binary (`target/release/sandbox`, or `$SANDBOX_BIN`)
//! with one table, `canvas.users`, of `DAP_BENCH_ROWS` rows (default
//! 1 000 000), its TSV and JSON Lines snapshot objects generated up front so
//! no run pays for generating them. Then, in one run on the same data:
//!
//! 1. `dap snapshot --format jsonl` of our program
//!    (`target/release/examples/dap`, or `$OUR_DAP`) and of the official
//!    client 2.3.1 (`$OFFICIAL_DAP`, default `/tmp/dapvenv/bin/dap`; set
//!    `SKIP_OFFICIAL=1` to leave it out), each under `/usr/bin/time` into
//!    its own temporary directory: wall time, peak RSS, rows/s and MB/s of
//!    uncompressed data. The decompressed outputs of both must hold the same
//!    lines (count and an order-independent checksum).
//! 2. Per format (TSV, JSON Lines), the job's objects downloaded once, then
//!    `gzip -dc > /dev/null` of each object one after another against the
//!    record stream of the same job (`Client::job_records`, typed with the
//!    table's schema: download, decompression and decoding, downloads
//!    overlapping) in this process, with its peak RSS; then the objects one
//!    after another through `Client::open_object` and a `RecordReader`:
//!    borrowed rows (`next_row`, TSV) and typed records (`next_record`).
//!
//! Prints every figure, the ratios and the load average; fails when the
//! outputs differ or a peak RSS reaches 100 MB. Timings are not asserted:
//! other work on the machine moves them, and only same-run ratios compare.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use dap_client::{Client, Format, RecordReader, SecretString, SnapshotQuery, TableSchema};
use futures::TryStreamExt;
use serde_json::Value;

const PEAK_RSS_LIMIT_MB: f64 = 100.0;

/// Kills the sandbox process when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sandbox process and how to reach it.
struct Sandbox {
    _child: Child,
    base: String,
    client_id: String,
    client_secret: String,
}

/// `target/release`, from this test binary's path (`target/release/deps/..`).
fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn program(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map_or(default, PathBuf::from)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn start_sandbox(bin: &Path, rows: u64) -> Sandbox {
    let mut child = Command::new(bin)
        .args(["--services", "dap", "--dap-pacing", "0,0"])
        .arg(format!("--dap-table=canvas.users={rows}"))
        .args(["--dap-warm", "jsonl,tsv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let child = Child(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the sandbox prints its URLs");
    let info: Value = serde_json::from_str(&line).expect("the sandbox's JSON line");
    let text = |v: &Value| v.as_str().expect("a string").to_string();
    Sandbox {
        _child: child,
        base: text(&info["dap"]["base_url"]),
        client_id: text(&info["dap"]["credentials"]["client_id"]),
        client_secret: text(&info["dap"]["credentials"]["client_secret"]),
    }
}

/// Runs `command` under `/usr/bin/time`; returns (wall seconds, peak RSS MB).
fn timed(command: Command, what: &str) -> (f64, f64) {
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let started = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(rss_file.path())
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("/usr/bin/time is installed");
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "{what} failed: {status}");
    let kb: f64 = std::fs::read_to_string(rss_file.path())
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0.0);
    (secs, kb / 1024.0)
}

/// The gzip objects under `dir`, sorted.
fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "gz") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// What the decompressed objects hold: lines, bytes and an order-independent
/// checksum of the lines (so objects named or split differently compare).
#[derive(Debug, PartialEq, Eq, Default, Clone, Copy)]
struct Content {
    lines: u64,
    bytes: u64,
    checksum: u64,
}

fn content(files: &[PathBuf]) -> Content {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut out = Content::default();
    for file in files {
        let mut gzip = Command::new("gzip")
            .arg("-dc")
            .arg(file)
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip is installed");
        let mut reader = BufReader::with_capacity(1 << 20, gzip.stdout.take().unwrap());
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).unwrap();
            if n == 0 {
                break;
            }
            out.bytes += n as u64;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            out.lines += 1;
            // SipHash with fixed keys: the same in every run of this binary.
            let mut h = DefaultHasher::new();
            line.hash(&mut h);
            out.checksum = out.checksum.wrapping_add(h.finish());
        }
        assert!(
            gzip.wait().unwrap().success(),
            "gzip -dc {}",
            file.display()
        );
    }
    out
}

/// Seconds `gzip -dc > /dev/null` takes over `files`, one after another.
fn gzip_dc(files: &[PathBuf]) -> f64 {
    let started = Instant::now();
    for file in files {
        let status = Command::new("gzip")
            .arg("-dc")
            .arg(file)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    started.elapsed().as_secs_f64()
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resets this process's peak RSS counter (Linux: `5` to `clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One line of the results table.
fn row(what: &str, secs: f64, rows: u64, mb: f64, rss: Option<f64>) {
    let rss = rss.map_or(String::from("-"), |r| format!("{r:.0} MB"));
    println!(
        "  {what:<44} {secs:>7.2} s {:>9.0} rows/s {:>7.1} MB/s  peak RSS {rss}",
        rows as f64 / secs,
        mb / secs
    );
}

/// `dap snapshot --format jsonl` of one client into a fresh directory.
fn snapshot_command(dap: &Path, sandbox: &Sandbox, dir: &Path, official: bool) -> Command {
    let mut c = Command::new(dap);
    if official {
        c.arg("--no-tracking");
    }
    c.args(["--non-interactive", "--loglevel", "warning"])
        .args(["--base-url", &sandbox.base])
        .args(["--client-id", &sandbox.client_id])
        .args(["--client-secret", &sandbox.client_secret])
        .args(["snapshot", "--namespace", "canvas", "--table", "users"])
        .args(["--format", "jsonl", "--output-directory"])
        .arg(dir);
    c
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; needs release builds of the sandbox and the dap example; see the file's docs"]
async fn snapshot_and_record_stream_against_the_official_client_and_gzip() {
    let rows: u64 = std::env::var("DAP_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let release = release_dir();
    let sandbox_bin = program("SANDBOX_BIN", release.join("sandbox"));
    let ours = program("OUR_DAP", release.join("examples").join("dap"));
    let skip_official = std::env::var("SKIP_OFFICIAL").is_ok_and(|v| v == "1");
    let official = program("OFFICIAL_DAP", PathBuf::from("/tmp/dapvenv/bin/dap"));
    for (path, how) in [
        (
            &sandbox_bin,
            "cargo build --release -p sandbox --bin sandbox",
        ),
        (&ours, "cargo build --release --example dap"),
    ] {
        assert!(path.is_file(), "no {}: run `{how}`", path.display());
    }
    assert!(
        skip_official || official.is_file(),
        "no official client at {}: set OFFICIAL_DAP (pip install instructure-dap-client==2.3.1) or SKIP_OFFICIAL=1",
        official.display()
    );
    println!("load average before: {}", load_average());
    let started = Instant::now();
    let sandbox = start_sandbox(&sandbox_bin, rows);
    println!(
        "sandbox: {rows} rows of canvas.users, TSV and JSON Lines objects generated in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 1. The snapshot programs.
    let dirs = tempfile::tempdir().unwrap();
    let ours_dir = dirs.path().join("ours");
    let (ours_secs, ours_rss) = timed(
        snapshot_command(&ours, &sandbox, &ours_dir, false),
        "our dap snapshot",
    );
    let ours_content = content(&objects(&ours_dir));
    assert_eq!(
        ours_content.lines, rows,
        "our snapshot holds {} lines",
        ours_content.lines
    );
    let mb = ours_content.bytes as f64 / 1e6;
    let official_run = (!skip_official).then(|| {
        let dir = dirs.path().join("official");
        let run = timed(
            snapshot_command(&official, &sandbox, &dir, true),
            "the official dap snapshot",
        );
        (run, content(&objects(&dir)))
    });

    println!("dap snapshot --format jsonl, {rows} rows, {mb:.1} MB uncompressed:");
    row("ours", ours_secs, rows, mb, Some(ours_rss));
    if let Some(((secs, rss), official_content)) = official_run {
        row("official 2.3.1", secs, rows, mb, Some(rss));
        println!(
            "  ours takes {:.2} of the official client's time ({:.1}x faster), {:.2} of its peak RSS",
            ours_secs / secs,
            secs / ours_secs,
            ours_rss / rss
        );
        assert_eq!(
            ours_content, official_content,
            "both snapshots must hold the same lines"
        );
        println!(
            "  same content: {} lines, checksum {:016x}",
            ours_content.lines, ours_content.checksum
        );
    }

    // 2. The record stream against gzip -dc of the same objects.
    let client = Client::builder()
        .base_url(&sandbox.base)
        .credentials(
            sandbox.client_id.clone(),
            SecretString::from(sandbox.client_secret.clone()),
        )
        .build()
        .unwrap();
    let schema = std::sync::Arc::new(TableSchema::from_versioned(
        &client.schema("canvas", "users").await.unwrap(),
    ));
    let mut stream_rss = Vec::new();
    for format in [Format::Tsv, Format::Jsonl] {
        let job = client
            .execute_job("canvas", "users", SnapshotQuery::new(format.clone()))
            .await
            .unwrap();
        let dir = dirs.path().join(format!("objects-{format}"));
        let files = client
            .download_objects(&job.objects, &dir, false)
            .await
            .unwrap();
        let data = content(&files);
        let mb = data.bytes as f64 / 1e6;
        let gzip_secs = gzip_dc(&files);

        reset_peak_rss();
        let started = Instant::now();
        let records = client
            .job_records(&job, format.clone(), Some(schema.clone()))
            .await
            .unwrap()
            .try_fold(0u64, |n, _| async move { Ok(n + 1) })
            .await
            .unwrap();
        let stream_secs = started.elapsed().as_secs_f64();
        let rss = peak_rss_mb();
        assert_eq!(records, rows, "{format} records");
        stream_rss.push((format.to_string(), rss));

        println!(
            "{format}: {} objects, {rows} rows, {mb:.1} MB uncompressed:",
            files.len()
        );
        row(
            "gzip -dc > /dev/null, objects in turn",
            gzip_secs,
            rows,
            mb,
            None,
        );
        row(
            "record stream (job_records, typed records)",
            stream_secs,
            rows,
            mb,
            Some(rss),
        );
        println!(
            "  record stream at {:.2} of gzip -dc throughput",
            gzip_secs / stream_secs
        );

        // The same objects one after another through `RecordReader`:
        // borrowed rows (tabular formats) and typed records.
        let urls = client.resources(&job.objects).await.unwrap();
        let kinds: &[bool] = if let Format::Jsonl = format {
            &[true]
        } else {
            &[false, true]
        };
        for &typed in kinds {
            reset_peak_rss();
            let started = Instant::now();
            let mut n = 0u64;
            for object in &job.objects {
                let body = client.open_object(object, &urls[&object.id]).await.unwrap();
                let mut reader = RecordReader::new(
                    tokio::io::BufReader::with_capacity(256 * 1024, body),
                    format.clone(),
                )
                .unwrap()
                .with_schema(schema.clone());
                if typed {
                    while reader.next_record().await.unwrap().is_some() {
                        n += 1;
                    }
                } else {
                    while reader.next_row().await.unwrap().is_some() {
                        n += 1;
                    }
                }
            }
            let secs = started.elapsed().as_secs_f64();
            let rss = peak_rss_mb();
            assert_eq!(n, rows, "{format} rows");
            stream_rss.push((format!("{format} RecordReader"), rss));
            let what = if typed {
                "RecordReader::next_record, objects in turn"
            } else {
                "RecordReader::next_row, objects in turn"
            };
            row(what, secs, rows, mb, Some(rss));
            println!("  {:.2} of gzip -dc throughput", gzip_secs / secs);
        }
    }
    println!("load average after: {}", load_average());

    let mut over: Vec<String> = stream_rss
        .into_iter()
        .filter(|(_, rss)| *rss >= PEAK_RSS_LIMIT_MB)
        .map(|(f, rss)| format!("{f} record stream: {rss:.0} MB"))
        .collect();
    if ours_rss >= PEAK_RSS_LIMIT_MB {
        over.push(format!("our snapshot: {ours_rss:.0} MB"));
    }
    assert!(
        over.is_empty(),
        "peak RSS over {PEAK_RSS_LIMIT_MB} MB: {over:?}"
    );
}
