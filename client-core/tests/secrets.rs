//! No secret reaches the `Debug` or `Display` of any public type or error:
//! known secret strings are fed everywhere, everything is formatted, and the
//! output is scanned.

mod support;

use std::sync::Arc;

use base64::Engine as _;
use client_core::auth::{
    AccessToken, BasicCredentials, ClientCredentialsGrant, FileTokenStore, GrantedToken,
    JsonLoginGrant, MemoryTokenStore, PasswordGrant, RefreshTokenGrant, StaticToken, TokenCache,
    TokenProvider,
};
use client_core::http::{Auth, Multipart, Part, Request};
use client_core::{Error, SecretString};
use support::Rig;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

const CLIENT_SECRET: &str = "cs-SECRET-client-9f2";
const PASSWORD: &str = "pw-SECRET-user-4c1";
const ACCESS: &str = "at-SECRET-access-77b";
const REFRESH: &str = "rt-SECRET-refresh-e30";
const SIGNATURE: &str = "sig-SECRET-presigned-5d";

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

/// Every form in which a secret could leak.
fn forbidden() -> Vec<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        CLIENT_SECRET.into(),
        PASSWORD.into(),
        ACCESS.into(),
        REFRESH.into(),
        SIGNATURE.into(),
        b64(&format!("client:{CLIENT_SECRET}")),
        b64(&format!("ann:{PASSWORD}")),
    ]
}

/// Formats `value` with `Debug` (plain and pretty) and asserts no secret shows.
fn assert_clean_debug(label: &str, value: &dyn std::fmt::Debug) {
    let shown = format!("{value:?}\n{value:#?}");
    for s in forbidden() {
        assert!(!shown.contains(&s), "{label} leaks {s:?} in Debug: {shown}");
    }
}

fn assert_clean_error(label: &str, error: &Error) {
    assert_clean_debug(label, error);
    let shown = error.to_string();
    for s in forbidden() {
        assert!(
            !shown.contains(&s),
            "{label} leaks {s:?} in Display: {shown}"
        );
    }
}

#[tokio::test]
async fn public_types_never_show_secrets() {
    let server = MockServer::start().await;
    let rig = Rig::new();
    let http = rig.client(&server.uri());
    let basic = BasicCredentials::new("client", secret(CLIENT_SECRET));
    let user = BasicCredentials::new("ann", secret(PASSWORD));

    let cc = ClientCredentialsGrant::new(http.clone(), "/token", basic.clone()).unwrap();
    let pw = PasswordGrant::new(
        http.clone(),
        "/t",
        "app",
        secret(CLIENT_SECRET),
        "ann",
        secret(PASSWORD),
    )
    .unwrap();
    let login = JsonLoginGrant::new(http.clone(), "/login", "ann", secret(PASSWORD)).unwrap();
    let store = Arc::new(MemoryTokenStore::with_token(secret(REFRESH)));
    let rt = RefreshTokenGrant::new(http.clone(), "/token", basic.clone(), store.clone())
        .unwrap()
        .with_initial_refresh_token(secret(REFRESH));

    assert_clean_debug("AccessToken", &AccessToken::new(secret(ACCESS), None));
    assert_clean_debug("GrantedToken", &GrantedToken::new(secret(ACCESS), None));
    assert_clean_debug("StaticToken", &StaticToken::new(secret(ACCESS)));
    assert_clean_debug("BasicCredentials", &basic);
    assert_clean_debug("ClientCredentialsGrant", &cc);
    assert_clean_debug("PasswordGrant", &pw);
    assert_clean_debug("JsonLoginGrant", &login);
    assert_clean_debug("RefreshTokenGrant", &rt);
    assert_clean_debug("MemoryTokenStore", &*store);
    assert_clean_debug("FileTokenStore", &FileTokenStore::new("/tmp/store"));
    assert_clean_debug("TokenCache", &TokenCache::new(cc.clone()));
    assert_clean_debug("Auth::Basic", &Auth::Basic(user.clone()));
    assert_clean_debug(
        "Auth::Bearer",
        &Auth::bearer(StaticToken::new(secret(ACCESS))),
    );
    let with_basic = rig.builder(&server.uri()).basic(user.clone());
    assert_clean_debug("HttpClientBuilder", &with_basic);
    assert_clean_debug("HttpClient", &with_basic.build().unwrap());
    assert_clean_debug(
        "HttpClient(bearer)",
        &http.with_auth(Auth::bearer(StaticToken::new(secret(ACCESS)))),
    );

    let request = Request::post(format!("{}/x?X-Amz-Signature={SIGNATURE}", server.uri()))
        .query("password", PASSWORD)
        .header("authorization", format!("Bearer {ACCESS}"))
        .form([("client_secret", CLIENT_SECRET), ("refresh_token", REFRESH)])
        .basic_auth(user);
    assert_clean_debug("Request", &request);
    let form = Multipart::new().text("password", PASSWORD).part(
        "token",
        Part::bytes(ACCESS.as_bytes().to_vec()).header("x-token", ACCESS),
    );
    assert_clean_debug("Multipart", &form);
    assert_clean_debug("Request(multipart)", &Request::post("/u").multipart(form));

    Mock::given(path("/ok"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let response = http
        .send(Request::get(format!("/ok?sig={SIGNATURE}")))
        .await
        .unwrap();
    assert_clean_debug("Response", &response);
}

#[tokio::test]
async fn errors_never_show_secrets() {
    let server = MockServer::start().await;
    let rig = Rig::new();
    let http = rig.client(&server.uri());
    let basic = BasicCredentials::new("client", secret(CLIENT_SECRET));

    // token endpoint refuses the client
    Mock::given(path("/bad-client"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": "invalid_client", "error_description": "unknown client"
        })))
        .mount(&server)
        .await;
    let cc = ClientCredentialsGrant::new(http.clone(), "/bad-client", basic.clone()).unwrap();
    assert_clean_error(
        "invalid_client",
        &TokenCache::new(cc).token().await.unwrap_err(),
    );

    // a spent refresh token
    Mock::given(path("/spent"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .mount(&server)
        .await;
    let store = Arc::new(MemoryTokenStore::with_token(secret(REFRESH)));
    let rt = RefreshTokenGrant::new(http.clone(), "/spent", basic.clone(), store).unwrap();
    let err = TokenCache::new(rt).token().await.unwrap_err();
    assert!(matches!(err, Error::RefreshTokenSpent { .. }));
    assert_clean_error("RefreshTokenSpent", &err);

    // a token response that cannot be used: it must not be quoted
    Mock::given(path("/odd"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"refresh_token": REFRESH})),
        )
        .mount(&server)
        .await;
    let pw = PasswordGrant::new(
        http.clone(),
        "/odd",
        "app",
        secret(CLIENT_SECRET),
        "ann",
        secret(PASSWORD),
    )
    .unwrap();
    assert_clean_error(
        "no access_token",
        &TokenCache::new(pw).token().await.unwrap_err(),
    );

    // the API rejects the token twice
    Mock::given(path("/api"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let api = http.with_auth(Auth::bearer(StaticToken::new(secret(ACCESS))));
    assert_clean_error("401", &api.send(Request::get("/api")).await.unwrap_err());

    // an error status on a pre-signed URL
    Mock::given(path("/object"))
        .respond_with(ResponseTemplate::new(403))
        .mount(&server)
        .await;
    let url = format!("{}/object?X-Amz-Signature={SIGNATURE}", server.uri());
    assert_clean_error(
        "403",
        &http
            .send(Request::get(url).without_auth())
            .await
            .unwrap_err(),
    );

    // a transport failure on a pre-signed URL
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "http://{}/o?X-Amz-Signature={SIGNATURE}",
        listener.local_addr().unwrap()
    );
    drop(listener);
    let err = http.send(Request::get(dead).no_retry()).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_clean_error("transport", &err);

    // a provider that cannot hand out a token
    let empty = RefreshTokenGrant::new(
        http.clone(),
        "/spent",
        basic,
        Arc::new(MemoryTokenStore::new()),
    )
    .unwrap();
    assert_clean_error(
        "empty store",
        &TokenCache::new(empty).token().await.unwrap_err(),
    );
}
