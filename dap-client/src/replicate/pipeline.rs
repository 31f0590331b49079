//! The data path (DESIGN §5): objects are downloaded, decompressed and
//! parsed by concurrent reader tasks that fill reusable [`RowBatch`]es and
//! hand them to the loader through a bounded channel, so loading overlaps
//! downloading and memory stays bounded by
//! `(readers × 2 + channel capacity + pool) × batch size`, whatever the
//! size of the table.
//!
//! An object whose body breaks off is opened again and the rows already
//! taken from it are skipped; rows taken are already in the open
//! transaction, so every row lands exactly once.

use std::sync::{Arc, Mutex};

use sql_sink::{Load, RowBatch, TableDef};
use tokio::io::BufReader;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::error::{ReplicateError, Result};
use super::mapping::{Binding, RowKind};
use crate::client::Client;
use crate::model::{Format, Object, Resource};
use crate::record::{DecodeError, RecordReader};

/// Sizes and concurrency of the data path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) batch_rows: usize,
    pub(crate) batch_bytes: usize,
    pub(crate) readers: usize,
    pub(crate) object_attempts: u32,
}

/// A filled batch on its way to the loader.
enum Batch {
    Upsert(RowBatch),
    Delete(RowBatch),
}

/// Emptied batches handed back by the loader, so buffers are reused
/// instead of reallocated.
#[derive(Default)]
struct Pool(Mutex<Vec<RowBatch>>);

impl Pool {
    const KEEP: usize = 4;

    fn take(&self, columns: usize) -> RowBatch {
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match pool.iter().position(|b| b.columns() == columns) {
            Some(i) => pool.swap_remove(i),
            None => RowBatch::new(columns),
        }
    }

    fn give(&self, mut batch: RowBatch) {
        batch.clear();
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < Self::KEEP {
            pool.push(batch);
        }
    }
}

/// What the reader tasks share.
struct Shared {
    client: Client,
    table: String,
    def: TableDef,
    limits: Limits,
    pool: Pool,
}

/// Aborts the task when dropped (the loader failed or was cancelled).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Rows handed to the load.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Streamed {
    pub(crate) upserts: u64,
    pub(crate) deletes: u64,
}

/// Streams every object into `load` (without committing it).
pub(crate) async fn stream_objects(
    client: &Client,
    table: &str,
    def: &TableDef,
    objects: Vec<(Object, Resource)>,
    load: &mut Load<'_>,
    limits: Limits,
) -> Result<Streamed> {
    let shared = Arc::new(Shared {
        client: client.clone(),
        table: table.to_string(),
        def: def.clone(),
        limits,
        pool: Pool::default(),
    });
    let (tx, mut rx) = mpsc::channel(limits.readers.max(1));
    let producer = AbortOnDrop(tokio::spawn(produce(shared.clone(), objects, tx)));
    let mut streamed = Streamed::default();
    let db = |e| ReplicateError::db(table)(e);
    while let Some(batch) = rx.recv().await {
        match batch {
            Batch::Upsert(mut rows) => {
                streamed.upserts += rows.len() as u64;
                load.upsert(&mut rows).await.map_err(db)?;
                shared.pool.give(rows);
            }
            Batch::Delete(mut keys) => {
                streamed.deletes += keys.len() as u64;
                load.delete(&mut keys).await.map_err(db)?;
                shared.pool.give(keys);
            }
        }
    }
    // Every sender is gone: the producer has finished; its result decides.
    let mut producer = producer;
    match (&mut producer.0).await {
        Ok(result) => result.map(|()| streamed),
        Err(e) => Err(ReplicateError::Internal {
            table: table.to_string(),
            message: e.to_string(),
        }),
    }
}

/// Runs one reader task per object, at most `readers` at a time. The
/// first failure ends the others (the `JoinSet` aborts them on drop).
async fn produce(
    shared: Arc<Shared>,
    objects: Vec<(Object, Resource)>,
    tx: mpsc::Sender<Batch>,
) -> Result<()> {
    let mut pending = objects.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < shared.limits.readers.max(1) {
            let Some((object, resource)) = pending.next() else {
                break;
            };
            running.spawn(read_object(shared.clone(), object, resource, tx.clone()));
        }
        match running.join_next().await {
            None => return Ok(()),
            Some(Ok(result)) => result?,
            Some(Err(e)) => {
                return Err(ReplicateError::Internal {
                    table: shared.table.clone(),
                    message: e.to_string(),
                });
            }
        }
    }
}

/// Why one attempt at reading an object stopped.
enum Stop {
    Api(crate::Error),
    Data(String),
    /// The loader is gone (it failed; its error is the one reported).
    Closed,
}

impl Stop {
    fn is_transient(&self) -> bool {
        match self {
            Stop::Api(crate::Error::Download { .. })
            | Stop::Api(crate::Error::Decode(DecodeError::Io { .. })) => true,
            Stop::Api(crate::Error::Http(e)) => is_transient_core(e),
            _ => false,
        }
    }
}

fn is_transient_core(e: &client_core::Error) -> bool {
    match e {
        client_core::Error::Download { .. } | client_core::Error::Transport { .. } => true,
        client_core::Error::RetriesExhausted { last, .. } => is_transient_core(last),
        _ => false,
    }
}

/// The batches one reader fills.
struct Filling {
    upserts: RowBatch,
    deletes: RowBatch,
}

impl Filling {
    fn full(batch: &RowBatch, limits: &Limits) -> bool {
        batch.len() >= limits.batch_rows || batch.text_bytes() >= limits.batch_bytes
    }
}

async fn read_object(
    shared: Arc<Shared>,
    object: Object,
    resource: Resource,
    tx: mpsc::Sender<Batch>,
) -> Result<()> {
    let columns = shared.def.columns.len();
    let keys = shared.def.primary_key.len();
    let mut filling = Filling {
        upserts: shared.pool.take(columns),
        deletes: shared.pool.take(keys),
    };
    let mut taken = 0u64;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match read_attempt(&shared, &object, &resource, &tx, &mut taken, &mut filling).await {
            Ok(()) => break,
            Err(stop) if stop.is_transient() && attempt < shared.limits.object_attempts => {
                if let Stop::Api(e) = &stop {
                    tracing::warn!(table = %shared.table, object_id = %object.id, attempt, rows_taken = taken, error = %e,
                        "object stream broke off; reading it again and skipping the rows already taken");
                }
            }
            Err(stop) => return Err(shared.stop_error(&object, stop)),
        }
    }
    for batch in [
        Batch::Upsert(filling.upserts),
        Batch::Delete(filling.deletes),
    ] {
        let empty = match &batch {
            Batch::Upsert(b) | Batch::Delete(b) => b.is_empty(),
        };
        if !empty && tx.send(batch).await.is_err() {
            return Err(shared.stop_error(&object, Stop::Closed));
        }
    }
    tracing::debug!(table = %shared.table, object_id = %object.id, rows = taken, "object streamed");
    Ok(())
}

impl Shared {
    fn stop_error(&self, object: &Object, stop: Stop) -> ReplicateError {
        match stop {
            Stop::Api(source) => ReplicateError::Api {
                table: self.table.clone(),
                source,
            },
            Stop::Data(reason) => ReplicateError::UnexpectedData {
                table: self.table.clone(),
                object_id: object.id.clone(),
                reason,
            },
            Stop::Closed => ReplicateError::Internal {
                table: self.table.clone(),
                message: "the loader stopped before the object was read".into(),
            },
        }
    }
}

/// Reads `object` from its start, skipping the first `taken` rows (taken
/// by an earlier, broken attempt), into `filling`; full batches are sent.
async fn read_attempt(
    shared: &Shared,
    object: &Object,
    resource: &Resource,
    tx: &mpsc::Sender<Batch>,
    taken: &mut u64,
    filling: &mut Filling,
) -> std::result::Result<(), Stop> {
    let body = shared
        .client
        .open_object(object, resource)
        .await
        .map_err(Stop::Api)?;
    let mut reader = RecordReader::new(BufReader::with_capacity(256 * 1024, body), Format::Tsv)
        .map_err(|e| Stop::Api(e.into()))?
        .with_source_name(object.id.clone());
    let mut skip = *taken;
    let mut binding: Option<Binding> = None;
    let limits = &shared.limits;
    loop {
        let row = match reader.next_row().await {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(()),
            Err(e) => return Err(Stop::Api(e.into())),
        };
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if binding.is_none() {
            binding = Some(Binding::new(&shared.def, row.columns()).map_err(Stop::Data)?);
        }
        let Some(bound) = &binding else { continue };
        let kind = bound
            .push(|i| row.get(i), &mut filling.upserts, &mut filling.deletes)
            .map_err(|e| Stop::Data(format!("line {}: {e}", row.line())))?;
        *taken += 1;
        let (batch, columns) = match kind {
            RowKind::Upsert => (&mut filling.upserts, shared.def.columns.len()),
            RowKind::Delete => (&mut filling.deletes, shared.def.primary_key.len()),
        };
        if Filling::full(batch, limits) {
            let full = std::mem::replace(batch, shared.pool.take(columns));
            let message = match kind {
                RowKind::Upsert => Batch::Upsert(full),
                RowKind::Delete => Batch::Delete(full),
            };
            tx.send(message).await.map_err(|_| Stop::Closed)?;
        }
    }
}
