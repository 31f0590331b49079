//! Sync against the sandbox's fake BDS tenant: after every scenario the table
//! must equal the sandbox's truth for the data set.
#![cfg(feature = "sql")]

use std::collections::BTreeSet;
use std::sync::Arc;

use bds_client::plan::{FullNeeded, PlanKind, RebaselineReason};
use bds_client::sync::{SyncOptions, SyncReport, sync_data_set, table_name};
use bds_client::{BdsError, Client, MemoryTokenStore, PlanOptions, PrimaryKeys, SecretString};
use sandbox::bds::{BdsConfig, BdsServer};
use sql_sink::{Sink, TableName, Value};

const DATA_SETS: [&str; 4] = [
    "User Enrollments",
    "Users",
    "Organizational Units",
    "Grade Results",
];

struct World {
    server: BdsServer,
    client: Client,
    sink: Sink,
    _dir: tempfile::TempDir,
    #[cfg(feature = "postgres")]
    _postgres: Option<sql_sink::testing::TempPostgres>,
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

async fn world(config: BdsConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::open_sqlite(dir.path().join("bds.db")).await.unwrap();
    world_with(config, sink, dir).await
}

async fn world_with(config: BdsConfig, sink: Sink, dir: tempfile::TempDir) -> World {
    let server = sandbox::bds::start(config, sandbox::Faults::new(), sandbox::Stats::new())
        .await
        .unwrap();
    let creds = server.credentials();
    let client = Client::builder()
        .base_url(&creds.base_url)
        .auth_url(&creds.auth_url)
        .credentials(
            &creds.client_id,
            SecretString::from(creds.client_secret.clone()),
        )
        .refresh_token(SecretString::from(creds.refresh_token.clone()))
        .token_store(Arc::new(MemoryTokenStore::new()))
        .build()
        .unwrap();
    World {
        server,
        client,
        sink,
        _dir: dir,
        #[cfg(feature = "postgres")]
        _postgres: None,
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
    async fn table_rows(
        &self,
        data_set: &str,
        columns: &[String],
    ) -> BTreeSet<Vec<Option<String>>> {
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

    async fn assert_matches_truth(&self, data_set: &str) {
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
    }

    async fn assert_all_match(&self) {
        for name in DATA_SETS {
            self.assert_matches_truth(name).await;
        }
    }
}

#[tokio::test]
async fn first_sync_loads_the_newest_full_and_later_differentials() {
    let mut w = world(config()).await;
    for report in w.sync_all().await {
        assert_eq!(report.plan, PlanKind::Initial, "{}", report.data_set);
        assert_eq!(
            report.applied.len(),
            4,
            "full of day 0 and differentials of days 1-3"
        );
    }
    w.assert_all_match().await;
    // Nothing new: a second run is a no-op.
    for report in w.sync_all().await {
        assert_eq!(report.plan, PlanKind::UpToDate);
    }
    w.assert_all_match().await;
}

#[tokio::test]
async fn a_daily_run_applies_the_new_differential() {
    let mut w = world(config()).await;
    w.sync_all().await;
    w.server.advance_days(1);
    for report in w.sync_all().await {
        assert_eq!(report.plan, PlanKind::Incremental);
        assert_eq!(report.applied.len(), 1);
    }
    w.assert_all_match().await;
}

#[tokio::test]
async fn missed_differentials_are_recovered() {
    let mut w = world(config()).await;
    w.sync_all().await;
    w.server.advance_days(3); // two runs missed, then this one
    for report in w.sync_all().await {
        assert_eq!(report.plan, PlanKind::Incremental);
        assert_eq!(report.applied.len(), 3);
    }
    w.assert_all_match().await;
}

#[tokio::test]
async fn an_expired_chain_is_rebuilt_from_the_newer_full() {
    let mut w = world(config()).await;
    w.sync_all().await; // through day 3
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
            "full of day 7, differential of day 8"
        );
    }
    w.assert_all_match().await;
}

#[tokio::test]
async fn an_expired_chain_without_a_newer_full_waits_for_one() {
    let mut w = world(config()).await;
    w.sync_all().await; // through day 3
    w.server.advance_days(3); // days 4-6, no full yet
    w.server.expire_generations(&[4, 5]);
    let before = w.table_rows("Users", &["UserId".to_string()]).await;
    let report = w.sync("Users", &SyncOptions::default()).await;
    assert!(
        matches!(
            report.plan,
            PlanKind::FullNeeded(FullNeeded::ChainBroken { .. })
        ),
        "{}",
        report.plan
    );
    assert!(report.applied.is_empty());
    assert_eq!(
        w.table_rows("Users", &["UserId".to_string()]).await,
        before,
        "table untouched"
    );

    w.server.publish_full();
    let report = w.sync("Users", &SyncOptions::default()).await;
    assert!(
        matches!(report.plan, PlanKind::Rebaseline(_)),
        "{}",
        report.plan
    );
    w.assert_matches_truth("Users").await;
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

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_tables_follow_the_same_runs() {
    let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await else {
        return;
    };
    let url = pg.fresh_database().await.unwrap();
    let sink = Sink::open(&url).await.unwrap();
    let mut w = world_with(config(), sink, tempfile::tempdir().unwrap()).await;
    w._postgres = Some(pg);
    w.sync_all().await;
    w.assert_all_match().await;
    w.server.advance_days(3);
    for report in w.sync_all().await {
        assert_eq!(report.plan, PlanKind::Incremental);
    }
    w.assert_all_match().await;
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
