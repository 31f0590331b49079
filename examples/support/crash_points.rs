//! Crash points, a testing aid shared by the `dap` and `bds` programs
//! (only in builds with the root package's `crash-points` feature).
//!
//! With `BULKDATA_CRASH_POINT=<point>` set, the program, on reaching that
//! point for the first time, writes `crash point reached: <point>` to
//! stderr and stops there for good: that thread parks, and every other
//! thread parks at its next download or load step, so nothing is committed
//! afterwards. A test then kills the process (SIGKILL) and checks that the
//! database holds either the old content or the new, never a mix, and that
//! a re-run converges (see `tests/crash_consistency.rs`).
//!
//! | point | where |
//! |---|---|
//! | `download` | the first bytes of an object or extract arrived |
//! | `mid-load` | the second batch of rows of a load was written (the transaction is open) |
//! | `before-commit` | every batch is applied; the watermark and `COMMIT` come next |
//! | `after-commit` | a load committed with its watermark |
//! | `evolve` | a load changed the table's structure (created it, added columns), not yet committed |
//!
//! Builds without the feature ignore the variable.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sql_sink::{LoadEvent, LoadObserver};

/// The environment variable naming the point.
pub const VARIABLE: &str = "BULKDATA_CRASH_POINT";

/// A point of a run where the program can be made to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Bytes of a download arrived.
    Download,
    /// The second batch of a load was written.
    MidLoad,
    /// Just before a load's commit.
    BeforeCommit,
    /// Just after a load's commit.
    AfterCommit,
    /// A load changed the table's structure (uncommitted).
    Evolve,
}

impl Point {
    const ALL: [Point; 5] = [
        Point::Download,
        Point::MidLoad,
        Point::BeforeCommit,
        Point::AfterCommit,
        Point::Evolve,
    ];

    fn name(self) -> &'static str {
        match self {
            Point::Download => "download",
            Point::MidLoad => "mid-load",
            Point::BeforeCommit => "before-commit",
            Point::AfterCommit => "after-commit",
            Point::Evolve => "evolve",
        }
    }
}

/// Batches written before `mid-load` is reached: not the first, so rows of
/// the load are already in the open transaction.
const MID_LOAD_BATCH: usize = 2;

/// The armed point of this run.
#[derive(Debug)]
pub struct CrashPoints {
    armed: Point,
    fired: AtomicBool,
}

impl CrashPoints {
    /// The point named by [`VARIABLE`]: `None` when it is unset or the
    /// build lacks the `crash-points` feature; an error naming the known
    /// points when the value is unknown.
    pub fn from_env() -> Result<Option<Arc<CrashPoints>>, String> {
        if !cfg!(feature = "crash-points") {
            return Ok(None);
        }
        let Some(value) = std::env::var_os(VARIABLE) else {
            return Ok(None);
        };
        let value = value.to_string_lossy();
        let armed = Point::ALL
            .into_iter()
            .find(|p| p.name() == value.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = Point::ALL.iter().map(|p| p.name()).collect();
                format!("{VARIABLE}={value:?} is not a crash point; known: {known:?}")
            })?;
        Ok(Some(Arc::new(CrashPoints {
            armed,
            fired: AtomicBool::new(false),
        })))
    }

    /// Called at `point`: stops the thread for good if it is the armed
    /// point (the first time) or if the armed point was already reached.
    pub fn reached(&self, point: Point) {
        if self.fired.load(Ordering::SeqCst) {
            park_forever();
        }
        if point == self.armed && !self.fired.swap(true, Ordering::SeqCst) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "crash point reached: {}", point.name());
            let _ = err.flush();
            drop(err);
            park_forever();
        }
    }

    /// An observer mapping a sink's load events to points.
    pub fn load_observer(self: &Arc<Self>) -> Arc<dyn LoadObserver> {
        let points = self.clone();
        Arc::new(move |event: &LoadEvent<'_>| match event {
            LoadEvent::Started { evolution, .. } if !evolution.is_unchanged() => {
                points.reached(Point::Evolve)
            }
            LoadEvent::BatchWritten { batches, .. } if *batches >= MID_LOAD_BATCH => {
                points.reached(Point::MidLoad)
            }
            LoadEvent::Committing { .. } => points.reached(Point::BeforeCommit),
            LoadEvent::Committed { .. } => points.reached(Point::AfterCommit),
            _ => {
                if points.fired.load(Ordering::SeqCst) {
                    park_forever();
                }
            }
        })
    }
}

/// The process is meant to be killed here.
fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}
