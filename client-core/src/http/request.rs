//! The description of a request, rebuilt into a fresh HTTP request for every
//! attempt.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::Multipart;
use crate::auth::BasicCredentials;
use crate::retry::RetryPolicy;

/// What to send and how. A `Request` is never consumed by sending: the client
/// turns it into a new HTTP request on each attempt, re-serialising the body
/// and re-opening files, so retries always send the whole body.
///
/// The target is either a path, joined to the client's base URL (a leading
/// `/` is relative to the base path too: base `https://h/api` + `/v1/x` is
/// `https://h/api/v1/x`), or an absolute `http(s)://` URL used as is.
///
/// Builder errors (an invalid header, a body that does not serialise) are kept
/// and reported by `execute`/`send` as [`Error::InvalidRequest`](crate::Error::InvalidRequest).
///
/// ```
/// use client_core::http::Request;
///
/// let req = Request::post("/dap/query/canvas/table/users/data")
///     .json(&serde_json::json!({"format": "jsonl"}))
///     .idempotent(true) // the server de-duplicates job creation
///     .header("x-trace", "abc");
/// # drop(req);
/// ```
#[derive(Clone)]
pub struct Request {
    pub(crate) method: Method,
    pub(crate) target: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) auth: RequestAuth,
    pub(crate) idempotent: Option<bool>,
    pub(crate) expect_status: Option<Vec<u16>>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) invalid: Option<String>,
}

/// The body, kept in a form that can be sent again.
#[derive(Clone)]
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    Form(Vec<(String, String)>),
    Multipart(Multipart),
    File(PathBuf),
}

/// Which credentials an individual request carries.
#[derive(Clone, Debug)]
pub(crate) enum RequestAuth {
    /// The client's auth mode.
    Client,
    /// No `Authorization` header at all (pre-signed URLs).
    None,
    /// These Basic credentials instead of the client's mode (token endpoints).
    Basic(BasicCredentials),
}

impl Request {
    /// A request with `method` to `target` (a path or an absolute URL).
    pub fn new(method: Method, target: impl Into<String>) -> Self {
        Self {
            method,
            target: target.into(),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: Body::Empty,
            auth: RequestAuth::Client,
            idempotent: None,
            expect_status: None,
            retry: None,
            timeout: None,
            invalid: None,
        }
    }

    /// A `GET` request.
    pub fn get(target: impl Into<String>) -> Self {
        Self::new(Method::GET, target)
    }

    /// A `POST` request.
    pub fn post(target: impl Into<String>) -> Self {
        Self::new(Method::POST, target)
    }

    /// A `PUT` request.
    pub fn put(target: impl Into<String>) -> Self {
        Self::new(Method::PUT, target)
    }

    /// A `DELETE` request.
    pub fn delete(target: impl Into<String>) -> Self {
        Self::new(Method::DELETE, target)
    }

    /// A `HEAD` request.
    pub fn head(target: impl Into<String>) -> Self {
        Self::new(Method::HEAD, target)
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The target as given (path or absolute URL).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Appends a query parameter (percent-encoded when sent).
    pub fn query(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.query.push((name.into(), value.to_string()));
        self
    }

    /// Appends query parameters.
    pub fn query_pairs<K: Into<String>, V: ToString>(
        mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.query
            .extend(pairs.into_iter().map(|(k, v)| (k.into(), v.to_string())));
        self
    }

    /// Sets a header, replacing an earlier value of the same name.
    pub fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let name = name.as_ref();
        match (
            HeaderName::try_from(name),
            HeaderValue::try_from(value.as_ref()),
        ) {
            (Ok(n), Ok(v)) => {
                self.headers.insert(n, v);
            }
            _ => self.fail(format!("header {name:?} has an invalid name or value")),
        }
        self
    }

    /// A raw body with its content type.
    pub fn bytes(mut self, body: impl Into<Bytes>, content_type: &str) -> Self {
        self.body = Body::Bytes(body.into());
        self.header(CONTENT_TYPE.as_str(), content_type)
    }

    /// A JSON body (`application/json`), serialised now.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(v) => {
                self.body = Body::Bytes(Bytes::from(v));
                self.header(CONTENT_TYPE.as_str(), "application/json")
            }
            Err(e) => {
                self.fail(format!("the JSON body could not be serialised: {e}"));
                self
            }
        }
    }

    /// A form body (`application/x-www-form-urlencoded`).
    pub fn form<K: Into<String>, V: Into<String>>(
        mut self,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.body = Body::Form(
            fields
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        );
        self
    }

    /// A `multipart/form-data` body. File parts are re-opened and streamed on
    /// every attempt.
    pub fn multipart(mut self, form: Multipart) -> Self {
        self.body = Body::Multipart(form);
        self
    }

    /// The content of a file as the body, re-opened and streamed (never read
    /// whole into memory) on every attempt.
    pub fn file_body(mut self, path: impl Into<PathBuf>, content_type: &str) -> Self {
        self.body = Body::File(path.into());
        self.header(CONTENT_TYPE.as_str(), content_type)
    }

    /// Declares whether repeating the request is safe, overriding the method's
    /// default (GET/HEAD/PUT/DELETE are, POST is not). Mark a POST the server
    /// de-duplicates as idempotent so timeouts and resets are retried too.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Sends no `Authorization` header, whatever the client's auth mode. Use it
    /// for pre-signed URLs, whose signature is the credential.
    pub fn without_auth(mut self) -> Self {
        self.auth = RequestAuth::None;
        self
    }

    /// Authenticates this request with HTTP Basic instead of the client's mode.
    pub fn basic_auth(mut self, credentials: BasicCredentials) -> Self {
        self.auth = RequestAuth::Basic(credentials);
        self
    }

    /// The statuses [`send`](super::HttpClient::send) accepts (default: any 2xx).
    pub fn expect_status(mut self, statuses: &[u16]) -> Self {
        self.expect_status = Some(statuses.to_vec());
        self
    }

    /// Uses `policy` for this request instead of the client's.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Makes exactly one attempt.
    pub fn no_retry(self) -> Self {
        self.retry_policy(RetryPolicy::no_retries())
    }

    /// A total timeout for each attempt (connect to end of body), overriding
    /// the client's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the request may be repeated after it might have reached the server.
    pub fn is_idempotent(&self) -> bool {
        self.idempotent
            .unwrap_or_else(|| self.method.is_idempotent())
    }

    fn fail(&mut self, message: String) {
        self.invalid.get_or_insert(message);
    }
}

impl fmt::Debug for Request {
    /// Shows the target without its query, header names only, and the body's
    /// kind only: any of them may carry secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(|k| k.as_str()).collect();
        let query_names: Vec<&str> = self.query.iter().map(|(k, _)| k.as_str()).collect();
        let body = match &self.body {
            Body::Empty => "empty".to_string(),
            Body::Bytes(b) => format!("{} bytes", b.len()),
            Body::Form(fields) => format!("form with {} fields", fields.len()),
            Body::Multipart(m) => format!("multipart with {} parts", m.len()),
            Body::File(p) => format!("file {}", p.display()),
        };
        let auth = match &self.auth {
            RequestAuth::Client => "client",
            RequestAuth::None => "none",
            RequestAuth::Basic(_) => "basic",
        };
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &crate::error::redact_url(&self.target))
            .field("query", &query_names)
            .field("headers", &header_names)
            .field("body", &body)
            .field("auth", &auth)
            .field("idempotent", &self.is_idempotent())
            .finish_non_exhaustive()
    }
}
