//! Shared harness code of the fuzz targets: one runtime per process, the DAP
//! record decoding loop, and a loopback HTTP server that answers with the
//! fuzzer's bytes (the DAP error-body parser is only reachable through a
//! response; see tests/NEEDS.md).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use dap_client::record::RecordReader;
use dap_client::{Format, TableSchema, VersionedSchema};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Lines longer than this are rejected; keeps each run's memory small.
const MAX_LINE: usize = 1 << 20;
/// Records decoded per input at most (an input cannot loop forever anyway).
const MAX_RECORDS: usize = 10_000;

/// The process-wide current-thread runtime.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A schema with every kind of column the decoders type: timestamps,
/// integers, floats, booleans, nested objects and arrays.
pub fn dap_schema() -> Arc<TableSchema> {
    static SCHEMA: OnceLock<Arc<TableSchema>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let doc: VersionedSchema = serde_json::from_value(serde_json::json!({
                "version": 1,
                "schema": {"type": "object", "properties": {
                    "meta": {"type": "object", "properties": {
                        "ts": {"type": "string", "format": "date-time"},
                        "action": {"type": "string"}}},
                    "key": {"type": "object", "properties": {
                        "id": {"type": "integer", "format": "int64"}}},
                    "value": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "score": {"type": "number"},
                        "ok": {"type": "boolean"},
                        "settings": {"type": "object", "properties": {
                            "a": {"type": "integer"}, "b": {"type": "string"}}},
                        "tags": {"type": "array", "items": {"type": "string"}}}}
                }}
            }))
            .expect("a valid schema document");
            Arc::new(TableSchema::from_versioned(&doc))
        })
        .clone()
}

/// Decodes `data` as an object of `format`; the first byte chooses whether
/// the records are typed with [`dap_schema`]. Errors are fine, panics are not.
pub fn decode_dap_records(data: &[u8], format: Format) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    runtime().block_on(async {
        let Ok(reader) = RecordReader::new(body, format) else {
            return;
        };
        let mut reader = reader.max_line_len(MAX_LINE);
        if flags & 1 == 1 {
            reader = reader.with_schema(dap_schema());
        }
        for _ in 0..MAX_RECORDS {
            match reader.next_record().await {
                Ok(Some(record)) => {
                    // Rendering must not panic either.
                    let _ = format!("{record} {record:?}");
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = format!("{e} {e:?}");
                    break;
                }
            }
        }
    });
}

/// The status and body the loopback server answers API calls with.
pub type Reply = Arc<Mutex<(u16, Vec<u8>)>>;

/// Starts (once) a keep-alive HTTP/1.1 server on 127.0.0.1 answering
/// `POST /ids/auth/login` with a token and every other request with the
/// current [`Reply`]. Returns its base URL and the reply slot.
pub fn loopback_server() -> (&'static str, Reply) {
    static SERVER: OnceLock<(String, Reply)> = OnceLock::new();
    let (url, reply) = SERVER.get_or_init(|| {
        let reply: Reply = Arc::new(Mutex::new((200, Vec::new())));
        let slot = reply.clone();
        let url = runtime().block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}", listener.local_addr().expect("address"));
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve_connection(stream, slot.clone()));
                }
            });
            url
        });
        (url, reply)
    });
    (url.as_str(), reply.clone())
}

async fn serve_connection(mut stream: TcpStream, reply: Reply) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + 4 + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + 4 + length);
        let (status, body) = if head.starts_with("POST /ids/auth/login") {
            (
                200,
                br#"{"access_token":"fuzz-token-0123456789","token_type":"Bearer","expires_in":3600}"#
                    .to_vec(),
            )
        } else {
            reply.lock().unwrap_or_else(|p| p.into_inner()).clone()
        };
        let mut response = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        // One write: a head and a body in two small segments would wait for
        // the client's delayed ACK (Nagle), about 40 ms per input.
        response.extend_from_slice(&body);
        if stream.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// A per-process scratch directory for targets that need files.
pub fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a scratch directory"))
        .path()
        .to_path_buf()
}
