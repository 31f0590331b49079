//! Benchmark: how fast the sandbox serves a big DAP snapshot, and how much memory it needs.
//!
//! ```text
//! cargo build -p sandbox --release --bins --examples
//! ./target/release/examples/bench_serve --rows 1000000 [--format tsv] [--rows-per-part 100000]
//! ```
//!
//! Runs the `sandbox` binary (next to this example, or `$SANDBOX_BIN`) as a child process so the
//! peak RSS reported is the sandbox's alone; without the binary it serves in-process and the
//! figure includes this client. Steps: log in, create a snapshot job, poll until complete (time
//! to generate the gzip parts), pre-sign every part in one call and download them 4 at a time
//! (time to serve), then download again (served from the cache).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

struct Args {
    rows: u64,
    format: String,
    rows_per_part: u64,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        rows: 1_000_000,
        format: "tsv".into(),
        rows_per_part: 100_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => out.rows = value.parse().map_err(|e| format!("--rows: {e}"))?,
            "--format" => out.format = value,
            "--rows-per-part" => {
                out.rows_per_part = value.parse().map_err(|e| format!("--rows-per-part: {e}"))?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(out)
}

/// Peak resident set size (VmHWM) of a process, in MiB.
fn peak_rss_mib(pid: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// User + system CPU seconds a process has used (Linux clock ticks are 100 Hz).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn sandbox_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SANDBOX_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("sandbox");
    candidate.is_file().then_some(candidate)
}

type Failure = Box<dyn std::error::Error>;

async fn run_job(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    query: Value,
) -> Result<Value, Failure> {
    let mut job: Value = http
        .post(format!("{base}/dap/query/canvas/table/bench/data"))
        .bearer_auth(token)
        .json(&query)
        .send()
        .await?
        .json()
        .await?;
    while job["status"] == "waiting" || job["status"] == "running" {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let id = job["id"].as_str().ok_or("job without id")?;
        job = http
            .get(format!("{base}/dap/job/{id}"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
    }
    if job["status"] != "complete" {
        return Err(format!("job ended {job}").into());
    }
    Ok(job)
}

async fn download_all(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    job: &Value,
) -> Result<u64, Failure> {
    let objects = job["objects"].clone();
    let urls: Value = http
        .post(format!("{base}/dap/object/url"))
        .bearer_auth(token)
        .json(&objects)
        .send()
        .await?
        .json()
        .await?;
    let urls: Vec<String> = urls["urls"]
        .as_object()
        .ok_or("no urls")?
        .values()
        .filter_map(|u| u["url"].as_str().map(str::to_owned))
        .collect();
    let sizes = futures::stream::iter(urls)
        .map(|url| {
            let http = http.clone();
            async move {
                let mut body = http
                    .get(url)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes_stream();
                let mut n = 0u64;
                while let Some(chunk) = body.next().await {
                    n += chunk?.len() as u64;
                }
                Ok::<u64, reqwest::Error>(n)
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;
    let mut total = 0;
    for size in sizes {
        total += size?;
    }
    Ok(total)
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = args()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let table = format!("canvas.bench={}", args.rows);
    let mut _in_process = None;
    let mut child = None;
    let (describe, pid) = match sandbox_binary() {
        Some(bin) => {
            let mut process = tokio::process::Command::new(&bin)
                .args([
                    "--services",
                    "dap",
                    "--dap-pacing",
                    "0,0",
                    "--dap-table",
                    &table,
                ])
                .args(["--dap-rows-per-part", &args.rows_per_part.to_string()])
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let stdout = process.stdout.take().ok_or("no stdout")?;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let line = lines.next_line().await?.ok_or("sandbox printed nothing")?;
            let pid = process.id().ok_or("no pid")?.to_string();
            child = Some(process);
            (serde_json::from_str::<Value>(&line)?, pid)
        }
        None => {
            eprintln!(
                "note: sandbox binary not found; serving in-process (RSS includes the client)"
            );
            let config = sandbox::dap::DapConfig::default()
                .with_tables(vec![sandbox::dap::TableSpec::new(
                    "canvas", "bench", args.rows,
                )])
                .with_pacing(0, 0)
                .with_rows_per_part(args.rows_per_part);
            let sandbox =
                sandbox::Sandbox::start(sandbox::SandboxConfig::none().with_dap(config)).await?;
            let describe = sandbox.describe();
            _in_process = Some(sandbox);
            (describe, "self".to_owned())
        }
    };
    let dap = &describe["dap"];
    let base = dap["base_url"].as_str().ok_or("no base_url")?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let login: Value = http
        .post(format!("{base}/ids/auth/login"))
        .basic_auth(
            dap["credentials"]["client_id"].as_str().unwrap_or_default(),
            dap["credentials"]["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .ok_or("login failed")?
        .to_owned();

    let cpu_before = cpu_seconds(&pid);
    let started = Instant::now();
    let job = run_job(
        &http,
        base,
        &token,
        json!({"format": args.format, "mode": "condensed"}),
    )
    .await?;
    let generated = started.elapsed();
    let generation_cpu = cpu_seconds(&pid)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let parts = job["objects"].as_array().map_or(0, Vec::len);

    let started = Instant::now();
    let bytes = download_all(&http, base, &token, &job).await?;
    let served = started.elapsed();
    let started = Instant::now();
    download_all(&http, base, &token, &job).await?;
    let served_again = started.elapsed();

    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!("rows               {}", args.rows);
    println!("format             {} (gzip), {} parts", args.format, parts);
    println!("compressed size    {mib:.1} MiB");
    println!(
        "first job (generate) {:.2} s ({:.0} rows/s)",
        generated.as_secs_f64(),
        args.rows as f64 / generated.as_secs_f64()
    );
    if let Some(cpu) = generation_cpu {
        println!("generation CPU     {cpu:.2} s (user + system, all threads)");
    }
    println!(
        "serve              {:.2} s ({:.0} MiB/s, {:.0} rows/s)",
        served.as_secs_f64(),
        mib / served.as_secs_f64(),
        args.rows as f64 / served.as_secs_f64()
    );
    println!(
        "serve again        {:.2} s ({:.0} MiB/s)",
        served_again.as_secs_f64(),
        mib / served_again.as_secs_f64()
    );
    match peak_rss_mib(&pid) {
        Some(rss) => println!(
            "sandbox peak RSS   {rss:.1} MiB ({})",
            if pid == "self" {
                "in-process, includes client"
            } else {
                "sandbox process"
            }
        ),
        None => println!("sandbox peak RSS   unavailable (no /proc)"),
    }
    if let Some(mut child) = child {
        let _ = child.kill().await;
    }
    Ok(())
}
