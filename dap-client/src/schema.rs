//! A table's JSON Schema turned into typed field definitions (specs/dap.md
//! §8.1), used to type the text cells of TSV and CSV output and, by the
//! replicator, to derive SQL columns.
//!
//! Parsing is lenient: keywords this crate does not know are ignored, and a
//! property whose type cannot be determined is treated as free-form JSON.

use serde_json::{Map, Value};

use crate::model::VersionedSchema;

/// The part of a record a field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Section {
    /// `meta.*`: commit timestamp and action.
    Meta,
    /// `key.*`: the primary key.
    Key,
    /// `value.*`: every other column.
    Value,
}

impl Section {
    /// The label prefix of the section (`meta`, `key`, `value`).
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Meta => "meta",
            Section::Key => "key",
            Section::Value => "value",
        }
    }

    pub(crate) fn from_label(label: &str) -> Option<Self> {
        match label {
            "meta" => Some(Section::Meta),
            "key" => Some(Section::Key),
            "value" => Some(Section::Value),
            _ => None,
        }
    }
}

/// The type of a field as the schema describes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FieldKind {
    /// An integer; `format` is `int16`, `int32`, `int64` or absent.
    Integer {
        /// The integer format, if given.
        format: Option<String>,
    },
    /// A floating point or decimal number.
    Number {
        /// The number format (`float32`, `float64`), if given.
        format: Option<String>,
    },
    /// `true` or `false`.
    Boolean,
    /// A string, possibly with a `format` (`date-time`, `date`, `uuid`, ...),
    /// a maximum length, or a closed set of values.
    String {
        /// The string format, if given.
        format: Option<String>,
        /// `maxLength`, if given.
        max_length: Option<u64>,
        /// `enum` values, empty when the string is open.
        enum_values: Vec<String>,
    },
    /// An object with fixed properties (expanded into several columns in
    /// `expanded` mode, one JSON column in `condensed` mode).
    Struct(Vec<FieldDef>),
    /// Free-form JSON: arrays, objects without properties, unions.
    Json,
}

/// One property of a table schema.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct FieldDef {
    /// Property name.
    pub name: String,
    /// Its type.
    pub kind: FieldKind,
    /// Listed in the parent's `required` (a NOT NULL column).
    pub required: bool,
    /// `title` or `description`, for column comments.
    pub description: Option<String>,
}

/// The typed fields of one table at one schema version.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TableSchema {
    /// The schema version.
    pub version: i64,
    /// `meta` fields (`ts`, `action`).
    pub meta: Vec<FieldDef>,
    /// Primary key fields, in schema order.
    pub key: Vec<FieldDef>,
    /// Other fields, in schema order.
    pub value: Vec<FieldDef>,
}

/// How a text cell is turned into a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellType {
    Text,
    Integer,
    Number,
    Boolean,
    Json,
}

impl TableSchema {
    /// Reads the fields out of a versioned schema.
    ///
    /// ```
    /// # use dap_client::{schema::TableSchema, VersionedSchema};
    /// let doc: VersionedSchema = serde_json::from_str(r#"{"version":2,"schema":{"type":"object",
    ///   "properties":{"key":{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]},
    ///   "value":{"type":"object","properties":{"name":{"type":"string"}}}}}}"#).unwrap();
    /// let table = TableSchema::from_versioned(&doc);
    /// assert_eq!(table.key[0].name, "id");
    /// assert!(table.key[0].required && !table.value[0].required);
    /// ```
    pub fn from_versioned(doc: &VersionedSchema) -> Self {
        let root = &doc.schema;
        let definitions = root.get("definitions").and_then(Value::as_object);
        let section = |name: &str| {
            root.get("properties")
                .and_then(|p| p.get(name))
                .map(|s| fields_of(s, definitions))
                .unwrap_or_default()
        };
        Self {
            version: doc.version,
            meta: section("meta"),
            key: section("key"),
            value: section("value"),
        }
    }

    /// The fields of a section.
    pub fn section(&self, section: Section) -> &[FieldDef] {
        match section {
            Section::Meta => &self.meta,
            Section::Key => &self.key,
            Section::Value => &self.value,
        }
    }

    /// The definition at a dotted path below a section (`["settings", "a"]`).
    pub fn field(&self, section: Section, path: &[&str]) -> Option<&FieldDef> {
        let (first, rest) = path.split_first()?;
        let mut field = self.section(section).iter().find(|f| f.name == *first)?;
        for part in rest {
            let FieldKind::Struct(children) = &field.kind else {
                return None;
            };
            field = children.iter().find(|f| f.name == *part)?;
        }
        Some(field)
    }

    pub(crate) fn cell_type(&self, section: Section, path: &[&str]) -> CellType {
        match self.field(section, path).map(|f| &f.kind) {
            Some(FieldKind::Integer { .. }) => CellType::Integer,
            Some(FieldKind::Number { .. }) => CellType::Number,
            Some(FieldKind::Boolean) => CellType::Boolean,
            Some(FieldKind::Struct(_) | FieldKind::Json) => CellType::Json,
            Some(FieldKind::String { .. }) | None => CellType::Text,
        }
    }
}

fn resolve<'a>(schema: &'a Value, definitions: Option<&'a Map<String, Value>>) -> &'a Value {
    // Only local `#/definitions/<Name>` references exist in DAP schemas; one
    // level of indirection is followed (a chain of refs is not expected).
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/definitions/")
            .and_then(|name| definitions?.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

fn fields_of(schema: &Value, definitions: Option<&Map<String, Value>>) -> Vec<FieldDef> {
    let schema = resolve(schema, definitions);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, prop)| FieldDef {
            name: name.clone(),
            kind: kind_of(prop, definitions),
            required: required.contains(&name.as_str()),
            description: resolve(prop, definitions)
                .get("description")
                .or_else(|| prop.get("title"))
                .and_then(Value::as_str)
                .map(str::to_string),
        })
        .collect()
}

fn kind_of(prop: &Value, definitions: Option<&Map<String, Value>>) -> FieldKind {
    let prop = resolve(prop, definitions);
    let text = |k: &str| prop.get(k).and_then(Value::as_str).map(str::to_string);
    match prop.get("type").and_then(Value::as_str) {
        Some("integer") => FieldKind::Integer {
            format: text("format"),
        },
        Some("number") => FieldKind::Number {
            format: text("format"),
        },
        Some("boolean") => FieldKind::Boolean,
        Some("string") => FieldKind::String {
            format: text("format"),
            max_length: prop.get("maxLength").and_then(Value::as_u64),
            enum_values: prop
                .get("enum")
                .and_then(Value::as_array)
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        },
        Some("object") if prop.get("properties").is_some_and(Value::is_object) => {
            FieldKind::Struct(fields_of(prop, definitions))
        }
        // A `const` without a type is a string literal in DAP schemas.
        None if prop.get("const").is_some_and(Value::is_string) => FieldKind::String {
            format: None,
            max_length: None,
            enum_values: Vec::new(),
        },
        _ => FieldKind::Json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_types_nesting_refs_and_required() {
        let doc: VersionedSchema = serde_json::from_value(serde_json::json!({
            "version": 3,
            "schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "definitions": {"State": {"type": "string", "enum": ["active", "deleted"]}},
                "properties": {
                    "meta": {"type": "object", "properties": {"ts": {"type": "string", "format": "date-time"}}},
                    "key": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer", "format": "int64"}}},
                    "value": {"type": "object", "required": ["state"], "properties": {
                        "state": {"$ref": "#/definitions/State"},
                        "score": {"type": "number"},
                        "ok": {"type": "boolean"},
                        "settings": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "free": {"type": "object"}
                    }}
                }
            }
        }))
        .unwrap();
        let t = TableSchema::from_versioned(&doc);
        assert_eq!(t.version, 3);
        assert!(matches!(&t.key[0].kind, FieldKind::Integer { format: Some(f) } if f == "int64"));
        let state = t.field(Section::Value, &["state"]).unwrap();
        assert!(state.required);
        assert!(
            matches!(&state.kind, FieldKind::String { enum_values, .. } if enum_values.len() == 2)
        );
        assert_eq!(t.cell_type(Section::Value, &["settings"]), CellType::Json);
        assert_eq!(
            t.cell_type(Section::Value, &["settings", "a"]),
            CellType::Integer
        );
        assert_eq!(t.cell_type(Section::Value, &["tags"]), CellType::Json);
        assert_eq!(t.cell_type(Section::Value, &["free"]), CellType::Json);
        assert_eq!(t.cell_type(Section::Value, &["score"]), CellType::Number);
        assert_eq!(t.cell_type(Section::Value, &["ok"]), CellType::Boolean);
        assert_eq!(
            t.cell_type(Section::Value, &["not_yet_in_schema"]),
            CellType::Text
        );
        assert_eq!(t.cell_type(Section::Meta, &["ts"]), CellType::Text);
    }
}
