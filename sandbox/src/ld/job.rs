//! Batch jobs and the state machine they walk, one step per status poll (toucan_ld.md B.5).
//!
//! ```text
//! Initialized ─► Accepted ─► Processing (× processing_polls) ─► Completed
//!      │                          └────────────────────────────► Failed
//!      └─► Rejected            (cancel) Initialized/Accepted/Processing ─► Canceling ─► Canceled
//! ```
//! A job's fate (complete, fail, reject) is decided when it is submitted: by validation of
//! its parameters and file, or by the control API. The submit answer shows `Initialized`;
//! each `POST /ls/api/batch/status` moves it one step before answering.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;

/// The documented job statuses (wire spelling: PascalCase, US "Canceling"/"Canceled").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JobStatus {
    /// Received, being accepted.
    Initialized,
    /// Accepted, ready to run.
    Accepted,
    /// Running.
    Processing,
    /// Finished successfully (terminal).
    Completed,
    /// Bad parameters or file (terminal).
    Rejected,
    /// Cancel requested.
    Canceling,
    /// Canceled (terminal).
    Canceled,
    /// Failed while processing (terminal).
    Failed,
}

impl JobStatus {
    /// No further transitions.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Rejected | Self::Canceled | Self::Failed
        )
    }
}

/// How a job will end unless canceled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fate", content = "reason", rename_all = "snake_case")]
pub enum Fate {
    /// Runs to `Completed`.
    Complete,
    /// Ends `Failed` with this reason after processing starts.
    Fail(String),
    /// Ends `Rejected` with this reason at acceptance.
    Reject(String),
}

/// What kind of job and its kind-specific parameters.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// A batch import with its stored file.
    Import {
        /// Stored upload (kept until the server stops).
        #[serde(skip)]
        path: Option<PathBuf>,
        /// Bytes received.
        bytes: u64,
        /// Hex SHA-256 of the upload.
        sha256: String,
        /// `merge` as sent (None = default override).
        merge: Option<bool>,
        /// `headerRow` as sent.
        header_row: Option<bool>,
        /// The template file's text, if one was sent.
        template: Option<String>,
        /// Part name / file name of the upload, if sent.
        file_name: Option<String>,
    },
    /// A batch export.
    Export {
        /// `sqlQuery` as sent.
        sql_query: Option<String>,
        /// `filters` as sent.
        filters: Option<String>,
        /// `rowHeader` / `headerRow` as sent.
        row_header: bool,
        /// `template` as sent.
        template: Option<String>,
        /// Unguessable part of the download link.
        #[serde(skip)]
        download_token: String,
    },
}

/// One batch job.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// `jobId`.
    pub id: String,
    /// Import or export, with parameters.
    #[serde(flatten)]
    pub kind: JobKind,
    /// `jobName`.
    pub name: Option<String>,
    /// `notificationEmail`.
    pub email: Option<String>,
    /// `contentType` as sent.
    pub content_type: Option<String>,
    /// `itemType`.
    pub item_type: Option<String>,
    /// `submitTime`.
    pub submitted: DateTime<Utc>,
    /// Current status.
    pub status: JobStatus,
    /// Current `reason`.
    pub reason: String,
    /// Records in the file (import) or to export.
    pub records_total: u64,
    /// `recordsProcessed`.
    pub records_processed: u64,
    /// `runTime` in ms.
    pub run_time_ms: u64,
    /// Polls spent in `Processing`.
    pub processing_polls: u32,
    /// How it will end.
    pub fate: Fate,
}

/// Simulated milliseconds of work per poll.
const MS_PER_POLL: u64 = 250;

impl Job {
    /// Moves one step along the state machine (a status poll).
    pub fn step(&mut self, polls_to_finish: u32) {
        use JobStatus::*;
        let polls_to_finish = polls_to_finish.max(1);
        match self.status {
            Initialized => match &self.fate {
                Fate::Reject(reason) => self.set(Rejected, reason.clone()),
                _ => self.set(
                    Accepted,
                    "The file has been stored and the job is ready for processing".into(),
                ),
            },
            Accepted => self.set(Processing, "The job is being processed".into()),
            Processing => {
                self.processing_polls += 1;
                self.run_time_ms += MS_PER_POLL;
                let share = self.records_total * u64::from(self.processing_polls)
                    / u64::from(polls_to_finish);
                self.records_processed = share.min(self.records_total);
                if self.processing_polls >= polls_to_finish {
                    match &self.fate {
                        Fate::Fail(reason) => {
                            self.records_processed = self.records_total / 2;
                            self.set(Failed, reason.clone());
                        }
                        _ => self.set(Completed, "Job completed successfully".into()),
                    }
                }
            }
            Canceling => self.set(Canceled, "The job has been canceled".into()),
            Completed | Rejected | Canceled | Failed => {}
        }
    }

    fn set(&mut self, status: JobStatus, reason: String) {
        self.status = status;
        self.reason = reason;
    }

    /// Requests cancellation; `Err` with the current status if the job already ended.
    pub fn cancel(&mut self) -> Result<(), JobStatus> {
        if self.status.is_terminal() {
            return Err(self.status);
        }
        if self.status != JobStatus::Canceling {
            self.set(
                JobStatus::Canceling,
                "A request to cancel the job has been received".into(),
            );
        }
        Ok(())
    }

    /// The documented status response. Counters are strings when `numbers_as_strings`
    /// (as in the wiki's example), numbers otherwise.
    pub fn status_json(
        &self,
        numbers_as_strings: bool,
        download_links: Option<Vec<String>>,
    ) -> Value {
        let num = |n: u64| {
            if numbers_as_strings {
                json!(n.to_string())
            } else {
                json!(n)
            }
        };
        let mut v = json!({
            "submitTime": self.submitted.format("%Y-%m-%dT%H:%M:%S%z").to_string(),
            "jobId": self.id,
            "notificationEmail": self.email,
            "jobName": self.name,
            "contentType": self.content_type,
            "itemType": self.item_type,
            "recordsProcessed": num(self.records_processed),
            "runTime": num(self.run_time_ms),
            "status": self.status,
            "reason": self.reason,
        });
        if let (Some(links), Some(map)) = (download_links, v.as_object_mut()) {
            map.insert("downloadLinks".into(), json!(links));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(fate: Fate) -> Job {
        Job {
            id: "j".into(),
            kind: JobKind::Export {
                sql_query: None,
                filters: None,
                row_header: true,
                template: None,
                download_token: "t".into(),
            },
            name: None,
            email: None,
            content_type: Some("application/json".into()),
            item_type: Some("Account".into()),
            submitted: DateTime::from_timestamp(1_432_647_325, 0).unwrap_or_default(),
            status: JobStatus::Initialized,
            reason: String::new(),
            records_total: 10,
            records_processed: 0,
            run_time_ms: 0,
            processing_polls: 0,
            fate,
        }
    }

    fn walk(mut j: Job, polls: usize) -> Vec<JobStatus> {
        (0..polls)
            .map(|_| {
                j.step(2);
                j.status
            })
            .collect()
    }

    #[test]
    fn fates_drive_the_documented_paths() {
        use JobStatus::*;
        assert_eq!(
            walk(job(Fate::Complete), 5),
            [Accepted, Processing, Processing, Completed, Completed]
        );
        assert_eq!(
            walk(job(Fate::Fail("boom".into())), 4),
            [Accepted, Processing, Processing, Failed]
        );
        assert_eq!(
            walk(job(Fate::Reject("bad".into())), 2),
            [Rejected, Rejected]
        );
    }

    #[test]
    fn cancel_goes_through_canceling_and_not_after_the_end() {
        let mut j = job(Fate::Complete);
        j.step(2);
        assert_eq!(j.cancel(), Ok(()));
        assert_eq!(j.status, JobStatus::Canceling);
        j.step(2);
        assert_eq!(j.status, JobStatus::Canceled);
        assert_eq!(j.cancel(), Err(JobStatus::Canceled));
    }

    #[test]
    fn status_json_has_the_documented_fields() {
        let mut j = job(Fate::Complete);
        j.step(2);
        let v = j.status_json(true, None);
        assert_eq!(v["submitTime"], "2015-05-26T13:35:25+0000");
        assert_eq!(v["status"], "Accepted");
        assert_eq!(v["recordsProcessed"], "0");
        assert_eq!(
            j.status_json(false, Some(vec!["http://x/y".into()]))["downloadLinks"][0],
            "http://x/y"
        );
        for f in [
            "jobId",
            "notificationEmail",
            "jobName",
            "contentType",
            "itemType",
            "runTime",
            "reason",
        ] {
            assert!(v.get(f).is_some(), "{f}");
        }
    }
}
