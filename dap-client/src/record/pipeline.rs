//! Decoding on its own task: a record stream runs on a spawned tokio task
//! and hands records over in batches through a bounded channel, so
//! decompression and parsing of several objects use several cores while
//! memory stays bounded (at most `max_batches` batches wait per stream).

use futures::stream::{self, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Records per batch handed from a decoding task to the consumer.
pub const DEFAULT_BATCH_SIZE: usize = 1024;
/// Batches that may wait in the channel per decoding task.
pub const DEFAULT_MAX_BATCHES: usize = 4;

/// Aborts the decoding task when the consumer drops the stream.
pub(super) struct AbortOnDrop(pub(super) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `items` on a spawned tokio task and yields its items in order.
///
/// Items travel in batches of `batch_size` through a channel holding at
/// most `max_batches` batches, so a slow consumer slows the producer down
/// rather than letting memory grow. An error ends the stream after the items
/// before it. Dropping the returned stream stops the task.
///
/// Must be called inside a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use futures::{StreamExt, stream};
/// let items = stream::iter((0..10).map(Ok::<_, String>));
/// let out: Vec<_> = dap_client::record::spawn_batched(items, 3, 2).collect().await;
/// assert_eq!(out.len(), 10);
/// # }
/// ```
pub fn spawn_batched<T, E, S>(
    items: S,
    batch_size: usize,
    max_batches: usize,
) -> impl Stream<Item = Result<T, E>> + Send
where
    T: Send + 'static,
    E: Send + 'static,
    S: Stream<Item = Result<T, E>> + Send + 'static,
{
    let batch_size = batch_size.max(1);
    let (tx, rx) = mpsc::channel::<Result<Vec<T>, E>>(max_batches.max(1));
    let task = tokio::spawn(async move {
        let mut items = std::pin::pin!(items);
        let mut batch = Vec::with_capacity(batch_size);
        while let Some(item) = items.next().await {
            match item {
                Ok(item) => {
                    batch.push(item);
                    if batch.len() == batch_size {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                        if tx.send(Ok(full)).await.is_err() {
                            return; // the consumer is gone
                        }
                    }
                }
                Err(e) => {
                    if !batch.is_empty() && tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                        return;
                    }
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(Ok(batch)).await;
        }
    });
    let guard = AbortOnDrop(task);
    stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let next = rx.recv().await?;
        Some((next, (rx, guard)))
    })
    .flat_map(|batch| match batch {
        Ok(items) => stream::iter(items.into_iter().map(Ok)).left_stream(),
        Err(e) => stream::iter(std::iter::once(Err(e))).right_stream(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_order_and_ends_after_an_error() {
        let items = stream::iter((0..10).map(|i| if i == 7 { Err("boom") } else { Ok(i) }));
        let out: Vec<_> = spawn_batched(items, 3, 1).collect().await;
        assert_eq!(
            out,
            vec![Ok(0), Ok(1), Ok(2), Ok(3), Ok(4), Ok(5), Ok(6), Err("boom")]
        );
    }

    #[tokio::test]
    async fn the_producer_is_held_back_and_stops_with_the_consumer() {
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
        let endless = stream::iter(0u64..).map(move |i| {
            let _ = seen_tx.send(i);
            Ok::<_, ()>(i)
        });
        let mut out = Box::pin(spawn_batched(endless, 2, 1));
        assert_eq!(out.next().await, Some(Ok(0)));
        drop(out);
        // The producer is bounded by the channel and then aborted: it
        // cannot have produced more than a few batches.
        tokio::task::yield_now().await;
        let mut produced = 0;
        while seen_rx.try_recv().is_ok() {
            produced += 1;
        }
        assert!(produced <= 8, "{produced}");
    }
}
