//! JSON Lines records: one `{"meta":..,"key":..,"value":..}` object a line.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::types::{Fields, Meta, Record, strip_nulls};
use crate::model::Action;

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    meta: Option<Map<String, Value>>,
    #[serde(default)]
    key: Option<Map<String, Value>>,
    #[serde(default)]
    value: Option<Map<String, Value>>,
}

fn fields(map: Option<Map<String, Value>>) -> Fields {
    Fields::from_pairs(map.unwrap_or_default().into_iter().map(|(k, mut v)| {
        strip_nulls(&mut v);
        (Arc::from(k), v)
    }))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Decodes one line. Unknown top-level members are ignored.
pub(crate) fn decode_line(line: &[u8]) -> Result<Record, serde_json::Error> {
    let parsed: Line = serde_json::from_slice(line)?;
    let meta = parsed.meta.unwrap_or_default();
    let meta = Meta {
        ts: meta.get("ts").and_then(text),
        action: meta
            .get("action")
            .and_then(text)
            .map(|a| Action::from(a.as_str())),
    };
    Ok(Record::new(
        meta,
        fields(parsed.key),
        Some(fields(parsed.value)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_upserts_deletes_and_explicit_nulls() {
        let r = decode_line(
            br#"{"meta":{"ts":"2024-05-01T10:11:12.345Z","action":"U"},"key":{"id":1},"value":{"name":"x","gone":null,"nested":{"a":null,"b":2}},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(r.key.get("id"), Some(&Value::from(1)));
        let value = r.value.as_ref().unwrap();
        assert_eq!(value.get("gone"), None);
        assert_eq!(value.get("nested"), Some(&serde_json::json!({"b": 2})));
        let d =
            decode_line(br#"{"meta":{"ts":"2024-05-01T10:12:00Z","action":"D"},"key":{"id":3}}"#)
                .unwrap();
        assert!(d.is_delete() && d.value.is_none());
        assert!(decode_line(b"{not json").is_err());
    }
}
