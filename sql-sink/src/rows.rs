//! [`RowBatch`]: rows as text cells in one reusable buffer.
//!
//! Why text cells: both sources are text already (DAP TSV/JSON values, BDS
//! CSV), PostgreSQL's text `COPY` takes them almost verbatim (only `\`, tab,
//! newline and carriage return are escaped), and SQLite parses each cell once
//! into its stored form. A batch keeps all cell text in one `String` and the
//! cell boundaries in one `Vec`, so filling a batch of any size allocates
//! nothing once the buffers have grown, and a load hands the buffers back
//! for reuse.

use crate::error::Error;

const NULL: usize = usize::MAX;

/// A batch of rows with a fixed number of columns; each cell is text or NULL.
///
/// `None` is SQL NULL; `Some("")` is the empty string (they are different).
///
/// ```
/// let mut batch = sql_sink::RowBatch::new(2);
/// batch.push_row([Some("1"), Some("Ada")]).unwrap();
/// batch.push_row([Some("2"), None]).unwrap();
/// assert_eq!(batch.len(), 2);
/// assert_eq!(batch.cell(1, 1), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct RowBatch {
    columns: usize,
    text: String,
    /// (start, end) byte offsets into `text`; start == NULL marks SQL NULL.
    cells: Vec<(usize, usize)>,
}

impl RowBatch {
    /// An empty batch of rows with `columns` cells each.
    pub fn new(columns: usize) -> Self {
        Self {
            columns,
            text: String::new(),
            cells: Vec::new(),
        }
    }

    /// An empty batch with room for `rows` rows of about `bytes_per_row` text.
    pub fn with_capacity(columns: usize, rows: usize, bytes_per_row: usize) -> Self {
        Self {
            columns,
            text: String::with_capacity(rows * bytes_per_row),
            cells: Vec::with_capacity(rows * columns),
        }
    }

    /// Number of cells per row.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.cells.len().checked_div(self.columns).unwrap_or(0)
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Bytes of cell text held (a rough size for deciding when to flush).
    pub fn text_bytes(&self) -> usize {
        self.text.len()
    }

    /// Remove all rows, keeping the buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.cells.clear();
    }

    /// Append one row. Fails, leaving the batch unchanged, unless exactly
    /// [`columns`](Self::columns) cells are given.
    pub fn push_row<'a, I>(&mut self, cells: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = Option<&'a str>>,
    {
        let text_mark = self.text.len();
        let cell_mark = self.cells.len();
        let mut got = 0usize;
        for cell in cells {
            got += 1;
            if got > self.columns {
                continue;
            }
            self.push_cell_unchecked(cell);
        }
        if got != self.columns {
            self.text.truncate(text_mark);
            self.cells.truncate(cell_mark);
            return Err(Error::RowShape {
                expected: self.columns,
                got,
            });
        }
        Ok(())
    }

    /// Append one cell of the row being built; call [`end_row`](Self::end_row)
    /// after the last one. For producers that build cells one at a time (a
    /// CSV or JSON parser) without collecting them first.
    pub fn push_cell(&mut self, cell: Option<&str>) {
        self.push_cell_unchecked(cell);
    }

    /// Finish the row started with [`push_cell`](Self::push_cell). If the row
    /// does not have exactly [`columns`](Self::columns) cells it is removed
    /// and an error returned.
    pub fn end_row(&mut self) -> Result<(), Error> {
        if self.columns == 0 {
            return Ok(());
        }
        let partial = self.cells.len() % self.columns;
        if partial == 0 {
            return Ok(());
        }
        let row_start = self.cells.len() - partial;
        let text_mark = self.cells[row_start..]
            .iter()
            .find(|(s, _)| *s != NULL)
            .map(|(s, _)| *s)
            .unwrap_or(self.text.len());
        self.cells.truncate(row_start);
        self.text.truncate(text_mark);
        Err(Error::RowShape {
            expected: self.columns,
            got: partial,
        })
    }

    fn push_cell_unchecked(&mut self, cell: Option<&str>) {
        match cell {
            None => self.cells.push((NULL, NULL)),
            Some(s) => {
                let start = self.text.len();
                self.text.push_str(s);
                self.cells.push((start, self.text.len()));
            }
        }
    }

    /// The cell at `row`, `column` (`None` for NULL or out of range).
    pub fn cell(&self, row: usize, column: usize) -> Option<&str> {
        if column >= self.columns {
            return None;
        }
        let &(start, end) = self.cells.get(row * self.columns + column)?;
        if start == NULL {
            None
        } else {
            self.text.get(start..end)
        }
    }

    /// Iterate over rows; each row is a slice-like view of its cells.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = Row<'_>> + '_ {
        let columns = self.columns.max(1);
        let n = if self.columns == 0 { 0 } else { self.len() };
        (0..n).map(move |i| Row {
            text: &self.text,
            cells: &self.cells[i * columns..(i + 1) * columns],
        })
    }
}

/// One row of a [`RowBatch`].
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    text: &'a str,
    cells: &'a [(usize, usize)],
}

impl<'a> Row<'a> {
    /// The cell in `column` (`None` for NULL or out of range).
    pub fn get(&self, column: usize) -> Option<&'a str> {
        let &(start, end) = self.cells.get(column)?;
        if start == NULL {
            None
        } else {
            self.text.get(start..end)
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the row has no cells.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The cells in column order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Option<&'a str>> + 'a {
        let text = self.text;
        self.cells
            .iter()
            .map(move |&(s, e)| if s == NULL { None } else { text.get(s..e) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_nulls_and_empty_strings_apart() {
        let mut b = RowBatch::new(3);
        b.push_row([Some("a"), None, Some("")]).unwrap();
        b.push_row([Some("é\t\n"), Some("x"), None]).unwrap();
        assert_eq!(b.len(), 2);
        let rows: Vec<Vec<Option<&str>>> = b.rows().map(|r| r.iter().collect()).collect();
        assert_eq!(
            rows,
            vec![
                vec![Some("a"), None, Some("")],
                vec![Some("é\t\n"), Some("x"), None]
            ]
        );
    }

    #[test]
    fn wrong_row_length_leaves_batch_unchanged() {
        let mut b = RowBatch::new(2);
        b.push_row([Some("1"), Some("2")]).unwrap();
        assert!(b.push_row([Some("3")]).is_err());
        assert!(b.push_row([Some("3"), Some("4"), Some("5")]).is_err());
        assert_eq!(b.len(), 1);
        b.push_cell(Some("7"));
        assert!(b.end_row().is_err());
        assert_eq!(b.len(), 1);
        assert_eq!(b.text_bytes(), 2);
        b.push_cell(Some("7"));
        b.push_cell(None);
        b.end_row().unwrap();
        assert_eq!(b.cell(1, 0), Some("7"));
        assert_eq!(b.cell(1, 1), None);
    }
}
