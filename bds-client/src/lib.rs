#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]

pub mod archive;
pub mod client;
pub mod error;
pub mod known;
pub mod model;
pub mod plan;
mod record;
pub mod rows;
#[cfg(feature = "sql")]
#[cfg_attr(docsrs, doc(cfg(feature = "sql")))]
pub mod sync;

pub use archive::{ArchiveLimits, ExtractArchive};
pub use client::{Client, ClientBuilder, DataSetExtracts, RateLimitStatus};
pub use client_core::auth::{FileTokenStore, MemoryTokenStore, TokenProvider, TokenStore};
pub use client_core::download::{Progress, SavedFile};
pub use client_core::{ExposeSecret, SecretString};
pub use error::{BdsError, Result};
pub use known::{KNOWN_DATA_SETS, KnownDataSet, PrimaryKeys, find_known};
pub use model::{
    BdsType, BrightspaceDataSet, DataSetReportInfo, DataSetSchema, Extract, PluginInfo,
};
pub use plan::{ApplyAction, Gap, Plan, PlanKind, PlanOptions, PlanStep, TableState, plan};
pub use rows::{ColumnMap, CsvRows, Header, Row, RowBatch, read_batches};
