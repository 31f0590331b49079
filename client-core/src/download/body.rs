//! The body of a download as a stream that counts bytes, reports progress,
//! resumes a broken transfer with a `Range` request, and otherwise turns a
//! short, long or broken body into [`Error::Download`].

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::{Download, Progress};
use crate::error::redact_url;
use crate::http::{HttpClient, Response};
use crate::{Error, Result};

/// A length-checked, resumable body. It ends with an error instead of
/// ending early, so a consumer that reaches the end has the whole object.
pub(crate) struct Body {
    client: HttpClient,
    download: Download,
    /// The URL requested last (with its query: never log it unredacted).
    source: String,
    current: BoxStream<'static, Result<Bytes>>,
    /// The URL without its query, for messages.
    url: String,
    received: u64,
    /// Content-Length of the first response, or else the expected size.
    total: Option<u64>,
    /// The first response's `ETag`, sent as `If-Range` when resuming.
    etag: Option<String>,
    resumes: u32,
    /// Bytes still to drop from a resumed response that restarted at 0.
    skip: u64,
    finished: bool,
}

impl Body {
    /// Sends the request and checks the declared length against the
    /// expected size before any byte is consumed.
    pub(crate) async fn start(client: &HttpClient, download: &Download) -> Result<Self> {
        let mut source = download.url.clone();
        let response = download.fetch(client, &mut source, None).await?;
        let url = redact_url(response.url().as_str());
        let declared = response.content_length();
        if let (Some(d), Some(e)) = (declared, download.expected_size)
            && d != e
        {
            let message = format!("the server declared {d} bytes but {e} bytes were expected");
            return Err(Error::Download { url, message });
        }
        Ok(Self {
            client: client.clone(),
            download: download.clone(),
            source,
            etag: response.header("etag").map(str::to_string),
            current: response.bytes_stream(),
            url,
            received: 0,
            total: declared.or(download.expected_size),
            resumes: 0,
            skip: 0,
            finished: false,
        })
    }

    /// The URL without its query string.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The chunks as a stream.
    pub(crate) fn into_stream(self) -> BoxStream<'static, Result<Bytes>> {
        stream::unfold(self, |mut body| async move {
            let item = body.next_chunk().await?;
            Some((item, body))
        })
        .boxed()
    }

    /// The next chunk, `None` at the (complete) end.
    pub(crate) async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        while !self.finished {
            let problem = match self.current.next().await {
                Some(Ok(chunk)) => match self.accept(chunk) {
                    Ok(Some(chunk)) => return Some(Ok(chunk)),
                    Ok(None) => continue,
                    Err(e) => return Some(Err(self.fail(e))),
                },
                Some(Err(cause)) => {
                    format!(
                        "the connection broke off after {} bytes: {cause}",
                        self.received
                    )
                }
                None => match self.total {
                    Some(total) if self.received < total => {
                        format!("the body ended after {} of {total} bytes", self.received)
                    }
                    _ => {
                        self.finished = true;
                        return None;
                    }
                },
            };
            if let Err(e) = self.resume(problem).await {
                return Some(Err(self.fail(e)));
            }
        }
        None
    }

    /// Counts a chunk; `None` when it was all skipped.
    fn accept(&mut self, mut chunk: Bytes) -> Result<Option<Bytes>> {
        if self.skip > 0 {
            let drop = usize::try_from(self.skip)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            self.skip -= drop as u64;
            chunk = chunk.slice(drop..);
            if chunk.is_empty() {
                return Ok(None);
            }
        }
        self.received = self.received.saturating_add(chunk.len() as u64);
        if let Some(total) = self.total.filter(|t| self.received > *t) {
            return Err(self.error(format!("received more than the {total} bytes declared")));
        }
        if let Some(report) = &self.download.progress {
            report(Progress {
                bytes: self.received,
                total: self.total,
            });
        }
        Ok(Some(chunk))
    }

    /// Continues the transfer from `received` with a `Range` request, after
    /// the client's backoff, at most `max_resumes` times.
    async fn resume(&mut self, problem: String) -> Result<()> {
        if self.resumes >= self.download.max_resumes {
            let message = match self.resumes {
                0 => problem,
                n => format!("{problem} (after resuming {n} times)"),
            };
            return Err(self.error(message));
        }
        self.resumes += 1;
        let inner = &self.client.inner;
        let delay = inner.policy.backoff(self.resumes, inner.random.as_ref());
        tracing::warn!(url = %self.url, received = self.received, resume = self.resumes,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), %problem, "resuming the download");
        inner.sleeper.sleep(delay).await;

        let range = (self.received, self.etag.as_deref());
        let response = self
            .download
            .fetch(&self.client, &mut self.source, Some(range))
            .await?;
        self.skip = self.check_resumed(&response)?;
        self.current = response.bytes_stream();
        Ok(())
    }

    /// Checks that a resumed response continues this object; returns how
    /// many leading bytes to drop (a server ignoring `Range` starts over).
    fn check_resumed(&self, response: &Response) -> Result<u64> {
        match response.status() {
            206 => {
                let range = response
                    .header("content-range")
                    .and_then(parse_content_range);
                match range {
                    Some((start, size)) if start == self.received && same_size(size, self.total) => Ok(0),
                    _ => Err(self.error(format!(
                        "the server resumed with Content-Range {:?} instead of bytes {}- of the same object",
                        response.header("content-range").unwrap_or(""),
                        self.received
                    ))),
                }
            }
            _ => {
                let etag = response.header("etag");
                let changed = self.etag.is_some() && etag != self.etag.as_deref();
                if changed || !same_size(response.content_length(), self.total) {
                    return Err(self.error(
                        "the object changed on the server while it was downloading".into(),
                    ));
                }
                Ok(self.received)
            }
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Download {
            url: self.url.clone(),
            message,
        }
    }

    fn fail(&mut self, error: Error) -> Error {
        self.finished = true;
        error
    }
}

/// Whether two sizes agree where both are known.
fn same_size(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// `bytes START-END/SIZE` (SIZE may be `*`) → (START, SIZE).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (span, size) = rest.split_once('/')?;
    let (start, _end) = span.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let size = match size.trim() {
        "*" => None,
        s => Some(s.parse().ok()?),
    };
    Some((start, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_is_parsed() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes x-9/10"), None);
    }
}
