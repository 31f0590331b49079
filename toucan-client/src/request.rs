//! Typed request bodies of the operation routes.

use serde::Serialize;

use crate::operation::Operation;

/// Which part of a small app's data a partial operation covers.
///
/// All three lists are optional. **When several are given, the result is
/// the union of the domains each one selects, not their intersection**:
/// - `input_domains`: every output domain that uses any of these input
///   domains;
/// - `function_names`: every output domain that has one of these
///   (augment) functions as entry point;
/// - `output_domains`: these output domains.
///
/// An empty selection selects nothing in particular; the server then runs
/// the operation over the whole app.
///
/// ```
/// use toucan_client::DomainSelection;
/// let sel = DomainSelection::new().input_domain("referential").output_domain("sales");
/// assert_eq!(
///     serde_json::to_string(&sel).unwrap(),
///     r#"{"input_domains":["referential"],"output_domains":["sales"]}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DomainSelection {
    /// Input (source) domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input_domains: Vec<String>,
    /// Entry-point function names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub function_names: Vec<String>,
    /// Output domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_domains: Vec<String>,
}

impl DomainSelection {
    /// An empty selection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an input domain.
    pub fn input_domain(mut self, name: impl Into<String>) -> Self {
        self.input_domains.push(name.into());
        self
    }

    /// Adds an entry-point function name.
    pub fn function(mut self, name: impl Into<String>) -> Self {
        self.function_names.push(name.into());
        self
    }

    /// Adds an output domain.
    pub fn output_domain(mut self, name: impl Into<String>) -> Self {
        self.output_domains.push(name.into());
        self
    }

    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.input_domains.is_empty()
            && self.function_names.is_empty()
            && self.output_domains.is_empty()
    }
}

/// The partial operations of the docs, each on its own route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartialOperation {
    /// `POST /{app}/data/preprocess`.
    Preprocess,
    /// `POST /{app}/populate`.
    Populate,
    /// `POST /{app}/populate?release`: populate, then release.
    PopulateAndRelease,
}

impl PartialOperation {
    /// The route below the small app.
    pub fn path(self) -> &'static str {
        match self {
            PartialOperation::Preprocess => "data/preprocess",
            PartialOperation::Populate | PartialOperation::PopulateAndRelease => "populate",
        }
    }

    /// Whether the `release` flag is added to the query string.
    pub fn releases(self) -> bool {
        matches!(self, PartialOperation::PopulateAndRelease)
    }
}

impl std::fmt::Display for PartialOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartialOperation::Preprocess => "preprocess",
            PartialOperation::Populate => "populate",
            PartialOperation::PopulateAndRelease => "populate and release",
        })
    }
}

/// The body of `POST /{app}/operations`.
///
/// ```
/// use toucan_client::{Operation, OperationsRequest};
/// let req = OperationsRequest::populate_and_release();
/// let json = serde_json::to_value(&req).unwrap();
/// assert_eq!(json["origin"], "autofeed");
/// assert_eq!(json["operations"][4], "release");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OperationsRequest {
    /// What started the operations (the docs use `autofeed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The operations, run in this order.
    pub operations: Vec<Operation>,
    /// Restricts the operations to part of the data (union semantics).
    #[serde(flatten)]
    pub selection: DomainSelection,
}

impl OperationsRequest {
    /// Runs `operations` over the whole app, with origin `autofeed`.
    pub fn new(operations: impl IntoIterator<Item = Operation>) -> Self {
        Self {
            origin: Some("autofeed".to_string()),
            operations: operations.into_iter().collect(),
            selection: DomainSelection::default(),
        }
    }

    /// The documented full chain: preprocess, populate basemaps, reports
    /// and dashboards, release.
    pub fn populate_and_release() -> Self {
        Self::new(Operation::populate_and_release())
    }

    /// Sets the origin (`None` leaves the field out).
    pub fn origin(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }

    /// Restricts the operations to `selection`.
    pub fn selection(mut self, selection: DomainSelection) -> Self {
        self.selection = selection;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_chain_matches_the_documented_body() {
        let json = serde_json::to_string(&OperationsRequest::populate_and_release()).unwrap();
        assert_eq!(
            json,
            r#"{"origin":"autofeed","operations":["preprocess_data_sources","populate_basemaps","populate_reports","populate_dashboards","release"]}"#
        );
    }

    #[test]
    fn partial_preprocess_by_output_domain() {
        let req = OperationsRequest::new([Operation::PreprocessDataSources])
            .origin(None)
            .selection(DomainSelection::new().output_domain("my_domain"));
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"operations":["preprocess_data_sources"],"output_domains":["my_domain"]}"#
        );
    }

    #[test]
    fn partial_routes() {
        assert_eq!(PartialOperation::Preprocess.path(), "data/preprocess");
        assert!(PartialOperation::PopulateAndRelease.releases());
        assert!(!PartialOperation::Populate.releases());
        assert!(DomainSelection::new().is_empty());
        assert!(!DomainSelection::new().function("f").is_empty());
    }
}
