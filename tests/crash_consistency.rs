//! Crash consistency of the real programs: `dap syncdb` and `bds sync` are
//! killed with SIGKILL at five points each, and every re-run converges to
//! the content of an uninterrupted run.
//!
//! The `dap` and `bds` examples, built with the `crash-points` feature, stop
//! at the point named by `BULKDATA_CRASH_POINT` (see
//! `examples/support/crash_points.rs`) after printing a marker line on
//! stderr. This test starts the fake services in-process, runs the built
//! programs as child processes against them, waits for the marker, kills
//! the child, and checks:
//!
//! 1. right after the kill, the database holds the content and watermark
//!    of before the run or of after it — never a mix (`after-commit`: the
//!    new one; every other point: the old one);
//! 2. a re-run without the crash point ends with exactly the rows, columns
//!    and watermark of an uninterrupted run into another database.
//!
//! Scenarios, each on SQLite and (when one can be started) PostgreSQL:
//! `dap syncdb` of a mutation round that also adds a column (so `evolve` is
//! a real schema change); `bds sync` of a first sync (a full extract
//! replaces the table) and of a daily sync whose differential adds a
//! column. The test builds the programs first (`cargo build --workspace
//! --all-features --examples`, a no-op after CI's `cargo test --workspace
//! --all-features`), so it also runs after a plain
//! `cargo test --all-features --test crash_consistency`.

mod crash_support;

use crash_support::{Backend, Outcome, Point, Programs, Step, TableState, read_state};
use serde_json::json;
use sql_sink::TableName;

/// Rows of the DAP table and of the BDS data set: a few thousand, loaded in
/// batches of [`BATCH_ROWS`], so `mid-load` is a real mid-point.
const DAP_ROWS: u64 = 2_000;
const BDS_ROWS: u64 = 2_000;
const BATCH_ROWS: usize = 250;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_runs_leave_old_or_new_content_and_reruns_converge() {
    let started = std::time::Instant::now();
    let programs = Programs::build().await;
    let built = started.elapsed();
    let backends = Backend::available().await;
    let mut matrix = Vec::new();
    for backend in &backends {
        let (dap, bds) = tokio::join!(dap_syncdb(&programs, backend), bds_sync(&programs, backend));
        matrix.extend(dap);
        matrix.extend(bds);
    }
    crash_support::print_matrix(&matrix, built, started.elapsed() - built);
    let failures: Vec<&Outcome> = matrix.iter().filter(|o| o.failure.is_some()).collect();
    assert!(
        failures.is_empty(),
        "{} crash case(s) failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|o| format!(
                "  {} / {} / {}: {}",
                o.program,
                o.backend,
                o.point.name(),
                o.failure.as_deref().unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The databases of one scenario: the reference (never interrupted) and
/// one per crash point.
struct Databases {
    reference: String,
    per_point: Vec<(Point, String)>,
}

impl Databases {
    async fn new(backend: &Backend, prefix: &str) -> Databases {
        let reference = backend.database(&format!("{prefix}_reference")).await;
        let mut per_point = Vec::new();
        for point in Point::ALL {
            let url = backend
                .database(&format!("{prefix}_{}", point.name().replace('-', "_")))
                .await;
            per_point.push((point, url));
        }
        Databases {
            reference,
            per_point,
        }
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.reference).chain(self.per_point.iter().map(|(_, url)| url))
    }
}

/// Runs `step` with a crash at every point (one database each), checking
/// the state after the kill and after the re-run against `before` and the
/// reference's `after`.
async fn crash_every_point(
    program: &'static str,
    backend: &Backend,
    dbs: &Databases,
    table: &TableName,
    step: &Step<'_>,
    before: &Option<TableState>,
    after: &Option<TableState>,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for (point, url) in &dbs.per_point {
        let failure = crash_once(step, *point, url, table, before, after)
            .await
            .err();
        outcomes.push(Outcome {
            program,
            backend: backend.name(),
            point: *point,
            failure,
        });
    }
    outcomes
}

/// One crash case; `Err` says what went wrong.
async fn crash_once(
    step: &Step<'_>,
    point: Point,
    url: &str,
    table: &TableName,
    before: &Option<TableState>,
    after: &Option<TableState>,
) -> Result<(), String> {
    step.crash_at(point, url).await?;
    let killed = read_state(url, table).await;
    let (expected, which) = if point == Point::AfterCommit {
        (after, "new")
    } else {
        (before, "old")
    };
    if &killed != expected {
        let mix = if &killed == after || &killed == before {
            "the other complete state"
        } else {
            "a MIX of old and new"
        };
        return Err(format!(
            "after the kill the database should hold the {which} content and watermark, \
             but holds {mix}: {}",
            TableState::describe(&killed)
        ));
    }
    step.run(url).await?;
    let rerun = read_state(url, table).await;
    if &rerun != after {
        return Err(format!(
            "the re-run did not converge: expected {}, got {}",
            TableState::describe(after),
            TableState::describe(&rerun)
        ));
    }
    Ok(())
}

/// `dap initdb` into every database, then a mutation round that adds a
/// column; `dap syncdb` killed at every point, then re-run.
async fn dap_syncdb(programs: &Programs, backend: &Backend) -> Vec<Outcome> {
    let config = sandbox::dap::DapConfig::default()
        .with_tables(vec![sandbox::dap::TableSpec::new(
            "canvas", "users", DAP_ROWS,
        )])
        .with_rows_per_part(700)
        .with_pacing(0, 0);
    let server = sandbox::dap::start(config, sandbox::Faults::new(), sandbox::Stats::new())
        .await
        .expect("the DAP sandbox starts");
    let creds = server.credentials();
    let env = vec![
        ("DAP_API_URL".to_string(), server.base_url().to_string()),
        ("DAP_CLIENT_ID".to_string(), creds.client_id.clone()),
        ("DAP_CLIENT_SECRET".to_string(), creds.client_secret.clone()),
    ];
    let batch = BATCH_ROWS.to_string();
    let dap = |command: &'static str| {
        let batch = batch.clone();
        move |url: &str| {
            vec![
                "--non-interactive".to_string(),
                "--loglevel".into(),
                "warning".into(),
                command.into(),
                "--namespace".into(),
                "canvas".into(),
                "--table".into(),
                "users".into(),
                "--batch-rows".into(),
                batch.clone(),
                "--connection-string".into(),
                url.to_string(),
            ]
        }
    };
    let initdb = Step::new(&programs.dap, &env, dap("initdb"));
    let syncdb = Step::new(&programs.dap, &env, dap("syncdb"));
    let table = TableName::new("canvas", "users");
    let dbs = Databases::new(backend, "dap").await;
    for url in dbs.all() {
        if let Err(e) = initdb.run(url).await {
            return failed_everywhere("dap syncdb", backend, &format!("initdb: {e}"));
        }
    }
    let before = read_state(&dbs.reference, &table).await;

    let control = client_core::http::HttpClient::builder()
        .base_url(server.base_url())
        .build()
        .expect("a control client");
    let post = |path: &'static str, body: serde_json::Value| {
        let control = control.clone();
        async move {
            control
                .send_json::<serde_json::Value>(client_core::http::Request::post(path).json(&body))
                .await
                .unwrap_or_else(|e| panic!("sandbox control {path}: {e}"))
        }
    };
    post(
        "/__sandbox/dap/tables/canvas/users/columns",
        json!({"name": "nickname"}),
    )
    .await;
    post(
        "/__sandbox/dap/tables/canvas/users/mutate",
        json!({"inserts": 800, "updates": 600, "deletes": 150}),
    )
    .await;

    if let Err(e) = syncdb.run(&dbs.reference).await {
        return failed_everywhere("dap syncdb", backend, &format!("reference syncdb: {e}"));
    }
    let after = read_state(&dbs.reference, &table).await;
    assert_ne!(before, after, "the mutation round changes the table");
    assert!(
        after
            .as_ref()
            .is_some_and(|s| s.columns.iter().any(|c| c == "nickname")),
        "the reference run added the column"
    );
    crash_every_point(
        "dap syncdb",
        backend,
        &dbs,
        &table,
        &syncdb,
        &before,
        &after,
    )
    .await
}

/// `bds sync` of a first sync (a full extract) and of a daily sync (a
/// differential adding a column), each killed at every point and re-run.
async fn bds_sync(programs: &Programs, backend: &Backend) -> Vec<Outcome> {
    let mut config = sandbox::bds::BdsConfig {
        rows: 10,
        initial_days: 2,
        inserts_per_day: Some(300),
        updates_per_mille: 300,
        append_column_from_day: Some(3),
        ..Default::default()
    };
    config.rows_per_data_set.insert("Users".into(), BDS_ROWS);
    let server = sandbox::bds::start(config, sandbox::Faults::new(), sandbox::Stats::new())
        .await
        .expect("the BDS sandbox starts");
    // A full of today on top of two days of differentials: the first sync
    // is that one full (one transaction), and the differentials listed
    // before it prove the daily cadence the next sync relies on.
    server.publish_full();
    let creds = server.credentials();
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let env = vec![
        ("D2L_BASE_URL".to_string(), creds.base_url.clone()),
        ("D2L_AUTH_URL".to_string(), creds.auth_url.clone()),
        ("D2L_CLIENT_ID".to_string(), creds.client_id.clone()),
        ("D2L_CLIENT_SECRET".to_string(), creds.client_secret.clone()),
        ("D2L_REFRESH_TOKEN".to_string(), creds.refresh_token.clone()),
        (
            "D2L_TOKEN_STORE".to_string(),
            scratch.path().join("token").display().to_string(),
        ),
    ];
    let batch = BATCH_ROWS.to_string();
    let sync = Step::new(&programs.bds, &env, move |url: &str| {
        vec![
            "sync".to_string(),
            "--dataset".into(),
            "Users".into(),
            "--batch-rows".into(),
            batch.clone(),
            "--connection-string".into(),
            url.to_string(),
        ]
    });
    let table = TableName::new("bds", "users");
    let dbs = Databases::new(backend, "bds").await;

    // First sync: no table before, the full's content after.
    if let Err(e) = sync.run(&dbs.reference).await {
        return failed_everywhere("bds first sync", backend, &format!("reference sync: {e}"));
    }
    let first = read_state(&dbs.reference, &table).await;
    assert!(first.is_some(), "the first sync creates the table");
    let mut outcomes = crash_every_point(
        "bds first sync",
        backend,
        &dbs,
        &table,
        &sync,
        &None,
        &first,
    )
    .await;

    // Daily sync: one differential with a new column.
    server.advance_days(1);
    if let Err(e) = sync.run(&dbs.reference).await {
        outcomes.extend(failed_everywhere(
            "bds daily sync",
            backend,
            &format!("reference sync: {e}"),
        ));
        return outcomes;
    }
    let daily = read_state(&dbs.reference, &table).await;
    assert!(
        daily
            .as_ref()
            .is_some_and(|s| s.columns.iter().any(|c| c == "ExternalId")),
        "the daily differential added a column"
    );
    assert_ne!(first, daily, "the daily differential changes the table");
    outcomes.extend(
        crash_every_point(
            "bds daily sync",
            backend,
            &dbs,
            &table,
            &sync,
            &first,
            &daily,
        )
        .await,
    );
    outcomes
}

fn failed_everywhere(program: &'static str, backend: &Backend, why: &str) -> Vec<Outcome> {
    Point::ALL
        .into_iter()
        .map(|point| Outcome {
            program,
            backend: backend.name(),
            point,
            failure: Some(format!("setup failed: {why}")),
        })
        .collect()
}
