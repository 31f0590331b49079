//! The fake Toucan Operations API over plain HTTP: login and its rate limit, Basic/Bearer
//! auth, data-source uploads kept byte for byte, operations and their polling, faults.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use sandbox::toucan::{self, ToucanConfig, ToucanServer};
use sandbox::{Faults, Stats};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

struct Toucan {
    server: ToucanServer,
    http: reqwest::Client,
}

async fn toucan(config: ToucanConfig) -> Toucan {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = toucan::start(config, Faults::new(), Stats::new())
        .await
        .expect("start");
    Toucan {
        server,
        http: reqwest::Client::new(),
    }
}

impl Toucan {
    fn app(&self, path: &str) -> String {
        let c = self.server.credentials();
        format!("{}/{}{path}", c.api_url, c.small_app)
    }
    fn post(&self, url: String) -> reqwest::RequestBuilder {
        let c = self.server.credentials();
        self.http.post(url).basic_auth(c.username, Some(c.password))
    }
    async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/login", self.server.base_url()))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login")
    }
    async fn start_op(&self, path: &str, body: Value) -> String {
        let r = self
            .post(self.app(path))
            .json(&body)
            .send()
            .await
            .expect("operation");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json::<Value>().await.expect("json")["operation_id"]
            .as_str()
            .expect("id")
            .to_owned()
    }
    async fn poll(&self, id: &str) -> String {
        let c = self.server.credentials();
        let r = self
            .http
            .get(self.app(&format!("/operations/state/{id}")))
            .basic_auth(c.username, Some(c.password))
            .send()
            .await
            .expect("state");
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.expect("json")["status"]
            .as_str()
            .expect("status")
            .to_owned()
    }
    async fn walk(&self, id: &str) -> Vec<String> {
        let mut seen = Vec::new();
        for _ in 0..10 {
            let s = self.poll(id).await;
            seen.push(s.clone());
            if s == "successful" || s == "failed" {
                return seen;
            }
        }
        panic!("operation {id} never ended: {seen:?}");
    }
    async fn control(&self, path: &str) -> Value {
        self.http
            .get(format!(
                "{}/__sandbox/toucan/{path}",
                self.server.base_url()
            ))
            .send()
            .await
            .expect("control")
            .json()
            .await
            .expect("json")
    }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn upload_form(name: &str, bytes: Vec<u8>) -> Form {
    Form::new()
        .text("data", json!({"filename": name}).to_string())
        .part("file", Part::bytes(bytes).file_name(name.to_owned()))
}

#[tokio::test]
async fn login_gives_a_token_and_rate_limits_failures() {
    let t = toucan(ToucanConfig::default()).await;
    let c = t.server.credentials();
    let ok = t.login(&c.username, &c.password).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let token = ok.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");
    let r = t
        .http
        .post(t.app("/operations"))
        .bearer_auth(&token)
        .json(&json!({"operations": ["release"]}))
        .send()
        .await
        .expect("bearer");
    assert_eq!(r.status(), StatusCode::OK);

    for _ in 0..5 {
        let bad = t.login(&c.username, "wrong").await;
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
        assert!(
            bad.headers()["content-type"]
                .to_str()
                .is_ok_and(|ct| ct.starts_with("text/plain"))
        );
        assert_eq!(
            bad.text().await.expect("text"),
            "Login failed. Invalid username or password"
        );
    }
    let limited = t.login(&c.username, &c.password).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        limited.json::<Value>().await.expect("json")["message"],
        "Too many requests in a short time, please wait a bit and try again."
    );
    t.http
        .post(format!("{}/__sandbox/toucan/reset-login-limit", c.api_url))
        .send()
        .await
        .expect("reset");
    assert_eq!(
        t.login(&c.username, &c.password).await.status(),
        StatusCode::OK
    );
    assert_eq!(t.server.stats().snapshot().token_requests, 8);
}

#[tokio::test]
async fn small_app_routes_need_basic_or_bearer_and_the_right_app() {
    let t = toucan(ToucanConfig::default()).await;
    let anonymous = t
        .http
        .post(t.app("/operations"))
        .json(&json!({"operations": ["release"]}))
        .send()
        .await
        .expect("call");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.json::<Value>().await.expect("json"),
        json!({"statusCode": 401, "message": "Unauthorized"})
    );
    let wrong = t
        .http
        .post(t.app("/operations"))
        .basic_auth("x", Some("y"))
        .json(&json!({"operations": ["release"]}))
        .send()
        .await
        .expect("call");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let bogus = t
        .http
        .post(t.app("/operations"))
        .bearer_auth("forged")
        .json(&json!({"operations": ["release"]}))
        .send()
        .await
        .expect("call");
    assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);
    let other_app = t
        .post(format!("{}/other-app/operations", t.server.base_url()))
        .json(&json!({"operations": ["release"]}))
        .send()
        .await
        .expect("call");
    assert_eq!(other_app.status(), StatusCode::NOT_FOUND);
    let version: Value = t
        .http
        .get(t.server.base_url())
        .send()
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    assert!(
        version["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("sandbox-"))
    );
}

#[tokio::test]
async fn uploads_are_stored_byte_for_byte_and_polled_like_operations() {
    let t = toucan(ToucanConfig::default()).await;
    let bytes: Vec<u8> = b"id;name\r\n1;\xc3\xa9t\xc3\xa9\n2;\"a,b\"\r\n"
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(70_000))
        .collect();
    let r = t
        .post(t.app("/data/sources?validation=false&stage=staging"))
        .multipart(upload_form("sales.csv", bytes.clone()))
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), StatusCode::OK);
    let op = r.json::<Value>().await.expect("json")["operation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(op.len(), 24);
    assert_eq!(
        t.walk(&op).await,
        ["pending", "running", "running", "successful"]
    );

    let uploads = t.control("uploads").await;
    let up = &uploads[0];
    assert_eq!(
        (up["stage"].as_str(), up["filename"].as_str()),
        (Some("staging"), Some("sales.csv"))
    );
    assert_eq!(up["size"], bytes.len());
    assert_eq!(up["sha256"], sha256(&bytes));
    assert_eq!(up["validation"], "false");
    let stored = t
        .http
        .get(format!(
            "{}/__sandbox/toucan/uploads/staging/sales.csv",
            t.server.base_url()
        ))
        .send()
        .await
        .expect("bytes")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(stored.as_ref(), bytes.as_slice());

    // toucalteryx's form: a plain `filename` field and single-chunk Dropzone fields; no stage = production.
    let small = b"{\"a\": 1}".to_vec();
    let form = Form::new()
        .text("filename", "domain.parquet")
        .text("dzchunkindex", "0")
        .text("dzchunkbyteoffset", "0")
        .text("dztotalchunkcount", "1")
        .text("dztotalfilesize", small.len().to_string())
        .part("file", Part::bytes(small.clone()).file_name("blob"));
    assert_eq!(
        t.post(t.app("/data/sources"))
            .multipart(form)
            .send()
            .await
            .expect("upload")
            .status(),
        StatusCode::OK
    );
    let records = t.server.uploads();
    let parquet = records
        .iter()
        .find(|u| u.filename == "domain.parquet")
        .expect("stored");
    assert_eq!(
        (parquet.stage.as_str(), parquet.size),
        ("production", small.len() as u64)
    );
    assert_eq!(std::fs::read(&parquet.path).expect("on disk"), small);

    // Re-uploading replaces the file.
    t.post(t.app("/data/sources?stage=staging"))
        .multipart(upload_form("sales.csv", b"new".to_vec()))
        .send()
        .await
        .expect("upload");
    let records = t.server.uploads();
    let sales: Vec<_> = records
        .iter()
        .filter(|u| u.filename == "sales.csv")
        .collect();
    assert_eq!((sales.len(), sales[0].size), (1, 3));
}

#[tokio::test]
async fn bad_uploads_get_json_errors() {
    let t = toucan(ToucanConfig {
        data_sources: vec!["sales.csv".into()],
        ..ToucanConfig::default()
    })
    .await;
    let cases = [
        (
            Form::new().text("data", r#"{"filename": "sales.csv"}"#),
            "missing 'file'",
        ),
        (
            Form::new().part("file", Part::bytes(b"x".to_vec())),
            "filename",
        ),
        (
            upload_form("../escape.csv", b"x".to_vec()),
            "invalid data source filename",
        ),
        (
            upload_form("other.csv", b"x".to_vec()),
            "Unknown data source",
        ),
        (
            upload_form("sales.csv", b"x".to_vec()).text("dztotalchunkcount", "2"),
            "chunked",
        ),
        (
            upload_form("sales.csv", b"xyz".to_vec()).text("dztotalfilesize", "10"),
            "dztotalfilesize",
        ),
        (
            Form::new()
                .text("data", "not json")
                .part("file", Part::bytes(b"x".to_vec())),
            "'data' part",
        ),
    ];
    for (form, why) in cases {
        let r = t
            .post(t.app("/data/sources"))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{why}");
        let msg = r.json::<Value>().await.expect("json")["message"]
            .as_str()
            .expect("message")
            .to_owned();
        assert!(msg.contains(why), "{why}: {msg}");
    }
    assert!(t.server.uploads().is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(t.server.storage_dir())
        .expect("storage dir")
        .collect();
    assert!(
        leftovers.is_empty(),
        "refused uploads leave no files behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn operations_poll_to_the_end_and_unknown_ones_are_refused() {
    let t = toucan(ToucanConfig::default()).await;
    let body = json!({"origin": "autofeed", "operations": ["preprocess_data_sources", "populate_basemaps", "populate_reports", "populate_dashboards", "release"]});
    let id = t.start_op("/operations?stage=staging", body).await;
    assert_eq!(
        t.walk(&id).await,
        ["pending", "running", "running", "successful"]
    );
    assert_eq!(t.poll(&id).await, "successful", "terminal states stay");

    let partial = t
        .start_op(
            "/operations?stage=staging",
            json!({"operations": ["preprocess_data_sources"], "output_domains": ["my_domain"]}),
        )
        .await;
    let pre = t
        .start_op(
            "/data/preprocess?stage=staging",
            json!({"input_domains": ["referential"]}),
        )
        .await;
    let pop = t
        .start_op(
            "/populate?stage=staging&release",
            json!({"input_domains": ["referential"]}),
        )
        .await;
    let pop_only = t.start_op("/populate?stage=staging", json!({})).await;
    let rel = t.start_op("/data/release?stage=staging", json!({})).await;
    let naas = t
        .start_op(
            "/config/operations?notify=false&stage=staging",
            json!({"operations": ["populate_permissions"]}),
        )
        .await;
    let ops = t.control("operations").await;
    let find = |id: &str| {
        ops.as_array()
            .expect("ops")
            .iter()
            .find(|o| o["id"] == id)
            .expect("op")
            .clone()
    };
    assert_eq!(find(&partial)["output_domains"], json!(["my_domain"]));
    assert_eq!(find(&pre)["operations"], json!(["preprocess_data_sources"]));
    assert_eq!(find(&pre)["input_domains"], json!(["referential"]));
    assert_eq!(
        find(&pop)["operations"],
        json!([
            "populate_basemaps",
            "populate_reports",
            "populate_dashboards",
            "release"
        ])
    );
    assert_eq!(
        find(&pop_only)["operations"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(
        (
            find(&rel)["operations"].clone(),
            find(&rel)["stage"].clone()
        ),
        (json!(["release"]), json!("staging"))
    );
    assert_eq!(find(&id)["origin"], "autofeed");
    assert_eq!(find(&naas)["operations"], json!(["populate_permissions"]));

    for (body, why) in [
        (
            json!({"operations": ["preprocess_data_sources", "make_coffee"]}),
            "Unknown operation: make_coffee",
        ),
        (json!({"operations": []}), "non-empty"),
    ] {
        let r = t
            .post(t.app("/operations?stage=staging"))
            .json(&body)
            .send()
            .await
            .expect("call");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(
            r.json::<Value>().await.expect("json")["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{why}"
        );
    }
    let bad_stage = t
        .post(t.app("/operations?stage=qa"))
        .json(&json!({"operations": ["release"]}))
        .send()
        .await
        .expect("call");
    assert_eq!(bad_stage.status(), StatusCode::BAD_REQUEST);
    let bad_json = t
        .post(t.app("/operations"))
        .body("{not json")
        .send()
        .await
        .expect("call");
    assert_eq!(bad_json.status(), StatusCode::BAD_REQUEST);
    let c = t.server.credentials();
    let unknown = t
        .http
        .get(t.app("/operations/state/ffffffffffffffffffffffff"))
        .basic_auth(c.username, Some(c.password))
        .send()
        .await
        .expect("state");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn control_makes_the_next_operations_fail() {
    let t = toucan(ToucanConfig::default()).await;
    let base = t.server.base_url().to_owned();
    t.http
        .post(format!("{base}/__sandbox/toucan/fail-next"))
        .json(&json!({"count": 1}))
        .send()
        .await
        .expect("control");
    let id = t
        .start_op(
            "/operations?stage=staging",
            json!({"operations": ["release"]}),
        )
        .await;
    assert_eq!(
        t.walk(&id).await,
        ["pending", "running", "running", "failed"]
    );
    t.http
        .post(format!("{base}/__sandbox/toucan/fail-next"))
        .json(&json!({"at": "pending"}))
        .send()
        .await
        .expect("control");
    let id = t
        .start_op(
            "/operations?stage=staging",
            json!({"operations": ["release"]}),
        )
        .await;
    assert_eq!(t.walk(&id).await, ["pending", "failed"]);
    let id = t
        .start_op(
            "/operations?stage=staging",
            json!({"operations": ["release"]}),
        )
        .await;
    assert_eq!(
        t.walk(&id).await.last().map(String::as_str),
        Some("successful")
    );
    t.server
        .fail_next_operation(toucan::operation::FailAt::Running);
    let id = t
        .start_op(
            "/operations?stage=staging",
            json!({"operations": ["release"]}),
        )
        .await;
    assert_eq!(t.walk(&id).await.last().map(String::as_str), Some("failed"));
    let ops = t.server.operations();
    assert_eq!(ops.len(), 4);
    assert_eq!(
        ops.last().map(|o| o.status),
        Some(toucan::operation::OpStatus::Failed)
    );
    let bad = t
        .http
        .post(format!("{base}/__sandbox/toucan/fail-next"))
        .json(&json!({"at": "never"}))
        .send()
        .await
        .expect("control");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn injected_faults_use_the_json_message_shape() {
    let t = toucan(ToucanConfig::default()).await;
    t.server.faults().set(
        serde_json::from_value(json!({"error_rate": 1.0, "error_status": 502, "max_faults": 1}))
            .expect("faults"),
    );
    let r = t
        .post(t.app("/operations?stage=staging"))
        .json(&json!({"operations": ["release"]}))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(r.json::<Value>().await.expect("json")["message"].is_string());
    t.start_op(
        "/operations?stage=staging",
        json!({"operations": ["release"]}),
    )
    .await;

    // A dropped connection: no response at all, then service resumes.
    t.server
        .faults()
        .set(serde_json::from_value(json!({"drop_every": 1, "max_faults": 1})).expect("faults"));
    let dropped = t
        .post(t.app("/operations?stage=staging"))
        .json(&json!({"operations": ["release"]}))
        .send()
        .await;
    assert!(dropped.is_err(), "the connection closes without a response");
    t.start_op(
        "/operations?stage=staging",
        json!({"operations": ["release"]}),
    )
    .await;
    assert_eq!(t.server.stats().snapshot().faults_injected, 2);
}
