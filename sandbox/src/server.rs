//! Binding and serving one fake service on `127.0.0.1`.
//!
//! [`serve`] binds a port (0 = a free one), runs an accept loop in a background task and returns a
//! [`ServerGuard`]. Dropping the guard stops the server at once (the listener and every open
//! connection are closed); [`ServerGuard::shutdown`] stops accepting and lets in-flight requests
//! finish first.
//!
//! The accept loop is our own (hyper + hyper-util) rather than `axum::serve` because fault
//! injection needs per-connection control: every request carries a [`ConnectionControl`] extension
//! that can close its connection without writing a response.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A request extension that lets a handler or middleware kill the TCP connection the request
/// arrived on, so the client sees the connection close without any response.
#[derive(Clone, Debug)]
pub struct ConnectionControl {
    kill: CancellationToken,
}

impl ConnectionControl {
    /// Closes the connection as soon as possible; the response being produced is discarded.
    pub fn drop_connection(&self) {
        self.kill.cancel();
    }
}

/// A running server. Dropping it stops the server and closes every connection.
#[derive(Debug)]
pub struct ServerGuard {
    addr: SocketAddr,
    base_url: String,
    /// Stops accepting; connections finish their in-flight request.
    graceful: CancellationToken,
    /// Closes every connection immediately.
    hard: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl ServerGuard {
    /// The bound address (always `127.0.0.1`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops accepting connections and waits until in-flight requests are answered.
    pub async fn shutdown(mut self) {
        self.graceful.cancel();
        if let Some(task) = self.task.take() {
            // A panicking accept loop has nothing left to clean up.
            let _ = task.await;
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.hard.cancel();
        self.graceful.cancel();
    }
}

/// Binds `127.0.0.1:port` (`0` picks a free port) and serves `router` until the returned guard is
/// dropped or shut down.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let router = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// let server = sandbox::server::serve(router, 0).await?;
/// println!("listening on {}", server.base_url());
/// # Ok(()) }
/// ```
pub async fn serve(router: Router, port: u16) -> std::io::Result<ServerGuard> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    let addr = listener.local_addr()?;
    let graceful = CancellationToken::new();
    let hard = CancellationToken::new();
    let task = tokio::spawn(accept_loop(
        listener,
        router,
        graceful.clone(),
        hard.clone(),
    ));
    Ok(ServerGuard {
        addr,
        base_url: format!("http://{addr}"),
        graceful,
        hard,
        task: Some(task),
    })
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    graceful: CancellationToken,
    hard: CancellationToken,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            () = graceful.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(
                        stream,
                        router.clone(),
                        graceful.clone(),
                        hard.clone(),
                    ));
                }
                Err(error) => {
                    // Usually EMFILE; keep serving the connections we have.
                    tracing::warn!(%error, "sandbox: accept failed");
                    tokio::task::yield_now().await;
                }
            },
            // Reap finished connection tasks so the set does not grow forever.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    graceful: CancellationToken,
    hard: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let kill = CancellationToken::new();
    let control = ConnectionControl { kill: kill.clone() };
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(control.clone());
        let router = router.clone();
        async move {
            let response = router.oneshot(request.map(Body::new)).await;
            Ok::<_, Infallible>(match response {
                Ok(response) => response,
                Err(never) => match never {},
            })
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = kill.cancelled() => {}
        () = hard.cancelled() => {}
        () = graceful.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                () = kill.cancelled() => {}
                () = hard.cancelled() => {}
            }
        }
    }
}

/// Adds the shared sandbox machinery to a service router: the `/__sandbox/faults` and
/// `/__sandbox/stats` control routes, per-route request counting, and the generic fault
/// middleware. Call it on the router holding the service routes (add service-specific
/// `/__sandbox/...` routes before or after; they are never subject to faults).
pub fn instrument(
    service_routes: Router,
    faults: &crate::faults::Faults,
    stats: &crate::stats::Stats,
) -> Router {
    use axum::middleware::from_fn_with_state;
    service_routes
        .route_layer(from_fn_with_state(
            stats.clone(),
            crate::stats::Stats::count_route,
        ))
        .merge(faults.control_routes())
        .merge(stats.control_routes())
        .layer(from_fn_with_state(
            (faults.clone(), stats.clone()),
            crate::faults::Faults::apply,
        ))
}
