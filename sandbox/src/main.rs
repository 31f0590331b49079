//! `cargo run -p sandbox --release -- [flags]`: runs the fake services as a process.
//!
//! Prints ONE line of JSON on stdout with every service's URLs, credentials and the environment
//! variables clients read, then serves until interrupted (Ctrl-C / SIGTERM). Logs go to stderr
//! (`RUST_LOG=sandbox=debug`).

use std::process::ExitCode;

use clap::Parser;
use sandbox::dap::encode::{Format, Mode};
use sandbox::dap::{DapConfig, RateLimits, TableSpec};
use sandbox::{Sandbox, SandboxConfig};

/// Wire-faithful fake servers of DAP, Brightspace Data Sets, LD batch jobs and Toucan on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Services to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = ["dap", "bds", "ld", "toucan"].map(String::from).to_vec())]
    services: Vec<String>,
    /// Data seed of every service.
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// DAP API port (0 = free port).
    #[arg(long, default_value_t = 0)]
    dap_port: u16,
    /// DAP blob store port (0 = free port).
    #[arg(long, default_value_t = 0)]
    dap_blob_port: u16,
    /// A DAP table as `namespace.table=rows` (repeatable); replaces the default tables.
    #[arg(long = "dap-table", value_parser = parse_table)]
    dap_tables: Vec<TableSpec>,
    /// Rows per DAP snapshot part.
    #[arg(long, default_value_t = 100_000)]
    dap_rows_per_part: u64,
    /// Polls a DAP job answers `waiting`, then `running`: `W,R` or `W R`.
    #[arg(long, value_delimiter = ',', num_args = 1..=2, default_values_t = vec![1u32, 1u32])]
    dap_pacing: Vec<u32>,
    /// Generate DAP snapshot files of every table in these formats (`tsv`, `csv`, `jsonl`;
    /// `tsv:expanded` for expanded mode) before printing the JSON line.
    #[arg(long, value_delimiter = ',')]
    dap_warm: Vec<String>,
    /// Enforce the documented per-endpoint DAP rate limits (5 jobs/min, ...).
    #[arg(long)]
    dap_rate_limits: bool,
    /// DAP client id.
    #[arg(long, default_value = "us-east-1#sandbox-client")]
    dap_client_id: String,
    /// DAP client secret.
    #[arg(long, default_value = "sandbox-secret")]
    dap_client_secret: String,

    /// BDS tenant API port (0 = free port).
    #[arg(long, default_value_t = 0)]
    bds_port: u16,
    /// BDS auth service port (0 = free port).
    #[arg(long, default_value_t = 0)]
    bds_auth_port: u16,
    /// BDS blob storage port (0 = free port).
    #[arg(long, default_value_t = 0)]
    bds_blob_port: u16,
    /// Rows of every BDS data set at generation 0.
    #[arg(long)]
    bds_rows: Option<u64>,

    /// LD port (0 = free port).
    #[arg(long, default_value_t = 0)]
    ld_port: u16,
    /// Toucan port (0 = free port).
    #[arg(long, default_value_t = 0)]
    toucan_port: u16,
}

fn parse_table(text: &str) -> Result<TableSpec, String> {
    let (name, rows) = text
        .split_once('=')
        .ok_or_else(|| format!("expected namespace.table=rows, got `{text}`"))?;
    let (namespace, table) = name
        .split_once('.')
        .ok_or_else(|| format!("expected namespace.table=rows, got `{text}`"))?;
    let rows = rows
        .parse()
        .map_err(|e| format!("row count `{rows}` is not a number: {e}"))?;
    Ok(TableSpec::new(namespace, table, rows))
}

fn parse_warm(spec: &str) -> Result<(Format, Option<Mode>), String> {
    let (format, mode) = spec.split_once(':').unwrap_or((spec, "condensed"));
    let format = match format {
        "tsv" => Format::Tsv,
        "csv" => Format::Csv,
        "jsonl" => Format::Jsonl,
        other => {
            return Err(format!(
                "--dap-warm: unknown format `{other}` (tsv, csv, jsonl)"
            ));
        }
    };
    let mode = match mode {
        "condensed" => Mode::Condensed,
        "expanded" => Mode::Expanded,
        other => {
            return Err(format!(
                "--dap-warm: unknown mode `{other}` (condensed, expanded)"
            ));
        }
    };
    Ok((format, Some(mode)))
}

fn config(args: &Args) -> Result<SandboxConfig, String> {
    let mut config = SandboxConfig::none();
    for service in &args.services {
        match service.as_str() {
            "dap" => {
                let mut dap = DapConfig::default()
                    .with_seed(args.seed)
                    .with_ports(args.dap_port, args.dap_blob_port)
                    .with_rows_per_part(args.dap_rows_per_part);
                if !args.dap_tables.is_empty() {
                    dap = dap.with_tables(args.dap_tables.clone());
                }
                let [waiting, running] = args.dap_pacing[..] else {
                    return Err("--dap-pacing takes two numbers: W,R".to_owned());
                };
                dap = dap.with_pacing(waiting, running);
                if args.dap_rate_limits {
                    dap.rate_limits = RateLimits::documented();
                }
                dap.client_id.clone_from(&args.dap_client_id);
                dap.client_secret.clone_from(&args.dap_client_secret);
                config = config.with_dap(dap);
            }
            "bds" => {
                let mut bds = sandbox::bds::BdsConfig {
                    port: args.bds_port,
                    auth_port: args.bds_auth_port,
                    blob_port: args.bds_blob_port,
                    seed: args.seed,
                    ..Default::default()
                };
                if let Some(rows) = args.bds_rows {
                    bds.rows = rows;
                }
                config = config.with_bds(bds);
            }
            "ld" => {
                config = config.with_ld(sandbox::ld::LdConfig {
                    port: args.ld_port,
                    seed: args.seed,
                    ..Default::default()
                });
            }
            "toucan" => {
                config = config.with_toucan(sandbox::toucan::ToucanConfig {
                    port: args.toucan_port,
                    seed: args.seed,
                    ..Default::default()
                });
            }
            other => {
                return Err(format!(
                    "unknown service `{other}` (known: dap, bds, ld, toucan)"
                ));
            }
        }
    }
    Ok(config)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "sandbox=info".into()),
        )
        .init();
    let args = Args::parse();
    let config = match config(&args) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("sandbox: {message}");
            return ExitCode::from(2);
        }
    };
    let sandbox = match Sandbox::start(config).await {
        Ok(s) => s,
        Err(error) => {
            eprintln!("sandbox: cannot start the services: {error} (is a requested port in use?)");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dap) = &sandbox.dap {
        for spec in &args.dap_warm {
            let (format, mode) = match parse_warm(spec) {
                Ok(v) => v,
                Err(message) => {
                    eprintln!("sandbox: {message}");
                    return ExitCode::from(2);
                }
            };
            if let Err(error) = dap.warm_snapshots(format, mode).await {
                eprintln!("sandbox: generating {spec} snapshots failed: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    // One line, flushed, so a parent process can read it and go.
    println!("{}", sandbox.describe());
    use std::io::Write;
    let _ = std::io::stdout().flush();
    wait_for_signal().await;
    drop(sandbox);
    ExitCode::SUCCESS
}
