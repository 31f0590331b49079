//! Many tables at once: bounded concurrency, every table's outcome, and a
//! stop (for tables not yet started) after a fatal error.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::error::ReplicateError;
use super::replicator::{Operation, Replicator, TableReport};

/// The outcome of [`Replicator::run_many`]: one entry per table, in the
/// order the tables were given.
#[derive(Debug)]
#[non_exhaustive]
pub struct ManyOutcome {
    /// The operation.
    pub operation: Operation,
    /// `(table, outcome)` for every table. Tables not started because of
    /// a fatal error elsewhere have [`ReplicateError::Skipped`].
    pub results: Vec<(String, Result<TableReport, ReplicateError>)>,
}

impl ManyOutcome {
    /// Whether every table succeeded.
    pub fn is_success(&self) -> bool {
        self.results.iter().all(|(_, r)| r.is_ok())
    }

    /// The failures, in table order.
    pub fn failures(&self) -> impl Iterator<Item = &ReplicateError> {
        self.results.iter().filter_map(|(_, r)| r.as_ref().err())
    }

    /// The reports if every table succeeded, else one error holding every
    /// failure.
    pub fn into_result(self) -> Result<Vec<TableReport>, ManyError> {
        let total = self.results.len();
        let mut reports = Vec::with_capacity(total);
        let mut failures = Vec::new();
        for (_, r) in self.results {
            match r {
                Ok(report) => reports.push(report),
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            Ok(reports)
        } else {
            Err(ManyError {
                operation: self.operation,
                total,
                failures,
            })
        }
    }
}

/// Some tables of a multi-table operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub struct ManyError {
    /// The operation.
    pub operation: Operation,
    /// How many tables were asked for.
    pub total: usize,
    /// Every failure (including tables skipped after a fatal error).
    pub failures: Vec<ReplicateError>,
}

impl ManyError {
    /// Whether one of the failures is fatal (credentials, account,
    /// database unreachable).
    pub fn is_fatal(&self) -> bool {
        self.failures.iter().any(ReplicateError::is_fatal)
    }
}

impl fmt::Display for ManyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let skipped = self
            .failures
            .iter()
            .filter(|e| matches!(e, ReplicateError::Skipped { .. }))
            .count();
        write!(
            f,
            "{} completed with issues: {} failed",
            self.operation,
            self.failures.len() - skipped
        )?;
        if skipped > 0 {
            write!(f, ", {skipped} skipped")?;
        }
        write!(f, " out of {} table(s)", self.total)?;
        for e in self
            .failures
            .iter()
            .filter(|e| !matches!(e, ReplicateError::Skipped { .. }))
        {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ManyError {}

impl Replicator {
    /// Runs `operation` on many tables of `namespace`, up to
    /// [`table_concurrency`](crate::replicate::ReplicateOptions::table_concurrency)
    /// at once. A failed table does not stop the others, unless its error is
    /// fatal ([`ReplicateError::is_fatal`]): then tables not yet started are
    /// skipped. Every table's outcome is returned.
    pub async fn run_many<S: AsRef<str>>(
        &self,
        operation: Operation,
        namespace: &str,
        tables: &[S],
    ) -> ManyOutcome {
        let stop = AtomicBool::new(false);
        let stop = &stop;
        let mut results: Vec<(usize, String, Result<TableReport, ReplicateError>)> =
            futures::stream::iter(tables.iter().enumerate())
                .map(|(i, table)| async move {
                    let table = table.as_ref();
                    let result = if stop.load(Ordering::SeqCst) {
                        Err(ReplicateError::Skipped {
                            table: format!("{namespace}.{table}"),
                        })
                    } else {
                        let r = match operation {
                            Operation::Init => self.init(namespace, table).await,
                            Operation::Sync => self.sync(namespace, table).await,
                            Operation::Drop => self.drop(namespace, table).await,
                        };
                        if let Err(e) = &r {
                            tracing::debug!(operation = %operation, error = %e, "table failed");
                            if e.is_fatal() {
                                stop.store(true, Ordering::SeqCst);
                            }
                        }
                        r
                    };
                    (i, table.to_string(), result)
                })
                .buffer_unordered(self.options.table_concurrency.max(1))
                .collect()
                .await;
        results.sort_by_key(|(i, _, _)| *i);
        ManyOutcome {
            operation,
            results: results.into_iter().map(|(_, t, r)| (t, r)).collect(),
        }
    }
}
