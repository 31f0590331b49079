//! Sync against the sandbox's fake BDS tenant: after every scenario the table
//! must equal the sandbox's truth for the data set, on SQLite and PostgreSQL,
//! with and without network faults.
#![cfg(feature = "sql")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bds_client::plan::{FullNeeded, PlanKind, RebaselineReason};
use bds_client::sync::{SyncOptions, SyncReport, sync_data_set, table_name};
use bds_client::{BdsError, Client, MemoryTokenStore, PlanOptions, PrimaryKeys, SecretString};
use client_core::retry::SeededRandom;
use client_core::time::RecordingSleeper;
use sandbox::FaultConfig;
use sandbox::bds::{BdsConfig, BdsServer};
use sql_sink::{Sink, TableName, Value};

const DATA_SETS: [&str; 4] = [
    "User Enrollments",
    "Users",
    "Organizational Units",
    "Grade Results",
];

/// A table's rows as text, projected on the truth's columns.
type TableRows = BTreeSet<Vec<Option<String>>>;

struct World {
    server: BdsServer,
    client: Client,
    sink: Sink,
    /// Every wait the client asked for (backoff, `Retry-After`); none is slept.
    sleeper: RecordingSleeper,
    _dir: tempfile::TempDir,
}

/// A tenant without hard deletes (those only show in fulls), so that after
/// any correct sequence of extracts the table equals the truth exactly.
fn config() -> BdsConfig {
    BdsConfig {
        rows: 60,
        deletes_per_mille: 0,
        ..BdsConfig::default()
    }
}

/// The fault mix: 20 % 503s, every 7th call a 429 asking for 30 s,
/// every 11th connection dropped, every 5th body cut in half; seeded.
///
/// Scoped to the tenant's API and the storage host: a body cut *after* the
/// token endpoint rotated the refresh token loses the only valid one, which
/// no client can recover from (D2L refresh tokens are single use).
fn faults_on() -> FaultConfig {
    let mut faults = FaultConfig::default();
    faults.error_rate = 0.2;
    faults.rate_limit_every = 7;
    faults.retry_after_secs = 30;
    faults.drop_every = 11;
    faults.truncate_every = 5;
    faults.seed = 7;
    faults.only_paths = vec!["/d2l/".into(), "/blobs/".into()];
    faults
}

async fn world(config: BdsConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::open_sqlite(dir.path().join("bds.db")).await.unwrap();
    world_with(config, sink, dir, FaultConfig::default()).await
}

async fn world_with(
    config: BdsConfig,
    sink: Sink,
    dir: tempfile::TempDir,
    faults: FaultConfig,
) -> World {
    let knobs = sandbox::Faults::new();
    knobs.set(faults);
    let server = sandbox::bds::start(config, knobs, sandbox::Stats::new())
        .await
        .unwrap();
    let creds = server.credentials();
    let sleeper = RecordingSleeper::new();
    let client = Client::builder()
        .base_url(&creds.base_url)
        .auth_url(&creds.auth_url)
        .credentials(
            &creds.client_id,
            SecretString::from(creds.client_secret.clone()),
        )
        .refresh_token(SecretString::from(creds.refresh_token.clone()))
        .token_store(Arc::new(MemoryTokenStore::new()))
        .sleeper(Arc::new(sleeper.clone()))
        .random(Arc::new(SeededRandom::new(3)))
        .build()
        .unwrap();
    World {
        server,
        client,
        sink,
        sleeper,
        _dir: dir,
    }
}

impl World {
    async fn sync(&mut self, data_set: &str, options: &SyncOptions) -> SyncReport {
        sync_data_set(&self.client, &mut self.sink, data_set, options, None)
            .await
            .unwrap_or_else(|e| panic!("sync of {data_set} failed: {e}"))
    }

    async fn sync_all(&mut self) -> Vec<SyncReport> {
        let mut reports = Vec::new();
        for name in DATA_SETS {
            reports.push(self.sync(name, &SyncOptions::default()).await);
        }
        reports
    }

    /// The table's rows as text, projected on the truth's columns.
    async fn table_rows(&self, data_set: &str, columns: &[String]) -> TableRows {
        let table = TableName::new("bds", table_name(data_set));
        let status = self
            .sink
            .table_status(&table)
            .await
            .unwrap()
            .expect("table exists");
        let positions: Vec<usize> = columns
            .iter()
            .map(|c| {
                status
                    .definition
                    .column_index(c)
                    .unwrap_or_else(|| panic!("column {c} missing"))
            })
            .collect();
        let rows = self.sink.read_rows(&table).await.unwrap();
        rows.into_iter()
            .map(|row| {
                positions
                    .iter()
                    .map(|i| match &row[*i] {
                        Value::Null => None,
                        Value::Text(t) => Some(t.clone()),
                        other => panic!("unexpected value {other:?}"),
                    })
                    .collect()
            })
            .collect()
    }

    /// Asserts the table equals the truth and returns its rows.
    async fn assert_matches_truth(&self, data_set: &str) -> TableRows {
        let truth = self
            .server
            .expected(data_set)
            .await
            .expect("known data set");
        let expected: BTreeSet<_> = truth.rows.iter().cloned().collect();
        let actual = self.table_rows(data_set, &truth.columns).await;
        assert_eq!(
            actual.len(),
            expected.len(),
            "{data_set}: row count at generation {}",
            truth.generation
        );
        let missing: Vec<_> = expected.difference(&actual).take(3).collect();
        let extra: Vec<_> = actual.difference(&expected).take(3).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{data_set}: table differs from the truth at generation {}; columns {:?}\nmissing {missing:?}\nextra {extra:?}",
            truth.generation,
            truth.columns
        );
        actual
    }

    /// Every data set's table, all columns.
    async fn tables(&self) -> Vec<TableRows> {
        let mut tables = Vec::new();
        for name in DATA_SETS {
            let table = TableName::new("bds", table_name(name));
            let status = self.sink.table_status(&table).await.unwrap();
            let columns: Vec<String> = status
                .expect("table exists")
                .definition
                .columns
                .iter()
                .map(|c| c.name.clone())
                .collect();
            tables.push(self.table_rows(name, &columns).await);
        }
        tables
    }

    /// Asserts every table equals the truth; returns them by data set.
    async fn assert_all_match(&self) -> BTreeMap<&'static str, TableRows> {
        let mut tables = BTreeMap::new();
        for name in DATA_SETS {
            tables.insert(name, self.assert_matches_truth(name).await);
        }
        tables
    }
}

/// The runs of the acceptance list, each ending with every table
/// equal to the sandbox's truth.
#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// First sync: the newest full and every later differential; then a no-op.
    FirstSync,
    /// A normal daily run: the one new differential.
    DailyRun,
    /// Two runs missed: this run recovers all three differentials.
    TwoMissedRuns,
    /// The chain expired and a newer full exists: rebuilt from it.
    ExpiredChainWithNewerFull,
    /// The chain expired and no newer full exists yet: wait, then rebuild.
    ExpiredChainAwaitingFull,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::FirstSync,
        Scenario::DailyRun,
        Scenario::TwoMissedRuns,
        Scenario::ExpiredChainWithNewerFull,
        Scenario::ExpiredChainAwaitingFull,
    ];

    /// Plays the scenario against a fresh tenant (day 3, three differentials
    /// published), asserting what each run planned and applied.
    async fn play(self, w: &mut World) {
        let first = w.sync_all().await;
        for report in &first {
            assert_eq!(report.plan, PlanKind::Initial, "{}", report.data_set);
            assert_eq!(
                report.applied.len(),
                4,
                "{}: full of day 0 and differentials of days 1-3",
                report.data_set
            );
        }
        match self {
            Scenario::FirstSync => {
                w.assert_all_match().await;
                for report in w.sync_all().await {
                    assert_eq!(report.plan, PlanKind::UpToDate, "nothing new: a no-op");
                }
            }
            Scenario::DailyRun => {
                w.server.advance_days(1);
                assert_incremental(&w.sync_all().await, 1);
            }
            Scenario::TwoMissedRuns => {
                w.server.advance_days(3);
                assert_incremental(&w.sync_all().await, 3);
            }
            Scenario::ExpiredChainWithNewerFull => {
                w.server.advance_days(5); // days 4-8, full on day 7
                assert!(w.server.expire_generations(&[4, 5]) > 0);
                for report in w.sync_all().await {
                    assert!(
                        matches!(
                            report.plan,
                            PlanKind::Rebaseline(RebaselineReason::ChainBroken { .. })
                        ),
                        "{}: {}",
                        report.data_set,
                        report.plan
                    );
                    assert_eq!(
                        report.applied.len(),
                        2,
                        "{}: full of day 7, differential of day 8",
                        report.data_set
                    );
                }
            }
            Scenario::ExpiredChainAwaitingFull => {
                w.server.advance_days(3); // days 4-6, no full yet
                w.server.expire_generations(&[4, 5]);
                let before = w.tables().await;
                for report in w.sync_all().await {
                    assert!(
                        matches!(
                            report.plan,
                            PlanKind::FullNeeded(FullNeeded::ChainBroken { .. })
                        ),
                        "{}: {}",
                        report.data_set,
                        report.plan
                    );
                    assert!(report.applied.is_empty());
                }
                assert_eq!(w.tables().await, before, "tables untouched");
                w.server.publish_full();
                for report in w.sync_all().await {
                    assert!(
                        matches!(report.plan, PlanKind::Rebaseline(_)),
                        "{}: {}",
                        report.data_set,
                        report.plan
                    );
                }
            }
        }
    }
}

fn assert_incremental(reports: &[SyncReport], applied: usize) {
    for report in reports {
        assert_eq!(report.plan, PlanKind::Incremental, "{}", report.data_set);
        assert_eq!(report.applied.len(), applied, "{}", report.data_set);
    }
}

/// Where a run's tables live.
enum Backend {
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres(sql_sink::testing::TempPostgres),
}

impl Backend {
    /// SQLite always; PostgreSQL when the machine has it (else the skip reason is printed).
    async fn available() -> Vec<Backend> {
        #[allow(unused_mut)]
        let mut backends = vec![Backend::Sqlite];
        #[cfg(feature = "postgres")]
        if let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await {
            backends.push(Backend::Postgres(pg));
        }
        backends
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// An empty database.
    async fn fresh(&self, dir: &tempfile::TempDir) -> Sink {
        match self {
            Backend::Sqlite => Sink::open_sqlite(dir.path().join("bds.db")).await.unwrap(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(pg) => Sink::open(&pg.fresh_database().await.unwrap())
                .await
                .unwrap(),
        }
    }
}

/// Plays `scenario` on a fresh tenant and database; returns the final tables
/// after checking them against the truth. With faults on, also checks that
/// faults were injected and that every `Retry-After` went to the sleeper.
async fn final_tables(
    scenario: Scenario,
    backend: &Backend,
    faults: bool,
) -> BTreeMap<&'static str, TableRows> {
    let dir = tempfile::tempdir().unwrap();
    let sink = backend.fresh(&dir).await;
    let knobs = if faults {
        faults_on()
    } else {
        FaultConfig::default()
    };
    let mut w = world_with(config(), sink, dir, knobs).await;
    scenario.play(&mut w).await;
    let tables = w.assert_all_match().await;
    if faults {
        let injected = w.server.stats().snapshot().faults_injected;
        assert!(injected >= 10, "only {injected} faults were injected");
        let asked = w.sleeper.sleeps();
        assert!(
            asked.contains(&Duration::from_secs(30)),
            "the 429s' Retry-After reached the sleeper: {asked:?}"
        );
    }
    tables
}

/// Every scenario, on every backend, with and without faults, ends with the
/// same tables, equal to the sandbox's truth. The runs of one scenario go
/// concurrently (each has its own tenant and database).
#[tokio::test]
async fn every_scenario_converges_on_every_backend_with_and_without_faults() {
    let backends = Backend::available().await;
    for scenario in Scenario::ALL {
        let runs = backends.iter().flat_map(|backend| {
            [false, true].map(|faults| async move {
                let run = format!(
                    "{scenario:?} on {} with faults {}",
                    backend.name(),
                    if faults { "on" } else { "off" }
                );
                (run, final_tables(scenario, backend, faults).await)
            })
        });
        let finished = futures::future::join_all(runs).await;
        let (first, expected) = &finished[0];
        for (run, tables) in &finished {
            assert!(tables == expected, "{run} differs from {first}");
        }
    }
}

#[tokio::test]
async fn hard_deletes_disappear_when_a_new_full_is_applied() {
    let mut w = world(BdsConfig {
        rows: 60,
        deletes_per_mille: 100,
        ..BdsConfig::default()
    })
    .await;
    w.sync("User Enrollments", &SyncOptions::default()).await;
    w.server.advance_days(4); // days 4-7; the full of day 7 is the newest extract
    let options =
        SyncOptions::default().plan_options(PlanOptions::default().rebaseline_on_new_full(true));
    let report = w.sync("User Enrollments", &options).await;
    assert_eq!(
        report.plan,
        PlanKind::Rebaseline(RebaselineReason::Requested)
    );
    w.assert_matches_truth("User Enrollments").await;
}

#[tokio::test]
async fn a_crash_mid_extract_leaves_the_last_commit_and_a_rerun_converges() {
    let mut w = world(config()).await;
    w.sync("Grade Results", &SyncOptions::default()).await;
    w.server.advance_days(2);
    let options = SyncOptions::default().batch_rows(5);
    let table = TableName::new("bds", "grade_results");
    let before = w.sink.watermark(&table).await.unwrap();
    w.sink.inject_fault(sql_sink::Fault::FailAfterBatches(1));
    let err = sync_data_set(&w.client, &mut w.sink, "Grade Results", &options, None)
        .await
        .unwrap_err();
    assert!(matches!(err, BdsError::Sql { .. }), "{err}");
    assert_eq!(
        w.sink.watermark(&table).await.unwrap(),
        before,
        "the failed extract left no trace"
    );

    let report = w.sync("Grade Results", &options).await;
    assert_eq!(report.applied.len(), 2);
    w.assert_matches_truth("Grade Results").await;
}

#[tokio::test]
async fn a_data_set_without_a_known_key_names_the_option() {
    let mut w = world(config()).await;
    let options = SyncOptions::default().primary_keys(PrimaryKeys::empty());
    let err = sync_data_set(&w.client, &mut w.sink, "Users", &options, None)
        .await
        .unwrap_err();
    assert!(matches!(err, BdsError::UnknownPrimaryKey { .. }), "{err}");
    assert!(err.to_string().contains("SyncOptions::primary_key"));
}

/// POSTs a JSON body to a sandbox control route.
async fn control(server: &BdsServer, route: &str, body: serde_json::Value) {
    let http = client_core::HttpClient::builder().build().unwrap();
    let url = format!("{}/__sandbox/bds/{route}", server.base_url());
    http.send(client_core::Request::post(url).json(&body))
        .await
        .unwrap();
}

#[tokio::test]
async fn quota_answers_expired_tokens_and_the_storage_host_are_handled() {
    use bds_client::{ExposeSecret, TokenStore};
    let server = sandbox::bds::start(config(), sandbox::Faults::new(), sandbox::Stats::new())
        .await
        .unwrap();
    let creds = server.credentials();
    let sleeper = client_core::time::RecordingSleeper::new();
    let store = Arc::new(MemoryTokenStore::with_token(SecretString::from(
        creds.refresh_token.clone(),
    )));
    let client = Client::builder()
        .base_url(&creds.base_url)
        .auth_url(&creds.auth_url)
        .credentials(
            &creds.client_id,
            SecretString::from(creds.client_secret.clone()),
        )
        .token_store(store.clone())
        .sleeper(Arc::new(sleeper.clone()))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut sink = Sink::open_sqlite(dir.path().join("bds.db")).await.unwrap();
    let options = SyncOptions::default();

    control(
        &server,
        "limits",
        serde_json::json!({"quota_403_next": 2, "quota_retry_after_secs": 5}),
    )
    .await;
    sync_data_set(&client, &mut sink, "Users", &options, None)
        .await
        .unwrap();
    let waits = sleeper.sleeps();
    assert_eq!(
        waits.iter().filter(|d| d.as_secs() == 5).count(),
        2,
        "{waits:?}"
    );

    control(&server, "expire-tokens", serde_json::json!({})).await;
    server.advance_days(1);
    let report = sync_data_set(&client, &mut sink, "Users", &options, None)
        .await
        .unwrap();
    assert_eq!(report.applied.len(), 1);

    let stats = server.stats().snapshot();
    assert!(stats.blob_requests >= 5);
    assert_eq!(
        stats.blob_authorization_headers, 0,
        "the bearer token never reaches the storage host"
    );
    assert_eq!(
        stats.token_requests, 2,
        "one trade at start, one after the tokens expired"
    );
    let rotated = store.load().await.unwrap().unwrap();
    assert_eq!(rotated.expose_secret(), server.credentials().refresh_token);

    let truth = server.expected("Users").await.unwrap();
    let rows = sink
        .read_rows(&TableName::new("bds", "users"))
        .await
        .unwrap();
    assert_eq!(rows.len(), truth.rows.len());
}
