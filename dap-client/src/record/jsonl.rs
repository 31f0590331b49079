//! JSON Lines records: one `{"meta":..,"key":..,"value":..}` object a line.
//!
//! Sections are read into `(name, value)` pairs with names borrowed from
//! the line where JSON allows it, and the sorted names are matched against
//! the previous record's: the records of an object usually share their
//! field names, so they share one name table and a row costs no allocation
//! per field name.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::types::{Fields, Meta, Record, strip_nulls};
use crate::model::Action;

/// A member name, borrowed from the line unless it holds escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Name<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// The members of a `key` or `value` object, in line order, nulls dropped.
struct Section<'a>(Vec<(Name<'a>, Value)>);

impl<'de: 'a, 'a> Deserialize<'de> for Section<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Section<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((name, mut value)) = map.next_entry::<Name<'a>, Value>()? {
                    if !value.is_null() {
                        strip_nulls(&mut value);
                        out.push((name, value));
                    }
                }
                Ok(Section(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default)]
    meta: Option<Map<String, Value>>,
    #[serde(default, borrow)]
    key: Option<Section<'a>>,
    #[serde(default, borrow)]
    value: Option<Section<'a>>,
}

/// The name tables of the last `key` and `value` sections, reused while
/// records keep the same field names.
#[derive(Debug, Default)]
pub(crate) struct NameTables {
    key: Option<Arc<[Arc<str>]>>,
    value: Option<Arc<[Arc<str>]>>,
}

fn fields(section: Option<Section<'_>>, last: &mut Option<Arc<[Arc<str>]>>) -> Fields {
    let mut pairs = section.map(|s| s.0).unwrap_or_default();
    pairs.sort_by(|a, b| a.0.0.cmp(&b.0.0));
    let same = last.as_ref().is_some_and(|names| {
        names.len() == pairs.len()
            && names
                .iter()
                .zip(&pairs)
                .all(|(n, (p, _))| n.as_ref() == p.0.as_ref())
    });
    if !same {
        *last = Some(pairs.iter().map(|(n, _)| Arc::from(n.0.as_ref())).collect());
    }
    let names = last.clone().unwrap_or_else(|| Arc::from(Vec::new()));
    let values = (0u32..).zip(pairs.into_iter().map(|(_, v)| v)).collect();
    Fields::from_table(names, values)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Decodes one line. Unknown top-level members are ignored.
pub(crate) fn decode_line(
    line: &[u8],
    names: &mut NameTables,
) -> Result<Record, serde_json::Error> {
    let parsed: Line<'_> = serde_json::from_slice(line)?;
    let meta = parsed.meta.unwrap_or_default();
    let meta = Meta {
        ts: meta.get("ts").and_then(text),
        action: meta
            .get("action")
            .and_then(text)
            .map(|a| Action::from(a.as_str())),
    };
    let key = fields(parsed.key, &mut names.key);
    let value = fields(parsed.value, &mut names.value);
    Ok(Record::new(meta, key, Some(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_upserts_deletes_and_explicit_nulls() {
        let names = &mut NameTables::default();
        let r = decode_line(
            br#"{"meta":{"ts":"2024-05-01T10:11:12.345Z","action":"U"},"key":{"id":1},"value":{"name":"x","gone":null,"nested":{"a":null,"b":2}},"extra":1}"#,
            names,
        )
        .unwrap();
        assert_eq!(r.key.get("id"), Some(&Value::from(1)));
        let value = r.value.as_ref().unwrap();
        assert_eq!(value.get("gone"), None);
        assert_eq!(value.get("nested"), Some(&serde_json::json!({"b": 2})));
        let d = decode_line(
            br#"{"meta":{"ts":"2024-05-01T10:12:00Z","action":"D"},"key":{"id":3}}"#,
            names,
        )
        .unwrap();
        assert!(d.is_delete() && d.value.is_none());
        assert!(decode_line(b"{not json", names).is_err());
        assert!(decode_line(br#"{"key":[1]}"#, names).is_err());
    }

    #[test]
    fn records_with_other_names_or_escaped_names_decode_right() {
        let names = &mut NameTables::default();
        let lines: [&[u8]; 4] = [
            br#"{"key":{"id":1},"value":{"b":1,"a":2}}"#,
            br#"{"key":{"id":2},"value":{"a":3,"b":4}}"#,
            br#"{"key":{"id":3},"value":{"a":5,"c\u0041":6}}"#,
            br#"{"key":{"id":4},"value":{"b":7}}"#,
        ];
        let got: Vec<Value> = lines
            .iter()
            .map(|l| decode_line(l, names).unwrap().to_json())
            .collect();
        assert_eq!(
            got,
            [
                serde_json::json!({"key":{"id":1},"value":{"a":2,"b":1}}),
                serde_json::json!({"key":{"id":2},"value":{"a":3,"b":4}}),
                serde_json::json!({"key":{"id":3},"value":{"a":5,"cA":6}}),
                serde_json::json!({"key":{"id":4},"value":{"b":7}}),
            ]
        );
    }
}
