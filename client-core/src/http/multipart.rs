//! Replayable `multipart/form-data` bodies.

use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use crate::{Error, Result};

/// A `multipart/form-data` body description. Unlike a one-shot stream it can
/// be sent again: file parts are re-opened and streamed from disk on each
/// attempt, so a 1 GB upload never sits in memory and a retry sends it whole.
///
/// ```
/// use client_core::http::{Multipart, Part};
///
/// let form = Multipart::new()
///     .text("jobName", "nightly accounts")
///     .part("file", Part::file("/data/accounts.csv").content_type("text/csv"))
///     .part("template", Part::bytes(br#"{"map":{}}"#.to_vec())
///         .file_name("template.json")
///         .content_type("application/json")
///         .header("Expires", "0"));
/// assert_eq!(form.len(), 3);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Multipart {
    parts: Vec<(String, Part)>,
}

/// One part of a [`Multipart`] body.
#[derive(Clone)]
pub struct Part {
    source: PartSource,
    file_name: Option<String>,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
}

#[derive(Clone)]
enum PartSource {
    Text(String),
    Bytes(Bytes),
    File(PathBuf),
}

impl Multipart {
    /// An empty form.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a text field.
    pub fn text(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.part(name, Part::text(value))
    }

    /// Adds a part.
    pub fn part(mut self, name: impl Into<String>, part: Part) -> Self {
        self.parts.push((name.into(), part));
        self
    }

    /// Number of parts.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Whether the form has no parts.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Builds the form for one attempt, opening every file afresh.
    pub(crate) async fn to_reqwest(&self) -> Result<reqwest::multipart::Form> {
        let mut form = reqwest::multipart::Form::new();
        for (name, part) in &self.parts {
            form = form.part(name.clone(), part.to_reqwest(name).await?);
        }
        Ok(form)
    }
}

impl Part {
    /// A text part.
    pub fn text(value: impl Into<String>) -> Self {
        Self::from_source(PartSource::Text(value.into()))
    }

    /// A part with these bytes.
    pub fn bytes(value: impl Into<Bytes>) -> Self {
        Self::from_source(PartSource::Bytes(value.into()))
    }

    /// A part streamed from the file at `path`; its file name defaults to the
    /// path's last component.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        Self {
            file_name,
            ..Self::from_source(PartSource::File(path))
        }
    }

    /// Sets the part's file name (`Content-Disposition; filename=`).
    pub fn file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = Some(name.into());
        self
    }

    /// Sets the part's content type.
    pub fn content_type(mut self, mime: impl Into<String>) -> Self {
        self.content_type = Some(mime.into());
        self
    }

    /// Adds a header to the part (e.g. `Expires: 0`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn from_source(source: PartSource) -> Self {
        Self {
            source,
            file_name: None,
            content_type: None,
            headers: Vec::new(),
        }
    }

    async fn to_reqwest(&self, name: &str) -> Result<reqwest::multipart::Part> {
        let mut part = match &self.source {
            PartSource::Text(t) => reqwest::multipart::Part::text(t.clone()),
            PartSource::Bytes(b) => reqwest::multipart::Part::stream(b.clone()),
            PartSource::File(path) => {
                let (body, len) = open_file_body(path).await?;
                reqwest::multipart::Part::stream_with_length(body, len)
            }
        };
        if let Some(file_name) = &self.file_name {
            part = part.file_name(file_name.clone());
        }
        if let Some(mime) = &self.content_type {
            part = part.mime_str(mime).map_err(|_| {
                Error::InvalidRequest(format!(
                    "multipart part {name:?}: invalid content type {mime:?}"
                ))
            })?;
        }
        if !self.headers.is_empty() {
            part = part.headers(part_headers(name, &self.headers)?);
        }
        Ok(part)
    }
}

fn part_headers(part: &str, headers: &[(String, String)]) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        let (Ok(n), Ok(v)) = (
            HeaderName::try_from(n.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) else {
            return Err(Error::InvalidRequest(format!(
                "multipart part {part:?}: invalid header {n:?}"
            )));
        };
        map.insert(n, v);
    }
    Ok(map)
}

/// Opens `path` as a streamed request body and returns it with its length.
pub(crate) async fn open_file_body(path: &Path) -> Result<(reqwest::Body, u64)> {
    let context = || format!("could not open {} for upload", path.display());
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io(context(), e))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| Error::io(context(), e))?
        .len();
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((reqwest::Body::wrap_stream(stream), len))
}

impl fmt::Debug for Part {
    /// Shows the kind and metadata, never text or bytes (they may be secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            PartSource::Text(t) => format!("text ({} bytes)", t.len()),
            PartSource::Bytes(b) => format!("bytes ({} bytes)", b.len()),
            PartSource::File(p) => format!("file {}", p.display()),
        };
        f.debug_struct("Part")
            .field("source", &source)
            .field("file_name", &self.file_name)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}
