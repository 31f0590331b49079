//! Deterministic rows and how they change from one generation to the next.
//!
//! Generation 0 is the initial tenant; each published differential is one more generation.
//! Nothing is stored: whether a key exists at generation `g`, which version of its row it
//! has, and the row's values are pure functions of (data set, key index, generation), so a
//! data set of ten million rows costs no memory and every extract can be rebuilt on demand.
//!
//! Per generation: `inserts_per_gen` new keys appear; each live key is updated with
//! probability `updates_per_mille`/1000; data sets with deletes lose keys with probability
//! `deletes_per_mille`/1000 (hard: the row disappears from later fulls and is never in a
//! differential; soft: `IsDeleted` becomes `True` and the row is in that differential).

use super::catalog::{DataSetDef, DataSetKind, DeleteStyle};
use crate::data::{self, RowGen};
use chrono::{DateTime, Duration, Utc};

/// A generated row: one entry per column, `None` = NULL (an empty, unquoted CSV field).
pub type Row = Vec<Option<String>>;

/// How rows of one data set evolve over generations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Evolution {
    pub base_rows: u64,
    pub inserts_per_gen: u64,
    pub updates_per_mille: u64,
    pub deletes_per_mille: u64,
    pub style: DeleteStyle,
    pub salt: u64,
}

/// Where a key stands at some generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyState {
    /// Not (or no longer) in the data set.
    Absent,
    /// Present; `version` is the generation its row last changed.
    Live { version: u32 },
    /// Soft-deleted at generation `version`: present with `IsDeleted = True`.
    SoftDeleted { version: u32 },
}

const ROLL_DELETE: u64 = 0xDE1E7E;
const ROLL_UPDATE: u64 = 0x0BDA7E;

/// A well-mixed hash of three numbers; the only source of "randomness" here.
pub(crate) fn mix(a: u64, b: u64, c: u64) -> u64 {
    data::mix(a ^ data::mix(b ^ data::mix(c)))
}

impl Evolution {
    /// Number of key indexes ever created up to generation `g` (live or not).
    pub fn key_count(&self, g: u32) -> u64 {
        self.base_rows + u64::from(g) * self.inserts_per_gen
    }

    fn born(&self, k: u64) -> Option<u32> {
        if k < self.base_rows {
            return Some(0);
        }
        let offset = k - self.base_rows;
        offset
            .checked_div(self.inserts_per_gen)
            .and_then(|q| u32::try_from(q + 1).ok())
    }

    fn rolls(&self, k: u64, g: u32, what: u64, per_mille: u64) -> bool {
        per_mille > 0 && mix(self.salt ^ what, k, u64::from(g)) % 1000 < per_mille
    }

    /// The state of key index `k` at generation `g`.
    pub fn state(&self, k: u64, g: u32) -> KeyState {
        let Some(born) = self.born(k).filter(|b| *b <= g) else {
            return KeyState::Absent;
        };
        let mut version = born;
        for gg in born + 1..=g {
            if self.style != DeleteStyle::None
                && self.rolls(k, gg, ROLL_DELETE, self.deletes_per_mille)
            {
                return match self.style {
                    DeleteStyle::Soft => KeyState::SoftDeleted { version: gg },
                    _ => KeyState::Absent,
                };
            }
            if self.rolls(k, gg, ROLL_UPDATE, self.updates_per_mille) {
                version = gg;
            }
        }
        KeyState::Live { version }
    }

    /// Whether key `k`'s row belongs in the differential of generation `g` (inserted,
    /// updated or soft-deleted at `g`), and its state if so.
    pub fn diff_state(&self, k: u64, g: u32) -> Option<KeyState> {
        match self.state(k, g) {
            s @ (KeyState::Live { version } | KeyState::SoftDeleted { version })
                if version == g =>
            {
                Some(s)
            }
            _ => None,
        }
    }
}

/// Rendering choices for literal values and the column set of one extract.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowStyle {
    /// Write `bit` columns as `1`/`0` instead of `True`/`False`.
    pub bools_as_digits: bool,
    /// The extract has the [`APPENDED_COLUMN`] (a minor version added it at the end).
    pub appended_column: bool,
    /// Generation the column appeared in: rows last changed before it hold NULL there, so a
    /// differential-only sync and a full agree.
    pub appended_from: u32,
}

/// Name of the column a minor version appends (see `BdsConfig::append_column_from_day`).
pub const APPENDED_COLUMN: &str = "ExternalId";

/// Origin of all generated dates; also the sandbox's initial virtual time.
pub(crate) fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_578_400, 0).unwrap_or_default() // 2026-01-05T02:00:00Z
}

/// Formats a timestamp the way the sandbox writes `datetime2` columns and JSON dates.
pub(crate) fn fmt_time(t: DateTime<Utc>) -> String {
    // Hand-rolled: chrono's `format` re-parses its pattern on every call, and this runs
    // several times per generated row.
    use chrono::{Datelike, Timelike};
    let millis = t.timestamp_subsec_millis().min(999);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

const ROLES: &[(&str, i64)] = &[
    ("Student", 110),
    ("Instructor", 109),
    ("Teaching Assistant", 111),
    ("Guest, \"Auditor\"", 112),
];

/// Per-row value picker over [`RowGen`]: every call uses the next column number.
struct Pick {
    rowgen: RowGen,
    field: u64,
    style: RowStyle,
}

impl Pick {
    fn next(&mut self) -> u64 {
        self.field += 1;
        self.rowgen.bits(self.field)
    }
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
    fn text(&mut self) -> String {
        self.field += 1;
        self.rowgen.text(self.field)
    }
    fn plain(&mut self) -> &'static str {
        ["ada", "grace", "alan", "edsger", "barbara", "donald"][self.next() as usize % 6]
    }
    /// NULL, an empty string, or text: the three must stay distinguishable end to end.
    fn nullable_text(&mut self) -> Option<String> {
        match self.next() % 5 {
            0 => None,
            1 => Some(String::new()),
            _ => Some(self.text()),
        }
    }
    fn bool(&mut self) -> String {
        let b = self.next().is_multiple_of(2);
        self.fmt_bool(b)
    }
    fn fmt_bool(&self, b: bool) -> String {
        match (self.style.bools_as_digits, b) {
            (true, true) => "1".into(),
            (true, false) => "0".into(),
            (false, true) => "True".into(),
            (false, false) => "False".into(),
        }
    }
    fn time_near(&mut self, base: DateTime<Utc>, spread_days: i64) -> String {
        let millis = (self.next() % (spread_days.max(1) as u64 * 86_400_000)) as i64;
        fmt_time(base - Duration::milliseconds(millis))
    }
    fn maybe_time(&mut self, base: DateTime<Utc>) -> Option<String> {
        if self.one_in(4) {
            None
        } else {
            Some(self.time_near(base, 365))
        }
    }
    fn decimal(&mut self, max: u64) -> String {
        let r = self.next();
        format!("{}.{:09}", r % (max + 1), (r >> 20) % 1_000_000_000)
    }
}

/// Builds the row of key index `k` in the given state (`Absent` is never passed).
pub(crate) fn build_row(
    def: &DataSetDef,
    salt: u64,
    k: u64,
    state: KeyState,
    style: RowStyle,
) -> Row {
    let (version, deleted) = match state {
        KeyState::Live { version } => (version, false),
        KeyState::SoftDeleted { version } => (version, true),
        KeyState::Absent => (0, false),
    };
    let changed_at = epoch() + Duration::days(i64::from(version));
    let mut p = Pick {
        rowgen: RowGen::new(mix(salt, 0, u64::from(version)), k),
        field: 0,
        style,
    };
    let n = |v: u64| Some(v.to_string());
    let row_version = n(1000 + u64::from(version));
    let mut row = match def.kind {
        DataSetKind::Users => {
            let first = p.text();
            vec![
                n(100 + k),
                Some(format!("user{k}.{}", p.plain().to_lowercase())),
                if p.one_in(3) {
                    None
                } else {
                    Some(format!("OD-{k:06}"))
                },
                Some(first),
                p.nullable_text(),
                Some(p.text()),
                Some(p.bool()),
                p.nullable_text(),
                if p.one_in(4) {
                    None
                } else {
                    Some(format!("user{k}@example.edu"))
                },
                p.maybe_time(changed_at),
                p.maybe_time(changed_at),
                row_version,
                n(100 + p.next() % 5),
                Some(p.time_near(changed_at, 30)),
            ]
        }
        DataSetKind::OrgUnits => vec![
            n(6600 + k),
            Some("Sandbox University".into()),
            Some(["Course Offering", "Department", "Semester", "Section"][(k % 4) as usize].into()),
            Some(format!("{} {k}", p.text())),
            p.nullable_text(),
            p.maybe_time(changed_at),
            p.maybe_time(changed_at + Duration::days(120)),
            Some(p.bool()),
            Some(p.time_near(epoch(), 900)),
            Some(p.fmt_bool(deleted)),
            if deleted {
                Some(fmt_time(changed_at))
            } else {
                None
            },
            None,
            row_version,
            n(1 + k % 4),
        ],
        DataSetKind::UserEnrollments => {
            let (role, role_id) = ROLES[(p.next() % ROLES.len() as u64) as usize];
            vec![
                n(6600 + k / 1000),
                n(100 + k % 1000),
                Some(role.into()),
                Some(p.time_near(changed_at, 60)),
                p.nullable_text(),
                n(role_id as u64),
            ]
        }
        DataSetKind::GradeResults => vec![
            n(50_000 + k / 10_000),
            n(6600 + (k / 100) % 100),
            n(100 + k % 100),
            Some(p.decimal(100)),
            Some("100.000000000".into()),
            if p.one_in(3) {
                None
            } else {
                Some(p.decimal(20))
            },
            if p.one_in(3) {
                None
            } else {
                Some("20.000000000".into())
            },
            Some(p.bool()),
            Some(p.bool()),
            Some(p.time_near(changed_at, 2)),
            n(100 + p.next() % 50),
            p.nullable_text(),
            p.nullable_text(),
            if p.one_in(2) { None } else { Some(p.bool()) },
            if p.one_in(2) {
                None
            } else {
                Some(["A+", "B", "C-", "F"][(p.next() % 4) as usize].into())
            },
            p.maybe_time(changed_at),
            row_version,
        ],
    };
    if style.appended_column {
        let value = (version >= style.appended_from).then(|| format!("EXT-{}", p.text()));
        row.push(value);
    }
    row
}

/// Column names of an extract in CSV order: the documented ones, plus the appended one.
pub(crate) fn column_names(def: &DataSetDef, style: RowStyle) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = def.columns.iter().map(|c| c.name).collect();
    if style.appended_column {
        names.push(APPENDED_COLUMN);
    }
    names
}

/// The primary-key values of key index `k`, in `primary_key` order (cheap, no row build).
pub(crate) fn key_of(def: &DataSetDef, k: u64) -> Vec<String> {
    match def.kind {
        DataSetKind::Users => vec![(100 + k).to_string()],
        DataSetKind::OrgUnits => vec![(6600 + k).to_string()],
        DataSetKind::UserEnrollments => {
            vec![(6600 + k / 1000).to_string(), (100 + k % 1000).to_string()]
        }
        DataSetKind::GradeResults => vec![
            (50_000 + k / 10_000).to_string(),
            (6600 + (k / 100) % 100).to_string(),
            (100 + k % 100).to_string(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalog::DATA_SETS;
    use super::*;
    use std::collections::HashSet;

    fn evo(style: DeleteStyle) -> Evolution {
        Evolution {
            base_rows: 200,
            inserts_per_gen: 5,
            updates_per_mille: 100,
            deletes_per_mille: 30,
            style,
            salt: 7,
        }
    }

    #[test]
    fn rows_match_columns_and_keys_are_unique() {
        for def in DATA_SETS {
            let e = evo(def.deletes);
            let mut keys = HashSet::new();
            for k in 0..e.key_count(3) {
                let row = build_row(
                    def,
                    7,
                    k,
                    KeyState::Live { version: 1 },
                    RowStyle::default(),
                );
                assert_eq!(row.len(), def.columns.len(), "{}", def.name);
                let pk: Vec<String> = def
                    .primary_key
                    .iter()
                    .map(|c| {
                        let i = def
                            .columns
                            .iter()
                            .position(|x| x.name == *c)
                            .unwrap_or(usize::MAX);
                        row.get(i).cloned().flatten().unwrap_or_default()
                    })
                    .collect();
                assert_eq!(pk, key_of(def, k));
                for (v, c) in row.iter().zip(def.columns) {
                    assert!(c.nullable || v.is_some(), "{} {} is NULL", def.name, c.name);
                }
                assert!(keys.insert(pk), "duplicate key in {}", def.name);
            }
        }
    }

    #[test]
    fn generated_values_include_the_nasty_cases() {
        let def = &DATA_SETS[1];
        let rows: Vec<Row> = (0..500)
            .map(|k| {
                build_row(
                    def,
                    1,
                    k,
                    KeyState::Live { version: 0 },
                    RowStyle::default(),
                )
            })
            .collect();
        let cells: Vec<&Option<String>> = rows.iter().flatten().collect();
        assert!(cells.iter().any(|c| c.is_none()));
        assert!(cells.iter().any(|c| c.as_deref() == Some("")));
        assert!(
            cells
                .iter()
                .any(|c| c.as_deref().is_some_and(|s| s.contains('\n')))
        );
        assert!(
            cells
                .iter()
                .any(|c| c.as_deref().is_some_and(|s| s.contains(',')))
        );
        assert!(
            cells
                .iter()
                .any(|c| c.as_deref().is_some_and(|s| s.contains('"')))
        );
    }

    #[test]
    fn evolution_inserts_updates_and_deletes_consistently() {
        let e = evo(DeleteStyle::Hard);
        let (mut updated, mut deleted, mut inserted) = (0, 0, 0);
        for g in 1..=4 {
            for k in 0..e.key_count(g) {
                let before = e.state(k, g - 1);
                let now = e.state(k, g);
                match (before, now) {
                    (KeyState::Absent, KeyState::Live { version }) => {
                        assert_eq!(version, g);
                        inserted += 1;
                    }
                    (KeyState::Live { .. }, KeyState::Absent) => deleted += 1,
                    (KeyState::Live { version: a }, KeyState::Live { version: b }) if a != b => {
                        assert_eq!(b, g);
                        updated += 1;
                    }
                    (KeyState::Absent, KeyState::Absent)
                    | (KeyState::Live { .. }, KeyState::Live { .. }) => {}
                    other => panic!("impossible transition {other:?}"),
                }
                // The differential holds exactly the inserted and updated rows.
                let in_diff = e.diff_state(k, g).is_some();
                assert_eq!(
                    in_diff,
                    matches!(now, KeyState::Live { version } if version == g)
                );
            }
        }
        assert_eq!(inserted, 20);
        assert!(
            updated > 20 && deleted > 5,
            "updated {updated} deleted {deleted}"
        );
    }

    #[test]
    fn times_are_iso_utc_with_milliseconds() {
        let t = DateTime::from_timestamp(1_621_367_362, 476_999_999).unwrap_or_default();
        assert_eq!(fmt_time(t), "2021-05-18T19:49:22.476Z");
        assert_eq!(fmt_time(epoch()), "2026-01-05T02:00:00.000Z");
    }

    #[test]
    fn soft_deletes_stay_visible_and_final() {
        let e = evo(DeleteStyle::Soft);
        let k = (0..200)
            .find(|k| matches!(e.state(*k, 3), KeyState::SoftDeleted { .. }))
            .expect("some soft delete");
        let KeyState::SoftDeleted { version } = e.state(k, 3) else {
            unreachable!()
        };
        assert_eq!(
            e.diff_state(k, version),
            Some(KeyState::SoftDeleted { version })
        );
        assert_eq!(e.state(k, 10), KeyState::SoftDeleted { version });
    }
}
