//! Streaming downloads: to a file atomically, or as an `AsyncRead` with
//! optional (multi-member) gzip decoding.
//!
//! A [`Download`] describes one object: its URL, whether the URL is
//! pre-signed (the default: no `Authorization` header is ever sent, the
//! signature in the query is the credential) or needs the client's
//! credentials on the first hop ([`Download::authenticated`]; a redirect to
//! another host, port or scheme then drops `Authorization`, as reqwest does
//! for cross-origin redirects), how to get a fresh URL when the old one has
//! expired, the size to expect and a progress callback.
//!
//! Every request goes through [`HttpClient::send`], so connection failures,
//! 5xx and 429 answers are retried by the core retry loop. A body that breaks
//! off midway (or ends short of its `Content-Length`) is resumed with a
//! `Range` request a few times ([`Download::max_resumes`]); when that does not
//! help, or the body is longer than declared or not the expected size, the
//! download fails with [`Error::Download`] and [`Download::to_file`] leaves
//! neither the final file nor its temporary file behind.
//!
//! ```no_run
//! use client_core::download::Download;
//! use client_core::http::HttpClient;
//! use tokio::io::AsyncBufReadExt;
//!
//! # async fn fresh_url() -> client_core::Result<String> { Ok(String::new()) }
//! # async fn demo(client: HttpClient, url: String) -> client_core::Result<()> {
//! // Save a pre-signed object; if its URL has expired, ask the API again.
//! let saved = Download::presigned(&url)
//!     .on_expired(|| fresh_url())
//!     .progress(|p| eprintln!("{} of {:?} bytes", p.bytes, p.total))
//!     .to_file(&client, "part-00000.json.gz")
//!     .await?;
//! println!("{} bytes in {}", saved.bytes, saved.path.display());
//!
//! // Or read it line by line, gunzipped, refusing more than 1 GiB of output.
//! let reader = Download::presigned(&url)
//!     .gzip(true)
//!     .max_decompressed_bytes(1 << 30)
//!     .open(&client)
//!     .await?;
//! let mut lines = tokio::io::BufReader::new(reader).lines();
//! while let Some(line) = lines.next_line().await.map_err(client_core::download::error_from_io)? {
//!     # drop(line);
//! }
//! # Ok(()) }
//! ```

mod body;
mod file;
mod reader;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use file::SavedFile;
pub use reader::{DownloadReader, error_from_io};

use crate::error::redact_url;
use crate::http::{HttpClient, Request, Response};
use crate::{Error, Result};

/// How many times an expired URL is re-resolved by default.
pub const DEFAULT_MAX_REFRESHES: u32 = 3;

/// How many times a broken transfer is resumed by default.
pub const DEFAULT_MAX_RESUMES: u32 = 3;

/// How far a download has got, passed to the progress callback after every
/// chunk received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes received so far (as sent, before any gzip decoding).
    pub bytes: u64,
    /// The total, when the server declared a `Content-Length` (or an
    /// expected size was given).
    pub total: Option<u64>,
}

type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;
type RefreshFn = Arc<dyn Fn() -> BoxFuture<'static, Result<String>> + Send + Sync>;

/// One object to download. Build it, then call [`to_file`](Self::to_file)
/// or [`open`](Self::open); a `Download` can be used more than once.
#[derive(Clone)]
pub struct Download {
    url: String,
    authenticated: bool,
    refresh: Option<RefreshFn>,
    max_refreshes: u32,
    expected_size: Option<u64>,
    max_resumes: u32,
    progress: Option<ProgressFn>,
    gzip: bool,
    max_decompressed: Option<u64>,
}

impl Download {
    /// A pre-signed URL: the request never carries `Authorization`, whatever
    /// the client's auth mode, since the signature is the credential and
    /// blob stores reject a second one.
    pub fn presigned(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            authenticated: false,
            refresh: None,
            max_refreshes: DEFAULT_MAX_REFRESHES,
            expected_size: None,
            max_resumes: DEFAULT_MAX_RESUMES,
            progress: None,
            gzip: false,
            max_decompressed: None,
        }
    }

    /// A URL (or path below the client's base URL) that needs the client's
    /// credentials, e.g. a D2L `DownloadLink`. The credentials go only to
    /// that host: a redirect to another host, port or scheme (the signed
    /// storage URL) is followed without `Authorization`.
    pub fn authenticated(url: impl Into<String>) -> Self {
        Self {
            authenticated: true,
            ..Self::presigned(url)
        }
    }

    /// How to get a fresh URL when the current one has expired: a `403`
    /// without `Retry-After`, or a `400`/`401` whose body says "expired"
    /// (S3, Azure and GCS answer this way). At most
    /// [`max_refreshes`](Self::max_refreshes) times per download.
    pub fn on_expired<F, Fut>(mut self, refresh: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String>> + Send + 'static,
    {
        self.refresh = Some(Arc::new(move || Box::pin(refresh())));
        self
    }

    /// The most fresh URLs fetched for one download (default
    /// [`DEFAULT_MAX_REFRESHES`]).
    pub fn max_refreshes(mut self, max: u32) -> Self {
        self.max_refreshes = max;
        self
    }

    /// The size the object must have (e.g. D2L's `DownloadSize`); any other
    /// length is an [`Error::Download`].
    pub fn expected_size(mut self, bytes: u64) -> Self {
        self.expected_size = Some(bytes);
        self
    }

    /// How many times a transfer that broke off (or ended short of its
    /// `Content-Length`) is resumed with a `Range: bytes=<received>-`
    /// request, after the client's retry backoff (default
    /// [`DEFAULT_MAX_RESUMES`]; 0 fails at the first break). The resumed
    /// response must continue the same object (`Content-Range` start and
    /// size, `If-Range` with the `ETag`); a server that ignores `Range` and
    /// starts over is read past the bytes already received.
    pub fn max_resumes(mut self, max: u32) -> Self {
        self.max_resumes = max;
        self
    }

    /// Called with the bytes received so far after every chunk. Keep it
    /// cheap (update a progress bar, send on a channel with `try_send`).
    pub fn progress(mut self, callback: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// For [`open`](Self::open): gunzip the body. All members of a
    /// multi-member gzip file (concatenated `.gz` parts) are decoded.
    pub fn gzip(mut self, gzip: bool) -> Self {
        self.gzip = gzip;
        self
    }

    /// For [`open`](Self::open): fail with [`Error::Download`] once the
    /// decoded output exceeds this many bytes, guarding against
    /// decompression bombs.
    pub fn max_decompressed_bytes(mut self, limit: u64) -> Self {
        self.max_decompressed = Some(limit);
        self
    }

    /// Streams the body into `dest` atomically: it is written to a
    /// temporary file in the same directory, synced, and renamed over `dest`
    /// only when complete (the directory is synced too on Unix). On any
    /// error, including dropping the future, the temporary file is removed
    /// and `dest` is untouched. The raw bytes are saved (no gzip decoding).
    pub async fn to_file(&self, client: &HttpClient, dest: impl AsRef<Path>) -> Result<SavedFile> {
        let body = body::Body::start(client, self).await?;
        file::save_atomically(body, dest.as_ref()).await
    }

    /// Opens the body as a tokio `AsyncRead`, gunzipped if
    /// [`gzip`](Self::gzip) was set and capped by
    /// [`max_decompressed_bytes`](Self::max_decompressed_bytes). Read errors
    /// are `io::Error`s wrapping an [`Error`]; [`error_from_io`] recovers it.
    pub async fn open(&self, client: &HttpClient) -> Result<DownloadReader> {
        let body = body::Body::start(client, self).await?;
        Ok(DownloadReader::new(body, self.gzip, self.max_decompressed))
    }

    /// Sends the GET to `url` (from byte `range.0` on, with
    /// `If-Range: range.1`), re-resolving an expired URL up to
    /// `max_refreshes` times, and returns the successful response with its
    /// body unread. `url` is left at the URL that worked, so a later resume
    /// does not start from an expired one.
    async fn fetch(
        &self,
        client: &HttpClient,
        url: &mut String,
        range: Option<(u64, Option<&str>)>,
    ) -> Result<Response> {
        let mut refreshes = 0;
        loop {
            let mut request = Request::get(url.as_str());
            if !self.authenticated {
                request = request.without_auth();
            }
            if let Some((from, etag)) = range {
                request = request.header("range", format!("bytes={from}-"));
                if let Some(etag) = etag {
                    request = request.header("if-range", etag);
                }
            }
            let error = match client.send(request).await {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            let Some(refresh) = self.refresh.as_ref().filter(|_| is_expired(&error)) else {
                return Err(error);
            };
            if refreshes >= self.max_refreshes {
                tracing::warn!(url = %redact_url(url), refreshes, "download URL still expired after re-resolving");
                return Err(error);
            }
            refreshes += 1;
            tracing::info!(url = %redact_url(url), attempt = refreshes, "download URL expired; fetching a fresh one");
            *url = refresh().await?;
        }
    }
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("url", &redact_url(&self.url))
            .field("authenticated", &self.authenticated)
            .field("re_resolvable", &self.refresh.is_some())
            .field("max_refreshes", &self.max_refreshes)
            .field("expected_size", &self.expected_size)
            .field("max_resumes", &self.max_resumes)
            .field("gzip", &self.gzip)
            .field("max_decompressed", &self.max_decompressed)
            .finish_non_exhaustive()
    }
}

/// Whether an error says the (pre-signed) URL has expired.
fn is_expired(error: &Error) -> bool {
    let Some(api) = error.api() else {
        return false;
    };
    let says_expired = || {
        let text = format!(
            "{} {}",
            api.message.as_deref().unwrap_or(""),
            api.body_snippet
        );
        text.to_ascii_lowercase().contains("expired")
    };
    match api.status {
        // A 403 with Retry-After is throttling (D2L quota), not expiry.
        403 => api.retry_after.is_none() || says_expired(),
        400 | 401 => says_expired(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiError;
    use std::time::Duration;

    fn api_error(status: u16, body: &str, retry_after: Option<Duration>) -> Error {
        Error::Api(Box::new(ApiError {
            method: "GET".into(),
            url: "https://bucket.example/o".into(),
            status,
            message: None,
            request_id: None,
            body_snippet: body.into(),
            retry_after,
        }))
    }

    #[test]
    fn expiry_is_recognised_from_status_and_body() {
        assert!(is_expired(&api_error(
            403,
            "<Code>AccessDenied</Code>",
            None
        )));
        assert!(is_expired(&api_error(
            400,
            "<Message>Request has expired</Message>",
            None
        )));
        assert!(is_expired(&api_error(401, "Signature EXPIRED", None)));
        assert!(!is_expired(&api_error(
            403,
            "quota",
            Some(Duration::from_secs(5))
        )));
        assert!(!is_expired(&api_error(400, "bad range", None)));
        assert!(!is_expired(&api_error(404, "expired", None)));
        assert!(!is_expired(&Error::Config("x".into())));
    }
}
