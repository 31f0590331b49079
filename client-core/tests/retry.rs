//! The retry loop: which failures are retried, how long it waits, and that
//! every attempt is a complete, freshly authenticated request.

mod support;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use client_core::auth::{AccessToken, TokenProvider};
use client_core::http::{Multipart, Part, Request};
use client_core::retry::{
    FixedRandom, ForbiddenWithRetryAfter, ResponseView, RetryClassifier, RetryDecision, RetryPolicy,
};
use client_core::{Error, SecretString, TransportKind};
use support::{Conn, Rig, authorization, scripted_server};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Mounts `first` once, then 200 for every later request to `/r`.
async fn fail_once_then_ok(first: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(path("/r"))
        .respond_with(first)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/r"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.expect("recording is on")
}

#[tokio::test]
async fn transient_statuses_are_retried() {
    for status in [408, 429, 500, 502, 503, 504] {
        let server = fail_once_then_ok(ResponseTemplate::new(status)).await;
        let rig = Rig::new();
        let client = rig.client(&server.uri());
        let response = client.execute(Request::post("/r")).await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "status {status} should have been retried"
        );
        assert_eq!(requests(&server).await.len(), 2, "status {status}");
    }
}

#[tokio::test]
async fn final_statuses_are_not_retried() {
    for status in [400, 401, 403, 404, 501] {
        let server = fail_once_then_ok(ResponseTemplate::new(status)).await;
        let rig = Rig::new();
        let client = rig.client(&server.uri());
        let response = client.execute(Request::get("/r")).await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(
            requests(&server).await.len(),
            1,
            "status {status} must not be retried"
        );
        assert!(rig.sleeps().is_empty());
    }
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let server =
        fail_once_then_ok(ResponseTemplate::new(429).insert_header("retry-after", "2")).await;
    let rig = Rig::new();
    let response = rig
        .client(&server.uri())
        .execute(Request::get("/r"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(rig.sleeps(), vec![Duration::from_secs(2)]);
}

#[tokio::test]
async fn retry_after_http_date_is_honoured() {
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let template = ResponseTemplate::new(503)
        .insert_header("date", httpdate::fmt_http_date(date).as_str())
        .insert_header(
            "retry-after",
            httpdate::fmt_http_date(date + Duration::from_secs(7)).as_str(),
        );
    let server = fail_once_then_ok(template).await;
    let rig = Rig::new();
    let response = rig
        .client(&server.uri())
        .execute(Request::get("/r"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(rig.sleeps(), vec![Duration::from_secs(7)]);
}

#[tokio::test]
async fn retry_after_is_capped() {
    let server =
        fail_once_then_ok(ResponseTemplate::new(503).insert_header("retry-after", "86400")).await;
    let rig = Rig::new();
    let policy = RetryPolicy::default().with_max_retry_after(Duration::from_secs(30));
    let client = rig
        .builder(&server.uri())
        .retry_policy(policy)
        .build()
        .unwrap();
    client.execute(Request::get("/r")).await.unwrap();
    assert_eq!(rig.sleeps(), vec![Duration::from_secs(30)]);
}

#[tokio::test]
async fn backoff_is_exponential_up_to_the_cap_when_the_server_gives_no_hint() {
    let server = MockServer::start().await;
    Mock::given(path("/r"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let policy = RetryPolicy::default().with_max_attempts(5).with_backoff(
        Duration::from_secs(1),
        Duration::from_secs(3),
        2.0,
    );
    let client = rig
        .builder(&server.uri())
        .retry_policy(policy)
        .random(Arc::new(FixedRandom::new(1.0)))
        .build()
        .unwrap();
    let response = client.execute(Request::get("/r")).await.unwrap();
    assert_eq!(response.status(), 500);
    let secs = [1, 2, 3, 3].map(Duration::from_secs).to_vec();
    assert_eq!(rig.sleeps(), secs);
}

#[tokio::test]
async fn the_attempt_budget_holds_and_send_reports_exhaustion() {
    let server = MockServer::start().await;
    Mock::given(path("/r"))
        .respond_with(
            ResponseTemplate::new(503)
                .insert_header("x-request-id", "rq-9")
                .set_body_json(serde_json::json!({"message": "maintenance"})),
        )
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client = rig
        .builder(&server.uri())
        .retry_policy(RetryPolicy::default().with_max_attempts(3))
        .build()
        .unwrap();
    let err = client.send(Request::get("/r")).await.unwrap_err();
    assert_eq!(requests(&server).await.len(), 3);
    assert_eq!(rig.sleeps().len(), 2);
    match &err {
        Error::RetriesExhausted {
            attempts: 3, last, ..
        } => {
            assert!(matches!(**last, Error::Api(_)));
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(err.status(), Some(503));
    let api = err.api().unwrap();
    assert_eq!(api.message.as_deref(), Some("maintenance"));
    assert_eq!(api.request_id.as_deref(), Some("rq-9"));
    assert!(err.to_string().contains("maintenance"), "{err}");
}

#[tokio::test]
async fn the_deadline_holds_and_no_sleep_ends_past_it() {
    let server = MockServer::start().await;
    Mock::given(path("/r"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "20"))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let policy = RetryPolicy::default()
        .with_max_attempts(100)
        .with_deadline(Duration::from_secs(50));
    let client = rig
        .builder(&server.uri())
        .retry_policy(policy)
        .build()
        .unwrap();
    let response = client.execute(Request::get("/r")).await.unwrap();
    assert_eq!(response.status(), 503);
    // t=0 fail, sleep 20, t=20 fail, sleep 20, t=40 fail; 40+20 > 50: stop
    assert_eq!(rig.sleeps(), vec![Duration::from_secs(20); 2]);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn a_reset_connection_is_retried_for_get() {
    let (base, accepted) = scripted_server(vec![Conn::Reset, Conn::Close, Conn::Ok]).await;
    let rig = Rig::new();
    let response = rig.client(&base).execute(Request::get("/r")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_reset_connection_is_not_retried_for_an_unmarked_post() {
    for conn in [Conn::Reset, Conn::Close] {
        let (base, accepted) = scripted_server(vec![conn, Conn::Ok]).await;
        let rig = Rig::new();
        let err = rig
            .client(&base)
            .execute(Request::post("/r").json(&serde_json::json!({"n": 1})))
            .await
            .unwrap_err();
        match err {
            Error::Transport {
                kind: TransportKind::Interrupted,
                ..
            } => {}
            other => panic!("{conn:?}: expected an interrupted transport error, got {other:?}"),
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "{conn:?}");
    }
}

#[tokio::test]
async fn a_post_marked_idempotent_is_retried_after_a_reset() {
    let (base, accepted) = scripted_server(vec![Conn::Reset, Conn::Ok]).await;
    let rig = Rig::new();
    let response = rig
        .client(&base)
        .execute(
            Request::post("/r")
                .bytes("x", "text/plain")
                .idempotent(true),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connect_failures_are_retried_even_for_post_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener); // nothing listens there any more
    let rig = Rig::new();
    let client = rig
        .builder(&base)
        .retry_policy(RetryPolicy::default().with_max_attempts(3))
        .build()
        .unwrap();
    let err = client
        .execute(Request::post("/r?sig=SECRETSIG"))
        .await
        .unwrap_err();
    assert_eq!(rig.sleeps().len(), 2);
    match &err {
        Error::RetriesExhausted {
            attempts: 3, last, ..
        } => {
            assert!(matches!(
                **last,
                Error::Transport {
                    kind: TransportKind::Connect,
                    ..
                }
            ));
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("SECRETSIG"));
}

/// Hands out `tok-1`, `tok-2`, ... one per call.
#[derive(Debug, Default)]
struct CountingProvider(AtomicUsize);

#[async_trait::async_trait]
impl TokenProvider for CountingProvider {
    async fn token(&self) -> client_core::Result<AccessToken> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(AccessToken::new(
            SecretString::from(format!("tok-{n}")),
            None,
        ))
    }
    async fn invalidate(&self, _: &AccessToken) {}
}

#[tokio::test]
async fn each_attempt_carries_the_current_token() {
    let server = MockServer::start().await;
    Mock::given(path("/r"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path("/r"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client = rig
        .builder(&server.uri())
        .bearer(Arc::new(CountingProvider::default()))
        .build()
        .unwrap();
    client.send(Request::get("/r")).await.unwrap();
    let seen: Vec<_> = requests(&server).await.iter().map(authorization).collect();
    assert_eq!(
        seen,
        ["Bearer tok-1", "Bearer tok-2", "Bearer tok-3"]
            .map(|s| Some(s.to_string()))
            .to_vec()
    );
}

#[tokio::test]
async fn multipart_file_bodies_are_resent_whole() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    file.write_all(&content).unwrap();
    file.flush().unwrap();

    let server = fail_once_then_ok(ResponseTemplate::new(503)).await;
    let rig = Rig::new();
    let form = Multipart::new().text("jobName", "accounts").part(
        "file",
        Part::file(file.path())
            .file_name("accounts.csv")
            .content_type("text/csv"),
    );
    let response = rig
        .client(&server.uri())
        .send(Request::post("/r").multipart(form))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = requests(&server).await;
    assert_eq!(received.len(), 2);
    for req in &received {
        let body = &req.body;
        assert!(
            body.windows(content.len()).any(|w| w == content.as_slice()),
            "file sent whole"
        );
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("filename=\"accounts.csv\""));
        assert!(text.contains("Content-Type: text/csv"));
        assert!(text.contains("accounts\r\n"));
    }
    // each attempt has its own boundary, but the same size
    assert_eq!(received[0].body.len(), received[1].body.len());
}

#[tokio::test]
async fn a_403_with_retry_after_is_a_quota_signal_for_a_classifier() {
    let server =
        fail_once_then_ok(ResponseTemplate::new(403).insert_header("retry-after", "5")).await;
    let rig = Rig::new();
    let client = rig
        .builder(&server.uri())
        .classifier(Arc::new(ForbiddenWithRetryAfter))
        .build()
        .unwrap();
    let response = client.execute(Request::get("/r")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(rig.sleeps(), vec![Duration::from_secs(5)]);

    // without Retry-After a 403 stays a permission error
    let server = fail_once_then_ok(ResponseTemplate::new(403)).await;
    let client = rig
        .builder(&server.uri())
        .classifier(Arc::new(ForbiddenWithRetryAfter))
        .build()
        .unwrap();
    assert_eq!(
        client.execute(Request::get("/r")).await.unwrap().status(),
        403
    );
    assert_eq!(requests(&server).await.len(), 1);
}

/// Treats a 429 whose body says `insufficient_quota` as final.
#[derive(Debug)]
struct QuotaIsFinal;

impl RetryClassifier for QuotaIsFinal {
    fn classify(&self, response: &ResponseView<'_>) -> RetryDecision {
        let body = String::from_utf8_lossy(response.body_prefix);
        if response.status == 429 && body.contains("insufficient_quota") {
            RetryDecision::DoNotRetry
        } else {
            RetryDecision::Default
        }
    }
}

#[tokio::test]
async fn a_classifier_can_forbid_a_retry_by_body() {
    let server = fail_once_then_ok(
        ResponseTemplate::new(429).set_body_string(r#"{"error":"insufficient_quota"}"#),
    )
    .await;
    let rig = Rig::new();
    let client = rig
        .builder(&server.uri())
        .classifier(Arc::new(QuotaIsFinal))
        .build()
        .unwrap();
    let err = client.send(Request::get("/r")).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert!(
        matches!(err, Error::Api(_)),
        "not wrapped: no retry happened"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_request_can_opt_out_of_retries() {
    let server = fail_once_then_ok(ResponseTemplate::new(503)).await;
    let rig = Rig::new();
    let response = rig
        .client(&server.uri())
        .execute(Request::get("/r").no_retry())
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(requests(&server).await.len(), 1);
}

/// Collects formatted `tracing` output.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log of this test binary. A global subscriber, because a thread-local
/// one can miss events whose callsite another test thread registered first;
/// each test picks out its own lines by its server's unique URL.
fn captured_log() -> Captured {
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        captured
    })
    .clone()
}

#[tokio::test]
async fn each_retry_is_logged_once_with_a_redacted_url_and_no_token() {
    let captured = captured_log();
    let server = MockServer::start().await;
    Mock::given(path("/r"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "4"))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path("/r"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client = rig
        .builder(&server.uri())
        .bearer(Arc::new(client_core::auth::StaticToken::new(
            SecretString::from("TOKEN-XYZ"),
        )))
        .build()
        .unwrap();
    client
        .send(Request::get("/r").query("sig", "SIG-SECRET"))
        .await
        .unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let ours = format!("url={}/r", server.uri());
    let events: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("retrying request") && l.contains(&ours))
        .collect();
    assert_eq!(events.len(), 2, "{log}");
    assert!(
        events[0].contains("attempt=1") && events[1].contains("attempt=2"),
        "{log}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.contains("delay_ms=4000") && e.contains("HTTP 503")),
        "{log}"
    );
    assert!(
        !log.contains("SIG-SECRET") && !log.contains("TOKEN-XYZ"),
        "{log}"
    );
}

#[tokio::test]
async fn timeouts_are_retried_only_for_idempotent_requests() {
    let (base, accepted) = scripted_server(vec![Conn::Hang, Conn::Ok]).await;
    let rig = Rig::new();
    let client = rig.client(&base);
    let quick = Duration::from_millis(200);
    let response = client
        .execute(Request::get("/r").timeout(quick))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    let (base, accepted) = scripted_server(vec![Conn::Hang, Conn::Ok]).await;
    let err = rig
        .client(&base)
        .execute(Request::post("/r").timeout(quick))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Timeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_policys_response_timeout_abandons_a_silent_attempt() {
    let quick = RetryPolicy::default().with_response_timeout(Duration::from_millis(200));
    let rig = Rig::new();

    // An idempotent request is sent again and gets the answer.
    let (base, accepted) = scripted_server(vec![Conn::Hang, Conn::Ok]).await;
    let client = rig
        .builder(&base)
        .retry_policy(quick.clone())
        .build()
        .unwrap();
    let response = client.execute(Request::get("/r")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // A POST may have reached the server: one attempt, a typed timeout.
    let (base, accepted) = scripted_server(vec![Conn::Hang, Conn::Ok]).await;
    let client = rig
        .builder(&base)
        .retry_policy(quick.clone())
        .build()
        .unwrap();
    let err = client.execute(Request::post("/r")).await.unwrap_err();
    let Error::Transport { kind, message, .. } = &err else {
        panic!("expected a transport error, got {err:?}");
    };
    assert_eq!(*kind, TransportKind::Timeout);
    assert!(message.contains("response timeout"), "{message}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_json_body_cut_off_is_requested_again_only_when_idempotent() {
    let rig = Rig::new();
    let (base, accepted) = scripted_server(vec![Conn::Truncated, Conn::Json(r#"{"n":1}"#)]).await;
    let value: serde_json::Value = rig
        .client(&base)
        .send_json(Request::get("/r"))
        .await
        .unwrap();
    assert_eq!(value["n"], 1);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        rig.sleeps().len(),
        1,
        "one backoff before the second request"
    );

    // An unmarked POST may have taken effect: its broken body is the error.
    let (base, accepted) = scripted_server(vec![Conn::Truncated, Conn::Json(r#"{"n":1}"#)]).await;
    let err = rig
        .client(&base)
        .send_json::<serde_json::Value>(Request::post("/r"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Transport {
                kind: TransportKind::Interrupted,
                method,
                ..
            } if method == "POST"
        ),
        "{err:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A whole body that is not JSON is a decode error, sent once.
    let (base, accepted) = scripted_server(vec![Conn::Ok, Conn::Ok]).await;
    let err = rig
        .client(&base)
        .send_json::<serde_json::Value>(Request::get("/r"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_401_whose_body_breaks_off_is_still_reported_as_rejected_credentials() {
    let (base, _) = scripted_server(vec![Conn::TruncatedStatus(401)]).await;
    let rig = Rig::new();
    let client = rig
        .builder(&base)
        .basic(client_core::auth::BasicCredentials::new(
            "user",
            SecretString::from("password"),
        ))
        .build()
        .unwrap();
    let err = client.execute(Request::get("/r")).await.unwrap_err();
    let Error::Auth {
        status: Some(401),
        message,
    } = &err
    else {
        panic!("expected Error::Auth, got {err:?}");
    };
    assert!(message.contains("returned HTTP 401"), "{message}");
    assert!(!message.contains("connection interrupted"), "{message}");
}
