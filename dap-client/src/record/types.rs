//! The decoded record: `meta`, `key` and `value`, as in JSON Lines output.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::model::Action;

/// The metadata of a record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Meta {
    /// Commit time of the record in the data lake (RFC 3339 text as sent).
    pub ts: Option<String>,
    /// `U` (upsert) or `D` (delete) in incremental output; `None` in
    /// snapshots, where every record is an upsert.
    pub action: Option<Action>,
}

/// Named fields of a record section, sorted by name; `null` fields are
/// omitted, as in the service's JSON output, so records decoded from
/// different formats compare equal.
///
/// The names live in one table shared by the records of an object, so a
/// decoded row costs one allocation per section for its values plus one per
/// string value, and no per-field reference counting.
#[derive(Clone, Default)]
pub struct Fields {
    /// Field names, sorted; shared between records.
    names: Arc<[Arc<str>]>,
    /// `(index into names, value)`, in increasing index order.
    values: Vec<(u32, Value)>,
}

impl Fields {
    /// Builds fields from pairs in any order; `null` values are dropped.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Arc<str>, Value)>) -> Self {
        let mut v: Vec<_> = pairs.into_iter().filter(|(_, v)| !v.is_null()).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let (names, values): (Vec<_>, Vec<_>) = v
            .into_iter()
            .enumerate()
            .map(|(i, (name, value))| (name, (index(i), value)))
            .unzip();
        Fields {
            names: names.into(),
            values,
        }
    }

    /// Fields over a shared, sorted name table; `values` holds
    /// `(index into names, non-null value)` in increasing index order.
    pub(crate) fn from_table(names: Arc<[Arc<str>]>, values: Vec<(u32, Value)>) -> Self {
        debug_assert!(names.windows(2).all(|w| w[0] <= w[1]));
        debug_assert!(values.windows(2).all(|w| w[0].0 < w[1].0));
        debug_assert!(
            values
                .iter()
                .all(|(i, v)| names.len() > *i as usize && !v.is_null())
        );
        Fields { names, values }
    }

    fn name(&self, i: u32) -> &str {
        self.names.get(i as usize).map_or("", |n| n.as_ref())
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .binary_search_by(|(i, _)| self.name(*i).cmp(name))
            .ok()
            .and_then(|i| self.values.get(i))
            .map(|(_, v)| v)
    }

    /// The fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(i, v)| (self.name(*i), v))
    }

    /// Number of (non-null) fields.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// `true` when no field is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The fields as a JSON object.
    pub fn to_json(&self) -> Map<String, Value> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }
}

/// A position in a name table; tables are built from header columns or
/// object members, far fewer than `u32::MAX`.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Fields are equal when they hold the same names and values, whatever
/// name tables they were built over.
impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (n, v) in self.iter() {
            map.serialize_entry(n, v)?;
        }
        map.end()
    }
}

/// One record of a query's output.
///
/// Serializes to the service's JSON Lines shape:
/// `{"meta":{"ts":..,"action":..},"key":{..},"value":{..}}`.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Record {
    /// Commit time and action.
    pub meta: Meta,
    /// Primary key fields.
    pub key: Fields,
    /// The other fields; `None` for deletions and for records whose fields
    /// are all null.
    pub value: Option<Fields>,
}

impl Record {
    /// Builds a record.
    pub fn new(meta: Meta, key: Fields, value: Option<Fields>) -> Self {
        let value = value.filter(|v| !v.is_empty());
        Self { meta, key, value }
    }

    /// `true` for a hard delete (`meta.action = D`).
    pub fn is_delete(&self) -> bool {
        self.meta.action == Some(Action::Delete)
    }

    /// The record as a JSON object in the service's JSON Lines shape.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct MetaOut<'a>(&'a Meta);
        impl Serialize for MetaOut<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(None)?;
                if let Some(ts) = &self.0.ts {
                    map.serialize_entry("ts", ts)?;
                }
                if let Some(a) = &self.0.action {
                    map.serialize_entry("action", a.as_str())?;
                }
                map.end()
            }
        }
        let mut map = s.serialize_map(None)?;
        if self.meta != Meta::default() {
            map.serialize_entry("meta", &MetaOut(&self.meta))?;
        }
        map.serialize_entry("key", &self.key)?;
        if let Some(v) = &self.value {
            map.serialize_entry("value", v)?;
        }
        map.end()
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// Removes `null` members of objects, recursively (not array elements):
/// DAP omits null properties, so both spellings decode the same.
pub(crate) fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sort_drop_nulls_and_serialize_like_jsonl() {
        let key = Fields::from_pairs([(Arc::from("id"), Value::from(7))]);
        let value = Fields::from_pairs([
            (Arc::from("z"), Value::from("last")),
            (Arc::from("a"), Value::Null),
            (Arc::from("m"), Value::from(true)),
        ]);
        assert_eq!(value.get("m"), Some(&Value::from(true)));
        assert_eq!(value.get("a"), None);
        let rec = Record::new(
            Meta {
                ts: Some("2024-05-01T10:11:12Z".into()),
                action: Some(Action::Upsert),
            },
            key,
            Some(value),
        );
        assert_eq!(
            rec.to_string(),
            r#"{"meta":{"ts":"2024-05-01T10:11:12Z","action":"U"},"key":{"id":7},"value":{"m":true,"z":"last"}}"#
        );
        let del = Record::new(
            Meta {
                ts: None,
                action: Some(Action::Delete),
            },
            Fields::default(),
            Some(Fields::default()),
        );
        assert!(del.is_delete() && del.value.is_none());
    }
}
