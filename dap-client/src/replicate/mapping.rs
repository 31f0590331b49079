//! JSON Schema → SQL table (see the type table in the module docs), and the
//! binding of an object's header columns to the table's columns.

use sql_sink::{Column, RowBatch, SqlType, TableDef};

use crate::record::Column as HeaderColumn;
use crate::schema::{FieldDef, FieldKind, Section, TableSchema};

/// The SQL type of one schema field.
pub(crate) fn sql_type(table: &str, field: &FieldDef) -> SqlType {
    match &field.kind {
        FieldKind::Integer { format } => match format.as_deref() {
            Some("int16") => SqlType::Int16,
            Some("int32") => SqlType::Int32,
            _ => SqlType::Int64,
        },
        FieldKind::Number { format } => match format.as_deref() {
            Some("float32") => SqlType::Float32,
            _ => SqlType::Float64,
        },
        FieldKind::Boolean => SqlType::Bool,
        FieldKind::String {
            format,
            max_length,
            enum_values,
        } => {
            if !enum_values.is_empty() {
                return SqlType::enumeration(
                    format!("{table}__{}", field.name),
                    enum_values.iter().cloned(),
                );
            }
            match format.as_deref() {
                Some("date-time") => SqlType::Timestamp,
                Some("date") => SqlType::Date,
                Some("time") => SqlType::Time,
                Some("uuid") => SqlType::Uuid,
                _ => match max_length.and_then(|n| u32::try_from(n).ok()) {
                    Some(n) if n > 0 => SqlType::Varchar(n),
                    _ => SqlType::Text,
                },
            }
        }
        FieldKind::Struct(_) | FieldKind::Json => SqlType::Json,
    }
}

/// The table definition for a DAP table: key fields first (they form the
/// primary key, composite keys included), then the value fields; `meta` is
/// not stored. A key field is never nullable; a value field is NOT NULL
/// when the schema lists it in `required`.
pub(crate) fn table_def(
    namespace: &str,
    table: &str,
    schema: &TableSchema,
) -> Result<TableDef, String> {
    if schema.key.is_empty() {
        return Err("the schema has no `key` properties, so rows cannot be matched".into());
    }
    let mut columns = Vec::with_capacity(schema.key.len() + schema.value.len());
    for f in &schema.key {
        columns.push(Column::new(f.name.clone(), sql_type(table, f), false));
    }
    for f in &schema.value {
        if schema.key.iter().any(|k| k.name == f.name) {
            return Err(format!("`{}` is both a key and a value property", f.name));
        }
        columns.push(Column::new(f.name.clone(), sql_type(table, f), !f.required));
    }
    let key: Vec<String> = schema.key.iter().map(|f| f.name.clone()).collect();
    Ok(TableDef::new(namespace, table, columns, key))
}

/// Where one header column's cells go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Not stored (`meta.ts`).
    Ignore,
    /// `meta.action`.
    Action,
    /// A table column, by index in the definition.
    Column(usize),
}

/// How the rows of one object (one header) become upsert and delete rows.
#[derive(Debug)]
pub(crate) struct Binding {
    /// For each table column, the header position holding it (None: NULL).
    column_sources: Vec<Option<usize>>,
    /// For each key column, the header position holding it.
    key_sources: Vec<usize>,
    action: Option<usize>,
}

/// What a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowKind {
    Upsert,
    Delete,
}

impl Binding {
    /// Binds an object's header to the table; fails on a column the
    /// schema does not know (storing the row without it would lose data)
    /// or a missing key column.
    pub(crate) fn new(def: &TableDef, header: &[HeaderColumn]) -> Result<Self, String> {
        let mut column_sources = vec![None; def.columns.len()];
        let mut action = None;
        for (pos, col) in header.iter().enumerate() {
            let target = match (col.section(), col.path()) {
                (Some(Section::Meta), [name]) if name == "action" => Target::Action,
                (Some(Section::Meta), _) => Target::Ignore,
                (Some(Section::Key | Section::Value), [name]) => match def.column_index(name) {
                    Some(i) => Target::Column(i),
                    None => {
                        return Err(format!(
                            "column `{}` is not in the schema (was the schema changed during the job?)",
                            col.label()
                        ));
                    }
                },
                _ => {
                    return Err(format!(
                        "column `{}` is not a condensed `key.*`/`value.*`/`meta.*` column",
                        col.label()
                    ));
                }
            };
            match target {
                Target::Ignore => {}
                Target::Action => action = Some(pos),
                Target::Column(i) => column_sources[i] = Some(pos),
            }
        }
        let mut key_sources = Vec::with_capacity(def.primary_key.len());
        for k in &def.primary_key {
            let pos = def
                .column_index(k)
                .and_then(|i| column_sources.get(i).copied().flatten())
                .ok_or_else(|| format!("the key column `key.{k}` is missing"))?;
            key_sources.push(pos);
        }
        Ok(Self {
            column_sources,
            key_sources,
            action,
        })
    }

    /// Appends the row whose cells `cell(pos)` returns to `upserts` or, for
    /// a delete, its key to `deletes`.
    pub(crate) fn push<'a>(
        &self,
        cell: impl Fn(usize) -> Option<&'a str>,
        upserts: &mut RowBatch,
        deletes: &mut RowBatch,
    ) -> Result<RowKind, String> {
        let kind = match self.action.map(&cell) {
            None | Some(Some("U")) => RowKind::Upsert,
            Some(Some("D")) => RowKind::Delete,
            Some(other) => {
                return Err(format!(
                    "unknown meta.action {:?} (expected U or D)",
                    other.unwrap_or("NULL")
                ));
            }
        };
        match kind {
            RowKind::Upsert => {
                for src in &self.column_sources {
                    upserts.push_cell(src.and_then(&cell));
                }
                upserts.end_row().map_err(|e| e.to_string())?;
            }
            RowKind::Delete => {
                for &src in &self.key_sources {
                    deletes.push_cell(cell(src));
                }
                deletes.end_row().map_err(|e| e.to_string())?;
            }
        }
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::VersionedSchema;
    use sql_sink::{Sink, Watermark};

    fn schema(value_props: serde_json::Value, required: &[&str]) -> TableSchema {
        let doc: VersionedSchema = serde_json::from_value(serde_json::json!({
            "version": 1,
            "schema": {"type": "object", "properties": {
                "meta": {"type": "object", "properties": {"ts": {"type": "string", "format": "date-time"}}},
                "key": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer", "format": "int64"}}},
                "value": {"type": "object", "required": required, "properties": value_props}
            }}
        }))
        .unwrap();
        TableSchema::from_versioned(&doc)
    }

    #[test]
    fn types_follow_the_documented_table() {
        let s = schema(
            serde_json::json!({
                "i16": {"type": "integer", "format": "int16"},
                "i32": {"type": "integer", "format": "int32"},
                "i": {"type": "integer"},
                "f32": {"type": "number", "format": "float32"},
                "n": {"type": "number"},
                "b": {"type": "boolean"},
                "ts": {"type": "string", "format": "date-time"},
                "d": {"type": "string", "format": "date"},
                "t": {"type": "string", "format": "time"},
                "u": {"type": "string", "format": "uuid"},
                "e": {"type": "string", "enum": ["x", "y"]},
                "v": {"type": "string", "maxLength": 12},
                "s": {"type": "string"},
                "o": {"type": "object", "properties": {"a": {"type": "integer"}}},
                "arr": {"type": "array", "items": {"type": "string"}}
            }),
            &["s"],
        );
        let def = table_def("canvas", "t", &s).unwrap();
        let ty = |n: &str| def.columns[def.column_index(n).unwrap()].sql_type.clone();
        assert_eq!(ty("i16"), SqlType::Int16);
        assert_eq!(ty("i32"), SqlType::Int32);
        assert_eq!(ty("i"), SqlType::Int64);
        assert_eq!(ty("f32"), SqlType::Float32);
        assert_eq!(ty("n"), SqlType::Float64);
        assert_eq!(ty("b"), SqlType::Bool);
        assert_eq!(ty("ts"), SqlType::Timestamp);
        assert_eq!(ty("d"), SqlType::Date);
        assert_eq!(ty("t"), SqlType::Time);
        assert_eq!(ty("u"), SqlType::Uuid);
        assert_eq!(ty("e"), SqlType::enumeration("t__e", ["x", "y"]));
        assert_eq!(ty("v"), SqlType::Varchar(12));
        assert_eq!(ty("s"), SqlType::Text);
        assert_eq!(ty("o"), SqlType::Json);
        assert_eq!(ty("arr"), SqlType::Json);
        assert_eq!(def.primary_key, vec!["id"]);
        assert_eq!(def.columns[0].name, "id");
        assert!(!def.columns[0].nullable);
        assert!(!def.columns[def.column_index("s").unwrap()].nullable);
        assert!(def.columns[def.column_index("v").unwrap()].nullable);
    }

    #[test]
    fn a_schema_without_key_is_refused() {
        let doc: VersionedSchema = serde_json::from_value(serde_json::json!({
            "version": 1,
            "schema": {"type": "object", "properties": {
                "value": {"type": "object", "properties": {"a": {"type": "string"}}}
            }}
        }))
        .unwrap();
        let err = table_def("canvas", "t", &TableSchema::from_versioned(&doc)).unwrap_err();
        assert!(err.contains("no `key`"), "{err}");
    }

    /// Column names a server could send: quotes, spaces, semicolons. They
    /// are stored and read back exactly, and nothing else is touched.
    #[tokio::test]
    async fn hostile_column_names_are_stored_safely() {
        let hostile = ["a\"b", "semi;colon DROP TABLE x; --", "with space", "it's"];
        let props: serde_json::Map<String, serde_json::Value> = hostile
            .iter()
            .map(|n| (n.to_string(), serde_json::json!({"type": "string"})))
            .collect();
        let s = schema(serde_json::Value::Object(props), &[]);
        let def = table_def("canvas", "we\"ird; table", &s).unwrap();
        let mut labels = vec!["meta.ts".to_string(), "key.id".to_string()];
        labels.extend(hostile.iter().map(|n| format!("value.{n}")));
        let tsv = format!(
            "{}\n2024-01-01T00:00:00Z\t1\tq\"uote\ts;c\t\\N\t'\n",
            labels.join("\t")
        );
        let mut reader = crate::RecordReader::new(tsv.as_bytes(), crate::Format::Tsv).unwrap();
        let row = reader.next_row().await.unwrap().unwrap();
        let binding = Binding::new(&def, row.columns()).unwrap();
        let mut upserts = RowBatch::new(def.columns.len());
        let mut deletes = RowBatch::new(1);
        let kind = binding
            .push(|i| row.get(i), &mut upserts, &mut deletes)
            .unwrap();
        assert_eq!(kind, RowKind::Upsert);

        let dir = tempfile::tempdir().unwrap();
        let mut sink = Sink::open_sqlite(dir.path().join("t.db")).await.unwrap();
        let mut load = sink.begin_load(&def).await.unwrap();
        load.upsert(&mut upserts).await.unwrap();
        load.commit(Watermark::new("w")).await.unwrap();
        let rows = sink.read_rows(&def.table_name()).await.unwrap();
        let status = sink.table_status(&def.table_name()).await.unwrap().unwrap();
        let stored: Vec<(String, sql_sink::Value)> = status
            .definition
            .columns
            .iter()
            .map(|c| c.name.clone())
            .zip(rows[0].clone())
            .collect();
        let get = |n: &str| stored.iter().find(|(c, _)| c == n).map(|(_, v)| v.clone());
        assert_eq!(get("a\"b"), Some(sql_sink::Value::Text("q\"uote".into())));
        assert_eq!(
            get("semi;colon DROP TABLE x; --"),
            Some(sql_sink::Value::Text("s;c".into()))
        );
        assert_eq!(get("with space"), Some(sql_sink::Value::Null));
        assert_eq!(get("it's"), Some(sql_sink::Value::Text("'".into())));
    }

    #[test]
    fn unknown_columns_and_actions_are_errors() {
        let s = schema(serde_json::json!({"a": {"type": "string"}}), &[]);
        let def = table_def("canvas", "t", &s).unwrap();
        let header = |labels: &[&str]| -> Vec<HeaderColumn> {
            let mut out = Vec::new();
            let text = format!("{}\n", labels.join("\t"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let row_text = format!("{text}{}\n", vec!["x"; labels.len()].join("\t"));
                let mut r =
                    crate::RecordReader::new(row_text.as_bytes(), crate::Format::Tsv).unwrap();
                let row = r.next_row().await.unwrap().unwrap();
                out = row.columns().to_vec();
            });
            out
        };
        let err = Binding::new(&def, &header(&["key.id", "value.a", "value.zz"])).unwrap_err();
        assert!(err.contains("value.zz"), "{err}");
        let err = Binding::new(&def, &header(&["value.a"])).unwrap_err();
        assert!(err.contains("key.id"), "{err}");
        let b = Binding::new(&def, &header(&["meta.action", "key.id", "value.a"])).unwrap();
        let mut u = RowBatch::new(2);
        let mut d = RowBatch::new(1);
        let cells = [Some("X"), Some("1"), Some("v")];
        assert!(
            b.push(|i| cells[i], &mut u, &mut d)
                .unwrap_err()
                .contains("\"X\"")
        );
        let cells = [Some("D"), Some("1"), None];
        assert_eq!(
            b.push(|i| cells[i], &mut u, &mut d).unwrap(),
            RowKind::Delete
        );
        assert_eq!((u.len(), d.len()), (0, 1));
    }
}
