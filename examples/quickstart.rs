//! The whole family in one run: DAP replication and BDS sync into one SQLite
//! file, LD batch jobs and Toucan operations, ending with a summary table.
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart -- --database /tmp/demo.db
//! cargo run --release --example quickstart -- --help
//! ```
//!
//! Every service runs in an in-process sandbox unless the environment names
//! the real one (`DAP_CLIENT_ID`, `D2L_CLIENT_ID`, `LD_USERNAME`,
//! `TOUCAN_API_URL`; the other variables of each service as in README.md).
//! `--sandbox` ignores the environment. Steps that write to a real LD or
//! Toucan service (an import, data source uploads, operations) run only with
//! `--allow-writes`.
//!
//! Running it again syncs incrementally into the same database. The sandbox
//! starts from the same deterministic data each run, so the program first
//! brings it to where the database left off (it replays the DAP mutation
//! batches and BDS days the earlier runs made) and then moves it on.
//!
//! Exit code: 0 when every step succeeded, 1 otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use client_core::{HttpClient, PollPolicy, Request, SecretString};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The DAP sandbox's initial load commits at this instant; each mutation
/// batch commits one hour later (see `sandbox::dap`).
const DAP_SANDBOX_EPOCH_ZERO: &str = "2024-01-01T00:00:00Z";
/// Upper bound of replayed DAP mutations / BDS days when catching up.
const MAX_CATCH_UP: i64 = 10_000;

#[derive(Parser)]
#[command(
    name = "quickstart",
    about = "Replicate DAP tables and sync BDS data sets into SQLite, run LD batch jobs and \
             Toucan operations, and print a summary",
    after_help = "Real services are used when their variables are set (DAP_CLIENT_ID, \
                  D2L_CLIENT_ID, LD_USERNAME, TOUCAN_API_URL and the others of README.md); \
                  the in-process sandbox otherwise. Exit code 0 when every step succeeded, \
                  1 otherwise."
)]
struct Cli {
    /// The SQLite database the DAP tables and BDS data sets go to.
    #[arg(long, default_value = "quickstart.db")]
    database: PathBuf,
    /// Use the in-process sandbox for every service, whatever the environment says.
    #[arg(long)]
    sandbox: bool,
    /// Let the LD import and the Toucan uploads and operations run against real services.
    #[arg(long)]
    allow_writes: bool,
    /// DAP tables to replicate, as namespace.table (repeatable).
    #[arg(long = "dap-table", default_values_t = ["canvas.users".to_string(), "canvas.submissions".to_string()])]
    dap_tables: Vec<String>,
    /// BDS data sets to sync (repeatable).
    #[arg(long = "bds-data-set", default_values_t = ["Users".to_string(), "Organizational Units".to_string()])]
    bds_data_sets: Vec<String>,
    /// Accounts the LD import sends.
    #[arg(long, default_value_t = 5_000)]
    ld_records: u64,
}

/// Which services are real, decided from the environment.
struct Targets {
    dap: bool,
    bds: bool,
    ld: bool,
    toucan: bool,
}

impl Targets {
    fn from_env(force_sandbox: bool) -> Self {
        let set = |name: &str| !force_sandbox && std::env::var(name).is_ok_and(|v| !v.is_empty());
        Targets {
            dap: set("DAP_CLIENT_ID"),
            bds: set("D2L_CLIENT_ID"),
            ld: set("LD_USERNAME"),
            toucan: set("TOUCAN_API_URL"),
        }
    }
}

/// One line of the summary table.
struct StepRow {
    step: String,
    amount: String,
    elapsed: Duration,
    outcome: Result<String, String>,
}

/// Progress bars and the rows of the summary.
struct Ui {
    bars: MultiProgress,
    rows: Mutex<Vec<StepRow>>,
}

impl Ui {
    fn new() -> Self {
        Ui {
            bars: MultiProgress::new(),
            rows: Mutex::new(Vec::new()),
        }
    }

    /// A spinner with the elapsed time and a message; long steps keep it
    /// moving by updating the message.
    fn bar(&self, step: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:42} [{elapsed:>4}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(step.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }

    /// A line above the bars (or on stderr when there is no terminal).
    fn note(&self, text: impl AsRef<str>) {
        if self.bars.is_hidden() {
            eprintln!("{}", text.as_ref());
        } else {
            let _ = self.bars.println(text.as_ref());
        }
    }

    /// Runs one step under a progress bar and records its row.
    /// `work` returns (amount, outcome text).
    async fn step<F, Fut>(&self, name: &str, work: F) -> bool
    where
        F: FnOnce(ProgressBar) -> Fut,
        Fut: Future<Output = anyhow::Result<(String, String)>>,
    {
        let bar = self.bar(name);
        let started = Instant::now();
        let result = work(bar.clone()).await;
        let elapsed = started.elapsed();
        let ok = result.is_ok();
        let (amount, outcome) = match result {
            Ok((amount, text)) => {
                bar.finish_with_message(format!("done: {amount} {text}"));
                (amount, Ok(text))
            }
            Err(e) => {
                bar.abandon_with_message(format!("FAILED: {}", describe(&e)));
                ("-".to_string(), Err(describe(&e)))
            }
        };
        self.record(name, amount, elapsed, outcome);
        ok
    }

    fn record(
        &self,
        step: &str,
        amount: String,
        elapsed: Duration,
        outcome: Result<String, String>,
    ) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.push(StepRow {
            step: step.to_string(),
            amount,
            elapsed,
            outcome,
        });
    }

    /// Records a step that did not run, and why.
    fn skipped(&self, step: &str, why: &str) {
        self.note(format!("skipped {step}: {why}"));
        self.record(
            step,
            "-".into(),
            Duration::ZERO,
            Ok(format!("skipped: {why}")),
        );
    }

    fn failed(&self) -> usize {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.iter().filter(|r| r.outcome.is_err()).count()
    }

    fn print_summary(&self) {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let width = rows.iter().map(|r| r.step.len()).max().unwrap_or(4).max(4);
        let amount_width = rows
            .iter()
            .map(|r| r.amount.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!();
        println!(
            "{:width$}  {:>amount_width$}  {:>8}  OUTCOME",
            "STEP", "AMOUNT", "TIME"
        );
        for r in rows.iter() {
            let outcome = match &r.outcome {
                Ok(text) => format!("ok {text}"),
                Err(e) => format!("FAILED: {e}"),
            };
            println!(
                "{:width$}  {:>amount_width$}  {:>7.2}s  {outcome}",
                r.step,
                r.amount,
                r.elapsed.as_secs_f64()
            );
        }
    }
}

/// The sandbox services this run needs (none for services that are real).
struct Sandboxes {
    dap: Option<sandbox::dap::DapServer>,
    bds: Option<sandbox::bds::BdsServer>,
    ld: Option<sandbox::ld::LdServer>,
    toucan: Option<sandbox::toucan::ToucanServer>,
}

async fn start_sandboxes(targets: &Targets) -> anyhow::Result<Sandboxes> {
    use sandbox::dap::{DapConfig, TableSpec};
    let mut config = sandbox::SandboxConfig::none();
    if !targets.dap {
        config = config.with_dap(
            DapConfig::default()
                .with_tables(vec![
                    TableSpec::new("canvas", "accounts", 25),
                    TableSpec::new("canvas", "courses", 200),
                    TableSpec::new("canvas", "users", 20_000),
                    TableSpec::new("canvas", "submissions", 100_000),
                ])
                .with_pacing(1, 1),
        );
    }
    if !targets.bds {
        config = config.with_bds(sandbox::bds::BdsConfig {
            rows: 2_000,
            ..Default::default()
        });
    }
    if !targets.ld {
        config = config.with_ld(Default::default());
    }
    if !targets.toucan {
        config = config.with_toucan(Default::default());
    }
    let started = sandbox::Sandbox::start(config)
        .await
        .context("could not start the sandbox")?;
    Ok(Sandboxes {
        dap: started.dap,
        bds: started.bds,
        ld: started.ld,
        toucan: started.toucan,
    })
}

/// Polling fast enough for the sandbox, whose jobs advance per poll.
fn sandbox_polls() -> PollPolicy {
    PollPolicy::default()
        .min_interval(Duration::from_millis(50))
        .max_interval(Duration::from_millis(200))
        .max_wait(Duration::from_secs(120))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let targets = Targets::from_env(cli.sandbox);
    let ui = Ui::new();
    let started = Instant::now();
    let services = match start_sandboxes(&targets).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for (name, real) in [
        ("DAP", targets.dap),
        ("BDS", targets.bds),
        ("LD", targets.ld),
        ("Toucan", targets.toucan),
    ] {
        ui.note(format!(
            "{name}: {}",
            if real {
                "real service (from the environment)"
            } else {
                "in-process sandbox"
            }
        ));
    }
    let database = sqlite_url(&cli.database);
    dap_phase(&cli, &services, &database, &ui).await;
    bds_phase(&cli, &services, &database, &ui).await;
    let work = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: no temporary directory for the LD and Toucan files: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ld_files = ld_phase(&cli, &services, work.path(), &ui).await;
    toucan_phase(&cli, &services, work.path(), &ld_files, &ui).await;

    ui.print_summary();
    println!();
    println!(
        "total {:.1}s. Database: {}",
        started.elapsed().as_secs_f64(),
        cli.database.display()
    );
    // SQLite has no schemas: DAP's canvas.users is the table canvas__users.
    let sample = cli
        .dap_tables
        .first()
        .map_or_else(|| "bds__users".to_string(), |t| t.replace('.', "__"));
    println!(
        "look inside: sqlite3 {} '.tables' 'select count(*) from \"{sample}\"'",
        shell_quote(&cli.database.display().to_string())
    );
    match ui.failed() {
        0 => ExitCode::SUCCESS,
        n => {
            eprintln!("{n} step(s) failed");
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes, each cause shown once (typed errors often
/// repeat their source's text in their own message).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

// ---------------------------------------------------------------- DAP

/// `namespace.table` split in two.
fn split_table(name: &str) -> anyhow::Result<(&str, &str)> {
    name.split_once('.')
        .filter(|(ns, t)| !ns.is_empty() && !t.is_empty())
        .ok_or_else(|| anyhow!("--dap-table {name:?} should look like canvas.users"))
}

/// Calls a sandbox control route and returns its JSON answer.
async fn control(
    base_url: &str,
    route: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let http = HttpClient::builder().build()?;
    let request = if body.is_null() {
        Request::get(format!("{base_url}{route}"))
    } else {
        Request::post(format!("{base_url}{route}")).json(&body)
    };
    http.send_json(request)
        .await
        .with_context(|| format!("sandbox control route {route}"))
}

/// The mutation batch each run applies to a sandbox table (so a later run
/// can replay it exactly).
fn mutation_of(table: &str) -> serde_json::Value {
    if table == "users" {
        serde_json::json!({"inserts": 500, "updates": 1_000, "deletes": 100})
    } else {
        serde_json::json!({"inserts": 2_000, "updates": 5_000, "deletes": 500})
    }
}

fn dap_client(
    server: Option<&sandbox::dap::DapServer>,
    bytes: Arc<ProgressBytes>,
) -> anyhow::Result<dap_client::Client> {
    let builder = match server {
        Some(s) => {
            let creds = s.credentials();
            dap_client::Client::builder()
                .base_url(s.base_url())
                .credentials(creds.client_id, SecretString::from(creds.client_secret))
                .poll_policy(sandbox_polls())
        }
        None => dap_client::ClientBuilder::from_env(),
    };
    Ok(builder
        .progress(move |p| bytes.update(p.object_id, p.bytes))
        .build()?)
}

/// Downloaded bytes of the objects of the running step, for its bar.
#[derive(Default)]
struct ProgressBytes {
    by_object: Mutex<HashMap<String, u64>>,
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressBytes {
    fn attach(&self, bar: &ProgressBar) {
        self.by_object
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
    }

    fn update(&self, object: &str, bytes: u64) {
        let total: u64 = {
            let mut map = self.by_object.lock().unwrap_or_else(|e| e.into_inner());
            map.insert(object.to_string(), bytes);
            map.values().sum()
        };
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.set_message(format!("{} downloaded", indicatif::HumanBytes(total)));
        }
    }
}

async fn dap_phase(cli: &Cli, services: &Sandboxes, database: &str, ui: &Ui) {
    let bytes = Arc::new(ProgressBytes::default());
    let replicator = match open_replicator(services.dap.as_ref(), bytes.clone(), database).await {
        Ok(r) => r,
        Err(e) => {
            ui.record(
                "dap: connect",
                "-".into(),
                Duration::ZERO,
                Err(describe(&e)),
            );
            return;
        }
    };
    let mut tables = Vec::new();
    for name in &cli.dap_tables {
        match split_table(name) {
            Ok((ns, t)) => tables.push((ns.to_string(), t.to_string())),
            Err(e) => ui.record(
                &format!("dap: {name}"),
                "-".into(),
                Duration::ZERO,
                Err(describe(&e)),
            ),
        }
    }
    let known = replicator.list(None).await.unwrap_or_default();
    let watermark_of = |ns: &str, t: &str| {
        known
            .iter()
            .find(|r| r.namespace == ns && r.table == t)
            .and_then(|r| r.watermark)
    };

    // First run: a snapshot into a new table. Later runs: catch the sandbox up.
    for (ns, t) in &tables {
        let label = format!("dap init {ns}.{t}");
        match watermark_of(ns, t) {
            None => {
                ui.step(&label, |bar| {
                    bytes.attach(&bar);
                    async {
                        let report = replicator.init(ns, t).await?;
                        Ok((
                            format!("{} rows", report.upserted_rows),
                            format!("snapshot, watermark {}", fmt_time(report.watermark)),
                        ))
                    }
                })
                .await;
            }
            Some(wm) => {
                if let Some(server) = &services.dap {
                    ui.step(&format!("sandbox catch-up {ns}.{t}"), |bar| async move {
                        let replayed = catch_up_dap(server.base_url(), ns, t, wm, &bar).await?;
                        Ok((
                            format!("{replayed} batches"),
                            format!(
                                "database from an earlier run (watermark {}): replayed its \
                                 mutations in the fresh sandbox",
                                fmt_time(Some(wm))
                            ),
                        ))
                    })
                    .await;
                } else {
                    ui.note(format!(
                        "{ns}.{t}: already replicated (watermark {}); syncing",
                        fmt_time(Some(wm))
                    ));
                }
            }
        }
    }

    // Change the sandbox's tables, then bring the database up to date.
    if let Some(server) = &services.dap {
        for (ns, t) in &tables {
            ui.step(&format!("sandbox mutate {ns}.{t}"), |_bar| async move {
                let batch = mutation_of(t);
                control(
                    server.base_url(),
                    &format!("/__sandbox/dap/tables/{ns}/{t}/mutate"),
                    batch.clone(),
                )
                .await?;
                Ok(("1 batch".into(), batch.to_string()))
            })
            .await;
        }
    }
    for (ns, t) in &tables {
        ui.step(&format!("dap sync {ns}.{t}"), |bar| {
            bytes.attach(&bar);
            let replicator = &replicator;
            async move {
                let report = replicator.sync(ns, t).await?;
                let how = if report.reinitialized {
                    "re-initialised from a snapshot"
                } else {
                    "incremental"
                };
                let check = match &services.dap {
                    Some(server) => verify_dap(server.base_url(), replicator, ns, t).await?,
                    None => String::new(),
                };
                Ok((
                    format!("+{} -{} rows", report.upserted_rows, report.deleted_rows),
                    format!("{how}, watermark {}{check}", fmt_time(report.watermark)),
                ))
            }
        })
        .await;
    }
}

async fn open_replicator(
    server: Option<&sandbox::dap::DapServer>,
    bytes: Arc<ProgressBytes>,
    database: &str,
) -> anyhow::Result<dap_client::replicate::Replicator> {
    use dap_client::replicate::{ReplicateOptions, Replicator};
    let client = dap_client(server, bytes)?;
    // A database from another data source (or a run that was cut short)
    // is re-initialised rather than failing on OutOfRange.
    Ok(Replicator::open(client, database)
        .await?
        .with_options(ReplicateOptions::default().reinit_when_needed(true)))
}

/// Replays the mutation batches earlier runs applied, so the fresh sandbox
/// holds what the database was synced to. Returns how many were replayed.
async fn catch_up_dap(
    base_url: &str,
    ns: &str,
    t: &str,
    watermark: dap_client::chrono::DateTime<dap_client::chrono::Utc>,
    bar: &ProgressBar,
) -> anyhow::Result<i64> {
    let zero = dap_client::chrono::DateTime::parse_from_rfc3339(DAP_SANDBOX_EPOCH_ZERO)?;
    let since = watermark.signed_duration_since(zero);
    let epochs = since.num_hours();
    if since.num_seconds() != epochs * 3600 || !(0..=MAX_CATCH_UP).contains(&epochs) {
        // Not a sandbox watermark: sync will re-initialise the table.
        return Ok(0);
    }
    for i in 0..epochs {
        bar.set_message(format!("{}/{epochs}", i + 1));
        control(
            base_url,
            &format!("/__sandbox/dap/tables/{ns}/{t}/mutate"),
            mutation_of(t),
        )
        .await?;
    }
    Ok(epochs)
}

/// Compares the replicated row count with the sandbox's live rows.
async fn verify_dap(
    base_url: &str,
    replicator: &dap_client::replicate::Replicator,
    ns: &str,
    t: &str,
) -> anyhow::Result<String> {
    let state = control(base_url, "/__sandbox/dap/state", serde_json::Value::Null).await?;
    let expected = state["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["namespace"] == ns && v["table"] == t)
        .and_then(|v| v["rows"].as_u64())
        .ok_or_else(|| anyhow!("the sandbox does not describe {ns}.{t}"))?;
    let held = replicator
        .list(Some(ns))
        .await?
        .into_iter()
        .find(|r| r.table == t)
        .map_or(0, |r| r.row_count);
    if held != expected {
        bail!(
            "{ns}.{t} holds {held} rows but the sandbox has {expected}; delete the database \
             to start over"
        );
    }
    Ok(format!(", {held} rows = sandbox"))
}

fn fmt_time(t: Option<dap_client::chrono::DateTime<dap_client::chrono::Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

// ---------------------------------------------------------------- BDS

async fn bds_phase(cli: &Cli, services: &Sandboxes, database: &str, ui: &Ui) {
    use bds_client::sync::{SyncOptions, plan_sync};
    let tenant = services.bds.as_ref();
    let setup = async {
        let client = bds_client(tenant)?;
        let sink = sql_sink::Sink::open(database).await?;
        anyhow::Ok((client, sink))
    };
    let (client, mut sink) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            ui.record(
                "bds: connect",
                "-".into(),
                Duration::ZERO,
                Err(describe(&e)),
            );
            return;
        }
    };
    let options = SyncOptions::default();

    // Where the database left off (None on a first run).
    let mut last = None;
    for name in &cli.bds_data_sets {
        match plan_sync(&client, &sink, name, &options).await {
            Ok(plan) => last = last.max(plan.state.watermark()),
            Err(e) => ui.note(format!("{name}: could not read its state: {e}")),
        }
    }
    if let (Some(tenant), Some(target)) = (tenant, last) {
        ui.step("sandbox catch-up bds", |_bar| async move {
            let mut days = 0;
            while tenant.now() <= target && days < MAX_CATCH_UP {
                tenant.advance_days(1);
                days += 1;
            }
            // And the day this run syncs.
            tenant.advance_days(1);
            Ok((
                format!("{} days", days + 1),
                format!(
                    "database from an earlier run (data up to {}): the sandbox replayed \
                     those days, then published one more",
                    target.format("%Y-%m-%d")
                ),
            ))
        })
        .await;
    }

    for round in 0..2 {
        if round == 1 {
            match tenant {
                Some(tenant) => {
                    // Two days pass before the next sync: one differential
                    // would be missed by a client that only takes the latest.
                    tenant.advance_days(2);
                    ui.note(
                        "bds: two more days published; the next sync must apply both differentials",
                    );
                }
                None => break,
            }
        }
        for name in &cli.bds_data_sets {
            let step = format!("bds sync {name}");
            let (client, sink, options) = (&client, &mut sink, &options);
            ui.step(&step, |bar| async move {
                let report = sync_with_bar(client, sink, name, options, &bar).await?;
                let kinds: Vec<String> = report
                    .applied
                    .iter()
                    .map(|a| format!("{:?}", a.extract.bds_type))
                    .collect();
                let rows: u64 = report.applied.iter().map(|a| a.rows).sum();
                let check = match tenant {
                    Some(tenant) => verify_bds(tenant, sink, &report).await?,
                    None => String::new(),
                };
                Ok((
                    format!("{rows} rows"),
                    format!(
                        "{}: {} extract(s) [{}]{check}",
                        report.plan,
                        report.applied.len(),
                        kinds.join(", ")
                    ),
                ))
            })
            .await;
        }
    }
}

fn bds_client(tenant: Option<&sandbox::bds::BdsServer>) -> anyhow::Result<bds_client::Client> {
    let Some(tenant) = tenant else {
        return Ok(bds_client::Client::from_env()?.build()?);
    };
    let creds = tenant.credentials();
    Ok(bds_client::Client::builder()
        .base_url(&creds.base_url)
        .auth_url(&creds.auth_url)
        .credentials(
            &creds.client_id,
            SecretString::from(creds.client_secret.clone()),
        )
        .refresh_token(SecretString::from(creds.refresh_token.clone()))
        .token_store(Arc::new(bds_client::MemoryTokenStore::new()))
        .build()?)
}

async fn sync_with_bar(
    client: &bds_client::Client,
    sink: &mut sql_sink::Sink,
    name: &str,
    options: &bds_client::sync::SyncOptions,
    bar: &ProgressBar,
) -> anyhow::Result<bds_client::sync::SyncReport> {
    use bds_client::sync::{SyncEvent, sync_data_set};
    let bar = bar.clone();
    let steps = Arc::new(Mutex::new(0usize));
    let events: bds_client::sync::SyncEvents = Arc::new(move |event: &SyncEvent| {
        let mut steps = steps.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            SyncEvent::Planned { plan, .. } => {
                *steps = plan.steps.len();
                bar.set_message(format!("{}: {} extract(s)", plan.kind, plan.steps.len()));
            }
            SyncEvent::Downloading { step, bytes, .. } => bar.set_message(format!(
                "extract {}/{}: {} downloaded",
                step + 1,
                *steps,
                indicatif::HumanBytes(*bytes)
            )),
            SyncEvent::Loading { step, rows } => {
                bar.set_message(format!("extract {}/{}: {rows} rows", step + 1, *steps))
            }
            SyncEvent::Applied { step, rows } => bar.set_message(format!(
                "extract {}/{} committed ({rows} rows)",
                step + 1,
                *steps
            )),
            _ => {}
        }
    });
    let report = sync_data_set(client, sink, name, options, Some(events)).await?;
    if let Some(gap) = &report.gap {
        bail!("{name}: stopped at a gap in the listed differentials: {gap:?}");
    }
    Ok(report)
}

/// Compares the synced table's row count with what the sandbox says it must
/// hold.
async fn verify_bds(
    tenant: &sandbox::bds::BdsServer,
    sink: &sql_sink::Sink,
    report: &bds_client::sync::SyncReport,
) -> anyhow::Result<String> {
    let expected = tenant
        .expected(&report.data_set)
        .await
        .ok_or_else(|| anyhow!("the sandbox does not know {}", report.data_set))?
        .rows
        .len() as u64;
    let held = sink
        .table_status(&report.table)
        .await?
        .map_or(0, |s| s.row_count);
    // Differentials carry no deletes (bds.md §8): rows hard-deleted upstream
    // stay until a full rebuilds the table, so only missing rows are wrong.
    if held < expected {
        bail!(
            "{} holds {held} rows but the sandbox says {expected}; delete the database to \
             start over",
            report.table
        );
    }
    if held > expected {
        return Ok(format!(
            ", {held} rows: the sandbox's {expected} + {} hard-deleted upstream, kept until \
             the next full",
            held - expected
        ));
    }
    Ok(format!(", {held} rows = sandbox"))
}

// ---------------------------------------------------------------- LD

/// Runs an import and an export, waits for both; returns the exported files.
async fn ld_phase(cli: &Cli, services: &Sandboxes, work: &Path, ui: &Ui) -> Vec<PathBuf> {
    use ldbatch_client::{Client, ContentType, ExportRequest, ImportRequest};
    let client = match &services.ld {
        Some(server) => {
            let c = server.credentials();
            Client::builder()
                .base_url(c.base_url)
                .client(c.client_id, c.client_secret.into())
                .user(c.username, c.password.into())
                .community(c.community)
                .poll_policy(sandbox_polls())
                .build()
        }
        None => Client::from_env(),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            ui.record(
                "ld: connect",
                "-".into(),
                Duration::ZERO,
                Err(e.to_string()),
            );
            return Vec::new();
        }
    };
    let client = &client;
    let may_write = services.ld.is_some() || cli.allow_writes;
    let import = async {
        if !may_write {
            ui.skipped(
                "ld import Account",
                "real LD service; pass --allow-writes to import",
            );
            return;
        }
        ui.step("ld import Account", |bar| async move {
            let file = work.join("accounts.json");
            write_accounts(&file, cli.ld_records)?;
            let request = ImportRequest::new("Account", ContentType::Json, file.as_path())
                .job_name("quickstart import")
                .merge(true);
            let job = client.import(&request).await?;
            let done = wait_ld(client, &job.job_id, &bar).await?;
            Ok((
                format!("{} records", done.records_processed.unwrap_or(0)),
                format!("job {} {}", done.job_id, done.status),
            ))
        })
        .await;
    };
    let files = Mutex::new(Vec::new());
    let files_ref = &files;
    let export = ui.step("ld export Account", |bar| async move {
        let request = ExportRequest::new("Account", ContentType::Json)
            .sql_query("select * from Account")
            .job_name("quickstart export");
        let job = client.export(&request).await?;
        let done = wait_ld(client, &job.job_id, &bar).await?;
        let dir = work.join("ld-export");
        let saved = client.download_results(&done, &dir).await?;
        let count = saved.len();
        files_ref
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(saved);
        Ok((
            format!("{} records", done.records_processed.unwrap_or(0)),
            format!(
                "job {} {}, {count} file(s) downloaded",
                done.job_id, done.status
            ),
        ))
    });
    futures::join!(import, export);
    files.into_inner().unwrap_or_else(|e| e.into_inner())
}

async fn wait_ld(
    client: &ldbatch_client::Client,
    job_id: &str,
    bar: &ProgressBar,
) -> anyhow::Result<ldbatch_client::Job> {
    Ok(client
        .wait_with(job_id, |j| {
            let records = j
                .records_processed
                .map(|n| format!(", {n} records"))
                .unwrap_or_default();
            bar.set_message(format!("job {}: {}{records}", j.job_id, j.status));
        })
        .await?)
}

const REGIONS: [&str; 4] = ["north", "south", "east", "west"];

/// A JSON array of `count` accounts, written as it is generated.
fn write_accounts(path: &Path, count: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"[")?;
    for i in 0..count {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        let region = REGIONS.get((i % 4) as usize).copied().unwrap_or("north");
        let account = serde_json::json!({
            "id": format!("QS-{i:06}"),
            "name": format!("Quickstart account {i}"),
            "region": region,
            "revenue": i * 37 % 10_000,
        });
        serde_json::to_writer(&mut out, &account)?;
    }
    out.write_all(b"]\n")?;
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------- Toucan

async fn toucan_phase(cli: &Cli, services: &Sandboxes, work: &Path, ld_files: &[PathBuf], ui: &Ui) {
    use toucan_client::{Client, Operation, OperationsRequest, Stage, Upload};
    if services.toucan.is_none() && !cli.allow_writes {
        for step in [
            "toucan upload",
            "toucan preprocess",
            "toucan populate",
            "toucan release",
        ] {
            ui.skipped(
                step,
                "real Toucan service; pass --allow-writes to change it",
            );
        }
        return;
    }
    let client = match &services.toucan {
        Some(server) => {
            let c = server.credentials();
            Client::builder()
                .api_url(c.api_url)
                .small_app(c.small_app)
                .credentials(c.username, c.password.into())
                .poll_policy(sandbox_polls())
                .build()
        }
        None => Client::from_env(),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            ui.record(
                "toucan: connect",
                "-".into(),
                Duration::ZERO,
                Err(e.to_string()),
            );
            return;
        }
    };
    let client = &client;
    let uploaded = ui
        .step("toucan upload", |bar| async move {
            let mut files = ld_files.to_vec();
            let summary = work.join("quickstart_regions.csv");
            std::fs::write(
                &summary,
                "region,accounts\nnorth,1\nsouth,1\neast,1\nwest,1\n",
            )?;
            files.push(summary);
            let uploads = files
                .iter()
                .map(|f| Ok(Upload::new(f)?.validation(false)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let count = uploads.len();
            bar.set_message(format!("{count} file(s)"));
            let mut bytes = 0;
            for outcome in client.upload_all(uploads, 4).await {
                let receipt = outcome
                    .result
                    .with_context(|| format!("upload of {}", outcome.upload.name()))?;
                bytes += receipt.bytes;
                if let Some(id) = receipt.operation_id {
                    bar.set_message(format!("{}: waiting for operation {id}", receipt.name));
                    client.wait(&id).await?;
                }
            }
            Ok((
                format!("{count} files"),
                format!("{} sent", indicatif::HumanBytes(bytes)),
            ))
        })
        .await;
    if !uploaded {
        return;
    }
    let stages: [(&str, Vec<Operation>); 3] = [
        ("toucan preprocess", vec![Operation::PreprocessDataSources]),
        (
            "toucan populate",
            vec![
                Operation::PopulateBasemaps,
                Operation::PopulateReports,
                Operation::PopulateDashboards,
            ],
        ),
        ("toucan release", vec![Operation::Release]),
    ];
    for (step, operations) in stages {
        let count = operations.len();
        let ok = ui
            .step(step, |bar| async move {
                let request = OperationsRequest::new(operations);
                let id = client.start_operations(Stage::Staging, &request).await?;
                let done = client
                    .wait_with(&id, |s| {
                        bar.set_message(format!("operation {id}: {}", s.status))
                    })
                    .await?;
                Ok((
                    format!("{count} op(s)"),
                    format!("operation {id} {} on staging", done.status),
                ))
            })
            .await;
        if !ok {
            return;
        }
    }
}
