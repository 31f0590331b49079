//! The generated DAP tables: columns, versioned schemas, row state across mutation batches, and
//! the deterministic value of every row.
//!
//! A table starts with `rows` rows (ids `1..=rows`, commit epoch 0). Each mutation batch is a new
//! epoch `e` committed at `C(e) = 2024-01-01T00:00:00Z + e hours`; it inserts new ids, updates and
//! deletes existing ones. Only the last epoch that touched a row is remembered, and the row's
//! values are a pure function of `(table seed, id, that epoch)`, so no row is ever stored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Map, Value, json};

use crate::data::{RowGen, STATES, mix};

/// The commit time of epoch 0 (the initial load of every table).
pub fn epoch_zero() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The commit time of mutation epoch `e`.
pub fn commit_time(epoch: u64) -> DateTime<Utc> {
    epoch_zero() + Duration::hours(i64::try_from(epoch).unwrap_or(i64::MAX / 7200))
}

/// The kind of a column; decides its JSON schema, its generated values and its encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// `integer` / `int64`.
    Int,
    /// `string` with an optional `maxLength`.
    Text(Option<u32>),
    /// `string` with the table's `enum` values.
    Enum,
    /// `string` / `date-time`.
    Timestamp,
    /// `number` / `float64`.
    Float,
    /// `boolean`.
    Bool,
    /// A fixed-shape object `{a: int64, b: string}` (split by `mode=expanded`).
    Settings,
    /// An array of strings (always JSON text in tabular formats).
    Tags,
}

/// One value column of a table.
#[derive(Clone, Debug)]
pub struct Column {
    /// Column name (the `value.<name>` label).
    pub name: String,
    /// Its kind.
    pub kind: ColumnKind,
    /// Whether it is listed in `required` (never NULL).
    pub required: bool,
    /// Rows last written before this epoch have NULL here (the column did not exist yet).
    pub added_at_epoch: u64,
    salt: u64,
}

impl Column {
    fn new(name: &str, kind: ColumnKind, required: bool, added_at_epoch: u64) -> Self {
        let salt = name
            .bytes()
            .fold(0xC0FFEE_u64, |h, b| mix(h ^ u64::from(b)));
        Self {
            name: name.to_owned(),
            kind,
            required,
            added_at_epoch,
            salt,
        }
    }
}

/// One generated cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A string (text or enum).
    Text(String),
    /// A timestamp.
    Ts(DateTime<Utc>),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A nested object or array.
    Json(Value),
}

impl Cell {
    /// The JSON value of this cell (`null` for NULL).
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => json!(i),
            Cell::Text(s) => json!(s),
            Cell::Ts(ts) => json!(crate::data::format_ts(ts)),
            Cell::Float(f) => json!(f),
            Cell::Bool(b) => json!(b),
            Cell::Json(v) => v.clone(),
        }
    }
}

/// Where a row stands: the epoch that last wrote it and whether that write deleted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowState {
    /// The epoch of the last insert/update/delete of this row.
    pub epoch: u64,
    /// True if the last write was a delete.
    pub deleted: bool,
}

/// An immutable version of one table; mutations produce a new version.
#[derive(Clone, Debug)]
pub struct TableVersion {
    /// Namespace, e.g. `canvas`.
    pub namespace: String,
    /// Table name.
    pub name: String,
    /// Seed of this table's values.
    pub seed: u64,
    /// Rows of the initial load.
    pub base_rows: u64,
    /// Value columns, in schema order.
    pub columns: Vec<Column>,
    /// Allowed enum values with the epoch each became available.
    pub enum_values: Vec<(String, u64)>,
    /// Schema version (bumped by every schema change).
    pub schema_version: u64,
    /// The latest committed epoch.
    pub epoch: u64,
    /// One past the highest id ever issued.
    pub next_id: u64,
    /// Rows written after the initial load.
    pub touched: Arc<BTreeMap<u64, RowState>>,
}

/// A deterministic batch of changes.
#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mutation {
    /// New rows.
    pub inserts: u64,
    /// Existing live rows rewritten.
    pub updates: u64,
    /// Existing live rows hard-deleted.
    pub deletes: u64,
}

impl Default for Mutation {
    fn default() -> Self {
        Self {
            inserts: 5,
            updates: 5,
            deletes: 2,
        }
    }
}

impl TableVersion {
    /// A fresh table at epoch 0 with the standard column set.
    pub fn new(namespace: &str, name: &str, seed: u64, rows: u64) -> Self {
        use ColumnKind::*;
        let columns = vec![
            Column::new("name", Text(Some(255)), false, 0),
            Column::new("description", Text(None), false, 0),
            Column::new("workflow_state", Enum, true, 0),
            Column::new("created_at", Timestamp, true, 0),
            Column::new("updated_at", Timestamp, false, 0),
            Column::new("score", Float, false, 0),
            Column::new("big_number", Int, false, 0),
            Column::new("is_public", Bool, true, 0),
            Column::new("settings", Settings, false, 0),
            Column::new("tags", Tags, false, 0),
        ];
        let table_seed = mix(seed ^ mix(name.bytes().fold(17, |h, b| mix(h ^ u64::from(b)))));
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            seed: table_seed,
            base_rows: rows,
            columns,
            enum_values: STATES.iter().map(|s| ((*s).to_owned(), 0)).collect(),
            schema_version: 1,
            epoch: 0,
            next_id: rows + 1,
            touched: Arc::new(BTreeMap::new()),
        }
    }

    /// The state of row `id`, or None if it never existed.
    pub fn row_state(&self, id: u64) -> Option<RowState> {
        if let Some(state) = self.touched.get(&id) {
            return Some(*state);
        }
        (id >= 1 && id <= self.base_rows).then_some(RowState {
            epoch: 0,
            deleted: false,
        })
    }

    /// Number of rows currently alive.
    pub fn live_rows(&self) -> u64 {
        let touched_base_dead = self
            .touched
            .iter()
            .filter(|(id, s)| **id <= self.base_rows && s.deleted)
            .count() as u64;
        let inserted_live = self
            .touched
            .iter()
            .filter(|(id, s)| **id > self.base_rows && !s.deleted)
            .count() as u64;
        self.base_rows - touched_base_dead + inserted_live
    }

    /// The commit timestamp (`meta.ts`) of row `id` as last written at `epoch`.
    pub fn row_ts(&self, id: u64, epoch: u64) -> DateTime<Utc> {
        let g = RowGen::new(self.seed ^ mix(epoch), id);
        let window_ms: u64 = if epoch == 0 {
            30 * 86_400_000
        } else {
            1_800_000
        };
        let back = i64::try_from(g.below(0xD7, window_ms)).unwrap_or(0);
        commit_time(epoch) - Duration::milliseconds(back)
    }

    /// The value of every column of row `id` written at `epoch`, in column order.
    pub fn row_values(&self, id: u64, epoch: u64) -> Vec<Cell> {
        let g = RowGen::new(self.seed ^ mix(epoch), id);
        self.columns
            .iter()
            .map(|c| self.cell(&g, c, id, epoch))
            .collect()
    }

    fn cell(&self, g: &RowGen, column: &Column, id: u64, epoch: u64) -> Cell {
        if epoch < column.added_at_epoch {
            return Cell::Null;
        }
        let salt = column.salt;
        if !column.required && g.chance(salt ^ 0x0D, 10) {
            return Cell::Null;
        }
        match column.kind {
            ColumnKind::Int => Cell::Int(g.int(salt)),
            ColumnKind::Text(Some(max)) => {
                let text: String = g.text(salt).chars().take(max as usize).collect();
                Cell::Text(text)
            }
            ColumnKind::Text(None) => Cell::Text(g.text(salt)),
            ColumnKind::Enum => {
                let allowed: Vec<&str> = self
                    .enum_values
                    .iter()
                    .filter(|(_, since)| *since <= epoch)
                    .map(|(v, _)| v.as_str())
                    .collect();
                Cell::Text(g.choose(salt, &allowed).to_owned())
            }
            ColumnKind::Timestamp => {
                // Creation lies before the commit, never after it.
                let ts = self.row_ts(id, epoch) - Duration::seconds(g.below(salt, 86_400) as i64);
                let frac = g.timestamp(salt ^ 1).timestamp_subsec_nanos();
                Cell::Ts(ts.with_nanosecond_or_same(frac))
            }
            ColumnKind::Float => Cell::Float(g.float(salt)),
            ColumnKind::Bool => Cell::Bool(g.boolean(salt)),
            ColumnKind::Settings => match g.nested_json(salt) {
                Some(v) => Cell::Json(v),
                None => Cell::Null,
            },
            ColumnKind::Tags => Cell::Json(json!(g.tags(salt))),
        }
    }

    /// The schema document (`{"schema": ..., "version": N}`) in the shape §8.1 of dap.md
    /// describes: `$schema`, `additionalProperties: false` on every object, whitelisted keywords.
    pub fn versioned_schema(&self) -> Value {
        let mut value_props = Map::new();
        let mut required = Vec::new();
        for c in &self.columns {
            value_props.insert(c.name.clone(), self.column_schema(c));
            if c.required {
                required.push(json!(c.name));
            }
        }
        json!({
            "schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "title": self.name,
                "type": "object",
                "additionalProperties": false,
                "required": ["key", "meta"],
                "properties": {
                    "meta": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["ts"],
                        "properties": {
                            "ts": {"type": "string", "format": "date-time", "description": "Commit time of the record."},
                            "action": {"type": "string", "enum": ["U", "D"], "description": "U = upsert, D = delete."}
                        }
                    },
                    "key": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["id"],
                        "properties": {"id": {"type": "integer", "format": "int64", "title": "Primary key."}}
                    },
                    "value": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": required,
                        "properties": value_props
                    }
                }
            },
            "version": self.schema_version
        })
    }

    fn column_schema(&self, c: &Column) -> Value {
        match c.kind {
            ColumnKind::Int => json!({"type": "integer", "format": "int64"}),
            ColumnKind::Text(Some(max)) => json!({"type": "string", "maxLength": max}),
            ColumnKind::Text(None) => json!({"type": "string"}),
            ColumnKind::Enum => {
                let values: Vec<&str> = self.enum_values.iter().map(|(v, _)| v.as_str()).collect();
                json!({"type": "string", "enum": values})
            }
            ColumnKind::Timestamp => json!({"type": "string", "format": "date-time"}),
            ColumnKind::Float => json!({"type": "number", "format": "float64"}),
            ColumnKind::Bool => json!({"type": "boolean"}),
            ColumnKind::Settings => json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "a": {"type": "integer", "format": "int64"},
                    "b": {"type": "string"}
                }
            }),
            ColumnKind::Tags => json!({"type": "array", "items": {"type": "string"}}),
        }
    }

    /// Applies a deterministic mutation batch as the next epoch.
    pub fn mutate(&self, batch: Mutation) -> Self {
        let mut next = self.clone();
        next.epoch += 1;
        let epoch = next.epoch;
        let mut touched = (*self.touched).clone();
        let g = RowGen::new(self.seed ^ 0xBA7C4, epoch);
        let mut chosen = HashSet::new();
        for (kind_salt, count, deleted) in [(1_u64, batch.updates, false), (2, batch.deletes, true)]
        {
            let mut picked = 0;
            // Bounded attempts: a table with few live rows gets fewer changes, never a hang.
            for attempt in 0..count.saturating_mul(20) {
                if picked == count || self.next_id <= 1 {
                    break;
                }
                let id = 1 + g.below(kind_salt << 40 | attempt, self.next_id - 1);
                let alive = self.row_state(id).is_some_and(|s| !s.deleted);
                if alive && chosen.insert(id) {
                    touched.insert(id, RowState { epoch, deleted });
                    picked += 1;
                }
            }
        }
        for id in self.next_id..self.next_id + batch.inserts {
            touched.insert(
                id,
                RowState {
                    epoch,
                    deleted: false,
                },
            );
        }
        next.next_id += batch.inserts;
        next.touched = Arc::new(touched);
        next
    }

    /// Adds a nullable text column; rows written from the next epoch on carry values.
    pub fn add_column(&self, name: &str) -> Self {
        let mut next = self.clone();
        next.columns.push(Column::new(
            name,
            ColumnKind::Text(None),
            false,
            self.epoch + 1,
        ));
        next.schema_version += 1;
        next
    }

    /// Adds an enum value to `workflow_state`; rows written from the next epoch on may use it.
    pub fn add_enum_value(&self, value: &str) -> Self {
        let mut next = self.clone();
        next.enum_values.push((value.to_owned(), self.epoch + 1));
        next.schema_version += 1;
        next
    }

    /// True if a column with this name exists (or is the key).
    pub fn has_column(&self, name: &str) -> bool {
        name == "id" || self.columns.iter().any(|c| c.name == name)
    }

    /// True if the enum already has this value.
    pub fn has_enum_value(&self, value: &str) -> bool {
        self.enum_values.iter().any(|(v, _)| v == value)
    }
}

trait WithNanos {
    fn with_nanosecond_or_same(self, nanos: u32) -> Self;
}

impl WithNanos for DateTime<Utc> {
    fn with_nanosecond_or_same(self, nanos: u32) -> Self {
        use chrono::Timelike;
        self.with_nanosecond(nanos).unwrap_or(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_deterministic_and_tracks_rows() {
        let t = TableVersion::new("canvas", "users", 1, 100);
        let a = t.mutate(Mutation {
            inserts: 3,
            updates: 4,
            deletes: 2,
        });
        let b = t.mutate(Mutation {
            inserts: 3,
            updates: 4,
            deletes: 2,
        });
        assert_eq!(*a.touched, *b.touched);
        assert_eq!(a.live_rows(), 101);
        assert_eq!(a.next_id, 104);
        assert_eq!(a.touched.values().filter(|s| s.deleted).count(), 2);
    }

    #[test]
    fn row_ts_lies_in_its_epoch_window() {
        let t = TableVersion::new("canvas", "users", 1, 10);
        let ts = t.row_ts(3, 2);
        assert!(ts <= commit_time(2) && ts > commit_time(1));
        assert!(t.row_ts(3, 0) <= epoch_zero());
    }
}
