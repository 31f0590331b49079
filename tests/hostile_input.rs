//! Hostile input ends in a typed error (or a documented safe outcome) within
//! bounded memory and time: zip-slip names and zip bombs (BDS reader), gzip
//! bombs (core download, DAP objects), a single endless line (DAP record
//! decoders, BDS CSV reader), invalid UTF-8 and malformed JSON/CSV/TSV,
//! hostile SQL identifiers (sql-sink), unknown job statuses (DAP, LD,
//! Toucan: kept as `Unknown`, and the waiters still stop at their deadline),
//! and absurd `Retry-After` values (capped).
//!
//! Hostile servers are raw HTTP servers on 127.0.0.1 (tests/common). Bombs
//! are generated, never stored: a deflate stream of zeros is about 160:1,
//! so a 64 MiB bomb is 400 KiB. Long lines come from `repeat(..).take(..)`
//! generators; readers are wrapped in byte counters to prove that they stop
//! at their cap instead of consuming (or buffering) the whole input. The
//! caps are per line/record, so the same assertions hold for a 1 GB line:
//! only the time to reach the cap is spent, never more memory than the cap.

mod common;

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use client_core::download::Download;
use client_core::http::HttpClient;
use client_core::time::{ManualClock, RecordingSleeper};
use common::archives::{ZipEntry, gzip_zeros, zip};
use common::raw_http::{RawRequest, RawResponse, serve};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------- helpers

/// Counts the bytes pulled through a reader (sync or async).
struct Counted<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R> Counted<R> {
    fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        (
            Counted {
                inner,
                read: read.clone(),
            },
            read,
        )
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        polled
    }
}

/// A server answering every request with `body` (e.g. a pre-signed object).
async fn serve_bytes(body: Vec<u8>) -> common::raw_http::RawServer {
    serve(move |_| RawResponse {
        status: 200,
        headers: vec![("Content-Type".into(), "application/octet-stream".into())],
        body: body.clone(),
    })
    .await
}

fn write_zip(dir: &std::path::Path, entries: &[ZipEntry]) -> std::path::PathBuf {
    let path = dir.join("extract.zip");
    std::fs::write(&path, zip(entries)).expect("write zip");
    path
}

fn dap_client(base: &str) -> dap_client::ClientBuilder {
    let clock = ManualClock::new();
    dap_client::Client::builder()
        .base_url(base)
        .credentials("id", dap_client::SecretString::from("secret-value"))
        .sleeper(Arc::new(RecordingSleeper::with_clock(clock.clone())))
        .clock(Arc::new(clock))
        .random(Arc::new(client_core::retry::FixedRandom::new(0.0)))
        .rng_seed(1)
}

// ---------------------------------------------------------------- archives

#[test]
fn a_well_formed_extract_is_read_so_the_archive_writer_is_sound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_zip(
        dir.path(),
        &[ZipEntry::stored(
            "Users.csv",
            b"UserId,UserName\n1,ada\n2,grace\n",
        )],
    );
    let mut archive = bds_client::ExtractArchive::open(&path, bds_client::ArchiveLimits::default())
        .expect("a valid zip");
    let rows: Vec<_> = archive
        .rows()
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("valid rows");
    assert_eq!(rows.len(), 2);
}

#[test]
fn zip_slip_entry_names_are_refused_and_nothing_is_written() {
    let names = [
        "../evil.csv",
        "../../etc/evil.csv",
        "a/../../evil.csv",
        "..\\evil.csv",
        "/tmp/evil.csv",
        "\\evil.csv",
        "C:\\evil.csv",
        "C:evil.csv",
    ];
    for name in names {
        let root = tempfile::tempdir().expect("temp dir");
        let inner = root.path().join("inner");
        std::fs::create_dir(&inner).expect("inner dir");
        let path = write_zip(&inner, &[ZipEntry::stored(name, b"Id\n1\n")]);
        let err = bds_client::ExtractArchive::open(&path, bds_client::ArchiveLimits::default())
            .expect_err(name);
        assert!(
            matches!(err, bds_client::BdsError::UnsafeEntryName { .. }),
            "{name}: {err:?}"
        );
        assert!(
            err.to_string().contains(&format!("{name:?}")),
            "the message names the entry: {err}"
        );
        let left: Vec<_> = walk(root.path());
        assert_eq!(
            left,
            vec![path.clone()],
            "{name}: only the zip itself exists"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_zip_bomb_is_refused_by_declared_size_ratio_or_produced_bytes() {
    use bds_client::{ArchiveLimits, BdsError, ExtractArchive};
    let dir = tempfile::tempdir().expect("temp dir");
    let size = 64 * MIB;

    // Honest headers: 64 MiB of zeros in ~400 KiB. Refused before any
    // decompression, by the size cap and by the ratio cap.
    let honest = write_zip(
        dir.path(),
        &[ZipEntry::zeros("bomb.csv", size, size as u32)],
    );
    let err = ExtractArchive::open(
        &honest,
        ArchiveLimits::default().max_uncompressed_bytes(16 * MIB),
    )
    .expect_err("declared size over the cap");
    assert!(
        matches!(err, BdsError::DecompressionLimit { .. }),
        "{err:?}"
    );
    let err = ExtractArchive::open(&honest, ArchiveLimits::default().max_compression_ratio(100))
        .expect_err("ratio over the cap");
    assert!(matches!(err, BdsError::CompressionRatio { .. }), "{err:?}");

    // Lying headers: they declare 1000 bytes. The bytes actually produced
    // are what counts: unpacking stops with a typed error and leaves no file.
    let liar = write_zip(dir.path(), &[ZipEntry::zeros("bomb.csv", size, 1000)]);
    let out = dir.path().join("out");
    let mut archive =
        ExtractArchive::open(&liar, ArchiveLimits::default().max_uncompressed_bytes(MIB))
            .expect("the headers look harmless");
    let err = archive
        .unpack_to(&out)
        .expect_err("more bytes than declared");
    assert!(
        matches!(
            err,
            BdsError::DecompressionLimit { .. } | BdsError::Archive { .. }
        ),
        "{err:?}"
    );
    let written: Vec<_> = if out.exists() { walk(&out) } else { vec![] };
    assert!(written.is_empty(), "nothing half-written: {written:?}");

    // Read as rows with default limits: one endless NUL "record" hits the
    // record cap (or the produced-bytes check) instead of filling memory.
    let mut archive =
        ExtractArchive::open(&liar, ArchiveLimits::default()).expect("harmless headers");
    let failed = match archive.rows() {
        Err(e) => e,
        Ok(rows) => rows
            .into_iter()
            .find_map(Result::err)
            .expect("the bomb cannot read as valid rows"),
    };
    assert!(
        matches!(
            failed,
            BdsError::Csv { .. }
                | BdsError::RecordTooLarge { .. }
                | BdsError::DecompressionLimit { .. }
                | BdsError::Archive { .. }
        ),
        "{failed:?}"
    );
}

// ---------------------------------------------------------------- gzip

#[tokio::test]
async fn gzip_is_decoded_and_a_gzip_bomb_stops_at_the_cap() {
    let http = HttpClient::builder().build().expect("client");

    // Control: the generator's gzip decodes to exactly what it claims.
    let small = serve_bytes(gzip_zeros(100_000)).await;
    let mut reader = Download::presigned(format!("{}/small.gz?sig=s3cr3t", small.url))
        .gzip(true)
        .open(&http)
        .await
        .expect("open");
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.expect("valid gzip");
    assert_eq!(out.len(), 100_000);
    assert!(out.iter().all(|&b| b == 0));

    // 64 MiB of zeros in ~400 KiB, read with a 1 MiB cap.
    let bomb = serve_bytes(gzip_zeros(64 * MIB)).await;
    let reader = Download::presigned(format!("{}/bomb.gz?sig=s3cr3t", bomb.url))
        .gzip(true)
        .max_decompressed_bytes(MIB)
        .open(&http)
        .await
        .expect("open");
    let (mut counted, produced) = Counted::new(reader);
    let mut sink = vec![0u8; 64 * 1024];
    let err = loop {
        match counted.read(&mut sink).await {
            Ok(0) => panic!("the bomb was decoded to the end"),
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(
        produced.load(Ordering::Relaxed) <= MIB,
        "stopped at the cap"
    );
    let core = client_core::download::error_from_io(err);
    assert!(
        matches!(&core, client_core::Error::Download { .. }),
        "{core:?}"
    );
    assert!(!core.to_string().contains("s3cr3t"), "{core}");
}

#[tokio::test]
async fn a_gzip_bomb_object_fails_the_dap_record_stream() {
    use futures::StreamExt;
    let bomb = serve_bytes(gzip_zeros(64 * MIB)).await;
    let client = dap_client("https://api.example.invalid")
        .max_decompressed_bytes(MIB)
        .build()
        .expect("client");
    let object = dap_client::Object::new("part-00000");
    let resource = dap_client::Resource::new(format!("{}/part-00000.json.gz?sig=x", bomb.url));
    let records = client.object_records(object, resource, dap_client::Format::Jsonl, None);
    futures::pin_mut!(records);
    let first = tokio::time::timeout(Duration::from_secs(30), records.next())
        .await
        .expect("bounded time")
        .expect("one item");
    let err = first.expect_err("a bomb is not records");
    let text = err.to_string();
    assert!(
        text.contains(&MIB.to_string()) || text.contains("max_decompressed_bytes"),
        "the error names the cap: {text}"
    );
}

// ---------------------------------------------------------------- long lines

#[tokio::test]
async fn an_endless_line_is_rejected_by_every_dap_decoder_at_its_cap() {
    use dap_client::Format;
    use dap_client::record::{DEFAULT_MAX_LINE_LEN, DecodeError, RecordReader};
    let total = 256 * MIB;
    // JSONL with the default cap (64 MiB): 256 MiB offered, the reader must
    // stop after at most the cap plus one buffer.
    let (counted, consumed) = Counted::new(tokio::io::repeat(b'x').take(total));
    let mut reader =
        RecordReader::new(tokio::io::BufReader::new(counted), Format::Jsonl).expect("reader");
    let err = reader.next_record().await.expect_err("line too long");
    assert!(matches!(err, DecodeError::LineTooLong { .. }), "{err:?}");
    let used = consumed.load(Ordering::Relaxed);
    assert!(
        used <= DEFAULT_MAX_LINE_LEN as u64 + MIB,
        "read {used} bytes of {total}"
    );

    // TSV and CSV with a 1 MiB cap, both as an endless header and as an
    // endless data line after a valid header.
    for format in [Format::Tsv, Format::Csv] {
        let sep = if format == Format::Tsv { "\t" } else { "," };
        let header = format!("meta.ts{sep}meta.action{sep}key.id{sep}value.name\n");
        for prefix in [String::new(), header] {
            let (counted, consumed) = Counted::new(AsyncReadExt::chain(
                std::io::Cursor::new(prefix.clone().into_bytes()),
                tokio::io::repeat(b'y').take(total),
            ));
            let result = async {
                let mut reader =
                    RecordReader::new(tokio::io::BufReader::new(counted), format.clone())?
                        .max_line_len(MIB as usize);
                reader.next_record().await
            }
            .await;
            let err = result.expect_err("line too long");
            assert!(
                matches!(err, DecodeError::LineTooLong { .. }),
                "{format} {}: {err:?}",
                prefix.len()
            );
            assert!(consumed.load(Ordering::Relaxed) <= 3 * MIB);
        }
    }
}

#[test]
fn an_endless_csv_record_is_rejected_by_the_bds_reader_at_its_cap() {
    let limits = bds_client::ArchiveLimits::default();
    let total = 256 * MIB;
    let (counted, consumed) = Counted::new(Read::chain(
        &b"UserId,UserName\n1,"[..],
        std::io::repeat(b'z').take(total),
    ));
    let mut rows = bds_client::CsvRows::from_reader(counted, "Users.csv", limits).expect("header");
    let err = rows
        .find_map(Result::err)
        .expect("an endless record is an error");
    assert!(
        matches!(err, bds_client::BdsError::RecordTooLarge { .. }),
        "{err:?}"
    );
    let used = consumed.load(Ordering::Relaxed);
    assert!(
        used <= limits.max_record_bytes + MIB,
        "read {used} bytes of {total}"
    );
}

// ---------------------------------------------------------------- malformed

#[tokio::test]
async fn malformed_and_non_utf8_dap_objects_are_typed_decode_errors() {
    use dap_client::Format;
    use dap_client::record::{DecodeError, RecordReader};
    let tsv_header = "meta.ts\tmeta.action\tkey.id\tvalue.name\n";
    let csv_header = "meta.ts,meta.action,key.id,value.name\n";
    let deep = format!("{}\n", "[".repeat(100_000));
    let deep_object = format!("{}\n", "{\"a\":".repeat(100_000));
    let cases: Vec<(&str, Format, Vec<u8>)> = vec![
        ("jsonl: not json", Format::Jsonl, b"{not json\n".to_vec()),
        (
            "jsonl: truncated",
            Format::Jsonl,
            b"{\"key\":{\"id\":1},\"value\":{\"na".to_vec(),
        ),
        (
            "jsonl: 100k nested arrays",
            Format::Jsonl,
            deep.into_bytes(),
        ),
        (
            "jsonl: 100k nested objects",
            Format::Jsonl,
            deep_object.into_bytes(),
        ),
        (
            "jsonl: invalid utf-8",
            Format::Jsonl,
            b"{\"key\":{\"id\":1},\"value\":{\"name\":\"\xff\xfe\"}}\n".to_vec(),
        ),
        (
            "tsv: missing cells",
            Format::Tsv,
            format!("{tsv_header}2024-05-01T10:11:12Z\tU\n").into_bytes(),
        ),
        (
            "tsv: extra cells",
            Format::Tsv,
            format!("{tsv_header}2024-05-01T10:11:12Z\tU\t1\tAda\tx\ty\n").into_bytes(),
        ),
        (
            "tsv: invalid utf-8",
            Format::Tsv,
            [
                tsv_header.as_bytes(),
                b"2024-05-01T10:11:12Z\tU\t1\t\xc3\x28\n",
            ]
            .concat(),
        ),
        (
            "csv: unterminated quote",
            Format::Csv,
            format!("{csv_header}2024-05-01T10:11:12Z,U,1,\"Ada\n").into_bytes(),
        ),
        (
            "csv: missing cells",
            Format::Csv,
            format!("{csv_header}2024-05-01T10:11:12Z\n").into_bytes(),
        ),
        (
            "csv: invalid utf-8",
            Format::Csv,
            [csv_header.as_bytes(), b"2024-05-01T10:11:12Z,U,1,\xff\n"].concat(),
        ),
    ];
    for (label, format, bytes) in cases {
        let outcome = async {
            let mut reader = RecordReader::new(&bytes[..], format.clone())?;
            while reader.next_record().await?.is_some() {}
            Ok::<_, DecodeError>(())
        }
        .await;
        let err = outcome.expect_err(label);
        assert!(
            matches!(
                err,
                DecodeError::Malformed { .. }
                    | DecodeError::InvalidUtf8 { .. }
                    | DecodeError::CellCount { .. }
                    | DecodeError::InvalidValue { .. }
            ),
            "{label}: {err:?}"
        );
        if label.contains("utf-8") && format != Format::Jsonl {
            assert!(
                matches!(err, DecodeError::InvalidUtf8 { .. }),
                "{label}: {err:?}"
            );
        }
        if label.contains("cells") {
            assert!(
                matches!(err, DecodeError::CellCount { .. }),
                "{label}: {err:?}"
            );
        }
    }
}

#[test]
fn malformed_and_non_utf8_bds_csv_are_typed_errors() {
    let cases: [(&str, &[u8]); 3] = [
        ("invalid utf-8", b"UserId,UserName\n1,\xff\xfe\n"),
        ("unterminated quote", b"UserId,UserName\n1,\"ada\n2,grace\n"),
        ("no header", b""),
    ];
    for (label, bytes) in cases {
        let limits = bds_client::ArchiveLimits::default();
        let err = match bds_client::CsvRows::from_reader(bytes, "Users.csv", limits) {
            Err(e) => e,
            Ok(rows) => rows
                .into_iter()
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("{label}: accepted")),
        };
        assert!(
            matches!(err, bds_client::BdsError::Csv { .. }),
            "{label}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------- SQL identifiers

#[tokio::test]
async fn hostile_sql_identifiers_are_quoted_or_refused() {
    use sql_sink::{Column, RowBatch, Sink, SqlType, TableDef, TableName, Value, Watermark};
    let dir = tempfile::tempdir().expect("temp dir");
    let mut sink = Sink::open_sqlite(dir.path().join("hostile.db"))
        .await
        .expect("sqlite");

    let victim = TableDef::new(
        "main",
        "victim",
        vec![Column::new("id", SqlType::Int64, false)],
        ["id"],
    );
    let load = sink.begin_load(&victim).await.expect("victim");
    load.commit(Watermark::new("v1")).await.expect("commit");

    let hostile_columns = [
        "id\"; DROP TABLE \"victim\"; --",
        "'; DELETE FROM victim; --",
        "select",
        "a\"b\"\"c",
        " spaced  name ",
        "ünï 😀",
        "x]y`z",
    ];
    let def = TableDef::new(
        "main",
        "users\"; DROP TABLE victim; --",
        hostile_columns
            .iter()
            .map(|c| Column::new(*c, SqlType::Text, true))
            .collect(),
        [hostile_columns[0]],
    );
    let mut load = sink.begin_load(&def).await.expect("quoted DDL");
    let mut batch = RowBatch::new(hostile_columns.len());
    let values: Vec<String> = (0..hostile_columns.len())
        .map(|i| format!("v{i}'\"; --"))
        .collect();
    batch
        .push_row(values.iter().map(|v| Some(v.as_str())))
        .expect("row");
    load.upsert(&mut batch).await.expect("upsert");
    load.commit(Watermark::new("w1")).await.expect("commit");

    let rows = sink.read_rows(&def.table_name()).await.expect("read");
    let want: Vec<Value> = values.iter().map(|v| Value::Text(v.clone())).collect();
    assert_eq!(rows, vec![want], "the row round-trips byte for byte");
    assert!(
        sink.table_status(&TableName::new("main", "victim"))
            .await
            .expect("status")
            .is_some(),
        "the victim table survived"
    );

    let long = "c".repeat(64);
    for bad in ["", "nul\0byte", long.as_str()] {
        let def = TableDef::new(
            "main",
            "t",
            vec![
                Column::new("id", SqlType::Int64, false),
                Column::new(bad, SqlType::Text, true),
            ],
            ["id"],
        );
        let Err(err) = sink.begin_load(&def).await else {
            panic!("{bad:?} was accepted");
        };
        assert!(
            matches!(err, sql_sink::Error::InvalidIdentifier { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let twins = TableDef::new(
        "main",
        "t",
        vec![
            Column::new("Id", SqlType::Int64, false),
            Column::new("iD", SqlType::Text, true),
        ],
        ["Id"],
    );
    let Err(err) = sink.begin_load(&twins).await else {
        panic!("case-insensitive twins were accepted");
    };
    assert!(
        matches!(err, sql_sink::Error::InvalidDefinition { .. }),
        "{err:?}"
    );
    let tables = sink.list_tables().await.expect("list");
    assert!(
        tables.iter().all(|t| t.table.name != "t"),
        "a refused definition creates nothing: {tables:?}"
    );
}

// ---------------------------------------------------------------- unknown statuses

fn token_answer() -> RawResponse {
    RawResponse::json(
        200,
        serde_json::json!({"access_token": "tok-abcdef123456", "token_type": "Bearer", "expires_in": 3600}),
    )
}

fn not_found(request: &RawRequest) -> RawResponse {
    RawResponse::json(
        404,
        serde_json::json!({"error": format!("no route {}", request.target)}),
    )
}

#[tokio::test]
async fn dap_keeps_an_unknown_job_status_and_the_waiter_stops_at_its_deadline() {
    let server = serve(|r| match (r.method.as_str(), r.target.as_str()) {
        ("POST", "/ids/auth/login") => token_answer(),
        ("GET", "/dap/job/j1") => {
            RawResponse::json(200, serde_json::json!({"id": "j1", "status": "levitating"}))
        }
        _ => not_found(r),
    })
    .await;
    let client = dap_client(&server.url)
        .poll_policy(dap_client::PollPolicy::default().max_wait(Duration::from_secs(120)))
        .build()
        .expect("client");
    let job = client.job("j1").await.expect("job");
    assert_eq!(
        job.status,
        dap_client::JobStatus::Unknown("levitating".into())
    );
    assert!(!job.is_terminal());
    let err = client.wait_for_job(job).await.expect_err("never ends");
    assert!(
        matches!(err, dap_client::Error::JobTimeout { .. }),
        "{err:?}"
    );
    assert!(server.requests() < 200, "bounded polling");
}

#[tokio::test]
async fn ld_keeps_an_unknown_job_status_and_the_waiter_stops_at_its_deadline() {
    use ldbatch_client::{Client, JobStatus, PollPolicy, SecretString};
    let server = serve(|r| match (r.method.as_str(), r.target.as_str()) {
        ("POST", "/ls/api/oauth2/token") => token_answer(),
        ("POST", "/ls/api/batch/status") => RawResponse::json(
            200,
            serde_json::json!({"jobId": "j1", "status": "Levitating", "recordsProcessed": "many"}),
        ),
        _ => not_found(r),
    })
    .await;
    let clock = ManualClock::new();
    let client = Client::builder()
        .base_url(&server.url)
        .client("id", SecretString::from("secret-value"))
        .user("user", SecretString::from("password-value"))
        .community("c")
        .poll_policy(PollPolicy::default().max_wait(Duration::from_secs(120)))
        .sleeper(Arc::new(RecordingSleeper::with_clock(clock.clone())))
        .clock(Arc::new(clock))
        .jitter_seed(1)
        .build()
        .expect("client");
    let job = client.status("j1").await.expect("status");
    assert_eq!(job.status, JobStatus::Unknown("Levitating".into()));
    assert_eq!(
        job.records_processed, None,
        "a non-numeric counter is dropped"
    );
    let err = client.wait("j1").await.expect_err("never ends");
    assert!(
        matches!(
            err,
            ldbatch_client::Error::Core(client_core::Error::Timeout { .. })
        ),
        "{err:?}"
    );
    assert!(server.requests() < 200, "bounded polling");
}

#[tokio::test]
async fn toucan_keeps_an_unknown_operation_state_and_the_waiter_stops_at_its_deadline() {
    use toucan_client::{Client, OperationId, OperationState, PollPolicy, SecretString};
    let server = serve(|r| match (r.method.as_str(), r.target.as_str()) {
        ("GET", "/app/operations/state/op1") => {
            RawResponse::json(200, serde_json::json!({"status": "levitating"}))
        }
        _ => not_found(r),
    })
    .await;
    let clock = ManualClock::new();
    let client = Client::builder()
        .api_url(&server.url)
        .small_app("app")
        .credentials("user", SecretString::from("password-value"))
        .poll_policy(PollPolicy::default().max_wait(Duration::from_secs(120)))
        .sleeper(Arc::new(RecordingSleeper::with_clock(clock.clone())))
        .clock(Arc::new(clock))
        .jitter_seed(1)
        .build()
        .expect("client");
    let id = OperationId("op1".into());
    let status = client.operation_status(&id).await.expect("status");
    assert_eq!(status.status, OperationState::Unknown("levitating".into()));
    let err = client.wait(&id).await.expect_err("never ends");
    assert!(
        matches!(
            err,
            toucan_client::Error::Core(client_core::Error::Timeout { .. })
        ),
        "{err:?}"
    );
    assert!(server.requests() < 200, "bounded polling");
}

// ---------------------------------------------------------------- Retry-After

#[tokio::test]
async fn absurd_retry_after_values_are_capped() {
    let policy = client_core::RetryPolicy::default();
    let cap = policy.max_retry_after;
    for value in [
        "18446744073709551615",
        "99999999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "-5",
        "soon",
    ] {
        let server = serve(move |_| {
            RawResponse::json(429, serde_json::json!({"error": "slow down"}))
                .header("Retry-After", value)
        })
        .await;
        let clock = ManualClock::new();
        let sleeper = RecordingSleeper::with_clock(clock.clone());
        let http = HttpClient::builder()
            .base_url(&server.url)
            .sleeper(Arc::new(sleeper.clone()))
            .clock(Arc::new(clock))
            .random(Arc::new(client_core::retry::FixedRandom::new(0.5)))
            .build()
            .expect("client");
        let err = http
            .send(client_core::Request::get("/x"))
            .await
            .expect_err("always 429");
        assert_eq!(err.status(), Some(429), "{value}: {err:?}");
        let sleeps = sleeper.sleeps();
        assert!(!sleeps.is_empty(), "{value}: retried");
        assert!(
            sleeps.iter().all(|s| *s <= cap),
            "{value}: waits {sleeps:?} exceed the {cap:?} cap"
        );
        assert!(server.requests() <= 10, "{value}: bounded attempts");
    }
}

#[tokio::test]
async fn toucan_reports_an_absurd_retry_after_as_a_typed_rate_limit() {
    use toucan_client::{Client, OperationId, RetryPolicy, SecretString};
    let server = serve(|_| {
        RawResponse::json(429, serde_json::json!({"message": "too many requests"}))
            .header("Retry-After", "18446744073709551615")
    })
    .await;
    let clock = ManualClock::new();
    let sleeper = RecordingSleeper::with_clock(clock.clone());
    let client = Client::builder()
        .api_url(&server.url)
        .small_app("app")
        .credentials("user", SecretString::from("password-value"))
        .retry_policy(RetryPolicy::default().with_max_attempts(3))
        .sleeper(Arc::new(sleeper.clone()))
        .clock(Arc::new(clock))
        .build()
        .expect("client");
    let err = client
        .operation_status(&OperationId("op1".into()))
        .await
        .expect_err("always 429");
    assert_eq!(err.status(), Some(429), "{err:?}");
    let cap = RetryPolicy::default().max_retry_after;
    assert!(
        sleeper.sleeps().iter().all(|s| *s <= cap),
        "{:?}",
        sleeper.sleeps()
    );
}

/// Without `max_decompressed_bytes` (the DAP default) a bomb object is still
/// bounded: it decodes to one endless line, which the record decoder refuses
/// at its 64 MiB line cap. Documented safe outcome: a typed decode error
/// after at most the cap in memory, whatever the bomb's size.
#[tokio::test]
async fn without_a_decompression_cap_a_dap_bomb_stops_at_the_line_cap() {
    use futures::StreamExt;
    let bomb = serve_bytes(gzip_zeros(80 * MIB)).await;
    let client = dap_client("https://api.example.invalid")
        .build()
        .expect("client");
    let object = dap_client::Object::new("part-00001");
    let resource = dap_client::Resource::new(format!("{}/part-00001.json.gz?sig=x", bomb.url));
    let records = client.object_records(object, resource, dap_client::Format::Jsonl, None);
    futures::pin_mut!(records);
    let first = tokio::time::timeout(Duration::from_secs(30), records.next())
        .await
        .expect("bounded time")
        .expect("one item");
    let err = first.expect_err("a bomb is not records");
    assert!(
        matches!(
            err,
            dap_client::Error::Decode(dap_client::record::DecodeError::LineTooLong { .. })
        ),
        "{err:?}"
    );
}
