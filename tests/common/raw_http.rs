//! A minimal HTTP/1.1 server on 127.0.0.1 for hostile answers no real
//! service would give: each request is read (head and `Content-Length`
//! body), handed to a closure, and answered with `Connection: close`. The
//! accept loop is a task of the test's runtime, so it stops with the test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the handler sees of a request.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Header lines, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The body (only `Content-Length` bodies are read).
    pub body: Vec<u8>,
}

/// What the server answers.
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Length` and `Connection` are added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A JSON answer with `status`.
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        RawResponse {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: value.to_string().into_bytes(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A running server: its base URL and how many requests it answered.
pub struct RawServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    requests: Arc<AtomicU64>,
}

impl RawServer {
    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Starts a server answering every request with `handler`.
pub async fn serve(
    handler: impl Fn(&RawRequest) -> RawResponse + Send + Sync + 'static,
) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let handler = Arc::new(handler);
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, counter) = (handler.clone(), counter.clone());
            tokio::spawn(async move {
                if let Some(request) = read_request(stream).await {
                    let (mut stream, request) = request;
                    counter.fetch_add(1, Ordering::SeqCst);
                    let response = handler(&request);
                    let _ = write_response(&mut stream, response).await;
                }
            });
        }
    });
    RawServer { url, requests }
}

async fn read_request(mut stream: TcpStream) -> Option<(TcpStream, RawRequest)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((
        stream,
        RawRequest {
            method,
            target,
            headers,
            body,
        },
    ))
}

async fn write_response(stream: &mut TcpStream, response: RawResponse) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\n", response.status);
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.body.len()
    ));
    // One write: head and body as separate small segments would wait for
    // the peer's delayed ACK (Nagle).
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&response.body);
    stream.write_all(&bytes).await?;
    stream.shutdown().await
}
