//! The machinery of `tests/crash_consistency.rs`: building and running the
//! programs, crash points, databases, table states and the result matrix.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sql_sink::{Sink, TableName, Value, Watermark};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// How long a program may take to reach its crash point or to finish: far
/// more than it needs, so only a hang fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// How long building the programs may take (a cold debug build on a busy
/// two-core machine).
const BUILD_PATIENCE: Duration = Duration::from_secs(1_200);

/// A crash point, as `BULKDATA_CRASH_POINT` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    Download,
    MidLoad,
    BeforeCommit,
    AfterCommit,
    Evolve,
}

impl Point {
    pub const ALL: [Point; 5] = [
        Point::Download,
        Point::MidLoad,
        Point::BeforeCommit,
        Point::AfterCommit,
        Point::Evolve,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Point::Download => "download",
            Point::MidLoad => "mid-load",
            Point::BeforeCommit => "before-commit",
            Point::AfterCommit => "after-commit",
            Point::Evolve => "evolve",
        }
    }

    fn marker(self) -> String {
        format!("crash point reached: {}", self.name())
    }
}

/// The built `dap` and `bds` programs.
pub struct Programs {
    pub dap: PathBuf,
    pub bds: PathBuf,
}

impl Programs {
    /// Builds the examples (all features, so `crash-points` is on) into this
    /// test's target directory and profile, and returns the paths of `dap`
    /// and `bds`.
    pub async fn build() -> Programs {
        let exe = std::env::current_exe().expect("the test knows its own path");
        // <target>/<profile>/deps/<this test>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from <target>/<profile>/deps");
        let target_dir = profile_dir
            .parent()
            .expect("the profile directory is inside the target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        // The same selection as CI's `cargo test --workspace --all-features`,
        // which has then already built every example: this build is a no-op
        // there. Asking for just the two examples with just the features this
        // test needs would unify features differently and rebuild much of the
        // workspace (minutes on two cores).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = Command::new(&cargo);
        command
            .args(["build", "--workspace", "--all-features", "--examples"])
            .arg("--manifest-path")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match profile {
            "debug" => {}
            "release" => {
                command.arg("--release");
            }
            other => {
                command.args(["--profile", other]);
            }
        }
        let output = tokio::time::timeout(BUILD_PATIENCE, command.output())
            .await
            .unwrap_or_else(|_| panic!("building the examples took over {BUILD_PATIENCE:?}"))
            .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
        assert!(
            output.status.success(),
            "`cargo build --workspace --all-features --examples` failed:\n{}",
            tail(&String::from_utf8_lossy(&output.stderr), 30)
        );
        let examples = profile_dir.join("examples");
        let programs = Programs {
            dap: examples.join(format!("dap{}", std::env::consts::EXE_SUFFIX)),
            bds: examples.join(format!("bds{}", std::env::consts::EXE_SUFFIX)),
        };
        for path in [&programs.dap, &programs.bds] {
            assert!(
                path.is_file(),
                "no program at {} after building it",
                path.display()
            );
        }
        programs
    }
}

/// A command's arguments for a database URL.
type ArgsFor<'a> = Box<dyn Fn(&str) -> Vec<String> + Send + Sync + 'a>;

/// One command of a scenario: a program, its environment, and its
/// arguments for a database URL.
pub struct Step<'a> {
    program: &'a Path,
    env: &'a [(String, String)],
    args: ArgsFor<'a>,
}

impl<'a> Step<'a> {
    pub fn new(
        program: &'a Path,
        env: &'a [(String, String)],
        args: impl Fn(&str) -> Vec<String> + Send + Sync + 'a,
    ) -> Self {
        Step {
            program,
            env,
            args: Box::new(args),
        }
    }

    fn command(&self, url: &str) -> Command {
        let mut command = Command::new(self.program);
        command
            .args((self.args)(url))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("BULKDATA_CRASH_POINT")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    fn describe(&self) -> String {
        let name = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let args = (self.args)("<db>");
        format!("{name} {}", args.join(" "))
    }

    /// Runs the command to its end; `Err` unless it succeeded.
    pub async fn run(&self, url: &str) -> Result<(), String> {
        let child = self
            .command(url)
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.describe()))?;
        let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
            .await
            .map_err(|_| format!("`{}` did not finish within {PATIENCE:?}", self.describe()))?
            .map_err(|e| format!("waiting for `{}`: {e}", self.describe()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` failed ({}):\n{}\n{}",
                self.describe(),
                output.status,
                tail(&String::from_utf8_lossy(&output.stdout), 10),
                tail(&String::from_utf8_lossy(&output.stderr), 15)
            ))
        }
    }

    /// Runs the command with `point` armed, waits for the marker line on
    /// stderr and kills the process (SIGKILL). `Err` if the process ends or
    /// hangs without reaching the point.
    pub async fn crash_at(&self, point: Point, url: &str) -> Result<(), String> {
        let mut child = self
            .command(url)
            .env("BULKDATA_CRASH_POINT", point.name())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", self.describe()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or("the child's stderr is not piped")?;
        let marker = point.marker();
        let mut seen = Vec::new();
        let reached = tokio::time::timeout(PATIENCE, async {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Only the end is compared: the marker is written whole,
                // but another thread's unfinished output could precede it.
                if line.trim_end().ends_with(&marker) {
                    return true;
                }
                seen.push(line);
            }
            false
        })
        .await;
        // SIGKILL on Unix: no destructor, no rollback, no flush runs.
        let _ = child.start_kill();
        let status = child.wait().await;
        match reached {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!(
                "`{}` never reached crash point `{}`: it ended ({}) first. Its stderr:\n{}",
                self.describe(),
                point.name(),
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                tail(&seen.join("\n"), 15)
            )),
            Err(_) => Err(format!(
                "`{}` did not reach crash point `{}` within {PATIENCE:?}. Its stderr:\n{}",
                self.describe(),
                point.name(),
                tail(&seen.join("\n"), 15)
            )),
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where the databases of a run live.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres(sql_sink::testing::TempPostgres),
}

impl Backend {
    /// SQLite always; PostgreSQL when one can be started (else a printed skip).
    pub async fn available() -> Vec<Backend> {
        let sqlite = Backend::Sqlite(tempfile::tempdir().expect("a temporary directory"));
        #[cfg(feature = "postgres")]
        if let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await {
            return vec![sqlite, Backend::Postgres(pg)];
        }
        #[cfg(not(feature = "postgres"))]
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: the PostgreSQL runs of crash_consistency need the `postgres` feature"
        );
        vec![sqlite]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The URL of a new, empty database.
    pub async fn database(&self, name: &str) -> String {
        match self {
            Backend::Sqlite(dir) => {
                format!(
                    "sqlite://{}",
                    dir.path().join(format!("{name}.db")).display()
                )
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pg) => pg
                .fresh_database()
                .await
                .unwrap_or_else(|e| panic!("a fresh PostgreSQL database: {e}")),
        }
    }
}

/// What a table holds: its columns, every row, and its watermark (without
/// the DAP job id, which differs from run to run of the same data).
#[derive(Debug, Clone, PartialEq)]
pub struct TableState {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub watermark: Option<Watermark>,
}

impl TableState {
    /// A short description for failure messages.
    pub fn describe(state: &Option<TableState>) -> String {
        match state {
            None => "no table".into(),
            Some(s) => format!(
                "{} rows, columns {:?}, watermark {:?}",
                s.rows.len(),
                s.columns,
                s.watermark.as_ref().map(|w| &w.value)
            ),
        }
    }
}

/// The table's state in the database at `url`; `None` if the sink does not
/// manage it (no committed load created it).
pub async fn read_state(url: &str, table: &TableName) -> Option<TableState> {
    let sink = Sink::open(url)
        .await
        .unwrap_or_else(|e| panic!("opening the database: {e}"));
    let status = sink
        .table_status(table)
        .await
        .unwrap_or_else(|e| panic!("reading the state of {table}: {e}"))?;
    let rows = sink
        .read_rows(table)
        .await
        .unwrap_or_else(|e| panic!("reading the rows of {table}: {e}"));
    let watermark = status.watermark.map(|mut w| {
        if let Some(serde_json::Value::Object(details)) = &mut w.details {
            details.remove("job_id");
        }
        w
    });
    Some(TableState {
        columns: status
            .definition
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect(),
        rows,
        watermark,
    })
}

/// One crash case's result.
#[derive(Debug)]
pub struct Outcome {
    pub program: &'static str,
    pub backend: &'static str,
    pub point: Point,
    /// `None` when the kill left the expected state and the re-run converged.
    pub failure: Option<String>,
}

/// Prints the point × program × backend matrix on the real stderr (past
/// the test harness's capture, so it shows in every run).
pub fn print_matrix(outcomes: &[Outcome], build: Duration, runs: Duration) {
    let mut out = format!(
        "\ncrash consistency: SIGKILL at each point, then a re-run \
         (building the programs took {:.1} s, the runs {:.1} s)\n\
         (old/new = what the database held after the kill; ok = the re-run converged)\n",
        build.as_secs_f64(),
        runs.as_secs_f64()
    );
    out.push_str(&format!("{:<16} {:<9}", "program", "backend"));
    for point in Point::ALL {
        out.push_str(&format!(" {:<14}", point.name()));
    }
    out.push('\n');
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for o in outcomes {
        if !rows.contains(&(o.program, o.backend)) {
            rows.push((o.program, o.backend));
        }
    }
    for (program, backend) in rows {
        out.push_str(&format!("{program:<16} {backend:<9}"));
        for point in Point::ALL {
            let cell = outcomes
                .iter()
                .find(|o| o.program == program && o.backend == backend && o.point == point)
                .map_or("-", |o| match (&o.failure, point) {
                    (Some(_), _) => "FAILED",
                    (None, Point::AfterCommit) => "new, ok",
                    (None, _) => "old, ok",
                });
            out.push_str(&format!(" {cell:<14}"));
        }
        out.push('\n');
    }
    let _ = std::io::stderr().write_all(out.as_bytes());
}
