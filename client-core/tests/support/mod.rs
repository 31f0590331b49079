//! Shared rigs for the client-core integration tests: a client wired to
//! injected time and randomness, a token endpoint that counts, and a raw TCP
//! server that breaks connections on purpose.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use client_core::http::{HttpClient, HttpClientBuilder};
use client_core::retry::FixedRandom;
use client_core::time::{ManualClock, RecordingSleeper};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use wiremock::{Request, Respond, ResponseTemplate};

/// Injected time for one test: sleeps are recorded and advance the clock.
pub struct Rig {
    pub clock: ManualClock,
    pub sleeper: RecordingSleeper,
}

impl Rig {
    pub fn new() -> Self {
        let clock = ManualClock::new();
        let sleeper = RecordingSleeper::with_clock(clock.clone());
        Self { clock, sleeper }
    }

    /// A builder for `base` with this rig's clock and sleeper and zero
    /// jitter (backoff 0, so only server hints show up as sleeps).
    pub fn builder(&self, base: &str) -> HttpClientBuilder {
        HttpClient::builder()
            .base_url(base)
            .clock(Arc::new(self.clock.clone()))
            .sleeper(Arc::new(self.sleeper.clone()))
            .random(Arc::new(FixedRandom::new(0.0)))
    }

    pub fn client(&self, base: &str) -> HttpClient {
        self.builder(base).build().expect("client builds")
    }

    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeper.sleeps()
    }
}

/// A token endpoint that answers `tok-1`, `tok-2`, ... with a lifetime.
pub struct IssuingTokens {
    pub issued: Arc<AtomicUsize>,
    pub expires_in: u64,
}

impl IssuingTokens {
    pub fn new(expires_in: u64) -> (Self, Arc<AtomicUsize>) {
        let issued = Arc::new(AtomicUsize::new(0));
        (
            Self {
                issued: issued.clone(),
                expires_in,
            },
            issued,
        )
    }
}

impl Respond for IssuingTokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": format!("tok-{n}"),
            "expires_in": self.expires_in,
            "token_type": "Bearer",
        }))
    }
}

/// The `Authorization` header of a received request, if any.
pub fn authorization(req: &Request) -> Option<String> {
    req.headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// How a raw-server connection ends.
#[derive(Clone, Copy, Debug)]
pub enum Conn {
    /// Reset the connection (RST) after reading the request.
    Reset,
    /// Close the connection after reading the request, without answering.
    Close,
    /// Answer `200 OK` with body `ok`.
    Ok,
    /// Answer `200 OK` with this JSON body.
    Json(&'static str),
    /// Declare a 100-byte body, send 5 bytes, close.
    Truncated,
    /// Like `Truncated`, with this status.
    TruncatedStatus(u16),
    /// Never answer; wait until the client gives up and closes.
    Hang,
}

/// A raw HTTP/1.1 server on 127.0.0.1 that treats the n-th connection as
/// `script[n]` and stops after the script. Returns its base URL and a counter
/// of accepted connections.
pub async fn scripted_server(script: Vec<Conn>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        for step in script {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            read_request_head(&mut sock).await;
            match step {
                Conn::Reset => {
                    let _ = sock.set_zero_linger();
                    drop(sock);
                }
                Conn::Close => drop(sock),
                Conn::Ok => {
                    let reply =
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                }
                Conn::Json(body) => {
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                }
                Conn::Hang => {
                    let mut rest = [0u8; 1024];
                    while matches!(sock.read(&mut rest).await, Ok(n) if n > 0) {}
                }
                Conn::TruncatedStatus(status) => {
                    let reply =
                        format!("HTTP/1.1 {status} Status\r\ncontent-length: 100\r\n\r\nshort");
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                }
                Conn::Truncated => {
                    let reply = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort";
                    let _ = sock.write_all(reply.as_bytes()).await;
                    let _ = sock.shutdown().await;
                }
            }
        }
    });
    (format!("http://{addr}"), accepted)
}

async fn read_request_head(sock: &mut tokio::net::TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}
