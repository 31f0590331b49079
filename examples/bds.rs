//! D2L Brightspace Data Sets from the command line.
//!
//! ```text
//! cargo run --release --example bds -- list
//! cargo run --release --example bds -- download --dataset "User Enrollments" --output-directory extracts/
//! cargo run --release --example bds -- plan --dataset Users --connection-string sqlite://bds.db
//! cargo run --release --example bds -- sync --dataset Users --dataset "User Enrollments"
//! cargo run --release --example bds -- --sandbox sync --dataset "Organizational Units"
//! ```
//!
//! Credentials come from `D2L_BASE_URL`, `D2L_AUTH_URL`, `D2L_CLIENT_ID`,
//! `D2L_CLIENT_SECRET`, `D2L_REFRESH_TOKEN` and `D2L_TOKEN_STORE` (the file
//! rotated refresh tokens are kept in), or, with `--sandbox`, from an
//! in-process fake tenant.
//!
//! Exit codes: 0 success, 1 any other error, 2 configuration, 3 a data set
//! needs a full extract that is not available yet.
//!
//! Testing aid: built with the `crash-points` feature, `sync` honours
//! `BULKDATA_CRASH_POINT=download|mid-load|before-commit|after-commit|evolve`:
//! on reaching that point the program writes `crash point reached: <point>`
//! to stderr and stops there, to be killed by a crash test (see
//! `examples/support/crash_points.rs` and `tests/crash_consistency.rs`).
//! Normal builds ignore the variable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bds_client::plan::{PlanKind, TableState, plan};
use bds_client::sync::{SyncEvent, SyncOptions, plan_sync, sync_data_set};
use bds_client::{
    BdsError, Client, ExtractArchive, MemoryTokenStore, PlanOptions, Progress, SecretString,
};
use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[path = "support/crash_points.rs"]
mod crash_points;
use crash_points::{CrashPoints, Point};

#[derive(Parser)]
#[command(about = "List, download, plan and sync D2L Brightspace Data Sets")]
struct Cli {
    /// Run against an in-process fake tenant instead of the D2L_* environment.
    #[arg(long, global = true)]
    sandbox: bool,
    /// Data set name, schema id or plugin id (repeatable).
    #[arg(long = "dataset", global = true)]
    datasets: Vec<String>,
    /// Database for plan and sync: sqlite://path.db or postgresql://user:pass@host:port/db.
    #[arg(long, global = true, default_value = "sqlite://bds.db")]
    connection_string: String,
    /// Where downloads go (download: required; sync: kept there instead of a temp dir).
    #[arg(long, global = true)]
    output_directory: Option<PathBuf>,
    /// Primary key of a data set without a built-in one: "Name=Col1,Col2" (repeatable).
    #[arg(long = "primary-key", global = true)]
    primary_keys: Vec<String>,
    /// Rebuild tables from each new full extract (confirms hard deletes).
    #[arg(long, global = true)]
    rebaseline_on_new_full: bool,
    /// Rows per batch handed to the database (sync).
    #[arg(long, global = true, default_value_t = 10_000)]
    batch_rows: usize,
    /// LP API version in route paths.
    #[arg(long, global = true, default_value = bds_client::client::DEFAULT_LP_VERSION)]
    lp_version: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the data sets and their newest extracts.
    List,
    /// Download the newest full and later differentials of each --dataset.
    Download {
        /// Also unpack the CSV next to each ZIP.
        #[arg(long)]
        unpack: bool,
    },
    /// Show what sync would apply to each --dataset, without downloading.
    Plan,
    /// Bring each --dataset's table up to date.
    Sync,
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
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let config = e.downcast_ref::<BdsError>().is_some_and(|b| {
                matches!(b, BdsError::Config(_) | BdsError::UnknownPrimaryKey { .. })
            });
            ExitCode::from(if config { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Keeps the fake tenant alive for the whole run.
    let (client, _tenant) = connect(&cli).await?;
    match &cli.command {
        Command::List => list(&client).await,
        Command::Download { unpack } => download(&cli, &client, *unpack).await,
        Command::Plan => show_plans(&cli, &client).await,
        Command::Sync => sync(&cli, &client).await,
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<(Client, Option<sandbox::bds::BdsServer>)> {
    if !cli.sandbox {
        let client = Client::from_env()?.lp_version(&cli.lp_version).build()?;
        return Ok((client, None));
    }
    let tenant = sandbox::bds::start(
        Default::default(),
        sandbox::Faults::new(),
        sandbox::Stats::new(),
    )
    .await?;
    let creds = tenant.credentials();
    eprintln!(
        "sandbox tenant at {} (auth {})",
        creds.base_url, creds.auth_url
    );
    let client = Client::builder()
        .base_url(&creds.base_url)
        .auth_url(&creds.auth_url)
        .credentials(
            &creds.client_id,
            SecretString::from(creds.client_secret.clone()),
        )
        .refresh_token(SecretString::from(creds.refresh_token.clone()))
        .token_store(Arc::new(MemoryTokenStore::new()))
        .lp_version(&cli.lp_version)
        .build()?;
    Ok((client, Some(tenant)))
}

fn datasets(cli: &Cli) -> anyhow::Result<&[String]> {
    if cli.datasets.is_empty() {
        anyhow::bail!(BdsError::Config(
            "name at least one --dataset (see `list`)".into()
        ));
    }
    Ok(&cli.datasets)
}

fn sync_options(cli: &Cli) -> anyhow::Result<SyncOptions> {
    let mut options = SyncOptions::default()
        .plan_options(PlanOptions::default().rebaseline_on_new_full(cli.rebaseline_on_new_full));
    for spec in &cli.primary_keys {
        let Some((name, columns)) = spec.split_once('=') else {
            anyhow::bail!(BdsError::Config(format!(
                "--primary-key {spec:?} should look like \"Name=Col1,Col2\""
            )));
        };
        options = options.primary_key(
            name.trim(),
            columns.split(',').map(str::trim).filter(|c| !c.is_empty()),
        );
    }
    if let Some(dir) = &cli.output_directory {
        options = options.download_dir(dir, true);
    }
    Ok(options.batch_rows(cli.batch_rows))
}

async fn list(client: &Client) -> anyhow::Result<ExitCode> {
    let data_sets: Vec<_> = client.data_sets().try_collect().await?;
    println!(
        "{:<38} {:<12} {:<24} {:>12} {:>5}  NAME",
        "PLUGIN", "TYPE", "NEWEST (QUEUED)", "BYTES", "OLDER"
    );
    for ds in &data_sets {
        let kind = match ds.full_data_set {
            Some(true) => "Full",
            Some(false) => "Differential",
            None => "?",
        };
        let queued = ds
            .queued_for_processing_date
            .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string());
        let size = ds
            .download_size
            .map_or_else(|| "-".into(), |s| s.to_string());
        println!(
            "{:<38} {:<12} {:<24} {:>12} {:>5}  {}",
            ds.plugin_id,
            kind,
            queued,
            size,
            ds.previous_data_sets.len(),
            ds.name
        );
    }
    if let Some(rate) = client.rate_limit() {
        eprintln!(
            "rate limit: {} credits left, refill in {:?}",
            rate.remaining, rate.reset_after
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn download(cli: &Cli, client: &Client, unpack: bool) -> anyhow::Result<ExitCode> {
    let Some(dir) = &cli.output_directory else {
        anyhow::bail!(BdsError::Config("download needs --output-directory".into()));
    };
    std::fs::create_dir_all(dir)?;
    let bars = MultiProgress::new();
    for name in datasets(cli)? {
        let found = client.data_set_extracts(name).await?;
        // What a first sync would apply: the newest full and the later differentials.
        let initial = plan(
            &TableState::default(),
            &found.extracts,
            &PlanOptions::default(),
        );
        if initial.steps.is_empty() {
            eprintln!("{}: nothing to download ({})", found.name, initial.kind);
            continue;
        }
        for step in &initial.steps {
            let extract = &step.extract;
            let when = extract.time().map_or(0, |t| t.timestamp());
            let file = dir.join(format!(
                "{}_{}_{when}.zip",
                bds_client::sync::table_name(&found.name),
                extract.bds_type
            ));
            let bar = bars.add(byte_bar(&format!("{} {}", found.name, extract.describe())));
            let saved = client
                .download(extract, &file, Some(progress_into(bar.clone())))
                .await?;
            bar.finish_with_message(format!(
                "{} -> {}",
                extract.describe(),
                saved.path.display()
            ));
            if unpack {
                let path = saved.path.clone();
                let limits = client.archive_limits();
                let target = dir.clone();
                let csv = tokio::task::spawn_blocking(move || {
                    ExtractArchive::open(&path, limits)?.unpack_to(&target)
                })
                .await??;
                eprintln!("  unpacked {}", csv.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn show_plans(cli: &Cli, client: &Client) -> anyhow::Result<ExitCode> {
    let sink = sql_sink::Sink::open(&cli.connection_string).await?;
    let options = sync_options(cli)?;
    let mut code = ExitCode::SUCCESS;
    for name in datasets(cli)? {
        let planned = plan_sync(client, &sink, name, &options).await?;
        println!(
            "{} -> {} (key {}): {}",
            planned.data_set,
            planned.table,
            planned.primary_key.join(", "),
            planned.plan.kind
        );
        for step in &planned.plan.steps {
            println!(
                "  {:?} {} ({} bytes)",
                step.action,
                step.extract.describe(),
                step.extract.download_size.unwrap_or(0)
            );
        }
        if let Some(gap) = planned.plan.gap {
            println!(
                "  stops at a hole: differentials between {} and {} are missing",
                gap.after, gap.next_listed
            );
        }
        if matches!(planned.plan.kind, PlanKind::FullNeeded(_)) {
            code = ExitCode::from(3);
        }
    }
    Ok(code)
}

async fn sync(cli: &Cli, client: &Client) -> anyhow::Result<ExitCode> {
    let crash = CrashPoints::from_env().map_err(BdsError::Config)?;
    let mut sink = sql_sink::Sink::open(&cli.connection_string).await?;
    if let Some(points) = &crash {
        sink.set_observer(Some(points.load_observer()));
    }
    let options = sync_options(cli)?;
    let bars = MultiProgress::new();
    let mut code = ExitCode::SUCCESS;
    for name in datasets(cli)? {
        let bar = bars.add(byte_bar(name));
        let report = sync_data_set(
            client,
            &mut sink,
            name,
            &options,
            Some(events_into(bar.clone(), crash.clone())),
        )
        .await?;
        bar.finish_and_clear();
        let rows: u64 = report.applied.iter().map(|a| a.rows).sum();
        println!(
            "{} -> {}: {}; {} extracts, {rows} rows",
            report.data_set,
            report.table,
            report.plan,
            report.applied.len()
        );
        if let Some(extract) = &report.stopped_before {
            println!(
                "  stopped before {} (temporarily unavailable); run again later",
                extract.describe()
            );
        }
        if let Some(gap) = report.gap {
            println!(
                "  stopped at a hole after {}; the next full extract will close it",
                gap.after
            );
        }
        if matches!(report.plan, PlanKind::FullNeeded(_)) {
            code = ExitCode::from(3);
        }
    }
    Ok(code)
}

fn byte_bar(label: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:40!} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn progress_into(bar: ProgressBar) -> Arc<dyn Fn(Progress) + Send + Sync> {
    Arc::new(move |p: Progress| {
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.bytes);
    })
}

fn events_into(bar: ProgressBar, crash: Option<Arc<CrashPoints>>) -> bds_client::sync::SyncEvents {
    Arc::new(move |event: &SyncEvent| match event {
        SyncEvent::Planned { data_set, plan } => {
            bar.set_message(format!("{data_set}: {} extracts", plan.steps.len()))
        }
        SyncEvent::Downloading { step, bytes, total } => {
            if let Some(points) = &crash {
                points.reached(Point::Download);
            }
            bar.set_length(total.unwrap_or(0));
            bar.set_position(*bytes);
            bar.set_prefix(format!("#{step}"));
        }
        SyncEvent::Loading { step, rows } => {
            bar.set_message(format!("extract {}: {rows} rows loaded", step + 1))
        }
        SyncEvent::Applied { step, rows } => {
            bar.println(format!("  extract {} applied: {rows} rows", step + 1))
        }
        _ => {}
    })
}
