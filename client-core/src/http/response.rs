//! The response type handed to callers.

use std::fmt;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt as _, TryStreamExt as _};
use reqwest::Method;
use reqwest::header::HeaderMap;
use url::Url;

use super::api_error::request_id;
use super::transport::transport_error;
use crate::error::{ApiError, redact_url, snippet};
use crate::{Error, Result};

/// How much of an error body is read for classifiers and error messages.
pub(crate) const ERROR_PREFIX_BYTES: usize = 64 * 1024;

/// An HTTP response. The body is read at most once, by one of the consuming
/// methods ([`bytes`](Self::bytes), [`text`](Self::text), [`json`](Self::json),
/// [`bytes_stream`](Self::bytes_stream), [`into_async_read`](Self::into_async_read)).
pub struct Response {
    method: Method,
    url: Url,
    status: u16,
    headers: HeaderMap,
    /// Body bytes already read (the start of an error body).
    prefix: Bytes,
    /// The rest of the body, still on the wire.
    rest: Option<reqwest::Response>,
    /// Set when the retry budget ran out on this (retryable) response.
    pub(crate) exhausted: Option<(u32, Duration)>,
}

impl Response {
    pub(crate) fn from_reqwest(method: Method, response: reqwest::Response) -> Self {
        Self {
            method,
            url: response.url().clone(),
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            prefix: Bytes::new(),
            rest: Some(response),
            exhausted: None,
        }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The value of header `name`, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The final URL (after redirects). It may carry a signed query string:
    /// show it with [`redact_url`](crate::error::redact_url).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The declared body length, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }

    /// The server's request id (`x-request-id` and similar), if any.
    pub fn request_id(&self) -> Option<String> {
        request_id(&self.headers)
    }

    /// The delay the server asked for with `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        crate::retry::parse_retry_after(&self.headers, SystemTime::now())
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Bytes> {
        let Some(rest) = self.rest.take() else {
            return Ok(self.prefix);
        };
        let tail = rest.bytes().await.map_err(|e| self.body_error(e))?;
        if self.prefix.is_empty() {
            return Ok(tail);
        }
        let mut all = BytesMut::with_capacity(self.prefix.len() + tail.len());
        all.extend_from_slice(&self.prefix);
        all.extend_from_slice(&tail);
        Ok(all.freeze())
    }

    /// The whole body as text (invalid UTF-8 replaced).
    pub async fn text(self) -> Result<String> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The body decoded from JSON. A body that does not match `T` gives
    /// [`Error::Decode`] with the start of the body.
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let url = redact_url(self.url.as_str());
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode {
            url,
            message: e.to_string(),
            body_snippet: snippet(&bytes, 512),
        })
    }

    /// The body as a stream of chunks, never held whole in memory.
    pub fn bytes_stream(mut self) -> BoxStream<'static, Result<Bytes>> {
        let head = (!self.prefix.is_empty()).then(|| Ok(self.prefix.clone()));
        let head = stream::iter(head);
        match self.rest.take() {
            None => head.boxed(),
            Some(rest) => {
                let method = self.method.to_string();
                let url = self.url.to_string();
                let tail = rest
                    .bytes_stream()
                    .map_err(move |e| transport_error(e, &method, &url));
                head.chain(tail).boxed()
            }
        }
    }

    /// The body as a tokio `AsyncRead` (errors become `io::Error`s wrapping
    /// [`Error`]), e.g. to feed a gzip decoder.
    pub fn into_async_read(self) -> Pin<Box<dyn tokio::io::AsyncRead + Send>> {
        let stream = self.bytes_stream().map_err(std::io::Error::other);
        Box::pin(tokio_util::io::StreamReader::new(stream))
    }

    /// This response as an [`Error::Api`] (reads at most 64 KiB of the body),
    /// wrapped in [`Error::RetriesExhausted`] if the retry budget ran out on it.
    pub async fn into_api_error(mut self) -> Error {
        if let Err(e) = self.buffer_prefix().await {
            return e;
        }
        let api = ApiError::from_response_parts(
            self.method.as_str(),
            self.url.as_str(),
            self.status,
            &self.headers,
            &self.prefix,
        );
        let error = Error::Api(Box::new(api));
        match self.exhausted {
            Some((attempts, elapsed)) => Error::RetriesExhausted {
                attempts,
                elapsed,
                last: Box::new(error),
            },
            None => error,
        }
    }

    /// Reads up to 64 KiB of the body into `prefix`, leaving the rest on the
    /// wire, so classifiers and error messages can look at it.
    pub(crate) async fn buffer_prefix(&mut self) -> Result<()> {
        let Some(rest) = self.rest.as_mut() else {
            return Ok(());
        };
        let mut buf = BytesMut::from(&self.prefix[..]);
        while buf.len() < ERROR_PREFIX_BYTES {
            match rest.chunk().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                Ok(None) => {
                    self.rest = None;
                    break;
                }
                Err(e) => {
                    self.rest = None;
                    return Err(self.body_error(e));
                }
            }
        }
        self.prefix = buf.freeze();
        Ok(())
    }

    /// The first bytes of the body read so far (after `buffer_prefix`).
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn body_error(&self, e: reqwest::Error) -> Error {
        transport_error(e, self.method.as_str(), self.url.as_str())
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("method", &self.method)
            .field("url", &redact_url(self.url.as_str()))
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}
