//! Shared state of the fake LD server: tokens, jobs, forced fates, stored uploads.

use super::LdConfig;
use super::job::{Fate, Job};
use crate::faults::Faults;
use crate::stats::Stats;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, OnceLock};
use tokio::time::Instant;

/// An issued access token.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub expires: Instant,
    pub community: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub tokens: HashMap<String, Token>,
    /// Jobs in submission order.
    pub jobs: Vec<Job>,
    /// Fates the control API imposed on the next jobs.
    pub forced: VecDeque<Fate>,
}

impl Inner {
    pub fn job_mut(&mut self, id: &str) -> Option<&mut Job> {
        self.jobs.iter_mut().find(|j| j.id == id)
    }
}

#[derive(Debug)]
pub(crate) struct Ld {
    pub config: LdConfig,
    pub faults: Faults,
    pub stats: Stats,
    /// Uploads and export files; removed when the server stops.
    pub dir: tempfile::TempDir,
    pub base_url: OnceLock<String>,
    inner: Mutex<Inner>,
}

impl Ld {
    pub fn new(config: LdConfig, faults: Faults, stats: Stats) -> std::io::Result<Self> {
        Ok(Ld {
            config,
            faults,
            stats,
            dir: tempfile::Builder::new().prefix("sandbox-ld-").tempdir()?,
            base_url: OnceLock::new(),
            inner: Mutex::default(),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn base(&self) -> &str {
        self.base_url.get().map_or("", String::as_str)
    }
}
