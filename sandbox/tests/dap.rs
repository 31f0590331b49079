//! The fake DAP server through plain HTTP (reqwest), never through our clients.

use std::io::Read;

use base64::Engine;
use reqwest::StatusCode;
use sandbox::dap::{self, DapConfig, DapServer, TableSpec};
use sandbox::{Faults, Stats};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

async fn start(config: DapConfig) -> DapServer {
    dap::start(config, Faults::new(), Stats::new())
        .await
        .expect("sandbox starts")
}

fn small() -> DapConfig {
    DapConfig::default()
        .with_tables(vec![
            TableSpec::new("canvas", "users", 300),
            TableSpec::new("canvas", "accounts", 1),
        ])
        .with_rows_per_part(120)
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn login(server: &DapServer) -> Self {
        let http = http();
        let creds = server.credentials();
        let response = http
            .post(format!("{}/ids/auth/login", server.base_url()))
            .basic_auth(&creds.client_id, Some(&creds.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        let token = body["access_token"].as_str().expect("token").to_owned();
        Self {
            http,
            base: server.base_url().to_owned(),
            token,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control");
        assert!(r.status().is_success(), "control {path}: {}", r.status());
        r.json().await.expect("control json")
    }

    /// Runs a query to completion and returns the complete job document.
    async fn run_job(&self, table: &str, query: Value) -> Value {
        let (status, mut job) = self
            .post(&format!("/dap/query/canvas/table/{table}/data"), query)
            .await;
        assert!(status == 200 || status == 202, "{status} {job}");
        for _ in 0..1000 {
            if job["status"] == "complete" || job["status"] == "failed" {
                return job;
            }
            let id = job["id"].as_str().expect("id").to_owned();
            job = self.get(&format!("/dap/job/{id}")).await.1;
            tokio::task::yield_now().await;
        }
        panic!("job never finished: {job}");
    }

    /// Pre-signs every object of a complete job in one call and downloads them, gunzipped.
    async fn download(&self, job: &Value) -> Vec<String> {
        let objects = job["objects"].as_array().expect("objects").clone();
        let (status, urls) = self
            .post("/dap/object/url", Value::Array(objects.clone()))
            .await;
        assert_eq!(status, 200, "{urls}");
        let mut texts = Vec::new();
        for object in objects {
            let id = object["id"].as_str().expect("object id");
            let url = urls["urls"][id]["url"].as_str().expect("url");
            let r = self.http.get(url).send().await.expect("blob");
            assert_eq!(r.status(), 200);
            assert!(r.headers().get("content-encoding").is_none());
            let bytes = r.bytes().await.expect("bytes");
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .expect("single-member gzip of UTF-8");
            texts.push(text);
        }
        texts
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

/// Splits a TSV (PostgreSQL COPY text) document into rows of unescaped fields (None = `\N`).
fn parse_tsv(text: &str) -> Vec<Vec<Option<String>>> {
    text.lines()
        .map(|line| {
            line.split('\t')
                .map(|field| {
                    if field == "\\N" {
                        return None;
                    }
                    let mut out = String::new();
                    let mut chars = field.chars();
                    while let Some(c) = chars.next() {
                        if c == '\\' {
                            match chars.next() {
                                Some('t') => out.push('\t'),
                                Some('n') => out.push('\n'),
                                Some('r') => out.push('\r'),
                                Some('\\') => out.push('\\'),
                                Some(other) => out.push(other),
                                None => {}
                            }
                        } else {
                            out.push(c);
                        }
                    }
                    Some(out)
                })
                .collect()
        })
        .collect()
}

async fn expected(api: &Api, table: &str) -> Vec<Value> {
    let r = api
        .http
        .get(format!(
            "{}/__sandbox/dap/expected/canvas/{table}",
            api.base
        ))
        .send()
        .await
        .expect("expected");
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.expect("expected json")
}

#[tokio::test]
async fn token_endpoint_is_strict_and_counts_requests() {
    let server = start(small()).await;
    let http = http();
    let url = format!("{}/ids/auth/login", server.base_url());
    let bad = http
        .post(&url)
        .basic_auth("nobody", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 401);
    assert_eq!(bad.headers()["content-type"], "application/json");
    let body: Value = bad.json().await.expect("json");
    assert_eq!(keys(&body["error"]), ["message", "type", "uuid"]);
    assert_eq!(body["error"]["type"], "AuthenticationError");

    let api = Api::login(&server).await;
    let creds = server.credentials();
    let ok: Value = http
        .post(&url)
        .basic_auth(&creds.client_id, Some(&creds.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        keys(&ok),
        ["access_token", "expires_in", "scope", "token_type"]
    );
    let jwt = ok["access_token"].as_str().expect("str");
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("base64url"),
    )
    .expect("claims");
    let exp = claims["exp"].as_i64().expect("integer exp");
    assert!(exp > chrono::Utc::now().timestamp() + 600);
    assert_eq!(server.stats().snapshot().token_requests, 3);

    // No token / unknown token: 401.
    let (status, _) = Api {
        token: "nope".into(),
        ..api
    }
    .get("/dap/query/canvas/table")
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn tables_and_schema_have_the_documented_shape() {
    let server = start(small()).await;
    let api = Api::login(&server).await;
    let (status, tables) = api.get("/dap/query/canvas/table").await;
    assert_eq!(status, 200);
    assert_eq!(tables, json!({"tables": ["accounts", "users"]}));
    let (status, missing) = api.get("/dap/query/nope/table").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["kind"], "namespace");

    let (status, schema) = api.get("/dap/query/canvas/table/users/schema").await;
    assert_eq!(status, 200);
    assert_eq!(keys(&schema), ["schema", "version"]);
    assert_eq!(schema["version"], 1);
    let s = &schema["schema"];
    assert!(s["$schema"].is_string());
    fn every_object_closed(v: &Value) {
        if let Some(props) = v.get("properties") {
            assert_eq!(v["additionalProperties"], false, "{v}");
            for p in props.as_object().expect("props").values() {
                every_object_closed(p);
            }
        }
    }
    every_object_closed(s);
    assert_eq!(keys(&s["properties"]), ["key", "meta", "value"]);
    let (status, _) = api.get("/dap/query/canvas/table/nope/schema").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn snapshot_job_advances_over_polls_deduplicates_and_matches_the_truth() {
    let server = start(small()).await;
    let api = Api::login(&server).await;
    let query = json!({"format": "tsv", "mode": "condensed"});
    let (status, first) = api
        .post("/dap/query/canvas/table/users/data", query.clone())
        .await;
    assert_eq!(status, 202);
    assert_eq!(keys(&first), ["expires_at", "id", "status"]);
    assert_eq!(first["status"], "waiting");
    assert!(first["expires_at"].as_str().expect("str").ends_with('Z'));
    let (_, again) = api
        .post("/dap/query/canvas/table/users/data", query.clone())
        .await;
    assert_eq!(again["id"], first["id"], "identical queries share a job");
    let id = first["id"].as_str().expect("id");
    let (status, running) = api.get(&format!("/dap/job/{id}")).await;
    assert_eq!(
        (status, running["status"].as_str()),
        (StatusCode::ACCEPTED, Some("running"))
    );

    let job = api.run_job("users", query).await;
    assert_eq!(job["status"], "complete");
    assert_eq!(
        keys(&job),
        [
            "at",
            "expires_at",
            "id",
            "objects",
            "schema_version",
            "status"
        ]
    );
    assert_eq!(job["at"], "2024-01-01T00:00:00Z");
    let objects = job["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 3, "300 rows in parts of 120");
    assert!(
        objects
            .iter()
            .all(|o| o["id"].as_str().expect("id").ends_with(".tsv.gz"))
    );

    let parts = api.download(&job).await;
    let truth = expected(&api, "users").await;
    let mut rows = Vec::new();
    for part in &parts {
        let mut table = parse_tsv(part);
        let header = table.remove(0);
        assert_eq!(header[0].as_deref(), Some("meta.ts"));
        assert_eq!(header[1].as_deref(), Some("key.id"));
        assert_eq!(header[2].as_deref(), Some("value.name"));
        assert!(header.iter().all(|h| h.as_deref() != Some("meta.action")));
        rows.extend(table);
    }
    assert_eq!(rows.len(), truth.len());
    assert_eq!(rows.len(), 300);
    let mut saw_null = false;
    let mut saw_empty = false;
    for (row, want) in rows.iter().zip(&truth) {
        assert_eq!(row[1].as_deref(), Some(want["id"].to_string().as_str()));
        assert!(row[0].as_deref().expect("ts").ends_with('Z'));
        let name = want["name"].as_str();
        assert_eq!(row[2].as_deref(), name, "row {}", want["id"]);
        saw_null |= name.is_none();
        saw_empty |= name == Some("");
    }
    assert!(saw_null && saw_empty, "NULL and empty strings both occur");

    let stats = server.stats().snapshot();
    assert_eq!(
        stats.route("POST /dap/query/{namespace}/table/{table}/data"),
        3
    );
    assert_eq!(stats.blob_requests, 3);
    assert_eq!(stats.blob_authorization_headers, 0);
}

#[tokio::test]
async fn incremental_reports_upserts_and_deletes_since_the_snapshot() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    let snapshot = api.run_job("users", json!({"format": "jsonl"})).await;
    let at = snapshot["at"].as_str().expect("at").to_owned();
    let info = api
        .control(
            "/__sandbox/dap/tables/canvas/users/mutate",
            json!({"inserts": 4, "updates": 6, "deletes": 3}),
        )
        .await;
    assert_eq!(info["rows"], 301);
    assert_eq!(info["epoch"], 1);

    let job = api
        .run_job(
            "users",
            json!({"format": "tsv", "mode": "condensed", "since": at}),
        )
        .await;
    assert_eq!(
        keys(&job),
        [
            "expires_at",
            "id",
            "objects",
            "schema_version",
            "since",
            "status",
            "until"
        ]
    );
    assert_eq!(job["until"], "2024-01-01T01:00:00Z");
    let text = api.download(&job).await.concat();
    let rows = parse_tsv(&text);
    assert_eq!(rows[0][1].as_deref(), Some("meta.action"));
    let actions: Vec<&str> = rows[1..]
        .iter()
        .map(|r| r[1].as_deref().expect("action"))
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "U").count(), 10);
    assert_eq!(actions.iter().filter(|a| **a == "D").count(), 3);
    for row in rows[1..].iter().filter(|r| r[1].as_deref() == Some("D")) {
        assert!(
            row[3..].iter().all(Option::is_none),
            "D rows have NULL values"
        );
    }

    // JSONL: D records have no value.
    let job = api
        .run_job("users", json!({"format": "jsonl", "since": at}))
        .await;
    let lines: Vec<Value> = api
        .download(&job)
        .await
        .concat()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 13);
    for record in &lines {
        if record["meta"]["action"] == "D" {
            assert_eq!(keys(record), ["key", "meta"]);
        }
    }

    // Nothing new since the latest commit: a complete, empty job.
    let until = job["until"].as_str().expect("until");
    let empty = api
        .run_job("users", json!({"format": "tsv", "since": until}))
        .await;
    assert_eq!(
        api.download(&empty).await.concat().lines().count(),
        1,
        "header only"
    );
}

#[tokio::test]
async fn csv_and_expanded_modes_flatten_as_documented() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    let job = api
        .run_job("accounts", json!({"format": "csv", "mode": "expanded"}))
        .await;
    let text = api.download(&job).await.concat();
    let header = text.split("\r\n").next().expect("header");
    assert!(header.starts_with("meta.ts,key.id,value.name,"));
    assert!(header.contains(",value.settings.a,value.settings.b,"));
    let job = api
        .run_job("accounts", json!({"format": "tsv", "mode": "condensed"}))
        .await;
    let text = api.download(&job).await.concat();
    assert!(
        text.lines()
            .next()
            .expect("header")
            .contains("\tvalue.settings\t")
    );
}

#[tokio::test]
async fn bad_queries_get_typed_errors() {
    let server = start(small()).await;
    let api = Api::login(&server).await;
    let (status, body) = api
        .post(
            "/dap/query/canvas/table/users/data",
            json!({"format": "xml"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "ValidationError");
    assert_eq!(
        keys(&body["error"]["location"]),
        ["character", "column", "line"]
    );

    let (status, body) = api
        .post(
            "/dap/query/canvas/table/users/data",
            json!({"format": "tsv", "since": "2023-06-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "SnapshotRequired");
    assert_eq!(body["error"]["since"], "2023-06-01T00:00:00Z");

    let (status, body) = api
        .post(
            "/dap/query/canvas/table/users/data",
            json!({"format": "tsv", "since": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "OutOfRange");

    let (status, body) = api.get("/dap/job/does-not-exist").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["kind"], "job");
    assert_eq!(body["error"]["id"], "does-not-exist");

    let (status, body) = api
        .post("/dap/object/url", json!([{"id": "x/y.tsv.gz"}]))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["kind"], "object");
}

#[tokio::test]
async fn every_error_class_is_reachable_through_the_control_api() {
    let server = start(small()).await;
    let api = Api::login(&server).await;
    let cases = [
        ("AuthenticationError", 401, Some("AuthenticationError")),
        ("AccountDisabled", 403, Some("AccountDisabled")),
        ("AccountNotOnboarded", 403, Some("AccountNotOnboarded")),
        (
            "AccountUnderMaintenance",
            403,
            Some("AccountUnderMaintenance"),
        ),
        ("RequestTypeForbidden", 403, Some("RequestTypeForbidden")),
        ("ValidationError", 400, Some("ValidationError")),
        ("ObjectNotFound", 404, Some("ObjectNotFound")),
        ("OutOfRange", 400, Some("OutOfRange")),
        ("SnapshotRequired", 400, Some("SnapshotRequired")),
        ("ProcessingError", 500, Some("ProcessingError")),
        ("TooManyRequests", 429, Some("TooManyRequests")),
        ("GatewayTimeout", 504, None),
        ("UnknownServerError", 500, None),
    ];
    for (kind, status, type_literal) in cases {
        api.control(
            "/__sandbox/dap/errors",
            json!({"endpoint": "tables", "error": kind}),
        )
        .await;
        let r = api
            .http
            .get(format!("{}/dap/query/canvas/table", api.base))
            .bearer_auth(&api.token)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), status, "{kind}");
        assert_eq!(r.headers()["content-type"], "application/json", "{kind}");
        if kind == "TooManyRequests" {
            assert!(r.headers().contains_key("retry-after"));
        }
        let body: Value = r.json().await.expect("json");
        match type_literal {
            Some(t) => assert_eq!(body["error"]["type"], t),
            None if kind == "GatewayTimeout" => assert_eq!(keys(&body["error"]), ["message"]),
            None => assert!(body.get("error").is_none()),
        }
    }
    api.control(
        "/__sandbox/dap/errors",
        json!({"endpoint": "any", "error": "BadGateway", "times": 2}),
    )
    .await;
    for _ in 0..2 {
        let r = api
            .http
            .get(format!("{}/dap/query/canvas/table", api.base))
            .bearer_auth(&api.token)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 502);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/html")
        );
    }
    assert_eq!(
        api.get("/dap/query/canvas/table").await.0,
        200,
        "queue drained"
    );
}

#[tokio::test]
async fn failed_and_parquet_jobs_carry_error_details() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    api.control("/__sandbox/dap/fail-jobs", json!({"count": 1}))
        .await;
    let failed = api.run_job("users", json!({"format": "tsv"})).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(keys(&failed), ["error", "expires_at", "id", "status"]);
    assert_eq!(keys(&failed["error"]), ["message", "type", "uuid"]);
    // A failed job is not reused: the same query now succeeds.
    let ok = api.run_job("users", json!({"format": "tsv"})).await;
    assert_eq!(ok["status"], "complete");
    let parquet = api.run_job("users", json!({"format": "parquet"})).await;
    assert_eq!(parquet["status"], "failed");
    assert!(
        parquet["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("parquet")
    );
}

#[tokio::test]
async fn every_kth_call_can_first_expire_the_issued_urls() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    let job = api.run_job("accounts", json!({"format": "tsv"})).await;
    let objects = job["objects"].clone();
    let id = objects[0]["id"].as_str().expect("id").to_owned();
    let url_of = |urls: &Value| {
        urls["urls"][id.as_str()]["url"]
            .as_str()
            .expect("url")
            .to_owned()
    };
    let (_, urls) = api.post("/dap/object/url", objects.clone()).await;
    let old = url_of(&urls);
    // The blob listener shares the knobs and the call counter with the API.
    api.control("/__sandbox/faults", json!({"expire_urls_every": 3}))
        .await;
    let status = |url: String| {
        let http = api.http.clone();
        async move { http.get(url).send().await.expect("send").status() }
    };
    assert_eq!(status(old.clone()).await, 200); // call 1
    assert_eq!(status(old.clone()).await, 200); // call 2
    assert_eq!(status(old).await, 403); // call 3: expired first
    let (_, fresh) = api.post("/dap/object/url", objects.clone()).await; // call 4
    assert_eq!(status(url_of(&fresh)).await, 200); // call 5
}

#[tokio::test]
async fn presigned_urls_expire_and_reject_authorization() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    let job = api.run_job("accounts", json!({"format": "tsv"})).await;
    let objects = job["objects"].clone();
    let id = objects[0]["id"].as_str().expect("id").to_owned();
    let url_of = |urls: &Value| {
        urls["urls"][id.as_str()]["url"]
            .as_str()
            .expect("url")
            .to_owned()
    };
    let (_, urls) = api.post("/dap/object/url", objects.clone()).await;
    let url = url_of(&urls);
    assert!(url.starts_with(server.blob_url()));
    assert!(url.contains("X-Amz-Signature="));

    let with_auth = api
        .http
        .get(&url)
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("send");
    assert_eq!(with_auth.status(), 400);
    assert_eq!(server.stats().snapshot().blob_authorization_headers, 1);

    let forged = api
        .http
        .get(url.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
        .send()
        .await
        .expect("send");
    assert_eq!(forged.status(), 403);
    assert!(
        forged
            .text()
            .await
            .expect("text")
            .contains("SignatureDoesNotMatch")
    );

    api.control("/__sandbox/dap/expire-urls", json!({})).await;
    let expired = api.http.get(&url).send().await.expect("send");
    assert_eq!(expired.status(), 403);
    assert!(
        expired
            .text()
            .await
            .expect("text")
            .contains("Request has expired")
    );
    let (_, fresh) = api.post("/dap/object/url", objects.clone()).await;
    assert_eq!(
        api.http
            .get(url_of(&fresh))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );

    api.control("/__sandbox/faults", json!({"url_ttl_secs": 0}))
        .await;
    let (_, instant) = api.post("/dap/object/url", objects.clone()).await;
    assert_eq!(
        api.http
            .get(url_of(&instant))
            .send()
            .await
            .expect("send")
            .status(),
        403
    );

    api.control("/__sandbox/dap/expire-jobs", json!({})).await;
    let (status, body) = api
        .get(&format!("/dap/job/{}", job["id"].as_str().expect("id")))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "ObjectNotFound");
}

#[tokio::test]
async fn tokens_expire_by_control_and_by_ttl_knob() {
    let server = start(small()).await;
    let api = Api::login(&server).await;
    assert_eq!(api.get("/dap/query/canvas/table").await.0, 200);
    api.control("/__sandbox/dap/expire-tokens", json!({})).await;
    let (status, body) = api.get("/dap/query/canvas/table").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "AuthenticationError");

    api.control("/__sandbox/faults", json!({"token_ttl_secs": 0}))
        .await;
    let short = Api::login(&server).await;
    assert_eq!(short.get("/dap/query/canvas/table").await.0, 401);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let server = start(small()).await;
    let api = Api::login(&server).await;
    api.control("/__sandbox/dap/rate-limits", json!({"tables": 2}))
        .await;
    assert_eq!(api.get("/dap/query/canvas/table").await.0, 200);
    assert_eq!(api.get("/dap/query/canvas/table").await.0, 200);
    let r = api
        .http
        .get(format!("{}/dap/query/canvas/table", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("int");
    assert!((1..=60).contains(&secs));
    // Other endpoints have their own budget.
    assert_eq!(api.get("/dap/query/canvas/table/users/schema").await.0, 200);
}

#[tokio::test]
async fn schema_changes_bump_the_version() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    api.control(
        "/__sandbox/dap/tables/canvas/users/columns",
        json!({"name": "nickname"}),
    )
    .await;
    api.control(
        "/__sandbox/dap/tables/canvas/users/enum-values",
        json!({"value": "archived"}),
    )
    .await;
    let (_, schema) = api.get("/dap/query/canvas/table/users/schema").await;
    assert_eq!(schema["version"], 3);
    let value = &schema["schema"]["properties"]["value"]["properties"];
    assert_eq!(value["nickname"]["type"], "string");
    assert!(
        value["workflow_state"]["enum"]
            .as_array()
            .expect("enum")
            .contains(&json!("archived"))
    );
    // Old rows have NULL in the new column until they are rewritten.
    let truth = expected(&api, "users").await;
    assert!(truth.iter().all(|r| r["nickname"].is_null()));
    api.control(
        "/__sandbox/dap/tables/canvas/users/mutate",
        json!({"inserts": 50, "updates": 0, "deletes": 0}),
    )
    .await;
    let truth = expected(&api, "users").await;
    assert!(truth.iter().any(|r| r["nickname"].is_string()));
    let job = api.run_job("users", json!({"format": "tsv"})).await;
    assert_eq!(job["schema_version"], 3);
}

#[tokio::test]
async fn generic_faults_use_dap_error_bodies() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    let tables = format!("{}/dap/query/canvas/table", api.base);
    let send = || api.http.get(&tables).bearer_auth(&api.token).send();

    api.control(
        "/__sandbox/faults",
        json!({"rate_limit_every": 1, "retry_after_secs": 4}),
    )
    .await;
    let r = send().await.expect("send");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "4");
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "TooManyRequests");

    api.control(
        "/__sandbox/faults",
        json!({"error_rate": 1.0, "error_status": 504}),
    )
    .await;
    let body: Value = send().await.expect("send").json().await.expect("json");
    assert_eq!(keys(&body["error"]), ["message"]);

    api.control(
        "/__sandbox/faults",
        json!({"error_rate": 1.0, "error_status": 502}),
    )
    .await;
    let r = send().await.expect("send");
    assert_eq!(r.status(), 502);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );

    api.control(
        "/__sandbox/faults",
        json!({"error_rate": 1.0, "error_status": 503}),
    )
    .await;
    let r = send().await.expect("send");
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "ProcessingError");

    // A truncated object download: headers promise more than the body delivers.
    api.control("/__sandbox/faults", json!({})).await;
    let job = api.run_job("users", json!({"format": "tsv"})).await;
    let (_, urls) = api.post("/dap/object/url", job["objects"].clone()).await;
    let url = urls["urls"]
        .as_object()
        .and_then(|m| m.values().next())
        .and_then(|u| u["url"].as_str())
        .expect("url")
        .to_owned();
    api.control(
        "/__sandbox/faults",
        json!({"truncate_every": 1, "only_paths": ["/dap-sandbox-objects"]}),
    )
    .await;
    let r = api.http.get(&url).send().await.expect("headers");
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.is_err());
    assert!(server.stats().snapshot().faults_injected >= 5);
}

#[tokio::test]
async fn control_state_pacing_and_error_queue_management() {
    let server = start(small()).await;
    let api = Api::login(&server).await;
    let state: Value = api
        .http
        .get(format!("{}/__sandbox/dap/state", api.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let users = state["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["table"] == "users")
        .expect("users")
        .clone();
    assert_eq!(users["rows"], 300);
    assert_eq!(users["at"], "2024-01-01T00:00:00Z");

    api.control(
        "/__sandbox/dap/pacing",
        json!({"waiting_polls": 2, "running_polls": 1}),
    )
    .await;
    let (_, job) = api
        .post(
            "/dap/query/canvas/table/users/data",
            json!({"format": "csv"}),
        )
        .await;
    let id = job["id"].as_str().expect("id").to_owned();
    let mut seen = vec![job["status"].as_str().expect("status").to_owned()];
    for _ in 0..3 {
        seen.push(
            api.get(&format!("/dap/job/{id}")).await.1["status"]
                .as_str()
                .expect("s")
                .to_owned(),
        );
    }
    assert_eq!(seen[..3], ["waiting", "waiting", "running"]);

    api.control(
        "/__sandbox/dap/errors",
        json!({"endpoint": "schema", "error": "AccountDisabled", "times": 5}),
    )
    .await;
    let cleared = api
        .http
        .delete(format!("{}/__sandbox/dap/errors", api.base))
        .send()
        .await
        .expect("send");
    assert_eq!(cleared.status(), 200);
    assert_eq!(api.get("/dap/query/canvas/table/users/schema").await.0, 200);

    let bad_grant = api
        .http
        .post(format!("{}/ids/auth/login", api.base))
        .basic_auth(
            &server.credentials().client_id,
            Some(&server.credentials().client_secret),
        )
        .form(&[("grant_type", "password")])
        .send()
        .await
        .expect("send");
    assert_eq!(bad_grant.status(), 400);
}

#[tokio::test]
async fn warmed_snapshots_complete_at_once_and_modes_share_files() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    let warmed = api
        .control(
            "/__sandbox/dap/warm/canvas/users",
            json!({"format": "tsv", "mode": "condensed"}),
        )
        .await;
    assert_eq!(warmed["records"], 300);
    assert_eq!(warmed["objects"], 3);
    // No mode means condensed: the same files, ready immediately.
    let (status, job) = api
        .post(
            "/dap/query/canvas/table/users/data",
            json!({"format": "tsv"}),
        )
        .await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["status"], "complete");
    let digest = |job: &Value| {
        job["objects"][0]["id"]
            .as_str()
            .expect("id")
            .split('/')
            .nth(1)
            .expect("name")
            .to_owned()
    };
    let condensed = api
        .run_job("users", json!({"format": "tsv", "mode": "condensed"}))
        .await;
    assert_eq!(digest(&job), digest(&condensed));
    let missing = api
        .http
        .post(format!("{}/__sandbox/dap/warm/canvas/nope", api.base))
        .json(&json!({"format": "tsv"}))
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn jsonl_snapshot_equals_the_expected_content_value_by_value() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    api.control(
        "/__sandbox/dap/tables/canvas/users/mutate",
        json!({"inserts": 20, "updates": 30, "deletes": 10}),
    )
    .await;
    let job = api.run_job("users", json!({"format": "jsonl"})).await;
    assert_eq!(job["at"], "2024-01-01T01:00:00Z");
    let records: Vec<Value> = api
        .download(&job)
        .await
        .concat()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let truth = expected(&api, "users").await;
    assert_eq!(records.len(), truth.len());
    assert_eq!(truth.len(), 310);
    for (record, want) in records.iter().zip(&truth) {
        assert_eq!(keys(record), ["key", "meta", "value"]);
        assert_eq!(
            keys(&record["meta"]),
            ["ts"],
            "snapshots carry only meta.ts"
        );
        assert_eq!(record["key"]["id"], want["id"]);
        let value = record["value"].as_object().expect("value");
        for (column, expected_value) in want.as_object().expect("row") {
            if column == "id" {
                continue;
            }
            match value.get(column) {
                None => assert!(
                    expected_value.is_null(),
                    "{column} missing but expected {expected_value}"
                ),
                Some(got) => assert_eq!(got, expected_value, "column {column} of {}", want["id"]),
            }
        }
    }
    let deleted_or_missing = (1..=320)
        .filter(|id| !truth.iter().any(|r| r["id"] == *id))
        .count();
    assert_eq!(deleted_or_missing, 10, "10 hard deletes");
}

/// A strict RFC 4180 reader keeping NULL (empty unquoted) apart from "" (empty quoted).
fn parse_csv(text: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        let mut quoted = false;
        if chars.peek() == Some(&'"') {
            quoted = true;
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        break;
                    }
                } else {
                    field.push(c);
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c == '\r' || c == '\n' {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        row.push((quoted || !field.is_empty()).then_some(field));
        match chars.next() {
            Some(',') => {}
            Some('\r') => {
                assert_eq!(chars.next(), Some('\n'), "CRLF line ends");
                rows.push(std::mem::take(&mut row));
                if chars.peek().is_none() {
                    return rows;
                }
            }
            None => return rows,
            Some(other) => panic!("unexpected {other:?} after a field"),
        }
    }
}

#[tokio::test]
async fn csv_expanded_round_trips_nulls_empty_strings_and_nested_values() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    let job = api
        .run_job("users", json!({"format": "csv", "mode": "expanded"}))
        .await;
    let mut rows = Vec::new();
    let mut header = Vec::new();
    for part in api.download(&job).await {
        let mut parsed = parse_csv(&part);
        header = parsed.remove(0);
        rows.extend(parsed);
    }
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let (name, a, b, tags) = (
        col("value.name"),
        col("value.settings.a"),
        col("value.settings.b"),
        col("value.tags"),
    );
    let truth = expected(&api, "users").await;
    assert_eq!(rows.len(), truth.len());
    for (row, want) in rows.iter().zip(&truth) {
        assert_eq!(row.len(), header.len());
        assert_eq!(
            row[name].as_deref(),
            want["name"].as_str(),
            "name of {}",
            want["id"]
        );
        let settings = &want["settings"];
        assert_eq!(row[a].clone(), settings.get("a").map(|v| v.to_string()));
        assert_eq!(row[b].as_deref(), settings.get("b").and_then(Value::as_str));
        match &want["tags"] {
            Value::Null => assert_eq!(row[tags], None),
            t => assert_eq!(
                serde_json::from_str::<Value>(row[tags].as_deref().expect("tags")).expect("json"),
                *t
            ),
        }
    }
}

/// Compares one tabular cell with the expected JSON value of the column.
fn assert_cell(cell: Option<&str>, want: &Value, what: &str) {
    match (cell, want) {
        (None, Value::Null) => {}
        (Some(text), Value::String(s)) => assert_eq!(text, s, "{what}"),
        (Some(text), Value::Bool(b)) => assert_eq!(text, b.to_string(), "{what}"),
        (Some(text), Value::Number(n)) => match n.as_i64() {
            Some(i) => assert_eq!(text.parse::<i64>().ok(), Some(i), "{what}"),
            // serde_json (without `float_roundtrip`) may parse the last bit differently.
            None => {
                let (got, want) = (
                    text.parse::<f64>().expect("float"),
                    n.as_f64().expect("f64"),
                );
                assert!(
                    (got - want).abs() <= want.abs() * 1e-15,
                    "{what}: {got} vs {want}"
                );
            }
        },
        (Some(text), nested) => {
            let parsed: Value = serde_json::from_str(text).expect("nested JSON text");
            assert_eq!(&parsed, nested, "{what}");
        }
        (None, other) => panic!("{what}: NULL but expected {other}"),
    }
}

#[tokio::test]
async fn tsv_condensed_snapshot_equals_the_truth_in_every_column() {
    let server = start(small().with_pacing(0, 0)).await;
    let api = Api::login(&server).await;
    let job = api
        .run_job("users", json!({"format": "tsv", "mode": "condensed"}))
        .await;
    let truth = expected(&api, "users").await;
    let mut rows = Vec::new();
    let mut header = Vec::new();
    for part in api.download(&job).await {
        let mut parsed = parse_tsv(&part);
        header = parsed.remove(0);
        rows.extend(parsed);
    }
    assert_eq!(rows.len(), truth.len());
    for (row, want) in rows.iter().zip(&truth) {
        for (label, cell) in header.iter().zip(row) {
            let label = label.as_deref().expect("label");
            let column = match label.split_once('.') {
                Some(("value", c)) => c,
                Some(("key", c)) => c,
                _ => continue,
            };
            assert_cell(
                cell.as_deref(),
                &want[column],
                &format!("{label} of {}", want["id"]),
            );
        }
    }
}
