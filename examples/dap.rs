//! The DAP (Canvas Data 2) command line, with the official `dap` CLI's flags.
//!
//! ```text
//! cargo run --release --example dap -- list --namespace canvas
//! cargo run --release --example dap -- schema --namespace canvas --table users,courses
//! cargo run --release --example dap -- snapshot --namespace canvas --table all --format tsv --mode condensed
//! cargo run --release --example dap -- incremental --namespace canvas --table users --since 2024-05-01T09:40:12Z
//! cargo run --release --example dap -- --sandbox snapshot --namespace canvas --table users
//! cargo run --release --example dap -- initdb --namespace canvas --table users --connection-string sqlite://canvas.db
//! cargo run --release --example dap -- syncdb --namespace canvas --table all --connection-string sqlite://canvas.db
//! cargo run --release --example dap -- listdb --namespace canvas --connection-string sqlite://canvas.db
//! cargo run --release --example dap -- dropdb --namespace canvas --table users --connection-string sqlite://canvas.db
//! ```
//!
//! The database commands (`initdb`, `syncdb`, `dropdb`, `listdb`) take
//! `--connection-string` or `DAP_CONNECTION_STRING`: `sqlite://path.db`
//! (the default, `sqlite://dap.db`) or `postgresql://user:pass@host:port/db`
//! (build with `--features postgres`).
//!
//! Credentials come from `--base-url`/`--client-id`/`--client-secret` or
//! `DAP_API_URL`/`DAP_CLIENT_ID`/`DAP_CLIENT_SECRET`; `--sandbox` starts an
//! in-process fake DAP service instead.
//!
//! Exit codes: 0 success, 1 unexpected error, 2 usage or configuration
//! error, 3 service error (nothing was done), 4 partial failure (some tables
//! failed, the others are done).
//!
//! Testing aid: built with the `crash-points` feature, `initdb` and
//! `syncdb` honour `BULKDATA_CRASH_POINT=download|mid-load|before-commit|
//! after-commit|evolve`: on reaching that point the program writes
//! `crash point reached: <point>` to stderr and stops there, to be killed
//! by a crash test (see `examples/support/crash_points.rs` and
//! `tests/crash_consistency.rs`). Normal builds ignore the variable.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dap_client::chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use dap_client::replicate::{
    ManyOutcome, Operation, ReplicateError, ReplicateOptions, Replicator, TableReport,
};
use dap_client::{
    Client, DownloadProgress, Error, IncrementalQuery, Query, SecretString, SnapshotQuery,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[path = "support/crash_points.rs"]
mod crash_points;
use crash_points::{CrashPoints, Point};

#[derive(Parser)]
#[command(
    name = "dap",
    about = "Query the Instructure DAP (Canvas Data 2) API",
    after_help = "Exit codes: 0 success, 1 unexpected error, 2 usage or configuration error, \
                  3 service error, 4 partial failure (some tables failed)."
)]
struct Cli {
    /// API base URL.
    #[arg(long, env = "DAP_API_URL", global = true)]
    base_url: Option<String>,
    /// API key client id.
    #[arg(long, env = "DAP_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// API key client secret.
    #[arg(long, env = "DAP_CLIENT_SECRET", global = true, hide_env_values = true)]
    client_secret: Option<String>,
    /// Log level (logs go to stderr).
    #[arg(long, value_enum, default_value_t = LogLevel::Info, global = true)]
    loglevel: LogLevel,
    /// Machine-readable output on stdout (one line per item), no progress bars.
    #[arg(long, global = true)]
    non_interactive: bool,
    /// Run against an in-process sandbox instead of the real service.
    #[arg(long, global = true)]
    sandbox: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

#[derive(Subcommand)]
enum Command {
    /// List the tables of a namespace.
    List {
        /// Namespace, e.g. canvas.
        #[arg(long)]
        namespace: String,
    },
    /// Save table schemas as `<table>_schema_version_<v>.json`.
    Schema {
        #[command(flatten)]
        tables: TableArgs,
        /// Where to write the files.
        #[arg(long, default_value = "downloads")]
        output_directory: PathBuf,
    },
    /// Download a snapshot of tables.
    Snapshot(QueryArgs),
    /// Download the changes to tables since a point in time.
    Incremental {
        #[command(flatten)]
        query: QueryArgs,
        /// Start of the range (RFC 3339; a time without zone is taken as UTC).
        #[arg(long, value_parser = parse_time)]
        since: DateTime<Utc>,
        /// End of the range (default: the latest commit).
        #[arg(long, value_parser = parse_time)]
        until: Option<DateTime<Utc>>,
    },
    /// Create tables in a database and load them from a snapshot.
    Initdb(DbArgs),
    /// Bring replicated tables up to date (schema changes, upserts, deletes).
    Syncdb {
        #[command(flatten)]
        db: DbArgs,
        /// Re-initialise a table from a snapshot when DAP requires one or the
        /// schema changed incompatibly (instead of failing that table).
        #[arg(long)]
        reinit: bool,
    },
    /// Drop replicated tables and their sync state.
    Dropdb(DbArgs),
    /// List the tables of a namespace with their replication state.
    Listdb {
        /// Namespace, e.g. canvas.
        #[arg(long)]
        namespace: String,
        #[command(flatten)]
        connection: ConnectionArg,
        /// Only tables replicated in the database (no API call).
        #[arg(long)]
        omit_not_replicated: bool,
        /// Leave out the row counts.
        #[arg(long)]
        omit_record_count: bool,
    },
}

#[derive(Args)]
struct ConnectionArg {
    /// Database: sqlite://path.db or postgresql://user:pass@host:port/db.
    #[arg(
        long,
        env = "DAP_CONNECTION_STRING",
        default_value = "sqlite://dap.db",
        hide_env_values = true
    )]
    connection_string: String,
}

#[derive(Args)]
struct DbArgs {
    #[command(flatten)]
    tables: TableArgs,
    #[command(flatten)]
    connection: ConnectionArg,
    /// Tables processed at once.
    #[arg(long, default_value_t = 4)]
    table_concurrency: usize,
    /// Rows per batch handed to the database.
    #[arg(long, default_value_t = 5_000)]
    batch_rows: usize,
}

#[derive(Args)]
struct TableArgs {
    /// Namespace, e.g. canvas.
    #[arg(long)]
    namespace: String,
    /// A table name, a comma-separated list, or `all`.
    #[arg(long)]
    table: String,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    tables: TableArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    format: FormatArg,
    /// Output mode of tabular formats.
    #[arg(long, value_enum)]
    mode: Option<ModeArg>,
    /// Where to write the files (`<dir>/job_<id>/`).
    #[arg(long, default_value = "downloads")]
    output_directory: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Tsv,
    Csv,
    Jsonl,
    Parquet,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Expanded,
    Condensed,
}

impl From<FormatArg> for dap_client::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Tsv => Self::Tsv,
            FormatArg::Csv => Self::Csv,
            FormatArg::Jsonl => Self::Jsonl,
            FormatArg::Parquet => Self::Parquet,
        }
    }
}

impl From<ModeArg> for dap_client::Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Expanded => Self::Expanded,
            ModeArg::Condensed => Self::Condensed,
        }
    }
}

/// RFC 3339, or a date-time or date without zone (taken as UTC, unlike the
/// official CLI, which silently used the machine's local time).
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is not a timestamp; use e.g. 2024-05-01T09:40:12Z"))
}

/// Why the program stopped, mapped to the exit code.
enum Failure {
    Usage(String),
    Service(Error),
    Database(Box<ReplicateError>),
    Partial { failed: usize, total: usize },
    Other(anyhow::Error),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Other(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Service(Error::Config(_)) => 2,
            Failure::Service(_) => 3,
            Failure::Database(_) => 3,
            Failure::Partial { .. } => 4,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.loglevel {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "warn,dap_client={level},client_core={level},dap={level}"
        )))
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            match &failure {
                Failure::Usage(m) => eprintln!("error: {m}"),
                Failure::Service(e) => eprintln!("error: {e}"),
                Failure::Database(e) => eprintln!("error: {e}"),
                Failure::Partial { failed, total } => {
                    eprintln!("error: {failed} of {total} table(s) failed; the others completed")
                }
                Failure::Other(e) => eprintln!("error: {e:#}"),
            }
            ExitCode::from(failure.code())
        }
    }
}

/// The output of a run: progress bars when interactive.
struct Ui {
    interactive: bool,
    bars: MultiProgress,
    by_object: Mutex<HashMap<String, ProgressBar>>,
}

impl Ui {
    fn progress(&self, p: DownloadProgress<'_>) {
        if !self.interactive {
            return;
        }
        let mut bars = self.by_object.lock().unwrap_or_else(|e| e.into_inner());
        let bar = bars.entry(p.object_id.to_string()).or_insert_with(|| {
            let bar = self.bars.add(ProgressBar::new(p.total.unwrap_or(0)));
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:40!} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let name = p.object_id.rsplit('/').next().unwrap_or(p.object_id);
            bar.set_message(name.to_string());
            bar
        });
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.bytes);
        if p.total == Some(p.bytes) {
            bar.finish();
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // Keeps the in-process sandbox alive for the whole run.
    let mut _sandbox = None;
    let (base_url, client_id, client_secret) = if cli.sandbox {
        let server = sandbox::dap::start(
            Default::default(),
            sandbox::Faults::new(),
            sandbox::Stats::new(),
        )
        .await
        .map_err(|e| Failure::Other(anyhow::anyhow!("could not start the sandbox: {e}")))?;
        let creds = server.credentials();
        let base = server.base_url().to_string();
        _sandbox = Some(server);
        (Some(base), Some(creds.client_id), Some(creds.client_secret))
    } else {
        (
            cli.base_url.clone(),
            cli.client_id.clone(),
            cli.client_secret.clone(),
        )
    };
    let ui = Arc::new(Ui {
        interactive: !cli.non_interactive,
        bars: MultiProgress::new(),
        by_object: Mutex::new(HashMap::new()),
    });
    let mut builder = Client::builder();
    if let Some(url) = base_url {
        builder = builder.base_url(url);
    }
    match (client_id, client_secret) {
        (Some(id), Some(secret)) => builder = builder.credentials(id, SecretString::from(secret)),
        (None, _) => {
            return Err(Failure::Usage(
                "missing client id: pass --client-id or set DAP_CLIENT_ID (or use --sandbox)"
                    .into(),
            ));
        }
        (_, None) => {
            return Err(Failure::Usage(
                "missing client secret: pass --client-secret or set DAP_CLIENT_SECRET (or use --sandbox)".into(),
            ));
        }
    }
    let crash = CrashPoints::from_env().map_err(Failure::Usage)?;
    let progress_ui = ui.clone();
    let progress_crash = crash.clone();
    let client = builder
        .progress(move |p| {
            if let Some(points) = &progress_crash {
                points.reached(Point::Download);
            }
            progress_ui.progress(p)
        })
        .build()
        .map_err(Failure::Service)?;
    let db = DbRun {
        ui: &ui,
        crash: crash.as_ref(),
    };

    match cli.command {
        Command::List { namespace } => {
            let tables = client.tables(&namespace).await.map_err(Failure::Service)?;
            for t in tables {
                println!("{t}");
            }
            Ok(())
        }
        Command::Schema {
            tables,
            output_directory,
        } => {
            let names = resolve_tables(&client, &tables).await?;
            for_each_table(
                &names,
                |table| {
                    let (client, ns, dir) = (
                        client.clone(),
                        tables.namespace.clone(),
                        output_directory.clone(),
                    );
                    async move {
                        let path = client.download_schema(&ns, &table, &dir).await?;
                        Ok(serde_json::json!({"table": table, "file": path}))
                    }
                },
                &ui,
            )
            .await
        }
        Command::Snapshot(args) => {
            let mut query = SnapshotQuery::new(args.format.into());
            if let Some(mode) = args.mode {
                query = query.mode(mode.into());
            }
            download(&client, &args, Query::from(query), &ui).await
        }
        Command::Incremental {
            query,
            since,
            until,
        } => {
            if until.is_some_and(|u| u <= since) {
                return Err(Failure::Usage("--until must be later than --since".into()));
            }
            let mut q = IncrementalQuery::new(query.format.into(), since);
            if let Some(mode) = query.mode {
                q = q.mode(mode.into());
            }
            if let Some(until) = until {
                q = q.until(until);
            }
            download(&client, &query, Query::from(q), &ui).await
        }
        Command::Initdb(args) => replicate(&client, &args, Operation::Init, false, &db).await,
        Command::Syncdb { db: args, reinit } => {
            replicate(&client, &args, Operation::Sync, reinit, &db).await
        }
        Command::Dropdb(args) => replicate(&client, &args, Operation::Drop, false, &db).await,
        Command::Listdb {
            namespace,
            connection,
            omit_not_replicated,
            omit_record_count,
        } => {
            let args = ListArgs {
                namespace,
                omit_not_replicated,
                omit_record_count,
            };
            list_db(&client, &connection.connection_string, &args, &ui).await
        }
    }
}

/// What the database commands share: the output, and the armed crash
/// point (testing builds only).
struct DbRun<'a> {
    ui: &'a Ui,
    crash: Option<&'a Arc<CrashPoints>>,
}

/// `initdb` / `syncdb` / `dropdb`: the tables run concurrently; every
/// table's outcome is printed (one JSON line each when non-interactive).
async fn replicate(
    client: &Client,
    db: &DbArgs,
    operation: Operation,
    reinit: bool,
    run: &DbRun<'_>,
) -> Result<(), Failure> {
    let ui = run.ui;
    let mut replicator = Replicator::open(client.clone(), &db.connection.connection_string)
        .await
        .map_err(|e| Failure::Database(Box::new(e)))?
        .with_options(
            ReplicateOptions::default()
                .reinit_when_needed(reinit)
                .table_concurrency(db.table_concurrency)
                .batch_rows(db.batch_rows),
        );
    if let Some(points) = run.crash {
        replicator = replicator.with_load_observer(points.load_observer());
    }
    let namespace = &db.tables.namespace;
    let names = if operation == Operation::Drop && db.tables.table.trim() == "all" {
        // Like the official CLI: `all` means every table replicated here.
        replicator
            .list(Some(namespace))
            .await
            .map_err(|e| Failure::Database(Box::new(e)))?
            .into_iter()
            .map(|t| t.table)
            .collect()
    } else {
        resolve_tables(client, &db.tables).await?
    };
    let outcome = replicator.run_many(operation, namespace, &names).await;
    report_outcome(outcome, ui)
}

fn report_line(report: &TableReport) -> serde_json::Value {
    serde_json::json!({
        "table": report.table,
        "operation": report.operation.to_string(),
        "job_id": report.job_id,
        "upserted": report.upserted_rows,
        "deleted": report.deleted_rows,
        "watermark": report.watermark,
        "schema_version": report.schema_version,
        "columns_added": report.evolution.added_columns,
        "columns_kept": report.evolution.kept_columns,
        "reinitialized": report.reinitialized,
        "dropped": report.dropped,
    })
}

fn report_outcome(outcome: ManyOutcome, ui: &Ui) -> Result<(), Failure> {
    let total = outcome.results.len();
    let mut failed = 0;
    let mut fatal = None;
    for (table, result) in outcome.results {
        match result {
            Ok(report) if ui.interactive => {
                let _ = ui
                    .bars
                    .println(format!("{table}: done {}", report_line(&report)));
            }
            Ok(report) => println!("{}", report_line(&report)),
            Err(e) => {
                failed += 1;
                tracing::error!(table = %table, error = %e, "table failed");
                if e.is_fatal() && fatal.is_none() {
                    fatal = Some(e);
                }
            }
        }
    }
    match (failed, fatal) {
        (0, _) => Ok(()),
        (_, Some(e)) => Err(Failure::Database(Box::new(e))),
        (n, None) => Err(Failure::Partial { failed: n, total }),
    }
}

struct ListArgs {
    namespace: String,
    omit_not_replicated: bool,
    omit_record_count: bool,
}

/// `listdb`: the namespace's tables with watermark, staleness, schema
/// version, last command and row count.
async fn list_db(
    client: &Client,
    connection_string: &str,
    args: &ListArgs,
    ui: &Ui,
) -> Result<(), Failure> {
    let replicator = Replicator::open(client.clone(), connection_string)
        .await
        .map_err(|e| Failure::Database(Box::new(e)))?;
    let replicated = replicator
        .list(Some(&args.namespace))
        .await
        .map_err(|e| Failure::Database(Box::new(e)))?;
    let mut names: Vec<String> = replicated.iter().map(|t| t.table.clone()).collect();
    if !args.omit_not_replicated {
        for t in client
            .tables(&args.namespace)
            .await
            .map_err(Failure::Service)?
        {
            if !names.contains(&t) {
                names.push(t);
            }
        }
        names.sort();
    }
    let rows: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let state = replicated.iter().find(|t| &t.table == name);
            let mut row = serde_json::json!({
                "name": name,
                "timestamp": state.and_then(|t| t.watermark),
                "staleness": state.and_then(|t| t.staleness).map(|d| d.num_seconds()),
                "schema": state.and_then(|t| t.schema_version),
                "command": state.and_then(|t| t.last_command.clone()),
            });
            if !args.omit_record_count {
                row["records"] = serde_json::json!(state.map(|t| t.row_count));
            }
            row
        })
        .collect();
    if ui.interactive {
        for row in &rows {
            println!(
                "{:<40} {:<26} {:>10} {:>8} {:>12}",
                row["name"].as_str().unwrap_or_default(),
                row["timestamp"].as_str().unwrap_or("not replicated"),
                row["staleness"]
                    .as_i64()
                    .map(|s| format!("{}h{:02}m", s / 3600, (s % 3600) / 60))
                    .unwrap_or_default(),
                row["schema"]
                    .as_i64()
                    .map(|v| format!("v{v}"))
                    .unwrap_or_default(),
                row["records"]
                    .as_u64()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            );
        }
    } else {
        println!("{}", serde_json::Value::Array(rows));
    }
    Ok(())
}

/// `--table`: a name, a comma-separated list (spaces trimmed) or `all`.
async fn resolve_tables(client: &Client, args: &TableArgs) -> Result<Vec<String>, Failure> {
    if args.table.trim() == "all" {
        return client
            .tables(&args.namespace)
            .await
            .map_err(Failure::Service);
    }
    let names: Vec<String> = args
        .table
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(Failure::Usage("--table names no table".into()));
    }
    Ok(names)
}

async fn download(client: &Client, args: &QueryArgs, query: Query, ui: &Ui) -> Result<(), Failure> {
    let names = resolve_tables(client, &args.tables).await?;
    for_each_table(
        &names,
        |table| {
            let (client, ns, dir, query) = (
                client.clone(),
                args.tables.namespace.clone(),
                args.output_directory.clone(),
                query.clone(),
            );
            async move {
                let result = client
                    .download_table_data(&ns, &table, query, &dir, false)
                    .await?;
                Ok(serde_json::json!({
                    "table": table,
                    "job_id": result.job_id,
                    "schema_version": result.schema_version,
                    "timestamp": result.timestamp,
                    "files": result.downloaded_files,
                }))
            }
        },
        ui,
    )
    .await
}

/// Runs `work` per table in turn. A fatal error (credentials, account,
/// unreachable service) stops the run; other failures are reported and the
/// remaining tables still run.
async fn for_each_table<F, Fut>(names: &[String], mut work: F, ui: &Ui) -> Result<(), Failure>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = dap_client::Result<serde_json::Value>>,
{
    let mut failed = 0;
    let mut last_error = None;
    for (i, table) in names.iter().enumerate() {
        // The job runs before any object downloads: show that it is alive.
        let spinner = ui.interactive.then(|| {
            let spinner = ui.bars.add(ProgressBar::new_spinner());
            spinner.set_message(format!("{table}: working"));
            spinner.enable_steady_tick(std::time::Duration::from_millis(120));
            spinner
        });
        let outcome = work(table.clone()).await;
        if let Some(spinner) = spinner {
            spinner.finish_and_clear();
        }
        match outcome {
            Ok(summary) if ui.interactive && !ui.bars.is_hidden() => {
                let _ = ui.bars.println(format!("{table}: done {summary}"));
            }
            Ok(summary) if ui.interactive => println!("{table}: done {summary}"),
            Ok(summary) => println!("{summary}"),
            Err(e) if e.is_fatal() => {
                tracing::error!(table = %table, error = %e, "stopping: this error affects every table");
                let skipped = names.len() - i - 1;
                if skipped > 0 {
                    eprintln!("{skipped} table(s) skipped");
                }
                return Err(Failure::Service(e));
            }
            Err(e) => {
                failed += 1;
                tracing::error!(table = %table, error = %e, "table failed");
                last_error = Some(e);
            }
        }
    }
    match (failed, last_error) {
        (0, _) => Ok(()),
        (n, Some(e)) if n == names.len() => Err(Failure::Service(e)),
        (n, _) => Err(Failure::Partial {
            failed: n,
            total: names.len(),
        }),
    }
}
