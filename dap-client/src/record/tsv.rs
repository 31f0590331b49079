//! TSV cells: PostgreSQL `COPY` text format (specs/dap.md §7).
//!
//! `\N` alone is NULL; inside a cell `\0 \b \f \n \r \t \v \\` stand for
//! the control character or backslash, and a backslash before any other
//! character stands for that character.

use super::row::RawRow;

/// Splits one line (without its line ending) into unescaped cells.
pub(crate) fn decode_line(line: &str, row: &mut RawRow) {
    row.clear();
    let bytes = line.as_bytes();
    let mut from = 0;
    let ends = memchr::memchr_iter(b'\t', bytes).chain(std::iter::once(bytes.len()));
    for to in ends {
        // Tabs are ASCII, so `from..to` always lies on character boundaries.
        let cell = line.get(from..to).unwrap_or_default();
        from = to + 1;
        if cell == "\\N" {
            row.push_null();
            continue;
        }
        let start = row.begin_cell();
        unescape_into(cell, row.text_mut());
        row.end_cell(start);
    }
}

fn unescape_into(cell: &str, out: &mut String) {
    let mut rest = cell;
    while let Some(i) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..i]);
        let mut after = rest[i + 1..].chars();
        match after.next() {
            // A lone trailing backslash is kept as it is.
            None => out.push('\\'),
            Some(c) => out.push(match c {
                '0' => '\0',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'v' => '\u{b}',
                other => other,
            }),
        }
        rest = after.as_str();
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(line: &str) -> Vec<Option<String>> {
        let mut row = RawRow::default();
        decode_line(line, &mut row);
        (0..row.len())
            .map(|i| row.get(i).map(str::to_string))
            .collect()
    }

    #[test]
    fn nulls_empty_and_escapes() {
        assert_eq!(
            cells("\\N\t\t\\\\N\ta\\tb\\nc\\\\d\\r\\0\\b\\f\\v\tμ\\é"),
            vec![
                None,
                Some(String::new()),
                Some("\\N".into()),
                Some("a\tb\nc\\d\r\0\u{8}\u{c}\u{b}".into()),
                Some("μé".into()),
            ]
        );
    }

    #[test]
    fn json_in_a_cell_is_unescaped_once() {
        // JSON escapes the newline as \n; TSV then escapes the backslash.
        assert_eq!(
            cells(r#"{"sub1": 1, "sub2": "multi-\\nline"}"#),
            vec![Some(r#"{"sub1": 1, "sub2": "multi-\nline"}"#.into())]
        );
        assert_eq!(cells("trailing\\"), vec![Some("trailing\\".into())]);
    }
}
