//! Throwaway PostgreSQL databases for tests (feature `postgres`).
//!
//! [`TempPostgres::start`] gives you a database nobody else uses:
//!
//! * if `DATABASE_URL` is set (a `postgresql://` URL of a user allowed to
//!   create databases), it creates a uniquely named database there and drops
//!   it again when the [`TempPostgres`] is dropped;
//! * otherwise it looks for the system's PostgreSQL programs (`PG_BIN_DIR`,
//!   then `/usr/lib/postgresql/<version>/bin`, then `pg_config --bindir`,
//!   then `PATH`), runs `initdb` in a temporary directory, starts a server on
//!   a free `127.0.0.1` port with its unix socket in that directory, and stops
//!   it and deletes the directory on drop. `initdb` refuses to run as root,
//!   so when the process runs as root the server runs as the `postgres` user
//!   (through `runuser`).
//!
//! [`TempPostgres::start_or_skip`] is what tests call: when no PostgreSQL can
//! be found it prints why to stderr and returns `None`, so the test passes
//! as skipped — unless `REQUIRE_POSTGRES=1`, in which case it panics.
//!
//! The private server runs with `fsync=off` (it is thrown away) and is
//! stopped with `pg_ctl stop -m immediate` on drop, also when the test
//! panics; only a killed test process can leave one behind.
//!
//! ```no_run
//! # async fn demo() {
//! let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await else { return };
//! let sink = sql_sink::Sink::open(pg.url()).await.unwrap();
//! let other = pg.fresh_database().await.unwrap(); // another empty database
//! # }
//! ```

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::process::Command;
use tokio_postgres::NoTls;

/// Why a throwaway PostgreSQL could not be provided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestingError {
    /// No usable PostgreSQL installation (the reason says what is missing).
    #[error("no PostgreSQL available: {0}")]
    Unavailable(String),
    /// A PostgreSQL program failed.
    #[error("`{program}` failed ({status}): {output}")]
    Command {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// The end of its output or log.
        output: String,
    },
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the server failed.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestingError {
    let context = context.into();
    move |source| TestingError::Io { context, source }
}

/// A PostgreSQL database that exists for the lifetime of this value.
#[derive(Debug)]
pub struct TempPostgres {
    /// URL of a database with the right to create databases.
    admin_url: String,
    /// URL of this instance's own database.
    url: String,
    databases: Mutex<Vec<String>>,
    counter: AtomicUsize,
    server: Option<LocalServer>,
}

#[derive(Debug)]
struct LocalServer {
    dir: tempfile::TempDir,
    pg_ctl: PathBuf,
    as_postgres: bool,
}

impl TempPostgres {
    /// Provide a database: through `DATABASE_URL` if set, else a private
    /// server (see the module docs).
    pub async fn start() -> Result<TempPostgres, TestingError> {
        let (admin_url, server) = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => (url, None),
            _ => {
                let (url, server) = start_local().await?;
                (url, Some(server))
            }
        };
        let mut pg = TempPostgres {
            url: String::new(),
            admin_url,
            databases: Mutex::new(Vec::new()),
            counter: AtomicUsize::new(0),
            server,
        };
        pg.url = pg.fresh_database().await?;
        Ok(pg)
    }

    /// [`start`](Self::start), or `None` after printing the reason to stderr
    /// when PostgreSQL is unavailable. Panics instead when the environment
    /// sets `REQUIRE_POSTGRES=1`, or when PostgreSQL exists but fails.
    pub async fn start_or_skip() -> Option<TempPostgres> {
        let required = std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        match Self::start().await {
            Ok(pg) => Some(pg),
            Err(TestingError::Unavailable(reason)) if !required => {
                // Written to the real stderr, not through `eprintln!`, which the
                // test harness captures and hides for passing tests: a skip must
                // be visible in a plain `cargo test` run.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: PostgreSQL tests need PostgreSQL: {reason} (set DATABASE_URL or install postgresql)"
                );
                None
            }
            Err(e) => panic!("PostgreSQL is required for this test but could not be started: {e}"),
        }
    }

    /// URL of this instance's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Create another empty database on the same server and return its URL;
    /// it is dropped with this value.
    pub async fn fresh_database(&self) -> Result<String, TestingError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "sql_sink_test_{}_{}_{}",
            std::process::id(),
            nanos,
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) = tokio_postgres::connect(&self.admin_url, NoTls)
            .await
            .map_err(|e| TestingError::Postgres(format!("connecting as administrator: {e}")))?;
        let conn = tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| {
                TestingError::Postgres(format!("creating database {name}: {}", db_message(&e)))
            })?;
        drop(client);
        let _ = conn.await;
        if let Ok(mut dbs) = self.databases.lock() {
            dbs.push(name.clone());
        }
        Ok(with_database(&self.admin_url, &name))
    }
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// `admin` with its database name replaced by `db`.
fn with_database(admin: &str, db: &str) -> String {
    let (scheme, rest) = admin.split_once("://").unwrap_or(("postgresql", admin));
    let after_userinfo = rest.rfind('@').map(|i| i + 1).unwrap_or(0);
    let (authority, tail) = match rest[after_userinfo..].find('/') {
        Some(i) => rest.split_at(after_userinfo + i),
        None => match rest[after_userinfo..].find('?') {
            Some(i) => rest.split_at(after_userinfo + i),
            None => (rest, ""),
        },
    };
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{scheme}://{authority}/{db}{query}")
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            // The whole cluster goes away; no need to drop databases.
            let mut cmd = server.command(&server.pg_ctl);
            cmd.arg("-D")
                .arg(server.dir.path().join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
            return;
        }
        let names = self.databases.lock().map(|d| d.clone()).unwrap_or_default();
        let admin = self.admin_url.clone();
        // Drop runs outside async context; use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok((client, connection)) = tokio_postgres::connect(&admin, NoTls).await else {
                    return;
                };
                tokio::spawn(connection);
                for name in names {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

impl LocalServer {
    /// A command for a PostgreSQL program, run as `postgres` when we are root.
    fn command(&self, program: &Path) -> std::process::Command {
        if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        }
    }
}

fn find_bin_dir() -> Result<PathBuf, TestingError> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(TestingError::Unavailable(format!(
                "PG_BIN_DIR={} has no initdb and pg_ctl",
                dir.display()
            )))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_tools(&dir) {
            return Ok(dir);
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| has_tools(d))
        .ok_or_else(|| {
            TestingError::Unavailable(
                "no initdb/pg_ctl in PG_BIN_DIR, /usr/lib/postgresql/*/bin, pg_config --bindir or PATH".into(),
            )
        })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

async fn run(
    cmd: std::process::Command,
    program: &str,
    log: Option<&Path>,
) -> Result<(), TestingError> {
    let out = Command::from(cmd)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io(format!("running {program}")))?;
    if out.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    if let Some(log) = log
        && let Ok(l) = std::fs::read_to_string(log)
    {
        text.push_str(&l);
    }
    let tail: String = text
        .chars()
        .rev()
        .take(1500)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(TestingError::Command {
        program: program.into(),
        status: out.status.to_string(),
        output: tail,
    })
}

async fn start_local() -> Result<(String, LocalServer), TestingError> {
    let bin = find_bin_dir()?;
    let as_postgres = running_as_root();
    if as_postgres {
        let known = std::process::Command::new("id")
            .args(["-u", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !known {
            return Err(TestingError::Unavailable(
                "running as root, and there is no `postgres` user to run initdb as".into(),
            ));
        }
        let has_runuser = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .any(|d| d.join("runuser").is_file());
        if !has_runuser {
            return Err(TestingError::Unavailable(
                "running as root, and `runuser` (util-linux) is missing to run PostgreSQL as `postgres`".into(),
            ));
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("sql-sink-pg-")
        .tempdir()
        .map_err(io("creating a temporary directory"))?;
    let server = LocalServer {
        dir,
        pg_ctl: bin.join("pg_ctl"),
        as_postgres,
    };
    let root = server.dir.path().to_path_buf();
    if as_postgres {
        let mut chown = std::process::Command::new("chown");
        chown.args(["-R", "postgres:postgres"]).arg(&root);
        run(chown, "chown", None).await?;
    }
    let data = root.join("data");
    let mut initdb = server.command(&bin.join("initdb"));
    initdb.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run(initdb, "initdb", None).await?;
    let log = root.join("server.log");
    let mut last = None;
    for _ in 0..3 {
        let port = free_port()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            root.display()
        );
        let mut start = server.command(&server.pg_ctl);
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &options, "start"]);
        match run(start, "pg_ctl start", Some(&log)).await {
            Ok(()) => {
                return Ok((
                    format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
                    server,
                ));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| TestingError::Unavailable("pg_ctl start failed".into())))
}

fn free_port() -> Result<u16, TestingError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    let port = listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port();
    Ok(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgresql://u:p@h:5432/postgres?sslmode=disable", "x"),
            "postgresql://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_database("postgresql://u:a/b@h/db", "x"),
            "postgresql://u:a/b@h/x"
        );
    }
}
