#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod client;
pub mod download;
pub mod error;
mod jobs;
pub mod model;
pub mod record;
#[cfg(feature = "sql")]
pub mod replicate;
pub mod schema;

/// The date-time types of this API (`DateTime<Utc>`), re-exported.
pub use chrono;
pub use client::{Client, ClientBuilder};
pub use client_core::SecretString;
pub use client_core::retry::RetryPolicy;
pub use client_core::waiter::PollPolicy;
pub use download::{DownloadProgress, TableRecords};
pub use error::{Error, Location, OperationError, Result};
pub use model::{
    Action, DownloadTableDataResult, Format, GetTableDataResult, IncrementalQuery, Job, JobError,
    JobStatus, Mode, Object, Query, Resource, ResourceResult, SnapshotQuery, TableList,
    VersionedSchema,
};
pub use record::{Fields, Meta, Record, RecordReader};
pub use schema::TableSchema;
