//! Request statistics of one service, readable by tests at `GET /__sandbox/stats`.
//!
//! Counted: requests per route (`"GET /dap/job/{id}"`, using the route pattern, not the concrete
//! path), token requests, and requests to pre-signed/blob routes together with how many of those
//! carried an `Authorization` header (a client must never send its bearer token there).
//! `DELETE /__sandbox/stats` resets everything.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// A snapshot of the counters, as served by `GET /__sandbox/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Requests per route, keyed `"<METHOD> <route pattern>"`, e.g. `"GET /dap/job/{id}"`.
    pub requests: BTreeMap<String, u64>,
    /// Requests to the token endpoint(s), successful or not.
    pub token_requests: u64,
    /// Requests to pre-signed / blob URLs.
    pub blob_requests: u64,
    /// Of [`blob_requests`](Self::blob_requests), how many carried an `Authorization` header.
    pub blob_authorization_headers: u64,
    /// Responses replaced by an injected fault (5xx, 429, dropped connection, truncated body).
    pub faults_injected: u64,
}

impl StatsSnapshot {
    /// Requests seen for one route key (`"GET /dap/job/{id}"`), 0 if none.
    pub fn route(&self, key: &str) -> u64 {
        self.requests.get(key).copied().unwrap_or(0)
    }
}

/// Shared, cloneable counters of one service.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    inner: Arc<Mutex<StatsSnapshot>>,
}

impl Stats {
    /// Fresh counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, StatsSnapshot> {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Counts one request on a route key such as `"GET /dap/job/{id}"`.
    pub fn record_request(&self, key: impl Into<String>) {
        *self.lock().requests.entry(key.into()).or_insert(0) += 1;
    }

    /// Counts one request to a token endpoint.
    pub fn record_token_request(&self) {
        self.lock().token_requests += 1;
    }

    /// Counts one request to a pre-signed/blob URL and whether it carried `Authorization`.
    pub fn record_blob_request(&self, headers: &HeaderMap) {
        let mut stats = self.lock();
        stats.blob_requests += 1;
        if headers.contains_key(axum::http::header::AUTHORIZATION) {
            stats.blob_authorization_headers += 1;
        }
    }

    /// Counts one injected fault.
    pub fn record_fault(&self) {
        self.lock().faults_injected += 1;
    }

    /// A copy of the current counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        self.lock().clone()
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        *self.lock() = StatsSnapshot::default();
    }

    /// `GET /__sandbox/stats` (read) and `DELETE /__sandbox/stats` (reset).
    pub fn control_routes(&self) -> Router {
        Router::new()
            .route(
                "/__sandbox/stats",
                get(|State(stats): State<Stats>| async move { Json(stats.snapshot()) }).delete(
                    |State(stats): State<Stats>| async move {
                        stats.reset();
                        Json(stats.snapshot())
                    },
                ),
            )
            .with_state(self.clone())
    }

    /// Middleware counting requests per matched route. Install with
    /// `router.route_layer(axum::middleware::from_fn_with_state(stats, Stats::count_route))`
    /// (route_layer, so the route pattern is known), or use [`crate::server`]-level helpers.
    pub async fn count_route(State(stats): State<Stats>, request: Request, next: Next) -> Response {
        let path = request.extensions().get::<MatchedPath>().map_or_else(
            || request.uri().path().to_owned(),
            |m| m.as_str().to_owned(),
        );
        if !path.starts_with("/__sandbox/") {
            stats.record_request(format!("{} {path}", request.method()));
        }
        next.run(request).await
    }
}
