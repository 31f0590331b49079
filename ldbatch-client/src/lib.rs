#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod client;
mod content;
mod download;
mod error;
mod job;
mod request;
mod status;

pub use client::{Client, ClientBuilder, ENV_VARS};
pub use content::ContentType;
pub use error::{Error, Result};
pub use job::{Job, parse_timestamp};
pub use request::{ExportRequest, FileSource, Filters, ImportRequest};
pub use status::{DOCUMENTED_STATUSES, IllegalTransition, JobStatus, StatusMonitor, Transition};

/// Re-exported so users can configure waiting and retries without naming `client-core`.
pub use client_core::{SecretString, retry::RetryPolicy, waiter::PollPolicy};
