//! Credentials never leak: with a TRACE subscriber capturing every event and
//! span field, each client runs its main operations against the sandbox, and
//! some failing ones (wrong secret, spent refresh token, revoked tokens that
//! answer 401). Then no client secret, password, access token or refresh
//! token may appear in the captured log, in any error's `Display`/`Debug`,
//! or in the `Debug` of the clients and builders.
//!
//! The tokens are the ones the sandbox really issued: a recording proxy sits
//! in front of each token endpoint and API, and every `access_token`,
//! `refresh_token`, `token` value and `Bearer` header on the wire is added to
//! the list of forbidden strings. The sandbox's counters must show that no
//! request to a pre-signed/blob URL carried an `Authorization` header.

mod common;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use client_core::http::{HttpClient, Request};
use client_core::retry::FixedRandom;
use client_core::time::{ManualClock, RecordingSleeper};
use common::proxy::RecordingProxy;
use common::{base64, logs};
use futures::TryStreamExt;
use sandbox::{Faults, Stats};

/// What a test saw: error texts and `Debug` renderings to scan.
#[derive(Default)]
struct Evidence {
    texts: Vec<String>,
}

impl Evidence {
    /// Keeps the `Display` and `Debug` of an error (and of its sources).
    fn error(&mut self, e: &impl std::error::Error) {
        self.texts.push(e.to_string());
        self.texts.push(format!("{e:?}"));
        self.texts.push(format!("{e:#?}"));
        let mut source = e.source();
        while let Some(s) = source {
            self.texts.push(s.to_string());
            self.texts.push(format!("{s:?}"));
            source = s.source();
        }
    }

    fn debug(&mut self, value: &impl Debug) {
        self.texts.push(format!("{value:?}"));
        self.texts.push(format!("{value:#?}"));
    }
}

/// Secrets a test must never find, with a label for the failure message.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, label: &str, value: impl Into<String>) {
        let value = value.into();
        assert!(
            value.len() >= 6,
            "{label} is too short to scan for: {value:?}"
        );
        self.0.push((label.to_string(), value));
    }

    /// HTTP Basic `id:secret`, base64-encoded as it travels in the header.
    fn add_basic(&mut self, label: &str, id: &str, secret: &str) {
        self.add(label, base64(format!("{id}:{secret}").as_bytes()));
    }

    fn add_tokens(&mut self, proxy: &RecordingProxy) -> usize {
        let tokens = proxy.tokens();
        for t in &tokens {
            self.add("a token seen on the wire", t.clone());
        }
        tokens.len()
    }

    /// Fails naming the secret and where it showed up.
    fn assert_absent(&self, logs: &str, evidence: &Evidence) {
        assert!(!logs.is_empty(), "the TRACE subscriber captured nothing");
        for (label, secret) in &self.0 {
            if let Some(at) = logs.find(secret.as_str()) {
                let line = logs[..at].rsplit('\n').next().unwrap_or("");
                panic!("{label} appears in the log, in a line starting: {line:.200}");
            }
            for text in &evidence.texts {
                assert!(
                    !text.contains(secret.as_str()),
                    "{label} appears in an error or Debug output: {text:.300}"
                );
            }
        }
    }
}

async fn post_control(base_url: &str, route: &str) {
    let http = HttpClient::builder().build().expect("control client");
    http.send(Request::post(format!("{base_url}{route}")).json(&serde_json::json!({})))
        .await
        .unwrap_or_else(|e| panic!("control route {route}: {e}"));
}

fn assert_blob_requests_unauthenticated(stats: &Stats, service: &str) {
    let snapshot = stats.snapshot();
    assert!(
        snapshot.blob_requests > 0,
        "{service}: the run fetched no pre-signed URL, so the check would prove nothing"
    );
    assert_eq!(
        snapshot.blob_authorization_headers, 0,
        "{service}: a bearer token reached a pre-signed/blob URL"
    );
}

#[tokio::test]
async fn dap_never_shows_its_secret_or_tokens() {
    use dap_client::{Client, Format, SnapshotQuery};
    use sandbox::dap::{DapConfig, TableSpec};

    let logs = logs::capture();
    let config = DapConfig::default()
        .with_tables(vec![TableSpec::new("canvas", "users", 40)])
        .with_rows_per_part(15)
        .with_pacing(1, 1);
    let server = sandbox::dap::start(config, Faults::new(), Stats::new())
        .await
        .expect("DAP sandbox");
    let creds = server.credentials();
    let proxy = RecordingProxy::start(server.base_url()).await;
    let build = |secret: &str| {
        Client::builder()
            .base_url(&proxy.url)
            .credentials(
                creds.client_id.clone(),
                dap_client::SecretString::from(secret.to_string()),
            )
            .sleeper(Arc::new(RecordingSleeper::new()))
            .random(Arc::new(FixedRandom::new(0.0)))
            .rng_seed(3)
    };
    let mut evidence = Evidence::default();
    evidence.debug(&build(&creds.client_secret));
    let client = build(&creds.client_secret).build().expect("DAP client");
    evidence.debug(&client);

    let tables = client.tables("canvas").await.expect("tables");
    assert!(tables.iter().any(|t| t == "users"), "{tables:?}");
    client.schema("canvas", "users").await.expect("schema");
    let table = client
        .table_records("canvas", "users", SnapshotQuery::new(Format::Jsonl))
        .await
        .expect("snapshot job");
    evidence.debug(&table.result);
    let records: Vec<_> = table.records.try_collect().await.expect("records");
    assert_eq!(records.len(), 40);

    // Revoked tokens: the next call gets a 401, refreshes and goes on.
    post_control(server.base_url(), "/__sandbox/dap/expire-tokens").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let saved = client
        .download_table_data(
            "canvas",
            "users",
            SnapshotQuery::new(Format::Csv),
            dir.path(),
            true,
        )
        .await
        .expect("download after a 401");
    evidence.debug(&saved);

    let wrong_secret = "not-the-dap-secret-4f1c9e";
    let rejected = build(wrong_secret)
        .build()
        .expect("client with a wrong secret");
    let err = rejected.tables("canvas").await.expect_err("wrong secret");
    assert!(
        matches!(err, dap_client::Error::Authentication(_)),
        "a wrong secret is an authentication error: {err:?}"
    );
    evidence.error(&err);

    let mut secrets = Secrets::default();
    secrets.add("the DAP client secret", creds.client_secret.clone());
    secrets.add("a wrong DAP client secret", wrong_secret);
    secrets.add_basic(
        "DAP Basic credentials",
        &creds.client_id,
        &creds.client_secret,
    );
    secrets.add_basic(
        "wrong DAP Basic credentials",
        &creds.client_id,
        wrong_secret,
    );
    let tokens = secrets.add_tokens(&proxy);
    assert!(
        tokens >= 2,
        "expected a token before and after the revocation, saw {tokens}"
    );
    secrets.assert_absent(&logs.text(), &evidence);
    assert_blob_requests_unauthenticated(server.stats(), "DAP");
}

#[tokio::test]
async fn bds_never_shows_its_secret_or_rotating_tokens() {
    use bds_client::{ArchiveLimits, BdsError, BdsType, Client, ExtractArchive, MemoryTokenStore};
    use bds_client::{ExposeSecret, SecretString, TokenStore};
    use sandbox::bds::BdsConfig;

    let logs = logs::capture();
    let config = BdsConfig {
        rows: 30,
        ..BdsConfig::default()
    };
    let server = sandbox::bds::start(config, Faults::new(), Stats::new())
        .await
        .expect("BDS sandbox");
    let creds = server.credentials();
    let first_refresh_token = creds.refresh_token.clone();
    let auth = RecordingProxy::start(&creds.auth_url).await;
    // Only the token endpoint is proxied: the API's next-page links name the
    // tenant's own host, and a client must not send its token to another one.
    let store = Arc::new(MemoryTokenStore::with_token(SecretString::from(
        first_refresh_token.clone(),
    )));
    let builder = |secret: &str, store: Arc<MemoryTokenStore>| {
        Client::builder()
            .base_url(&creds.base_url)
            .auth_url(&auth.url)
            .credentials(&creds.client_id, SecretString::from(secret.to_string()))
            .token_store(store)
            .sleeper(Arc::new(RecordingSleeper::new()))
    };
    let mut evidence = Evidence::default();
    evidence.debug(&builder(&creds.client_secret, store.clone()));
    let client = builder(&creds.client_secret, store.clone())
        .build()
        .expect("BDS client");
    evidence.debug(&client);

    let data_sets: Vec<_> = client.data_sets().try_collect().await.expect("listing");
    assert!(!data_sets.is_empty());
    let users = client.data_set_extracts("Users").await.expect("extracts");
    let full = users
        .extracts
        .iter()
        .find(|e| e.bds_type == BdsType::Full && e.currently_available)
        .expect("a full extract of Users");
    evidence.debug(full);
    let dir = tempfile::tempdir().expect("temp dir");
    // Revoked access token: the download's API call gets a 401, the refresh
    // token rotates a second time, and the download goes on.
    post_control(server.base_url(), "/__sandbox/bds/expire-tokens").await;
    let saved = client
        .download(full, dir.path().join("users.zip"), None)
        .await
        .expect("download");
    evidence.debug(&saved);
    let mut archive =
        ExtractArchive::open(&saved.path, ArchiveLimits::default()).expect("a valid extract");
    let rows = archive.rows().expect("rows").count();
    assert!(rows > 0);
    let rotated = store.load().await.expect("store").expect("a refresh token");
    assert_ne!(
        rotated.expose_secret(),
        first_refresh_token,
        "the token rotated"
    );
    evidence.debug(&store);

    // The first refresh token was traded, so it is spent now.
    let spent = builder(
        &creds.client_secret,
        Arc::new(MemoryTokenStore::with_token(SecretString::from(
            first_refresh_token.clone(),
        ))),
    )
    .build()
    .expect("client with a spent token");
    let err = spent
        .list_plugins()
        .await
        .expect_err("a spent refresh token");
    assert!(matches!(err, BdsError::RefreshTokenSpent { .. }), "{err:?}");
    evidence.error(&err);

    let wrong_secret = "not-the-d2l-secret-77a0b3";
    let rejected = builder(
        wrong_secret,
        Arc::new(MemoryTokenStore::with_token(SecretString::from(
            rotated.expose_secret().to_string(),
        ))),
    )
    .build()
    .expect("client with a wrong secret");
    let err = rejected.list_plugins().await.expect_err("wrong secret");
    evidence.error(&err);

    let mut secrets = Secrets::default();
    secrets.add("the D2L client secret", creds.client_secret.clone());
    secrets.add("a wrong D2L client secret", wrong_secret);
    secrets.add("the first (spent) refresh token", first_refresh_token);
    secrets.add("the rotated refresh token", rotated.expose_secret());
    secrets.add_basic(
        "D2L Basic credentials",
        &creds.client_id,
        &creds.client_secret,
    );
    let seen = secrets.add_tokens(&auth);
    assert!(
        seen >= 4,
        "two trades give two access and two refresh tokens, saw {seen}"
    );
    secrets.assert_absent(&logs.text(), &evidence);
    assert_blob_requests_unauthenticated(server.stats(), "BDS");
}

#[tokio::test]
async fn ld_never_shows_its_password_secret_or_tokens() {
    use common::raw_http::{RawResponse, serve};
    use ldbatch_client::{
        Client, ContentType, ExportRequest, FileSource, ImportRequest, PollPolicy, SecretString,
    };
    use sandbox::ld::LdConfig;
    use std::sync::atomic::{AtomicU64, Ordering};

    let logs = logs::capture();
    let server = sandbox::ld::start(LdConfig::default(), Faults::new(), Stats::new())
        .await
        .expect("LD sandbox");
    let creds = server.credentials();
    let proxy = RecordingProxy::start(&creds.base_url).await;
    let builder = |password: &str| {
        let clock = ManualClock::new();
        Client::builder()
            .base_url(&proxy.url)
            .client(
                creds.client_id.clone(),
                SecretString::from(creds.client_secret.clone()),
            )
            .user(
                creds.username.clone(),
                SecretString::from(password.to_string()),
            )
            .community(creds.community.clone())
            .poll_policy(PollPolicy::default().max_wait(Duration::from_secs(3600)))
            .sleeper(Arc::new(RecordingSleeper::with_clock(clock.clone())))
            .clock(Arc::new(clock))
            .jitter_seed(1)
    };
    let mut evidence = Evidence::default();
    evidence.debug(&builder(&creds.password));
    let client = builder(&creds.password).build().expect("LD client");
    evidence.debug(&client);

    let file = FileSource::Bytes {
        file_name: "attendees.json".into(),
        bytes: b"[{\"id\":1,\"name\":\"Ada\"},{\"id\":2,\"name\":\"Grace\"}]"
            .to_vec()
            .into(),
    };
    let job = client
        .import(&ImportRequest::new("Attendee", ContentType::Json, file))
        .await
        .expect("import");
    evidence.debug(&job);
    post_control(server.base_url(), "/__sandbox/ld/expire-tokens").await;
    let done = client.wait(&job.job_id).await.expect("wait after a 401");
    evidence.debug(&done);
    client.status(&job.job_id).await.expect("status");

    // An export's result links are pre-signed: downloaded without the token.
    let export = client
        .export(&ExportRequest::new("Account", ContentType::Json))
        .await
        .expect("export");
    let export = client.wait(&export.job_id).await.expect("export done");
    let dir = tempfile::tempdir().expect("temp dir");
    let files = client
        .download_results(&export, dir.path())
        .await
        .expect("export results");
    assert!(!files.is_empty());
    // A result link on another host that answers 401 must not get the token.
    let seen_authorization = Arc::new(AtomicU64::new(0));
    let counter = seen_authorization.clone();
    let foreign = serve(move |request| {
        if request.headers.iter().any(|(n, _)| n == "authorization") {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        RawResponse::json(401, serde_json::json!({"error": "unauthorized"}))
    })
    .await;
    let crafted: ldbatch_client::Job = serde_json::from_value(serde_json::json!({
        "jobId": "export-2",
        "status": "Completed",
        "downloadLink": format!("{}/results/export-2.json?sig=abc", foreign.url),
    }))
    .expect("a job");
    let err = client
        .download_results(&crafted, dir.path())
        .await
        .expect_err("401 from a foreign host");
    evidence.error(&err);
    assert!(foreign.requests() >= 1, "the link was fetched");
    assert_eq!(
        seen_authorization.load(Ordering::SeqCst),
        0,
        "the bearer token went to a foreign host"
    );

    let wrong_password = "not-the-ld-password-5d2e";
    let rejected = builder(wrong_password).build().expect("client");
    let err = rejected
        .status(&job.job_id)
        .await
        .expect_err("wrong password");
    evidence.error(&err);

    let mut secrets = Secrets::default();
    secrets.add("the LD client secret", creds.client_secret.clone());
    secrets.add("the LD password", creds.password.clone());
    secrets.add("a wrong LD password", wrong_password);
    secrets.add_basic(
        "LD Basic credentials",
        &creds.client_id,
        &creds.client_secret,
    );
    let seen = secrets.add_tokens(&proxy);
    assert!(
        seen >= 2,
        "a token before and after the revocation, saw {seen}"
    );
    secrets.assert_absent(&logs.text(), &evidence);
}

#[tokio::test]
async fn toucan_never_shows_its_password_or_login_tokens() {
    use sandbox::toucan::ToucanConfig;
    use toucan_client::{AuthMode, Client, PollPolicy, SecretString, Stage, Upload};

    let logs = logs::capture();
    let server = sandbox::toucan::start(ToucanConfig::default(), Faults::new(), Stats::new())
        .await
        .expect("Toucan sandbox");
    let creds = server.credentials();
    let proxy = RecordingProxy::start(&creds.api_url).await;
    let builder = |password: &str, mode: AuthMode| {
        let clock = ManualClock::new();
        Client::builder()
            .api_url(&proxy.url)
            .small_app(creds.small_app.clone())
            .credentials(
                creds.username.clone(),
                SecretString::from(password.to_string()),
            )
            .auth_mode(mode)
            .poll_policy(PollPolicy::default().max_wait(Duration::from_secs(3600)))
            .sleeper(Arc::new(RecordingSleeper::with_clock(clock.clone())))
            .clock(Arc::new(clock))
            .jitter_seed(2)
    };
    let mut evidence = Evidence::default();
    evidence.debug(&builder(&creds.password, AuthMode::Login));
    let mut secrets = Secrets::default();
    for mode in [AuthMode::Login, AuthMode::Basic] {
        let client = builder(&creds.password, mode)
            .build()
            .expect("Toucan client");
        evidence.debug(&client);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sales.csv");
        std::fs::write(&path, "region,amount\nnorth,12\nsouth,7\n").expect("write upload");
        let receipt = client
            .upload(&Upload::new(&path).expect("upload").stage(Stage::Staging))
            .await
            .expect("upload");
        evidence.debug(&receipt);
        let id = client
            .populate_and_release(Stage::Staging)
            .await
            .expect("operations");
        let status = client.wait(&id).await.expect("operation state");
        evidence.debug(&status);

        let wrong_password = format!("not-the-toucan-password-{mode:?}");
        let rejected = builder(&wrong_password, mode).build().expect("client");
        let err = rejected
            .operation_status(&id)
            .await
            .expect_err("wrong password");
        evidence.error(&err);
        secrets.add("a wrong Toucan password", wrong_password.clone());
        secrets.add_basic(
            "wrong Toucan Basic credentials",
            &creds.username,
            &wrong_password,
        );
    }

    secrets.add("the Toucan password", creds.password.clone());
    secrets.add_basic("Toucan Basic credentials", &creds.username, &creds.password);
    let seen = secrets.add_tokens(&proxy);
    assert!(seen >= 1, "the login mode received a token");
    secrets.assert_absent(&logs.text(), &evidence);
}
