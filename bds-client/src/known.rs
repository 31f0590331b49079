//! Well-known data sets: plugin ids and primary keys.
//!
//! Plugin ids appear to be the same for every Brightspace tenant. Primary keys
//! come from D2L's data set reference pages; they can change between major
//! BDS versions, so they are *defaults*: [`PrimaryKeys`] lets users override
//! them or add keys for data sets not listed here.

use std::collections::HashMap;

/// A data set this crate knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KnownDataSet {
    /// The exact BDS name, e.g. `"User Enrollments"`.
    pub name: &'static str,
    /// Plugin id of the full variant, where known.
    pub full_plugin_id: Option<&'static str>,
    /// Plugin id of the differential variant, where known.
    pub differential_plugin_id: Option<&'static str>,
    /// Schema id (new `/datasets/bds` routes), where known.
    pub schema_id: Option<&'static str>,
    /// Primary key columns, as named in the CSV header.
    pub primary_key: &'static [&'static str],
}

const fn ds(
    name: &'static str,
    full: Option<&'static str>,
    key: &'static [&'static str],
) -> KnownDataSet {
    KnownDataSet {
        name,
        full_plugin_id: full,
        differential_plugin_id: None,
        schema_id: None,
        primary_key: key,
    }
}

/// The data sets of `specs/bds.md` §9.
pub const KNOWN_DATA_SETS: &[KnownDataSet] = &[
    KnownDataSet {
        name: "Users",
        full_plugin_id: Some("1d6d722e-b572-456f-97c1-d526570daa6b"),
        differential_plugin_id: None,
        schema_id: Some("b21a6414-38f8-4da8-9a65-8b5586f9fe3b"),
        primary_key: &["UserId"],
    },
    KnownDataSet {
        name: "User Enrollments",
        full_plugin_id: Some("533f84c8-b2ad-4688-94dc-c839952e9c4f"),
        differential_plugin_id: Some("a78735f2-7210-4a57-aac1-e0f6bd714349"),
        schema_id: Some("5ced736e-4c4c-4b01-96c8-1c7d404ac5c2"),
        primary_key: &["OrgUnitId", "UserId"],
    },
    ds(
        "Organizational Units",
        Some("07a9e561-e22f-4e82-8dd6-7bfb14c91776"),
        &["OrgUnitId"],
    ),
    ds(
        "Grade Objects",
        Some("793668a8-2c58-4e5e-b263-412d28d5703f"),
        &["GradeObjectId"],
    ),
    ds(
        "Grade Results",
        Some("9d8a96b4-8145-416d-bd18-11402bc58f8d"),
        &["GradeObjectId", "OrgUnitId", "UserId"],
    ),
    ds(
        "Organizational Unit Ancestors",
        None,
        &["OrgUnitId", "AncestorOrgUnitId"],
    ),
    ds(
        "Role Details",
        Some("bd61f20b-be91-4b93-b449-46361e2c323f"),
        &["RoleId"],
    ),
    ds(
        "Course Access",
        None,
        &["OrgUnitId", "UserId", "DayAccessed"],
    ),
    ds("Content Objects", None, &["ContentObjectId"]),
    ds(
        "Content User Progress",
        None,
        &["ContentObjectId", "UserId"],
    ),
    ds("Quiz Attempts", None, &["AttemptId"]),
    ds(
        "User Logins",
        Some("20794201-b8fe-4010-9197-9f4997f91531"),
        &["LoginAttemptId"],
    ),
    ds(
        "Enrollments and Withdrawals",
        Some("88cfcc22-ce8b-4dab-8d42-2b9da92f29cf"),
        &["LogId"],
    ),
    ds(
        "Discussion Posts",
        Some("bce64f34-acee-415e-aceb-e3a38ddf476f"),
        &["PostId"],
    ),
    ds(
        "Assignment Submissions",
        None,
        &["DropboxId", "SubmitterId"],
    ),
];

/// Normalises a data set name for matching: case, spaces and punctuation are
/// ignored, as is a `Full`/`Differential` qualifier
/// (`"Organizational Units (Full)"` matches `"OrganizationalUnits"`).
pub fn normalize_name(name: &str) -> String {
    let mut key: String = name
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    for suffix in ["differential", "diff", "full"] {
        if key.len() > suffix.len()
            && let Some(stripped) = key.strip_suffix(suffix)
        {
            key.truncate(stripped.len());
            break;
        }
    }
    key
}

/// Finds a known data set by name (see [`normalize_name`]), plugin id or schema id.
pub fn find_known(name_or_id: &str) -> Option<&'static KnownDataSet> {
    let wanted = name_or_id.trim();
    KNOWN_DATA_SETS
        .iter()
        .find(|d| {
            [d.full_plugin_id, d.differential_plugin_id, d.schema_id]
                .into_iter()
                .flatten()
                .any(|id| id.eq_ignore_ascii_case(wanted))
        })
        .or_else(|| {
            let key = normalize_name(wanted);
            KNOWN_DATA_SETS
                .iter()
                .find(|d| normalize_name(d.name) == key)
        })
}

/// Primary keys by data set: the built-in defaults plus user overrides.
///
/// ```
/// use bds_client::PrimaryKeys;
///
/// let mut keys = PrimaryKeys::default();
/// assert_eq!(keys.get("User Enrollments").unwrap(), ["OrgUnitId", "UserId"]);
/// keys.insert("Survey Results", ["SurveyId", "UserId"]);
/// assert_eq!(keys.get("survey results").unwrap(), ["SurveyId", "UserId"]);
/// assert!(keys.get("Unheard Of").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKeys {
    by_name: HashMap<String, Vec<String>>,
}

impl Default for PrimaryKeys {
    fn default() -> Self {
        let by_name = KNOWN_DATA_SETS
            .iter()
            .map(|d| {
                (
                    normalize_name(d.name),
                    d.primary_key.iter().map(|c| c.to_string()).collect(),
                )
            })
            .collect();
        PrimaryKeys { by_name }
    }
}

impl PrimaryKeys {
    /// No keys at all, not even the built-in ones.
    pub fn empty() -> Self {
        PrimaryKeys {
            by_name: HashMap::new(),
        }
    }

    /// Sets (or overrides) the key of a data set.
    pub fn insert<S: Into<String>>(
        &mut self,
        data_set: &str,
        columns: impl IntoIterator<Item = S>,
    ) -> &mut Self {
        self.by_name.insert(
            normalize_name(data_set),
            columns.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// The key columns of a data set, by name.
    pub fn get(&self, data_set: &str) -> Option<&[String]> {
        self.by_name
            .get(&normalize_name(data_set))
            .map(Vec::as_slice)
            .filter(|k| !k.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_across_spellings_and_variants() {
        for spelling in [
            "Organizational Units",
            "OrganizationalUnits",
            "organizational units (Full)",
            "Organizational Units Differential",
        ] {
            assert_eq!(
                normalize_name(spelling),
                "organizationalunits",
                "{spelling}"
            );
        }
        assert_eq!(
            normalize_name("Full"),
            "full",
            "a name that is only a qualifier is kept"
        );
    }

    #[test]
    fn finds_by_name_plugin_id_or_schema_id() {
        assert_eq!(
            find_known("user enrollments").unwrap().name,
            "User Enrollments"
        );
        assert_eq!(
            find_known("A78735F2-7210-4a57-aac1-e0f6bd714349")
                .unwrap()
                .name,
            "User Enrollments"
        );
        assert_eq!(
            find_known("b21a6414-38f8-4da8-9a65-8b5586f9fe3b")
                .unwrap()
                .name,
            "Users"
        );
        assert!(find_known("Nope").is_none());
    }

    #[test]
    fn user_enrollments_is_not_keyed_on_role_id() {
        assert_eq!(
            find_known("User Enrollments").unwrap().primary_key,
            ["OrgUnitId", "UserId"]
        );
    }

    #[test]
    fn overrides_replace_the_default_key() {
        let mut keys = PrimaryKeys::default();
        keys.insert("Users", ["UserName"]);
        assert_eq!(keys.get("USERS").unwrap(), ["UserName"]);
        assert!(PrimaryKeys::empty().get("Users").is_none());
    }
}
