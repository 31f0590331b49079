//! LiquidAnalytics batch jobs from the command line.
//!
//! ```text
//! cargo run --release --example ldbatch -- import --item-type Account --format json --file accounts.json --wait
//! cargo run --release --example ldbatch -- export --item-type Account --format csv --sql "select * from Account" --wait --out results/
//! cargo run --release --example ldbatch -- status <job-id>
//! cargo run --release --example ldbatch -- cancel <job-id> --wait
//! ```
//!
//! Credentials come from `LD_BASE_URL`, `LD_CLIENT_ID`, `LD_CLIENT_SECRET`,
//! `LD_USERNAME`, `LD_PASSWORD`, `LD_COMMUNITY`, or, with `--sandbox`, from an
//! in-process fake LD service.
//!
//! Exit codes: 0 success, 1 any other error, 2 usage, 3 job rejected,
//! 4 job failed, 5 job canceled, 6 gave up waiting.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use ldbatch_client::{
    Client, ClientBuilder, ContentType, Error, ExportRequest, ImportRequest, Job,
};

#[derive(Parser)]
#[command(about = "Run LiquidAnalytics batch import/export jobs")]
struct Cli {
    /// Run against an in-process sandbox instead of the LD_* environment.
    #[arg(long, global = true)]
    sandbox: bool,
    /// Treat a status change the LD table does not allow as an error.
    #[arg(long, global = true)]
    strict: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload a JSON or CSV file as a batch import job.
    Import(ImportArgs),
    /// Start a batch export job.
    Export(ExportArgs),
    /// Show a job's status.
    Status {
        /// The job id.
        job_id: String,
    },
    /// Cancel a job.
    Cancel {
        /// The job id.
        job_id: String,
        /// Wait until the job has stopped.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Csv,
}

impl From<Format> for ContentType {
    fn from(f: Format) -> Self {
        match f {
            Format::Json => ContentType::Json,
            Format::Csv => ContentType::Csv,
        }
    }
}

#[derive(Args)]
struct ImportArgs {
    /// LD item type, e.g. Account.
    #[arg(long)]
    item_type: String,
    /// File format.
    #[arg(long, value_enum)]
    format: Format,
    /// The data file (streamed, never loaded whole).
    #[arg(long)]
    file: PathBuf,
    /// JSON mapping template (for CSV files).
    #[arg(long)]
    template: Option<PathBuf>,
    /// Job name.
    #[arg(long)]
    job_name: Option<String>,
    /// Merge with existing data instead of overriding it.
    #[arg(long)]
    merge: bool,
    /// The CSV file has a header row.
    #[arg(long)]
    header_row: bool,
    /// E-mail notified of the job's status.
    #[arg(long)]
    email: Option<String>,
    /// Wait for the job to finish, showing progress.
    #[arg(long)]
    wait: bool,
}

#[derive(Args)]
struct ExportArgs {
    /// LD item type, e.g. Account.
    #[arg(long)]
    item_type: String,
    /// Output format.
    #[arg(long, value_enum)]
    format: Format,
    /// SQL query selecting the items (wins over --filter).
    #[arg(long)]
    sql: Option<String>,
    /// Filter `field=value` (repeatable).
    #[arg(long = "filter", value_parser = parse_filter)]
    filters: Vec<(String, String)>,
    /// Velocity template file converting items to CSV.
    #[arg(long)]
    template: Option<PathBuf>,
    /// Put a header row in a CSV export.
    #[arg(long)]
    row_header: bool,
    /// Job name.
    #[arg(long)]
    job_name: Option<String>,
    /// E-mail notified of the job's status.
    #[arg(long)]
    email: Option<String>,
    /// Wait for the job to finish, showing progress.
    #[arg(long)]
    wait: bool,
    /// Download the results into this directory (implies --wait).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_filter(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("filter {s:?} is not field=value"))
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(Error::Rejected { .. }) => 3,
        Some(Error::Failed { .. }) => 4,
        Some(Error::Canceled { .. }) => 5,
        Some(Error::Core(client_core::Error::Timeout { .. })) => 6,
        _ => 1,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Keep the sandbox alive for the whole run.
    let (client, _sandbox) = connect(cli.sandbox, cli.strict).await?;
    match cli.command {
        Command::Import(a) => {
            let mut req = ImportRequest::new(&a.item_type, a.format.into(), a.file.as_path())
                .merge(a.merge)
                .header_row(a.header_row);
            if let Some(t) = a.template {
                req = req.template(t);
            }
            if let Some(n) = a.job_name {
                req = req.job_name(n);
            }
            if let Some(e) = a.email {
                req = req.notification_email(e);
            }
            let job = client.import(&req).await?;
            print_job(&job);
            if a.wait {
                wait(&client, &job).await?;
            }
        }
        Command::Export(a) => {
            let mut req =
                ExportRequest::new(&a.item_type, a.format.into()).row_header(a.row_header);
            if let Some(q) = a.sql {
                req = req.sql_query(q);
            }
            for (k, v) in a.filters {
                req = req.filter(k, v);
            }
            if let Some(t) = a.template {
                req = req.template(std::fs::read_to_string(&t)?);
            }
            if let Some(n) = a.job_name {
                req = req.job_name(n);
            }
            if let Some(e) = a.email {
                req = req.notification_email(e);
            }
            let job = client.export(&req).await?;
            print_job(&job);
            if a.wait || a.out.is_some() {
                let done = wait(&client, &job).await?;
                if let Some(dir) = a.out {
                    for path in client.download_results(&done, &dir).await? {
                        println!("downloaded {}", path.display());
                    }
                }
            }
        }
        Command::Status { job_id } => print_job(&client.status(&job_id).await?),
        Command::Cancel { job_id, wait: w } => {
            let job = client.cancel(&job_id).await?;
            print_job(&job);
            if w {
                wait(&client, &job).await?;
            }
        }
    }
    Ok(())
}

fn print_job(job: &Job) {
    let reason = job
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    println!("job {}: {}{reason}", job.job_id, job.status);
}

/// Waits with a spinner showing the status and record count.
async fn wait(client: &Client, job: &Job) -> Result<Job, Error> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let result = client
        .wait_with(&job.job_id, |j| {
            let records = j
                .records_processed
                .map(|n| format!(", {n} records"))
                .unwrap_or_default();
            bar.set_message(format!("{}: {}{records}", j.job_id, j.status));
        })
        .await;
    bar.finish_and_clear();
    let done = result?;
    println!(
        "job {} completed: {} records in {:?}",
        done.job_id,
        done.records_processed.unwrap_or(0),
        done.run_time.unwrap_or_default()
    );
    Ok(done)
}

/// The client, and the sandbox it talks to when `--sandbox` is given.
async fn connect(sandbox: bool, strict: bool) -> anyhow::Result<(Client, Option<SandboxGuard>)> {
    if sandbox {
        let (builder, guard) = sandbox_builder().await?;
        return Ok((builder.strict_transitions(strict).build()?, Some(guard)));
    }
    let builder = Client::builder_from_env().map_err(|e| {
        anyhow::anyhow!("{e}\nset the LD_* variables or pass --sandbox to use a local fake service")
    })?;
    Ok((builder.strict_transitions(strict).build()?, None))
}

/// Keeps the in-process sandbox running while the program runs.
type SandboxGuard = sandbox::ld::LdServer;

/// Starts the fake LD service and a builder with its credentials.
async fn sandbox_builder() -> anyhow::Result<(ClientBuilder, SandboxGuard)> {
    let server = sandbox::ld::start(
        Default::default(),
        sandbox::Faults::new(),
        sandbox::Stats::new(),
    )
    .await?;
    let c = server.credentials();
    eprintln!("sandbox: fake LD service at {}", c.base_url);
    let builder = Client::builder()
        .base_url(c.base_url)
        .client(c.client_id, c.client_secret.into())
        .user(c.username, c.password.into())
        .community(c.community);
    Ok((builder, server))
}
