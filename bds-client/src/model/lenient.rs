//! Lenient decoders for the loosely specified JSON fields of BDS.
//!
//! The spec marks date formats and number shapes as uncertain, so these
//! accept every shape seen in the wild and never fail a whole listing because
//! of one odd field: an unreadable timestamp becomes `None` and is logged.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Parses `2021-05-18T19:50:19.476Z`, RFC 3339 with any offset, or a naive
/// `YYYY-MM-DD[T ]HH:MM:SS[.f]` taken as UTC.
pub fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(naive, format).ok())
        .map(|t| t.and_utc())
}

/// `null`, `""` or an unreadable string become `None`.
pub fn opt_datetime<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.filter(|s| !s.trim().is_empty()).and_then(|s| {
        let parsed = parse_datetime(&s);
        if parsed.is_none() {
            tracing::warn!(value = %s, "ignoring an unreadable BDS timestamp");
        }
        parsed
    }))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

/// A byte count sent as `288`, `288.0`, `"288"` or `null`.
pub fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let raw: Option<NumberOrText> = Option::deserialize(d)?;
    let value = match raw {
        None => None,
        Some(NumberOrText::Number(n)) => Some(n),
        Some(NumberOrText::Text(s)) => s.trim().parse::<f64>().ok(),
    };
    // Sizes are whole, non-negative numbers; anything else is not a size.
    Ok(value
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n.round() as u64))
}

/// `null` becomes the type's default (e.g. an empty list).
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A boolean sent as `true`, `"True"`, `1` or `null` (→ `None`).
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Bool(bool),
        Number(i64),
        Text(String),
    }
    Ok(match Option::<Loose>::deserialize(d)? {
        None => None,
        Some(Loose::Bool(b)) => Some(b),
        Some(Loose::Number(n)) => Some(n != 0),
        Some(Loose::Text(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "t" | "yes" => Some(true),
            "false" | "0" | "f" | "no" => Some(false),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_every_timestamp_shape_seen() {
        let expected = Utc.with_ymd_and_hms(2021, 5, 18, 19, 49, 22).unwrap();
        for text in [
            "2021-05-18T19:49:22.000Z",
            "2021-05-18T19:49:22Z",
            "2021-05-18T19:49:22",
            "2021-05-18 19:49:22",
            "2021-05-18T21:49:22+02:00",
            " 2021-05-18T19:49:22.0000000Z ",
        ] {
            assert_eq!(parse_datetime(text), Some(expected), "{text}");
        }
        assert_eq!(parse_datetime("yesterday"), None);
    }
}
