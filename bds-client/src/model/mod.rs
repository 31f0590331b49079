//! Typed JSON models of the BDS routes.
//!
//! Unknown fields are ignored, nullable fields are `Option`, `null` lists are
//! empty, and unknown enum values are kept ([`BdsType::Unknown`]), so a server
//! that adds things does not break a listing.

pub(crate) mod lenient;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether an extract is a full snapshot or a record of changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BdsType {
    /// A snapshot of the whole data set; replaces what was there.
    Full,
    /// Changes since the previous differential; upserted over what was there.
    Differential,
    /// A value this client does not know, kept as sent.
    Unknown(String),
}

impl BdsType {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            BdsType::Full => "Full",
            BdsType::Differential => "Differential",
            BdsType::Unknown(s) => s,
        }
    }

    fn parse(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "full" => BdsType::Full,
            "differential" | "diff" => BdsType::Differential,
            _ => BdsType::Unknown(text.to_string()),
        }
    }
}

impl std::fmt::Display for BdsType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BdsType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(BdsType::parse(&String::deserialize(d)?))
    }
}

impl Serialize for BdsType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One entry of `GET /dataExport/bds/list`: the newest extract of a plugin.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct DataSetReportInfo {
    /// The plugin (data set variant) id, a GUID.
    pub plugin_id: String,
    /// Name of the data set.
    pub name: String,
    /// What the data set holds.
    #[serde(default)]
    pub description: Option<String>,
    /// When the newest extract was created.
    #[serde(default, deserialize_with = "lenient::opt_datetime")]
    pub created_date: Option<DateTime<Utc>>,
    /// Absolute API URL of the newest extract.
    #[serde(default)]
    pub download_link: Option<String>,
    /// Size of the extract in bytes.
    #[serde(default, deserialize_with = "lenient::opt_size")]
    pub download_size: Option<u64>,
}

/// One entry of `GET /dataExport/bds`: the newest extract of a plugin and the
/// older ones still downloadable.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct BrightspaceDataSet {
    /// The plugin id; full and differential variants have different ones.
    pub plugin_id: String,
    /// Name of the data set.
    pub name: String,
    /// What the data set holds.
    #[serde(default)]
    pub description: Option<String>,
    /// `true` for a full extract, `false` for a differential.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub full_data_set: Option<bool>,
    /// When this extract was created.
    #[serde(default, deserialize_with = "lenient::opt_datetime")]
    pub created_date: Option<DateTime<Utc>>,
    /// Absolute API URL to download this extract.
    #[serde(default)]
    pub download_link: Option<String>,
    /// Size in bytes.
    #[serde(default, deserialize_with = "lenient::opt_size")]
    pub download_size: Option<u64>,
    /// BDS schema version, e.g. `"6.6"`.
    #[serde(default)]
    pub version: Option<String>,
    /// When the extract was queued for processing: its position in time.
    #[serde(default, deserialize_with = "lenient::opt_datetime")]
    pub queued_for_processing_date: Option<DateTime<Utc>>,
    /// `false` while the extract is temporarily unavailable.
    #[serde(default = "yes", deserialize_with = "lenient_true")]
    pub currently_available: bool,
    /// Older extracts of the same plugin that can still be downloaded.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub previous_data_sets: Vec<BrightspaceDataSet>,
}

fn yes() -> bool {
    true
}

fn lenient_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(lenient::opt_bool(d)?.unwrap_or(true))
}

impl BrightspaceDataSet {
    /// This extract and every previous one, as [`Extract`]s.
    pub fn extracts(&self) -> Vec<Extract> {
        std::iter::once(self)
            .chain(self.previous_data_sets.iter())
            .map(Extract::from_legacy)
            .collect()
    }
}

/// A plugin (full or differential variant) of a data set schema.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct PluginInfo {
    /// The plugin id.
    pub plugin_id: String,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// URL listing this plugin's extracts.
    #[serde(default)]
    pub extracts_link: Option<String>,
}

/// One entry of `GET /datasets/bds`: a data set with its two variants.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct DataSetSchema {
    /// The schema id shared by both variants.
    pub schema_id: String,
    /// The full variant, if the data set has one.
    #[serde(default)]
    pub full: Option<PluginInfo>,
    /// The differential variant, if the data set has one.
    #[serde(default)]
    pub differential: Option<PluginInfo>,
    /// URL listing the extracts of both variants.
    #[serde(default)]
    pub extracts_link: Option<String>,
}

impl DataSetSchema {
    /// The data set's name: the full variant's name, else the differential's.
    pub fn name(&self) -> Option<&str> {
        self.full
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .or_else(|| self.differential.as_ref().and_then(|p| p.name.as_deref()))
    }

    /// Whether `plugin_id` is one of this schema's variants.
    pub fn has_plugin(&self, plugin_id: &str) -> bool {
        [&self.full, &self.differential]
            .into_iter()
            .flatten()
            .any(|p| p.plugin_id.eq_ignore_ascii_case(plugin_id))
    }
}

/// One downloadable extract, from the `/datasets/bds/.../extracts` routes or
/// converted from a legacy [`BrightspaceDataSet`].
///
/// Its identity is `(plugin, type, queued time)`: download links may change
/// between listings and must not be used to recognise an extract.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct Extract {
    /// Schema id of the data set (new routes only).
    #[serde(default)]
    pub schema_id: Option<String>,
    /// Plugin id of the variant.
    #[serde(default)]
    pub plugin_id: String,
    /// Full or differential.
    pub bds_type: BdsType,
    /// Name of the data set, where the route gives it.
    #[serde(default)]
    pub name: Option<String>,
    /// When the extract file was created.
    #[serde(default, deserialize_with = "lenient::opt_datetime")]
    pub created_date: Option<DateTime<Utc>>,
    /// When it was queued for processing: its position in time.
    #[serde(default, deserialize_with = "lenient::opt_datetime")]
    pub queued_for_processing_date: Option<DateTime<Utc>>,
    /// Absolute URL to download it.
    #[serde(default)]
    pub download_link: Option<String>,
    /// Size in bytes.
    #[serde(default, deserialize_with = "lenient::opt_size")]
    pub download_size: Option<u64>,
    /// BDS schema version.
    #[serde(default)]
    pub version: Option<String>,
    /// `false` while temporarily unavailable (legacy route only).
    #[serde(default = "yes", deserialize_with = "lenient_true")]
    pub currently_available: bool,
}

impl Extract {
    /// An extract of `plugin_id` of type `bds_type` queued at `queued`, with
    /// no download link yet (see [`Extract::with_download_link`]).
    pub fn new(plugin_id: impl Into<String>, bds_type: BdsType, queued: DateTime<Utc>) -> Self {
        Extract {
            schema_id: None,
            plugin_id: plugin_id.into(),
            bds_type,
            name: None,
            created_date: None,
            queued_for_processing_date: Some(queued),
            download_link: None,
            download_size: None,
            version: None,
            currently_available: true,
        }
    }

    /// Sets the download link.
    pub fn with_download_link(mut self, link: impl Into<String>) -> Self {
        self.download_link = Some(link.into());
        self
    }

    /// Marks the extract as temporarily unavailable (or available again).
    pub fn with_availability(mut self, available: bool) -> Self {
        self.currently_available = available;
        self
    }

    /// Converts one legacy entry (without its previous data sets).
    pub fn from_legacy(item: &BrightspaceDataSet) -> Self {
        let bds_type = match item.full_data_set {
            Some(true) => BdsType::Full,
            Some(false) => BdsType::Differential,
            None => BdsType::Unknown(String::new()),
        };
        Extract {
            schema_id: None,
            plugin_id: item.plugin_id.clone(),
            bds_type,
            name: Some(item.name.clone()),
            created_date: item.created_date,
            queued_for_processing_date: item.queued_for_processing_date,
            download_link: item.download_link.clone(),
            download_size: item.download_size,
            version: item.version.clone(),
            currently_available: item.currently_available,
        }
    }

    /// The extract's position in time: when it was queued, else when created.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.queued_for_processing_date.or(self.created_date)
    }

    /// Whether it can be downloaded now.
    pub fn is_downloadable(&self) -> bool {
        self.currently_available
            && self
                .download_link
                .as_deref()
                .is_some_and(|l| !l.trim().is_empty())
    }

    /// A short human description, e.g. `Differential of 2024-09-10T04:00:00Z`.
    pub fn describe(&self) -> String {
        match self.time() {
            Some(t) => format!(
                "{} of {}",
                self.bds_type,
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => format!("{} without a date", self.bds_type),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use client_core::paging::{NextPageUrlPage, ObjectListPage};

    const LEGACY_PAGE: &str = r#"{ "NextPageUrl": "https://learn.example/d2l/api/lp/1.30/dataexport/bds?page=2&pageSize=2",
      "PrevPageUrl": null,
      "BrightspaceDataSets": [
        { "PreviousDataSets": [
            { "PreviousDataSets": null,
              "PluginId": "df537dc9-8358-4c28-9ab9-ddb8d364a9fc", "Name": "Rubric Object Criteria",
              "Description": "d", "FullDataSet": true, "CreatedDate": "2021-05-11T19:49:46.003Z",
              "DownloadLink": "https://learn.example/d2l/api/lp/1.30/dataexport/bds/df53/1620762542",
              "DownloadSize": 288.0, "Version": "6.6", "QueuedForProcessingDate": "2021-05-11T19:49:02.000Z",
              "CurrentlyAvailable": true } ],
          "PluginId": "df537dc9-8358-4c28-9ab9-ddb8d364a9fc", "Name": "Rubric Object Criteria",
          "Description": "d", "FullDataSet": true, "CreatedDate": "2021-05-18T19:50:19.476Z",
          "DownloadLink": null, "DownloadSize": null, "Version": "6.6",
          "QueuedForProcessingDate": "2021-05-18T19:49:22.000Z", "CurrentlyAvailable": false,
          "SomethingNew": 42 } ] }"#;

    #[test]
    fn decodes_a_legacy_page_with_previous_data_sets() {
        let page: NextPageUrlPage<BrightspaceDataSet> = serde_json::from_str(LEGACY_PAGE).unwrap();
        assert!(
            page.next_page_url
                .as_deref()
                .unwrap()
                .ends_with("page=2&pageSize=2")
        );
        let item = &page.items[0];
        assert!(!item.currently_available);
        let extracts = item.extracts();
        assert_eq!(extracts.len(), 2);
        assert_eq!(extracts[1].bds_type, BdsType::Full);
        assert_eq!(extracts[1].download_size, Some(288));
        assert!(!extracts[0].is_downloadable(), "null link and unavailable");
        assert!(extracts[1].is_downloadable());
        assert_eq!(extracts[1].describe(), "Full of 2021-05-11T19:49:02Z");
    }

    #[test]
    fn keeps_unknown_bds_types_and_reads_object_pages() {
        let page: ObjectListPage<Extract> = serde_json::from_str(
            r#"{ "Objects": [
                { "SchemaId": "s", "PluginId": "p", "BdsType": "Hourly", "DownloadSize": "12",
                  "QueuedForProcessingDate": "2024-09-10T04:00:00.000Z" },
                { "SchemaId": "s", "PluginId": "p", "BdsType": "differential", "CreatedDate": "" }
              ], "Next": null }"#,
        )
        .unwrap();
        assert_eq!(page.objects[0].bds_type, BdsType::Unknown("Hourly".into()));
        assert_eq!(page.objects[0].download_size, Some(12));
        assert_eq!(page.objects[1].bds_type, BdsType::Differential);
        assert_eq!(page.objects[1].time(), None);
        assert!(page.next.is_none());
    }

    #[test]
    fn decodes_schemas_with_missing_variants() {
        let page: ObjectListPage<DataSetSchema> = serde_json::from_str(
            r#"{ "Objects": [ { "SchemaId": "5ced", "Full": { "PluginId": "533F", "Name": "User Enrollments" },
                 "Differential": null, "ExtractsLink": "https://h/x" } ] }"#,
        )
        .unwrap();
        let schema = &page.objects[0];
        assert_eq!(schema.name(), Some("User Enrollments"));
        assert!(schema.has_plugin("533f"));
        assert!(schema.differential.is_none());
    }
}
