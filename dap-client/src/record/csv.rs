//! CSV cells: RFC 4180 with DAP's extensions (specs/dap.md §7).
//!
//! A quoted cell is always a string (`""` is the empty string, `"NULL"` the
//! word); an unquoted `NULL` or an empty unquoted cell is NULL. Quotes inside
//! a quoted cell are doubled, and quoted cells may span lines.

use super::row::RawRow;

/// `true` when `text` ends inside a quoted cell, i.e. the record continues on
/// the next line. Counting quotes is enough: inside quoted cells they come in
/// pairs, and outside they open or close a cell.
pub(crate) fn quotes_open(text: &[u8]) -> bool {
    memchr::memchr_iter(b'"', text).count() % 2 == 1
}

/// Splits one complete record into cells.
pub(crate) fn decode_record(text: &str, row: &mut RawRow) -> Result<(), String> {
    row.clear();
    let bytes = text.as_bytes();
    let mut pos = 0;
    loop {
        let end = if bytes.get(pos) == Some(&b'"') {
            quoted_cell(text, pos + 1, row)?
        } else {
            let end = memchr::memchr(b',', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
            let cell = &text[pos..end];
            if cell.is_empty() || cell == "NULL" {
                row.push_null();
            } else {
                if cell.contains('"') {
                    return Err(format!("a quote inside the unquoted cell {cell:?}"));
                }
                let start = row.begin_cell();
                row.text_mut().push_str(cell);
                row.end_cell(start);
            }
            end
        };
        match bytes.get(end) {
            None => return Ok(()),
            Some(b',') => pos = end + 1,
            Some(_) => {
                return Err(format!(
                    "unexpected text after a closing quote at byte {end}"
                ));
            }
        }
    }
}

/// Reads a quoted cell whose content starts at `pos`; returns the position
/// after its closing quote.
fn quoted_cell(text: &str, mut pos: usize, row: &mut RawRow) -> Result<usize, String> {
    let bytes = text.as_bytes();
    let start = row.begin_cell();
    loop {
        let Some(i) = memchr::memchr(b'"', &bytes[pos..]) else {
            return Err("a quoted cell is not terminated".to_string());
        };
        row.text_mut().push_str(&text[pos..pos + i]);
        pos += i + 1;
        if bytes.get(pos) == Some(&b'"') {
            row.text_mut().push('"');
            pos += 1;
        } else {
            row.end_cell(start);
            return Ok(pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(text: &str) -> Result<Vec<Option<String>>, String> {
        let mut row = RawRow::default();
        decode_record(text, &mut row)?;
        Ok((0..row.len())
            .map(|i| row.get(i).map(str::to_string))
            .collect())
    }

    #[test]
    fn null_rules_and_quoting() {
        assert_eq!(
            cells(
                r#"U,1,"",NULL,"NULL",,"a,b","say ""hi""","multi
line",plain"#
            )
            .unwrap(),
            vec![
                Some("U".into()),
                Some("1".into()),
                Some(String::new()),
                None,
                Some("NULL".into()),
                None,
                Some("a,b".into()),
                Some(r#"say "hi""#.into()),
                Some("multi\nline".into()),
                Some("plain".into()),
            ]
        );
        assert_eq!(
            cells("D,3,,").unwrap(),
            vec![Some("D".into()), Some("3".into()), None, None]
        );
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(cells(r#""open"#).is_err());
        assert!(cells(r#""closed"junk,1"#).is_err());
        assert!(cells(r#"ab"c,1"#).is_err());
        assert!(quotes_open(br#"1,"multi"#) && !quotes_open(br#"1,"a""b""#));
    }
}
