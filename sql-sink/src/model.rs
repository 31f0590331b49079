//! The backend-neutral table model: [`TableDef`], [`Column`], [`SqlType`].

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ident;

/// Namespaces reserved for the sink's own bookkeeping.
pub(crate) const META_NAMESPACE: &str = "sql_sink";

/// A table's identity: its namespace (PostgreSQL schema) and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableName {
    /// Namespace, e.g. `canvas`. A PostgreSQL schema; a name prefix in SQLite.
    pub schema: String,
    /// Table name within the namespace, e.g. `users`.
    pub name: String,
}

impl TableName {
    /// A table name from its namespace and name.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Check both parts (see [`crate::ident::validate`]); the namespace must
    /// also not be the sink's own (`sql_sink`), contain `__` (the SQLite
    /// layout's separator) or end with `_`.
    pub fn validate(&self) -> Result<(), Error> {
        ident::validate("namespace", &self.schema)?;
        ident::validate("table", &self.name)?;
        if self.schema == META_NAMESPACE {
            return Err(Error::InvalidIdentifier {
                what: "namespace",
                name: self.schema.clone(),
                reason: "it is reserved for the sink's meta table",
            });
        }
        // SQLite names tables `<namespace>__<table>`; these two rules make
        // that unambiguous (the first `__` is always the separator).
        if self.schema.contains("__") {
            return Err(Error::InvalidIdentifier {
                what: "namespace",
                name: ident::shorten(&self.schema),
                reason: "it contains `__`, the separator of the SQLite table layout",
            });
        }
        if self.schema.ends_with('_') {
            return Err(Error::InvalidIdentifier {
                what: "namespace",
                name: ident::shorten(&self.schema),
                reason: "it ends with `_`, which would make SQLite table names ambiguous",
            });
        }
        Ok(())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}",
            ident::shorten(&self.schema),
            ident::shorten(&self.name)
        )
    }
}

/// A column's SQL type, in terms both backends understand.
///
/// | variant | PostgreSQL | SQLite (affinity, stored form) |
/// |---|---|---|
/// | `Bool` | `boolean` | `INTEGER` 0/1 |
/// | `Int16`/`Int32`/`Int64` | `smallint`/`integer`/`bigint` | `INTEGER` |
/// | `Float32`/`Float64` | `real`/`double precision` | `REAL` |
/// | `Decimal` | `numeric(p,s)` or `numeric` | `TEXT` (exact digits) |
/// | `Text` / `Varchar(n)` | `text` / `varchar(n)` | `TEXT` (length checked) |
/// | `Timestamp` | `timestamptz` | `TEXT` RFC 3339 UTC, microseconds |
/// | `Date` / `Time` | `date` / `time` | `TEXT` `YYYY-MM-DD` / `HH:MM:SS[.ffffff]` |
/// | `Uuid` | `uuid` | `TEXT` lowercase hyphenated |
/// | `Json` | `jsonb` | `TEXT` (validated JSON) |
/// | `Enum` | `text` + `CHECK (col IN (...))` | `TEXT` (values checked on load) |
///
/// Enums are `text` with a CHECK constraint in PostgreSQL rather than
/// `CREATE TYPE .. AS ENUM`, because adding a value to a real enum type cannot
/// be used in the same transaction, and the sink evolves and loads a table in
/// one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SqlType {
    /// true/false.
    Bool,
    /// 16-bit integer.
    Int16,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// 32-bit float.
    Float32,
    /// 64-bit float.
    Float64,
    /// Exact decimal; `None` precision means unconstrained.
    Decimal {
        /// Total digits, if constrained.
        precision: Option<u32>,
        /// Digits after the point (meaningful only with a precision).
        scale: u32,
    },
    /// Unbounded text.
    Text,
    /// Text of at most `n` characters.
    Varchar(u32),
    /// An instant (timestamp with time zone, stored in UTC). Cells without an
    /// offset are read as UTC.
    Timestamp,
    /// A calendar date.
    Date,
    /// A time of day (a trailing `Z` in input is accepted and ignored).
    Time,
    /// A UUID.
    Uuid,
    /// A JSON document (`jsonb` in PostgreSQL).
    Json,
    /// One of a fixed set of strings.
    Enum {
        /// The enum's name (e.g. `users__workflow_state`); informational.
        name: String,
        /// Allowed values, in order.
        values: Vec<String>,
    },
}

impl SqlType {
    /// An enum type from its name and values.
    pub fn enumeration<S: Into<String>>(
        name: impl Into<String>,
        values: impl IntoIterator<Item = S>,
    ) -> Self {
        Self::Enum {
            name: name.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }

    /// The PostgreSQL type this maps to.
    pub fn postgres_type(&self) -> String {
        match self {
            Self::Bool => "boolean".into(),
            Self::Int16 => "smallint".into(),
            Self::Int32 => "integer".into(),
            Self::Int64 => "bigint".into(),
            Self::Float32 => "real".into(),
            Self::Float64 => "double precision".into(),
            Self::Decimal {
                precision: Some(p),
                scale,
            } => format!("numeric({p},{scale})"),
            Self::Decimal {
                precision: None, ..
            } => "numeric".into(),
            Self::Text | Self::Enum { .. } => "text".into(),
            Self::Varchar(n) => format!("varchar({n})"),
            Self::Timestamp => "timestamptz".into(),
            Self::Date => "date".into(),
            Self::Time => "time".into(),
            Self::Uuid => "uuid".into(),
            Self::Json => "jsonb".into(),
        }
    }

    /// The SQLite column type (which decides its affinity).
    pub fn sqlite_type(&self) -> &'static str {
        match self {
            Self::Bool | Self::Int16 | Self::Int32 | Self::Int64 => "INTEGER",
            Self::Float32 | Self::Float64 => "REAL",
            _ => "TEXT",
        }
    }

    fn check(&self, column: &str) -> Result<(), String> {
        match self {
            Self::Varchar(0) => Err(format!("column `{column}`: varchar(0) can hold nothing")),
            Self::Decimal {
                precision: Some(p),
                scale,
            } if *p == 0 || *p > 1000 || scale > p => Err(format!(
                "column `{column}`: decimal({p},{scale}) needs 1 <= precision <= 1000 and scale <= precision"
            )),
            Self::Enum { values, .. } => {
                let mut seen = HashSet::new();
                for v in values {
                    if v.contains('\0') {
                        return Err(format!("column `{column}`: an enum value contains NUL"));
                    }
                    if !seen.insert(v.as_str()) {
                        return Err(format!(
                            "column `{column}`: enum value `{}` is listed twice",
                            ident::shorten(v)
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enum { name, values } => {
                write!(f, "enum {}({} values)", ident::shorten(name), values.len())
            }
            other => f.write_str(&other.postgres_type()),
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name, exactly as the source spells it.
    pub name: String,
    /// Its type.
    pub sql_type: SqlType,
    /// Whether NULL is allowed. Primary key columns are never nullable.
    pub nullable: bool,
}

impl Column {
    /// A column; `nullable` says whether NULL is allowed.
    pub fn new(name: impl Into<String>, sql_type: SqlType, nullable: bool) -> Self {
        Self {
            name: name.into(),
            sql_type,
            nullable,
        }
    }
}

/// A table definition: namespace, name, columns in order, primary key.
///
/// Rows given to a load have one cell per column, in this order.
///
/// ```
/// use sql_sink::{Column, SqlType, TableDef};
/// let def = TableDef::new("canvas", "users", vec![
///     Column::new("id", SqlType::Int64, false),
///     Column::new("name", SqlType::Varchar(255), true),
///     Column::new("workflow_state", SqlType::enumeration("users__workflow_state", ["active", "deleted"]), false),
/// ], ["id"]);
/// def.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    /// Namespace (PostgreSQL schema), e.g. `canvas`.
    pub schema: String,
    /// Table name, e.g. `users`.
    pub name: String,
    /// Columns in row order.
    pub columns: Vec<Column>,
    /// Primary key column names, in key order (composite keys allowed).
    pub primary_key: Vec<String>,
}

impl TableDef {
    /// A table definition.
    pub fn new<S: Into<String>>(
        schema: impl Into<String>,
        name: impl Into<String>,
        columns: Vec<Column>,
        primary_key: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
            columns,
            primary_key: primary_key.into_iter().map(Into::into).collect(),
        }
    }

    /// The table's [`TableName`].
    pub fn table_name(&self) -> TableName {
        TableName::new(self.schema.clone(), self.name.clone())
    }

    /// Position of a column by exact name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Check names, types and key: every identifier valid, at least one
    /// column, no two columns whose names differ only by case (SQLite column
    /// names are case-insensitive), a non-empty key of existing columns.
    pub fn validate(&self) -> Result<(), Error> {
        let table = self.table_name();
        table.validate()?;
        let bad = |reason: String| Error::InvalidDefinition {
            table: table.clone(),
            reason,
        };
        if self.columns.is_empty() {
            return Err(bad("it has no columns".into()));
        }
        let mut seen = HashSet::new();
        for c in &self.columns {
            ident::validate("column", &c.name)?;
            if !seen.insert(c.name.to_lowercase()) {
                return Err(bad(format!(
                    "column `{}` appears twice (names are compared case-insensitively)",
                    ident::shorten(&c.name)
                )));
            }
            c.sql_type.check(&c.name).map_err(&bad)?;
        }
        if self.primary_key.is_empty() {
            return Err(bad("it has no primary key; give the key columns".into()));
        }
        let mut key_seen = HashSet::new();
        for k in &self.primary_key {
            if self.column_index(k).is_none() {
                return Err(bad(format!(
                    "primary key column `{}` is not one of its columns",
                    ident::shorten(k)
                )));
            }
            if !key_seen.insert(k.as_str()) {
                return Err(bad(format!(
                    "primary key column `{}` is listed twice",
                    ident::shorten(k)
                )));
            }
        }
        Ok(())
    }

    /// The definition with key columns forced to NOT NULL.
    pub(crate) fn normalized(&self) -> TableDef {
        let mut def = self.clone();
        for c in &mut def.columns {
            if self.primary_key.contains(&c.name) {
                c.nullable = false;
            }
        }
        def
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(cols: Vec<Column>, pk: &[&str]) -> TableDef {
        TableDef::new("ns", "t", cols, pk.iter().copied())
    }

    #[test]
    fn validation_catches_mistakes() {
        let ok = def(vec![Column::new("id", SqlType::Int64, false)], &["id"]);
        ok.validate().unwrap();
        assert!(def(vec![], &["id"]).validate().is_err());
        assert!(
            def(vec![Column::new("id", SqlType::Int64, false)], &[])
                .validate()
                .is_err()
        );
        assert!(
            def(vec![Column::new("id", SqlType::Int64, false)], &["x"])
                .validate()
                .is_err()
        );
        let dup = def(
            vec![
                Column::new("Id", SqlType::Int64, false),
                Column::new("id", SqlType::Text, true),
            ],
            &["Id"],
        );
        assert!(dup.validate().is_err());
        let bad_enum = def(
            vec![Column::new(
                "id",
                SqlType::enumeration("e", ["a", "a"]),
                false,
            )],
            &["id"],
        );
        assert!(bad_enum.validate().is_err());
        let reserved = TableDef::new(
            "sql_sink",
            "tables",
            vec![Column::new("id", SqlType::Int64, false)],
            ["id"],
        );
        assert!(reserved.validate().is_err());
        assert!(TableName::new("a__b", "t").validate().is_err());
        assert!(TableName::new("a_", "t").validate().is_err());
        assert!(TableName::new("canvas_logs", "_t").validate().is_ok());
    }

    #[test]
    fn definition_round_trips_through_json() {
        let d = def(
            vec![
                Column::new("id", SqlType::Int64, false),
                Column::new(
                    "d",
                    SqlType::Decimal {
                        precision: Some(19),
                        scale: 9,
                    },
                    true,
                ),
                Column::new("e", SqlType::enumeration("e", ["a", "b"]), true),
            ],
            &["id"],
        );
        let text = serde_json::to_string(&d).unwrap();
        let back: TableDef = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
    }
}
