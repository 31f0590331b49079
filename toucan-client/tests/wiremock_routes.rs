//! Each Toucan route, both auth modes, the login limit, and error bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use client_core::time::{ManualClock, RecordingSleeper};
use toucan_client::{
    AuthMode, Client, DomainSelection, Error, ErrorBody, Operation, OperationId, OperationState,
    OperationsRequest, PartialOperation, PollPolicy, RetryPolicy, SecretString, Stage, Upload,
};
use wiremock::matchers::{body_json, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const BASIC: &str = "Basic YW5uOnMzY3JldA=="; // ann:s3cret

fn client(server: &MockServer, mode: AuthMode) -> Client {
    let clock = ManualClock::new();
    let sleeper = RecordingSleeper::with_clock(clock.clone());
    Client::builder()
        .api_url(server.uri())
        .small_app("demo")
        .credentials("ann", SecretString::from("s3cret"))
        .auth_mode(mode)
        .poll_policy(PollPolicy::default().max_wait(Duration::from_secs(600)))
        .retry_policy(RetryPolicy::default().with_max_attempts(3))
        .sleeper(Arc::new(sleeper))
        .clock(Arc::new(clock))
        .jitter_seed(3)
        .build()
        .unwrap()
}

fn started(id: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(serde_json::json!({ "operation_id": id }))
}

#[tokio::test]
async fn full_populate_and_release_with_basic_auth() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/demo/operations"))
        .and(query_param("stage", "staging"))
        .and(header("authorization", BASIC))
        .and(body_json(serde_json::json!({
            "origin": "autofeed",
            "operations": ["preprocess_data_sources", "populate_basemaps", "populate_reports", "populate_dashboards", "release"]
        })))
        .respond_with(started("6530f3c2a1b2c3d4e5f60718"))
        .expect(1)
        .mount(&server)
        .await;
    let id = client(&server, AuthMode::Basic)
        .populate_and_release(Stage::Staging)
        .await
        .unwrap();
    assert_eq!(id, OperationId("6530f3c2a1b2c3d4e5f60718".into()));
}

#[tokio::test]
async fn production_sends_no_stage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/demo/operations"))
        .respond_with(started("op"))
        .mount(&server)
        .await;
    let req = OperationsRequest::new([Operation::Release]);
    client(&server, AuthMode::Basic)
        .start_operations(Stage::Production, &req)
        .await
        .unwrap();
    let got = server.received_requests().await.unwrap();
    assert_eq!(got[0].url.query(), None);
}

#[tokio::test]
async fn login_mode_logs_in_once_and_sends_the_bearer_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .and(body_json(
            serde_json::json!({"username": "ann", "password": "s3cret"}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "jwt-1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/demo/operations/state/op-1"))
        .and(header("authorization", "Bearer jwt-1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "running"})),
        )
        .expect(2)
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Login);
    for _ in 0..2 {
        let s = c
            .operation_status(&OperationId("op-1".into()))
            .await
            .unwrap();
        assert_eq!(s.status, OperationState::Running);
    }
}

#[tokio::test]
async fn bad_login_is_an_auth_error_with_the_plain_text_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string("Login failed. Invalid username or password"),
        )
        .mount(&server)
        .await;
    let err = client(&server, AuthMode::Login)
        .operation_status(&OperationId("x".into()))
        .await
        .unwrap_err();
    match &err {
        Error::Auth {
            status: 401,
            message,
        } => assert_eq!(message, "Login failed. Invalid username or password"),
        other => panic!("expected Auth, got {other:?}"),
    }
    assert!(!err.to_string().contains("s3cret"));
}

#[tokio::test]
async fn login_limit_is_a_rate_limit_error_with_the_server_message() {
    const LIMIT: &str = "Too many requests in a short time, please wait a bit and try again.";
    for status in [429u16, 401] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/login"))
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(serde_json::json!({ "message": LIMIT })),
            )
            .mount(&server)
            .await;
        let err = client(&server, AuthMode::Login)
            .populate_and_release(Stage::Staging)
            .await
            .unwrap_err();
        match &err {
            Error::RateLimited { message, .. } => assert_eq!(message, LIMIT, "status {status}"),
            other => panic!("status {status}: expected RateLimited, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn rejected_basic_credentials_are_an_auth_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/demo/operations"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({"statusCode": 401, "message": "Unauthorized"})),
        )
        .mount(&server)
        .await;
    let err = client(&server, AuthMode::Basic)
        .populate_and_release(Stage::Staging)
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Auth { status: 401, .. }), "{err:?}");
    assert!(err.to_string().contains("Unauthorized"), "{err}");
}

#[tokio::test]
async fn unknown_operation_is_typed_with_the_json_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/demo/operations"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"message": "unknown operation: warm_cache"})),
        )
        .mount(&server)
        .await;
    let req = OperationsRequest::new([Operation::from("warm_cache")]);
    let err = client(&server, AuthMode::Basic)
        .start_operations(Stage::Staging, &req)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownOperation { message } if message == "unknown operation: warm_cache"),
        "{err:?}"
    );
}

#[tokio::test]
async fn plain_text_and_json_error_bodies_are_kept_apart() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/demo/operations/state/text"))
        .respond_with(ResponseTemplate::new(404).set_body_string("Operation not found"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/demo/operations/state/json"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(serde_json::json!({"error": "no such operation"})),
        )
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Basic);
    let text = c
        .operation_status(&OperationId("text".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(&text, Error::Api { status: 404, body: ErrorBody::Text(t), .. } if t == "Operation not found"),
        "{text:?}"
    );
    let json = c
        .operation_status(&OperationId("json".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &json,
            Error::Api {
                status: 404,
                body: ErrorBody::Json(_),
                ..
            }
        ),
        "{json:?}"
    );
    assert!(json.to_string().contains("no such operation"), "{json}");
}

#[tokio::test]
async fn partial_routes_carry_the_selection_stage_and_release_flag() {
    let server = MockServer::start().await;
    let selection = DomainSelection::new()
        .input_domain("referential")
        .function("augment_sales")
        .output_domain("kpis");
    let expected = serde_json::json!({
        "input_domains": ["referential"], "function_names": ["augment_sales"], "output_domains": ["kpis"]
    });
    Mock::given(method("POST"))
        .and(path("/demo/data/preprocess"))
        .and(query_param("stage", "staging"))
        .and(body_json(expected.clone()))
        .respond_with(started("pre"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/demo/populate"))
        .and(query_param("stage", "staging"))
        .and(body_json(expected.clone()))
        .respond_with(ResponseTemplate::new(200).set_body_string(""))
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Basic);
    let pre = c
        .partial(Stage::Staging, PartialOperation::Preprocess, &selection)
        .await
        .unwrap();
    assert_eq!(pre, Some(OperationId("pre".into())));
    let pop = c
        .partial(Stage::Staging, PartialOperation::Populate, &selection)
        .await
        .unwrap();
    assert_eq!(pop, None, "an answer without an id is accepted");
    c.partial(
        Stage::Staging,
        PartialOperation::PopulateAndRelease,
        &selection,
    )
    .await
    .unwrap();
    let got = server.received_requests().await.unwrap();
    let queries: Vec<String> = got
        .iter()
        .map(|r| r.url.query().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        queries,
        ["stage=staging", "stage=staging", "release&stage=staging"]
    );
}

/// Answers the state route with the next state of a list.
struct States(Vec<&'static str>, AtomicUsize);

impl Respond for States {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let i = self.1.fetch_add(1, Ordering::SeqCst).min(self.0.len() - 1);
        let mut body = serde_json::json!({ "status": self.0[i] });
        if self.0[i] == "failed" {
            body["message"] = "augment function raised KeyError".into();
        }
        ResponseTemplate::new(200).set_body_json(body)
    }
}

#[tokio::test]
async fn wait_yields_every_state_until_successful() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/demo/operations/state/op-1"))
        .respond_with(States(
            vec!["pending", "pending", "running", "successful"],
            AtomicUsize::new(0),
        ))
        .mount(&server)
        .await;
    let mut seen = Vec::new();
    let done = client(&server, AuthMode::Basic)
        .wait_with(&OperationId("op-1".into()), |s| {
            seen.push(s.status.to_string())
        })
        .await
        .unwrap();
    assert!(done.status.is_success());
    assert_eq!(seen, ["pending", "pending", "running", "successful"]);
}

#[tokio::test]
async fn failed_operation_is_a_typed_failure_and_unknown_states_keep_polling() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/demo/operations/state/op-2"))
        .respond_with(States(
            vec!["queued", "running", "failed"],
            AtomicUsize::new(0),
        ))
        .mount(&server)
        .await;
    let err = client(&server, AuthMode::Basic)
        .wait(&OperationId("op-2".into()))
        .await
        .unwrap_err();
    match &err {
        Error::OperationFailed { id, message } => {
            assert_eq!(id.as_str(), "op-2");
            assert_eq!(message.as_deref(), Some("augment function raised KeyError"));
        }
        other => panic!("expected OperationFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn upload_streams_the_file_with_the_declared_name_and_validation_flag() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/demo/data/sources"))
        .and(query_param("validation", "false"))
        .and(header("authorization", BASIC))
        .and(body_string_contains(
            "name=\"data\"\r\n\r\n{\"filename\":\"sales.csv\"}",
        ))
        .and(body_string_contains(
            "name=\"file\"; filename=\"sales.csv\"",
        ))
        .and(body_string_contains("region,amount\nEMEA,3\n"))
        .respond_with(started("up-1"))
        .expect(1)
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export-2024.csv");
    std::fs::write(&file, "region,amount\nEMEA,3\n").unwrap();
    let upload = Upload::new(&file)
        .unwrap()
        .named("sales.csv")
        .validation(false);
    let receipt = client(&server, AuthMode::Basic)
        .upload(&upload)
        .await
        .unwrap();
    assert_eq!(receipt.bytes, 21);
    assert_eq!(receipt.operation_id, Some(OperationId("up-1".into())));
}

#[tokio::test]
async fn directory_upload_reports_each_file() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/demo/data/sources"))
        .and(body_string_contains("{\"filename\":\"b.csv\"}"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"message": "b.csv is not a data source"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/demo/data/sources"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    for name in ["c.csv", "a.csv", "b.csv", ".hidden"] {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let outcomes = client(&server, AuthMode::Basic)
        .upload_dir(dir.path(), None, 2)
        .await
        .unwrap();
    let names: Vec<&str> = outcomes.iter().map(|o| o.upload.name()).collect();
    assert_eq!(names, ["a.csv", "b.csv", "c.csv"]);
    assert!(outcomes[0].result.is_ok() && outcomes[2].result.is_ok());
    let err = outcomes[1].result.as_ref().unwrap_err();
    assert!(
        err.to_string().contains("b.csv is not a data source"),
        "{err}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn server_errors_are_retried_and_rate_limits_typed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/demo/operations"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream down"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/demo/operations"))
        .respond_with(started("op-after-retry"))
        .mount(&server)
        .await;
    let c = client(&server, AuthMode::Basic);
    assert_eq!(
        c.populate_and_release(Stage::Staging)
            .await
            .unwrap()
            .as_str(),
        "op-after-retry"
    );

    let limited = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(serde_json::json!({"message": "slow down"})),
        )
        .mount(&limited)
        .await;
    let err = client(&limited, AuthMode::Basic)
        .operation_status(&OperationId("x".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RateLimited { status: 429, message, .. } if message == "slow down"),
        "{err:?}"
    );
    assert_eq!(
        limited.received_requests().await.unwrap().len(),
        3,
        "429 was retried up to the budget"
    );
}

#[test]
fn env_lookup_names_every_missing_variable() {
    let err =
        Client::builder_from_lookup(|n| (n == "TOUCAN_API_URL").then(|| "https://x".to_string()))
            .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("TOUCAN_SMALL_APP")
            && msg.contains("TOUCAN_USERNAME")
            && msg.contains("TOUCAN_PASSWORD")
    );
    assert!(!msg.contains("TOUCAN_API_URL"));
}

#[test]
fn small_app_must_be_one_path_segment() {
    let err = Client::builder()
        .api_url("https://x")
        .small_app("a/b")
        .credentials("u", SecretString::from("p"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("a/b"));
}

#[tokio::test]
async fn secrets_never_show_in_debug() {
    let server = MockServer::start().await;
    for mode in [AuthMode::Basic, AuthMode::Login] {
        let debug = format!("{:?}", client(&server, mode));
        assert!(
            !debug.contains("s3cret") && !debug.contains("YW5uOnMzY3JldA"),
            "{debug}"
        );
    }
}

#[tokio::test]
async fn a_rejected_login_token_triggers_one_new_login() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "jwt-old"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "jwt-new"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/demo/operations/state/op"))
        .and(header("authorization", "Bearer jwt-new"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"status": "successful"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/demo/operations/state/op"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({"statusCode": 401, "message": "Unauthorized"})),
        )
        .mount(&server)
        .await;
    let s = client(&server, AuthMode::Login)
        .operation_status(&OperationId("op".into()))
        .await
        .unwrap();
    assert!(s.status.is_success());
    let logins = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/login")
        .count();
    assert_eq!(logins, 2);
}
