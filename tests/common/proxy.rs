//! A transparent TCP proxy on 127.0.0.1 that records every byte in both
//! directions, so a test can learn the tokens a real token endpoint issued
//! (and the bearer tokens the client sent) without the sandbox exposing them.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running recording proxy. Its accept loop is a task of the test's
/// runtime, so it stops when the test ends.
pub struct RecordingProxy {
    /// The upstream base URL with its host and port replaced by the proxy's.
    pub url: String,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    /// Starts a proxy in front of `upstream` (an `http://host:port/...` URL).
    pub async fn start(upstream: &str) -> RecordingProxy {
        let rest = upstream
            .strip_prefix("http://")
            .expect("the sandbox serves plain http on loopback");
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        let authority = authority.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let local = listener.local_addr().expect("proxy address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (authority, record) = (authority.clone(), record.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&authority).await {
                        relay(client, server, record).await;
                    }
                });
            }
        });
        let url = if path.is_empty() {
            format!("http://{local}")
        } else {
            format!("http://{local}/{path}")
        };
        RecordingProxy { url, seen }
    }

    /// Every byte relayed so far, both directions, lossily decoded.
    pub fn transcript(&self) -> String {
        let bytes = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Token values seen on the wire: JSON string values of `access_token`,
    /// `refresh_token` and `token`, and the values of `Bearer` headers.
    pub fn tokens(&self) -> Vec<String> {
        let text = self.transcript();
        let mut found = Vec::new();
        for key in ["\"access_token\"", "\"refresh_token\"", "\"token\""] {
            found.extend(json_string_values(&text, key));
        }
        for (at, _) in text.match_indices("Bearer ") {
            let value: String = text[at + 7..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            found.push(value);
        }
        found.retain(|t| t.len() >= 8);
        found.sort();
        found.dedup();
        found
    }
}

/// The string values following `key` in JSON text (`"key": "value"`).
fn json_string_values(text: &str, key: &str) -> Vec<String> {
    let mut values = Vec::new();
    for (at, _) in text.match_indices(key) {
        let rest = text[at + key.len()..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        if let Some(end) = rest.find('"') {
            values.push(rest[..end].to_string());
        }
    }
    values
}

async fn relay(client: TcpStream, server: TcpStream, record: Arc<Mutex<Vec<u8>>>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, record.clone());
    let down = pump(server_read, client_write, record);
    let _ = tokio::join!(up, down);
}

/// Copies `from` to `to`, appending every chunk to `record`.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    record: Arc<Mutex<Vec<u8>>>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(&buf[..n]);
        to.write_all(&buf[..n]).await?;
    }
}
