//! Streaming downloads against wiremock servers on 127.0.0.1 and, where a
//! body must be cut short, a raw TCP server.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use client_core::auth::StaticToken;
use client_core::download::{Download, Progress, error_from_io};
use client_core::http::HttpClient;
use client_core::time::RecordingSleeper;
use client_core::{Error, SecretString};
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, Request as Received, ResponseTemplate};

const TOKEN: &str = "s3cr3t-bearer";

/// A client that sends a bearer token on authenticated requests and never
/// really sleeps between retries.
fn client() -> (HttpClient, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let client = HttpClient::builder()
        .bearer(Arc::new(StaticToken::new(SecretString::from(TOKEN))))
        .sleeper(Arc::new(sleeper.clone()))
        .build()
        .expect("client builds");
    (client, sleeper)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn has_authorization(request: &Received) -> bool {
    request.headers.contains_key("authorization")
}

/// Names of the entries in `dir` (to prove no temp file is left).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn read_all(download: &Download, client: &HttpClient) -> Result<Vec<u8>, Error> {
    let mut reader = download.open(client).await?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.map_err(error_from_io)?;
    Ok(out)
}

#[tokio::test]
async fn a_two_member_gzip_decodes_completely() {
    let server = MockServer::start().await;
    let first = b"{\"id\":1}\n".repeat(1000);
    let second = b"{\"id\":2}\n".repeat(1000);
    let mut body = gzip(&first);
    body.extend(gzip(&second));
    Mock::given(path("/part-0.json.gz"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body))
        .mount(&server)
        .await;

    let (client, _) = client();
    let url = format!("{}/part-0.json.gz?sig=abc", server.uri());
    let decoded = read_all(&Download::presigned(url).gzip(true), &client)
        .await
        .unwrap();
    assert_eq!(decoded.len(), first.len() + second.len());
    assert_eq!(&decoded[..first.len()], &first[..]);
    assert_eq!(&decoded[first.len()..], &second[..]);
}

#[tokio::test]
async fn a_presigned_url_gets_no_authorization_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/bucket/object"))
        .and(query_param("X-Amz-Signature", "sig"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"payload".to_vec()))
        .expect(1)
        .mount(&server)
        .await;

    let (client, _) = client();
    let url = format!("{}/bucket/object?X-Amz-Signature=sig", server.uri());
    let body = read_all(&Download::presigned(url), &client).await.unwrap();
    assert_eq!(body, b"payload");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert!(
        !has_authorization(&requests[0]),
        "Authorization sent to a pre-signed URL"
    );
}

#[tokio::test]
async fn a_cross_host_redirect_target_gets_no_authorization_header() {
    let api = MockServer::start().await;
    let storage = MockServer::start().await;
    let signed = format!("{}/store/extract.zip?signature=xyz", storage.uri());
    Mock::given(method("GET"))
        .and(path("/d2l/api/lp/1.30/dataexport/bds/plugin/1620762542"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(ResponseTemplate::new(302).insert_header("location", signed.as_str()))
        .expect(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/store/extract.zip"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"PK-zip-bytes".to_vec()))
        .expect(1)
        .mount(&storage)
        .await;

    let (client, _) = client();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("extract.zip");
    let link = format!(
        "{}/d2l/api/lp/1.30/dataexport/bds/plugin/1620762542",
        api.uri()
    );
    let saved = Download::authenticated(link)
        .to_file(&client, &dest)
        .await
        .unwrap();

    assert_eq!(std::fs::read(&dest).unwrap(), b"PK-zip-bytes");
    assert_eq!(saved.bytes, 12);
    let at_storage = storage.received_requests().await.unwrap();
    assert_eq!(at_storage.len(), 1);
    assert!(
        !has_authorization(&at_storage[0]),
        "bearer token leaked to the storage host"
    );
}

/// What a raw server answers: given the connection number and the request
/// head, the bytes to write before hanging up.
type Answer = Arc<dyn Fn(usize, &str) -> Vec<u8> + Send + Sync>;

/// A raw HTTP/1.1 server that writes whatever `answer` says and closes each
/// connection, so bodies can be cut short. It records the request heads and
/// stops with the test's runtime.
async fn raw_server(answer: Answer) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (answer, log) = (answer.clone(), log.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(head.clone());
                    log.len() - 1
                };
                let _ = socket.write_all(&answer(index, &head)).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), heads)
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Announces `declared` bytes, sends `sent` of them and hangs up, every time.
async fn truncating_server(declared: usize, sent: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    raw_server(Arc::new(move |_, _| {
        response(
            "200 OK",
            &[("Content-Length", declared.to_string())],
            &vec![b'x'; sent],
        )
    }))
    .await
}

/// The bytes of a test object.
fn object(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 241) as u8).collect()
}

/// The `bytes=N-` start of a request head's Range header.
fn range_start(head: &str) -> Option<usize> {
    let line = head.lines().find(|l| l.starts_with("range:"))?;
    line.split("bytes=")
        .nth(1)?
        .trim()
        .trim_end_matches('-')
        .parse()
        .ok()
}

#[tokio::test]
async fn a_truncated_body_fails_and_leaves_no_final_and_no_temp_file() {
    let (base, heads) = truncating_server(100_000, 4_000).await;
    let (client, sleeper) = client();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("object.gz");

    let err = Download::presigned(format!("{base}/object.gz?sig=secret-signature"))
        .to_file(&client, &dest)
        .await
        .unwrap_err();

    match &err {
        Error::Download { url, message } => {
            assert_eq!(url, &format!("{base}/object.gz"));
            assert!(message.contains("4000"), "{message}");
        }
        other => panic!("expected a download error, got {other}"),
    }
    assert!(!err.to_string().contains("secret-signature"), "{err}");
    assert!(!dest.exists());
    assert!(
        entries(dir.path()).is_empty(),
        "left behind: {:?}",
        entries(dir.path())
    );
    assert_eq!(
        heads.lock().unwrap().len(),
        4,
        "the first try and three resumes"
    );
    assert_eq!(sleeper.sleeps().len(), 3);
}

#[tokio::test]
async fn a_truncated_body_is_a_read_error_when_streaming() {
    let (base, heads) = truncating_server(10_000, 1_000).await;
    let (client, _) = client();
    let download = Download::presigned(format!("{base}/o")).max_resumes(0);
    let err = read_all(&download, &client).await.unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err}");
    assert_eq!(
        heads.lock().unwrap().len(),
        1,
        "no resume when max_resumes is 0"
    );
}

#[tokio::test]
async fn a_size_other_than_the_expected_one_fails_without_leaving_files() {
    let server = MockServer::start().await;
    Mock::given(path("/o"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![7u8; 50]))
        .mount(&server)
        .await;
    let (client, _) = client();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("o.bin");
    let err = Download::presigned(format!("{}/o", server.uri()))
        .expected_size(288)
        .to_file(&client, &dest)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Download { message, .. } if message.contains("288")),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn a_complete_download_is_renamed_into_place_with_progress_reported() {
    let server = MockServer::start().await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    Mock::given(path("/big"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body.clone()))
        .mount(&server)
        .await;
    let (client, _) = client();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("big.bin");
    std::fs::write(&dest, b"old content").unwrap();

    let seen: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let log = seen.clone();
    let saved = Download::presigned(format!("{}/big", server.uri()))
        .expected_size(body.len() as u64)
        .progress(move |p| log.lock().unwrap().push(p))
        .to_file(&client, &dest)
        .await
        .unwrap();

    assert_eq!(saved.bytes, body.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(entries(dir.path()), ["big.bin"]);
    let seen = seen.lock().unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.windows(2).all(|w| w[0].bytes < w[1].bytes),
        "progress must grow"
    );
    let last = seen.last().unwrap();
    assert_eq!(
        (last.bytes, last.total),
        (body.len() as u64, Some(body.len() as u64))
    );
}

#[tokio::test]
async fn an_expired_url_is_re_resolved_and_the_download_succeeds() {
    let server = MockServer::start().await;
    Mock::given(path("/obj"))
        .and(query_param("sig", "old"))
        .respond_with(ResponseTemplate::new(403).set_body_string(
            "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/obj"))
        .and(query_param("sig", "new"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"fresh".to_vec()))
        .expect(1)
        .mount(&server)
        .await;

    let (client, _) = client();
    let resolves = Arc::new(AtomicU32::new(0));
    let counter = resolves.clone();
    let fresh = format!("{}/obj?sig=new", server.uri());
    let download =
        Download::presigned(format!("{}/obj?sig=old", server.uri())).on_expired(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let url = fresh.clone();
            async move { Ok(url) }
        });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("obj");
    download.to_file(&client, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"fresh");
    assert_eq!(resolves.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn re_resolving_is_bounded() {
    let server = MockServer::start().await;
    Mock::given(path("/obj"))
        .respond_with(ResponseTemplate::new(403).set_body_string("Request has expired"))
        .mount(&server)
        .await;
    let (client, _) = client();
    let resolves = Arc::new(AtomicU32::new(0));
    let counter = resolves.clone();
    let again = format!("{}/obj?sig=still-old", server.uri());
    let download = Download::presigned(format!("{}/obj?sig=old", server.uri()))
        .max_refreshes(2)
        .on_expired(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let url = again.clone();
            async move { Ok(url) }
        });
    let err = read_all(&download, &client).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(
        !err.to_string().contains("still-old"),
        "query string leaked: {err}"
    );
    assert_eq!(resolves.load(Ordering::SeqCst), 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_403_without_a_resolver_is_an_api_error() {
    let server = MockServer::start().await;
    Mock::given(path("/obj"))
        .respond_with(ResponseTemplate::new(403).set_body_string("expired"))
        .mount(&server)
        .await;
    let (client, _) = client();
    let err = read_all(
        &Download::presigned(format!("{}/obj?sig=s", server.uri())),
        &client,
    )
    .await
    .unwrap_err();
    assert_eq!(err.status(), Some(403));
}

#[tokio::test]
async fn transient_failures_are_retried_by_the_core_loop() {
    let server = MockServer::start().await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(b"ok".to_vec()))
        .mount(&server)
        .await;
    let (client, sleeper) = client();
    let body = read_all(
        &Download::presigned(format!("{}/flaky", server.uri())),
        &client,
    )
    .await
    .unwrap();
    assert_eq!(body, b"ok");
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    assert_eq!(sleeper.sleeps().len(), 2);
}

#[tokio::test]
async fn the_decompressed_size_cap_stops_a_gzip_bomb() {
    let server = MockServer::start().await;
    let bomb = gzip(&vec![0u8; 4 << 20]);
    assert!(bomb.len() < 64 << 10, "the test body should compress well");
    Mock::given(path("/bomb.gz"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(bomb))
        .mount(&server)
        .await;
    let (client, _) = client();
    let url = format!("{}/bomb.gz", server.uri());

    let capped = Download::presigned(url.clone())
        .gzip(true)
        .max_decompressed_bytes(1 << 20);
    let err = read_all(&capped, &client).await.unwrap_err();
    assert!(
        matches!(&err, Error::Download { message, .. } if message.contains("1048576-byte limit")),
        "{err}"
    );

    let roomy = Download::presigned(url)
        .gzip(true)
        .max_decompressed_bytes(4 << 20);
    assert_eq!(read_all(&roomy, &client).await.unwrap().len(), 4 << 20);
}

#[tokio::test]
async fn corrupt_gzip_is_a_download_error() {
    let server = MockServer::start().await;
    Mock::given(path("/bad.gz"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate".to_vec()),
        )
        .mount(&server)
        .await;
    let (client, _) = client();
    let err = read_all(
        &Download::presigned(format!("{}/bad.gz", server.uri())).gzip(true),
        &client,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Download { message, .. } if message.contains("decoded")),
        "{err}"
    );
}

#[tokio::test]
async fn a_broken_transfer_is_resumed_with_a_range_request() {
    let data = Arc::new(object(50_000));
    let served = data.clone();
    let (base, heads) = raw_server(Arc::new(move |_, head| {
        let total = served.len();
        let etag = ("ETag", "\"v1\"".to_string());
        match range_start(head) {
            None => response(
                "200 OK",
                &[("Content-Length", total.to_string()), etag],
                &served[..20_000],
            ),
            Some(from) => response(
                "206 Partial Content",
                &[
                    ("Content-Length", (total - from).to_string()),
                    (
                        "Content-Range",
                        format!("bytes {from}-{}/{total}", total - 1),
                    ),
                    etag,
                ],
                &served[from..],
            ),
        }
    }))
    .await;
    let (client, sleeper) = client();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("object");
    let progress: Arc<Mutex<Vec<u64>>> = Arc::default();
    let log = progress.clone();
    let saved = Download::presigned(format!("{base}/object?sig=s"))
        .progress(move |p| log.lock().unwrap().push(p.bytes))
        .to_file(&client, &dest)
        .await
        .unwrap();

    assert_eq!(saved.bytes, 50_000);
    assert_eq!(std::fs::read(&dest).unwrap(), *data);
    assert_eq!(entries(dir.path()), ["object"]);
    let heads = heads.lock().unwrap();
    assert_eq!(heads.len(), 2);
    assert_eq!(range_start(&heads[1]), Some(20_000));
    assert!(heads[1].contains("if-range: \"v1\""), "{}", heads[1]);
    assert_eq!(sleeper.sleeps().len(), 1);
    let progress = progress.lock().unwrap();
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(progress.last(), Some(&50_000));
}

#[tokio::test]
async fn a_server_ignoring_range_is_read_past_the_bytes_already_received() {
    let data = Arc::new(object(30_000));
    let served = data.clone();
    let (base, heads) = raw_server(Arc::new(move |n, _| {
        let cut = if n == 0 { 12_345 } else { served.len() };
        let length = ("Content-Length", served.len().to_string());
        response("200 OK", &[length], &served[..cut])
    }))
    .await;
    let (client, _) = client();
    let body = read_all(&Download::presigned(format!("{base}/o")), &client)
        .await
        .unwrap();
    assert_eq!(body, *data);
    assert_eq!(heads.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_object_that_changed_while_resuming_fails_without_leaving_files() {
    let (base, _) = raw_server(Arc::new(move |n, _| {
        let headers = [
            ("Content-Length", "1000".to_string()),
            ("ETag", format!("\"v{n}\"")),
        ];
        response("200 OK", &headers, &[1u8; 300])
    }))
    .await;
    let (client, _) = client();
    let dir = tempfile::tempdir().unwrap();
    let err = Download::presigned(format!("{base}/o"))
        .to_file(&client, dir.path().join("o"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Download { message, .. } if message.contains("changed")),
        "{err}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[tokio::test]
async fn a_url_that_expires_mid_transfer_is_re_resolved_and_resumed() {
    let data = Arc::new(object(40_000));
    let served = data.clone();
    let (base, heads) = raw_server(Arc::new(move |_, head| {
        let total = served.len();
        let fresh = head.contains("sig=new");
        match (range_start(head), fresh) {
            (None, _) => response(
                "200 OK",
                &[("Content-Length", total.to_string())],
                &served[..10_000],
            ),
            (Some(_), false) => {
                let body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";
                response("403 Forbidden", &[("Content-Length", body.len().to_string())], body)
            }
            (Some(from), true) => response(
                "206 Partial Content",
                &[
                    ("Content-Length", (total - from).to_string()),
                    ("Content-Range", format!("bytes {from}-{}/{total}", total - 1)),
                ],
                // The first resumed transfer breaks off too.
                &served[from..if from == 10_000 { 25_000 } else { total }],
            ),
        }
    }))
    .await;
    let (client, _) = client();
    let resolves = Arc::new(AtomicU32::new(0));
    let counter = resolves.clone();
    let fresh = format!("{base}/o?sig=new");
    let download = Download::presigned(format!("{base}/o?sig=old")).on_expired(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let url = fresh.clone();
        async move { Ok(url) }
    });
    let body = read_all(&download, &client).await.unwrap();
    assert_eq!(body, *data);
    assert_eq!(resolves.load(Ordering::SeqCst), 1);
    let heads = heads.lock().unwrap();
    // old URL, old URL again (403), fresh URL, fresh URL again: the second
    // resume goes straight to the URL that worked.
    assert_eq!(heads.len(), 4, "{heads:?}");
    assert_eq!(range_start(&heads[2]), Some(10_000));
    assert_eq!(range_start(&heads[3]), Some(25_000));
    assert!(heads[3].contains("sig=new"));
}

#[tokio::test]
async fn downloads_run_concurrently_on_spawned_tasks() {
    let server = MockServer::start().await;
    for i in 0..4u8 {
        Mock::given(path(format!("/part-{i}")))
            .respond_with(
                ResponseTemplate::new(200).set_body_bytes(vec![i; 10_000 + usize::from(i)]),
            )
            .mount(&server)
            .await;
    }
    let (client, _) = client();
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<_> = (0..4u8)
        .map(|i| {
            let client = client.clone();
            let dest = dir.path().join(format!("part-{i}"));
            let download = Download::presigned(format!("{}/part-{i}", server.uri()));
            tokio::spawn(async move { download.to_file(&client, &dest).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let saved = task.await.unwrap().unwrap();
        assert_eq!(saved.bytes, 10_000 + i as u64);
        assert_eq!(
            std::fs::read(&saved.path).unwrap(),
            vec![i as u8; 10_000 + i]
        );
    }
    assert_eq!(entries(dir.path()).len(), 4);
}
