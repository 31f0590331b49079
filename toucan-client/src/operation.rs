//! Operations, stages and the operation state.

use serde::{Deserialize, Serialize};

/// One step a small app's data pipeline can run (`POST /{app}/operations`).
///
/// Known names come from the Toucan docs (`preprocess_data_sources`,
/// `populate_basemaps`, `populate_reports`, `populate_dashboards`,
/// `release`) and from code calling the live API (`populate_permissions`,
/// `release_design`). Anything else is kept verbatim in
/// [`Operation::Other`]; the server answers 400 to names it does not know.
///
/// ```
/// use toucan_client::Operation;
/// assert_eq!(Operation::PopulateBasemaps.as_str(), "populate_basemaps");
/// assert_eq!(Operation::from("release"), Operation::Release);
/// assert_eq!(Operation::from("warm_cache"), Operation::Other("warm_cache".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Operation {
    /// `preprocess_data_sources`: run the ETL over the uploaded data sources.
    PreprocessDataSources,
    /// `populate_basemaps`.
    PopulateBasemaps,
    /// `populate_reports`.
    PopulateReports,
    /// `populate_dashboards`.
    PopulateDashboards,
    /// `populate_permissions`.
    PopulatePermissions,
    /// `release`: publish staging data to production.
    Release,
    /// `release_design`.
    ReleaseDesign,
    /// Any other operation name, sent verbatim.
    Other(String),
}

impl Operation {
    /// Every named operation this client knows.
    pub const KNOWN: [Operation; 7] = [
        Operation::PreprocessDataSources,
        Operation::PopulateBasemaps,
        Operation::PopulateReports,
        Operation::PopulateDashboards,
        Operation::PopulatePermissions,
        Operation::Release,
        Operation::ReleaseDesign,
    ];

    /// The documented full chain, in order: preprocess, populate basemaps,
    /// reports and dashboards, then release.
    pub fn populate_and_release() -> Vec<Operation> {
        vec![
            Operation::PreprocessDataSources,
            Operation::PopulateBasemaps,
            Operation::PopulateReports,
            Operation::PopulateDashboards,
            Operation::Release,
        ]
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Operation::PreprocessDataSources => "preprocess_data_sources",
            Operation::PopulateBasemaps => "populate_basemaps",
            Operation::PopulateReports => "populate_reports",
            Operation::PopulateDashboards => "populate_dashboards",
            Operation::PopulatePermissions => "populate_permissions",
            Operation::Release => "release",
            Operation::ReleaseDesign => "release_design",
            Operation::Other(s) => s,
        }
    }
}

impl From<String> for Operation {
    fn from(s: String) -> Self {
        Operation::KNOWN
            .iter()
            .find(|k| k.as_str() == s)
            .cloned()
            .unwrap_or(Operation::Other(s))
    }
}

impl From<&str> for Operation {
    fn from(s: &str) -> Self {
        Operation::from(s.to_string())
    }
}

impl From<Operation> for String {
    fn from(o: Operation) -> Self {
        o.as_str().to_string()
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which copy of a small app's data a call targets.
///
/// Staging is sent as `?stage=staging`. Production is the API's default
/// and is sent as no `stage` parameter at all; `release` publishes staging
/// to production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stage {
    /// The staging copy (`?stage=staging`).
    #[default]
    Staging,
    /// The production copy (no `stage` parameter).
    Production,
}

impl Stage {
    /// The value of the `stage` query parameter, if one is sent.
    pub fn query_value(self) -> Option<&'static str> {
        match self {
            Stage::Staging => Some("staging"),
            Stage::Production => None,
        }
    }
}

impl std::str::FromStr for Stage {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "staging" => Ok(Stage::Staging),
            "production" | "prod" => Ok(Stage::Production),
            other => Err(format!(
                "unknown stage {other:?}: expected staging or production"
            )),
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Staging => "staging",
            Stage::Production => "production",
        })
    }
}

/// The identifier of a started operation (opaque: a Mongo ObjectId or a
/// UUID, depending on the server).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperationId(pub String);

impl OperationId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id in the answer of a route that starts work (an upload, `POST
    /// /{app}/operations`, a partial operation): the first of
    /// `operation_id`, `operationId` and `id` that holds a non-empty string
    /// or an integer. `None` when the body is not a JSON object or names no
    /// id (some routes' answers are undocumented). Never panics, whatever
    /// the bytes.
    ///
    /// ```
    /// use toucan_client::OperationId;
    ///
    /// let id = OperationId::from_start_response(br#"{"operation_id":"6530f3c2a1b2c3d4e5f60718"}"#);
    /// assert_eq!(id.as_ref().map(OperationId::as_str), Some("6530f3c2a1b2c3d4e5f60718"));
    /// assert_eq!(OperationId::from_start_response(b"<html>ok</html>"), None);
    /// ```
    pub fn from_start_response(body: &[u8]) -> Option<OperationId> {
        let serde_json::Value::Object(fields) = serde_json::from_slice(body).ok()? else {
            return None;
        };
        ["operation_id", "operationId", "id"]
            .iter()
            .find_map(|key| match fields.get(*key)? {
                serde_json::Value::String(s) if !s.trim().is_empty() => {
                    Some(OperationId(s.clone()))
                }
                serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => {
                    Some(OperationId(n.to_string()))
                }
                _ => None,
            })
    }
}

impl std::fmt::Display for OperationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state of an operation (`GET /{app}/operations/state/{id}`).
///
/// `pending -> running -> successful | failed` (a pending operation may
/// also fail before it starts). Unknown values are kept.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum OperationState {
    /// Queued, not started.
    Pending,
    /// Running.
    Running,
    /// Finished successfully.
    Successful,
    /// Finished with an error.
    Failed,
    /// A state this client does not know, as sent.
    Unknown(String),
}

impl OperationState {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            OperationState::Pending => "pending",
            OperationState::Running => "running",
            OperationState::Successful => "successful",
            OperationState::Failed => "failed",
            OperationState::Unknown(s) => s,
        }
    }

    /// Whether the operation has finished (`successful` or `failed`).
    /// Unknown states are treated as still in progress.
    pub fn is_terminal(&self) -> bool {
        matches!(self, OperationState::Successful | OperationState::Failed)
    }

    /// Whether the operation finished successfully.
    pub fn is_success(&self) -> bool {
        matches!(self, OperationState::Successful)
    }
}

impl From<String> for OperationState {
    fn from(s: String) -> Self {
        match s.to_ascii_lowercase().as_str() {
            "pending" => OperationState::Pending,
            "running" => OperationState::Running,
            "successful" | "success" => OperationState::Successful,
            "failed" => OperationState::Failed,
            _ => OperationState::Unknown(s),
        }
    }
}

impl From<OperationState> for String {
    fn from(s: OperationState) -> Self {
        s.as_str().to_string()
    }
}

impl std::fmt::Display for OperationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of the state route: the state plus whatever else the server
/// sends (kept in [`OperationStatus::extra`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct OperationStatus {
    /// The state.
    pub status: OperationState,
    /// A message, where the server gives one (e.g. why it failed).
    #[serde(default, alias = "error", alias = "reason")]
    pub message: Option<String>,
    /// Every other field, as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_in_snake_case() {
        for op in Operation::KNOWN {
            let json = serde_json::to_string(&op).unwrap();
            assert_eq!(serde_json::from_str::<Operation>(&json).unwrap(), op);
        }
        let other: Operation = serde_json::from_str("\"rebuild\"").unwrap();
        assert_eq!(serde_json::to_string(&other).unwrap(), "\"rebuild\"");
    }

    #[test]
    fn stage_parses_and_production_sends_nothing() {
        assert_eq!("Staging".parse::<Stage>().unwrap(), Stage::Staging);
        assert_eq!("prod".parse::<Stage>().unwrap().query_value(), None);
        assert!("dev".parse::<Stage>().is_err());
    }

    #[test]
    fn the_operation_id_is_read_from_any_known_key_of_a_start_answer() {
        let id = |body: &str| OperationId::from_start_response(body.as_bytes()).map(|i| i.0);
        assert_eq!(id(r#"{"operation_id":"abc"}"#).as_deref(), Some("abc"));
        assert_eq!(
            id(r#"{"operationId":"abc","other":1}"#).as_deref(),
            Some("abc")
        );
        assert_eq!(id(r#"{"id":42}"#).as_deref(), Some("42"));
        // Both spellings at once (a serde alias would call it a duplicate).
        assert_eq!(id(r#"{"id":"b","operation_id":"a"}"#).as_deref(), Some("a"));
        // An empty preferred key falls through to the next one.
        assert_eq!(id(r#"{"operation_id":"","id":"c"}"#).as_deref(), Some("c"));
        for none in [
            "",
            "null",
            r#"["abc"]"#,
            r#"{"operation_id":null}"#,
            r#"{"operation_id":1.5}"#,
            r#"{"operation_id":{"$oid":"x"}}"#,
            r#"{"message":"started"}"#,
            "{\"operation_id\":\"a",
        ] {
            assert_eq!(id(none), None, "{none}");
        }
        assert_eq!(OperationId::from_start_response(b"\xff\xfe{"), None);
    }

    #[test]
    fn state_body_keeps_unknown_values_and_extra_fields() {
        let s: OperationStatus =
            serde_json::from_str(r#"{"status":"queued","startedAt":"2024-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(s.status, OperationState::Unknown("queued".into()));
        assert!(!s.status.is_terminal());
        assert!(s.extra.contains_key("startedAt"));
        let f: OperationStatus =
            serde_json::from_str(r#"{"status":"failed","error":"boom"}"#).unwrap();
        assert!(f.status.is_terminal() && !f.status.is_success());
        assert_eq!(f.message.as_deref(), Some("boom"));
    }
}
