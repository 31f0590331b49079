//! Toucan operations and their polling state machine (toucan_ld.md A.5):
//! `pending → running → successful | failed`, one step per state poll.

use serde::Serialize;

/// Operation names the real API knows (docs, toucan-client, naas).
pub const KNOWN_OPERATIONS: &[&str] = &[
    "preprocess_data_sources",
    "populate_basemaps",
    "populate_reports",
    "populate_dashboards",
    "populate_permissions",
    "release",
    "release_design",
];

/// Wire status of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    /// Queued.
    Pending,
    /// Running.
    Running,
    /// Finished (terminal).
    Successful,
    /// Failed (terminal).
    Failed,
}

/// When a forced failure strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailAt {
    /// While running (the usual case).
    #[default]
    Running,
    /// Before it starts: `pending → failed`.
    Pending,
}

/// One operation (a list of steps run as a unit, or a data-source upload).
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    /// `operation_id` (24 hex digits, like a Mongo ObjectId).
    pub id: String,
    /// What it runs, in order.
    pub operations: Vec<String>,
    /// `staging` or `production`.
    pub stage: String,
    /// `origin` as sent.
    pub origin: Option<String>,
    /// `input_domains` as sent.
    pub input_domains: Option<Vec<String>>,
    /// `output_domains` as sent.
    pub output_domains: Option<Vec<String>>,
    /// `function_names` / `functions` as sent.
    pub function_names: Option<Vec<String>>,
    /// State polls answered so far.
    pub polls: u32,
    /// Status of the last answer.
    pub status: OpStatus,
    /// Forced failure, if any.
    pub fail: Option<FailAt>,
}

impl Operation {
    /// Answers one state poll: `pending` on the first, `running` for the next
    /// `running_polls`, then the outcome.
    pub fn poll(&mut self, running_polls: u32) -> OpStatus {
        if matches!(self.status, OpStatus::Successful | OpStatus::Failed) {
            return self.status;
        }
        self.polls += 1;
        self.status = match (self.polls, self.fail) {
            (1, _) => OpStatus::Pending,
            (2, Some(FailAt::Pending)) => OpStatus::Failed,
            (n, _) if n <= 1 + running_polls.max(1) => OpStatus::Running,
            (_, Some(_)) => OpStatus::Failed,
            (_, None) => OpStatus::Successful,
        };
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(fail: Option<FailAt>) -> Operation {
        Operation {
            id: "x".into(),
            operations: vec!["release".into()],
            stage: "staging".into(),
            origin: None,
            input_domains: None,
            output_domains: None,
            function_names: None,
            polls: 0,
            status: OpStatus::Pending,
            fail,
        }
    }

    fn walk(mut o: Operation) -> Vec<OpStatus> {
        (0..5).map(|_| o.poll(2)).collect()
    }

    #[test]
    fn outcomes() {
        use OpStatus::*;
        assert_eq!(
            walk(op(None)),
            [Pending, Running, Running, Successful, Successful]
        );
        assert_eq!(
            walk(op(Some(FailAt::Running))),
            [Pending, Running, Running, Failed, Failed]
        );
        assert_eq!(
            walk(op(Some(FailAt::Pending))),
            [Pending, Failed, Failed, Failed, Failed]
        );
    }
}
