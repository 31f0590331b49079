//! The HTTP client: URLs, plain-HTTP refusal, redirects, error mapping and
//! the response body accessors.

mod support;

use std::io::Write as _;

use client_core::auth::StaticToken;
use client_core::http::{Auth, HttpClient, Request};
use client_core::{Error, SecretString, TransportKind};
use futures::StreamExt as _;
use support::{Conn, Rig, authorization, scripted_server};
use tokio::io::AsyncReadExt as _;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[test]
fn plain_http_to_a_remote_host_is_refused_without_opt_in() {
    let err = HttpClient::builder()
        .base_url("http://example.com/api")
        .build()
        .unwrap_err();
    match err {
        Error::Config(message) => assert!(message.contains("allow_insecure_http"), "{message}"),
        other => panic!("expected Error::Config, got {other:?}"),
    }
    assert!(
        HttpClient::builder()
            .base_url("http://example.com/api")
            .allow_insecure_http(true)
            .build()
            .is_ok()
    );
    assert!(
        HttpClient::builder()
            .base_url("http://127.0.0.1:9/")
            .build()
            .is_ok()
    );
    assert!(HttpClient::builder().base_url("not a url").build().is_err());
}

#[tokio::test]
async fn an_absolute_plain_http_target_is_refused_before_sending() {
    let rig = Rig::new();
    let client = rig.client("https://api.example.com");
    let err = client
        .execute(Request::get("http://files.example.com/x?sig=SECRET"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(!err.to_string().contains("SECRET"));
}

#[tokio::test]
async fn paths_join_below_the_base_and_query_pairs_are_encoded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/base/v1/tables"))
        .and(query_param("filter", "a b&c"))
        .and(query_param("page", "2"))
        .and(header("user-agent", "test-agent/1"))
        .and(header("x-tenant", "t1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("hit"))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client = rig
        .builder(&format!("{}/base", server.uri()))
        .user_agent("test-agent/1")
        .default_header("x-tenant", "t1")
        .build()
        .unwrap();
    let response = client
        .send(
            Request::get("/v1/tables")
                .query("filter", "a b&c")
                .query("page", 2),
        )
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "hit");
}

#[tokio::test]
async fn authorization_is_dropped_on_a_redirect_to_another_host() {
    let storage = MockServer::start().await;
    Mock::given(path("/object"))
        .respond_with(ResponseTemplate::new(200).set_body_string("bytes"))
        .mount(&storage)
        .await;
    let api = MockServer::start().await;
    Mock::given(path("/download"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!("{}/object?X-Amz-Signature=s", storage.uri()).as_str(),
        ))
        .mount(&api)
        .await;
    Mock::given(path("/old"))
        .respond_with(ResponseTemplate::new(307).insert_header("location", "/new"))
        .mount(&api)
        .await;
    Mock::given(path("/new"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&api)
        .await;

    let rig = Rig::new();
    let client = rig
        .builder(&api.uri())
        .auth(Auth::bearer(StaticToken::new(SecretString::from(
            "api-token",
        ))))
        .build()
        .unwrap();
    let body = client
        .send(Request::get("/download"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "bytes");
    let at_storage = storage.received_requests().await.unwrap();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(
        authorization(&at_storage[0]),
        None,
        "the token must not reach another host"
    );

    // a redirect on the same host keeps it
    client.send(Request::get("/old")).await.unwrap();
    let at_api = api.received_requests().await.unwrap();
    let new = at_api.iter().find(|r| r.url.path() == "/new").unwrap();
    assert_eq!(authorization(new).as_deref(), Some("Bearer api-token"));
}

#[tokio::test]
async fn redirect_loops_end_with_an_error() {
    let server = MockServer::start().await;
    Mock::given(path("/loop"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/loop"))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let err = rig
        .client(&server.uri())
        .execute(Request::get("/loop"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("redirects"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 11);
}

#[tokio::test]
async fn send_maps_error_statuses_and_execute_returns_them() {
    let server = MockServer::start().await;
    Mock::given(path("/jobs/9"))
        .respond_with(
            ResponseTemplate::new(404)
                .insert_header("x-request-id", "req-7")
                .set_body_json(serde_json::json!({
                    "error": {"type": "ObjectNotFound", "uuid": "u", "message": "Job does not exist."}
                })),
        )
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client = rig.client(&server.uri());

    let err = client
        .send(Request::get("/jobs/9").query("token", "SECRET"))
        .await
        .unwrap_err();
    let api = err.api().expect("an API error");
    assert_eq!(api.status, 404);
    assert_eq!(api.message.as_deref(), Some("Job does not exist."));
    assert_eq!(api.request_id.as_deref(), Some("req-7"));
    let shown = err.to_string();
    assert!(
        shown.contains("HTTP 404")
            && shown.contains("Job does not exist.")
            && shown.contains("req-7")
    );
    assert!(!shown.contains("SECRET") && !format!("{err:?}").contains("SECRET"));

    // execute hands the response over for the service crate to parse
    let response = client.execute(Request::get("/jobs/9")).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "ObjectNotFound");
}

#[tokio::test]
async fn expected_statuses_can_be_narrowed() {
    let server = MockServer::start().await;
    Mock::given(path("/x"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let err = rig
        .client(&server.uri())
        .send(Request::post("/x").expect_status(&[201]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(200));
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Table {
    name: String,
}

#[tokio::test]
async fn undecodable_json_is_a_decode_error_with_a_snippet() {
    let server = MockServer::start().await;
    Mock::given(path("/t"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"nom":"users"}"#))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let err = rig
        .client(&server.uri())
        .send_json::<Table>(Request::get("/t?k=SECRET"))
        .await
        .unwrap_err();
    match &err {
        Error::Decode {
            url,
            message,
            body_snippet,
        } => {
            assert!(message.contains("name"), "{message}");
            assert_eq!(body_snippet, r#"{"nom":"users"}"#);
            assert!(!url.contains("SECRET"));
        }
        other => panic!("expected Error::Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn bodies_stream_and_read() {
    let server = MockServer::start().await;
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    Mock::given(path("/big"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(big.clone()))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client = rig.client(&server.uri());

    let mut stream = client
        .send(Request::get("/big"))
        .await
        .unwrap()
        .bytes_stream();
    let mut streamed = Vec::new();
    while let Some(chunk) = stream.next().await {
        streamed.extend_from_slice(&chunk.unwrap());
    }
    assert!(streamed == big);

    let mut reader = client
        .send(Request::get("/big"))
        .await
        .unwrap()
        .into_async_read();
    let mut read = Vec::new();
    reader.read_to_end(&mut read).await.unwrap();
    assert!(read == big);
}

#[tokio::test]
async fn a_truncated_body_is_an_interrupted_transport_error() {
    let (base, _) = scripted_server(vec![Conn::Truncated]).await;
    let rig = Rig::new();
    let response = rig
        .client(&base)
        .send(Request::get("/short"))
        .await
        .unwrap();
    match response.bytes().await.unwrap_err() {
        Error::Transport {
            kind: TransportKind::Interrupted,
            ..
        } => {}
        other => panic!("expected an interrupted transport error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_file_body_is_streamed_from_disk() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"id,name\n1,ann\n").unwrap();
    file.flush().unwrap();
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/upload"))
        .and(header("content-type", "text/csv"))
        .and(header("content-length", "14"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let rig = Rig::new();
    rig.client(&server.uri())
        .send(Request::put("/upload").file_body(file.path(), "text/csv"))
        .await
        .unwrap();
    assert_eq!(
        server.received_requests().await.unwrap()[0].body,
        b"id,name\n1,ann\n"
    );

    let missing = rig
        .client(&server.uri())
        .send(Request::put("/upload").file_body("/nonexistent/file.csv", "text/csv"))
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing:?}");
}

#[tokio::test]
async fn invalid_requests_are_reported_before_anything_is_sent() {
    let server = MockServer::start().await;
    let rig = Rig::new();
    let client = rig.client(&server.uri());
    let err = client
        .send(Request::get("/x").header("bad header", "v"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    let no_base = HttpClient::builder().build().unwrap();
    let err = no_base.send(Request::get("/relative")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
