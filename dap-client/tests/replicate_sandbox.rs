//! The replicator against the sandbox's fake DAP service, on SQLite and (when
//! a PostgreSQL can be started) PostgreSQL: init, rounds of (mutate, sync)
//! with deletes, an added column and a new enum value, crash safety,
//! faults, snapshot-required handling, many tables, hostile names. Every
//! stage ends with the table equal to the sandbox's truth.

#![cfg(feature = "sql")]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use client_core::http::{HttpClient, Request};
use client_core::retry::FixedRandom;
use client_core::time::RecordingSleeper;
use dap_client::replicate::{Fault, Operation, ReplicateError, ReplicateOptions, Replicator, Sink};
use dap_client::{Client, SecretString};
use sandbox::dap::{self, DapConfig, DapServer, TableSpec};
use sandbox::{FaultConfig, Faults, Stats};
use serde_json::{Value, json};
use sql_sink::{SqlType, TableName};

/// A database the replicator writes to, alive as long as this value.
enum Db {
    Sqlite(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres(sql_sink::testing::TempPostgres),
}

impl Db {
    fn url(&self) -> String {
        match self {
            Db::Sqlite(dir) => format!("sqlite://{}", dir.path().join("replica.db").display()),
            #[cfg(feature = "postgres")]
            Db::Postgres(pg) => pg.url().to_string(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => "postgres",
        }
    }
}

/// SQLite always; PostgreSQL when one can be started (else a printed skip).
async fn databases() -> Vec<Db> {
    let sqlite = Db::Sqlite(tempfile::tempdir().unwrap());
    #[cfg(feature = "postgres")]
    if let Some(pg) = sql_sink::testing::TempPostgres::start_or_skip().await {
        return vec![sqlite, Db::Postgres(pg)];
    }
    #[cfg(not(feature = "postgres"))]
    eprintln!("SKIPPED: PostgreSQL runs need the `postgres` feature");
    vec![sqlite]
}

struct Env {
    server: DapServer,
    client: Client,
    control: HttpClient,
}

async fn env(tables: Vec<TableSpec>) -> Env {
    let config = DapConfig::default()
        .with_tables(tables)
        .with_rows_per_part(70)
        .with_pacing(1, 1);
    let server = dap::start(config, Faults::new(), Stats::new())
        .await
        .unwrap();
    let creds = server.credentials();
    let client = Client::builder()
        .base_url(server.base_url())
        .credentials(creds.client_id, SecretString::from(creds.client_secret))
        .sleeper(Arc::new(RecordingSleeper::new()))
        .random(Arc::new(FixedRandom::new(0.0)))
        .rng_seed(1)
        .build()
        .unwrap();
    let control = HttpClient::builder()
        .base_url(server.base_url())
        .build()
        .unwrap();
    Env {
        server,
        client,
        control,
    }
}

fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Env {
    async fn post(&self, path: &str, body: Value) -> Value {
        self.control
            .send_json(Request::post(path).json(&body))
            .await
            .unwrap()
    }

    async fn mutate(&self, ns: &str, table: &str, inserts: u64, updates: u64, deletes: u64) {
        self.post(
            &format!("/__sandbox/dap/tables/{}/{}/mutate", seg(ns), seg(table)),
            json!({"inserts": inserts, "updates": updates, "deletes": deletes}),
        )
        .await;
    }

    /// The sandbox's truth: id → the row as JSON (NULL columns as null).
    async fn expected(&self, ns: &str, table: &str) -> BTreeMap<i64, Value> {
        let rows: Vec<Value> = self
            .control
            .send_json(Request::get(format!(
                "/__sandbox/dap/expected/{}/{}",
                seg(ns),
                seg(table)
            )))
            .await
            .unwrap();
        rows.into_iter()
            .map(|row| (row["id"].as_i64().unwrap(), row))
            .collect()
    }

    /// The table's latest commit time according to the sandbox.
    async fn latest_at(&self, ns: &str, table: &str) -> DateTime<Utc> {
        let state: Value = self
            .control
            .send_json(Request::get("/__sandbox/dap/state"))
            .await
            .unwrap();
        let t = state["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["namespace"] == ns && t["table"] == table)
            .unwrap();
        DateTime::parse_from_rfc3339(t["at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc)
    }

    async fn replicator(&self, db: &Db, options: ReplicateOptions) -> Replicator {
        Replicator::open(self.client.clone(), &db.url())
            .await
            .unwrap()
            .with_options(options)
    }
}

fn canonical_ts(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The stored table as id → JSON row, in the shape of the sandbox's truth.
async fn stored(db: &Db, ns: &str, table: &str) -> BTreeMap<i64, Value> {
    let sink = Sink::open(&db.url()).await.unwrap();
    let name = TableName::new(ns, table);
    let status = sink
        .table_status(&name)
        .await
        .unwrap()
        .expect("table is known");
    let rows = sink.read_rows(&name).await.unwrap();
    rows.into_iter()
        .map(|row| {
            let mut object = serde_json::Map::new();
            for (col, value) in status.definition.columns.iter().zip(row) {
                let v = match value {
                    sql_sink::Value::Null => Value::Null,
                    sql_sink::Value::Bool(b) => json!(b),
                    sql_sink::Value::Int(i) => json!(i),
                    sql_sink::Value::Float(f) => json!(f),
                    sql_sink::Value::Text(s) => json!(s),
                    sql_sink::Value::Timestamp(t) => {
                        json!(t.to_rfc3339_opts(SecondsFormat::Micros, true))
                    }
                    sql_sink::Value::Json(v) => v,
                    other => panic!("unexpected stored value {other:?}"),
                };
                object.insert(col.name.clone(), v);
            }
            (object["id"].as_i64().unwrap(), Value::Object(object))
        })
        .collect()
}

/// The truth with timestamps in the stored form, and every stored column present.
fn normalise(want: &BTreeMap<i64, Value>, columns: &[(String, SqlType)]) -> BTreeMap<i64, Value> {
    want.iter()
        .map(|(id, row)| {
            let mut object = serde_json::Map::new();
            for (name, ty) in columns {
                let v = row.get(name).cloned().unwrap_or(Value::Null);
                let v = match (ty, &v) {
                    (SqlType::Timestamp, Value::String(s)) => json!(canonical_ts(s)),
                    _ => v,
                };
                object.insert(name.clone(), v);
            }
            (*id, Value::Object(object))
        })
        .collect()
}

async fn assert_matches_truth(env: &Env, db: &Db, ns: &str, table: &str, stage: &str) {
    let got = stored(db, ns, table).await;
    let sink = Sink::open(&db.url()).await.unwrap();
    let status = sink
        .table_status(&TableName::new(ns, table))
        .await
        .unwrap()
        .unwrap();
    let columns: Vec<(String, SqlType)> = status
        .definition
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.sql_type.clone()))
        .collect();
    let want = normalise(&env.expected(ns, table).await, &columns);
    assert_eq!(got.len(), want.len(), "{}: {stage}: row count", db.name());
    for (id, w) in &want {
        let g = got.get(id);
        assert_eq!(g, Some(w), "{}: {stage}: row {id}", db.name());
    }
}

#[tokio::test]
async fn init_then_three_syncs_match_the_truth() {
    for db in databases().await {
        let env = env(vec![TableSpec::new("canvas", "users", 300)]).await;
        let r = env.replicator(&db, ReplicateOptions::default()).await;
        let report = r.init("canvas", "users").await.unwrap();
        assert_eq!(report.upserted_rows, 300);
        assert!(report.evolution.created);
        assert_eq!(
            report.watermark,
            Some(env.latest_at("canvas", "users").await)
        );
        assert_matches_truth(&env, &db, "canvas", "users", "after init").await;

        // A second init is refused: the table is already replicated.
        let again = r.init("canvas", "users").await.unwrap_err();
        assert!(
            matches!(again, ReplicateError::AlreadyInitialized { .. }),
            "{again}"
        );

        // Round 1: inserts, updates and deletes.
        env.mutate("canvas", "users", 6, 9, 4).await;
        let report = r.sync("canvas", "users").await.unwrap();
        assert_eq!((report.upserted_rows, report.deleted_rows), (15, 4));
        assert!(report.evolution.is_unchanged());
        assert_eq!(
            report.watermark,
            Some(env.latest_at("canvas", "users").await)
        );
        assert_matches_truth(&env, &db, "canvas", "users", "round 1").await;

        // Round 2: a new column, then changes that fill it.
        env.post(
            "/__sandbox/dap/tables/canvas/users/columns",
            json!({"name": "nickname"}),
        )
        .await;
        env.mutate("canvas", "users", 5, 20, 3).await;
        let report = r.sync("canvas", "users").await.unwrap();
        assert_eq!(report.evolution.added_columns, vec!["nickname"]);
        assert_eq!(report.deleted_rows, 3);
        assert_matches_truth(&env, &db, "canvas", "users", "round 2").await;

        // Round 3: a new enum value, used by the rows that change.
        env.post(
            "/__sandbox/dap/tables/canvas/users/enum-values",
            json!({"value": "archived"}),
        )
        .await;
        env.mutate("canvas", "users", 40, 40, 2).await;
        let report = r.sync("canvas", "users").await.unwrap();
        assert_eq!(
            report.evolution.enum_values_added,
            vec![("workflow_state".to_string(), vec!["archived".to_string()])]
        );
        assert_matches_truth(&env, &db, "canvas", "users", "round 3").await;
        let truth = env.expected("canvas", "users").await;
        assert!(
            truth
                .values()
                .any(|row| row["workflow_state"] == "archived"),
            "the new enum value is in the data"
        );

        // Nothing new: the sync commits an unchanged table.
        let report = r.sync("canvas", "users").await.unwrap();
        assert_eq!((report.upserted_rows, report.deleted_rows), (0, 0));
        assert_matches_truth(&env, &db, "canvas", "users", "idle sync").await;

        let listed = r.list(Some("canvas")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].table, "users");
        assert_eq!(listed[0].row_count as usize, truth.len());
        assert_eq!(
            listed[0].watermark,
            Some(env.latest_at("canvas", "users").await)
        );
        assert_eq!(listed[0].schema_version, Some(3));
        assert_eq!(listed[0].last_command.as_deref(), Some("syncdb"));
        assert!(listed[0].columns.contains(&"nickname".to_string()));

        let dropped = r.drop("canvas", "users").await.unwrap();
        assert!(dropped.dropped);
        assert!(r.list(None).await.unwrap().is_empty());
        let sync = r.sync("canvas", "users").await.unwrap_err();
        assert!(
            matches!(sync, ReplicateError::NotInitialized { .. }),
            "{sync}"
        );
    }
}

#[tokio::test]
async fn a_load_failing_after_k_batches_leaves_table_and_watermark_as_they_were() {
    for db in databases().await {
        let env = env(vec![TableSpec::new("canvas", "users", 300)]).await;
        let options = ReplicateOptions::default().batch_rows(7);
        let r = env.replicator(&db, options).await;

        // A failed init leaves nothing behind; a second init succeeds.
        r.inject_fault(Fault::FailAfterBatches(3));
        let err = r.init("canvas", "users").await.unwrap_err();
        assert!(
            matches!(
                &err,
                ReplicateError::Database {
                    source: sql_sink::Error::InjectedFailure { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            r.list(None).await.unwrap().is_empty(),
            "{}: no table after a failed init",
            db.name()
        );
        r.init("canvas", "users").await.unwrap();
        let before = stored(&db, "canvas", "users").await;
        let watermark = r.list(None).await.unwrap()[0].watermark;

        // A failed sync changes nothing; the next one converges.
        env.mutate("canvas", "users", 20, 30, 10).await;
        r.inject_fault(Fault::FailAfterBatches(2));
        let err = r.sync("canvas", "users").await.unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(
            stored(&db, "canvas", "users").await,
            before,
            "{}",
            db.name()
        );
        assert_eq!(r.list(None).await.unwrap()[0].watermark, watermark);
        let report = r.sync("canvas", "users").await.unwrap();
        assert_eq!(report.deleted_rows, 10);
        assert_matches_truth(&env, &db, "canvas", "users", "after the re-run").await;
    }
}

fn faulty() -> FaultConfig {
    let mut f = FaultConfig::default();
    f.error_rate = 0.2;
    f.rate_limit_every = 5;
    f.drop_every = 11;
    f.truncate_every = 7;
    f.seed = 7;
    f
}

#[tokio::test]
async fn results_are_identical_with_faults_on() {
    for db in databases().await {
        let env = env(vec![TableSpec::new("canvas", "users", 400)]).await;
        let options = ReplicateOptions::default().download_concurrency(2);
        let r = env.replicator(&db, options).await;
        env.server.faults().set(faulty());
        r.init("canvas", "users").await.unwrap();
        assert_matches_truth(&env, &db, "canvas", "users", "init with faults").await;
        // Pre-signed URLs issued so far expire: they are re-resolved.
        env.post("/__sandbox/dap/expire-urls", json!({})).await;
        env.mutate("canvas", "users", 30, 60, 12).await;
        let report = r.sync("canvas", "users").await.unwrap();
        assert_eq!(report.deleted_rows, 12);
        assert_matches_truth(&env, &db, "canvas", "users", "sync with faults").await;
        let stats = env.server.stats().snapshot();
        assert!(
            stats.faults_injected >= 5,
            "faults were injected: {stats:?}"
        );
        assert_eq!(
            stats.blob_authorization_headers, 0,
            "no token on pre-signed URLs"
        );
    }
}

#[tokio::test]
async fn snapshot_required_is_an_error_unless_reinit_is_asked_for() {
    for db in databases().await {
        let env = env(vec![TableSpec::new("canvas", "courses", 120)]).await;
        let r = env.replicator(&db, ReplicateOptions::default()).await;
        r.init("canvas", "courses").await.unwrap();
        let watermark = r.list(None).await.unwrap()[0].watermark;
        env.mutate("canvas", "courses", 3, 3, 3).await;
        let inject = json!({"endpoint": "query", "error": "SnapshotRequired", "times": 1});
        env.post("/__sandbox/dap/errors", inject.clone()).await;
        let err = r.sync("canvas", "courses").await.unwrap_err();
        assert!(
            matches!(err, ReplicateError::SnapshotRequired { .. }),
            "{err}"
        );
        assert!(err.needs_reinit() && !err.is_fatal());
        assert_eq!(r.list(None).await.unwrap()[0].watermark, watermark);

        let r = r.with_options(ReplicateOptions::default().reinit_when_needed(true));
        env.post("/__sandbox/dap/errors", inject).await;
        let report = r.sync("canvas", "courses").await.unwrap();
        assert!(report.reinitialized);
        assert_eq!(report.operation, Operation::Sync);
        assert_eq!(
            report.watermark,
            Some(env.latest_at("canvas", "courses").await)
        );
        assert_matches_truth(&env, &db, "canvas", "courses", "after re-init").await;
        // The re-initialised table keeps syncing normally.
        env.mutate("canvas", "courses", 2, 2, 2).await;
        r.sync("canvas", "courses").await.unwrap();
        assert_matches_truth(&env, &db, "canvas", "courses", "sync after re-init").await;
    }
}

#[tokio::test]
async fn many_tables_run_concurrently_and_report_every_outcome() {
    let db = Db::Sqlite(tempfile::tempdir().unwrap());
    let env = env(vec![
        TableSpec::new("canvas", "users", 150),
        TableSpec::new("canvas", "courses", 90),
        TableSpec::new("canvas", "accounts", 25),
    ])
    .await;
    let r = env.replicator(&db, ReplicateOptions::default()).await;
    let tables = ["users", "nope", "courses", "accounts"];
    let outcome = r.run_many(Operation::Init, "canvas", &tables).await;
    let names: Vec<&str> = outcome.results.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, tables);
    assert!(!outcome.is_success());
    let failed: Vec<_> = outcome.failures().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].table(), "canvas.nope");
    for t in ["users", "courses", "accounts"] {
        assert_matches_truth(&env, &db, "canvas", t, "init of many").await;
    }
    let err = outcome.into_result().unwrap_err();
    assert!(
        err.to_string().contains("1 failed out of 4 table(s)"),
        "{err}"
    );

    // A fatal error (a disabled account) stops the tables not yet started.
    let r = r.with_options(ReplicateOptions::default().table_concurrency(1));
    env.post(
        "/__sandbox/dap/errors",
        json!({"endpoint": "schema", "error": "AccountDisabled", "times": 50}),
    )
    .await;
    let outcome = r
        .run_many(Operation::Sync, "canvas", &["users", "courses", "accounts"])
        .await;
    let errors: Vec<_> = outcome.failures().collect();
    assert_eq!(errors.len(), 3);
    assert!(errors[0].is_fatal(), "{}", errors[0]);
    assert!(matches!(errors[1], ReplicateError::Skipped { .. }));
    assert!(matches!(errors[2], ReplicateError::Skipped { .. }));
}

#[tokio::test]
async fn hostile_table_names_are_stored_safely() {
    let hostile = "we\"ird; DROP TABLE users; --";
    for db in databases().await {
        let env = env(vec![
            TableSpec::new("canvas", hostile, 60),
            TableSpec::new("canvas", "users", 10),
        ])
        .await;
        let r = env.replicator(&db, ReplicateOptions::default()).await;
        r.init("canvas", hostile).await.unwrap();
        r.init("canvas", "users").await.unwrap();
        env.mutate("canvas", hostile, 4, 4, 4).await;
        let report = r.sync("canvas", hostile).await.unwrap();
        assert_eq!(report.deleted_rows, 4);
        assert_matches_truth(&env, &db, "canvas", hostile, "hostile name").await;
        assert_matches_truth(&env, &db, "canvas", "users", "neighbour intact").await;
        let names: Vec<String> = r
            .list(None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.table)
            .collect();
        assert!(names.contains(&hostile.to_string()), "{names:?}");
    }
}

#[tokio::test]
async fn a_job_that_expires_before_its_objects_are_read_is_run_again() {
    let db = Db::Sqlite(tempfile::tempdir().unwrap());
    let env = env(vec![TableSpec::new("canvas", "users", 100)]).await;
    let r = env.replicator(&db, ReplicateOptions::default()).await;
    // The URL request for the job's objects answers 404 "job does not exist".
    let expired = json!({"endpoint": "url", "error": "ObjectNotFound", "times": 1});
    env.post("/__sandbox/dap/errors", expired.clone()).await;
    r.init("canvas", "users").await.unwrap();
    assert_matches_truth(&env, &db, "canvas", "users", "init after expiry").await;
    env.mutate("canvas", "users", 5, 5, 5).await;
    env.post("/__sandbox/dap/errors", expired).await;
    let report = r.sync("canvas", "users").await.unwrap();
    assert_eq!(report.deleted_rows, 5);
    assert_matches_truth(&env, &db, "canvas", "users", "sync after expiry").await;
    // Twice in a row is reported, typed, and changes nothing.
    env.mutate("canvas", "users", 1, 1, 1).await;
    let twice = json!({"endpoint": "url", "error": "ObjectNotFound", "times": 2});
    env.post("/__sandbox/dap/errors", twice).await;
    let err = r.sync("canvas", "users").await.unwrap_err();
    assert!(
        matches!(
            &err,
            ReplicateError::Api {
                source: dap_client::Error::NotFound { .. },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(r.list(None).await.unwrap()[0].row_count, 100 + 5 - 5);
}
