//! The client against wiremock: every route, paging, token rotation,
//! redirects, quota handling and rate-limit pacing.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bds_client::{
    BdsError, BdsType, Client, ExposeSecret, MemoryTokenStore, SecretString, TokenStore,
};
use client_core::time::{ManualClock, RecordingSleeper};
use futures::TryStreamExt;
use serde_json::json;
use wiremock::matchers::{
    basic_auth, bearer_token, body_string_contains, method, path, query_param,
};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const LP: &str = "/d2l/api/lp/1.43";

struct Harness {
    api: MockServer,
    auth: MockServer,
    store: Arc<MemoryTokenStore>,
    sleeper: RecordingSleeper,
    client: Client,
}

/// A tenant and an identity provider; the store holds refresh token `rt-0`,
/// which the token endpoint trades for `at-1` + `rt-1` exactly once.
async fn harness() -> Harness {
    let api = MockServer::start().await;
    let auth = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/connect/token"))
        .and(basic_auth("app-id", "app-secret"))
        .and(body_string_contains("grant_type=refresh_token"))
        .and(body_string_contains("refresh_token=rt-0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at-1", "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": "rt-1", "scope": "datasets:bds:read"
        })))
        .mount(&auth)
        .await;
    let store = Arc::new(MemoryTokenStore::with_token(SecretString::from("rt-0")));
    let clock = ManualClock::new();
    let sleeper = RecordingSleeper::with_clock(clock.clone());
    let client = Client::builder()
        .base_url(api.uri())
        .auth_url(format!("{}/", auth.uri()))
        .credentials("app-id", SecretString::from("app-secret"))
        .token_store(store.clone())
        .sleeper(Arc::new(sleeper.clone()))
        .clock(Arc::new(clock))
        .random(Arc::new(client_core::retry::FixedRandom::new(0.0)))
        .build()
        .unwrap();
    Harness {
        api,
        auth,
        store,
        sleeper,
        client,
    }
}

fn legacy_item(
    plugin: &str,
    name: &str,
    full: bool,
    queued: &str,
    link: &str,
) -> serde_json::Value {
    json!({ "PluginId": plugin, "Name": name, "Description": "d", "FullDataSet": full,
            "CreatedDate": queued, "DownloadLink": link, "DownloadSize": 10.0, "Version": "9.1",
            "QueuedForProcessingDate": queued, "CurrentlyAvailable": true, "PreviousDataSets": null })
}

fn zip_bytes(csv: &str) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("Users.csv", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(csv.as_bytes()).unwrap();
    zip.finish().unwrap().into_inner()
}

/// Matches requests that carry no `Authorization` header.
struct NoAuthorization;

impl wiremock::Match for NoAuthorization {
    fn matches(&self, request: &Request) -> bool {
        !request.headers.contains_key("authorization")
    }
}

#[tokio::test]
async fn list_uses_a_rotated_token_and_saves_the_new_refresh_token_first() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataExport/bds/list")))
        .and(bearer_token("at-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "PluginId": "1fa8ff9c-8702-46fc-a863-18ca6c2cc4d1", "Name": "Grade Objects Log",
            "Description": "log", "CreatedDate": "2021-05-18T19:50:19.176Z",
            "DownloadLink": "https://h/x", "DownloadSize": 28709805.0 }])))
        .mount(&h.api)
        .await;
    let plugins = h.client.list_plugins().await.unwrap();
    assert_eq!(plugins[0].name, "Grade Objects Log");
    assert_eq!(plugins[0].download_size, Some(28_709_805));
    assert_eq!(
        h.store.load().await.unwrap().unwrap().expose_secret(),
        "rt-1"
    );
    let token_request = &h.auth.received_requests().await.unwrap()[0];
    let form = String::from_utf8_lossy(&token_request.body);
    assert!(form.contains("scope=datasets%3Abds%3Aread"), "{form}");
}

#[tokio::test]
async fn concurrent_calls_trade_the_refresh_token_once() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataExport/bds/list")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .set_delay(Duration::from_millis(5)),
        )
        .mount(&h.api)
        .await;
    let calls = (0..8).map(|_| {
        let client = h.client.clone();
        tokio::spawn(async move { client.list_plugins().await })
    });
    for call in futures::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    assert_eq!(h.auth.received_requests().await.unwrap().len(), 1);
    assert_eq!(
        h.store.load().await.unwrap().unwrap().expose_secret(),
        "rt-1"
    );
}

#[tokio::test]
async fn a_spent_refresh_token_says_how_to_get_a_new_one() {
    let api = MockServer::start().await;
    let auth = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/core/connect/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})))
        .mount(&auth)
        .await;
    let client = Client::builder()
        .base_url(api.uri())
        .auth_url(auth.uri())
        .credentials("app-id", SecretString::from("app-secret"))
        .token_store(Arc::new(MemoryTokenStore::with_token(SecretString::from(
            "rt-spent",
        ))))
        .build()
        .unwrap();
    let err = client.list_plugins().await.unwrap_err();
    assert!(matches!(err, BdsError::RefreshTokenSpent { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("D2L_TOKEN_STORE") && text.contains("Authorize the app again"),
        "{text}"
    );
    assert!(!text.contains("rt-spent") && !format!("{err:?}").contains("rt-spent"));
    assert!(!format!("{client:?}").contains("app-secret"));
}

#[tokio::test]
async fn data_sets_follow_next_page_url_and_expose_the_rate_limit() {
    let h = harness().await;
    let page2 = format!("{}{LP}/dataexport/bds?page=2&pageSize=2", h.api.uri());
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataExport/bds")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-Rate-Limit-Remaining", "49990")
                .insert_header("X-Rate-Limit-Reset", "42")
                .insert_header("X-Request-Cost", "10")
                .set_body_json(json!({
                    "NextPageUrl": page2, "PrevPageUrl": null,
                    "BrightspaceDataSets": [
                        legacy_item("p1", "Users", true, "2024-01-01T00:00:00.000Z", "https://h/1"),
                        legacy_item("p2", "User Enrollments", true, "2024-01-01T00:00:00.000Z", "https://h/2"),
                    ]})),
        )
        .mount(&h.api)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataexport/bds")))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "NextPageUrl": null, "PrevPageUrl": "x",
            "BrightspaceDataSets": [legacy_item("p3", "User Enrollments Differential", false, "2024-01-02T00:00:00.000Z", "https://h/3")]
        })))
        .mount(&h.api)
        .await;
    let all: Vec<_> = h.client.data_sets().try_collect().await.unwrap();
    let ids: Vec<_> = all.iter().map(|d| d.plugin_id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2", "p3"]);
    let rate = h.client.rate_limit().unwrap();
    assert_eq!(
        (rate.remaining, rate.reset_after),
        (49_990, Duration::from_secs(42))
    );
}

#[tokio::test]
async fn the_datasets_routes_page_with_next_and_resolve_a_data_set_by_name() {
    let h = harness().await;
    let schema = "5ced736e-4c4c-4b01-96c8-1c7d404ac5c2";
    let next = format!("{}{LP}/datasets/bds?page=2", h.api.uri());
    Mock::given(method("GET"))
        .and(path(format!("{LP}/datasets/bds")))
        .and(wiremock::matchers::query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "Objects": [
            { "SchemaId": "b21a6414-38f8-4da8-9a65-8b5586f9fe3b", "Full": { "PluginId": "u1", "Name": "Users" }, "Differential": null }
        ], "Next": next })))
        .mount(&h.api)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/datasets/bds")))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "Objects": [
            { "SchemaId": schema,
              "Full": { "PluginId": "533f84c8-b2ad-4688-94dc-c839952e9c4f", "Name": "User Enrollments" },
              "Differential": { "PluginId": "a78735f2-7210-4a57-aac1-e0f6bd714349", "Name": "User Enrollments Differential" } }
        ], "Next": null })))
        .mount(&h.api)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/datasets/bds/{schema}/extracts")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "Objects": [
            { "SchemaId": schema, "PluginId": "a787", "BdsType": "Differential",
              "QueuedForProcessingDate": "2024-09-10T04:00:00.000Z", "DownloadLink": "https://h/d", "DownloadSize": 5 },
            { "SchemaId": schema, "PluginId": "533f", "BdsType": "Full",
              "QueuedForProcessingDate": "2024-09-09T04:00:00.000Z", "DownloadLink": "https://h/f", "DownloadSize": 7 }
        ], "Next": null })))
        .mount(&h.api)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/datasets/bds/{schema}/plugins/533f/extracts")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "Objects": [
            { "SchemaId": schema, "PluginId": "533f", "BdsType": "Full", "QueuedForProcessingDate": "2024-09-09T04:00:00.000Z" }
        ] })))
        .mount(&h.api)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/datasets/bds/{schema}/plugins/533f/extracts/1725854400")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!(
            { "SchemaId": schema, "PluginId": "533f", "BdsType": "Full", "DownloadLink": "https://h/f" }
        )))
        .mount(&h.api)
        .await;

    let found = h
        .client
        .data_set_extracts("user enrollments")
        .await
        .unwrap();
    assert_eq!(found.schema_id.as_deref(), Some(schema));
    assert_eq!(
        found.differential_plugin_id.as_deref(),
        Some("a78735f2-7210-4a57-aac1-e0f6bd714349")
    );
    let types: Vec<_> = found.extracts.iter().map(|e| e.bds_type.clone()).collect();
    assert_eq!(types, [BdsType::Differential, BdsType::Full]);
    // By plugin id too.
    let by_id = h
        .client
        .data_set_extracts("A78735F2-7210-4a57-aac1-e0f6bd714349")
        .await
        .unwrap();
    assert_eq!(by_id.name, "User Enrollments");

    let plugin: Vec<_> = h
        .client
        .plugin_extracts(schema, "533f")
        .try_collect()
        .await
        .unwrap();
    assert_eq!(plugin.len(), 1);
    let one = h
        .client
        .extract(schema, "533f", "1725854400")
        .await
        .unwrap();
    assert_eq!(one.download_link.as_deref(), Some("https://h/f"));
    let err = h
        .client
        .extract(schema, "../../whoami", "1")
        .await
        .unwrap_err();
    assert!(
        matches!(err, BdsError::Config(_)),
        "ids cannot climb out of the route"
    );

    let err = h
        .client
        .data_set_extracts("No Such Thing")
        .await
        .unwrap_err();
    assert!(matches!(err, BdsError::UnknownDataSet(_)), "{err:?}");
}

#[tokio::test]
async fn without_the_datasets_routes_the_legacy_listing_is_used() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/datasets/bds")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"Title": "Not Found"})))
        .mount(&h.api)
        .await;
    let mut diff = legacy_item(
        "a78735f2-7210-4a57-aac1-e0f6bd714349",
        "User Enrollments Differential",
        false,
        "2024-01-03T00:00:00.000Z",
        "https://h/d3",
    );
    diff["PreviousDataSets"] = json!([legacy_item(
        "a78735f2-7210-4a57-aac1-e0f6bd714349",
        "User Enrollments Differential",
        false,
        "2024-01-02T00:00:00.000Z",
        "https://h/d2"
    )]);
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataExport/bds")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "NextPageUrl": null, "BrightspaceDataSets": [
            legacy_item("533f84c8-b2ad-4688-94dc-c839952e9c4f", "User Enrollments", true, "2024-01-01T00:00:00.000Z", "https://h/f1"),
            legacy_item("1d6d722e-b572-456f-97c1-d526570daa6b", "Users", true, "2024-01-01T00:00:00.000Z", "https://h/u"),
            diff,
        ]})))
        .mount(&h.api)
        .await;
    let found = h
        .client
        .data_set_extracts("User Enrollments")
        .await
        .unwrap();
    assert_eq!(
        found.full_plugin_id.as_deref(),
        Some("533f84c8-b2ad-4688-94dc-c839952e9c4f")
    );
    assert_eq!(
        found.extracts.len(),
        3,
        "the full, the differential and its previous one"
    );
}

#[tokio::test]
async fn downloads_follow_the_redirect_without_the_bearer_token() {
    let h = harness().await;
    let storage = MockServer::start().await;
    let zip = zip_bytes("\u{feff}UserId,UserName\n1,ada\n");
    Mock::given(method("GET"))
        .and(path("/blobs/users.zip"))
        .and(NoAuthorization)
        .respond_with(ResponseTemplate::new(200).set_body_bytes(zip.clone()))
        .expect(1)
        .mount(&storage)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataExport/bds/p1/1621367362")))
        .and(bearer_token("at-1"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "Location",
            format!("{}/blobs/users.zip?X-Amz-Signature=s3cr3t", storage.uri()),
        ))
        .mount(&h.api)
        .await;
    let link = format!("{}{LP}/dataExport/bds/p1/1621367362", h.api.uri());
    let mut extract =
        bds_client::Extract::new("p1", BdsType::Full, chrono::Utc::now()).with_download_link(link);
    extract.download_size = Some(zip.len() as u64);
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress_seen = seen.clone();
    let progress: Arc<dyn Fn(bds_client::Progress) + Send + Sync> =
        Arc::new(move |p| progress_seen.store(p.bytes, std::sync::atomic::Ordering::Relaxed));
    let saved = h
        .client
        .download(&extract, dir.path().join("users.zip"), Some(progress))
        .await
        .unwrap();
    assert_eq!(saved.bytes, zip.len() as u64);
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::Relaxed),
        zip.len() as u64
    );
    let mut archive =
        bds_client::ExtractArchive::open(&saved.path, h.client.archive_limits()).unwrap();
    let rows: Vec<_> = archive
        .rows()
        .unwrap()
        .map(|r| r.unwrap().get(1).unwrap().to_string())
        .collect();
    assert_eq!(rows, ["ada"]);
    for request in storage.received_requests().await.unwrap() {
        assert!(!request.headers.contains_key("authorization"));
    }
}

#[tokio::test]
async fn a_download_of_the_wrong_size_leaves_nothing_behind() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataExport/bds/p1/1")))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![1u8; 100]))
        .mount(&h.api)
        .await;
    let mut extract = bds_client::Extract::new("p1", BdsType::Full, chrono::Utc::now())
        .with_download_link(format!("{}{LP}/dataExport/bds/p1/1", h.api.uri()));
    extract.download_size = Some(4096);
    let dir = tempfile::tempdir().unwrap();
    let err = h
        .client
        .download(&extract, dir.path().join("x.zip"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BdsError::Core(client_core::Error::Download { .. })),
        "{err:?}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn the_download_quota_403_is_retried_after_the_given_delay() {
    let h = harness().await;
    let route = format!("{LP}/dataExport/bds/download/p1");
    Mock::given(method("GET"))
        .and(path(route.clone()))
        .respond_with(ResponseTemplate::new(403).insert_header("Retry-After", "7"))
        .up_to_n_times(1)
        .mount(&h.api)
        .await;
    Mock::given(method("GET"))
        .and(path(route))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(zip_bytes("A\n1\n")))
        .mount(&h.api)
        .await;
    let dir = tempfile::tempdir().unwrap();
    h.client
        .download_latest("p1", dir.path().join("p1.zip"))
        .await
        .unwrap();
    assert_eq!(h.sleeper.sleeps(), vec![Duration::from_secs(7)]);
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let h = harness().await;
    let route = format!("{LP}/dataExport/bds/list");
    Mock::given(method("GET"))
        .and(path(route.clone()))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "3"))
        .up_to_n_times(1)
        .mount(&h.api)
        .await;
    Mock::given(method("GET"))
        .and(path(route))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&h.api)
        .await;
    assert!(h.client.list_plugins().await.unwrap().is_empty());
    assert_eq!(h.sleeper.sleeps(), vec![Duration::from_secs(3)]);
}

#[tokio::test]
async fn a_403_without_retry_after_is_a_permission_error_at_once() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataExport/bds/list")))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"Title": "Forbidden", "Detail": "missing scope"})),
        )
        .expect(1)
        .mount(&h.api)
        .await;
    let err = h.client.list_plugins().await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(h.sleeper.sleeps().is_empty());
}

#[tokio::test]
async fn a_nearly_empty_bucket_slows_the_client_down() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path(format!("{LP}/dataExport/bds/list")))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-Rate-Limit-Remaining", "20")
                .insert_header("X-Rate-Limit-Reset", "30")
                .set_body_json(json!([])),
        )
        .mount(&h.api)
        .await;
    h.client.list_plugins().await.unwrap();
    assert!(h.sleeper.sleeps().is_empty());
    h.client.list_plugins().await.unwrap();
    assert_eq!(
        h.sleeper.sleeps(),
        vec![Duration::from_secs(30)],
        "waits for the refill, then proceeds"
    );
}

#[tokio::test]
async fn an_unavailable_extract_is_not_downloaded() {
    let h = harness().await;
    let extract = bds_client::Extract::new("p1", BdsType::Differential, chrono::Utc::now())
        .with_download_link("https://h/x")
        .with_availability(false);
    let err = h
        .client
        .download(&extract, "never.zip", None)
        .await
        .unwrap_err();
    assert!(matches!(err, BdsError::NotDownloadable { .. }));
    assert!(err.to_string().contains("temporarily unavailable"));
    assert!(!std::path::Path::new("never.zip").exists());
}
