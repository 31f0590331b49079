//! The data sets the fake BDS tenant publishes: names, plugin and schema ids, columns and keys.
//!
//! Full plugin ids and the User Enrollments / Users ids are the real, global constants from
//! bds.md §9; the ids bds.md marks `?` are invented (stable) GUIDs. Columns follow the
//! documented order (= CSV order) of the current (version 9) schemas.

/// How a data set records deletions in its differential extracts (bds.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteStyle {
    /// Rows are never deleted.
    None,
    /// Deleted rows vanish from fulls and never appear in differentials.
    Hard,
    /// Deleted rows stay, with `IsDeleted = True`, and appear in the differential as an update.
    Soft,
}

/// One column of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name exactly as in the CSV header (PascalCase).
    pub name: &'static str,
    /// Documented SQL type, e.g. `int`, `nvarchar(256)`, `bit`, `datetime2`, `decimal(19,9)`.
    pub sql_type: &'static str,
    /// Whether the column may be NULL (an empty, unquoted CSV field).
    pub nullable: bool,
}

/// Which generated data set a definition describes; drives row generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataSetKind {
    /// `Users`, keyed by `UserId`.
    Users,
    /// `Organizational Units`, keyed by `OrgUnitId`, soft deletes.
    OrgUnits,
    /// `User Enrollments`, keyed by (`OrgUnitId`, `UserId`), hard deletes.
    UserEnrollments,
    /// `Grade Results`, keyed by (`GradeObjectId`, `OrgUnitId`, `UserId`).
    GradeResults,
}

/// Static description of one data set.
#[derive(Debug, Clone, Copy)]
pub struct DataSetDef {
    /// Which data set this is.
    pub kind: DataSetKind,
    /// Exact BDS name, e.g. `User Enrollments`.
    pub name: &'static str,
    /// Description shown in listings.
    pub description: &'static str,
    /// `SchemaId` on the `/datasets/bds` routes.
    pub schema_id: &'static str,
    /// Plugin id of the full extracts.
    pub full_plugin: &'static str,
    /// Plugin id of the differential extracts.
    pub diff_plugin: &'static str,
    /// Columns in CSV order.
    pub columns: &'static [ColumnDef],
    /// Primary-key column names.
    pub primary_key: &'static [&'static str],
    /// How deletions show up.
    pub deletes: DeleteStyle,
}

const fn col(name: &'static str, sql_type: &'static str, nullable: bool) -> ColumnDef {
    ColumnDef {
        name,
        sql_type,
        nullable,
    }
}

const USERS_COLUMNS: &[ColumnDef] = &[
    col("UserId", "int", false),
    col("UserName", "nvarchar(270)", false),
    col("OrgDefinedId", "nvarchar(100)", true),
    col("FirstName", "nvarchar(64)", false),
    col("MiddleName", "nvarchar(64)", true),
    col("LastName", "nvarchar(64)", false),
    col("IsActive", "bit", true),
    col("Organization", "nvarchar(256)", true),
    col("ExternalEmail", "nvarchar(256)", true),
    col("SignupDate", "datetime2", true),
    col("FirstLoginDate", "datetime2", true),
    col("Version", "bigint", true),
    col("OrgRoleId", "int", true),
    col("LastAccessed", "datetime2", false),
];

const ORG_UNITS_COLUMNS: &[ColumnDef] = &[
    col("OrgUnitId", "int", false),
    col("Organization", "nvarchar(256)", false),
    col("Type", "nvarchar(50)", false),
    col("Name", "nvarchar(256)", true),
    col("Code", "nvarchar(256)", true),
    col("StartDate", "datetime2", true),
    col("EndDate", "datetime2", true),
    col("IsActive", "bit", false),
    col("CreatedDate", "datetime2", false),
    col("IsDeleted", "bit", true),
    col("DeletedDate", "datetime2", true),
    col("RecycledDate", "datetime2", true),
    col("Version", "bigint", false),
    col("OrgUnitTypeId", "int", false),
];

const USER_ENROLLMENTS_COLUMNS: &[ColumnDef] = &[
    col("OrgUnitId", "int", false),
    col("UserId", "int", false),
    col("RoleName", "nvarchar(60)", false),
    col("EnrollmentDate", "datetime2", false),
    col("EnrollmentType", "nvarchar(50)", true),
    col("RoleId", "int", false),
];

const GRADE_RESULTS_COLUMNS: &[ColumnDef] = &[
    col("GradeObjectId", "int", false),
    col("OrgUnitId", "int", false),
    col("UserId", "int", false),
    col("PointsNumerator", "decimal(19,9)", true),
    col("PointsDenominator", "decimal(19,9)", true),
    col("WeightedNumerator", "decimal(19,9)", true),
    col("WeightedDenominator", "decimal(19,9)", true),
    col("IsReleased", "bit", true),
    col("IsDropped", "bit", false),
    col("LastModified", "datetime2", true),
    col("LastModifiedBy", "int", true),
    col("Comments", "nvarchar(1000)", true),
    col("PrivateComments", "nvarchar(1000)", true),
    col("IsExempt", "bit", true),
    col("GradeText", "nvarchar(100)", true),
    col("GradeReleasedDate", "datetime2", true),
    col("Version", "bigint", true),
];

/// Every data set the sandbox publishes, in listing order.
pub static DATA_SETS: &[DataSetDef] = &[
    DataSetDef {
        kind: DataSetKind::UserEnrollments,
        name: "User Enrollments",
        description: "The user enrollments data set returns all enrollments of users in org units.",
        schema_id: "5ced736e-4c4c-4b01-96c8-1c7d404ac5c2",
        full_plugin: "533f84c8-b2ad-4688-94dc-c839952e9c4f",
        diff_plugin: "a78735f2-7210-4a57-aac1-e0f6bd714349",
        columns: USER_ENROLLMENTS_COLUMNS,
        primary_key: &["OrgUnitId", "UserId"],
        deletes: DeleteStyle::Hard,
    },
    DataSetDef {
        kind: DataSetKind::Users,
        name: "Users",
        description: "The users data set returns the basic details of all users in the organization.",
        schema_id: "b21a6414-38f8-4da8-9a65-8b5586f9fe3b",
        full_plugin: "1d6d722e-b572-456f-97c1-d526570daa6b",
        diff_plugin: "3c4be1a6-0f0a-4c57-9b7e-5a0e8f2d1b01",
        columns: USERS_COLUMNS,
        primary_key: &["UserId"],
        deletes: DeleteStyle::None,
    },
    DataSetDef {
        kind: DataSetKind::OrgUnits,
        name: "Organizational Units",
        description: "The organizational units data set returns details of all org units.",
        schema_id: "8a1c4f0e-6d2b-4e3a-b5c7-0d9e8f7a6b02",
        full_plugin: "07a9e561-e22f-4e82-8dd6-7bfb14c91776",
        diff_plugin: "5e2f9b3c-7a1d-4c8e-a6f4-2b3c4d5e6f03",
        columns: ORG_UNITS_COLUMNS,
        primary_key: &["OrgUnitId"],
        deletes: DeleteStyle::Soft,
    },
    DataSetDef {
        kind: DataSetKind::GradeResults,
        name: "Grade Results",
        description: "The grade results data set returns all grade results for each user.",
        schema_id: "9f0e1d2c-3b4a-4596-8776-a5b4c3d2e104",
        full_plugin: "9d8a96b4-8145-416d-bd18-11402bc58f8d",
        diff_plugin: "c7d8e9f0-1a2b-4c3d-8e5f-6a7b8c9d0e05",
        columns: GRADE_RESULTS_COLUMNS,
        primary_key: &["GradeObjectId", "OrgUnitId", "UserId"],
        deletes: DeleteStyle::None,
    },
];

impl DataSetDef {
    /// Finds a data set by its exact name, case-insensitively.
    pub fn by_name(name: &str) -> Option<&'static DataSetDef> {
        DATA_SETS.iter().find(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// Finds the data set a plugin id (full or differential) belongs to, and whether it is the full one.
    pub fn by_plugin(plugin: &str) -> Option<(&'static DataSetDef, bool)> {
        DATA_SETS.iter().find_map(|d| {
            if d.full_plugin.eq_ignore_ascii_case(plugin) {
                Some((d, true))
            } else if d.diff_plugin.eq_ignore_ascii_case(plugin) {
                Some((d, false))
            } else {
                None
            }
        })
    }

    /// Finds a data set by schema id.
    pub fn by_schema(schema: &str) -> Option<&'static DataSetDef> {
        DATA_SETS
            .iter()
            .find(|d| d.schema_id.eq_ignore_ascii_case(schema))
    }

    /// The CSV header row, comma separated.
    pub fn header(&self) -> String {
        self.columns
            .iter()
            .map(|c| c.name)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_primary_keys_are_columns() {
        let mut ids: Vec<&str> = DATA_SETS
            .iter()
            .flat_map(|d| [d.schema_id, d.full_plugin, d.diff_plugin])
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
        for d in DATA_SETS {
            for k in d.primary_key {
                assert!(
                    d.columns.iter().any(|c| c.name == *k && !c.nullable),
                    "{k} in {}",
                    d.name
                );
            }
            assert_eq!(
                d.deletes == DeleteStyle::Soft,
                d.columns.iter().any(|c| c.name == "IsDeleted")
            );
        }
    }

    #[test]
    fn lookups_are_case_insensitive() {
        assert_eq!(
            DataSetDef::by_name("user enrollments").map(|d| d.kind),
            Some(DataSetKind::UserEnrollments)
        );
        let (d, full) =
            DataSetDef::by_plugin("A78735F2-7210-4A57-AAC1-E0F6BD714349").expect("diff plugin");
        assert_eq!((d.kind, full), (DataSetKind::UserEnrollments, false));
    }
}
