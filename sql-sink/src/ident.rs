//! SQL identifiers: validated like any other input, always quoted.
//!
//! Table and column names come from servers (DAP schemas, BDS CSV headers),
//! so they are treated as hostile: a name is accepted only if it is non-empty,
//! has no NUL character and fits PostgreSQL's 63-byte limit, and it is always
//! written into SQL double-quoted with embedded quotes doubled. Quoting makes
//! names case-sensitive in PostgreSQL, exactly as the server spelled them.

use crate::error::Error;

/// PostgreSQL truncates longer names (NAMEDATALEN - 1); we refuse them instead
/// so two long names can never collide silently.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// Check that `name` can be used as a table, namespace or column name.
///
/// `what` says what the name is for ("column", "table", "namespace") so the
/// error message points at the offending input.
pub fn validate(what: &'static str, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('\0') {
        "it contains a NUL character"
    } else if name.len() > MAX_IDENTIFIER_BYTES {
        "it is longer than 63 bytes"
    } else {
        return Ok(());
    };
    Err(Error::InvalidIdentifier {
        what,
        name: shorten(name),
        reason,
    })
}

/// Quote an identifier for SQL: `a"b` becomes `"a""b"`.
///
/// Works for both SQLite and PostgreSQL.
pub fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    push_quoted(&mut out, name);
    out
}

/// Append the quoted form of `name` to `out`.
pub(crate) fn push_quoted(out: &mut String, name: &str) {
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
}

/// Quote a string literal (single quotes doubled). Used only for DDL where
/// parameters are not allowed (CHECK constraints).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for ch in value.chars() {
        if ch == '\'' {
            out.push('\'');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

/// A printable, bounded rendering of an untrusted name for error messages.
pub(crate) fn shorten(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c == '\0' { '\u{2400}' } else { c })
        .take(80)
        .collect();
    if cleaned.len() < name.len() && name.chars().count() > 80 {
        format!("{cleaned}…")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote("x; DROP TABLE y"), r#""x; DROP TABLE y""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn rejects_bad_names() {
        assert!(validate("column", "").is_err());
        assert!(validate("column", "a\0b").is_err());
        assert!(validate("column", &"x".repeat(64)).is_err());
        assert!(validate("column", &"x".repeat(63)).is_ok());
        assert!(validate("column", "with space \"and\" quotes;").is_ok());
        let msg = validate("table", "a\0b").unwrap_err().to_string();
        assert!(msg.contains("NUL"), "{msg}");
    }
}
