//! The HTTP client: base URL, auth, the retry loop, redirects, and the
//! request/response types service crates use.
//!
//! No reqwest type appears in this API; [`HeaderMap`], [`HeaderName`],
//! [`HeaderValue`] and [`Method`] are the `http` crate's, re-exported here.

mod api_error;
mod client;
mod execute;
mod multipart;
mod redirect;
mod request;
mod response;
mod transport;

pub use client::{Auth, HttpClient, HttpClientBuilder};
pub use multipart::{Multipart, Part};
pub use request::Request;
pub use reqwest::Method;
pub use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
pub use response::Response;
