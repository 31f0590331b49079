//! A decoded tabular row held in reused buffers, and the borrowed view of it.

use std::ops::Range;

use super::layout::Column;

/// The unescaped cells of one tabular row: all text in one buffer, one span
/// per cell (`None` for NULL). Reused from row to row.
#[derive(Debug, Default)]
pub(crate) struct RawRow {
    text: String,
    cells: Vec<Option<Range<usize>>>,
}

impl RawRow {
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.cells.clear();
    }

    pub(crate) fn push_null(&mut self) {
        self.cells.push(None);
    }

    /// The buffer to append the next cell's text to; close it with
    /// [`RawRow::end_cell`].
    pub(crate) fn text_mut(&mut self) -> &mut String {
        &mut self.text
    }

    pub(crate) fn begin_cell(&self) -> usize {
        self.text.len()
    }

    pub(crate) fn end_cell(&mut self, start: usize) {
        self.cells.push(Some(start..self.text.len()));
    }

    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    pub(crate) fn get(&self, i: usize) -> Option<&str> {
        let range = self.cells.get(i)?.clone()?;
        self.text.get(range)
    }
}

/// A borrowed view of one tabular row: the unescaped text of each cell, or
/// `None` for NULL. Valid until the reader's next call.
///
/// This is the fastest way through the data (no allocation per row); use
/// [`RecordReader::next_record`](super::RecordReader::next_record) for typed
/// [`Record`](super::Record)s.
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub(crate) columns: &'a [Column],
    pub(crate) row: &'a RawRow,
    pub(crate) line: u64,
}

impl<'a> RowRef<'a> {
    /// The columns, in header order.
    pub fn columns(&self) -> &'a [Column] {
        self.columns
    }

    /// The text of cell `i` (header order), `None` for NULL or out of range.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        self.row.get(i)
    }

    /// The text of the cell labelled `label` (e.g. `value.name`).
    pub fn get_by_label(&self, label: &str) -> Option<&'a str> {
        let i = self.columns.iter().position(|c| c.label() == label)?;
        self.row.get(i)
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.row.len()
    }

    /// `true` for a row without cells.
    pub fn is_empty(&self) -> bool {
        self.row.len() == 0
    }

    /// The cells with their columns.
    pub fn iter(&self) -> impl Iterator<Item = (&'a Column, Option<&'a str>)> + 'a {
        let row = self.row;
        self.columns
            .iter()
            .enumerate()
            .map(move |(i, c)| (c, row.get(i)))
    }

    /// 1-based line number of the row's first line in the object.
    pub fn line(&self) -> u64 {
        self.line
    }
}
