//! Cell text → typed values: parsing shared by the SQLite writer and by
//! [`crate::Sink::read_rows`] on both backends.

use chrono::{
    DateTime, Datelike, DurationRound, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike,
    Utc,
};

use crate::model::SqlType;

/// A value read back from a table, normalised so both backends give equal
/// results for equal data (timestamps in UTC at microsecond precision,
/// decimals without trailing zeros, UUIDs lowercase, JSON parsed).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer column.
    Int(i64),
    /// A float column (`float32` columns are rounded to `f32` first).
    Float(f64),
    /// A decimal, as normalised text.
    Decimal(String),
    /// Text, varchar and enum columns.
    Text(String),
    /// A timestamp.
    Timestamp(DateTime<Utc>),
    /// A date.
    Date(NaiveDate),
    /// A time of day.
    Time(NaiveTime),
    /// A UUID, lowercase hyphenated.
    Uuid(String),
    /// A JSON document.
    Json(serde_json::Value),
}

/// Parse a boolean the way PostgreSQL does (case-insensitive, trimmed):
/// `true/t/yes/y/on/1` and `false/f/no/n/off/0`.
pub(crate) fn parse_bool(cell: &str) -> Result<bool, String> {
    let t = cell.trim();
    const TRUE: [&str; 6] = ["true", "t", "yes", "y", "on", "1"];
    const FALSE: [&str; 6] = ["false", "f", "no", "n", "off", "0"];
    if TRUE.iter().any(|v| v.eq_ignore_ascii_case(t)) {
        Ok(true)
    } else if FALSE.iter().any(|v| v.eq_ignore_ascii_case(t)) {
        Ok(false)
    } else {
        Err(format!("`{}` is not a boolean", shown(cell)))
    }
}

/// Parse an integer and check it fits the column's width.
pub(crate) fn parse_int(cell: &str, ty: &SqlType) -> Result<i64, String> {
    let v: i64 = cell
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not an integer", shown(cell)))?;
    let (lo, hi) = match ty {
        SqlType::Int16 => (i64::from(i16::MIN), i64::from(i16::MAX)),
        SqlType::Int32 => (i64::from(i32::MIN), i64::from(i32::MAX)),
        _ => (i64::MIN, i64::MAX),
    };
    if v < lo || v > hi {
        return Err(format!("{v} is out of range for {ty}"));
    }
    Ok(v)
}

/// Parse a float; `float32` values are rounded to single precision.
pub(crate) fn parse_float(cell: &str, ty: &SqlType) -> Result<f64, String> {
    let v: f64 = cell
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a number", shown(cell)))?;
    Ok(round_float(v, ty))
}

pub(crate) fn round_float(v: f64, ty: &SqlType) -> f64 {
    if matches!(ty, SqlType::Float32) {
        f64::from(v as f32)
    } else {
        v
    }
}

/// Check decimal syntax (`-12.50`, `1e3`); returns the trimmed text.
pub(crate) fn check_decimal(cell: &str) -> Result<&str, String> {
    let t = cell.trim();
    let body = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let exp_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || !exp_ok {
        return Err(format!("`{}` is not a decimal number", shown(cell)));
    }
    Ok(t)
}

/// Normalise decimal text: no `+`, no trailing fractional zeros, `-0` → `0`.
pub(crate) fn normalize_decimal(text: &str) -> String {
    let t = text.trim().trim_start_matches('+');
    if t.contains(['e', 'E']) {
        return t.to_string();
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t),
    };
    let body = match body.split_once('.') {
        Some((i, f)) => {
            let f = f.trim_end_matches('0');
            if f.is_empty() {
                i.to_string()
            } else {
                format!("{i}.{f}")
            }
        }
        None => body.to_string(),
    };
    let body = {
        let trimmed = body.trim_start_matches('0');
        if trimmed.is_empty() || trimmed.starts_with('.') {
            format!("0{trimmed}")
        } else {
            trimmed.to_string()
        }
    };
    if neg && body != "0" {
        format!("-{body}")
    } else {
        body
    }
}

/// Parse a timestamp: RFC 3339 (`T` or space, any offset, `Z`), PostgreSQL's
/// output (`+00`), or no offset (read as UTC); up to 9 fractional digits,
/// rounded to microseconds.
pub(crate) fn parse_timestamp(cell: &str) -> Result<DateTime<Utc>, String> {
    let t = cell.trim();
    let parsed = DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| {
            DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z").map(|d| d.with_timezone(&Utc))
        })
        .or_else(|_| {
            DateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f%#z").map(|d| d.with_timezone(&Utc))
        })
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").map(|d| d.and_utc()))
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").map(|d| d.and_utc()))
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M").map(|d| d.and_utc()))
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M").map(|d| d.and_utc()))
        .map_err(|_| {
            format!(
                "`{}` is not a timestamp (expected e.g. 2024-05-01T10:11:12Z)",
                shown(cell)
            )
        })?;
    // Rounded by hand: chrono's `duration_round` fails outside the years
    // 1677..2262 (its nanosecond limit).
    let nanos = parsed.timestamp_subsec_nanos();
    parsed
        .with_nanosecond(0)
        .and_then(|t| {
            t.checked_add_signed(TimeDelta::microseconds(i64::from((nanos + 500) / 1000)))
        })
        .ok_or_else(|| format!("timestamp `{}` is out of range", shown(cell)))
}

/// The fields of a timestamp in one of the common spellings:
/// `YYYY-MM-DD[T ]HH:MM:SS`, up to 6 fractional digits, then nothing, `Z`
/// or a zero offset. `None` when the general parser is needed.
// The date and time fields feed `timestamp_micros`, which only PostgreSQL's
// binary COPY needs.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
struct FastTimestamp<'a> {
    /// The trimmed cell; its first 19 bytes are ASCII digits and separators.
    text: &'a str,
    date: NaiveDate,
    seconds_of_day: u32,
    /// The fractional digits (0 to 6 of them).
    frac: &'a [u8],
}

impl<'a> FastTimestamp<'a> {
    fn parse(cell: &'a str) -> Option<Self> {
        let text = cell.trim();
        let b = text.as_bytes();
        if b.len() < 19 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b.get(r)?.iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let (y, mo, d, h, mi, sec) = (
            num(0..4)?,
            num(5..7)?,
            num(8..10)?,
            num(11..13)?,
            num(14..16)?,
            num(17..19)?,
        );
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
            || h > 23
            || mi > 59
            || sec > 59
        {
            return None;
        }
        let date = NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, mo, d)?;
        let mut rest = &b[19..];
        let mut frac: &[u8] = &[];
        if let Some(r) = rest.strip_prefix(b".") {
            let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 || n > 6 {
                return None;
            }
            frac = &r[..n];
            rest = &r[n..];
        }
        if !matches!(
            rest,
            b"" | b"Z" | b"z" | b"+00" | b"+00:00" | b"+0000" | b"-00:00"
        ) {
            return None;
        }
        Some(Self {
            text,
            date,
            seconds_of_day: h * 3600 + mi * 60 + sec,
            frac,
        })
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    fn micros_of_second(&self) -> i64 {
        (0..6).fold(0i64, |acc, i| {
            acc * 10 + self.frac.get(i).map_or(0, |&c| i64::from(c - b'0'))
        })
    }
}

/// Write the stored form of a timestamp cell into `out` without going
/// through chrono, for the common spellings: `YYYY-MM-DD[T ]HH:MM:SS`,
/// up to 6 fractional digits, then nothing, `Z` or a zero offset. Returns
/// `false` (leaving `out` unspecified) when the general parser is needed.
pub(crate) fn fast_timestamp(cell: &str, out: &mut String) -> bool {
    let Some(t) = FastTimestamp::parse(cell) else {
        return false;
    };
    out.clear();
    out.push_str(&t.text[..10]);
    out.push('T');
    out.push_str(&t.text[11..19]);
    out.push('.');
    for i in 0..6 {
        out.push(t.frac.get(i).map_or('0', |&c| char::from(c)));
    }
    out.push('Z');
    true
}

/// Microseconds since 1970-01-01 UTC of a timestamp cell (the spellings
/// [`parse_timestamp`] takes; the common ones without chrono's parser).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn timestamp_micros(cell: &str) -> Result<i64, String> {
    let Some(t) = FastTimestamp::parse(cell) else {
        return Ok(parse_timestamp(cell)?.timestamp_micros());
    };
    let days = i64::from(t.date.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE);
    Ok((days * 86_400 + i64::from(t.seconds_of_day)) * 1_000_000 + t.micros_of_second())
}

/// Days from 0001-01-01 (day 1) to 1970-01-01.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// The stored text form of a timestamp in SQLite: fixed width, so text order
/// is time order.
pub(crate) fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Parse `YYYY-MM-DD`.
pub(crate) fn parse_date(cell: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(cell.trim(), "%Y-%m-%d")
        .map_err(|_| format!("`{}` is not a date (expected YYYY-MM-DD)", shown(cell)))
}

/// Parse `HH:MM[:SS[.f]]`, ignoring a trailing `Z` (DAP writes one).
pub(crate) fn parse_time(cell: &str) -> Result<NaiveTime, String> {
    let t = cell.trim();
    let t = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    NaiveTime::parse_from_str(t, "%H:%M:%S%.f")
        .or_else(|_| NaiveTime::parse_from_str(t, "%H:%M"))
        .map_err(|_| format!("`{}` is not a time of day (expected HH:MM:SS)", shown(cell)))
        .and_then(|v| {
            NaiveDate::default()
                .and_time(v)
                .duration_round(TimeDelta::microseconds(1))
                .map(|d| d.time())
                .map_err(|e| format!("time `{}`: {e}", shown(cell)))
        })
}

/// The stored text form of a time in SQLite.
pub(crate) fn format_time(t: &NaiveTime) -> String {
    t.format("%H:%M:%S%.6f").to_string()
}

/// Parse a UUID in any common spelling; returns lowercase hyphenated.
pub(crate) fn parse_uuid(cell: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(cell.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| format!("`{}` is not a UUID", shown(cell)))
}

/// Check that `cell` is one JSON document.
pub(crate) fn check_json(cell: &str) -> Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(cell)
        .map(|_| ())
        .map_err(|e| format!("not valid JSON: {e}"))
}

/// Turn the text form of a stored value (PostgreSQL `::text` output or a
/// SQLite TEXT cell) into a [`Value`].
pub(crate) fn value_from_text(ty: &SqlType, text: &str) -> Result<Value, String> {
    Ok(match ty {
        SqlType::Bool => Value::Bool(parse_bool(text)?),
        SqlType::Int16 | SqlType::Int32 | SqlType::Int64 => {
            Value::Int(parse_int(text, &SqlType::Int64)?)
        }
        SqlType::Float32 | SqlType::Float64 => Value::Float(parse_float(text, ty)?),
        SqlType::Decimal { .. } => Value::Decimal(normalize_decimal(text)),
        SqlType::Text | SqlType::Varchar(_) | SqlType::Enum { .. } => Value::Text(text.to_string()),
        SqlType::Timestamp => Value::Timestamp(parse_timestamp(text)?),
        SqlType::Date => Value::Date(parse_date(text)?),
        SqlType::Time => Value::Time(parse_time(text)?),
        SqlType::Uuid => Value::Uuid(parse_uuid(text)?),
        SqlType::Json => Value::Json(
            serde_json::from_str(text).map_err(|e| format!("stored JSON unreadable: {e}"))?,
        ),
    })
}

/// A bounded rendering of a cell for error messages (server data can be huge).
pub(crate) fn shown(cell: &str) -> String {
    const MAX: usize = 60;
    if cell.chars().count() <= MAX {
        cell.escape_debug().to_string()
    } else {
        let head: String = cell.chars().take(MAX).collect();
        format!("{}…", head.escape_debug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_many_spellings_agree() {
        let want = parse_timestamp("2024-05-01T10:11:12.345Z").unwrap();
        for s in [
            "2024-05-01 10:11:12.345",
            "2024-05-01T12:11:12.345+02:00",
            "2024-05-01 10:11:12.345+00",
            "2024-05-01T10:11:12.3450004Z",
        ] {
            assert_eq!(parse_timestamp(s).unwrap(), want, "{s}");
        }
        assert_eq!(format_timestamp(&want), "2024-05-01T10:11:12.345000Z");
        let mut out = String::new();
        for s in [
            "2024-05-01T10:11:12.345Z",
            "2024-05-01 10:11:12.345",
            "2024-05-01 10:11:12.345+00",
            " 2024-05-01T10:11:12.345000+00:00 ",
        ] {
            assert!(fast_timestamp(s, &mut out), "{s}");
            assert_eq!(out, format_timestamp(&want), "{s}");
        }
        for s in [
            "2024-05-01T12:11:12.345+02:00",
            "2024-05-01T10:11:12.3450004Z",
            "2024-02-30T10:11:12Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:11",
            "2024-05-01T10:11:1xZ",
        ] {
            assert!(!fast_timestamp(s, &mut out), "{s}");
        }
        assert!(parse_timestamp("2024-02-30T10:11:12Z").is_err());
        for s in [
            "2024-05-01T10:11:12.345Z",
            "2024-05-01 10:11:12.345",
            "2024-05-01T12:11:12.345+02:00",
            "2024-05-01T10:11:12.3450004Z",
            "1960-12-31T23:59:59.999999Z",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00.0000004Z",
            "9999-12-31 23:59:59.9999996+00",
        ] {
            let want = parse_timestamp(s).unwrap().timestamp_micros();
            assert_eq!(timestamp_micros(s).unwrap(), want, "{s}");
        }
        assert!(timestamp_micros("yesterday").is_err());
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn scalars_parse_like_postgres() {
        assert!(parse_bool(" TRUE ").unwrap());
        assert!(!parse_bool("0").unwrap());
        assert!(parse_bool("maybe").is_err());
        assert!(parse_int("40000", &SqlType::Int16).is_err());
        assert_eq!(parse_int(" -7 ", &SqlType::Int32).unwrap(), -7);
        assert!(check_decimal("-12.50").is_ok());
        assert!(check_decimal("1e3").is_ok());
        assert!(check_decimal("1.2.3").is_err());
        assert!(check_decimal("").is_err());
        assert_eq!(normalize_decimal("+012.500"), "12.5");
        assert_eq!(normalize_decimal("-0.000"), "0");
        assert_eq!(normalize_decimal(".5"), "0.5");
        assert_eq!(
            parse_time("10:11:12Z").unwrap(),
            NaiveTime::from_hms_opt(10, 11, 12).unwrap()
        );
        assert_eq!(
            parse_uuid("{936DA01F-9ABD-4D9D-80C7-02AF85C822A8}").unwrap(),
            "936da01f-9abd-4d9d-80c7-02af85c822a8"
        );
        assert!(check_json("{\"a\": [1, 2]}").is_ok());
        assert!(check_json("{").is_err());
    }
}
