#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

mod client;
mod error;
mod operation;
mod request;
mod upload;

pub use client::{AuthMode, Client, ClientBuilder, ENV_VARS};
pub use error::{Error, ErrorBody, Result};
pub use operation::{Operation, OperationId, OperationState, OperationStatus, Stage};
pub use request::{DomainSelection, OperationsRequest, PartialOperation};
pub use upload::{Upload, UploadOutcome, UploadReceipt};

/// Re-exported so users can configure waiting and retries without naming `client-core`.
pub use client_core::{SecretString, retry::RetryPolicy, waiter::PollPolicy};
