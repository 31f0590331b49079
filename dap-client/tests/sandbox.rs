//! End to end against the sandbox's fake DAP service: a snapshot, then
//! mutations, then an incremental query, replayed through the record stream,
//! must reproduce exactly the sandbox's truth, in every format and mode, and
//! also with faults on.

use std::collections::BTreeMap;
use std::sync::Arc;

use client_core::http::{HttpClient, Request};
use client_core::retry::FixedRandom;
use client_core::time::RecordingSleeper;
use dap_client::{
    Client, ClientBuilder, Format, IncrementalQuery, Mode, Record, SecretString, SnapshotQuery,
};
use futures::{Stream, TryStreamExt};
use sandbox::dap::{self, DapConfig, DapServer, TableSpec};
use sandbox::{FaultConfig, Faults, Stats};
use serde_json::{Map, Value, json};

struct Env {
    server: DapServer,
    client: Client,
    control: HttpClient,
}

async fn env(tune: impl FnOnce(ClientBuilder) -> ClientBuilder) -> Env {
    let config = DapConfig::default()
        .with_tables(vec![TableSpec::new("canvas", "users", 300)])
        .with_rows_per_part(70)
        .with_pacing(1, 2);
    let server = dap::start(config, Faults::new(), Stats::new())
        .await
        .unwrap();
    let creds = server.credentials();
    let builder = Client::builder()
        .base_url(server.base_url())
        .credentials(creds.client_id, SecretString::from(creds.client_secret))
        .sleeper(Arc::new(RecordingSleeper::new()))
        .random(Arc::new(FixedRandom::new(0.0)))
        .rng_seed(1);
    let client = tune(builder).build().unwrap();
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

type Rows = BTreeMap<i64, Map<String, Value>>;

fn strip_nulls(v: &mut Value) {
    if let Value::Object(map) = v {
        map.retain(|_, v| !v.is_null());
        map.values_mut().for_each(strip_nulls);
    }
}

impl Env {
    async fn expected(&self) -> Rows {
        let rows: Vec<Value> = self
            .control
            .send_json(Request::get("/__sandbox/dap/expected/canvas/users"))
            .await
            .unwrap();
        rows.into_iter()
            .map(|mut row| {
                strip_nulls(&mut row);
                let Value::Object(map) = row else {
                    panic!("a row is an object")
                };
                (map["id"].as_i64().unwrap(), map)
            })
            .collect()
    }

    async fn control_post(&self, path: &str, body: Value) {
        self.control
            .send(Request::post(path).json(&body))
            .await
            .unwrap();
    }
}

/// Applies records to `rows`; returns the numbers of upserts and deletes.
async fn apply(
    rows: &mut Rows,
    records: impl Stream<Item = dap_client::Result<Record>>,
) -> (usize, usize) {
    let (mut upserts, mut deletes) = (0, 0);
    futures::pin_mut!(records);
    while let Some(record) = records.try_next().await.unwrap() {
        let id = record
            .key
            .get("id")
            .and_then(Value::as_i64)
            .expect("integer key");
        if record.is_delete() {
            deletes += 1;
            assert!(rows.remove(&id).is_some(), "delete of unknown row {id}");
        } else {
            upserts += 1;
            let mut row = record.key.to_json();
            if let Some(value) = &record.value {
                row.extend(value.to_json());
            }
            rows.insert(id, row);
        }
    }
    (upserts, deletes)
}

/// Compares two row sets, reporting the first difference readably.
fn assert_rows_eq(label: &str, got: &Rows, want: &Rows) {
    let ids: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    for id in ids {
        let (g, w) = (got.get(id), want.get(id));
        if g != w {
            let keys: Vec<_> = match (g, w) {
                (Some(g), Some(w)) => g
                    .keys()
                    .chain(w.keys())
                    .filter(|k| g.get(*k) != w.get(*k))
                    .cloned()
                    .collect(),
                _ => vec!["<whole row>".to_string()],
            };
            panic!("{label}: row {id} differs in {keys:?}\n got: {g:?}\nwant: {w:?}");
        }
    }
}

/// Snapshot, mutate, incremental; every stage is checked against the truth.
async fn replicate(env: &Env, format: Format, mode: Option<Mode>, expire_urls: bool) {
    let label = format!("{format} {mode:?}");
    let mut snapshot = SnapshotQuery::new(format.clone());
    if let Some(m) = &mode {
        snapshot = snapshot.mode(m.clone());
    }
    let table = env
        .client
        .table_records("canvas", "users", snapshot)
        .await
        .unwrap();
    assert!(table.result.objects.len() >= 4, "{label}: several parts");
    if expire_urls {
        env.control_post("/__sandbox/dap/expire-urls", json!({}))
            .await;
    }
    let at = table.result.timestamp.expect("a snapshot has `at`");
    let mut rows = Rows::new();
    let (upserts, deletes) = apply(&mut rows, table.records).await;
    assert_eq!((upserts, deletes), (300, 0), "{label}");
    assert_rows_eq(&format!("{label}: snapshot"), &rows, &env.expected().await);

    env.control_post(
        "/__sandbox/dap/tables/canvas/users/mutate",
        json!({"inserts": 6, "updates": 9, "deletes": 4}),
    )
    .await;
    let mut incremental = IncrementalQuery::new(format, at);
    if let Some(m) = mode {
        incremental = incremental.mode(m);
    }
    let table = env
        .client
        .table_records("canvas", "users", incremental)
        .await
        .unwrap();
    if expire_urls {
        env.control_post("/__sandbox/dap/expire-urls", json!({}))
            .await;
    }
    assert!(
        table.result.timestamp > Some(at),
        "{label}: until moves forward"
    );
    let (upserts, deletes) = apply(&mut rows, table.records).await;
    assert_eq!((upserts, deletes), (15, 4), "{label}: incremental");
    assert_rows_eq(
        &format!("{label}: after the incremental"),
        &rows,
        &env.expected().await,
    );
}

#[tokio::test]
async fn jsonl_snapshot_then_incremental_matches_the_truth() {
    replicate(&env(|b| b).await, Format::Jsonl, None, false).await;
}

#[tokio::test]
async fn tsv_condensed_and_expanded_match_the_truth() {
    replicate(&env(|b| b).await, Format::Tsv, Some(Mode::Condensed), false).await;
    replicate(&env(|b| b).await, Format::Tsv, Some(Mode::Expanded), false).await;
}

#[tokio::test]
async fn csv_condensed_and_expanded_match_the_truth() {
    replicate(&env(|b| b).await, Format::Csv, Some(Mode::Condensed), false).await;
    replicate(&env(|b| b).await, Format::Csv, Some(Mode::Expanded), false).await;
}

fn faulty() -> FaultConfig {
    let mut f = FaultConfig::default();
    f.error_rate = 0.2;
    f.rate_limit_every = 5;
    f.drop_every = 11;
    f.truncate_every = 7;
    f.seed = 42;
    f
}

#[tokio::test]
async fn results_are_identical_with_faults_on() {
    for (format, mode) in [
        (Format::Jsonl, None),
        (Format::Tsv, Some(Mode::Condensed)),
        (Format::Csv, Some(Mode::Expanded)),
    ] {
        // One download at a time keeps the order of calls, and so the
        // injected faults, the same from run to run.
        let env = env(|b| b.download_concurrency(1)).await;
        env.server.faults().set(faulty());
        replicate(&env, format, mode, true).await;
        let stats = env.server.stats().snapshot();
        assert!(
            stats.faults_injected >= 10,
            "faults were injected: {stats:?}"
        );
        assert_eq!(stats.blob_authorization_headers, 0);
    }
}

#[tokio::test]
async fn downloads_to_disk_carry_no_credentials() {
    let env = env(|b| b).await;
    let dir = tempfile::tempdir().unwrap();
    let result = env
        .client
        .download_table_data(
            "canvas",
            "users",
            SnapshotQuery::new(Format::Csv),
            dir.path(),
            true,
        )
        .await
        .unwrap();
    assert!(result.downloaded_files.len() >= 4);
    let text = std::fs::read_to_string(&result.downloaded_files[0]).unwrap();
    assert!(
        text.starts_with("meta.ts,key.id,value."),
        "{}",
        &text[..40.min(text.len())]
    );
    let stats = env.server.stats().snapshot();
    assert!(stats.blob_requests >= 4);
    assert_eq!(
        stats.blob_authorization_headers, 0,
        "no token goes to pre-signed URLs"
    );
}
