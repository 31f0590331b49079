//! The CSV inside an extract, read as rows mapped by header name.
//!
//! Columns are found by name (case-insensitively), never by position: minor
//! BDS versions append columns and major versions drop or reorder them. As in
//! PostgreSQL's `COPY .. CSV`, an empty unquoted field is `None` (SQL `NULL`)
//! and a quoted empty field `""` is the empty string; quoted fields may
//! contain commas, `""` escapes and newlines; a UTF-8 BOM is stripped.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::Stream;

use crate::archive::{ArchiveLimits, ExtractArchive, GuardedReader, read_error};
use crate::error::{BdsError, Result};
use crate::record::{Record, RecordError, RecordReader};

/// Read buffer of the CSV parser.
const PARSER_BUFFER: usize = 256 << 10;

/// The header row of an extract's CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    entry: String,
    names: Vec<String>,
    by_lower_name: HashMap<String, usize>,
}

impl Header {
    /// A header with these column names, for the CSV entry `entry`.
    pub fn new(
        entry: impl Into<String>,
        names: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let names: Vec<String> = names
            .into_iter()
            .map(|n| n.into().trim().to_string())
            .collect();
        let mut by_lower_name = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            // The first of two equally named columns wins, as a reader would expect.
            by_lower_name.entry(name.to_lowercase()).or_insert(i);
        }
        Header {
            entry: entry.into(),
            names,
            by_lower_name,
        }
    }

    /// The column names, in file order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Position of a column, matched case-insensitively.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_lower_name.get(&name.trim().to_lowercase()).copied()
    }

    /// Position of a column that must exist.
    pub fn require(&self, name: &str) -> Result<usize> {
        self.index_of(name).ok_or_else(|| BdsError::MissingColumn {
            entry: self.entry.clone(),
            column: name.to_string(),
            header: self.names.join(","),
        })
    }

    /// Maps `wanted` columns to positions; absent ones read as `None`.
    pub fn map_columns<S: AsRef<str>>(&self, wanted: &[S]) -> ColumnMap {
        ColumnMap {
            positions: wanted.iter().map(|w| self.index_of(w.as_ref())).collect(),
        }
    }
}

/// Positions of a fixed list of columns in one CSV; see [`Header::map_columns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    positions: Vec<Option<usize>>,
}

impl ColumnMap {
    /// Position of each wanted column, `None` where the CSV lacks it.
    pub fn positions(&self) -> &[Option<usize>] {
        &self.positions
    }
}

/// One data row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    record: Record,
}

impl Row {
    /// The raw field at `index` (`Some("")` for an empty field, quoted or not).
    pub fn get(&self, index: usize) -> Option<&str> {
        self.record.field(index).map(|(text, _)| text)
    }

    /// The field at `index` as SQL sees it: `None` (NULL) when it is absent or
    /// empty and unquoted, `Some("")` for a quoted empty field.
    pub fn value(&self, index: usize) -> Option<&str> {
        self.record
            .field(index)
            .and_then(|(text, quoted)| (quoted || !text.is_empty()).then_some(text))
    }

    /// The wanted columns of `map`, in its order.
    pub fn project<'r>(&'r self, map: &'r ColumnMap) -> impl Iterator<Item = Option<&'r str>> + 'r {
        map.positions.iter().map(|p| p.and_then(|i| self.value(i)))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.record.len()
    }

    /// Whether the row has no fields.
    pub fn is_empty(&self) -> bool {
        self.record.len() == 0
    }

    /// Line where the row starts in the CSV (1-based).
    pub fn line(&self) -> u64 {
        self.record.line()
    }
}

type Source<'a> = BufReader<GuardedReader<Box<dyn Read + Send + 'a>>>;

/// Rows of a CSV (an [`ExtractArchive`]'s entry, or any reader); a blocking
/// iterator.
pub struct CsvRows<'a> {
    reader: RecordReader<Source<'a>>,
    header: Arc<Header>,
    path: PathBuf,
}

impl std::fmt::Debug for CsvRows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRows")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<'a> CsvRows<'a> {
    /// Reads a plain CSV stream (e.g. an already unpacked extract) with the
    /// same rules and limits as an archive entry. `name` names it in errors.
    pub fn from_reader(
        reader: impl Read + Send + 'a,
        name: &str,
        limits: ArchiveLimits,
    ) -> Result<Self> {
        let path = PathBuf::from(name);
        let source = GuardedReader::new(Box::new(reader) as Box<dyn Read + Send + 'a>, limits)
            .map_err(|e| read_error(&path, name, e))?;
        Self::new(source, name.to_string(), path, limits)
    }

    pub(crate) fn new(
        source: GuardedReader<Box<dyn Read + Send + 'a>>,
        entry: String,
        path: PathBuf,
        limits: ArchiveLimits,
    ) -> Result<Self> {
        let mut reader = RecordReader::new(
            BufReader::with_capacity(PARSER_BUFFER, source),
            limits.max_record_bytes,
        );
        let mut names = Record::default();
        let found = reader
            .read(&mut names)
            .map_err(|e| record_error(&path, &entry, e))?;
        if !found || names.fields().all(|n| n.trim().is_empty()) {
            return Err(BdsError::Csv {
                entry,
                line: 1,
                message: "the CSV has no header row".to_string(),
            });
        }
        let header = Arc::new(Header::new(entry, names.fields()));
        Ok(CsvRows {
            reader,
            header,
            path,
        })
    }

    /// The header row.
    pub fn header(&self) -> &Arc<Header> {
        &self.header
    }

    /// Reads the next row into `row`, reusing its buffers. `false` at the end.
    pub fn read_row(&mut self, row: &mut Row) -> Result<bool> {
        self.reader
            .read(&mut row.record)
            .map_err(|e| record_error(&self.path, &self.header.entry, e))
    }
}

impl Iterator for CsvRows<'_> {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut row = Row::default();
        match self.read_row(&mut row) {
            Ok(true) => Some(Ok(row)),
            Ok(false) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

fn record_error(path: &Path, entry: &str, e: RecordError) -> BdsError {
    let entry = entry.to_string();
    match e {
        RecordError::Io(io) => read_error(path, &entry, io),
        RecordError::TooLarge { line, limit } => BdsError::RecordTooLarge { entry, line, limit },
        RecordError::Unterminated { line } => BdsError::Csv {
            entry,
            line,
            message: "the file ends inside a quoted field (truncated or corrupt)".to_string(),
        },
        RecordError::Utf8 { line, field } => BdsError::Csv {
            entry,
            line,
            message: format!("field {field} is not valid UTF-8"),
        },
    }
}

/// Rows read off a blocking thread, a batch at a time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RowBatch {
    /// The CSV's header.
    pub header: Arc<Header>,
    /// The rows, in file order.
    pub rows: Vec<Row>,
}

/// Reads the extract ZIP at `path` on a blocking thread and yields its rows in
/// batches of up to `batch_rows`. At most two batches wait in memory, so
/// memory stays flat whatever the extract's size. The first item is an empty
/// batch carrying the header, so consumers can check columns before data.
/// Dropping the stream stops the reader.
pub fn read_batches(
    path: impl Into<PathBuf>,
    limits: ArchiveLimits,
    batch_rows: usize,
) -> impl Stream<Item = Result<RowBatch>> + Send + 'static {
    let path = path.into();
    let batch_rows = batch_rows.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RowBatch>>(2);
    let worker = tokio::task::spawn_blocking(move || {
        if let Err(e) = produce_batches(&path, limits, batch_rows, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures::stream::unfold((rx, Some(worker)), |(mut rx, worker)| async move {
        if let Some(item) = rx.recv().await {
            return Some((item, (rx, worker)));
        }
        // The channel closed: report a panicked reader instead of a short read.
        match worker?.await {
            Err(e) if e.is_panic() => Some((
                Err(BdsError::Task(format!("the CSV reader panicked: {e}"))),
                (rx, None),
            )),
            _ => None,
        }
    })
}

fn produce_batches(
    path: &std::path::Path,
    limits: ArchiveLimits,
    batch_rows: usize,
    tx: &tokio::sync::mpsc::Sender<Result<RowBatch>>,
) -> Result<()> {
    let mut archive = ExtractArchive::open(path, limits)?;
    let mut rows = archive.rows()?;
    let header = Arc::clone(rows.header());
    if tx
        .blocking_send(Ok(RowBatch {
            header: Arc::clone(&header),
            rows: Vec::new(),
        }))
        .is_err()
    {
        return Ok(());
    }
    loop {
        let mut batch = Vec::with_capacity(batch_rows);
        let mut row = Row::default();
        while batch.len() < batch_rows && rows.read_row(&mut row)? {
            batch.push(std::mem::take(&mut row));
        }
        let done = batch.len() < batch_rows;
        if !batch.is_empty()
            && tx
                .blocking_send(Ok(RowBatch {
                    header: Arc::clone(&header),
                    rows: batch,
                }))
                .is_err()
        {
            return Ok(()); // the consumer went away
        }
        if done {
            return Ok(());
        }
    }
}
