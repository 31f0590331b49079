//! Shared state of the fake Toucan server.

use super::ToucanConfig;
use super::operation::{FailAt, OpStatus, Operation};
use crate::faults::Faults;
use crate::stats::Stats;
use serde::Serialize;
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

/// A stored data-source file.
#[derive(Debug, Clone, Serialize)]
pub struct UploadRecord {
    /// `staging` or `production`.
    pub stage: String,
    /// Data source name (`filename` of the `data` part).
    pub filename: String,
    /// Bytes stored.
    pub size: u64,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// Where the bytes are (inside the server's temp dir).
    pub path: PathBuf,
    /// `validation` query value as sent.
    pub validation: Option<String>,
    /// The operation created for the upload.
    pub operation_id: String,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub tokens: HashSet<String>,
    pub login_failures: VecDeque<Instant>,
    pub operations: Vec<Operation>,
    pub forced: VecDeque<FailAt>,
    pub uploads: Vec<UploadRecord>,
    counter: u64,
}

#[derive(Debug)]
pub(crate) struct Toucan {
    pub config: ToucanConfig,
    pub faults: Faults,
    pub stats: Stats,
    pub dir: tempfile::TempDir,
    inner: Mutex<Inner>,
}

impl Toucan {
    pub fn new(config: ToucanConfig, faults: Faults, stats: Stats) -> std::io::Result<Self> {
        Ok(Toucan {
            config,
            faults,
            stats,
            dir: tempfile::Builder::new()
                .prefix("sandbox-toucan-")
                .tempdir()?,
            inner: Mutex::default(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new operation (taking a forced failure if one is queued); returns its id.
    pub fn create_operation(&self, mut op: Operation) -> String {
        let mut inner = self.lock();
        inner.counter += 1;
        // ObjectId-like: 8 hex digits of time, 16 of sequence and seed.
        let secs = chrono::Utc::now().timestamp().max(0) as u64 & 0xFFFF_FFFF;
        op.id = format!(
            "{secs:08x}{:016x}",
            crate::data::mix(self.config.seed) ^ inner.counter
        );
        op.status = OpStatus::Pending;
        op.polls = 0;
        op.fail = inner.forced.pop_front();
        let id = op.id.clone();
        inner.operations.push(op);
        id
    }
}
