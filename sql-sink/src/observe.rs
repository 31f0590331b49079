//! Watching loads as they happen: [`LoadEvent`]s, delivered synchronously
//! to the [`LoadObserver`] installed with [`Sink::set_observer`].
//!
//! Use it for progress bars, metrics, or to stop a program at an exact
//! point of a load in a crash test. Events are delivered on the task that
//! drives the [`Load`], in order, before the call that caused them
//! returns, so an observer should be cheap; it must not call back into the
//! same [`Sink`].
//!
//! For one load the order is:
//!
//! 1. [`LoadEvent::Started`] — the load's transaction is open and any
//!    structure change is applied inside it;
//! 2. [`LoadEvent::BatchWritten`] — once per non-empty upsert or delete
//!    batch;
//! 3. [`LoadEvent::Committing`] — every batch is applied, the watermark
//!    and the `COMMIT` come next;
//! 4. [`LoadEvent::Committed`] — the rows and the watermark are durable.
//!
//! A load that fails or is dropped simply stops sending events: nothing of
//! it is kept.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use sql_sink::{LoadEvent, Sink};
//! # async fn demo(sink: &mut Sink) {
//! let rows = Arc::new(AtomicU64::new(0));
//! let counter = rows.clone();
//! sink.set_observer(Some(Arc::new(move |event: &LoadEvent<'_>| {
//!     if let LoadEvent::BatchWritten { rows, .. } = event {
//!         counter.fetch_add(*rows as u64, Ordering::Relaxed);
//!     }
//! })));
//! # }
//! ```
//!
//! [`Sink`]: crate::Sink
//! [`Sink::set_observer`]: crate::Sink::set_observer
//! [`Load`]: crate::Load

use crate::evolve::EvolutionReport;
use crate::model::TableName;
use crate::sink::LoadSummary;
use crate::watermark::Watermark;

/// Which kind of batch a [`LoadEvent::BatchWritten`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchKind {
    /// Rows given to [`Load::upsert`](crate::Load::upsert).
    Upsert,
    /// Keys given to [`Load::delete`](crate::Load::delete).
    Delete,
}

/// One step of a load, as seen by a [`LoadObserver`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum LoadEvent<'a> {
    /// [`Sink::begin_load`](crate::Sink::begin_load) or
    /// [`Sink::begin_replace`](crate::Sink::begin_replace) opened the
    /// load's transaction and applied the table's structure change in it
    /// (created it, added columns, widened types; see `evolution`, which
    /// [`EvolutionReport::is_unchanged`] when there was none). The change
    /// is not visible to other connections and is rolled back with the
    /// load.
    Started {
        /// The table.
        table: &'a TableName,
        /// Whether the load replaces the table at commit.
        replace: bool,
        /// What the load did to the table's structure.
        evolution: &'a EvolutionReport,
    },
    /// A non-empty batch was accepted. On PostgreSQL it has been applied;
    /// on SQLite it is being applied in the background while the caller
    /// prepares the next one (an error in it is reported by the next call).
    BatchWritten {
        /// The table.
        table: &'a TableName,
        /// Upserts or deletes.
        kind: BatchKind,
        /// Rows (or keys) in this batch.
        rows: usize,
        /// Batches accepted by this load so far, this one included.
        batches: usize,
    },
    /// Every batch has been applied; the watermark is written and the
    /// transaction committed next.
    Committing {
        /// The table.
        table: &'a TableName,
        /// The watermark about to be committed.
        watermark: &'a Watermark,
    },
    /// The rows and the watermark are committed.
    Committed {
        /// The table.
        table: &'a TableName,
        /// The committed watermark.
        watermark: &'a Watermark,
        /// What the load did.
        summary: &'a LoadSummary,
    },
}

impl LoadEvent<'_> {
    /// The table the event is about.
    pub fn table(&self) -> &TableName {
        match self {
            LoadEvent::Started { table, .. }
            | LoadEvent::BatchWritten { table, .. }
            | LoadEvent::Committing { table, .. }
            | LoadEvent::Committed { table, .. } => table,
        }
    }
}

/// Receives the [`LoadEvent`]s of a [`Sink`](crate::Sink)'s loads.
///
/// Implemented for every `Fn(&LoadEvent<'_>) + Send + Sync` closure.
pub trait LoadObserver: Send + Sync {
    /// Called for each event, synchronously, in order.
    fn on_event(&self, event: &LoadEvent<'_>);
}

impl<F> LoadObserver for F
where
    F: Fn(&LoadEvent<'_>) + Send + Sync,
{
    fn on_event(&self, event: &LoadEvent<'_>) {
        self(event)
    }
}
