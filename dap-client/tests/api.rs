//! The DAP client against wiremock: every endpoint, every error class, job
//! waiting and restarts, batched URLs and downloads without credentials.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use client_core::retry::{FixedRandom, RetryPolicy};
use client_core::time::{ManualClock, RecordingSleeper};
use dap_client::{
    Client, Error, Format, IncrementalQuery, JobStatus, Mode, Object, PollPolicy, SecretString,
    SnapshotQuery,
};
use futures::TryStreamExt;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Rig {
    server: MockServer,
    client: Client,
    sleeper: RecordingSleeper,
}

fn json_reply(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body.to_string(), "application/json")
}

async fn rig() -> Rig {
    rig_with(|b| b).await
}

async fn rig_with(
    tune: impl FnOnce(dap_client::ClientBuilder) -> dap_client::ClientBuilder,
) -> Rig {
    let server = MockServer::start().await;
    // "id:secret" in HTTP Basic.
    Mock::given(method("POST"))
        .and(path("/ids/auth/login"))
        .and(header("authorization", "Basic aWQ6c2VjcmV0"))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(json_reply(
            200,
            json!({"access_token":"tok-1","expires_in":3600,"scope":"dap","token_type":"Bearer"}),
        ))
        .mount(&server)
        .await;
    let clock = ManualClock::new();
    let sleeper = RecordingSleeper::with_clock(clock.clone());
    let builder = Client::builder()
        .base_url(format!("{}/", server.uri()))
        .credentials("id", SecretString::from("secret"))
        .sleeper(Arc::new(sleeper.clone()))
        .clock(Arc::new(clock))
        .random(Arc::new(FixedRandom::new(0.0)))
        .retry_policy(RetryPolicy::default().with_max_attempts(3))
        .rng_seed(7);
    let client = tune(builder).build().unwrap();
    Rig {
        server,
        client,
        sleeper,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

async fn requests_to(server: &MockServer, p: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == p)
        .collect()
}

#[tokio::test]
async fn tables_use_a_bearer_token_and_ignore_unknown_fields() {
    let rig = rig().await;
    Mock::given(method("GET"))
        .and(path("/dap/query/canvas/table"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(json_reply(
            200,
            json!({"tables": ["accounts", "users"], "next_feature": true}),
        ))
        .mount(&rig.server)
        .await;
    assert_eq!(
        rig.client.tables("canvas").await.unwrap(),
        ["accounts", "users"]
    );
    assert_eq!(rig.client.tables("canvas").await.unwrap().len(), 2);
    assert_eq!(
        requests_to(&rig.server, "/ids/auth/login").await.len(),
        1,
        "the token is cached"
    );
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    let rig = rig().await;
    Mock::given(method("GET"))
        .and(path("/dap/query/canvas/table"))
        .respond_with(json_reply(
            401,
            json!({"error":{"type":"Unauthorized","uuid":"u","message":"expired"}}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dap/query/canvas/table"))
        .respond_with(json_reply(200, json!({"tables": ["a"]})))
        .mount(&rig.server)
        .await;
    assert_eq!(rig.client.tables("canvas").await.unwrap(), ["a"]);
    assert_eq!(requests_to(&rig.server, "/ids/auth/login").await.len(), 2);
}

#[tokio::test]
async fn persistent_401_is_an_authentication_error() {
    let rig = rig().await;
    Mock::given(method("GET"))
        .respond_with(json_reply(
            401,
            json!({"error":{"type":"Unauthorized","uuid":"u","message":"no"}}),
        ))
        .mount(&rig.server)
        .await;
    let e = rig.client.tables("canvas").await.unwrap_err();
    assert!(matches!(e, Error::Authentication(_)), "{e:?}");
    assert!(e.is_fatal());
    assert!(!e.to_string().contains("secret"));
}

#[tokio::test]
async fn schema_is_fetched_and_saved_like_the_official_cli() {
    let rig = rig().await;
    let schema = json!({"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
        "properties":{"key":{"type":"object","properties":{"id":{"type":"integer"}}}}});
    Mock::given(method("GET"))
        .and(path("/dap/query/canvas/table/users/schema"))
        .respond_with(json_reply(
            200,
            json!({"schema": schema, "version": 3, "x": 1}),
        ))
        .mount(&rig.server)
        .await;
    let v = rig.client.schema("canvas", "users").await.unwrap();
    assert_eq!(v.version, 3);
    let dir = tempfile::tempdir().unwrap();
    let path = rig
        .client
        .download_schema("canvas", "users", dir.path())
        .await
        .unwrap();
    assert_eq!(path, dir.path().join("users_schema_version_3.json"));
    let saved: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(saved, json!({"schema": schema, "version": 3}));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file is left"
    );
}

#[tokio::test]
async fn queries_send_the_official_bodies_and_job_reads_state() {
    let rig = rig().await;
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .and(body_json(json!({"format":"tsv","mode":"condensed"})))
        .respond_with(json_reply(202, json!({"id":"j1","status":"waiting"})))
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .and(body_json(json!({"format":"csv","since":"2024-01-01T01:02:03.456Z","until":"2024-01-02T00:00:00Z"})))
        .respond_with(json_reply(202, json!({"id":"j2","status":"running"})))
        .mount(&rig.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dap/job/j2"))
        .respond_with(json_reply(
            200,
            json!({"id":"j2","status":"queued_again","new":1}),
        ))
        .mount(&rig.server)
        .await;
    let job = rig
        .client
        .query_snapshot(
            "canvas",
            "users",
            &SnapshotQuery::new(Format::Tsv).mode(Mode::Condensed),
        )
        .await
        .unwrap();
    assert_eq!((job.id.as_str(), &job.status), ("j1", &JobStatus::Waiting));
    let q = IncrementalQuery::new(Format::Csv, "2024-01-01T01:02:03.456Z".parse().unwrap())
        .until("2024-01-02T00:00:00Z".parse().unwrap());
    assert_eq!(
        rig.client
            .query_incremental("canvas", "users", &q)
            .await
            .unwrap()
            .id,
        "j2"
    );
    let polled = rig.client.job("j2").await.unwrap();
    assert_eq!(polled.status, JobStatus::Unknown("queued_again".into()));
}

async fn mount_job_sequence(server: &MockServer, states: &[Value]) {
    for (i, state) in states.iter().enumerate() {
        let m = Mock::given(method("GET"))
            .and(path("/dap/job/j1"))
            .respond_with(json_reply(200, state.clone()));
        let m = if i + 1 < states.len() {
            m.up_to_n_times(1).with_priority(1)
        } else {
            m
        };
        m.mount(server).await;
    }
}

#[tokio::test]
async fn waiting_uses_the_completing_poll_and_backs_off_between_1_and_5_seconds() {
    let rig = rig().await;
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .respond_with(json_reply(202, json!({"id":"j1","status":"waiting"})))
        .mount(&rig.server)
        .await;
    let mut states = vec![json!({"id":"j1","status":"running"}); 6];
    states.push(
        json!({"id":"j1","status":"complete","objects":[{"id":"j1/part-0.tsv.gz"}],
        "schema_version":2,"at":"2024-05-01T09:40:12Z","expires_at":"2999-01-01T00:00:00Z"}),
    );
    mount_job_sequence(&rig.server, &states).await;
    let result = rig
        .client
        .get_table_data("canvas", "users", SnapshotQuery::new(Format::Tsv))
        .await
        .unwrap();
    assert_eq!(result.objects, vec![Object::new("j1/part-0.tsv.gz")]);
    assert_eq!(result.schema_version, Some(2));
    assert_eq!(
        result.timestamp.unwrap().to_rfc3339(),
        "2024-05-01T09:40:12+00:00"
    );
    assert_eq!(
        requests_to(&rig.server, "/dap/job/j1").await.len(),
        7,
        "no extra GET after completion"
    );
    let sleeps = rig.sleeper.sleeps();
    assert_eq!(sleeps.len(), 6, "the first poll is immediate");
    assert!(
        sleeps
            .iter()
            .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(5)),
        "{sleeps:?}"
    );
    assert!(sleeps.last() > sleeps.first(), "delays grow: {sleeps:?}");
}

#[tokio::test]
async fn a_failed_job_surfaces_the_server_explanation() {
    let rig = rig().await;
    Mock::given(method("POST"))
        .respond_with(json_reply(
            200,
            json!({"id":"j1","status":"failed","error":
            {"type":"ProcessingError","uuid":"err-42","message":"table is being reloaded"}}),
        ))
        .mount(&rig.server)
        .await;
    let e = rig
        .client
        .execute_job("canvas", "users", SnapshotQuery::new(Format::Jsonl))
        .await
        .unwrap_err();
    let Error::JobFailed { job_id, error } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(job_id, "j1");
    assert_eq!(error.uuid.as_deref(), Some("err-42"));
    assert!(
        e.to_string().contains("table is being reloaded") && !e.is_fatal(),
        "{e}"
    );
}

#[tokio::test]
async fn waiting_stops_at_the_deadline() {
    let rig =
        rig_with(|b| b.poll_policy(PollPolicy::default().max_wait(Duration::from_secs(20)))).await;
    Mock::given(method("POST"))
        .respond_with(json_reply(202, json!({"id":"j1","status":"running"})))
        .mount(&rig.server)
        .await;
    mount_job_sequence(&rig.server, &[json!({"id":"j1","status":"running"})]).await;
    let e = rig
        .client
        .execute_job("canvas", "users", SnapshotQuery::new(Format::Jsonl))
        .await
        .unwrap_err();
    let Error::JobTimeout {
        job_id,
        elapsed,
        polls,
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(job_id, "j1");
    assert_eq!(elapsed, Duration::from_secs(20));
    assert!(polls >= 4, "{polls}");
}

#[tokio::test]
async fn urls_for_many_objects_come_from_one_request_or_chunks() {
    let rig = rig_with(|b| b.url_batch_size(3)).await;
    Mock::given(method("POST"))
        .and(path("/dap/object/url"))
        .respond_with(|req: &wiremock::Request| {
            let ids: Vec<Value> = serde_json::from_slice(&req.body).unwrap();
            let urls: serde_json::Map<String, Value> = ids
                .iter()
                .map(|o| {
                    let id = o["id"].as_str().unwrap().to_string();
                    (
                        id.clone(),
                        json!({"url": format!("https://bucket.example/{id}?sig=s")}),
                    )
                })
                .collect();
            json_reply(200, json!({"urls": urls}))
        })
        .mount(&rig.server)
        .await;
    let objects: Vec<Object> = (0..3)
        .map(|i| Object::new(format!("j/part-{i}.tsv.gz")))
        .collect();
    let urls = rig.client.resources(&objects).await.unwrap();
    assert_eq!(urls.len(), 3);
    assert_eq!(
        requests_to(&rig.server, "/dap/object/url").await.len(),
        1,
        "one request for three objects"
    );
    let seven: Vec<Object> = (0..7).map(|i| Object::new(format!("j/p-{i}"))).collect();
    assert_eq!(rig.client.resources(&seven).await.unwrap().len(), 7);
    assert_eq!(
        requests_to(&rig.server, "/dap/object/url").await.len(),
        4,
        "7 objects in chunks of 3"
    );
}

/// Mounts a complete job `id` with `parts` TSV objects served by the mock.
async fn mount_complete_job(server: &MockServer, id: &str, parts: &[&[u8]]) {
    let objects: Vec<Value> = (0..parts.len())
        .map(|i| json!({"id": format!("{id}/part-{i}.tsv.gz")}))
        .collect();
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .respond_with(json_reply(
            200,
            json!({"id": id, "status":"complete","objects": objects,
            "schema_version":1,"at":"2024-05-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z"}),
        ))
        .mount(server)
        .await;
    let base = server.uri();
    let urls: serde_json::Map<String, Value> = (0..parts.len())
        .map(|i| {
            (
                format!("{id}/part-{i}.tsv.gz"),
                json!({"url": format!("{base}/bucket/{id}/part-{i}.tsv.gz?X-Amz-Signature=s{i}")}),
            )
        })
        .collect();
    Mock::given(method("POST"))
        .and(path("/dap/object/url"))
        .respond_with(json_reply(200, json!({"urls": urls})))
        .mount(server)
        .await;
    for (i, part) in parts.iter().enumerate() {
        Mock::given(method("GET"))
            .and(path(format!("/bucket/{id}/part-{i}.tsv.gz")))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(part.to_vec()))
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn downloads_are_decompressed_fully_and_carry_no_authorization() {
    let rig = rig().await;
    // Two gzip members in one object: both must be decoded.
    let mut multi = gzip(b"key.id\tvalue.name\n1\tone\n");
    multi.extend(gzip(b"2\ttwo\n"));
    mount_complete_job(
        &rig.server,
        "j1",
        &[&multi, &gzip(b"key.id\tvalue.name\n3\tthree\n")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let result = rig
        .client
        .download_table_data(
            "canvas",
            "users",
            SnapshotQuery::new(Format::Tsv),
            dir.path(),
            true,
        )
        .await
        .unwrap();
    assert_eq!(result.job_id, "j1");
    let job_dir = dir.path().join("job_j1");
    assert_eq!(
        result.downloaded_files,
        vec![job_dir.join("part-0.tsv"), job_dir.join("part-1.tsv")]
    );
    assert_eq!(
        std::fs::read_to_string(&result.downloaded_files[0]).unwrap(),
        "key.id\tvalue.name\n1\tone\n2\ttwo\n"
    );
    for r in requests_to(&rig.server, "/bucket/j1/part-0.tsv.gz").await {
        assert!(
            !r.headers.contains_key("authorization"),
            "object downloads carry no token"
        );
    }
    let api = requests_to(&rig.server, "/dap/object/url").await;
    assert_eq!(api.len(), 1);
    assert!(api[0].headers.contains_key("authorization"));

    // Without decompression the raw objects are kept.
    let raw = rig
        .client
        .download_objects(&[Object::new("j1/part-1.tsv.gz")], dir.path(), false)
        .await
        .unwrap();
    assert_eq!(raw, vec![dir.path().join("part-1.tsv.gz")]);
}

#[tokio::test]
async fn records_stream_from_the_download() {
    let rig = rig().await;
    mount_complete_job(
        &rig.server,
        "j1",
        &[
            &gzip(b"meta.ts\tkey.id\tvalue.name\n2024-01-01T00:00:00Z\t1\ta\\tb\n"),
            &gzip(b"meta.ts\tkey.id\tvalue.name\n2024-01-01T00:00:00Z\t2\t\\N\n"),
        ],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/dap/query/canvas/table/users/schema"))
        .respond_with(json_reply(
            200,
            json!({"version":1,"schema":{"properties":{
            "key":{"type":"object","properties":{"id":{"type":"integer"}}},
            "value":{"type":"object","properties":{"name":{"type":"string"}}}}}}),
        ))
        .mount(&rig.server)
        .await;
    let table = rig
        .client
        .table_records("canvas", "users", SnapshotQuery::new(Format::Tsv))
        .await
        .unwrap();
    let mut records: Vec<Value> = table
        .records
        .map_ok(|r| r.to_json())
        .try_collect()
        .await
        .unwrap();
    records.sort_by_key(|r| r["key"]["id"].as_i64());
    assert_eq!(
        records,
        vec![
            json!({"meta":{"ts":"2024-01-01T00:00:00Z"},"key":{"id":1},"value":{"name":"a\tb"}}),
            json!({"meta":{"ts":"2024-01-01T00:00:00Z"},"key":{"id":2}}),
        ]
    );
}

#[tokio::test]
async fn an_expired_job_is_restarted_before_downloading() {
    let rig = rig().await;
    // The first job's objects are gone by the time URLs are requested.
    Mock::given(method("POST"))
        .and(path("/dap/object/url"))
        .respond_with(json_reply(404, json!({"error":{"type":"ObjectNotFound","uuid":"u","message":"gone","id":"old/part-0.tsv.gz","kind":"object"}})))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .respond_with(json_reply(
            200,
            json!({"id":"old","status":"complete","objects":[{"id":"old/part-0.tsv.gz"}],
            "schema_version":1,"at":"2024-05-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z"}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.server)
        .await;
    mount_complete_job(&rig.server, "new", &[&gzip(b"key.id\n1\n")]).await;
    let dir = tempfile::tempdir().unwrap();
    let result = rig
        .client
        .download_table_data(
            "canvas",
            "users",
            SnapshotQuery::new(Format::Tsv),
            dir.path(),
            false,
        )
        .await
        .unwrap();
    assert_eq!(result.job_id, "new");
    assert_eq!(
        requests_to(&rig.server, "/dap/query/canvas/table/users/data")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn a_job_returned_about_to_expire_is_queried_again() {
    let rig = rig().await;
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .respond_with(json_reply(
            200,
            json!({"id":"old","status":"complete","objects":[],
            "schema_version":1,"at":"2024-05-01T00:00:00Z","expires_at":"2020-01-01T00:00:00Z"}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .respond_with(json_reply(
            200,
            json!({"id":"fresh","status":"complete","objects":[],
            "schema_version":1,"at":"2024-05-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z"}),
        ))
        .mount(&rig.server)
        .await;
    let job = rig
        .client
        .execute_job("canvas", "users", SnapshotQuery::new(Format::Tsv))
        .await
        .unwrap();
    assert_eq!(job.id, "fresh");
}

#[tokio::test]
async fn an_expired_url_is_resolved_again() {
    let rig = rig().await;
    mount_complete_job(&rig.server, "j1", &[&gzip(b"key.id\n1\n")]).await;
    Mock::given(method("GET"))
        .and(path("/bucket/j1/part-0.tsv.gz"))
        .respond_with(ResponseTemplate::new(403).set_body_string(
            "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let files = rig
        .client
        .download_objects(&[Object::new("j1/part-0.tsv.gz")], dir.path(), true)
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), "key.id\n1\n");
    assert_eq!(
        requests_to(&rig.server, "/dap/object/url").await.len(),
        2,
        "one batch, one re-resolution"
    );
}

async fn error_for(status: u16, body: ResponseTemplate) -> Error {
    let rig = rig().await;
    Mock::given(method("GET"))
        .and(path("/dap/query/canvas/table/users/schema"))
        .respond_with(body.clone())
        .mount(&rig.server)
        .await;
    let e = rig.client.schema("canvas", "users").await.unwrap_err();
    assert_eq!(e.status(), Some(status), "{e:?}");
    e
}

fn dap_error(status: u16, error: Value) -> ResponseTemplate {
    json_reply(status, json!({ "error": error }))
}

#[tokio::test]
async fn every_error_class_is_reachable() {
    let op = |t: &str| json!({"type": t, "uuid": "u-1", "message": "m"});
    assert!(matches!(
        error_for(403, dap_error(403, op("AccountDisabled"))).await,
        Error::AccountDisabled(_)
    ));
    assert!(matches!(
        error_for(403, dap_error(403, op("AccountNotOnboarded"))).await,
        Error::AccountNotOnboarded(_)
    ));
    assert!(matches!(
        error_for(403, dap_error(403, op("AccountUnderMaintenance"))).await,
        Error::AccountUnderMaintenance(_)
    ));
    assert!(matches!(
        error_for(403, dap_error(403, op("RequestTypeForbidden"))).await,
        Error::RequestTypeForbidden(_)
    ));
    let mut v = op("ValidationError");
    v["location"] = json!({"line": 1, "column": 2, "character": 2});
    assert!(matches!(
        error_for(400, dap_error(400, v)).await,
        Error::Validation {
            location: Some(_),
            ..
        }
    ));
    let mut nf = op("ObjectNotFound");
    nf["id"] = json!("users");
    nf["kind"] = json!("table");
    let e = error_for(404, dap_error(404, nf)).await;
    assert!(
        matches!(&e, Error::NotFound { kind: Some(k), .. } if k == "table"),
        "{e:?}"
    );
    let mut sr = op("SnapshotRequired");
    sr["since"] = json!("2024-01-01T00:00:00Z");
    assert!(error_for(400, dap_error(400, sr)).await.requires_snapshot());
    let mut oor = op("OutOfRange");
    oor["since"] = json!("2024-01-01T00:00:00Z");
    assert!(matches!(
        error_for(400, dap_error(400, oor)).await,
        Error::OutOfRange { .. }
    ));
    assert!(matches!(
        error_for(500, dap_error(500, op("ProcessingError"))).await,
        Error::Processing(_)
    ));
    assert!(matches!(
        error_for(
            504,
            dap_error(504, json!({"message": "Endpoint request timed out"}))
        )
        .await,
        Error::GatewayTimeout { .. }
    ));
    let html = ResponseTemplate::new(502)
        .set_body_raw("<html><h1>502 Bad Gateway</h1></html>", "text/html");
    let e = error_for(502, html).await;
    assert!(
        matches!(&e, Error::Server { body_snippet, .. } if body_snippet.contains("Bad Gateway")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_502_is_retried_before_it_is_reported() {
    let rig = rig().await;
    Mock::given(method("GET"))
        .and(path("/dap/query/canvas/table"))
        .respond_with(
            ResponseTemplate::new(502).set_body_raw("<html>bad gateway</html>", "text/html"),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/dap/query/canvas/table"))
        .respond_with(json_reply(200, json!({"tables": ["x"]})))
        .mount(&rig.server)
        .await;
    assert_eq!(rig.client.tables("canvas").await.unwrap(), ["x"]);
}

#[tokio::test]
async fn a_success_body_that_is_not_json_is_reported_with_a_snippet() {
    let rig = rig().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("<html>maintenance</html>", "text/html"),
        )
        .mount(&rig.server)
        .await;
    let e = rig.client.tables("canvas").await.unwrap_err();
    assert!(
        matches!(&e, Error::UnexpectedResponse { body_snippet, .. } if body_snippet.contains("maintenance")),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_truncated_object_is_read_again_and_no_record_is_lost_or_repeated() {
    let rig = rig().await;
    let full = gzip(b"key.id\tvalue.name\n1\tone\n2\ttwo\n3\tthree\n");
    mount_complete_job(&rig.server, "j1", &[&full]).await;
    // The first answer stops two thirds of the way through the gzip data.
    Mock::given(method("GET"))
        .and(path("/bucket/j1/part-0.tsv.gz"))
        .respond_with(
            ResponseTemplate::new(200).set_body_bytes(full[..full.len() * 2 / 3].to_vec()),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.server)
        .await;
    let job = rig
        .client
        .execute_job("canvas", "users", SnapshotQuery::new(Format::Tsv))
        .await
        .unwrap();
    let records: Vec<Value> = rig
        .client
        .job_records(&job, Format::Tsv, None)
        .await
        .unwrap()
        .map_ok(|r| r.to_json())
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r["key"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(
        requests_to(&rig.server, "/bucket/j1/part-0.tsv.gz")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn an_object_that_stays_corrupt_is_a_download_error_naming_it() {
    let rig = rig().await;
    let full = gzip(b"key.id\n1\n2\n");
    mount_complete_job(&rig.server, "j1", &[&full]).await;
    Mock::given(method("GET"))
        .and(path("/bucket/j1/part-0.tsv.gz"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(full[..full.len() / 2].to_vec()))
        .with_priority(1)
        .mount(&rig.server)
        .await;
    let job = rig
        .client
        .execute_job("canvas", "users", SnapshotQuery::new(Format::Tsv))
        .await
        .unwrap();
    let e = rig
        .client
        .job_records(&job, Format::Tsv, None)
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Download { object_id, .. } if object_id == "j1/part-0.tsv.gz"),
        "{e:?}"
    );
    assert!(
        !e.to_string().contains("X-Amz-Signature"),
        "no signature in errors: {e}"
    );
}

#[tokio::test]
async fn rate_limits_are_waited_out_with_retry_after() {
    let rig = rig().await;
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .respond_with(
            json_reply(429, json!({"message": "Too Many Requests"}))
                .insert_header("retry-after", "7"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&rig.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/dap/query/canvas/table/users/data"))
        .respond_with(json_reply(202, json!({"id":"j1","status":"waiting"})))
        .mount(&rig.server)
        .await;
    let job = rig
        .client
        .query_snapshot("canvas", "users", &SnapshotQuery::new(Format::Jsonl))
        .await
        .unwrap();
    assert_eq!(job.id, "j1");
    assert!(
        rig.sleeper.sleeps().contains(&Duration::from_secs(7)),
        "{:?}",
        rig.sleeper.sleeps()
    );
}

#[tokio::test]
async fn watching_a_job_yields_each_state_then_the_failure() {
    let rig = rig().await;
    mount_job_sequence(
        &rig.server,
        &[
            json!({"id":"j1","status":"running"}),
            json!({"id":"j1","status":"failed","error":{"type":"ProcessingError","uuid":"u","message":"disk full"}}),
        ],
    )
    .await;
    let job: dap_client::Job =
        serde_json::from_value(json!({"id":"j1","status":"waiting"})).unwrap();
    let items: Vec<_> = futures::StreamExt::collect::<Vec<_>>(rig.client.watch_job(job)).await;
    assert!(
        matches!(&items[0], Ok(j) if j.status == JobStatus::Running),
        "{items:?}"
    );
    assert!(
        matches!(items.last(), Some(Err(Error::JobFailed { .. }))),
        "{items:?}"
    );
}

#[tokio::test]
async fn the_builder_line_cap_bounds_record_streams() {
    let long_row = format!("key.id\tvalue.name\n1\t{}\n", "x".repeat(300));
    for (cap, fits) in [(None, true), (Some(100), false)] {
        let rig = rig_with(|b| match cap {
            Some(cap) => b.max_line_len(cap),
            None => b,
        })
        .await;
        mount_complete_job(&rig.server, "j1", &[&gzip(long_row.as_bytes())]).await;
        let job = rig
            .client
            .execute_job("canvas", "users", SnapshotQuery::new(Format::Tsv))
            .await
            .unwrap();
        let outcome = rig
            .client
            .job_records(&job, Format::Tsv, None)
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await;
        match (fits, outcome) {
            (true, Ok(records)) => assert_eq!(records.len(), 1),
            (
                false,
                Err(Error::Decode(dap_client::record::DecodeError::LineTooLong { limit, .. })),
            ) => assert_eq!(limit, 100),
            (_, other) => panic!("cap {cap:?}: {other:?}"),
        }
    }
}
