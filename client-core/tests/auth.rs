//! Token caching, refresh, rotation and the grants, against wiremock.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use client_core::auth::{
    BasicCredentials, ClientCredentialsGrant, FileTokenStore, JsonLoginGrant, MemoryTokenStore,
    PasswordGrant, RefreshTokenGrant, StaticToken, TokenCache, TokenProvider, TokenStore,
};
use client_core::http::{Auth, HttpClient, Request};
use client_core::{Error, ExposeSecret, SecretString};
use support::{IssuingTokens, Rig, authorization};
use wiremock::matchers::{body_json, body_string, header, method, path};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

fn creds() -> BasicCredentials {
    BasicCredentials::new("client-1", SecretString::from("s3cret"))
}

/// A cache over a client-credentials grant at `{server}/ids/auth/login`.
fn dap_cache(server: &MockServer, rig: &Rig) -> TokenCache {
    let http = rig.client(&server.uri());
    let grant = ClientCredentialsGrant::new(http, "/ids/auth/login", creds()).unwrap();
    TokenCache::new(grant).with_clock(Arc::new(rig.clock.clone()))
}

async fn mount_tokens(server: &MockServer, expires_in: u64) -> Arc<AtomicUsize> {
    let (issuer, issued) = IssuingTokens::new(expires_in);
    Mock::given(method("POST"))
        .and(path("/ids/auth/login"))
        .respond_with(issuer)
        .mount(server)
        .await;
    issued
}

#[tokio::test]
async fn client_credentials_sends_basic_and_the_form() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ids/auth/login"))
        .and(header("authorization", "Basic Y2xpZW50LTE6czNjcmV0"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "jwt-1", "expires_in": 3599, "scope": "dap", "token_type": "Bearer"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let rig = Rig::new();
    let token = dap_cache(&server, &rig).token().await.unwrap();
    assert_eq!(token.secret().expose_secret(), "jwt-1");
    assert_eq!(
        token.expires_at(),
        Some(rig.clock_now() + Duration::from_secs(3599))
    );
}

trait ClockNow {
    fn clock_now(&self) -> std::time::Instant;
}
impl ClockNow for Rig {
    fn clock_now(&self) -> std::time::Instant {
        use client_core::time::Clock as _;
        self.clock.now()
    }
}

#[tokio::test]
async fn fifty_concurrent_calls_with_an_expired_token_make_one_token_request() {
    let server = MockServer::start().await;
    let issued = mount_tokens(&server, 600).await;
    let rig = Rig::new();
    let cache = Arc::new(dap_cache(&server, &rig));
    assert_eq!(
        cache.token().await.unwrap().secret().expose_secret(),
        "tok-1"
    );
    rig.clock.advance(Duration::from_secs(601));

    let calls: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await })
        })
        .collect();
    for call in calls {
        let token = call.await.unwrap().unwrap();
        assert_eq!(token.secret().expose_secret(), "tok-2");
    }
    assert_eq!(
        issued.load(Ordering::SeqCst),
        2,
        "one initial + exactly one refresh"
    );
}

#[tokio::test]
async fn callers_waiting_on_a_failing_refresh_share_its_error() {
    let server = MockServer::start().await;
    Mock::given(path("/ids/auth/login"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({
                    "error": "invalid_client", "error_description": "unknown client"
                }))
                // slow enough that every caller is queued before it answers
                .set_delay(Duration::from_millis(100)),
        )
        .mount(&server)
        .await;
    let rig = Rig::new();
    let cache = Arc::new(dap_cache(&server, &rig));
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.token().await })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(&err, Error::Auth { message, .. } if message.contains("unknown client")),
            "{err}"
        );
    }
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "one failed refresh, shared"
    );
    // a later call tries again
    cache.token().await.unwrap_err();
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn tokens_are_refreshed_a_margin_before_expiry() {
    let server = MockServer::start().await;
    let issued = mount_tokens(&server, 3600).await;
    let rig = Rig::new();
    let cache = dap_cache(&server, &rig).with_refresh_margin(Duration::from_secs(300));
    cache.token().await.unwrap();
    rig.clock.advance(Duration::from_secs(3299));
    assert_eq!(
        cache.token().await.unwrap().secret().expose_secret(),
        "tok-1"
    );
    rig.clock.advance(Duration::from_secs(2)); // 3301 s: inside the margin
    assert_eq!(
        cache.token().await.unwrap().secret().expose_secret(),
        "tok-2"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn short_lived_tokens_are_still_reused_for_half_their_life() {
    let server = MockServer::start().await;
    let issued = mount_tokens(&server, 60).await;
    let rig = Rig::new();
    let cache = dap_cache(&server, &rig); // margin 300 s > lifetime 60 s
    cache.token().await.unwrap();
    rig.clock.advance(Duration::from_secs(29));
    assert_eq!(
        cache.token().await.unwrap().secret().expose_secret(),
        "tok-1"
    );
    rig.clock.advance(Duration::from_secs(2));
    assert_eq!(
        cache.token().await.unwrap().secret().expose_secret(),
        "tok-2"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 2);
}

/// An API at `/api` that accepts only `Bearer tok-2`.
async fn api_accepting_tok2(server: &MockServer) {
    Mock::given(path("/api"))
        .and(header("authorization", "Bearer tok-2"))
        .respond_with(ResponseTemplate::new(200).set_body_string("data"))
        .mount(server)
        .await;
    Mock::given(path("/api"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": {"type": "Unauthorized", "message": "token revoked"}
        })))
        .mount(server)
        .await;
}

fn api_calls(requests: &[wiremock::Request]) -> Vec<Option<String>> {
    requests
        .iter()
        .filter(|r| r.url.path() == "/api")
        .map(authorization)
        .collect()
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    let server = MockServer::start().await;
    let issued = mount_tokens(&server, 3600).await;
    api_accepting_tok2(&server).await;
    let rig = Rig::new();
    let client = rig
        .builder(&server.uri())
        .auth(Auth::bearer(dap_cache(&server, &rig)))
        .build()
        .unwrap();
    let response = client.send(Request::get("/api")).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "data");
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    let calls = api_calls(&server.received_requests().await.unwrap());
    assert_eq!(
        calls,
        vec![Some("Bearer tok-1".into()), Some("Bearer tok-2".into())]
    );
    assert!(rig.sleeps().is_empty(), "a refresh pass does not back off");
}

#[tokio::test]
async fn a_401_after_three_refreshes_is_an_authentication_error() {
    let server = MockServer::start().await;
    let issued = mount_tokens(&server, 3600).await;
    Mock::given(path("/api"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": {"type": "Unauthorized", "message": "account disabled"}
        })))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client = rig
        .builder(&server.uri())
        .auth(Auth::bearer(dap_cache(&server, &rig)))
        .build()
        .unwrap();
    let err = client.execute(Request::get("/api")).await.unwrap_err();
    match &err {
        Error::Auth {
            status: Some(401),
            message,
        } => {
            assert!(message.contains("account disabled"), "{message}");
        }
        other => panic!("expected Error::Auth, got {other:?}"),
    }
    // The first token and three refreshed ones, each rejected once.
    assert_eq!(issued.load(Ordering::SeqCst), 4);
    assert_eq!(
        api_calls(&server.received_requests().await.unwrap()).len(),
        4
    );
}

#[tokio::test]
async fn a_token_revoked_again_while_the_request_is_retried_is_refreshed_again() {
    let server = MockServer::start().await;
    let issued = mount_tokens(&server, 3600).await;
    // tok-1: revoked. tok-2: a 503, then revoked too. tok-3: accepted.
    for (token, status) in [("tok-1", 401), ("tok-2", 503), ("tok-2", 401)] {
        Mock::given(path("/api"))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
    }
    Mock::given(path("/api"))
        .and(header("authorization", "Bearer tok-3"))
        .respond_with(ResponseTemplate::new(200).set_body_string("data"))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client = rig
        .builder(&server.uri())
        .auth(Auth::bearer(dap_cache(&server, &rig)))
        .build()
        .unwrap();
    let response = client.send(Request::get("/api")).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "data");
    assert_eq!(issued.load(Ordering::SeqCst), 3);
    let calls = api_calls(&server.received_requests().await.unwrap());
    let tokens: Vec<_> = ["tok-1", "tok-2", "tok-2", "tok-3"]
        .map(|t| Some(format!("Bearer {t}")))
        .into();
    assert_eq!(calls, tokens);
}

#[tokio::test]
async fn a_static_token_or_basic_credentials_rejected_fail_at_once() {
    let server = MockServer::start().await;
    Mock::given(path("/api"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let bearer = rig
        .builder(&server.uri())
        .auth(Auth::bearer(StaticToken::new(SecretString::from("fixed"))))
        .build()
        .unwrap();
    let basic = rig.builder(&server.uri()).basic(creds()).build().unwrap();
    for client in [bearer, basic] {
        let err = client.execute(Request::get("/api")).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Auth {
                    status: Some(401),
                    ..
                }
            ),
            "{err:?}"
        );
    }
    let seen = api_calls(&server.received_requests().await.unwrap());
    assert_eq!(
        seen,
        vec![
            Some("Bearer fixed".into()),
            Some("Basic Y2xpZW50LTE6czNjcmV0".into())
        ]
    );
}

#[tokio::test]
async fn oauth_error_bodies_become_auth_errors_with_the_description() {
    let server = MockServer::start().await;
    Mock::given(path("/ids/auth/login"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "error": "invalid_client", "error_description": "Client authentication failed"
        })))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let err = dap_cache(&server, &rig).token().await.unwrap_err();
    match err {
        Error::Auth {
            status: Some(401),
            message,
        } => {
            assert!(
                message.contains("invalid_client: Client authentication failed"),
                "{message}"
            );
            assert!(message.contains("client id and client secret"), "{message}");
        }
        other => panic!("expected Error::Auth, got {other:?}"),
    }
}

#[tokio::test]
async fn token_endpoints_get_the_attempt_budget_of_any_request() {
    let server = MockServer::start().await;
    Mock::given(path("/ids/auth/login"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let issued = mount_tokens(&server, 3600).await;
    let rig = Rig::new();
    let token = dap_cache(&server, &rig).token().await.unwrap();
    assert_eq!(token.secret().expose_secret(), "tok-1");
    assert_eq!(issued.load(Ordering::SeqCst), 1);

    // a token endpoint that stays down gives up after 10 attempts
    let down = MockServer::start().await;
    Mock::given(path("/ids/auth/login"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&down)
        .await;
    let err = dap_cache(&down, &rig).token().await.unwrap_err();
    assert!(
        matches!(err, Error::RetriesExhausted { attempts: 10, .. }),
        "{err:?}"
    );
}

/// A D2L-like token endpoint: refresh token `rt-N` buys `at-N` and `rt-(N+1)`;
/// every refresh token works once.
struct RotatingEndpoint {
    next: AtomicUsize,
    /// What the store held when each answer was produced (set by the test).
    spent: std::sync::Mutex<Vec<String>>,
}

impl Respond for RotatingEndpoint {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
            .into_owned()
            .collect();
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let presented = field("refresh_token").unwrap_or_default();
        let expected = format!("rt-{}", self.next.load(Ordering::SeqCst));
        let mut spent = self.spent.lock().unwrap();
        if field("grant_type").as_deref() != Some("refresh_token")
            || presented != expected
            || spent.contains(&presented)
        {
            return ResponseTemplate::new(400).set_body_json(serde_json::json!({
                "error": "invalid_grant", "error_description": "refresh token already used"
            }));
        }
        spent.push(presented);
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": format!("at-{n}"),
            "refresh_token": format!("rt-{}", n + 1),
            "expires_in": 3600,
            "token_type": "Bearer",
            "scope": "datasets:bds:read",
        }))
    }
}

async fn d2l_server(first: usize) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/connect/token"))
        .and(header("authorization", "Basic Y2xpZW50LTE6czNjcmV0"))
        .respond_with(RotatingEndpoint {
            next: AtomicUsize::new(first),
            spent: Default::default(),
        })
        .mount(&server)
        .await;
    server
}

fn d2l_grant(server: &MockServer, rig: &Rig, store: Arc<dyn TokenStore>) -> RefreshTokenGrant {
    RefreshTokenGrant::new(
        rig.client(&server.uri()),
        "/core/connect/token",
        creds(),
        store,
    )
    .unwrap()
    .with_scope("datasets:bds:read")
}

#[tokio::test]
async fn each_refresh_persists_the_new_refresh_token_before_handing_out_the_access_token() {
    let server = d2l_server(1).await;
    let rig = Rig::new();
    let store = Arc::new(MemoryTokenStore::with_token(SecretString::from("rt-1")));
    let cache = TokenCache::new(d2l_grant(&server, &rig, store.clone()))
        .with_clock(Arc::new(rig.clock.clone()));

    for n in 1..=3 {
        let token = cache.token().await.unwrap();
        assert_eq!(token.secret().expose_secret(), format!("at-{n}"));
        // the moment the access token is in our hands, the store already
        // holds the refresh token for the next run
        let stored = store.load().await.unwrap().unwrap();
        assert_eq!(stored.expose_secret(), format!("rt-{}", n + 1));
        rig.clock.advance(Duration::from_secs(3600));
    }
    let forms: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        forms[0],
        "grant_type=refresh_token&refresh_token=rt-1&scope=datasets%3Abds%3Aread"
    );
}

/// A store whose saves fail until told otherwise.
#[derive(Debug, Default)]
struct FlakyStore {
    inner: MemoryTokenStore,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl TokenStore for FlakyStore {
    async fn load(&self) -> client_core::Result<Option<SecretString>> {
        self.inner.load().await
    }
    async fn save(&self, token: &SecretString) -> client_core::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::io("disk", std::io::Error::other("disk full")));
        }
        self.inner.save(token).await
    }
}

#[tokio::test]
async fn no_access_token_is_handed_out_while_the_new_refresh_token_is_unsaved() {
    let server = d2l_server(1).await;
    let rig = Rig::new();
    let store = Arc::new(FlakyStore::default());
    store.inner.save(&SecretString::from("rt-1")).await.unwrap();
    store.fail.store(true, Ordering::SeqCst);
    let cache = TokenCache::new(d2l_grant(&server, &rig, store.clone()));

    let err = cache.token().await.unwrap_err();
    match &err {
        Error::Auth { message, .. } => assert!(message.contains("could not be saved"), "{message}"),
        other => panic!("expected Error::Auth, got {other:?}"),
    }
    // the unsaved rt-2 is kept in memory and used (and saved) next time
    store.fail.store(false, Ordering::SeqCst);
    let token = cache.token().await.unwrap();
    assert_eq!(token.secret().expose_secret(), "at-2");
    assert_eq!(store.load().await.unwrap().unwrap().expose_secret(), "rt-3");
}

#[tokio::test]
async fn a_reused_refresh_token_is_reported_as_spent_with_what_to_do() {
    let server = d2l_server(2).await; // rt-1 was traded already
    let rig = Rig::new();
    let store = Arc::new(MemoryTokenStore::with_token(SecretString::from("rt-1")));
    let err = TokenCache::new(d2l_grant(&server, &rig, store))
        .token()
        .await
        .unwrap_err();
    match &err {
        Error::RefreshTokenSpent { reason } => assert!(reason.contains("already used"), "{reason}"),
        other => panic!("expected RefreshTokenSpent, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("Obtain a new refresh token"), "{text}");
    assert!(
        !text.contains("rt-1"),
        "the spent token itself is not shown: {text}"
    );
}

#[tokio::test]
async fn the_file_store_carries_the_rotation_across_runs() {
    let server = d2l_server(1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d2l-refresh-token");
    let rig = Rig::new();

    // first run: store empty, seeded from the configured token
    let store = Arc::new(FileTokenStore::new(&path));
    let grant =
        d2l_grant(&server, &rig, store).with_initial_refresh_token(SecretString::from("rt-1"));
    assert_eq!(
        TokenCache::new(grant)
            .token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "at-1"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "rt-2\n");

    // second run: the stale configured token is ignored, the store wins
    let store = Arc::new(FileTokenStore::new(&path));
    let grant =
        d2l_grant(&server, &rig, store).with_initial_refresh_token(SecretString::from("rt-1"));
    assert_eq!(
        TokenCache::new(grant)
            .token()
            .await
            .unwrap()
            .secret()
            .expose_secret(),
        "at-2"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "rt-3\n");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary files left: {names:?}");
}

#[tokio::test]
async fn an_empty_store_without_an_initial_token_says_what_to_do() {
    let server = d2l_server(1).await;
    let rig = Rig::new();
    let err = TokenCache::new(d2l_grant(&server, &rig, Arc::new(MemoryTokenStore::new())))
        .token()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Auth { message, .. } if message.contains("obtain a refresh token")),
        "{err}"
    );
}

#[tokio::test]
async fn password_grant_sends_the_ld_form() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/ls/api/oauth2/token"))
        .and(body_string(
            "grant_type=password&client_id=ld-app&client_secret=ld-secret&username=ann\
             &password=pw+1&scope=community%3DAcme",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "31a15228-896a-11e5-af63-feff819cdc9f"
        })))
        .mount(&server)
        .await;
    Mock::given(path("/ls/api/oauth2/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "error": "invalid_grant", "error_description": "Bad credentials"
        })))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let grant = |password: &str| {
        PasswordGrant::new(
            rig.client(&server.uri()),
            "/ls/api/oauth2/token",
            "ld-app",
            SecretString::from("ld-secret"),
            "ann",
            SecretString::from(password.to_string()),
        )
        .unwrap()
        .with_scope("community=Acme")
    };
    let token = TokenCache::new(grant("pw 1")).token().await.unwrap();
    assert_eq!(
        token.secret().expose_secret(),
        "31a15228-896a-11e5-af63-feff819cdc9f"
    );
    assert_eq!(
        token.expires_at(),
        None,
        "no lifetime given: used until rejected"
    );

    let err = TokenCache::new(grant("wrong")).token().await.unwrap_err();
    match err {
        Error::Auth {
            status: Some(400),
            message,
        } => assert!(message.contains("Bad credentials")),
        other => panic!("a bad password is not a spent refresh token: {other:?}"),
    }
}

#[tokio::test]
async fn toucan_json_login_then_bearer_calls() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/login"))
        .and(body_json(
            serde_json::json!({"username": "ann", "password": "pw"}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"token": "jwt-t"})),
        )
        .mount(&server)
        .await;
    Mock::given(path("/login"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_string("Login failed. Invalid username or password"),
        )
        .mount(&server)
        .await;
    Mock::given(path("/app/data/sources"))
        .and(header("authorization", "Bearer jwt-t"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let http = rig.client(&server.uri());
    let login =
        JsonLoginGrant::new(http.clone(), "/login", "ann", SecretString::from("pw")).unwrap();
    let api = http.with_auth(Auth::bearer(TokenCache::new(login)));
    api.send(Request::get("/app/data/sources")).await.unwrap();

    let bad = JsonLoginGrant::new(http, "/login", "ann", SecretString::from("nope")).unwrap();
    let err = TokenCache::new(bad).token().await.unwrap_err();
    assert!(
        matches!(&err, Error::Auth { message, .. } if message.contains("Login failed. Invalid username or password")),
        "{err}"
    );
}

#[tokio::test]
async fn requests_without_auth_never_carry_authorization() {
    let server = MockServer::start().await;
    let issued = mount_tokens(&server, 3600).await;
    Mock::given(path("/presigned"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let rig = Rig::new();
    let client: HttpClient = rig
        .builder(&server.uri())
        .auth(Auth::bearer(dap_cache(&server, &rig)))
        .build()
        .unwrap();
    let url = format!("{}/presigned?X-Amz-Signature=abc", server.uri());
    client.send(Request::get(url).without_auth()).await.unwrap();
    let got = server.received_requests().await.unwrap();
    let presigned: Vec<_> = got
        .iter()
        .filter(|r| r.url.path() == "/presigned")
        .collect();
    assert_eq!(presigned.len(), 1);
    assert_eq!(authorization(presigned[0]), None);
    assert_eq!(issued.load(Ordering::SeqCst), 0, "no token is even fetched");
}

#[tokio::test]
async fn the_clients_credentials_never_go_to_another_host() {
    let api = MockServer::start().await;
    let issued = mount_tokens(&api, 3600).await;
    let elsewhere = MockServer::start().await;
    Mock::given(path("/file"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let rig = Rig::new();
    let bearer = rig
        .builder(&api.uri())
        .auth(Auth::bearer(dap_cache(&api, &rig)))
        .build()
        .unwrap();
    let basic = rig.builder(&api.uri()).basic(creds()).build().unwrap();
    for client in [bearer, basic] {
        // no without_auth(): the origin check alone keeps the credentials home
        client
            .send(Request::get(format!("{}/file", elsewhere.uri())))
            .await
            .unwrap();
    }
    let got = elsewhere.received_requests().await.unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| authorization(r).is_none()));
    assert_eq!(issued.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_wrong_token_url_says_so() {
    let server = MockServer::start().await; // nothing mounted: every path is 404
    let rig = Rig::new();
    let err = dap_cache(&server, &rig).token().await.unwrap_err();
    assert!(
        matches!(&err, Error::Auth { status: Some(404), message } if message.contains("check the token URL")),
        "{err}"
    );
}
