//! Decoding one object on several tasks: one task reads the object (and so
//! decompresses it) and cuts it into chunks of raw rows; the consumer's task
//! (`workers` = 0) or up to `workers` spawned tasks turn chunks into typed
//! records; the records come out in the object's order. Memory stays bounded: a few chunks wait in a
//! channel, and at most `workers` decoded chunks wait for the consumer.

use std::sync::Arc;

use futures::stream::{self, Stream, StreamExt};
use tokio::io::AsyncBufRead;
use tokio::sync::mpsc;

use super::pipeline::AbortOnDrop;
use super::{DecodeError, Kind, Layout, RawRow, Record, RecordReader, RowDecoder};

/// Rows per chunk handed to a typing task.
const CHUNK_ROWS: usize = 512;
/// A chunk is sent once it holds this many bytes, even with fewer rows.
/// Kept below glibc's mmap threshold, so chunk buffers come from the heap.
const CHUNK_BYTES: usize = 64 * 1024;

/// How to decode the rows of one object; shared by its typing tasks.
struct Shared {
    kind: Kind,
    layout: Option<Layout>,
    source_name: String,
}

/// Raw logical rows, back to back, with where each ends and its line.
struct Chunk {
    shared: Arc<Shared>,
    text: Vec<u8>,
    rows: Vec<(usize, u64)>,
}

impl Chunk {
    fn new(shared: &Arc<Shared>) -> Self {
        Self {
            shared: shared.clone(),
            text: Vec::with_capacity(CHUNK_BYTES + 4096),
            rows: Vec::with_capacity(CHUNK_ROWS),
        }
    }

    fn is_full(&self) -> bool {
        self.rows.len() >= CHUNK_ROWS || self.text.len() >= CHUNK_BYTES
    }

    /// The records of the chunk's rows, up to the first row that fails.
    fn decode(self) -> (Vec<Record>, Option<DecodeError>) {
        let decoder = RowDecoder {
            kind: &self.shared.kind,
            layout: self.shared.layout.as_ref(),
            source_name: &self.shared.source_name,
        };
        let mut row = RawRow::default();
        let mut names = super::jsonl::NameTables::default();
        let mut out = Vec::with_capacity(self.rows.len());
        let mut from = 0;
        for &(to, line) in &self.rows {
            let raw = self.text.get(from..to).unwrap_or_default();
            from = to;
            match decoder.record(raw, line, &mut row, &mut names) {
                Ok(record) => out.push(record),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }
}

/// Reads the header (tabular formats), then sends chunks of raw rows until
/// the end of the object or the first error, which is sent last.
async fn read_chunks<R: AsyncBufRead + Unpin>(
    mut reader: RecordReader<R>,
    tx: mpsc::Sender<Result<Chunk, DecodeError>>,
) {
    let started = if reader.is_jsonl() {
        Ok(())
    } else {
        match reader.ensure_layout().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(reader.missing_header()),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = started {
        let _ = tx.send(Err(e)).await;
        return;
    }
    let shared = Arc::new(Shared {
        kind: reader.kind,
        layout: reader.layout.take(),
        source_name: reader.source_name.clone(),
    });
    let mut chunk = Chunk::new(&shared);
    loop {
        match reader.read_raw_row().await {
            Ok(true) => {
                chunk.text.extend_from_slice(&reader.buf);
                chunk.rows.push((chunk.text.len(), reader.row_line));
                if chunk.is_full() {
                    let full = std::mem::replace(&mut chunk, Chunk::new(&shared));
                    if tx.send(Ok(full)).await.is_err() {
                        return; // the consumer is gone
                    }
                }
            }
            Ok(false) => {
                if !chunk.rows.is_empty() {
                    let _ = tx.send(Ok(chunk)).await;
                }
                return;
            }
            Err(e) => {
                if !chunk.rows.is_empty() && tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Types one chunk on its own task.
async fn decode_on_task(chunk: Chunk) -> (Vec<Record>, Option<DecodeError>) {
    let shared = chunk.shared.clone();
    match tokio::spawn(async move { chunk.decode() }).await {
        Ok(out) => out,
        // A panic is a bug in the decoder: let it surface as it would have
        // without the task.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => (
            Vec::new(),
            Some(DecodeError::Io {
                source_name: shared.source_name.clone(),
                source: std::io::Error::other("the decoding task was cancelled"),
            }),
        ),
    }
}

pub(super) fn records<R>(
    reader: RecordReader<R>,
    workers: usize,
) -> impl Stream<Item = Result<Record, DecodeError>> + Send + 'static
where
    R: AsyncBufRead + Unpin + Send + 'static,
{
    let inline = workers == 0;
    let workers = workers.max(1);
    let (tx, rx) = mpsc::channel(workers + 1);
    let producer = AbortOnDrop(tokio::spawn(read_chunks(reader, tx)));
    stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
    .map(move |item| async move {
        match item {
            Ok(chunk) if inline => chunk.decode(),
            Ok(chunk) => decode_on_task(chunk).await,
            Err(e) => (Vec::new(), Some(e)),
        }
    })
    .buffered(workers)
    .flat_map(|(records, error)| stream::iter(records.into_iter().map(Ok).chain(error.map(Err))))
    // Nothing follows an error; the reading task stops with the stream.
    .scan((false, producer), |(failed, _producer), item| {
        let next = (!*failed).then(|| {
            *failed = item.is_err();
            item
        });
        std::future::ready(next)
    })
}
