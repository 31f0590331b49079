//! Toucan Toco data updates from the command line.
//!
//! ```text
//! cargo run --release --example toucan -- upload my_datasources/ --no-validation
//! cargo run --release --example toucan -- operations --stage staging --wait
//! cargo run --release --example toucan -- preprocess --input-domain referential --wait
//! cargo run --release --example toucan -- populate --release --output-domain kpis --wait
//! ```
//!
//! Credentials come from `TOUCAN_API_URL`, `TOUCAN_SMALL_APP`,
//! `TOUCAN_USERNAME`, `TOUCAN_PASSWORD`, or, with `--sandbox`, from an
//! in-process fake Toucan service.
//!
//! Exit codes: 0 success, 1 any other error, 2 usage, 3 some uploads
//! failed, 4 operation failed, 6 gave up waiting.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use toucan_client::{
    AuthMode, Client, ClientBuilder, DomainSelection, Error, Operation, OperationId,
    OperationsRequest, PartialOperation, Stage, Upload,
};

#[derive(Parser)]
#[command(about = "Upload data sources and run operations on a Toucan Toco small app")]
struct Cli {
    /// Run against an in-process sandbox instead of the TOUCAN_* environment.
    #[arg(long, global = true)]
    sandbox: bool,
    /// Log in with POST /login and use the token instead of HTTP Basic.
    #[arg(long, global = true)]
    login: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload one data source file, or every file of a directory.
    Upload {
        /// A file or a directory.
        path: PathBuf,
        /// Declared data source name (single file only; default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// Skip the server's data source validation (`validation=false`).
        #[arg(long)]
        no_validation: bool,
        /// Send this stage with the upload (default: none, as documented).
        #[arg(long)]
        stage: Option<Stage>,
        /// Files uploaded at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Wait for the upload operations the server reports.
        #[arg(long)]
        wait: bool,
    },
    /// Start operations (default: the full populate-and-release chain).
    Operations {
        /// Operation names, in order (repeatable), e.g. preprocess_data_sources.
        #[arg(long = "op")]
        ops: Vec<String>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        selection: Selection,
    },
    /// Partial preprocess of the selected domains.
    Preprocess {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        selection: Selection,
    },
    /// Partial populate (and optionally release) of the selected domains.
    Populate {
        /// Release after populating.
        #[arg(long)]
        release: bool,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        selection: Selection,
    },
}

#[derive(Args)]
struct Common {
    /// staging or production.
    #[arg(long, default_value = "staging")]
    stage: Stage,
    /// Wait for the operation to finish, showing its state.
    #[arg(long)]
    wait: bool,
}

/// Domains to work on; several lists select the union of their domains.
#[derive(Args)]
struct Selection {
    /// Output domains using this input domain (repeatable).
    #[arg(long = "input-domain")]
    input_domains: Vec<String>,
    /// Output domains with this entry-point function (repeatable).
    #[arg(long = "function")]
    functions: Vec<String>,
    /// This output domain (repeatable).
    #[arg(long = "output-domain")]
    output_domains: Vec<String>,
}

impl Selection {
    fn build(self) -> DomainSelection {
        let mut s = DomainSelection::new();
        for d in self.input_domains {
            s = s.input_domain(d);
        }
        for f in self.functions {
            s = s.function(f);
        }
        for d in self.output_domains {
            s = s.output_domain(d);
        }
        s
    }
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
            eprintln!("error: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(Error::OperationFailed { .. }) => 4,
        Some(Error::Core(client_core::Error::Timeout { .. })) => 6,
        _ => 1,
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mode = if cli.login {
        AuthMode::Login
    } else {
        AuthMode::Basic
    };
    let (builder, _sandbox) = connect(cli.sandbox).await?;
    let client = builder.auth_mode(mode).build()?;
    match cli.command {
        Command::Upload {
            path,
            name,
            no_validation,
            stage,
            concurrency,
            wait: w,
        } => {
            let options = UploadOptions {
                validation: no_validation.then_some(false),
                stage,
                concurrency,
                wait: w,
            };
            return upload(&client, path, name, options).await;
        }
        Command::Operations {
            ops,
            common,
            selection,
        } => {
            let ops: Vec<Operation> = ops.into_iter().map(Operation::from).collect();
            let req = if ops.is_empty() {
                OperationsRequest::populate_and_release()
            } else {
                OperationsRequest::new(ops)
            };
            let id = client
                .start_operations(common.stage, &req.selection(selection.build()))
                .await?;
            println!("operation {id} started on {}", common.stage);
            if common.wait {
                wait(&client, &id).await?;
            }
        }
        Command::Preprocess { common, selection } => {
            partial(&client, PartialOperation::Preprocess, common, selection).await?;
        }
        Command::Populate {
            release,
            common,
            selection,
        } => {
            let op = if release {
                PartialOperation::PopulateAndRelease
            } else {
                PartialOperation::Populate
            };
            partial(&client, op, common, selection).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn partial(
    client: &Client,
    op: PartialOperation,
    common: Common,
    selection: Selection,
) -> anyhow::Result<()> {
    match client.partial(common.stage, op, &selection.build()).await? {
        Some(id) => {
            println!("{op} started on {}: operation {id}", common.stage);
            if common.wait {
                wait(client, &id).await?;
            }
        }
        None => println!(
            "{op} accepted on {} (the server returned no operation id to wait on)",
            common.stage
        ),
    }
    Ok(())
}

struct UploadOptions {
    validation: Option<bool>,
    stage: Option<Stage>,
    concurrency: usize,
    wait: bool,
}

async fn upload(
    client: &Client,
    path: PathBuf,
    name: Option<String>,
    o: UploadOptions,
) -> anyhow::Result<ExitCode> {
    let uploads = if path.is_dir() {
        if name.is_some() {
            anyhow::bail!("--name applies to a single file, not a directory");
        }
        Upload::from_dir(&path)?
    } else {
        let u = Upload::new(&path)?;
        vec![match name {
            Some(n) => u.named(n),
            None => u,
        }]
    };
    let uploads: Vec<Upload> = uploads
        .into_iter()
        .map(|u| {
            let u = match o.validation {
                Some(v) => u.validation(v),
                None => u,
            };
            match o.stage {
                Some(s) => u.stage(s),
                None => u,
            }
        })
        .collect();
    let bar = ProgressBar::new(uploads.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed}] {bar:30} {pos}/{len} files")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let outcomes = client
        .upload_all_with(uploads, o.concurrency, |_| bar.inc(1))
        .await;
    bar.finish_and_clear();
    let mut failed = 0;
    let mut ops = Vec::new();
    for o in &outcomes {
        match &o.result {
            Ok(r) => {
                println!("uploaded {} ({} bytes)", r.name, r.bytes);
                ops.extend(r.operation_id.clone());
            }
            Err(e) => {
                failed += 1;
                println!("FAILED {}: {e}", o.upload.name());
            }
        }
    }
    if o.wait {
        for id in &ops {
            wait(client, id).await?;
        }
    }
    println!("{} uploaded, {failed} failed", outcomes.len() - failed);
    Ok(if failed > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Waits with a spinner showing the operation state.
async fn wait(client: &Client, id: &OperationId) -> Result<(), Error> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let result = client
        .wait_with(id, |s| {
            bar.set_message(format!("operation {id}: {}", s.status))
        })
        .await;
    bar.finish_and_clear();
    result?;
    println!("operation {id} successful");
    Ok(())
}

/// Keeps the in-process sandbox running while the program runs.
type SandboxGuard = sandbox::toucan::ToucanServer;

/// Starts the fake Toucan service and a builder with its credentials.
async fn sandbox_builder() -> anyhow::Result<(ClientBuilder, SandboxGuard)> {
    let server = sandbox::toucan::start(
        Default::default(),
        sandbox::Faults::new(),
        sandbox::Stats::new(),
    )
    .await?;
    let c = server.credentials();
    eprintln!(
        "sandbox: fake Toucan service at {} (small app {})",
        c.api_url, c.small_app
    );
    let builder = Client::builder()
        .api_url(c.api_url)
        .small_app(c.small_app)
        .credentials(c.username, c.password.into());
    Ok((builder, server))
}

/// The client builder, and the sandbox it talks to when `--sandbox` is given.
async fn connect(sandbox: bool) -> anyhow::Result<(ClientBuilder, Option<SandboxGuard>)> {
    if sandbox {
        let (builder, guard) = sandbox_builder().await?;
        return Ok((builder, Some(guard)));
    }
    let builder = Client::builder_from_env().map_err(|e| {
        anyhow::anyhow!(
            "{e}\nset the TOUCAN_* variables or pass --sandbox to use a local fake service"
        )
    })?;
    Ok((builder, None))
}
