//! The header of a tabular object: its columns, and the plan for assembling
//! typed [`Record`]s out of a row's cells (nesting expanded columns, sorting
//! fields by name, typing text through the schema).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::row::RawRow;
use super::types::{Fields, Meta, Record, strip_nulls};
use crate::model::Action;
use crate::schema::{CellType, Section, TableSchema};

/// One column of a tabular object, from its header label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    label: String,
    section: Option<Section>,
    path: Vec<String>,
}

impl Column {
    fn parse(label: &str) -> Self {
        let mut parts = label.split('.');
        let section = parts.next().and_then(Section::from_label);
        let path: Vec<String> = parts.map(str::to_string).collect();
        let section = section.filter(|_| !path.is_empty() && path.iter().all(|p| !p.is_empty()));
        Self {
            label: label.to_string(),
            section,
            path,
        }
    }

    /// The header label, e.g. `value.settings.a`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The section, or `None` for a label this client does not understand
    /// (such columns are kept in rows but left out of records).
    pub fn section(&self) -> Option<Section> {
        self.section
    }

    /// The path below the section: `["settings", "a"]` for `value.settings.a`.
    pub fn path(&self) -> &[String] {
        &self.path
    }
}

/// Where a record field comes from.
#[derive(Debug)]
enum Slot {
    Cell {
        name: Arc<str>,
        col: usize,
        ty: CellType,
    },
    Nested {
        name: Arc<str>,
        children: Vec<Slot>,
    },
}

impl Slot {
    fn name(&self) -> &Arc<str> {
        match self {
            Slot::Cell { name, .. } | Slot::Nested { name, .. } => name,
        }
    }
}

/// A cell that could not be converted to its schema type.
#[derive(Debug)]
pub(crate) struct CellError {
    pub(crate) column: String,
    pub(crate) message: String,
}

/// The columns of an object and how to build records from them.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) columns: Vec<Column>,
    ts: Option<usize>,
    action: Option<usize>,
    key: Vec<Slot>,
    value: Vec<Slot>,
}

impl Layout {
    pub(crate) fn new(
        labels: impl IntoIterator<Item = impl AsRef<str>>,
        schema: Option<&TableSchema>,
    ) -> Self {
        let columns: Vec<Column> = labels
            .into_iter()
            .map(|l| Column::parse(l.as_ref()))
            .collect();
        let find = |section, name: &str| {
            columns
                .iter()
                .position(|c| c.section == Some(section) && c.path.len() == 1 && c.path[0] == name)
        };
        let ts = find(Section::Meta, "ts");
        let action = find(Section::Meta, "action");
        let key = slots(&columns, Section::Key, schema);
        let value = slots(&columns, Section::Value, schema);
        Self {
            columns,
            ts,
            action,
            key,
            value,
        }
    }

    /// Assembles the typed record of `row`.
    pub(crate) fn record(&self, row: &RawRow) -> Result<Record, CellError> {
        let meta = Meta {
            ts: self.ts.and_then(|i| row.get(i)).map(str::to_string),
            action: self.action.and_then(|i| row.get(i)).map(Action::from),
        };
        let key = Fields::from_sorted(self.fields(&self.key, row)?);
        let value = Fields::from_sorted(self.fields(&self.value, row)?);
        Ok(Record::new(meta, key, Some(value)))
    }

    fn fields(&self, slots: &[Slot], row: &RawRow) -> Result<Vec<(Arc<str>, Value)>, CellError> {
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            if let Some(v) = self.slot_value(slot, row)? {
                out.push((slot.name().clone(), v));
            }
        }
        Ok(out)
    }

    fn slot_value(&self, slot: &Slot, row: &RawRow) -> Result<Option<Value>, CellError> {
        match slot {
            Slot::Cell { col, ty, .. } => match row.get(*col) {
                None => Ok(None),
                Some(text) => cell_value(text, *ty)
                    .map(Some)
                    .map_err(|message| CellError {
                        column: self
                            .columns
                            .get(*col)
                            .map(|c| c.label.clone())
                            .unwrap_or_default(),
                        message,
                    }),
            },
            Slot::Nested { children, .. } => {
                let mut map = Map::new();
                for child in children {
                    if let Some(v) = self.slot_value(child, row)? {
                        map.insert(child.name().to_string(), v);
                    }
                }
                // All nested cells NULL: the field is absent, as in condensed mode.
                Ok((!map.is_empty()).then_some(Value::Object(map)))
            }
        }
    }
}

/// A tree node while grouping columns by their paths.
#[derive(Default)]
struct Node {
    cell: Option<(usize, CellType)>,
    children: Vec<(String, Node)>,
}

fn slots(columns: &[Column], section: Section, schema: Option<&TableSchema>) -> Vec<Slot> {
    let mut root = Node::default();
    for (i, col) in columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.section == Some(section))
    {
        let path: Vec<&str> = col.path.iter().map(String::as_str).collect();
        let ty = schema.map_or(CellType::Text, |s| s.cell_type(section, &path));
        let mut node = &mut root;
        for part in &path {
            let pos = match node.children.iter().position(|(n, _)| n == part) {
                Some(p) => p,
                None => {
                    node.children.push((part.to_string(), Node::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[pos].1;
        }
        node.cell = Some((i, ty));
    }
    into_slots(root)
}

fn into_slots(node: Node) -> Vec<Slot> {
    let mut out: Vec<Slot> = node
        .children
        .into_iter()
        .filter_map(|(name, child)| {
            let name: Arc<str> = Arc::from(name);
            match child.cell {
                // A label that is both a cell and a prefix of others is not
                // something the service produces; the cell wins.
                Some((col, ty)) => Some(Slot::Cell { name, col, ty }),
                None if child.children.is_empty() => None,
                None => Some(Slot::Nested {
                    name,
                    children: into_slots(child),
                }),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

/// Converts the text of a non-NULL cell to JSON according to its type.
pub(crate) fn cell_value(text: &str, ty: CellType) -> Result<Value, String> {
    match ty {
        CellType::Text => Ok(Value::String(text.to_string())),
        CellType::Integer => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<u64>().map(Value::from))
            .map_err(|_| format!("{text:?} is not an integer")),
        CellType::Number => match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::from(f)),
            // JSON has no NaN or infinities; keep the spelling the server used.
            Ok(_) => Ok(Value::String(text.to_string())),
            Err(_) => Err(format!("{text:?} is not a number")),
        },
        CellType::Boolean => match text {
            "true" | "t" | "TRUE" | "True" => Ok(Value::Bool(true)),
            "false" | "f" | "FALSE" | "False" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not a boolean")),
        },
        CellType::Json => {
            let mut v: Value =
                serde_json::from_str(text).map_err(|e| format!("invalid embedded JSON: {e}"))?;
            strip_nulls(&mut v);
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_cells() {
        assert_eq!(
            cell_value("-12", CellType::Integer).unwrap(),
            Value::from(-12)
        );
        assert_eq!(
            cell_value("18446744073709551615", CellType::Integer).unwrap(),
            Value::from(u64::MAX)
        );
        assert!(cell_value("1.5", CellType::Integer).is_err());
        assert_eq!(
            cell_value("1.5", CellType::Number).unwrap(),
            Value::from(1.5)
        );
        assert_eq!(
            cell_value("NaN", CellType::Number).unwrap(),
            Value::from("NaN")
        );
        assert_eq!(
            cell_value("t", CellType::Boolean).unwrap(),
            Value::Bool(true)
        );
        assert!(cell_value("yes", CellType::Boolean).is_err());
        assert_eq!(
            cell_value(r#"{"a":1,"b":null,"c":[null]}"#, CellType::Json).unwrap(),
            serde_json::json!({"a":1,"c":[null]})
        );
    }

    #[test]
    fn columns_parse_sections_and_paths() {
        let c = Column::parse("value.settings.a");
        assert_eq!(
            (c.section(), c.path()),
            (
                Some(Section::Value),
                &["settings".to_string(), "a".to_string()][..]
            )
        );
        assert_eq!(Column::parse("other.x").section(), None);
        assert_eq!(Column::parse("value").section(), None);
        assert_eq!(Column::parse("value..x").section(), None);
    }
}
