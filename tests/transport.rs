//! Transport security of every client:
//!
//! - a plain `http://` URL is refused before anything is sent, unless its host
//!   is loopback (`127.0.0.0/8`, `::1`, `localhost`); the explicit opt-in
//!   exists on the core `HttpClient` builder (`allow_insecure_http`), but no
//!   service builder exposes it yet (see tests/NEEDS.md);
//! - TLS is rustls: an `https://` URL to a loopback port that speaks plain
//!   HTTP fails with a typed connect error naming the TLS failure, not a
//!   panic and not a hang.

use std::sync::Arc;

use client_core::TransportKind;
use client_core::http::HttpClient;
use client_core::retry::FixedRandom;
use client_core::time::RecordingSleeper;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A non-loopback host that must never be contacted over plain HTTP.
const REMOTE_HTTP: &str = "http://data.example.invalid";

/// Says whether a core error is the refusal of plain HTTP (nothing sent).
fn is_http_refusal(e: &client_core::Error) -> bool {
    matches!(e, client_core::Error::Config(m) if m.contains("refusing plain http://"))
}

/// The transport failure inside a core error (through the retry wrapper).
fn transport(e: &client_core::Error) -> Option<(TransportKind, &str)> {
    match e {
        client_core::Error::Transport { kind, message, .. } => Some((*kind, message.as_str())),
        client_core::Error::RetriesExhausted { last, .. } => transport(last),
        _ => None,
    }
}

/// Asserts that a TLS handshake failure came back as a typed connect error
/// whose message is rustls' (OpenSSL would say "wrong version number").
fn assert_tls_failure(service: &str, e: Option<&client_core::Error>, shown: &str) {
    let core = e.unwrap_or_else(|| panic!("{service}: not a core transport error: {shown}"));
    let (kind, message) =
        transport(core).unwrap_or_else(|| panic!("{service}: not a transport error: {core:?}"));
    assert_eq!(kind, TransportKind::Connect, "{service}: {message}");
    assert!(
        message.contains("corrupt message") || message.contains("InvalidContentType"),
        "{service}: expected rustls' handshake error, got: {message}"
    );
}

/// A loopback port that answers every connection in plain HTTP, then closes:
/// what a TLS client meets when it is pointed at a non-TLS service.
async fn plain_http_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut hello = [0u8; 1024];
                let _ = stream.read(&mut hello).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

#[test]
fn the_core_refuses_remote_http_unless_opted_in() {
    let refused = HttpClient::builder()
        .base_url(REMOTE_HTTP)
        .build()
        .expect_err("plain http to a remote host");
    assert!(is_http_refusal(&refused), "{refused:?}");
    assert!(
        refused.to_string().contains("allow_insecure_http"),
        "the message names the opt-in: {refused}"
    );
    HttpClient::builder()
        .base_url(REMOTE_HTTP)
        .allow_insecure_http(true)
        .build()
        .expect("the explicit opt-in allows it");
    for loopback in [
        "http://127.0.0.1:9",
        "http://127.8.9.10:9",
        "http://localhost:9",
        "http://[::1]:9",
    ] {
        HttpClient::builder()
            .base_url(loopback)
            .build()
            .unwrap_or_else(|e| panic!("{loopback} is loopback: {e}"));
    }
    // Absolute targets are checked too, not only the base URL.
    let client = HttpClient::builder().build().expect("client");
    let err = client
        .resolve("http://other.example.invalid/x?sig=secret")
        .expect_err("absolute http target");
    assert!(is_http_refusal(&err), "{err:?}");
    assert!(!err.to_string().contains("sig=secret"), "{err}");
}

#[tokio::test]
async fn dap_refuses_remote_http() {
    let err = dap_client::Client::builder()
        .base_url(REMOTE_HTTP)
        .credentials("id", dap_client::SecretString::from("secret-value"))
        .build()
        .expect_err("plain http");
    assert!(
        matches!(&err, dap_client::Error::Config(m) if m.contains("refusing plain http://")),
        "{err:?}"
    );
    dap_client::Client::builder()
        .base_url("http://127.0.0.1:9")
        .credentials("id", dap_client::SecretString::from("secret-value"))
        .build()
        .expect("loopback http is allowed");
}

#[tokio::test]
async fn bds_refuses_remote_http_for_the_api_and_the_token_endpoint() {
    use bds_client::{BdsError, Client, MemoryTokenStore, SecretString};
    let build = |base: &str, auth: &str| {
        Client::builder()
            .base_url(base)
            .auth_url(auth)
            .credentials("id", SecretString::from("secret-value"))
            .token_store(Arc::new(MemoryTokenStore::with_token(SecretString::from(
                "refresh-token-value",
            ))))
            .build()
    };
    let refused = |r: Result<Client, BdsError>| match r {
        Err(BdsError::Core(e)) => is_http_refusal(&e),
        Err(BdsError::Config(m)) => m.contains("refusing plain http://"),
        _ => false,
    };
    assert!(refused(build(
        REMOTE_HTTP,
        "https://auth.example.invalid/core/connect/token"
    )));
    assert!(refused(build(
        "https://lms.example.invalid",
        "http://auth.example.invalid/core/connect/token"
    )));
    build("http://127.0.0.1:9", "http://127.0.0.1:9/token").expect("loopback http is allowed");
}

#[tokio::test]
async fn ld_refuses_remote_http() {
    use ldbatch_client::{Client, Error, SecretString};
    let build = |base: &str| {
        Client::builder()
            .base_url(base)
            .client("id", SecretString::from("secret-value"))
            .user("user", SecretString::from("password-value"))
            .community("community")
            .build()
    };
    let err = build(REMOTE_HTTP).expect_err("plain http");
    assert!(
        matches!(&err, Error::Core(e) if is_http_refusal(e)),
        "{err:?}"
    );
    build("http://localhost:9").expect("loopback http is allowed");
}

#[tokio::test]
async fn toucan_refuses_remote_http() {
    use toucan_client::{Client, Error, SecretString};
    let build = |base: &str| {
        Client::builder()
            .api_url(base)
            .small_app("app")
            .credentials("user", SecretString::from("password-value"))
            .build()
    };
    let err = build(REMOTE_HTTP).expect_err("plain http");
    assert!(
        matches!(&err, Error::Core(e) if is_http_refusal(e)),
        "{err:?}"
    );
    build("http://[::1]:9").expect("loopback http is allowed");
}

#[tokio::test]
async fn tls_to_a_plain_http_port_is_a_typed_connect_error_in_every_client() {
    let port = plain_http_port().await;
    let url = format!("https://127.0.0.1:{port}");
    let one_try = client_core::RetryPolicy::no_retries();

    let core = HttpClient::builder()
        .base_url(&url)
        .retry_policy(one_try.clone())
        .build()
        .expect("core client");
    let err = core
        .send(client_core::Request::get("/x"))
        .await
        .expect_err("not TLS");
    assert_tls_failure("core", Some(&err), &err.to_string());

    let dap = dap_client::Client::builder()
        .base_url(&url)
        .credentials("id", dap_client::SecretString::from("secret-value"))
        .retry_policy(one_try.clone())
        .sleeper(Arc::new(RecordingSleeper::new()))
        .random(Arc::new(FixedRandom::new(0.0)))
        .build()
        .expect("DAP client");
    let err = dap.tables("canvas").await.expect_err("not TLS");
    let core_err = match &err {
        dap_client::Error::Http(e) => Some(e),
        _ => None,
    };
    assert_tls_failure("DAP", core_err, &format!("{err:?}"));

    let bds = bds_client::Client::builder()
        .base_url(&url)
        .auth_url(format!("{url}/core/connect/token"))
        .credentials("id", bds_client::SecretString::from("secret-value"))
        .token_store(Arc::new(bds_client::MemoryTokenStore::with_token(
            bds_client::SecretString::from("refresh-token-value"),
        )))
        .retry_policy(one_try.clone())
        .sleeper(Arc::new(RecordingSleeper::new()))
        .build()
        .expect("BDS client");
    let err = bds.list_plugins().await.expect_err("not TLS");
    let core_err = match &err {
        bds_client::BdsError::Core(e) => Some(e),
        _ => None,
    };
    assert_tls_failure("BDS", core_err, &format!("{err:?}"));

    let ld = ldbatch_client::Client::builder()
        .base_url(&url)
        .client("id", ldbatch_client::SecretString::from("secret-value"))
        .user("user", ldbatch_client::SecretString::from("password-value"))
        .community("community")
        .retry_policy(one_try.clone())
        .sleeper(Arc::new(RecordingSleeper::new()))
        .build()
        .expect("LD client");
    let err = ld.status("job-1").await.expect_err("not TLS");
    let core_err = match &err {
        ldbatch_client::Error::Core(e) => Some(e),
        _ => None,
    };
    assert_tls_failure("LD", core_err, &format!("{err:?}"));

    let toucan = toucan_client::Client::builder()
        .api_url(&url)
        .small_app("app")
        .credentials("user", toucan_client::SecretString::from("password-value"))
        .retry_policy(one_try)
        .sleeper(Arc::new(RecordingSleeper::new()))
        .build()
        .expect("Toucan client");
    let err = toucan
        .operation_status(&toucan_client::OperationId("op-1".into()))
        .await
        .expect_err("not TLS");
    let core_err = match &err {
        toucan_client::Error::Core(e) => Some(e),
        _ => None,
    };
    assert_tls_failure("Toucan", core_err, &format!("{err:?}"));
}

#[tokio::test]
async fn a_redirect_to_remote_plain_http_is_not_followed() {
    use std::sync::atomic::{AtomicU64, Ordering};
    // A loopback server redirecting to a remote http:// URL. The client must
    // stop at the redirect; following it would send the request (and its
    // data) unencrypted across the network.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let served = std::sync::Arc::new(AtomicU64::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 302 Found\r\nLocation: http://data.example.invalid/x?sig=s3cr3t\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    let client = HttpClient::builder()
        .base_url(&url)
        .retry_policy(client_core::RetryPolicy::no_retries())
        .build()
        .expect("loopback client");
    let err = client
        .send(client_core::Request::get("/start"))
        .await
        .expect_err("the redirect is refused");
    let text = format!("{err} {err:?}");
    assert!(text.contains("refusing plain http://"), "{text}");
    assert!(
        !text.contains("s3cr3t"),
        "no query string in the error: {text}"
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "one request, no retry loop"
    );
}
