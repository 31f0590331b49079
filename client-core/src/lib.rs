#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod auth;
pub mod download;
pub mod error;
pub mod http;
pub mod paging;
pub mod retry;
pub mod time;
pub mod waiter;

pub use auth::{AccessToken, TokenProvider};
pub use download::Download;
pub use error::{ApiError, Error, Result, TransportKind};
pub use http::{HttpClient, Request, Response};
pub use paging::{Page, paginate};
pub use retry::RetryPolicy;
pub use secrecy::{ExposeSecret, SecretString};
pub use waiter::{Acceptance, PollPolicy, Waiter};
