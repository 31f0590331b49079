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
