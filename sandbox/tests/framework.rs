//! The shared machinery (server, faults, stats) through plain HTTP.

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use sandbox::server::{ServerGuard, instrument, serve};
use sandbox::{Faults, Stats};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client builds")
}

async fn toy() -> (ServerGuard, Faults, Stats) {
    let faults = Faults::new();
    let stats = Stats::new();
    let routes = Router::new()
        .route("/items/{id}", get(|| async { "x".repeat(1000) }))
        .route("/other", get(|| async { "other" }));
    let server = serve(instrument(routes, &faults, &stats), 0)
        .await
        .expect("binds");
    (server, faults, stats)
}

async fn set_faults(base: &str, knobs: Value) {
    let r = http()
        .post(format!("{base}/__sandbox/faults"))
        .json(&knobs)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn serves_on_localhost_and_stops_when_dropped() {
    let (server, _, _) = toy().await;
    assert!(server.base_url().starts_with("http://127.0.0.1:"));
    let url = format!("{}/other", server.base_url());
    assert_eq!(
        http()
            .get(&url)
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text"),
        "other"
    );
    drop(server);
    // A fresh client (no pooled connection) cannot connect any more.
    let mut refused = false;
    for _ in 0..100 {
        if http().get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "server still answering after drop");
}

#[tokio::test]
async fn graceful_shutdown_completes() {
    let (server, _, _) = toy().await;
    let url = format!("{}/other", server.base_url());
    assert!(http().get(&url).send().await.is_ok());
    server.shutdown().await;
    assert!(http().get(&url).send().await.is_err());
}

#[tokio::test]
async fn every_kth_call_is_rate_limited_with_retry_after() {
    let (server, _, stats) = toy().await;
    let base = server.base_url();
    set_faults(base, json!({"rate_limit_every": 3, "retry_after_secs": 7})).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http()
            .get(format!("{base}/items/1"))
            .send()
            .await
            .expect("send");
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.headers()["retry-after"], "7");
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 200, 200, 429]);
    assert_eq!(stats.snapshot().faults_injected, 2);
    // Control routes are never faulted.
    for _ in 0..3 {
        let r = http()
            .get(format!("{base}/__sandbox/stats"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn error_rate_is_seeded_and_max_faults_caps_it() {
    let (server, _, _) = toy().await;
    let base = server.base_url();
    let run = |knobs: Value| async move {
        set_faults(base, knobs).await;
        let mut out = Vec::new();
        for _ in 0..20 {
            out.push(
                http()
                    .get(format!("{base}/items/1"))
                    .send()
                    .await
                    .expect("send")
                    .status()
                    .as_u16(),
            );
        }
        out
    };
    let a = run(json!({"error_rate": 0.5, "error_status": 502, "seed": 9})).await;
    let b = run(json!({"error_rate": 0.5, "error_status": 502, "seed": 9})).await;
    assert_eq!(a, b, "same seed, same faults");
    assert!(a.contains(&502) && a.contains(&200));
    let capped = run(json!({"error_rate": 1.0, "max_faults": 2})).await;
    assert_eq!(&capped[..3], &[503, 503, 200]);
    assert!(capped[2..].iter().all(|s| *s == 200));
}

#[tokio::test]
async fn only_paths_limits_the_scope() {
    let (server, _, _) = toy().await;
    let base = server.base_url();
    set_faults(base, json!({"error_rate": 1.0, "only_paths": ["/items"]})).await;
    assert_eq!(
        http()
            .get(format!("{base}/other"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    assert_eq!(
        http()
            .get(format!("{base}/items/2"))
            .send()
            .await
            .expect("send")
            .status(),
        503
    );
}

#[tokio::test]
async fn dropped_connections_and_truncated_bodies() {
    let (server, _, _) = toy().await;
    let base = server.base_url();
    set_faults(base, json!({"drop_every": 1})).await;
    assert!(
        http().get(format!("{base}/items/1")).send().await.is_err(),
        "no response at all"
    );

    set_faults(base, json!({"truncate_every": 1})).await;
    let r = http()
        .get(format!("{base}/items/1"))
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(r.status(), 200);
    assert_eq!(r.content_length(), Some(1000));
    assert!(
        r.bytes().await.is_err(),
        "body is cut short of its Content-Length"
    );

    // Latency is accepted and still answers (no timing assertion).
    set_faults(base, json!({"latency_ms": 5})).await;
    assert_eq!(
        http()
            .get(format!("{base}/items/1"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
}

#[tokio::test]
async fn every_kth_call_gets_a_latency_spike_beyond_a_short_timeout() {
    let (server, faults, stats) = toy().await;
    let base = server.base_url();
    set_faults(base, json!({"spike_every": 2, "spike_ms": 2000})).await;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .expect("client builds");
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let r = impatient.get(format!("{base}/items/1")).send().await;
        outcomes.push(match r {
            Ok(r) => r.status().as_u16().to_string(),
            Err(e) if e.is_timeout() => "timeout".to_string(),
            Err(e) => format!("other error: {e}"),
        });
    }
    assert_eq!(outcomes, ["200", "timeout", "200", "timeout"]);
    // A spike delays the answer; it does not replace it.
    assert_eq!(stats.snapshot().faults_injected, 0);
    assert_eq!((faults.calls(), faults.injected()), (4, 2));
}

#[tokio::test]
async fn fault_config_round_trips_and_rejects_unknown_knobs() {
    let (server, faults, _) = toy().await;
    let base = server.base_url();
    set_faults(base, json!({"latency_ms": 3, "url_ttl_secs": 10})).await;
    let got: Value = http()
        .get(format!("{base}/__sandbox/faults"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(got["latency_ms"], 3);
    assert_eq!(faults.url_ttl(), Some(std::time::Duration::from_secs(10)));
    let bad = http()
        .post(format!("{base}/__sandbox/faults"))
        .json(&json!({"latency": 3}))
        .send()
        .await
        .expect("send");
    assert!(bad.status().is_client_error());
    let cleared = http()
        .delete(format!("{base}/__sandbox/faults"))
        .send()
        .await
        .expect("send");
    assert_eq!(cleared.status(), 200);
    assert_eq!(faults.url_ttl(), None);
}

#[tokio::test]
async fn stats_count_routes_by_pattern_and_reset() {
    let (server, _, _) = toy().await;
    let base = server.base_url();
    for id in 1..=3 {
        http()
            .get(format!("{base}/items/{id}"))
            .send()
            .await
            .expect("send");
    }
    let stats: Value = http()
        .get(format!("{base}/__sandbox/stats"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["requests"]["GET /items/{id}"], 3);
    assert!(stats["requests"].get("GET /__sandbox/stats").is_none());
    http()
        .delete(format!("{base}/__sandbox/stats"))
        .send()
        .await
        .expect("send");
    let stats: Value = http()
        .get(format!("{base}/__sandbox/stats"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["requests"], json!({}));
}
