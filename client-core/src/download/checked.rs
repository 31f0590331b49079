//! The body of a download as a stream that counts bytes, reports progress
//! and turns a short, long or broken body into [`Error::Download`].

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};

use super::{Progress, ProgressFn};
use crate::error::redact_url;
use crate::http::Response;
use crate::{Error, Result};

/// A length-checked body stream. It ends with an error instead of ending
/// early, so a consumer that reaches the end has the whole object.
pub(crate) struct CheckedBody {
    inner: BoxStream<'static, Result<Bytes>>,
    /// The URL without its query, for messages.
    url: String,
    received: u64,
    /// Content-Length, or else the caller's expected size.
    total: Option<u64>,
    /// A mismatch between Content-Length and the expected size, reported on
    /// the first poll.
    mismatch: Option<String>,
    progress: Option<ProgressFn>,
    finished: bool,
}

impl CheckedBody {
    pub(crate) fn new(
        response: Response,
        expected: Option<u64>,
        progress: Option<ProgressFn>,
    ) -> Self {
        let declared = response.content_length();
        let mismatch = match (declared, expected) {
            (Some(d), Some(e)) if d != e => Some(format!(
                "the server declared {d} bytes but {e} bytes were expected"
            )),
            _ => None,
        };
        Self {
            url: redact_url(response.url().as_str()),
            inner: response.bytes_stream(),
            received: 0,
            total: declared.or(expected),
            mismatch,
            progress,
            finished: false,
        }
    }

    /// The URL without its query string.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn fail(&mut self, message: String) -> Poll<Option<Result<Bytes>>> {
        self.finished = true;
        Poll::Ready(Some(Err(Error::Download {
            url: self.url.clone(),
            message,
        })))
    }

    fn on_chunk(&mut self, chunk: Bytes) -> Poll<Option<Result<Bytes>>> {
        self.received = self.received.saturating_add(chunk.len() as u64);
        if let Some(total) = self.total.filter(|t| self.received > *t) {
            let message = format!("received more than the {total} bytes declared");
            return self.fail(message);
        }
        if let Some(report) = &self.progress {
            report(Progress {
                bytes: self.received,
                total: self.total,
            });
        }
        Poll::Ready(Some(Ok(chunk)))
    }

    fn on_end(&mut self) -> Poll<Option<Result<Bytes>>> {
        match self.total {
            Some(total) if self.received < total => {
                let message = format!("the body ended after {} of {total} bytes", self.received);
                self.fail(message)
            }
            _ => {
                self.finished = true;
                Poll::Ready(None)
            }
        }
    }
}

impl Stream for CheckedBody {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(message) = self.mismatch.take() {
            return self.fail(message);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => self.on_chunk(chunk),
            Poll::Ready(Some(Err(cause))) => {
                let message = format!(
                    "the connection broke off after {} bytes: {cause}",
                    self.received
                );
                self.fail(message)
            }
            Poll::Ready(None) => self.on_end(),
        }
    }
}
