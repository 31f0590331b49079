//! Each LD call and each OAuth error against a wiremock server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use client_core::time::{ManualClock, RecordingSleeper};
use ldbatch_client::{
    Client, ContentType, Error, ExportRequest, FileSource, ImportRequest, JobStatus, PollPolicy,
    SecretString,
};
use wiremock::matchers::{body_string_contains, header, header_exists, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "31a15228-896a-11e5-af63-feff819cdc9f";

fn job_json(id: &str, status: &str, reason: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "submitTime": "2015-05-26T13:35:25+0000", "jobId": id, "jobName": "Attendee Import Job",
        "contentType": "application/json", "itemType": "Attendee",
        "recordsProcessed": "12", "runTime": 40, "status": status, "reason": reason,
    })
}

async fn server_with_token() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/oauth2/token"))
        .and(body_string_contains("grant_type=password"))
        .and(body_string_contains("client_id=cid"))
        .and(body_string_contains("client_secret=csecret"))
        .and(body_string_contains("username=ann"))
        .and(body_string_contains("password=pw"))
        .and(body_string_contains("scope=community%3DAcme"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600}),
        ))
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer, strict: bool) -> (Client, RecordingSleeper) {
    let clock = ManualClock::new();
    let sleeper = RecordingSleeper::with_clock(clock.clone());
    let client = Client::builder()
        .base_url(server.uri())
        .client("cid", SecretString::from("csecret"))
        .user("ann", SecretString::from("pw"))
        .community("Acme")
        .poll_policy(PollPolicy::default().max_wait(Duration::from_secs(600)))
        .strict_transitions(strict)
        .sleeper(Arc::new(sleeper.clone()))
        .clock(Arc::new(clock))
        .jitter_seed(7)
        .build()
        .unwrap();
    (client, sleeper)
}

fn bearer() -> wiremock::matchers::HeaderExactMatcher {
    header("authorization", format!("Bearer {TOKEN}").as_str())
}

/// Answers each call with the next status of a list (the last one repeats).
struct Sequence(Vec<&'static str>, AtomicUsize);

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.1.fetch_add(1, Ordering::SeqCst).min(self.0.len() - 1);
        let reason = match self.0[i] {
            "Rejected" => Some("itemType Foo is not in the schema"),
            "Failed" => Some("row 17: bad date"),
            "Canceled" => Some("canceled by user"),
            _ => None,
        };
        ResponseTemplate::new(200).set_body_json(job_json("job-1", self.0[i], reason))
    }
}

async fn mount_status(server: &MockServer, statuses: Vec<&'static str>) {
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/status"))
        .and(bearer())
        .and(body_string_contains("jobId=job-1"))
        .respond_with(Sequence(statuses, AtomicUsize::new(0)))
        .mount(server)
        .await;
}

#[tokio::test]
async fn import_streams_a_file_as_multipart_with_the_documented_fields() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/import"))
        .and(bearer())
        .and(header_exists("content-type"))
        .and(body_string_contains(
            r#"name="file"; filename="attendees.json""#,
        ))
        .and(body_string_contains("[{\"id\":1},{\"id\":2}]"))
        .and(body_string_contains(
            r#"name="template"; filename="map.json""#,
        ))
        .and(body_string_contains("Content-Type: application/json"))
        .and(body_string_contains("expires: 0"))
        .and(body_string_contains("name=\"itemType\"\r\n\r\nAttendee"))
        .and(body_string_contains(
            "name=\"contentType\"\r\n\r\napplication/json",
        ))
        .and(body_string_contains("name=\"merge\"\r\n\r\nfalse"))
        .and(body_string_contains("name=\"jobName\"\r\n\r\nnightly"))
        .respond_with(ResponseTemplate::new(200).set_body_json(job_json(
            "job-1",
            "Initialized",
            None,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attendees.json");
    std::fs::write(&file, "[{\"id\":1},{\"id\":2}]").unwrap();
    let (client, _) = client(&server, false);
    let req = ImportRequest::new("Attendee", ContentType::Json, file.as_path())
        .job_name("nightly")
        .merge(false)
        .template(FileSource::Bytes {
            file_name: "map.json".into(),
            bytes: "{}".into(),
        });
    let job = client.import(&req).await.unwrap();
    assert_eq!(job.job_id, "job-1");
    assert_eq!(job.status, JobStatus::Initialized);
    assert_eq!(job.records_processed, Some(12));
}

#[tokio::test]
async fn csv_import_says_plain_text_as_the_service_spells_it() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/import"))
        .and(body_string_contains(
            "name=\"contentType\"\r\n\r\nplain/text",
        ))
        .and(body_string_contains("Content-Type: plain/text"))
        .respond_with(ResponseTemplate::new(200).set_body_json(job_json(
            "job-1",
            "Initialized",
            None,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let (client, _) = client(&server, false);
    let req = ImportRequest::new(
        "Account",
        ContentType::Csv,
        FileSource::Bytes {
            file_name: "a.csv".into(),
            bytes: "id\n1\n".into(),
        },
    );
    client.import(&req).await.unwrap();
}

#[tokio::test]
async fn missing_import_file_fails_before_any_request() {
    let server = MockServer::start().await;
    let (client, _) = client(&server, false);
    let req = ImportRequest::new(
        "Account",
        ContentType::Json,
        std::path::Path::new("/nonexistent/x.json"),
    );
    let err = client.import(&req).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/x.json"), "{err}");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn export_sends_the_query_and_drops_filters() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/export"))
        .and(bearer())
        .and(body_string_contains("sqlQuery=select+*+from+Account"))
        .and(body_string_contains("contentType=text%2Fplain"))
        .and(body_string_contains("rowHeader=true"))
        .respond_with(ResponseTemplate::new(200).set_body_json(job_json(
            "job-1",
            "Initialized",
            None,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let (client, _) = client(&server, false);
    let req = ExportRequest::new("Account", ContentType::Csv)
        .sql_query("select * from Account")
        .filter("region", "EMEA")
        .row_header(true);
    client.export(&req).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let export = requests
        .iter()
        .find(|r| r.url.path() == "/ls/api/batch/export")
        .unwrap();
    assert!(!String::from_utf8_lossy(&export.body).contains("filters"));
}

#[tokio::test]
async fn export_with_filters_sends_them_as_json() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/export"))
        .and(body_string_contains(
            "filters=%7B%22region%22%3A%22EMEA%22%7D",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(job_json(
            "job-1",
            "Initialized",
            None,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let (client, _) = client(&server, false);
    client
        .export(&ExportRequest::new("Account", ContentType::Json).filter("region", "EMEA"))
        .await
        .unwrap();
}

#[tokio::test]
async fn status_reuses_the_token_and_parses_the_job() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/oauth2/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"access_token": TOKEN})),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_status(&server, vec!["Processing"]).await;
    let (client, _) = client(&server, false);
    for _ in 0..3 {
        let job = client.status("job-1").await.unwrap();
        assert_eq!(job.status, JobStatus::Processing);
        assert_eq!(job.run_time, Some(Duration::from_millis(40)));
    }
}

#[tokio::test]
async fn unknown_job_is_job_not_found() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/status"))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(serde_json::json!({"message": "no such job"})),
        )
        .mount(&server)
        .await;
    let (client, _) = client(&server, false);
    let err = client.status("nope").await.unwrap_err();
    assert!(
        matches!(&err, Error::JobNotFound { job_id, .. } if job_id == "nope"),
        "{err:?}"
    );
}

#[tokio::test]
async fn cancel_returns_canceling_and_a_finished_job_is_not_cancelable() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/cancel"))
        .and(bearer())
        .and(body_string_contains("jobId=job-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(job_json(
            "job-1",
            "Canceling",
            None,
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/cancel"))
        .and(body_string_contains("jobId=job-2"))
        .respond_with(
            ResponseTemplate::new(409)
                .set_body_json(serde_json::json!({"message": "job is Completed"})),
        )
        .mount(&server)
        .await;
    let (client, _) = client(&server, false);
    assert_eq!(
        client.cancel("job-1").await.unwrap().status,
        JobStatus::Canceling
    );
    let err = client.cancel("job-2").await.unwrap_err();
    assert!(
        matches!(&err, Error::NotCancelable { job_id, .. } if job_id == "job-2"),
        "{err:?}"
    );
    assert!(err.to_string().contains("job is Completed"), "{err}");
}

#[tokio::test]
async fn wait_yields_each_status_and_returns_the_completed_job() {
    let server = server_with_token().await;
    mount_status(
        &server,
        vec![
            "Initialized",
            "Accepted",
            "Accepted",
            "Processing",
            "Completed",
        ],
    )
    .await;
    let (client, sleeper) = client(&server, true);
    let mut seen = Vec::new();
    let job = client
        .wait_with("job-1", |j| seen.push(j.status.clone()))
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    let names: Vec<&str> = seen.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "Initialized",
            "Accepted",
            "Accepted",
            "Processing",
            "Completed"
        ]
    );
    assert_eq!(
        sleeper.sleeps().len(),
        4,
        "one pause between consecutive polls"
    );
}

#[tokio::test]
async fn unsuccessful_endings_are_typed_with_their_reason() {
    for (statuses, expect) in [
        (vec!["Initialized", "Rejected"], "rejected"),
        (vec!["Accepted", "Processing", "Failed"], "failed"),
        (vec!["Processing", "Canceling", "Canceled"], "canceled"),
    ] {
        let server = server_with_token().await;
        mount_status(&server, statuses).await;
        let (client, _) = client(&server, true);
        let err = client.wait("job-1").await.unwrap_err();
        match (&err, expect) {
            (
                Error::Rejected {
                    reason: Some(r), ..
                },
                "rejected",
            ) => assert!(r.contains("not in the schema")),
            (
                Error::Failed {
                    reason: Some(r), ..
                },
                "failed",
            ) => assert_eq!(r, "row 17: bad date"),
            (
                Error::Canceled {
                    reason: Some(r), ..
                },
                "canceled",
            ) => assert_eq!(r, "canceled by user"),
            _ => panic!("expected {expect}, got {err:?}"),
        }
    }
}

#[tokio::test]
async fn illegal_transition_is_an_error_only_in_strict_mode() {
    let server = server_with_token().await;
    mount_status(
        &server,
        vec!["Processing", "Accepted", "Processing", "Completed"],
    )
    .await;
    let (strict, _) = client(&server, true);
    let err = strict.wait("job-1").await.unwrap_err();
    assert!(
        matches!(&err, Error::IllegalTransition(t) if t.from == JobStatus::Processing && t.to == JobStatus::Accepted),
        "{err:?}"
    );

    let server = server_with_token().await;
    mount_status(
        &server,
        vec!["Processing", "Accepted", "Processing", "Completed"],
    )
    .await;
    let (lenient, _) = client(&server, false);
    assert_eq!(
        lenient.wait("job-1").await.unwrap().status,
        JobStatus::Completed
    );
}

#[tokio::test]
async fn wait_times_out_with_the_poll_count() {
    let server = server_with_token().await;
    mount_status(&server, vec!["Processing"]).await;
    let (client, _) = client(&server, false);
    let err = client.wait("job-1").await.unwrap_err();
    assert!(
        matches!(&err, Error::Core(client_core::Error::Timeout { polls, .. }) if *polls > 1),
        "{err:?}"
    );
}

#[tokio::test]
async fn oauth_errors_are_typed_with_code_and_description() {
    for (status, body, code, description) in [
        (
            400,
            r#"{"error":"invalid_grant","error_description":"Bad credentials"}"#,
            Some("invalid_grant"),
            Some("Bad credentials"),
        ),
        (
            401,
            r#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
            Some("invalid_client"),
            Some("Client authentication failed"),
        ),
        (
            400,
            r#"{"error":"invalid_scope"}"#,
            Some("invalid_scope"),
            None,
        ),
        (
            401,
            r#"{"error":"unauthorized_client","error_description":"community Acme unknown"}"#,
            Some("unauthorized_client"),
            Some("community Acme unknown"),
        ),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/ls/api/oauth2/token"))
            .respond_with(ResponseTemplate::new(status).set_body_raw(body, "application/json"))
            .mount(&server)
            .await;
        let (client, _) = client(&server, false);
        let err = client.status("job-1").await.unwrap_err();
        match &err {
            Error::OAuth {
                error,
                description: d,
                status: s,
            } => {
                assert_eq!(error.as_deref(), code);
                assert_eq!(d.as_deref(), description);
                assert_eq!(*s, Some(status));
            }
            other => panic!("{body}: expected OAuth, got {other:?}"),
        }
        assert!(!err.to_string().contains("csecret"), "{err}");
        // No batch call was attempted without a token.
        let calls = server.received_requests().await.unwrap();
        assert!(calls.iter().all(|r| r.url.path() == "/ls/api/oauth2/token"));
    }
}

#[tokio::test]
async fn token_endpoint_outage_is_a_server_error_not_oauth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/oauth2/token"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .mount(&server)
        .await;
    let (client, _) = client(&server, false);
    let err = client.status("job-1").await.unwrap_err();
    assert!(matches!(&err, Error::Core(_)), "{err:?}");
    assert_eq!(err.status(), Some(503));
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_with_the_message() {
    let server = server_with_token().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/status"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(serde_json::json!({"message": "database down"})),
        )
        .mount(&server)
        .await;
    let (client, sleeper) = client(&server, false);
    let err = client.status("job-1").await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.to_string().contains("database down"), "{err}");
    assert!(!sleeper.sleeps().is_empty(), "the 500 was retried");
}

#[tokio::test]
async fn secrets_never_show_in_debug() {
    let server = MockServer::start().await;
    let (client, _) = client(&server, false);
    let debug = format!("{client:?}");
    assert!(
        !debug.contains("csecret") && !debug.contains("\"pw\""),
        "{debug}"
    );
}

#[tokio::test]
async fn export_results_download_without_the_token_on_other_hosts() {
    let server = server_with_token().await;
    let storage = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/bucket/export-1.json"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[{\"id\":1}]"))
        .expect(1)
        .mount(&storage)
        .await;
    let mut done = job_json("job-1", "Completed", None);
    done["downloadUrls"] =
        serde_json::json!([format!("{}/bucket/export-1.json?sig=abc", storage.uri())]);
    Mock::given(method("POST"))
        .and(path("/ls/api/batch/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(done))
        .mount(&server)
        .await;
    let (client, _) = client(&server, false);
    let job = client.wait("job-1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = client.download_results(&job, dir.path()).await.unwrap();
    assert_eq!(files, vec![dir.path().join("export-1.json")]);
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), "[{\"id\":1}]");
    let got = storage.received_requests().await.unwrap();
    assert!(got.iter().all(|r| !r.headers.contains_key("authorization")));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[tokio::test]
async fn failed_download_leaves_nothing_behind() {
    let server = server_with_token().await;
    Mock::given(method("GET"))
        .and(path("/files/out.json"))
        .respond_with(ResponseTemplate::new(403).set_body_string("expired"))
        .mount(&server)
        .await;
    let mut done = job_json("job-1", "Completed", None);
    done["fileUrl"] = serde_json::json!(format!("{}/files/out.json", server.uri()));
    let job: ldbatch_client::Job = serde_json::from_value(done).unwrap();
    let (client, _) = client(&server, false);
    let dir = tempfile::tempdir().unwrap();
    let err = client.download_results(&job, dir.path()).await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let got = server.received_requests().await.unwrap();
    assert!(
        got.iter()
            .filter(|r| r.url.path() == "/files/out.json")
            .all(|r| !r.headers.contains_key("authorization"))
    );
}

#[tokio::test]
async fn same_origin_link_asking_for_auth_gets_the_token() {
    let server = server_with_token().await;
    Mock::given(method("GET"))
        .and(path("/ls/api/batch/download/job-1"))
        .and(bearer())
        .respond_with(ResponseTemplate::new(200).set_body_string("id\n1\n"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/ls/api/batch/download/job-1"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(serde_json::json!({"error": "invalid_token"})),
        )
        .mount(&server)
        .await;
    let mut done = job_json("job-1", "Completed", None);
    done["downloadLinks"] =
        serde_json::json!([format!("{}/ls/api/batch/download/job-1", server.uri())]);
    let job: ldbatch_client::Job = serde_json::from_value(done).unwrap();
    let (client, _) = client(&server, false);
    let dir = tempfile::tempdir().unwrap();
    let files = client.download_results(&job, dir.path()).await.unwrap();
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), "id\n1\n");
}

#[test]
fn env_lookup_names_every_missing_variable() {
    let err =
        Client::builder_from_lookup(|n| (n == "LD_BASE_URL").then(|| "https://x".to_string()))
            .unwrap_err();
    let msg = err.to_string();
    for var in [
        "LD_CLIENT_ID",
        "LD_CLIENT_SECRET",
        "LD_USERNAME",
        "LD_PASSWORD",
        "LD_COMMUNITY",
    ] {
        assert!(msg.contains(var), "{msg}");
    }
    assert!(!msg.contains("LD_BASE_URL"));
}
