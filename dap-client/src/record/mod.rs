//! The record stream: typed records decoded from JSON Lines, TSV or CSV
//! output (condensed or expanded), straight from a download, without
//! writing to disk.
//!
//! ```
//! # async fn demo() -> Result<(), dap_client::record::DecodeError> {
//! use dap_client::{record::RecordReader, Format};
//! let tsv: &[u8] = b"meta.ts\tmeta.action\tkey.id\tvalue.name\n\
//!                    2024-05-01T10:11:12Z\tU\t1\tAda\\tLovelace\n\
//!                    2024-05-01T10:12:00Z\tD\t3\t\\N\n";
//! let mut reader = RecordReader::new(tsv, Format::Tsv)?;
//! let first = reader.next_record().await?.unwrap();
//! assert_eq!(first.value.unwrap().get("name").unwrap(), "Ada\tLovelace");
//! assert!(reader.next_record().await?.unwrap().is_delete());
//! assert!(reader.next_record().await?.is_none());
//! # Ok(()) }
//! ```

mod csv;
mod jsonl;
mod layout;
mod line;
mod parallel;
mod pipeline;
mod row;
mod tsv;
mod types;

use std::sync::Arc;

use futures::Stream;
use tokio::io::AsyncBufRead;

pub use layout::Column;
pub use pipeline::{DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCHES, spawn_batched};
pub use row::RowRef;
pub use types::{Fields, Meta, Record};

use crate::model::Format;
use crate::schema::TableSchema;
use layout::Layout;
use line::{LineError, LineReader};
use row::RawRow;

/// The default cap on one line (or one CSV record): 64 MiB.
pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024 * 1024;

/// Why an object could not be decoded into records.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Reading the object failed (network, decompression).
    #[error("reading {source_name} failed: {source}")]
    Io {
        /// The object being read.
        source_name: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is longer than the configured cap.
    #[error(
        "line {line} of {source_name} is longer than {limit} bytes; the object is corrupt or the cap is too low"
    )]
    LineTooLong {
        /// The object being read.
        source_name: String,
        /// 1-based line number.
        line: u64,
        /// The cap in bytes.
        limit: usize,
    },
    /// A line is not valid UTF-8.
    #[error("line {line} of {source_name} is not valid UTF-8")]
    InvalidUtf8 {
        /// The object being read.
        source_name: String,
        /// 1-based line number.
        line: u64,
    },
    /// A tabular object has no header row.
    #[error("{source_name} has no header row")]
    MissingHeader {
        /// The object being read.
        source_name: String,
    },
    /// A row has a different number of cells than the header.
    #[error(
        "line {line} of {source_name} has {found} cells, the header has {expected}; the object may be truncated"
    )]
    CellCount {
        /// The object being read.
        source_name: String,
        /// 1-based line number.
        line: u64,
        /// Cells in the header.
        expected: usize,
        /// Cells in the row.
        found: usize,
    },
    /// A line is malformed (bad JSON, bad CSV quoting).
    #[error("line {line} of {source_name} is malformed: {message}")]
    Malformed {
        /// The object being read.
        source_name: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// A cell does not match its schema type.
    #[error("line {line} of {source_name}, column {column}: {message}")]
    InvalidValue {
        /// The object being read.
        source_name: String,
        /// 1-based line number.
        line: u64,
        /// The column label.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The format has no record decoder (Parquet) or is unknown.
    #[error("the {format} format cannot be decoded into records; use tsv, csv or jsonl")]
    UnsupportedFormat {
        /// The format.
        format: String,
    },
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tsv,
    Csv,
    Jsonl,
}

/// Decodes records from the (decompressed) bytes of one output object.
///
/// Buffers are reused from row to row; memory stays bounded by the longest
/// line (capped, see [`RecordReader::max_line_len`]).
#[derive(Debug)]
pub struct RecordReader<R> {
    lines: LineReader<R>,
    kind: Kind,
    schema: Option<Arc<TableSchema>>,
    source_name: String,
    max_line_len: usize,
    layout: Option<Layout>,
    buf: Vec<u8>,
    row: RawRow,
    names: jsonl::NameTables,
    line_no: u64,
    row_line: u64,
}

impl<R: AsyncBufRead + Unpin> RecordReader<R> {
    /// A reader of `format` records from `reader`.
    ///
    /// Without a schema ([`RecordReader::with_schema`]), TSV and CSV cells
    /// are decoded as strings; JSON Lines values are typed by JSON itself.
    pub fn new(reader: R, format: Format) -> Result<Self, DecodeError> {
        let kind = match format {
            Format::Tsv => Kind::Tsv,
            Format::Csv => Kind::Csv,
            Format::Jsonl => Kind::Jsonl,
            other => {
                return Err(DecodeError::UnsupportedFormat {
                    format: other.to_string(),
                });
            }
        };
        Ok(Self {
            lines: LineReader::new(reader, DEFAULT_MAX_LINE_LEN),
            kind,
            schema: None,
            source_name: "input".to_string(),
            max_line_len: DEFAULT_MAX_LINE_LEN,
            layout: None,
            buf: Vec::with_capacity(4096),
            row: RawRow::default(),
            names: jsonl::NameTables::default(),
            line_no: 0,
            row_line: 0,
        })
    }

    /// Types tabular cells with the table's schema: integers, numbers and
    /// booleans become JSON numbers and booleans, nested and free-form
    /// fields are parsed from their JSON text.
    pub fn with_schema(mut self, schema: Arc<TableSchema>) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Names the input in error messages (e.g. the object id).
    pub fn with_source_name(mut self, name: impl Into<String>) -> Self {
        self.source_name = name.into();
        self
    }

    /// Caps the length of one line (default [`DEFAULT_MAX_LINE_LEN`]).
    pub fn max_line_len(mut self, bytes: usize) -> Self {
        self.max_line_len = bytes;
        self.lines.set_max_len(bytes);
        self
    }

    /// The columns of a tabular object, once its header has been read.
    pub fn columns(&self) -> Option<&[Column]> {
        self.layout.as_ref().map(|l| l.columns.as_slice())
    }

    /// The next typed record, or `None` at the end of the object.
    pub async fn next_record(&mut self) -> Result<Option<Record>, DecodeError> {
        if !self.is_jsonl() && !self.ensure_layout().await? {
            return Err(self.missing_header());
        }
        if !self.read_raw_row().await? {
            return Ok(None);
        }
        let decoder = RowDecoder {
            kind: &self.kind,
            layout: self.layout.as_ref(),
            source_name: &self.source_name,
        };
        decoder
            .record(&self.buf, self.row_line, &mut self.row, &mut self.names)
            .map(Some)
    }

    /// The next row of a TSV or CSV object as unescaped text cells, without
    /// typing or allocating; `None` at the end of the object.
    pub async fn next_row(&mut self) -> Result<Option<RowRef<'_>>, DecodeError> {
        if self.is_jsonl() {
            return Err(DecodeError::UnsupportedFormat {
                format: "jsonl rows (use next_record)".into(),
            });
        }
        if !self.ensure_layout().await? {
            return Err(self.missing_header());
        }
        if !self.read_raw_row().await? {
            return Ok(None);
        }
        let decoder = RowDecoder {
            kind: &self.kind,
            layout: self.layout.as_ref(),
            source_name: &self.source_name,
        };
        decoder.split(&self.buf, self.row_line, &mut self.row)?;
        let layout = self.layout.as_ref().ok_or_else(|| self.missing_header())?;
        Ok(Some(RowRef {
            columns: &layout.columns,
            row: &self.row,
            line: self.row_line,
        }))
    }

    /// Turns the reader into a `Stream` of records, decoded on the
    /// caller's task.
    pub fn into_stream(self) -> impl Stream<Item = Result<Record, DecodeError>> {
        // Boxed: the state moves on every item, and a reader embeds its
        // decoder's buffers and state.
        futures::stream::try_unfold(Box::new(self), |mut reader| async move {
            Ok(reader.next_record().await?.map(|r| (r, reader)))
        })
    }

    /// Turns the reader into a `Stream` of records read ahead on a spawned
    /// task, so reading (and decompressing) the object overlaps typing its
    /// rows: one task reads the object and cuts it into chunks of rows;
    /// with `workers` = 0 the records are typed on the consumer's task,
    /// otherwise up to `workers` spawned tasks type chunks at the same
    /// time. Records come out in the object's order, as from
    /// [`RecordReader::next_record`], and an error ends the stream after
    /// the records before it. Memory stays bounded: at most about
    /// `2 * workers + 2` chunks of up to 512 rows are held at once.
    /// Dropping the stream stops the tasks.
    ///
    /// This pays off when cores are idle. Typing on other tasks means each
    /// record is freed on another thread than the one that allocated it,
    /// which costs with some allocators (glibc's among them); measure with
    /// your consumer (see `tests/throughput.rs`).
    ///
    /// Must be called inside a tokio runtime (with one worker thread per
    /// core to gain anything).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), dap_client::record::DecodeError> {
    /// use futures::TryStreamExt;
    /// use dap_client::{record::RecordReader, Format};
    /// let tsv: &[u8] = b"key.id\tvalue.name\n1\tAda\n2\tGrace\n";
    /// let records: Vec<_> = RecordReader::new(tsv, Format::Tsv)?
    ///     .into_parallel_stream(2)
    ///     .try_collect()
    ///     .await?;
    /// assert_eq!(records[1].value.as_ref().unwrap().get("name").unwrap(), "Grace");
    /// # Ok(()) }
    /// ```
    pub fn into_parallel_stream(
        self,
        workers: usize,
    ) -> impl Stream<Item = Result<Record, DecodeError>> + Send + 'static
    where
        R: Send + 'static,
    {
        parallel::records(self, workers)
    }

    fn is_jsonl(&self) -> bool {
        matches!(self.kind, Kind::Jsonl)
    }

    fn missing_header(&self) -> DecodeError {
        DecodeError::MissingHeader {
            source_name: self.source_name.clone(),
        }
    }

    /// Reads the next non-empty line into `self.buf`; `false` at the end.
    async fn next_line(&mut self) -> Result<bool, DecodeError> {
        loop {
            self.buf.clear();
            if !self.read_more().await? {
                return Ok(false);
            }
            if self.buf.last() == Some(&b'\r') && !matches!(self.kind, Kind::Csv) {
                self.buf.pop();
            }
            if !self.buf.is_empty() {
                return Ok(true);
            }
        }
    }

    /// Appends one more line to `self.buf`.
    async fn read_more(&mut self) -> Result<bool, DecodeError> {
        self.line_no += 1;
        match self.lines.read_line(&mut self.buf).await {
            Ok(more) => Ok(more),
            Err(LineError::Io(source)) => Err(DecodeError::Io {
                source_name: self.source_name.clone(),
                source,
            }),
            Err(LineError::TooLong) => Err(DecodeError::LineTooLong {
                source_name: self.source_name.clone(),
                line: self.line_no,
                limit: self.max_line_len,
            }),
        }
    }

    /// Reads the header of a tabular object, once. `false` when the object
    /// has no header.
    async fn ensure_layout(&mut self) -> Result<bool, DecodeError> {
        if self.layout.is_some() {
            return Ok(true);
        }
        if !self.read_raw_row().await? {
            return Ok(false);
        }
        let decoder = RowDecoder {
            kind: &self.kind,
            layout: None,
            source_name: &self.source_name,
        };
        decoder.split(&self.buf, self.row_line, &mut self.row)?;
        let labels: Vec<String> = (0..self.row.len())
            .map(|i| self.row.get(i).unwrap_or_default().to_string())
            .collect();
        self.layout = Some(Layout::new(labels, self.schema.as_deref()));
        Ok(true)
    }

    /// Reads the bytes of one logical row (a CSV record may span lines)
    /// into `self.buf`, noting its first line in `self.row_line`. `false` at
    /// the end of input.
    async fn read_raw_row(&mut self) -> Result<bool, DecodeError> {
        if !self.next_line().await? {
            return Ok(false);
        }
        self.row_line = self.line_no;
        if let Kind::Csv = self.kind {
            while csv::quotes_open(&self.buf) {
                if self.buf.len() > self.max_line_len {
                    return Err(DecodeError::LineTooLong {
                        source_name: self.source_name.clone(),
                        line: self.row_line,
                        limit: self.max_line_len,
                    });
                }
                self.buf.push(b'\n');
                if !self.read_more().await? {
                    return Err(DecodeError::Malformed {
                        source_name: self.source_name.clone(),
                        line: self.row_line,
                        message: "the object ends inside a quoted cell".into(),
                    });
                }
            }
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        Ok(true)
    }
}

/// Turns the bytes of one logical row into cells or a record. Borrowed
/// from a reader, or shared by the tasks of a parallel stream.
struct RowDecoder<'a> {
    kind: &'a Kind,
    layout: Option<&'a Layout>,
    source_name: &'a str,
}

impl RowDecoder<'_> {
    /// Splits a tabular row into `row`, checking the cell count against
    /// the header when there is one.
    fn split(&self, raw: &[u8], line: u64, row: &mut RawRow) -> Result<(), DecodeError> {
        let text = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 {
            source_name: self.source_name.to_string(),
            line,
        })?;
        match self.kind {
            Kind::Tsv => tsv::decode_line(text, row),
            Kind::Csv => {
                csv::decode_record(text, row).map_err(|message| DecodeError::Malformed {
                    source_name: self.source_name.to_string(),
                    line,
                    message,
                })?;
            }
            Kind::Jsonl => row.clear(),
        }
        if let Some(layout) = self.layout
            && row.len() != layout.columns.len()
        {
            return Err(DecodeError::CellCount {
                source_name: self.source_name.to_string(),
                line,
                expected: layout.columns.len(),
                found: row.len(),
            });
        }
        Ok(())
    }

    /// The typed record of one raw row; `row` and `names` are scratch
    /// space reused from row to row.
    fn record(
        &self,
        raw: &[u8],
        line: u64,
        row: &mut RawRow,
        names: &mut jsonl::NameTables,
    ) -> Result<Record, DecodeError> {
        if let Kind::Jsonl = self.kind {
            return jsonl::decode_line(raw, names).map_err(|e| DecodeError::Malformed {
                source_name: self.source_name.to_string(),
                line,
                message: e.to_string(),
            });
        }
        let layout = self.layout.ok_or_else(|| DecodeError::MissingHeader {
            source_name: self.source_name.to_string(),
        })?;
        self.split(raw, line, row)?;
        layout.record(row).map_err(|e| DecodeError::InvalidValue {
            source_name: self.source_name.to_string(),
            line,
            column: e.column,
            message: e.message,
        })
    }
}

#[cfg(test)]
mod tests;
