//! Reads lines from an async buffered reader into a reused buffer, with a cap
//! on the line length so a hostile or corrupt object cannot exhaust memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Why a line could not be read.
#[derive(Debug)]
pub(crate) enum LineError {
    Io(std::io::Error),
    TooLong,
}

/// A line reader that appends into a caller-owned buffer.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: R,
    max_len: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub(crate) fn new(inner: R, max_len: usize) -> Self {
        Self { inner, max_len }
    }

    pub(crate) fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Appends the next line (without its `\n`) to `buf`. Returns `false` at
    /// the end of input when nothing was read.
    pub(crate) async fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, LineError> {
        let start = buf.len();
        let mut read_any = false;
        loop {
            let chunk = self.inner.fill_buf().await.map_err(LineError::Io)?;
            if chunk.is_empty() {
                return Ok(read_any);
            }
            read_any = true;
            let (used, done) = match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    buf.extend_from_slice(&chunk[..i]);
                    (i + 1, true)
                }
                None => {
                    buf.extend_from_slice(chunk);
                    (chunk.len(), false)
                }
            };
            self.inner.consume(used);
            if buf.len() - start > self.max_len {
                return Err(LineError::TooLong);
            }
            if done {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_across_buffer_boundaries_and_caps_length() {
        let data: &[u8] = b"ab\ncdefgh\n\nlast";
        let reader = tokio::io::BufReader::with_capacity(2, data);
        let mut lines = LineReader::new(reader, 5);
        let mut out = Vec::new();
        let mut got = Vec::new();
        loop {
            out.clear();
            match lines.read_line(&mut out).await {
                Ok(true) => got.push(String::from_utf8(out.clone()).unwrap()),
                Ok(false) => break,
                Err(LineError::TooLong) => got.push("<too long>".into()),
                Err(LineError::Io(e)) => panic!("{e}"),
            }
        }
        assert_eq!(got, ["ab", "<too long>", "", "last"]);
    }
}
