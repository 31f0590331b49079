//! Running query jobs: start, wait with the core waiter, and restart a job
//! that expired before its output was fetched (specs/dap.md §4).

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use client_core::waiter::Acceptance;
use futures::stream::{self, BoxStream, StreamExt};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::model::{GetTableDataResult, Job, JobStatus, Query};

/// A complete job expiring sooner than this is not used: its objects could
/// vanish while being fetched.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// How many times a job is started again after expiring.
const MAX_RESTARTS: u32 = 1;

/// Turns a terminal job into a result: complete jobs pass, failed jobs
/// become [`Error::JobFailed`] with the server's explanation.
pub(crate) fn require_complete(job: Job) -> Result<Job> {
    match job.status {
        JobStatus::Complete => Ok(job),
        JobStatus::Failed => Err(Error::JobFailed {
            error: job.error.unwrap_or_default(),
            job_id: job.id,
        }),
        other => Err(Error::UnexpectedResponse {
            url: format!("/dap/job/{}", job.id),
            message: format!("the job is not complete (status {other})"),
            body_snippet: String::new(),
        }),
    }
}

/// `true` when the job (or one of its objects) no longer exists.
pub(crate) fn is_expired_job(e: &Error) -> bool {
    match e {
        Error::NotFound { kind, .. } => {
            matches!(kind.as_deref(), None | Some("job") | Some("object"))
        }
        _ => false,
    }
}

fn expires_soon(job: &Job) -> bool {
    job.expires_at.is_some_and(|at| {
        let margin = chrono::Duration::from_std(EXPIRY_MARGIN).unwrap_or_default();
        at - Utc::now() < margin
    })
}

impl Client {
    /// Polls `job` until it completes, with the configured poll policy
    /// (jittered delays from about 1 s up to 5 s, and a deadline).
    ///
    /// The state returned by the completing poll is the result: its objects
    /// are used as they are, without another request. A failed job is
    /// [`Error::JobFailed`] with the server's explanation; passing the
    /// deadline is [`Error::JobTimeout`].
    pub async fn wait_for_job(&self, job: Job) -> Result<Job> {
        if job.is_terminal() {
            return require_complete(job);
        }
        let id = job.id;
        let accept = |j: &Job| {
            if j.is_terminal() {
                Acceptance::Success
            } else {
                Acceptance::Pending(None)
            }
        };
        match self.inner.waiter.wait(|| self.job(&id), accept).await {
            Ok(job) => require_complete(job),
            Err(Error::Http(client_core::Error::Timeout { elapsed, polls })) => {
                Err(Error::JobTimeout {
                    job_id: id,
                    elapsed,
                    polls,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Polls `job` like [`Client::wait_for_job`], yielding every state seen,
    /// for progress displays. The last item is the complete job, or an
    /// error ([`Error::JobFailed`], [`Error::JobTimeout`], a request error).
    ///
    /// ```no_run
    /// # async fn demo(client: dap_client::Client, job: dap_client::Job) -> dap_client::Result<()> {
    /// use futures::TryStreamExt;
    /// let mut states = client.watch_job(job);
    /// while let Some(state) = states.try_next().await? {
    ///     eprintln!("job {}: {}", state.id, state.status);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn watch_job(&self, job: Job) -> BoxStream<'static, Result<Job>> {
        if job.is_terminal() {
            return stream::once(async move { require_complete(job) }).boxed();
        }
        let (client, id) = (self.clone(), job.id.clone());
        let poll = move || {
            let (client, id) = (client.clone(), id.clone());
            async move { client.job(&id).await }
        };
        let accept = |j: &Job| {
            if j.is_terminal() {
                Acceptance::Success
            } else {
                Acceptance::Pending(None)
            }
        };
        let id = job.id;
        self.inner
            .waiter
            .stream(poll, accept)
            .map(move |item| match item {
                Ok(job) if job.is_terminal() => require_complete(job),
                Ok(job) => Ok(job),
                Err(Error::Http(client_core::Error::Timeout { elapsed, polls })) => {
                    Err(Error::JobTimeout {
                        job_id: id.clone(),
                        elapsed,
                        polls,
                    })
                }
                Err(e) => Err(e),
            })
            .boxed()
    }

    /// Starts a query job and waits until it completes; returns the
    /// complete job with its objects.
    ///
    /// A job that the server reports complete but about to expire is not
    /// used: the client waits for it to lapse and starts the query again.
    pub async fn execute_job(
        &self,
        namespace: &str,
        table: &str,
        query: impl Into<Query>,
    ) -> Result<Job> {
        let query = query.into();
        let mut job = self.post_query(namespace, table, &query).await?;
        if job.is_terminal() && expires_soon(&job) {
            let wait = job
                .expires_at
                .and_then(|at| (at - Utc::now()).to_std().ok())
                .unwrap_or_default()
                + Duration::from_secs(5);
            tracing::info!(job_id = %job.id, ?wait, "the returned job is about to expire; starting the query again");
            self.inner.sleeper.sleep(wait).await;
            job = self.post_query(namespace, table, &query).await?;
        }
        let job = self.wait_for_job(job).await?;
        tracing::debug!(job_id = %job.id, objects = job.objects.len(), "query job complete");
        Ok(job)
    }

    /// Runs a query job to completion and returns its objects and metadata
    /// (the official client's `get_table_data`).
    pub async fn get_table_data(
        &self,
        namespace: &str,
        table: &str,
        query: impl Into<Query>,
    ) -> Result<GetTableDataResult> {
        let job = self.execute_job(namespace, table, query).await?;
        Ok(GetTableDataResult {
            schema_version: job.schema_version,
            timestamp: job.timestamp(),
            job_id: job.id.clone(),
            objects: job.objects.clone(),
            job,
        })
    }

    /// Runs a query job and then `use_job` on it; when the job (or its
    /// objects) turns out to have expired, the query is started again and
    /// `use_job` retried once.
    pub(crate) async fn with_fresh_job<T, F, Fut>(
        &self,
        namespace: &str,
        table: &str,
        query: &Query,
        mut use_job: F,
    ) -> Result<T>
    where
        F: FnMut(Job) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut restarts = 0;
        loop {
            let job = self.execute_job(namespace, table, query.clone()).await?;
            let id = job.id.clone();
            // Expiry is judged by the server (a 404 for the job or its
            // objects), not by comparing `expires_at` with a local clock
            // that may be skewed.
            let outcome = use_job(job).await;
            match outcome {
                Err(e) if is_expired_job(&e) && restarts < MAX_RESTARTS => {
                    restarts += 1;
                    tracing::warn!(job_id = %id, error = %e, "the job expired before its output was fetched; restarting it");
                }
                Err(e) if is_expired_job(&e) => return Err(Error::JobExpired { job_id: id }),
                other => return other,
            }
        }
    }
}
