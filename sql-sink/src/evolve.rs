//! Schema evolution: from the definition a table has to the one requested.
//!
//! Rules: new columns are added (nullable, since existing rows have no value);
//! types are widened along safe paths (int16 → int32 → int64, ints → float64
//! or unconstrained decimal, float32 → float64, varchar(n) → varchar(m ≥ n) →
//! text, enum/uuid → text, enum values are unioned); a request for a
//! *narrower* type the table can already hold is satisfied by keeping the
//! wider type; a column that disappeared upstream is kept (made nullable)
//! and reported; NOT NULL is dropped when asked but never added later.
//! Anything else is an [`Error::IncompatibleChange`] or
//! [`Error::PrimaryKeyChanged`].

use crate::error::Error;
use crate::model::{Column, SqlType, TableDef, TableName};

/// What [`crate::Sink::ensure_table`] or a load's start did to a table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EvolutionReport {
    /// Whether the table was created.
    pub created: bool,
    /// Columns added.
    pub added_columns: Vec<String>,
    /// Columns whose type was widened: (column, old type, new type).
    pub widened_columns: Vec<(String, SqlType, SqlType)>,
    /// Enum values added: (column, new values).
    pub enum_values_added: Vec<(String, Vec<String>)>,
    /// Columns that now accept NULL.
    pub now_nullable: Vec<String>,
    /// Columns the table has but the requested definition lacks. They are
    /// kept, with their data, and filled with NULL for new rows.
    pub kept_columns: Vec<String>,
}

impl EvolutionReport {
    /// Whether nothing in the database changed.
    pub fn is_unchanged(&self) -> bool {
        !self.created
            && self.added_columns.is_empty()
            && self.widened_columns.is_empty()
            && self.enum_values_added.is_empty()
            && self.now_nullable.is_empty()
    }
}

/// One DDL step for a backend to carry out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Create the table with the planned definition.
    Create,
    /// Add a column (always nullable).
    AddColumn(Column),
    /// Change a column's type (enum → text included).
    SetType {
        column: String,
        from: SqlType,
        to: SqlType,
    },
    /// Replace an enum column's allowed values.
    SetEnumValues { column: String, values: Vec<String> },
    /// Allow NULL.
    DropNotNull(String),
}

/// The result of planning: the report, the definition the table will have,
/// and the steps to get there.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub report: EvolutionReport,
    pub physical: TableDef,
    pub steps: Vec<Step>,
}

/// Plan the change from `existing` (None: no table) to `target`.
pub(crate) fn plan(existing: Option<&TableDef>, target: &TableDef) -> Result<Plan, Error> {
    target.validate()?;
    let target = target.normalized();
    let Some(existing) = existing else {
        return Ok(Plan {
            report: EvolutionReport {
                created: true,
                ..Default::default()
            },
            physical: target,
            steps: vec![Step::Create],
        });
    };
    let table = target.table_name();
    if existing.primary_key != target.primary_key {
        return Err(Error::PrimaryKeyChanged {
            table,
            from: existing.primary_key.join(", "),
            to: target.primary_key.join(", "),
        });
    }
    let mut physical = existing.clone();
    physical.schema = target.schema.clone();
    physical.name = target.name.clone();
    let mut report = EvolutionReport::default();
    let mut steps = Vec::new();
    for col in &target.columns {
        match physical.column_index(&col.name) {
            None => {
                let added = Column::new(col.name.clone(), col.sql_type.clone(), true);
                report.added_columns.push(col.name.clone());
                steps.push(Step::AddColumn(added.clone()));
                physical.columns.push(added);
            }
            Some(i) => {
                let current = &mut physical.columns[i];
                evolve_column(&table, current, col, &mut report, &mut steps)?;
            }
        }
    }
    for col in &mut physical.columns {
        if target.column_index(&col.name).is_none() {
            report.kept_columns.push(col.name.clone());
            if !col.nullable {
                col.nullable = true;
                report.now_nullable.push(col.name.clone());
                steps.push(Step::DropNotNull(col.name.clone()));
            }
        }
    }
    Ok(Plan {
        report,
        physical,
        steps,
    })
}

fn evolve_column(
    table: &TableName,
    current: &mut Column,
    wanted: &Column,
    report: &mut EvolutionReport,
    steps: &mut Vec<Step>,
) -> Result<(), Error> {
    match merge_type(&current.sql_type, &wanted.sql_type) {
        None => {
            return Err(Error::IncompatibleChange {
                table: table.clone(),
                column: wanted.name.clone(),
                from: current.sql_type.to_string(),
                to: wanted.sql_type.to_string(),
            });
        }
        Some(merged) if merged == current.sql_type => {}
        Some(merged) => {
            match (&current.sql_type, &merged) {
                (SqlType::Enum { values: old, .. }, SqlType::Enum { values: new, .. }) => {
                    let added: Vec<String> =
                        new.iter().filter(|v| !old.contains(v)).cloned().collect();
                    if !added.is_empty() {
                        report.enum_values_added.push((wanted.name.clone(), added));
                        steps.push(Step::SetEnumValues {
                            column: wanted.name.clone(),
                            values: new.clone(),
                        });
                    }
                }
                _ => {
                    report.widened_columns.push((
                        wanted.name.clone(),
                        current.sql_type.clone(),
                        merged.clone(),
                    ));
                    steps.push(Step::SetType {
                        column: wanted.name.clone(),
                        from: current.sql_type.clone(),
                        to: merged.clone(),
                    });
                }
            }
            current.sql_type = merged;
        }
    }
    if wanted.nullable && !current.nullable {
        current.nullable = true;
        report.now_nullable.push(wanted.name.clone());
        steps.push(Step::DropNotNull(wanted.name.clone()));
    }
    Ok(())
}

/// The type a column must have to hold both what it holds now and values of
/// `wanted`, if a safe path exists.
pub(crate) fn merge_type(current: &SqlType, wanted: &SqlType) -> Option<SqlType> {
    use SqlType::*;
    if current == wanted {
        return Some(current.clone());
    }
    if holds(current, wanted) {
        return Some(current.clone());
    }
    if holds(wanted, current) {
        return Some(wanted.clone());
    }
    match (current, wanted) {
        (Enum { values: a, .. }, Enum { name, values: b }) => {
            let mut values = a.clone();
            values.extend(b.iter().filter(|v| !a.contains(v)).cloned());
            Some(Enum {
                name: name.clone(),
                values,
            })
        }
        // Both fit an unconstrained decimal.
        (Decimal { .. } | Int16 | Int32 | Int64, Decimal { .. } | Int16 | Int32 | Int64) => {
            Some(Decimal {
                precision: None,
                scale: 0,
            })
        }
        (Varchar(_) | Enum { .. } | Uuid, Varchar(_) | Enum { .. } | Uuid) => Some(Text),
        _ => None,
    }
}

/// Whether a column of type `wide` can store every value of type `narrow`
/// unchanged, and converting `narrow` to `wide` is safe in both backends.
fn holds(wide: &SqlType, narrow: &SqlType) -> bool {
    use SqlType::*;
    match (wide, narrow) {
        (a, b) if a == b => true,
        (Int32, Int16) | (Int64, Int16 | Int32) => true,
        (Float64, Int16 | Int32 | Float32) => true,
        (
            Decimal {
                precision: None, ..
            },
            Int16 | Int32 | Int64 | Decimal { .. },
        ) => true,
        (
            Decimal {
                precision: Some(p),
                scale: s,
            },
            Decimal {
                precision: Some(q),
                scale: t,
            },
        ) => s >= t && p - s >= q - t,
        (Varchar(n), Varchar(m)) => n >= m,
        (Text, Varchar(_) | Enum { .. } | Uuid) => true,
        (Varchar(n), Enum { values, .. }) => {
            values.iter().all(|v| v.chars().count() <= *n as usize)
        }
        (Enum { values: a, .. }, Enum { values: b, .. }) => b.iter().all(|v| a.contains(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(cols: Vec<Column>) -> TableDef {
        TableDef::new("ns", "t", cols, ["id"])
    }
    fn id() -> Column {
        Column::new("id", SqlType::Int64, false)
    }

    #[test]
    fn new_table_is_created() {
        let p = plan(None, &t(vec![id()])).unwrap();
        assert!(p.report.created);
        assert_eq!(p.steps, vec![Step::Create]);
    }

    #[test]
    fn widening_adding_and_keeping() {
        let old = t(vec![
            id(),
            Column::new("n", SqlType::Int32, false),
            Column::new("s", SqlType::Varchar(10), true),
            Column::new("gone", SqlType::Text, false),
            Column::new("e", SqlType::enumeration("e", ["a"]), true),
        ]);
        let new = t(vec![
            id(),
            Column::new("n", SqlType::Int64, false),
            Column::new("s", SqlType::Text, true),
            Column::new("e", SqlType::enumeration("e", ["a", "b"]), true),
            Column::new("added", SqlType::Bool, false),
        ]);
        let p = plan(Some(&old), &new).unwrap();
        assert_eq!(p.report.added_columns, vec!["added"]);
        assert_eq!(p.report.kept_columns, vec!["gone"]);
        assert_eq!(p.report.now_nullable, vec!["gone"]);
        assert_eq!(p.report.widened_columns.len(), 2);
        assert_eq!(
            p.report.enum_values_added,
            vec![("e".to_string(), vec!["b".to_string()])]
        );
        assert!(p.physical.column_index("gone").is_some());
        assert!(
            p.physical
                .columns
                .iter()
                .find(|c| c.name == "added")
                .unwrap()
                .nullable
        );
        // Planning again from the result changes nothing but still reports the kept column.
        let again = plan(Some(&p.physical), &new).unwrap();
        assert!(again.report.is_unchanged());
        assert_eq!(again.report.kept_columns, vec!["gone"]);
    }

    #[test]
    fn narrower_request_keeps_wider_type() {
        let old = t(vec![id(), Column::new("s", SqlType::Text, true)]);
        let new = t(vec![id(), Column::new("s", SqlType::Varchar(5), true)]);
        let p = plan(Some(&old), &new).unwrap();
        assert!(p.report.is_unchanged());
        assert_eq!(p.physical.columns[1].sql_type, SqlType::Text);
    }

    #[test]
    fn impossible_changes_are_errors() {
        let old = t(vec![id(), Column::new("s", SqlType::Text, true)]);
        let new = t(vec![id(), Column::new("s", SqlType::Int64, true)]);
        let err = plan(Some(&old), &new).unwrap_err();
        assert!(matches!(err, Error::IncompatibleChange { .. }));
        assert!(err.to_string().contains("begin_replace"), "{err}");
        let rekeyed = TableDef::new(
            "ns",
            "t",
            vec![id(), Column::new("s", SqlType::Text, false)],
            ["id", "s"],
        );
        assert!(matches!(
            plan(Some(&old), &rekeyed).unwrap_err(),
            Error::PrimaryKeyChanged { .. }
        ));
    }
}
