//! The fake BDS tenant over plain HTTP: OAuth rotation, listings, redirects to the blob
//! origin, extract contents against the truth, expiry, rate limits and faults.

use reqwest::StatusCode;
use reqwest::redirect::Policy;
use sandbox::bds::{self, BdsConfig, BdsServer};
use sandbox::{Faults, Stats};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;

const UE_FULL: &str = "533f84c8-b2ad-4688-94dc-c839952e9c4f";
const UE_DIFF: &str = "a78735f2-7210-4a57-aac1-e0f6bd714349";
const USERS_SCHEMA: &str = "b21a6414-38f8-4da8-9a65-8b5586f9fe3b";

struct Tenant {
    server: BdsServer,
    http: reqwest::Client,
    token: String,
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

async fn tenant(config: BdsConfig) -> Tenant {
    let server = bds::start(config, Faults::new(), Stats::new())
        .await
        .expect("start");
    let http = http();
    let token = trade(&http, &server, &server.credentials().refresh_token).await["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    Tenant {
        server,
        http,
        token,
    }
}

async fn trade(http: &reqwest::Client, server: &BdsServer, refresh: &str) -> Value {
    let c = server.credentials();
    let r = http
        .post(&c.token_url)
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("scope", c.scope.as_str()),
        ])
        .send()
        .await
        .expect("token call");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("token json")
}

impl Tenant {
    /// Trades the current refresh token again: moving the virtual clock by days outlives
    /// the one-hour access token.
    async fn refresh(&mut self) {
        let grant = trade(
            &self.http,
            &self.server,
            &self.server.credentials().refresh_token,
        )
        .await;
        self.token = grant["access_token"]
            .as_str()
            .expect("access token")
            .to_owned();
    }
    fn url(&self, path: &str) -> String {
        format!("{}/d2l/api/lp/1.43{path}", self.server.base_url())
    }
    async fn get(&self, url: &str) -> reqwest::Response {
        self.http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request")
    }
    async fn json(&self, url: &str) -> Value {
        let r = self.get(url).await;
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        r.json().await.expect("json")
    }
    async fn control(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/__sandbox/bds/{path}", self.server.base_url()))
            .json(&body)
            .send()
            .await
            .expect("control");
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.expect("control json")
    }
    /// Every entry of the legacy listing, following `NextPageUrl`.
    async fn listing(&self) -> Vec<Value> {
        let mut next = Some(self.url("/dataExport/bds"));
        let mut all = Vec::new();
        while let Some(url) = next {
            let page = self.json(&url).await;
            all.extend(
                page["BrightspaceDataSets"]
                    .as_array()
                    .expect("items")
                    .iter()
                    .cloned(),
            );
            next = page["NextPageUrl"].as_str().map(str::to_owned);
        }
        all
    }
    /// Downloads through the redirect (without forwarding the token) and unzips the CSV.
    async fn download(&self, link: &str) -> String {
        let r = self.get(link).await;
        assert_eq!(r.status(), StatusCode::FOUND);
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        let blob = self.http.get(&location).send().await.expect("blob");
        assert_eq!(blob.status(), StatusCode::OK);
        let bytes = blob.bytes().await.expect("zip bytes");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("zip");
        assert_eq!(archive.len(), 1, "one CSV per extract");
        let mut csv = String::new();
        archive
            .by_index(0)
            .expect("entry")
            .read_to_string(&mut csv)
            .expect("utf-8 csv");
        csv
    }
}

/// A small RFC 4180 reader that keeps NULL (empty, unquoted) apart from `""`.
fn parse_csv(text: &str) -> Vec<Vec<Option<String>>> {
    let mut records = Vec::new();
    let (mut record, mut field, mut quoted, mut in_quotes) =
        (Vec::new(), String::new(), false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => field.push(c),
            (false, '"') => (in_quotes, quoted) = (true, true),
            (false, ',') => record.push(take(&mut field, &mut quoted)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(take(&mut field, &mut quoted));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !in_quotes && record.is_empty() && field.is_empty(),
        "CSV ends with a full record"
    );
    records
}

fn take(field: &mut String, quoted: &mut bool) -> Option<String> {
    let value = std::mem::take(field);
    let was_quoted = std::mem::replace(quoted, false);
    (was_quoted || !value.is_empty()).then_some(value)
}

/// Rows keyed by their primary-key values.
type Keyed = BTreeMap<Vec<String>, Vec<Option<String>>>;

/// Splits a downloaded CSV into header and rows keyed by the primary key.
fn keyed(csv: &str, pk: &[&str]) -> (Vec<String>, Keyed) {
    let body = csv.strip_prefix('\u{feff}').expect("UTF-8 BOM");
    let mut records = parse_csv(body).into_iter();
    let header: Vec<String> = records
        .next()
        .expect("header")
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    let idx: Vec<usize> = pk
        .iter()
        .map(|k| header.iter().position(|h| h == k).expect("pk column"))
        .collect();
    let rows = records
        .map(|r| {
            assert_eq!(r.len(), header.len());
            (
                idx.iter()
                    .map(|i| r[*i].clone().unwrap_or_default())
                    .collect(),
                r,
            )
        })
        .collect();
    (header, rows)
}

fn entry<'a>(listing: &'a [Value], plugin: &str) -> &'a Value {
    listing
        .iter()
        .find(|e| e["PluginId"] == plugin)
        .expect("plugin listed")
}

#[tokio::test]
async fn refresh_tokens_rotate_and_are_single_use() {
    let server = bds::start(BdsConfig::default(), Faults::new(), Stats::new())
        .await
        .expect("start");
    let http = http();
    let c = server.credentials();
    let first = trade(&http, &server, &c.refresh_token).await;
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 3600);
    let rotated = first["refresh_token"].as_str().expect("new refresh token");
    assert_ne!(rotated, c.refresh_token);
    assert_eq!(server.credentials().refresh_token, rotated);

    // Reusing the traded-in token fails the way OAuth says.
    let reuse = http
        .post(&c.token_url)
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", c.refresh_token.as_str()),
        ])
        .send()
        .await
        .expect("reuse");
    assert_eq!(reuse.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        reuse.json::<Value>().await.expect("json")["error"],
        "invalid_grant"
    );

    // Client credentials in the body work too, and so does the sample's `//core/connect/token`.
    let body_auth = http
        .post(format!("{}//core/connect/token", c.auth_url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rotated),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
        ])
        .send()
        .await
        .expect("body auth");
    assert_eq!(body_auth.status(), StatusCode::OK);

    let bad_client = http
        .post(&c.token_url)
        .basic_auth(&c.client_id, Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .expect("bad client");
    assert_eq!(bad_client.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad_client.json::<Value>().await.expect("json")["error"],
        "invalid_client"
    );
    assert_eq!(server.stats().snapshot().token_requests, 4);

    // A human redoing consent: the control route issues a fresh token.
    let fresh: Value = http
        .post(format!("{}/__sandbox/bds/refresh-token", c.base_url))
        .send()
        .await
        .expect("control")
        .json()
        .await
        .expect("json");
    trade(
        &http,
        &server,
        fresh["refresh_token"].as_str().expect("fresh"),
    )
    .await;
}

#[tokio::test]
async fn legacy_listing_pages_and_keeps_history() {
    let t = tenant(BdsConfig::default()).await;
    let first = t.get(&t.url("/dataExport/bds")).await;
    assert_eq!(first.headers()["x-rate-limit-remaining"], "49990");
    assert_eq!(first.headers()["x-request-cost"], "10");
    assert!(first.headers().contains_key("x-rate-limit-reset"));
    let page: Value = first.json().await.expect("json");
    assert_eq!(
        page["BrightspaceDataSets"].as_array().map(Vec::len),
        Some(5)
    );
    assert!(page["PrevPageUrl"].is_null());
    assert!(
        page["NextPageUrl"]
            .as_str()
            .is_some_and(|u| u.contains("/dataexport/bds?page=2"))
    );

    let listing = t.listing().await;
    assert_eq!(
        listing.len(),
        8,
        "a full and a differential plugin per data set"
    );
    let diff = entry(&listing, UE_DIFF);
    assert_eq!(diff["FullDataSet"], false);
    assert_eq!(diff["CurrentlyAvailable"], true);
    let previous = diff["PreviousDataSets"].as_array().expect("history");
    assert_eq!(previous.len(), 2, "days 1 and 2 behind day 3");
    assert!(previous.iter().all(|p| p["PreviousDataSets"].is_null()));
    let queued = |v: &Value| {
        v["QueuedForProcessingDate"]
            .as_str()
            .expect("date")
            .to_owned()
    };
    assert!(queued(diff) > queued(&previous[0]) && queued(&previous[0]) > queued(&previous[1]));
    let link = diff["DownloadLink"].as_str().expect("link");
    let seconds = chrono::DateTime::parse_from_rfc3339(&queued(diff))
        .expect("iso date")
        .timestamp();
    assert!(
        link.ends_with(&format!("/dataexport/bds/{UE_DIFF}/{seconds}")),
        "{link}"
    );

    let list = t.json(&t.url("/dataExport/bds/list")).await;
    let latest = list
        .as_array()
        .expect("bare array")
        .iter()
        .find(|e| e["PluginId"] == UE_FULL)
        .expect("ue full");
    assert!(
        latest["DownloadLink"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("/bds/download/{UE_FULL}")))
    );
}

#[tokio::test]
async fn downloads_redirect_to_another_origin_that_refuses_bearer_tokens() {
    let t = tenant(BdsConfig::default()).await;
    let listing = t.listing().await;
    let full = entry(&listing, UE_FULL);
    let r = t.get(full["DownloadLink"].as_str().expect("link")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(
        location.starts_with(t.server.blob_url()) && !location.starts_with(t.server.base_url())
    );

    let with_token = t
        .http
        .get(&location)
        .bearer_auth(&t.token)
        .send()
        .await
        .expect("blob");
    assert_eq!(with_token.status(), StatusCode::BAD_REQUEST);
    assert!(
        with_token
            .text()
            .await
            .expect("xml")
            .contains("Only one auth mechanism allowed")
    );
    let stats = t.server.stats().snapshot();
    assert_eq!(
        (stats.blob_requests, stats.blob_authorization_headers),
        (1, 1)
    );

    let ok = t.http.get(&location).send().await.expect("blob");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["content-type"], "application/zip");
    let bytes = ok.bytes().await.expect("bytes");
    assert_eq!(Some(bytes.len() as u64), full["DownloadSize"].as_u64());

    // Resumable: a Range request (with a matching If-Range) continues where a transfer broke.
    let etag = {
        let head = t.http.get(&location).send().await.expect("blob");
        head.headers()["etag"].to_str().expect("etag").to_owned()
    };
    let rest = t
        .http
        .get(&location)
        .header("Range", "bytes=10-")
        .header("If-Range", &etag)
        .send()
        .await
        .expect("range");
    assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        rest.headers()["content-range"].to_str().expect("ascii"),
        format!("bytes 10-{}/{}", bytes.len() - 1, bytes.len())
    );
    assert_eq!(rest.bytes().await.expect("bytes").as_ref(), &bytes[10..]);
    let stale = t
        .http
        .get(&location)
        .header("Range", "bytes=10-")
        .header("If-Range", "\"other\"")
        .send()
        .await
        .expect("range");
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "a changed validator restarts from zero"
    );
    let beyond = t
        .http
        .get(&location)
        .header("Range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .expect("range");
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let tampered = location.replace("X-Amz-Signature=", "X-Amz-Signature=00");
    assert_eq!(
        t.http
            .get(&tampered)
            .send()
            .await
            .expect("tampered")
            .status(),
        StatusCode::FORBIDDEN
    );
    t.server.advance_seconds(901);
    let expired = t.http.get(&location).send().await.expect("expired");
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    assert!(
        expired
            .text()
            .await
            .expect("xml")
            .contains("Request has expired")
    );
}

#[tokio::test]
async fn full_plus_differentials_reproduce_the_truth() {
    let mut t = tenant(BdsConfig {
        rows: 300,
        ..BdsConfig::default()
    })
    .await;
    t.server.advance_days(2);
    assert_eq!(
        t.get(&t.url("/dataExport/bds")).await.status(),
        StatusCode::UNAUTHORIZED,
        "two days outlive a token"
    );
    t.refresh().await;
    let listing = t.listing().await;
    let users_full = listing
        .iter()
        .find(|e| e["Name"] == "Users" && e["FullDataSet"] == true)
        .expect("users full");
    let users_diff = listing
        .iter()
        .find(|e| e["Name"] == "Users" && e["FullDataSet"] == false)
        .expect("users diff");
    let (header, mut table) = keyed(
        &t.download(users_full["DownloadLink"].as_str().expect("link"))
            .await,
        &["UserId"],
    );
    assert_eq!(header.first().map(String::as_str), Some("UserId"));
    assert_eq!(table.len(), 300);

    // Apply every differential queued after the full, oldest first (upsert by key).
    let full_queued = users_full["QueuedForProcessingDate"]
        .as_str()
        .expect("date");
    let mut diffs: Vec<Value> = users_diff["PreviousDataSets"]
        .as_array()
        .expect("history")
        .clone();
    diffs.push(users_diff.clone());
    diffs.retain(|d| d["QueuedForProcessingDate"].as_str().expect("date") > full_queued);
    diffs.sort_by_key(|d| d["QueuedForProcessingDate"].as_str().map(str::to_owned));
    assert_eq!(diffs.len(), 5);
    let mut changed = 0;
    for d in &diffs {
        let (_, rows) = keyed(
            &t.download(d["DownloadLink"].as_str().expect("link")).await,
            &["UserId"],
        );
        changed += rows.len();
        table.extend(rows);
    }
    assert!(changed > 5 * 6, "inserts (6 a day) plus updates: {changed}");
    let truth = t.server.expected("Users").await.expect("truth");
    assert_eq!(truth.generation, 5);
    assert_eq!(t.server.generation(), 5);
    assert_eq!(table, truth.rows_by_key());
    let values: Vec<&Option<String>> = table.values().flatten().collect();
    assert!(values.iter().any(|v| v.is_none()) && values.iter().any(|v| v.as_deref() == Some("")));
    assert!(
        values.iter().any(|v| v
            .as_deref()
            .is_some_and(|s| s.contains('\n') && s.contains(',')))
            || values
                .iter()
                .any(|v| v.as_deref().is_some_and(|s| s.contains('\n')))
    );

    // User Enrollments deletes hard: differentials cannot carry that, a new full does.
    let ue_truth = t.server.expected("User Enrollments").await.expect("truth");
    t.server.publish_full();
    let full = entry(&t.listing().await, UE_FULL).clone();
    let (_, ue) = keyed(
        &t.download(full["DownloadLink"].as_str().expect("link"))
            .await,
        &["OrgUnitId", "UserId"],
    );
    assert_eq!(ue, ue_truth.rows_by_key());
    assert!(
        (ue.len() as u64) < 300 + 5 * 6,
        "some enrollments were hard-deleted"
    );

    // The truth is also served as JSON.
    let json: Value = t
        .http
        .get(format!(
            "{}/__sandbox/bds/expected/Organizational%20Units",
            t.server.base_url()
        ))
        .send()
        .await
        .expect("expected")
        .json()
        .await
        .expect("json");
    assert_eq!(json["primary_key"], json!(["OrgUnitId"]));
    let deleted_col = json["columns"]
        .as_array()
        .expect("cols")
        .iter()
        .position(|c| c == "IsDeleted")
        .expect("IsDeleted");
    assert!(
        json["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .any(|r| r[deleted_col] == "True"),
        "soft deletes stay as rows"
    );
}

#[tokio::test]
async fn expired_differentials_leave_gaps_and_404() {
    let mut t = tenant(BdsConfig::default()).await;
    let before = entry(&t.listing().await, UE_DIFF).clone();
    let oldest = before["PreviousDataSets"][1]["DownloadLink"]
        .as_str()
        .expect("gen 1 link")
        .to_owned();
    let state = t.control("expire", json!({"generations": [1]})).await;
    assert_eq!(state["expired"], 4);
    let after = entry(&t.listing().await, UE_DIFF).clone();
    assert_eq!(after["PreviousDataSets"].as_array().map(Vec::len), Some(1));
    assert_eq!(t.get(&oldest).await.status(), StatusCode::NOT_FOUND);

    // Retention: after 14 more days the first differentials are gone by themselves.
    let state = t.control("advance", json!({"days": 14})).await;
    assert_eq!(state["generation"], 17);
    t.refresh().await;
    let diff = entry(&t.listing().await, UE_DIFF).clone();
    assert_eq!(diff["PreviousDataSets"].as_array().map(Vec::len), Some(13));
    let fulls = entry(&t.listing().await, UE_FULL).clone();
    assert_eq!(
        fulls["PreviousDataSets"].as_array().map(Vec::len),
        Some(1),
        "full_retention = 2"
    );
}

#[tokio::test]
async fn datasets_routes_list_schemas_and_unsorted_extracts() {
    let t = tenant(BdsConfig::default()).await;
    let schemas = t.json(&t.url("/datasets/bds")).await;
    assert!(schemas["Next"].is_null());
    let users = schemas["Objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["SchemaId"] == USERS_SCHEMA)
        .expect("users")
        .clone();
    assert_eq!(users["Full"]["Name"], "Users");
    let all = t.json(users["ExtractsLink"].as_str().expect("link")).await;
    let objects = all["Objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 4, "one full and three differentials");
    let dates: Vec<&str> = objects
        .iter()
        .map(|o| o["QueuedForProcessingDate"].as_str().expect("date"))
        .collect();
    let mut sorted = dates.clone();
    sorted.sort_unstable();
    assert_ne!(dates, sorted, "clients must sort extracts themselves");

    let paged = t
        .json(&format!(
            "{}?pageSize=3",
            users["Differential"]["ExtractsLink"]
                .as_str()
                .expect("link")
        ))
        .await;
    assert_eq!(paged["Objects"].as_array().map(Vec::len), Some(3));
    assert!(
        paged["Objects"]
            .as_array()
            .expect("objects")
            .iter()
            .all(|o| o["BdsType"] == "Differential")
    );
    assert!(paged["Next"].is_null());
    let paged = t
        .json(&format!(
            "{}?pageSize=2",
            users["Differential"]["ExtractsLink"]
                .as_str()
                .expect("link")
        ))
        .await;
    let next = t.json(paged["Next"].as_str().expect("next page")).await;
    assert_eq!(next["Objects"].as_array().map(Vec::len), Some(1));

    let one = &objects[0];
    let id = chrono::DateTime::parse_from_rfc3339(
        one["QueuedForProcessingDate"].as_str().expect("date"),
    )
    .expect("date")
    .timestamp();
    let single = t
        .json(&t.url(&format!(
            "/datasets/bds/{USERS_SCHEMA}/plugins/{}/extracts/{id}",
            one["PluginId"].as_str().expect("plugin")
        )))
        .await;
    assert_eq!(&single, one);
    let csv = t
        .download(one["DownloadLink"].as_str().expect("link"))
        .await;
    assert!(csv.starts_with("\u{feff}UserId,UserName,"));
}

#[tokio::test]
async fn auth_scope_rate_limit_and_quota_errors() {
    let t = tenant(BdsConfig::default()).await;
    assert_eq!(
        t.http
            .get(t.url("/dataExport/bds"))
            .send()
            .await
            .expect("no token")
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // A token without the download scope: 403 *without* Retry-After (a permission error).
    let c = t.server.credentials();
    let narrow: Value = t
        .http
        .post(&c.token_url)
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", c.refresh_token.as_str()),
            ("scope", "datahub:dataexports:read"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let narrow_token = narrow["access_token"].as_str().expect("token");
    let link = t.url(&format!("/dataExport/bds/download/{UE_FULL}"));
    let denied = t
        .http
        .get(&link)
        .bearer_auth(narrow_token)
        .send()
        .await
        .expect("download");
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert!(!denied.headers().contains_key("retry-after"));

    // Quota: 403 *with* Retry-After, once.
    t.control(
        "limits",
        json!({"quota_403_next": 1, "quota_retry_after_secs": 7}),
    )
    .await;
    let quota = t.get(&link).await;
    assert_eq!(quota.status(), StatusCode::FORBIDDEN);
    assert_eq!(quota.headers()["retry-after"], "7");
    assert_eq!(t.get(&link).await.status(), StatusCode::FOUND);

    // An empty credit bucket: 429 with Retry-After and no X-Rate-Limit headers.
    t.control(
        "limits",
        json!({"credits_per_minute": 20, "request_cost": 10}),
    )
    .await;
    assert_eq!(
        t.get(&t.url("/dataExport/bds/list")).await.headers()["x-rate-limit-remaining"],
        "10"
    );
    assert_eq!(
        t.get(&t.url("/dataExport/bds/list")).await.headers()["x-rate-limit-remaining"],
        "0"
    );
    let limited = t.get(&t.url("/dataExport/bds/list")).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    assert!(!limited.headers().contains_key("x-rate-limit-remaining"));
    t.control("limits", json!({"credits_per_minute": 50000}))
        .await;

    // Access tokens expire on the virtual clock, or all at once from the control API.
    t.server.advance_seconds(3600);
    let expired = t.get(&t.url("/dataExport/bds/list")).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert!(expired.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn fault_knobs_apply_in_the_tenant_error_format() {
    let t = tenant(BdsConfig::default()).await;
    t.server.faults().set(
        serde_json::from_value(json!({"error_rate": 1.0, "error_status": 503, "max_faults": 1}))
            .expect("faults"),
    );
    let failed = t.get(&t.url("/dataExport/bds/list")).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        failed.json::<Value>().await.expect("problem json")["Status"],
        503
    );
    assert_eq!(
        t.get(&t.url("/dataExport/bds/list")).await.status(),
        StatusCode::OK
    );

    // Truncated blob bodies: the client sees fewer bytes than Content-Length promised.
    let r = t
        .get(&t.url(&format!("/dataExport/bds/download/{UE_FULL}")))
        .await;
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    t.server.faults().set(
        serde_json::from_value(json!({"truncate_every": 1, "only_paths": ["/blobs/"]}))
            .expect("faults"),
    );
    // The cut may reach the client before or after the headers; either way it is an error.
    let cut = match t.http.get(&location).send().await {
        Ok(r) => r.bytes().await.map(|b| b.len()),
        Err(e) => Err(e),
    };
    assert!(
        cut.is_err(),
        "a truncated body is an error, not a short success: {cut:?}"
    );

    // URL lifetime knob: links issued now are already expired at the blob store.
    t.server
        .faults()
        .set(serde_json::from_value(json!({"url_ttl_secs": 0})).expect("faults"));
    let r = t
        .get(&t.url(&format!("/dataExport/bds/download/{UE_FULL}")))
        .await;
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(location.contains("X-Amz-Expires=0"));
    let expired = t.http.get(&location).send().await.expect("blob");
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);

    // Token expiry knob: tokens issued now are already expired.
    t.server
        .faults()
        .set(serde_json::from_value(json!({"token_ttl_secs": 0})).expect("faults"));
    let short = trade(&t.http, &t.server, &t.server.credentials().refresh_token).await;
    assert_eq!(short["expires_in"], 0);
    let r = t
        .http
        .get(t.url("/dataExport/bds/list"))
        .bearer_auth(short["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn appended_columns_arrive_at_the_end_and_stay_consistent() {
    let mut t = tenant(BdsConfig {
        append_column_from_day: Some(2),
        ..BdsConfig::default()
    })
    .await;
    let listing = t.listing().await;
    let users = |full: bool| {
        listing
            .iter()
            .find(|e| e["Name"] == "Users" && e["FullDataSet"] == full)
            .expect("users")
            .clone()
    };
    let (full, diff) = (users(true), users(false));
    let mut extracts: Vec<Value> = diff["PreviousDataSets"]
        .as_array()
        .expect("history")
        .clone();
    extracts.push(diff.clone());
    extracts.sort_by_key(|d| d["QueuedForProcessingDate"].as_str().map(str::to_owned));

    // Load by header name: columns an extract lacks are NULL.
    let truth = t.server.expected("Users").await.expect("truth");
    assert_eq!(truth.columns.last().map(String::as_str), Some("ExternalId"));
    let mut table: Keyed = BTreeMap::new();
    for (i, e) in std::iter::once(&full).chain(&extracts).enumerate() {
        let (header, rows) = keyed(
            &t.download(e["DownloadLink"].as_str().expect("link")).await,
            &["UserId"],
        );
        assert_eq!(
            header.last().map(String::as_str) == Some("ExternalId"),
            i >= 2,
            "generation {i}"
        );
        for (key, row) in rows {
            let by_name: BTreeMap<&str, Option<String>> =
                header.iter().map(String::as_str).zip(row).collect();
            table.insert(
                key,
                truth
                    .columns
                    .iter()
                    .map(|c| by_name.get(c.as_str()).cloned().flatten())
                    .collect(),
            );
        }
    }
    assert_eq!(table, truth.rows_by_key());
    let ext = truth.columns.len() - 1;
    assert!(table.values().any(|r| r[ext].is_some()) && table.values().any(|r| r[ext].is_none()));

    // A new full carries the column for every row, with the same values.
    t.server.publish_full();
    t.refresh().await;
    let full = entry(&t.listing().await, "1d6d722e-b572-456f-97c1-d526570daa6b").clone();
    let (header, rows) = keyed(
        &t.download(full["DownloadLink"].as_str().expect("link"))
            .await,
        &["UserId"],
    );
    assert_eq!(header, truth.columns);
    assert_eq!(rows, truth.rows_by_key());
}

#[tokio::test]
async fn every_kth_call_can_first_expire_the_issued_blob_urls() {
    let t = tenant(BdsConfig::default()).await;
    t.server.faults().set(
        serde_json::from_value(json!({"expire_urls_every": 3, "url_ttl_secs": 60}))
            .expect("faults"),
    );
    let link = t.url(&format!("/dataExport/bds/download/{UE_FULL}"));
    let location = |r: reqwest::Response| {
        assert_eq!(r.status(), StatusCode::FOUND);
        r.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned()
    };
    let old = location(t.get(&link).await); // call 1
    let blob = |url: String| t.http.get(url).send();
    assert_eq!(blob(old.clone()).await.expect("blob").status(), 200); // call 2
    let expired = blob(old).await.expect("blob"); // call 3: expired first
    assert_eq!(expired.status(), StatusCode::FORBIDDEN);
    assert!(
        expired
            .text()
            .await
            .expect("xml")
            .contains("Request has expired")
    );
    let fresh = location(t.get(&link).await); // call 4: the token still works
    assert_eq!(blob(fresh).await.expect("blob").status(), 200); // call 5
}
