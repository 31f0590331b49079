//! Deterministic, index-based value generators shared by the fake services.
//!
//! Row `i` of a generated table is a pure function of `(seed, i)`, so a 10-million-row table is
//! never held in memory and every request (and every test computing the expected content) sees the
//! same values. Values are chosen to break naive parsers: tabs, newlines, carriage returns, quotes,
//! commas, backslashes, a literal `\N`, non-ASCII and astral-plane unicode, empty strings next to
//! nulls, nested JSON, enums and timestamps with fractional seconds.
//!
//! ```
//! use sandbox::data::RowGen;
//! let a = RowGen::new(7, 42).text(0);
//! let b = RowGen::new(7, 42).text(0);
//! assert_eq!(a, b);
//! ```

use chrono::{DateTime, TimeZone, Utc};

/// The SplitMix64 finaliser: a fast, well-mixed hash of a `u64`.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D1_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Strings that break naive TSV/CSV/JSON handling; index 0 is the empty string.
pub const NASTY_STRINGS: &[&str] = &[
    "",
    "plain",
    "tab\there",
    "line\nbreak",
    "carriage\r\nreturn",
    "comma, separated",
    "\"double quoted\"",
    "it's single",
    "back\\slash",
    "\\N",
    "NULL",
    "null",
    "ünïcödé café — ½",
    "emoji 🦀 and 𝄞",
    "日本語テキスト",
    " leading and trailing ",
    "{\"looks\": \"like json\"}",
    "a,\"b\"\tc\nd\\e",
    "__cd2_oversized_truncated__",
];

/// Values of the generated enum columns.
pub const STATES: &[&str] = &["active", "deleted", "pending", "completed"];

/// The generator of one row: every method takes a column index so columns are independent.
#[derive(Clone, Copy, Debug)]
pub struct RowGen {
    seed: u64,
    row: u64,
}

impl RowGen {
    /// The generator of row `row` of the table seeded with `seed`.
    pub fn new(seed: u64, row: u64) -> Self {
        Self { seed, row }
    }

    /// A 64-bit hash of (seed, row, column).
    pub fn bits(&self, column: u64) -> u64 {
        mix(mix(self.seed ^ mix(self.row)) ^ column.wrapping_mul(0x9E37_79B9))
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&self, column: u64, n: u64) -> u64 {
        if n == 0 { 0 } else { self.bits(column) % n }
    }

    /// True with probability `percent`/100.
    pub fn chance(&self, column: u64, percent: u64) -> bool {
        self.below(column, 100) < percent
    }

    /// A short text that is nasty about one time in three.
    pub fn text(&self, column: u64) -> String {
        let bits = self.bits(column);
        if bits.is_multiple_of(3) {
            let i = (bits / 3) as usize % NASTY_STRINGS.len();
            NASTY_STRINGS.get(i).copied().unwrap_or("").to_owned()
        } else {
            format!("name {} {:x}", self.row, bits >> 40)
        }
    }

    /// Like [`text`](Self::text) but `None` (NULL) about one time in eight; the empty string stays
    /// distinct from NULL.
    pub fn nullable_text(&self, column: u64) -> Option<String> {
        (!self.chance(column ^ 0xABCD, 12)).then(|| self.text(column))
    }

    /// One of `values` (empty string if `values` is empty).
    pub fn choose<'a>(&self, column: u64, values: &[&'a str]) -> &'a str {
        let i = self.below(column, values.len() as u64) as usize;
        values.get(i).copied().unwrap_or("")
    }

    /// A signed integer spanning the whole `i64` range now and then.
    pub fn int(&self, column: u64) -> i64 {
        match self.below(column, 10) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => 0,
            _ => (self.bits(column ^ 1) % 2_000_001) as i64 - 1_000_000,
        }
    }

    /// A finite float with a fractional part (sometimes negative, sometimes tiny).
    pub fn float(&self, column: u64) -> f64 {
        let b = self.bits(column);
        let mantissa = (b % 10_000_000) as f64 / 1000.0;
        if b & 1 == 0 {
            mantissa
        } else {
            -mantissa / 7.0
        }
    }

    /// A boolean.
    pub fn boolean(&self, column: u64) -> bool {
        self.bits(column) & 1 == 1
    }

    /// A UTC timestamp between 2020 and 2025, with millisecond or microsecond fractions (and
    /// sometimes none).
    pub fn timestamp(&self, column: u64) -> DateTime<Utc> {
        let b = self.bits(column);
        let secs = 1_577_836_800 + (b % 157_766_400) as i64; // 2020-01-01 + up to 5 years
        let nanos = match (b >> 32) % 3 {
            0 => 0,
            1 => ((b >> 40) % 1000) as u32 * 1_000_000,
            _ => ((b >> 20) % 1_000_000) as u32 * 1000,
        };
        Utc.timestamp_opt(secs, nanos).single().unwrap_or_default()
    }

    /// A nested JSON object with text that needs escaping, or `None` about one time in six.
    pub fn nested_json(&self, column: u64) -> Option<serde_json::Value> {
        if self.chance(column ^ 0x5EED, 16) {
            return None;
        }
        Some(serde_json::json!({
            "a": self.int(column ^ 2) % 1000,
            "b": self.text(column ^ 3),
        }))
    }

    /// A JSON array of 0 to 3 texts.
    pub fn tags(&self, column: u64) -> Vec<String> {
        (0..self.below(column, 4))
            .map(|i| self.text(column ^ (i + 100)))
            .collect()
    }
}

/// Formats a timestamp as RFC 3339 with a `Z` suffix and only as many fraction digits as needed
/// (`2024-01-01T00:00:00Z`, `2024-01-01T00:00:00.123Z`, `2024-01-01T00:00:00.123456Z`).
pub fn format_ts(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_deterministic_and_distinct() {
        let a = RowGen::new(1, 10);
        assert_eq!(a.text(3), RowGen::new(1, 10).text(3));
        assert_ne!(a.bits(3), RowGen::new(1, 11).bits(3));
        assert_ne!(a.bits(3), RowGen::new(2, 10).bits(3));
    }

    #[test]
    fn generated_values_cover_the_nasty_cases() {
        let texts: Vec<Option<String>> = (0..5000)
            .map(|i| RowGen::new(9, i).nullable_text(1))
            .collect();
        assert!(texts.iter().any(Option::is_none));
        assert!(texts.iter().any(|t| t.as_deref() == Some("")));
        for needle in ["\t", "\n", "\"", ",", "\\", "🦀"] {
            assert!(
                texts.iter().flatten().any(|t| t.contains(needle)),
                "no value contains {needle:?}"
            );
        }
    }

    #[test]
    fn timestamps_use_z_and_fractions() {
        let all: Vec<String> = (0..300)
            .map(|i| format_ts(&RowGen::new(3, i).timestamp(0)))
            .collect();
        assert!(all.iter().all(|t| t.ends_with('Z')));
        assert!(all.iter().any(|t| t.contains('.')));
        assert!(all.iter().any(|t| !t.contains('.')));
    }
}
