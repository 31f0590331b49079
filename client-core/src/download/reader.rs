//! A download as a tokio `AsyncRead`: optional multi-member gzip decoding
//! and a cap on the bytes produced.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::GzipDecoder;
use futures::TryStreamExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::StreamReader;

use super::body::Body;
use crate::Error;

/// The body of a [`Download`](super::Download), readable with tokio's
/// `AsyncRead` (wrap it in a `BufReader` for lines).
///
/// Errors are `io::Error`s that wrap an [`Error`]: a broken or short body
/// and an exceeded size cap are [`Error::Download`], corrupt gzip data too.
/// Get the typed error back with [`error_from_io`].
pub struct DownloadReader {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    /// The URL without its query string, for messages.
    url: String,
    limit: Option<u64>,
    produced: u64,
}

impl DownloadReader {
    pub(crate) fn new(body: Body, gzip: bool, limit: Option<u64>) -> Self {
        let url = body.url().to_string();
        let raw = StreamReader::new(body.into_stream().map_err(io::Error::other));
        let inner: Pin<Box<dyn AsyncRead + Send>> = if gzip {
            let mut decoder = GzipDecoder::new(raw);
            // Without this only the first member of a concatenated .gz is
            // decoded and the rest silently dropped.
            decoder.multiple_members(true);
            Box::pin(decoder)
        } else {
            Box::pin(raw)
        };
        Self {
            inner,
            url,
            limit,
            produced: 0,
        }
    }

    /// Bytes handed to the reader so far (after decoding).
    pub fn bytes_read(&self) -> u64 {
        self.produced
    }

    fn download_error(&self, message: String) -> io::Error {
        io::Error::other(Error::Download {
            url: self.url.clone(),
            message,
        })
    }
}

impl AsyncRead for DownloadReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match self.inner.as_mut().poll_read(cx, buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) if wraps_core_error(&e) => Poll::Ready(Err(e)),
            Poll::Ready(Err(e)) => {
                let message = format!("the data could not be decoded: {e}");
                Poll::Ready(Err(self.download_error(message)))
            }
            Poll::Ready(Ok(())) => {
                let added = (buf.filled().len() - before) as u64;
                self.produced = self.produced.saturating_add(added);
                match self.limit {
                    Some(limit) if self.produced > limit => {
                        // An AsyncRead must not hand out data with an error.
                        buf.set_filled(before);
                        let message = format!(
                            "it decodes to more than the {limit}-byte limit (a decompression bomb, \
                             or a legitimately large file: raise max_decompressed_bytes)"
                        );
                        Poll::Ready(Err(self.download_error(message)))
                    }
                    _ => Poll::Ready(Ok(())),
                }
            }
        }
    }
}

impl fmt::Debug for DownloadReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DownloadReader")
            .field("url", &self.url)
            .field("limit", &self.limit)
            .field("produced", &self.produced)
            .finish_non_exhaustive()
    }
}

fn wraps_core_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Error>())
}

/// The typed [`Error`] inside an `io::Error` from a [`DownloadReader`] (or
/// anything reading from one); other I/O errors become [`Error::Io`].
///
/// ```
/// use client_core::{Error, download::error_from_io};
///
/// let wrapped = std::io::Error::other(Error::Config("x".into()));
/// assert!(matches!(error_from_io(wrapped), Error::Config(_)));
/// ```
pub fn error_from_io(error: io::Error) -> Error {
    if !wraps_core_error(&error) {
        return Error::io("reading the download", error);
    }
    match error.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(typed)) => *typed,
        // Unreachable after the check above; keep the text rather than panic.
        Some(Err(other)) => Error::io("reading the download", io::Error::other(other)),
        None => Error::io(
            "reading the download",
            io::Error::other("unknown I/O error"),
        ),
    }
}
