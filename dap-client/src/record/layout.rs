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
    key: SectionPlan,
    value: SectionPlan,
}

/// The fields of one record section: their slots, sorted by name, and the
/// name table their records share.
#[derive(Debug)]
struct SectionPlan {
    slots: Vec<Slot>,
    names: Arc<[Arc<str>]>,
}

impl SectionPlan {
    fn new(slots: Vec<Slot>) -> Self {
        let names = slots.iter().map(|s| s.name().clone()).collect();
        Self { slots, names }
    }
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
        let key = SectionPlan::new(slots(&columns, Section::Key, schema));
        let value = SectionPlan::new(slots(&columns, Section::Value, schema));
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
        let key = self.fields(&self.key, row)?;
        let value = self.fields(&self.value, row)?;
        Ok(Record::new(meta, key, Some(value)))
    }

    fn fields(&self, section: &SectionPlan, row: &RawRow) -> Result<Fields, CellError> {
        let mut values = Vec::with_capacity(section.slots.len());
        for (i, slot) in (0u32..).zip(&section.slots) {
            // Values go straight into the vector: returning them through
            // nested `Result<Option<_>>`s cost a measurable share of a row.
            match slot {
                Slot::Cell { col, ty, .. } => {
                    if let Some(text) = row.get(*col) {
                        match cell_value(text, *ty) {
                            Ok(v) => values.push((i, v)),
                            Err(message) => return Err(self.cell_error(*col, message)),
                        }
                    }
                }
                Slot::Nested { children, .. } => {
                    if let Some(v) = self.nested(children, row)? {
                        values.push((i, v));
                    }
                }
            }
        }
        Ok(Fields::from_table(section.names.clone(), values))
    }

    /// The object of an expanded column group; `None` when all its cells
    /// are NULL (the field is absent, as in condensed mode).
    fn nested(&self, children: &[Slot], row: &RawRow) -> Result<Option<Value>, CellError> {
        let mut map = Map::new();
        for child in children {
            match child {
                Slot::Cell { name, col, ty } => {
                    if let Some(text) = row.get(*col) {
                        let v = cell_value(text, *ty).map_err(|m| self.cell_error(*col, m))?;
                        map.insert(name.to_string(), v);
                    }
                }
                Slot::Nested { name, children } => {
                    if let Some(v) = self.nested(children, row)? {
                        map.insert(name.to_string(), v);
                    }
                }
            }
        }
        Ok((!map.is_empty()).then_some(Value::Object(map)))
    }

    #[cold]
    fn cell_error(&self, col: usize, message: String) -> CellError {
        CellError {
            column: self
                .columns
                .get(col)
                .map(|c| c.label.clone())
                .unwrap_or_default(),
            message,
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
#[inline]
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
            // Most cells have no null to strip; skip the walk for them.
            if memchr::memmem::find(text.as_bytes(), b"null").is_some() {
                strip_nulls(&mut v);
            }
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
