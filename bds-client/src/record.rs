//! A streaming RFC 4180 record reader that remembers which fields were quoted.
//!
//! BDS files follow PostgreSQL's `COPY .. CSV` convention: an empty unquoted
//! field is NULL, a quoted empty field (`""`) is the empty string. General
//! CSV parsers drop that distinction, so this small parser keeps it. It reads
//! through a `BufRead`, reuses the record's buffers, accepts `\n`, `\r\n` and
//! `\r` line ends, `""` escapes and newlines inside quotes, and bounds the
//! size of one record so a hostile file cannot exhaust memory.

use std::io::{self, BufRead};

/// One record: its text and where each field ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Record {
    bytes: Vec<u8>,
    text: String,
    /// (end offset in `text`, quoted) per field.
    fields: Vec<(usize, bool)>,
    line: u64,
}

impl Record {
    /// The field at `index` and whether it was quoted.
    pub(crate) fn field(&self, index: usize) -> Option<(&str, bool)> {
        let &(end, quoted) = self.fields.get(index)?;
        let start = index.checked_sub(1).map_or(0, |i| self.fields[i].0);
        Some((&self.text[start..end], quoted))
    }

    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    /// Line the record starts on (1-based).
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.field(i).map(|(f, _)| f))
    }

    fn clear(&mut self, line: u64) {
        self.bytes.clear();
        self.text.clear();
        self.fields.clear();
        self.line = line;
    }

    fn is_blank(&self) -> bool {
        self.fields.len() == 1 && self.bytes.is_empty() && !self.fields[0].1
    }
}

/// Why a record could not be read.
#[derive(Debug)]
pub(crate) enum RecordError {
    /// The underlying reader failed (including a decompression cap).
    Io(io::Error),
    /// A record is longer than the cap.
    TooLarge { line: u64, limit: u64 },
    /// The input ended inside a quoted field.
    Unterminated { line: u64 },
    /// A field is not UTF-8.
    Utf8 { line: u64, field: usize },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// Just saw a `"` inside a quoted field: an escape or the closing quote.
    QuoteInQuoted,
}

/// Reads records one at a time from `input`.
pub(crate) struct RecordReader<R> {
    input: R,
    /// Line number of the next byte.
    line: u64,
    /// Drop a `\n` that follows a `\r` line end.
    skip_lf: bool,
    /// The previous byte was `\r` (a following `\n` is the same line end).
    last_cr: bool,
    max_record_bytes: usize,
}

impl<R: BufRead> RecordReader<R> {
    pub(crate) fn new(input: R, max_record_bytes: u64) -> Self {
        let max_record_bytes = usize::try_from(max_record_bytes).unwrap_or(usize::MAX);
        RecordReader {
            input,
            line: 1,
            skip_lf: false,
            last_cr: false,
            max_record_bytes,
        }
    }

    /// Reads the next non-blank record into `record`; `false` at the end.
    pub(crate) fn read(&mut self, record: &mut Record) -> Result<bool, RecordError> {
        loop {
            if !self.read_any(record)? {
                return Ok(false);
            }
            if !record.is_blank() {
                return Ok(true);
            }
        }
    }

    fn read_any(&mut self, record: &mut Record) -> Result<bool, RecordError> {
        record.clear(self.line);
        let mut state = State::FieldStart;
        let mut quoted = false;
        let mut consumed_any = false;
        loop {
            let buf = self.input.fill_buf().map_err(RecordError::Io)?;
            if buf.is_empty() {
                return match (consumed_any, state) {
                    (false, _) => Ok(false),
                    (true, State::Quoted) => Err(RecordError::Unterminated { line: record.line }),
                    (true, _) => finish_record(record, quoted).map(|()| true),
                };
            }
            let mut used = 0;
            let mut done = false;
            while used < buf.len() {
                // Fast path: copy a run of ordinary bytes in one go.
                if !self.skip_lf && matches!(state, State::Quoted | State::Unquoted) {
                    let rest = &buf[used..];
                    let run = rest
                        .iter()
                        .position(|&c| is_special(state, c))
                        .unwrap_or(rest.len());
                    if run > 0 {
                        record.bytes.extend_from_slice(&rest[..run]);
                        used += run;
                        consumed_any = true;
                        self.last_cr = false;
                        continue;
                    }
                }
                let b = buf[used];
                used += 1;
                if std::mem::take(&mut self.skip_lf) && b == b'\n' {
                    self.last_cr = false;
                    continue;
                }
                consumed_any = true;
                if b == b'\r' || (b == b'\n' && !self.last_cr) {
                    self.line += 1;
                }
                self.last_cr = b == b'\r';
                match (state, b) {
                    (State::Quoted, b'"') => state = State::QuoteInQuoted,
                    (State::Quoted, _) => record.bytes.push(b),
                    (State::QuoteInQuoted, b'"') => {
                        record.bytes.push(b'"');
                        state = State::Quoted;
                    }
                    (State::FieldStart, b'"') => {
                        quoted = true;
                        state = State::Quoted;
                    }
                    (_, b',') => {
                        record.fields.push((record.bytes.len(), quoted));
                        quoted = false;
                        state = State::FieldStart;
                    }
                    (_, b'\n' | b'\r') => {
                        self.skip_lf = b == b'\r';
                        done = true;
                        break;
                    }
                    // Text after a closing quote or a stray quote: kept as is.
                    (_, _) => {
                        record.bytes.push(b);
                        state = State::Unquoted;
                    }
                }
            }
            self.input.consume(used);
            if record.bytes.len() > self.max_record_bytes {
                return Err(RecordError::TooLarge {
                    line: record.line,
                    limit: self.max_record_bytes as u64,
                });
            }
            if done {
                return finish_record(record, quoted).map(|()| true);
            }
        }
    }
}

/// Bytes that end a run of plain field content in `state`.
fn is_special(state: State, c: u8) -> bool {
    match state {
        State::Quoted => c == b'"' || c == b'\n' || c == b'\r',
        _ => c == b',' || c == b'\n' || c == b'\r',
    }
}

/// Ends the last field and turns the bytes into text.
fn finish_record(record: &mut Record, quoted: bool) -> Result<(), RecordError> {
    record.fields.push((record.bytes.len(), quoted));
    // Each field must be valid UTF-8 on its own: the joined bytes can be
    // valid while a multi-byte character straddles a field separator
    // (`\xc3,\xa0`), and slicing at that boundary would panic later.
    let mut start = 0;
    for (index, &(end, _)) in record.fields.iter().enumerate() {
        let field = record.bytes.get(start..end).unwrap_or_default();
        if std::str::from_utf8(field).is_err() {
            return Err(RecordError::Utf8 {
                line: record.line,
                field: index + 1,
            });
        }
        start = end;
    }
    // Every field is valid, so their concatenation is too.
    let text = std::str::from_utf8(&record.bytes).map_err(|_| RecordError::Utf8 {
        line: record.line,
        field: record.fields.len(),
    })?;
    record.text.push_str(text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_by_a_separator_is_a_utf8_error() {
        let input: &[u8] = b"\xc3,,,\xa0A,U,";
        let mut reader = RecordReader::new(io::BufReader::new(input), 1 << 20);
        let mut record = Record::default();
        let err = reader.read(&mut record).expect_err("fields are not UTF-8");
        assert!(matches!(err, RecordError::Utf8 { field: 1, .. }), "{err:?}");
    }

    fn parse(input: &str) -> Vec<Vec<(String, bool)>> {
        parse_with(input.as_bytes(), 4)
    }

    /// Parses with a tiny buffer so every state crosses buffer boundaries.
    fn parse_with(input: &[u8], buffer: usize) -> Vec<Vec<(String, bool)>> {
        let mut reader = RecordReader::new(io::BufReader::with_capacity(buffer, input), 1 << 20);
        let mut record = Record::default();
        let mut out = Vec::new();
        while reader.read(&mut record).unwrap() {
            out.push(
                (0..record.len())
                    .map(|i| record.field(i).map(|(f, q)| (f.to_string(), q)).unwrap())
                    .collect(),
            );
        }
        out
    }

    fn f(text: &str, quoted: bool) -> (String, bool) {
        (text.to_string(), quoted)
    }

    #[test]
    fn quoted_empty_differs_from_empty() {
        assert_eq!(
            parse("a,\"\",\n"),
            vec![vec![f("a", false), f("", true), f("", false)]]
        );
    }

    #[test]
    fn escapes_commas_and_newlines_inside_quotes() {
        let rows = parse("\"say \"\"hi\"\", ok\",\"two\r\nlines\"\r\nx,y");
        assert_eq!(
            rows,
            vec![
                vec![f("say \"hi\", ok", true), f("two\r\nlines", true)],
                vec![f("x", false), f("y", false)]
            ]
        );
    }

    #[test]
    fn every_line_end_works_and_blank_lines_are_skipped() {
        assert_eq!(
            parse("a\rb\r\n\nc\n\n"),
            vec![
                vec![f("a", false)],
                vec![f("b", false)],
                vec![f("c", false)]
            ]
        );
    }

    #[test]
    fn line_numbers_count_newlines_inside_quotes() {
        let mut reader =
            RecordReader::new(io::BufReader::new(&b"h\r\n\"a\r\nb\"\nz\n"[..]), 1 << 20);
        let mut record = Record::default();
        let mut lines = Vec::new();
        while reader.read(&mut record).unwrap() {
            lines.push(record.line());
        }
        assert_eq!(lines, [1, 2, 4]);
    }

    #[test]
    fn an_unterminated_quote_is_an_error_not_a_short_row() {
        let mut reader = RecordReader::new(io::BufReader::new(&b"a\n\"open,\n"[..]), 1 << 20);
        let mut record = Record::default();
        assert!(reader.read(&mut record).unwrap());
        assert!(matches!(
            reader.read(&mut record),
            Err(RecordError::Unterminated { line: 2 })
        ));
    }

    #[test]
    fn an_oversized_record_stops_early() {
        let big = vec![b'x'; 10_000];
        let mut reader = RecordReader::new(io::BufReader::with_capacity(64, &big[..]), 100);
        assert!(matches!(
            reader.read(&mut Record::default()),
            Err(RecordError::TooLarge {
                line: 1,
                limit: 100
            })
        ));
    }

    #[test]
    fn invalid_utf8_names_the_field() {
        let mut reader = RecordReader::new(io::BufReader::new(&b"ok,\xff\n"[..]), 1 << 20);
        assert!(matches!(
            reader.read(&mut Record::default()),
            Err(RecordError::Utf8 { line: 1, field: 2 })
        ));
    }

    #[test]
    fn unicode_survives_any_buffer_split() {
        let text = "Zoë,😀,\"ü\nß\"\n";
        for buffer in 1..8 {
            assert_eq!(
                parse_with(text.as_bytes(), buffer),
                vec![vec![f("Zoë", false), f("😀", false), f("ü\nß", true)]],
                "buffer {buffer}"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Writes fields as CSV: quoted when asked or when they need it.
        fn write(rows: &[Vec<(String, bool)>], crlf: bool) -> String {
            let mut out = String::new();
            for row in rows {
                let fields: Vec<String> = row
                    .iter()
                    .map(|(text, quote)| {
                        if *quote || text.contains([',', '"', '\n', '\r']) {
                            format!("\"{}\"", text.replace('"', "\"\""))
                        } else {
                            text.clone()
                        }
                    })
                    .collect();
                out.push_str(&fields.join(","));
                out.push_str(if crlf { "\r\n" } else { "\n" });
            }
            out
        }

        proptest! {
            #[test]
            fn what_is_written_is_read_back(
                rows in prop::collection::vec(
                    prop::collection::vec(("[a-z,\"\n\r é😀]{0,6}", any::<bool>()), 1..5),
                    1..6,
                ),
                crlf in any::<bool>(),
                buffer in 1usize..16,
            ) {
                // A row that is one unquoted empty field is a blank line, which is skipped.
                let rows: Vec<_> = rows
                    .into_iter()
                    .map(|r| r.into_iter().map(|(t, q)| (t.clone(), q || t.contains([',', '"', '\n', '\r']))).collect::<Vec<_>>())
                    .filter(|r| !(r.len() == 1 && r[0].0.is_empty() && !r[0].1))
                    .collect();
                let text = write(&rows, crlf);
                prop_assert_eq!(parse_with(text.as_bytes(), buffer), rows);
            }
        }
    }
}
