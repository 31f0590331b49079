//! Streaming record counters for uploaded import files: they see each chunk once, keep a
//! few bytes of state, and so count a 1 GB upload without holding it.

/// Counts JSON records: the elements of one top-level array of objects, or a sequence of
/// top-level objects (JSON Lines / concatenated JSON). Anything else is an error that
/// rejects the job.
#[derive(Debug, Default)]
pub(crate) struct JsonCounter {
    stack: Vec<u8>,
    in_string: bool,
    escape: bool,
    top_values: u64,
    array_mode: bool,
    elements: u64,
    offset: u64,
    error: Option<String>,
}

const MAX_DEPTH: usize = 512;

impl JsonCounter {
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.error.is_some() {
                return;
            }
            self.byte(b);
            self.offset += 1;
        }
    }

    fn fail(&mut self, what: &str) {
        self.error = Some(format!("invalid JSON at byte {}: {what}", self.offset));
    }

    fn byte(&mut self, b: u8) {
        if self.in_string {
            match (self.escape, b) {
                (true, _) => self.escape = false,
                (false, b'\\') => self.escape = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return;
        }
        let at_array_top = self.array_mode && self.stack.len() == 1;
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            // A UTF-8 BOM before the first value is tolerated.
            0xEF | 0xBB | 0xBF if self.offset < 3 && self.top_values == 0 => {}
            b'{' | b'[' => {
                if self.stack.is_empty() {
                    if self.array_mode {
                        return self.fail("unexpected data after the top-level array");
                    }
                    if b == b'[' && self.top_values > 0 {
                        return self.fail("an array after top-level objects");
                    }
                    self.top_values += 1;
                    self.array_mode = b == b'[';
                } else if at_array_top {
                    if b != b'{' {
                        return self.fail("array elements must be objects");
                    }
                    self.elements += 1;
                }
                if self.stack.len() >= MAX_DEPTH {
                    return self.fail("nested too deeply");
                }
                self.stack.push(b);
            }
            b'}' | b']' => {
                let open = if b == b'}' { b'{' } else { b'[' };
                if self.stack.pop() != Some(open) {
                    self.fail("unbalanced brackets");
                }
            }
            _ if self.stack.is_empty() => self.fail("records must be JSON objects"),
            _ if at_array_top && b != b',' => self.fail("array elements must be objects"),
            b'"' => self.in_string = true,
            _ => {}
        }
    }

    /// The record count, or why the file is not acceptable.
    pub fn finish(self) -> Result<u64, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.in_string || !self.stack.is_empty() {
            return Err("invalid JSON: the file ends inside a value (truncated upload?)".into());
        }
        if self.top_values == 0 {
            return Err("the file holds no JSON value".into());
        }
        Ok(if self.array_mode {
            self.elements
        } else {
            self.top_values
        })
    }
}

/// Counts CSV records (quoted newlines do not end a record; blank lines are skipped).
#[derive(Debug, Default)]
pub(crate) struct CsvCounter {
    in_quotes: bool,
    line_has_content: bool,
    records: u64,
}

impl CsvCounter {
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            match b {
                b'"' => {
                    // `""` inside quotes toggles twice: no net change, as it should.
                    self.in_quotes = !self.in_quotes;
                    self.line_has_content = true;
                }
                b'\n' if !self.in_quotes => {
                    if self.line_has_content {
                        self.records += 1;
                    }
                    self.line_has_content = false;
                }
                b'\r' if !self.in_quotes => {}
                _ => self.line_has_content = true,
            }
        }
    }

    /// Data records (the header row excluded when `header_row`), or why the file is bad.
    pub fn finish(self, header_row: bool) -> Result<u64, String> {
        if self.in_quotes {
            return Err("invalid CSV: a quoted field is never closed (truncated upload?)".into());
        }
        let records = self.records + u64::from(self.line_has_content);
        Ok(if header_row {
            records.saturating_sub(1)
        } else {
            records
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str, chunk: usize) -> Result<u64, String> {
        let mut c = JsonCounter::default();
        for piece in text.as_bytes().chunks(chunk) {
            c.feed(piece);
        }
        c.finish()
    }

    #[test]
    fn json_arrays_lines_and_errors() {
        let doc = r#" [ {"a": "x, ] } \" [", "n": [1, 2, {"b": null}]}, {"c": "}"} ,{}] "#;
        for chunk in [1, 3, 1000] {
            assert_eq!(json(doc, chunk), Ok(3));
        }
        assert_eq!(json("\u{feff}[]", 2), Ok(0));
        assert_eq!(json("{\"a\":1}\n{\"a\":2}\n{\"a\":\"\\\\\"}\n", 4), Ok(3));
        assert!(json("[{\"a\": 1}, 2]", 5).unwrap_err().contains("objects"));
        assert!(json("[{\"a\": 1}", 5).unwrap_err().contains("truncated"));
        assert!(json("[{\"a\": 1]}", 5).unwrap_err().contains("unbalanced"));
        assert!(json("[] []", 5).unwrap_err().contains("after"));
        assert!(json("42", 5).is_err());
        assert!(json("   ", 5).is_err());
    }

    #[test]
    fn csv_counts_records_not_lines() {
        let mut c = CsvCounter::default();
        c.feed(b"id,name\r\n1,\"two\nlines\"\r\n2,\"say \"\"hi\"\"\"\r\n\r\n3,last");
        assert_eq!(c.finish(true), Ok(3));
        let mut c = CsvCounter::default();
        c.feed(b"1,\"open\n");
        assert!(c.finish(false).is_err());
    }
}
