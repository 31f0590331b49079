//! The fake LD batch API over plain HTTP: password grant, imports (JSON and CSV, streamed and
//! counted), exports with downloadable results, the job state machine, cancel, and faults.

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use sandbox::ld::{self, LdConfig, LdServer};
use sandbox::{Faults, Stats};
use serde_json::{Value, json};

struct Ld {
    server: LdServer,
    http: reqwest::Client,
    token: String,
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn token_call(
    http: &reqwest::Client,
    server: &LdServer,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    http.post(format!("{}/ls/api/oauth2/token", server.base_url()))
        .form(fields)
        .send()
        .await
        .expect("token call")
}

async fn login(http: &reqwest::Client, server: &LdServer) -> String {
    let c = server.credentials();
    let scope = format!("community={}", c.community);
    let r = token_call(
        http,
        server,
        &[
            ("grant_type", "password"),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("username", &c.username),
            ("password", &c.password),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["token_type"], "bearer");
    v["access_token"].as_str().expect("token").to_owned()
}

async fn ld() -> Ld {
    let server = ld::start(LdConfig::default(), Faults::new(), Stats::new())
        .await
        .expect("start");
    let http = http();
    let token = login(&http, &server).await;
    Ld {
        server,
        http,
        token,
    }
}

impl Ld {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }
    async fn import(&self, form: Form) -> reqwest::Response {
        self.http
            .post(self.url("/ls/api/batch/import"))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .expect("import")
    }
    async fn import_ok(&self, form: Form) -> Value {
        let r = self.import(form).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["status"], "Initialized");
        v
    }
    async fn job_call(&self, route: &str, id: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/ls/api/batch/{route}")))
            .bearer_auth(&self.token)
            .form(&[("jobId", id)])
            .send()
            .await
            .expect("job call")
    }
    async fn status(&self, id: &str) -> Value {
        let r = self.job_call("status", id).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.expect("json")
    }
    /// Polls until a terminal status, returning every status seen.
    async fn walk(&self, id: &str) -> (Vec<String>, Value) {
        let mut seen = Vec::new();
        for _ in 0..20 {
            let v = self.status(id).await;
            let s = v["status"].as_str().expect("status").to_owned();
            seen.push(s.clone());
            if ["Completed", "Rejected", "Canceled", "Failed"].contains(&s.as_str()) {
                return (seen, v);
            }
        }
        panic!("job {id} never ended: {seen:?}");
    }
    async fn control(&self, path: &str) -> Value {
        self.http
            .get(self.url(&format!("/__sandbox/ld/{path}")))
            .send()
            .await
            .expect("control")
            .json()
            .await
            .expect("json")
    }
}

fn import_form(content_type: &str, item_type: &str, file: Vec<u8>) -> Form {
    Form::new()
        .text("jobName", "Attendee Import Job")
        .text("notificationEmail", "ops@example.com")
        .text("contentType", content_type.to_owned())
        .text("itemType", item_type.to_owned())
        .text("merge", "False")
        .part(
            "file",
            Part::bytes(file)
                .file_name("data.json")
                .mime_str(content_type)
                .expect("mime"),
        )
}

fn id(v: &Value) -> String {
    v["jobId"].as_str().expect("job id").to_owned()
}

#[tokio::test]
async fn password_grant_and_its_errors() {
    let server = ld::start(LdConfig::default(), Faults::new(), Stats::new())
        .await
        .expect("start");
    let http = http();
    let c = server.credentials();
    let bad_password = token_call(
        &http,
        &server,
        &[
            ("grant_type", "password"),
            ("username", &c.username),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(bad_password.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad_password.json().await.expect("json");
    assert_eq!(
        (body["error"].as_str(), body["error_description"].as_str()),
        (Some("invalid_grant"), Some("Bad credentials"))
    );
    let bad_client = token_call(
        &http,
        &server,
        &[
            ("grant_type", "password"),
            ("client_id", &c.client_id),
            ("client_secret", "x"),
        ],
    )
    .await;
    assert_eq!(bad_client.status(), StatusCode::UNAUTHORIZED);
    let bad_grant = token_call(&http, &server, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        bad_grant.json::<Value>().await.expect("json")["error"],
        "unsupported_grant_type"
    );
    let bad_community = token_call(
        &http,
        &server,
        &[
            ("grant_type", "password"),
            ("username", &c.username),
            ("password", &c.password),
            ("scope", "community=Other"),
        ],
    )
    .await;
    assert_eq!(
        bad_community.json::<Value>().await.expect("json")["error"],
        "invalid_scope"
    );

    // No community in the scope (the Java example also sends no client credentials): the
    // token is valid but batch calls need setCommunity first.
    let r = token_call(
        &http,
        &server,
        &[
            ("grant_type", "password"),
            ("username", &c.username),
            ("password", &c.password),
        ],
    )
    .await;
    let token = r.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let validate = http
        .get(format!("{}/ls/api/oauth2/validate", c.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("validate");
    assert_eq!(validate.status(), StatusCode::OK);
    let status = |t: String| {
        let http = http.clone();
        let url = format!("{}/ls/api/batch/status", c.base_url);
        async move {
            http.post(url)
                .bearer_auth(t)
                .form(&[("jobId", "x")])
                .send()
                .await
                .expect("status")
                .status()
        }
    };
    assert_eq!(status(token.clone()).await, StatusCode::FORBIDDEN);
    let set = http
        .post(format!("{}/ls/api/oauth2/setCommunity", c.base_url))
        .bearer_auth(&token)
        .form(&[("community", c.community.as_str())])
        .send()
        .await
        .expect("setCommunity");
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(
        status(token.clone()).await,
        StatusCode::NOT_FOUND,
        "unknown job id once the community is set"
    );
    assert_eq!(status("not-a-token".into()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.stats().snapshot().token_requests, 5);
}

#[tokio::test]
async fn json_import_walks_the_state_machine_and_is_kept_byte_for_byte() {
    let t = ld().await;
    let file = br#"[{"name": "a, \"quoted\"", "x": [1, {"y": "]"}]}, {"name": "\u00e9t\u00e9\nnext"}, {}]"#.to_vec();
    let job = t
        .import_ok(import_form("application/json", "Attendee", file.clone()))
        .await;
    assert_eq!(job["recordsProcessed"], "0");
    assert_eq!(job["runTime"], "0");
    assert!(
        job["submitTime"]
            .as_str()
            .is_some_and(|s| s.ends_with("+0000"))
    );
    let (seen, last) = t.walk(&id(&job)).await;
    assert_eq!(seen, ["Accepted", "Processing", "Processing", "Completed"]);
    assert_eq!(last["recordsProcessed"], "3");
    assert_eq!(last["itemType"], "Attendee");
    assert_eq!(last["jobName"], "Attendee Import Job");

    let imports = t.control("imports").await;
    let import = &imports[0];
    assert_eq!(import["records"], 3);
    assert_eq!(import["bytes"], file.len());
    assert_eq!(import["merge"], false);
    assert_eq!(import["sha256"].as_str().map(str::len), Some(64));
    let stored = t
        .http
        .get(t.url(&format!("/__sandbox/ld/imports/{}/file", id(&job))))
        .send()
        .await
        .expect("file")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(stored.as_ref(), file.as_slice());
}

#[tokio::test]
async fn csv_import_counts_records_not_lines() {
    let t = ld().await;
    let csv =
        b"name,notes\r\nAda,\"two\nlines\"\r\n\"Smith, Jr.\",\"say \"\"hi\"\"\"\r\nZo\xc3\xab,\r\n"
            .to_vec();
    let form = import_form("plain/text", "Account", csv)
        .text("headerRow", "true")
        .part(
            "template",
            Part::bytes(br#"{"name": "$name"}"#.to_vec())
                .file_name("template.json")
                .mime_str("application/json")
                .expect("mime"),
        );
    let job = t.import_ok(form).await;
    let (_, last) = t.walk(&id(&job)).await;
    assert_eq!(last["status"], "Completed");
    assert_eq!(last["recordsProcessed"], "3");
    assert_eq!(
        t.control("imports").await[0]["template"],
        r#"{"name": "$name"}"#
    );
}

#[tokio::test]
async fn bad_files_and_parameters_are_rejected_in_the_job() {
    let t = ld().await;
    let cases = [
        (
            import_form(
                "application/json",
                "Attendee",
                b"[{\"a\": 1}, {\"b\": ".to_vec(),
            ),
            "truncated",
        ),
        (
            import_form("application/json", "Attendee", b"[1, 2]".to_vec()),
            "objects",
        ),
        (
            import_form("text/plain", "Attendee", b"a,b\n".to_vec()),
            "plain/text",
        ),
        (
            import_form("application/json", "", b"{}".to_vec()),
            "itemType",
        ),
        (
            import_form("plain/text", "Attendee", b"a,\"open\n".to_vec()),
            "never closed",
        ),
    ];
    for (form, why) in cases {
        let job = t.import_ok(form).await;
        let (seen, last) = t.walk(&id(&job)).await;
        assert_eq!(seen, ["Rejected"]);
        assert!(
            last["reason"].as_str().is_some_and(|r| r.contains(why)),
            "{why}: {last}"
        );
    }
    let no_file = t.import(Form::new().text("itemType", "Attendee")).await;
    assert_eq!(no_file.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        no_file.json::<Value>().await.expect("json")["error"],
        "invalid_request"
    );
}

#[tokio::test]
async fn control_forces_failures_and_rejections() {
    let t = ld().await;
    let r = t
        .http
        .post(t.url("/__sandbox/ld/next-job"))
        .json(&json!({"fate": "fail", "reason": "disk full"}))
        .send()
        .await
        .expect("control");
    assert_eq!(r.status(), StatusCode::OK);
    let job = t
        .import_ok(import_form(
            "application/json",
            "Attendee",
            b"[{}, {}]".to_vec(),
        ))
        .await;
    let (seen, last) = t.walk(&id(&job)).await;
    assert_eq!(seen, ["Accepted", "Processing", "Processing", "Failed"]);
    assert_eq!(last["reason"], "disk full");

    t.http
        .post(t.url("/__sandbox/ld/next-job"))
        .json(&json!({"fate": "reject"}))
        .send()
        .await
        .expect("control");
    let job = t
        .import_ok(import_form(
            "application/json",
            "Attendee",
            b"[{}]".to_vec(),
        ))
        .await;
    assert_eq!(t.walk(&id(&job)).await.0, ["Rejected"]);
    // The forced fates are used up: the next job completes.
    let job = t
        .import_ok(import_form(
            "application/json",
            "Attendee",
            b"[{}]".to_vec(),
        ))
        .await;
    assert_eq!(t.walk(&id(&job)).await.1["status"], "Completed");
    // The same through the Rust API.
    t.server.force_next_job(ld::job::Fate::Reject("no".into()));
    let job = t
        .import_ok(import_form(
            "application/json",
            "Attendee",
            b"[{}]".to_vec(),
        ))
        .await;
    assert_eq!(t.walk(&id(&job)).await.1["reason"], "no");
    let jobs = t.server.jobs();
    assert_eq!(jobs.len(), 4);
    let ld::job::JobKind::Import {
        path: Some(path),
        bytes,
        ..
    } = &jobs[3].kind
    else {
        panic!("an import with its stored file");
    };
    assert_eq!(std::fs::read(path).expect("stored upload"), b"[{}]");
    assert_eq!(*bytes, 4);
    let bad = t
        .http
        .post(t.url("/__sandbox/ld/next-job"))
        .json(&json!({"fate": "explode"}))
        .send()
        .await
        .expect("control");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn cancel_goes_through_canceling_and_conflicts_after_the_end() {
    let t = ld().await;
    let job = t
        .import_ok(import_form(
            "application/json",
            "Attendee",
            b"[{}]".to_vec(),
        ))
        .await;
    assert_eq!(t.status(&id(&job)).await["status"], "Accepted");
    let canceled = t.job_call("cancel", &id(&job)).await;
    assert_eq!(canceled.status(), StatusCode::OK);
    assert_eq!(
        canceled.json::<Value>().await.expect("json")["status"],
        "Canceling"
    );
    assert_eq!(t.status(&id(&job)).await["status"], "Canceled");
    let again = t.job_call("cancel", &id(&job)).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(
        t.job_call("cancel", "no-such-job").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.job_call("status", "no-such-job").await.status(),
        StatusCode::NOT_FOUND
    );
    let missing = t
        .http
        .post(t.url("/ls/api/batch/status"))
        .bearer_auth(&t.token)
        .form(&[("x", "y")])
        .send()
        .await
        .expect("status");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn exports_complete_with_downloadable_results() {
    let t = ld().await;
    let export = |content_type: &'static str, sql: &'static str| {
        t.http
            .post(t.url("/ls/api/batch/export"))
            .bearer_auth(&t.token)
            .form(&[
                ("jobName", "Nightly"),
                ("itemType", "Account"),
                ("contentType", content_type),
                ("sqlQuery", sql),
                ("filters", "0"),
                ("template", ""),
                ("rowHeader", "true"),
            ])
            .send()
    };
    let job: Value = export("application/json", "select * from Account limit 3")
        .await
        .expect("export")
        .json()
        .await
        .expect("json");
    assert_eq!(job["status"], "Initialized");
    let (_, done) = t.walk(&id(&job)).await;
    assert_eq!(done["status"], "Completed");
    assert_eq!(done["recordsProcessed"], "3");
    let link = done["downloadLinks"][0].as_str().expect("download link");
    let items: Vec<Value> = t
        .http
        .get(link)
        .send()
        .await
        .expect("download")
        .json()
        .await
        .expect("json array");
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["id"], "Account-000000");
    let tampered = format!("{}x", link);
    assert_eq!(
        t.http
            .get(tampered)
            .send()
            .await
            .expect("download")
            .status(),
        StatusCode::FORBIDDEN
    );
    // The result link is a capability URL: requests to it are counted as blob
    // requests, and a bearer token sent there is recorded.
    let before = t.server.stats().snapshot();
    t.http
        .get(link)
        .bearer_auth("leaked-token")
        .send()
        .await
        .expect("download");
    let after = t.server.stats().snapshot();
    assert_eq!(after.blob_requests, before.blob_requests + 1);
    assert_eq!(
        after.blob_authorization_headers,
        before.blob_authorization_headers + 1
    );

    let job: Value = export("text/plain", "select * from Account")
        .await
        .expect("export")
        .json()
        .await
        .expect("json");
    let (_, done) = t.walk(&id(&job)).await;
    let csv = t
        .http
        .get(done["downloadLinks"][0].as_str().expect("link"))
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    assert!(csv.starts_with("id,name,amount,active,updatedAt,notes\r\n"));
    assert_eq!(done["recordsProcessed"], "25");

    let bad: Value = export("text/xml", "")
        .await
        .expect("export")
        .json()
        .await
        .expect("json");
    assert_eq!(t.walk(&id(&bad)).await.0, ["Rejected"]);
}

#[tokio::test]
async fn large_uploads_are_streamed_and_counted() {
    let t = ld().await;
    let line = br#"{"id": 123456, "name": "streamed, \"big\" upload", "tags": ["a", "b"]}"#;
    let records = 60_000u64;
    let mut body = Vec::with_capacity(line.len() * records as usize + records as usize);
    for _ in 0..records {
        body.extend_from_slice(line);
        body.push(b'\n');
    }
    let size = body.len() as u64;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let part = Part::stream_with_length(
        reqwest::Body::wrap_stream(futures::stream::iter(chunks)),
        size,
    )
    .file_name("big.jsonl")
    .mime_str("application/json")
    .expect("mime");
    let form = Form::new()
        .text("contentType", "application/json")
        .text("itemType", "Attendee")
        .part("file", part);
    let job = t.import_ok(form).await;
    assert_eq!(
        t.walk(&id(&job)).await.1["recordsProcessed"],
        records.to_string()
    );
    assert_eq!(t.control("imports").await[0]["bytes"], size);
}

#[tokio::test]
async fn faults_and_token_expiry_use_the_oauth_error_shape() {
    let t = ld().await;
    t.server.faults().set(
        serde_json::from_value(
            json!({"rate_limit_every": 1, "retry_after_secs": 3, "max_faults": 1}),
        )
        .expect("faults"),
    );
    let limited = t.job_call("status", "x").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "3");
    assert_eq!(
        limited.json::<Value>().await.expect("json")["error"],
        "rate_limited"
    );
    assert_eq!(
        t.job_call("status", "x").await.status(),
        StatusCode::NOT_FOUND
    );

    let r = t
        .http
        .post(t.url("/__sandbox/ld/expire-tokens"))
        .send()
        .await
        .expect("control");
    assert_eq!(r.status(), StatusCode::OK);
    let expired = t.job_call("status", "x").await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        expired.json::<Value>().await.expect("json")["error"],
        "invalid_token"
    );

    t.server
        .faults()
        .set(serde_json::from_value(json!({"token_ttl_secs": 0})).expect("faults"));
    let short = login(&t.http, &t.server).await;
    let r = t
        .http
        .get(t.url("/ls/api/oauth2/validate"))
        .bearer_auth(short)
        .send()
        .await
        .expect("validate");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_kth_call_first_revokes_the_issued_tokens() {
    let t = ld().await;
    t.server
        .faults()
        .set(serde_json::from_value(json!({"expire_tokens_every": 3})).expect("faults"));
    // Calls 1 and 2 pass; call 3 finds every token revoked.
    let statuses = [
        t.job_call("status", "x").await.status(),
        t.job_call("status", "x").await.status(),
        t.job_call("status", "x").await.status(),
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
            StatusCode::UNAUTHORIZED
        ]
    );
    // A token issued afterwards works (call 4 is the login, 5 uses it) until call 6.
    let fresh = login(&t.http, &t.server).await;
    let call = |token: String| {
        t.http
            .post(t.url("/ls/api/batch/status"))
            .bearer_auth(token)
            .form(&[("jobId", "x")])
            .send()
    };
    assert_eq!(
        call(fresh.clone()).await.expect("call").status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(fresh).await.expect("call").status(),
        StatusCode::UNAUTHORIZED
    );
}
