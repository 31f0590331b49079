//! The batch job status and its state machine.
//!
//! The LD wiki lists eight statuses with a one-line description each, but no
//! transition table. [`JobStatus::transition_to`] encodes the table of
//! `specs/toucan_ld.md` §B.5, and says for every edge whether it follows from
//! the wiki's wording ([`Transition::Documented`]) or is only a probable
//! reading of it ([`Transition::Inferred`], [`Transition::CancelRace`]).

use serde::{Deserialize, Serialize};

/// The status of a batch job, as the service spells it (PascalCase, US
/// single-"l" `Canceling`/`Canceled`).
///
/// Unknown values are kept in [`JobStatus::Unknown`] so a new server status
/// never breaks deserialization.
///
/// ```
/// use ldbatch_client::JobStatus;
/// let s: JobStatus = serde_json::from_str("\"Canceling\"").unwrap();
/// assert_eq!(s, JobStatus::Canceling);
/// assert!(!s.is_terminal());
/// assert!(JobStatus::Completed.is_success());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum JobStatus {
    /// A new job has been received and is being accepted.
    Initialized,
    /// The job has been accepted and is ready to run.
    Accepted,
    /// The job has begun processing.
    Processing,
    /// The job has been completed (the only success state).
    Completed,
    /// An error with the job parameters or file caused the job to be rejected.
    Rejected,
    /// A cancel request was received; the job is canceled next time it is up
    /// for processing.
    Canceling,
    /// The job has been canceled.
    Canceled,
    /// An error during processing caused the job to fail.
    Failed,
    /// A status this client does not know, exactly as the server sent it.
    Unknown(String),
}

/// The eight documented statuses, in the order the wiki lists them.
pub const DOCUMENTED_STATUSES: [JobStatus; 8] = [
    JobStatus::Initialized,
    JobStatus::Accepted,
    JobStatus::Processing,
    JobStatus::Completed,
    JobStatus::Rejected,
    JobStatus::Canceling,
    JobStatus::Canceled,
    JobStatus::Failed,
];

/// How one observed status change relates to the transition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transition {
    /// The status did not change.
    Unchanged,
    /// A direct edge that follows from the wiki's status descriptions
    /// (e.g. `Accepted -> Processing`, `Canceling -> Canceled`).
    Documented,
    /// A direct edge that is probable but not stated: a cancel request
    /// taking effect from `Initialized`, `Accepted` or `Processing`.
    Inferred,
    /// `Canceling -> Completed` or `Canceling -> Failed`: the job finished
    /// before the cancel was honoured. A possible race, accepted as legal.
    CancelRace,
    /// Not a direct edge, but reachable through statuses that were not
    /// observed (polling can miss short-lived states).
    Skipped,
    /// At least one side is [`JobStatus::Unknown`]; the table cannot judge it.
    Unjudgeable,
    /// Not reachable at all, e.g. leaving a terminal status or going back
    /// from `Processing` to `Accepted`.
    Illegal,
}

impl Transition {
    /// Whether this change is allowed by the table (everything except
    /// [`Transition::Illegal`]).
    pub fn is_legal(self) -> bool {
        !matches!(self, Transition::Illegal)
    }
}

impl JobStatus {
    /// The wire spelling of this status.
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Initialized => "Initialized",
            JobStatus::Accepted => "Accepted",
            JobStatus::Processing => "Processing",
            JobStatus::Completed => "Completed",
            JobStatus::Rejected => "Rejected",
            JobStatus::Canceling => "Canceling",
            JobStatus::Canceled => "Canceled",
            JobStatus::Failed => "Failed",
            JobStatus::Unknown(s) => s,
        }
    }

    /// Whether the job can no longer change: `Completed`, `Rejected`,
    /// `Canceled` or `Failed`. Unknown statuses are not terminal.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Rejected | JobStatus::Canceled | JobStatus::Failed
        )
    }

    /// Whether the job ended successfully (`Completed` only).
    pub fn is_success(&self) -> bool {
        matches!(self, JobStatus::Completed)
    }

    /// Whether this is one of the eight documented statuses.
    pub fn is_known(&self) -> bool {
        !matches!(self, JobStatus::Unknown(_))
    }

    /// The statuses a job may move to directly from this one, with the
    /// kind of each edge. Terminal and unknown statuses have none.
    pub fn next_statuses(&self) -> &'static [(JobStatus, Transition)] {
        use JobStatus::*;
        use Transition::{CancelRace, Documented, Inferred};
        match self {
            Initialized => &[
                (Accepted, Documented),
                (Rejected, Documented),
                (Canceling, Inferred),
            ],
            Accepted => &[(Processing, Documented), (Canceling, Inferred)],
            Processing => &[
                (Completed, Documented),
                (Failed, Documented),
                (Canceling, Inferred),
            ],
            Canceling => &[
                (Canceled, Documented),
                (Completed, CancelRace),
                (Failed, CancelRace),
            ],
            Completed | Rejected | Canceled | Failed | Unknown(_) => &[],
        }
    }

    /// Classifies the change from `self` (observed earlier) to `next`
    /// (observed later).
    ///
    /// ```
    /// use ldbatch_client::{JobStatus, Transition};
    /// assert_eq!(JobStatus::Accepted.transition_to(&JobStatus::Processing), Transition::Documented);
    /// assert_eq!(JobStatus::Initialized.transition_to(&JobStatus::Completed), Transition::Skipped);
    /// assert_eq!(JobStatus::Completed.transition_to(&JobStatus::Processing), Transition::Illegal);
    /// ```
    pub fn transition_to(&self, next: &JobStatus) -> Transition {
        if self == next {
            return Transition::Unchanged;
        }
        if !self.is_known() || !next.is_known() {
            return Transition::Unjudgeable;
        }
        if let Some((_, kind)) = self.next_statuses().iter().find(|(s, _)| s == next) {
            return *kind;
        }
        if self.reaches(next) {
            Transition::Skipped
        } else {
            Transition::Illegal
        }
    }

    /// Whether `target` can be reached from `self` through one or more edges.
    fn reaches(&self, target: &JobStatus) -> bool {
        let mut frontier = vec![self.clone()];
        let mut seen: Vec<JobStatus> = Vec::new();
        while let Some(current) = frontier.pop() {
            for (next, _) in current.next_statuses() {
                if next == target {
                    return true;
                }
                if !seen.contains(next) {
                    seen.push(next.clone());
                    frontier.push(next.clone());
                }
            }
        }
        false
    }
}

impl From<String> for JobStatus {
    fn from(s: String) -> Self {
        DOCUMENTED_STATUSES
            .iter()
            .find(|known| known.as_str() == s)
            .cloned()
            .unwrap_or(JobStatus::Unknown(s))
    }
}

impl From<&str> for JobStatus {
    fn from(s: &str) -> Self {
        JobStatus::from(s.to_string())
    }
}

impl From<JobStatus> for String {
    fn from(s: JobStatus) -> Self {
        s.as_str().to_string()
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An observed status change the transition table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id} went from {from} to {to}, which the LD status table does not allow")]
#[non_exhaustive]
pub struct IllegalTransition {
    /// The job.
    pub job_id: String,
    /// The status observed before.
    pub from: JobStatus,
    /// The status observed now.
    pub to: JobStatus,
}

/// Checks a sequence of observed statuses of one job against the table.
///
/// In strict mode an illegal change is an error; by default it is logged as
/// a `tracing` warning and accepted, because the table is partly inferred.
///
/// ```
/// use ldbatch_client::{JobStatus, StatusMonitor};
/// let mut strict = StatusMonitor::new("job-1", true);
/// assert!(strict.observe(&JobStatus::Processing).is_ok());
/// assert!(strict.observe(&JobStatus::Accepted).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct StatusMonitor {
    job_id: String,
    strict: bool,
    last: Option<JobStatus>,
}

impl StatusMonitor {
    /// A monitor for `job_id` that has seen nothing yet.
    pub fn new(job_id: impl Into<String>, strict: bool) -> Self {
        Self {
            job_id: job_id.into(),
            strict,
            last: None,
        }
    }

    /// The last status observed.
    pub fn last(&self) -> Option<&JobStatus> {
        self.last.as_ref()
    }

    /// Records `status` and classifies the change from the previous one
    /// (the first observation is always [`Transition::Unchanged`]).
    ///
    /// # Errors
    /// In strict mode, [`IllegalTransition`] if the change is illegal; the
    /// monitor then keeps its previous status.
    pub fn observe(&mut self, status: &JobStatus) -> Result<Transition, IllegalTransition> {
        let kind = match &self.last {
            None => Transition::Unchanged,
            Some(prev) => prev.transition_to(status),
        };
        if kind == Transition::Illegal {
            let err = IllegalTransition {
                job_id: self.job_id.clone(),
                from: self.last.clone().unwrap_or_else(|| status.clone()),
                to: status.clone(),
            };
            if self.strict {
                return Err(err);
            }
            tracing::warn!(job_id = %self.job_id, from = %err.from, to = %err.to, "{err}");
        } else if kind == Transition::Unjudgeable {
            tracing::debug!(job_id = %self.job_id, status = %status, "status change involves an unknown status");
        }
        self.last = Some(status.clone());
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_unknown_is_kept() {
        for s in DOCUMENTED_STATUSES {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<JobStatus>(&json).unwrap(), s);
        }
        let odd: JobStatus = serde_json::from_str("\"Paused\"").unwrap();
        assert_eq!(odd, JobStatus::Unknown("Paused".into()));
        assert_eq!(serde_json::to_string(&odd).unwrap(), "\"Paused\"");
        // British spelling is not the service's spelling.
        assert!(!JobStatus::from("Cancelled").is_known());
    }

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for s in DOCUMENTED_STATUSES {
            assert_eq!(s.is_terminal(), s.next_statuses().is_empty(), "{s}");
        }
    }

    #[test]
    fn cancel_path_is_documented_and_race_is_marked() {
        assert_eq!(
            JobStatus::Canceling.transition_to(&JobStatus::Canceled),
            Transition::Documented
        );
        assert_eq!(
            JobStatus::Processing.transition_to(&JobStatus::Canceling),
            Transition::Inferred
        );
        assert_eq!(
            JobStatus::Canceling.transition_to(&JobStatus::Completed),
            Transition::CancelRace
        );
        assert_eq!(
            JobStatus::Accepted.transition_to(&JobStatus::Rejected),
            Transition::Illegal
        );
        assert_eq!(
            JobStatus::Accepted.transition_to(&JobStatus::Canceled),
            Transition::Skipped
        );
    }

    #[test]
    fn lenient_monitor_accepts_and_moves_on() {
        let mut m = StatusMonitor::new("j", false);
        m.observe(&JobStatus::Completed).unwrap();
        assert_eq!(
            m.observe(&JobStatus::Processing).unwrap(),
            Transition::Illegal
        );
        assert_eq!(m.last(), Some(&JobStatus::Processing));
    }
}
