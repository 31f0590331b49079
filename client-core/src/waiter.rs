//! Waiting for long-running server jobs (DAP queries, LD batch jobs, Toucan
//! operations).
//!
//! A [`Waiter`] calls a user-supplied *poll function* (an async closure that
//! fetches the job's current state) and classifies each state with an
//! *acceptor* that returns an [`Acceptance`]: still [`Pending`](Acceptance::Pending),
//! [`Success`](Acceptance::Success) or [`Failure`](Acceptance::Failure).
//! Between polls it sleeps according to a [`PollPolicy`]: delays start at
//! `min_interval`, grow by `growth` per poll up to `max_interval`, and are
//! jittered downwards (never below `min_interval`) so many clients do not
//! poll in lockstep.
//!
//! The policy is deliberately separate from the HTTP retry policy: a poll
//! that fails transiently is retried *inside* the poll function by the retry
//! loop; the waiter only decides how often to ask "are you done yet?".
//!
//! **Deadline.** When the next delay would pass `max_wait`, the waiter sleeps
//! only the time that remains and polls one last time exactly at the
//! deadline. If the job is still pending then, the wait ends with
//! [`Error::Timeout`] carrying the elapsed time and the number of polls.
//!
//! ```no_run
//! use std::time::Duration;
//! use client_core::waiter::{Acceptance, PollPolicy, Waiter};
//!
//! # async fn fetch_status() -> client_core::Result<String> { Ok("complete".into()) }
//! # async fn demo() -> client_core::Result<()> {
//! let waiter = Waiter::new(PollPolicy::default().max_wait(Duration::from_secs(600)));
//! let final_status: String = waiter
//!     .wait(fetch_status, |status: &String| match status.as_str() {
//!         "complete" => Acceptance::Success,
//!         "failed" => Acceptance::Failure("the server reported failure".into()),
//!         _ => Acceptance::Pending(None),
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::retry::{RandomSource, SeededRandom, SystemRandom};
use crate::time::{Clock, Sleeper, SystemClock, TokioSleeper};
use futures::Stream;

/// How a poll's state is classified by the acceptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// The job is still running. The optional duration is the server's hint
    /// of when to poll next (e.g. a `Retry-After`); it is clamped into
    /// `[min_interval, max_interval]` and replaces the computed backoff for
    /// that one delay.
    Pending(Option<Duration>),
    /// The job finished successfully; the state is the wait's result.
    Success,
    /// The job ended in failure; the string describes why (the server's
    /// error message, type, id) and becomes [`Error::JobFailed`]'s details.
    Failure(String),
}

/// How often to poll a long-running job and for how long.
///
/// Defaults: first delay 1 s, growing by 1.5× per poll up to 5 s, with 20 %
/// downward jitter, for at most one hour.
///
/// ```
/// use std::time::Duration;
/// use client_core::waiter::PollPolicy;
///
/// let policy = PollPolicy::default()
///     .min_interval(Duration::from_millis(500))
///     .max_interval(Duration::from_secs(10))
///     .growth(2.0)
///     .jitter(0.1)
///     .max_wait(Duration::from_secs(30 * 60));
/// assert!(policy.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PollPolicy {
    min_interval: Duration,
    max_interval: Duration,
    growth: f64,
    jitter: f64,
    max_wait: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(5),
            growth: 1.5,
            jitter: 0.2,
            max_wait: Duration::from_secs(60 * 60),
        }
    }
}

impl PollPolicy {
    /// The shortest delay between two polls (also the first delay).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The longest delay between two polls.
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = interval;
        self
    }

    /// The factor by which the delay grows after each pending poll (≥ 1.0;
    /// 1.0 polls at a fixed `min_interval`).
    pub fn growth(mut self, factor: f64) -> Self {
        self.growth = factor;
        self
    }

    /// The jitter fraction in `[0.0, 1.0]`: each delay is reduced by a random
    /// share of up to this fraction (never below `min_interval`). 0 disables
    /// jitter.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// The overall deadline, counted from the start of the wait. The last
    /// poll happens exactly at this point.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Checks that the settings make sense; the waiter calls this before the
    /// first poll and fails with [`Error::Config`] otherwise.
    pub fn validate(&self) -> Result<(), Error> {
        if self.min_interval.is_zero() {
            return Err(Error::Config(
                "poll policy: min_interval must be greater than zero".into(),
            ));
        }
        if self.max_interval < self.min_interval {
            return Err(Error::Config(format!(
                "poll policy: max_interval ({:?}) is shorter than min_interval ({:?})",
                self.max_interval, self.min_interval
            )));
        }
        if !(self.growth.is_finite() && self.growth >= 1.0) {
            return Err(Error::Config(format!(
                "poll policy: growth must be a finite number of at least 1.0, got {}",
                self.growth
            )));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::Config(format!(
                "poll policy: jitter must be between 0.0 and 1.0, got {}",
                self.jitter
            )));
        }
        Ok(())
    }

    /// The un-jittered delay after the `pending_polls`-th pending poll
    /// (1-based): `min_interval * growth^(pending_polls - 1)`, capped.
    fn base_delay(&self, pending_polls: u32) -> Duration {
        let exponent = i32::try_from(pending_polls.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.min_interval.as_secs_f64() * self.growth.powi(exponent);
        // A huge exponent gives +inf; the cap makes that harmless.
        let capped = secs.min(self.max_interval.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.max_interval)
    }

    /// The delay before the next poll, before the deadline is considered.
    fn next_delay(
        &self,
        pending_polls: u32,
        hint: Option<Duration>,
        random: &dyn RandomSource,
    ) -> Duration {
        if let Some(hint) = hint {
            return hint.clamp(self.min_interval, self.max_interval);
        }
        let base = self.base_delay(pending_polls);
        let cut = base.mul_f64(self.jitter * random.next_unit().clamp(0.0, 1.0));
        base.saturating_sub(cut).max(self.min_interval)
    }
}

/// Runs poll loops for long-running jobs with an injectable clock, sleeper
/// and random source (the same [`RandomSource`] the retry loop uses).
///
/// Cheap to clone; clones share the random source.
#[derive(Debug, Clone)]
pub struct Waiter {
    policy: PollPolicy,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    random: Arc<dyn RandomSource>,
}

impl Default for Waiter {
    /// A waiter with the default [`PollPolicy`] on real time.
    fn default() -> Self {
        Self::new(PollPolicy::default())
    }
}

impl Waiter {
    /// A waiter on real time with an OS-seeded random source.
    pub fn new(policy: PollPolicy) -> Self {
        Self {
            policy,
            clock: Arc::new(SystemClock),
            sleeper: Arc::new(TokioSleeper),
            random: Arc::new(SystemRandom),
        }
    }

    /// Uses `clock` to measure the deadline (tests pass a
    /// [`ManualClock`](crate::time::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `sleeper` between polls (tests pass a
    /// [`RecordingSleeper`](crate::time::RecordingSleeper)).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Uses `random` for the jitter (tests pass a
    /// [`SeededRandom`] or [`FixedRandom`](crate::retry::FixedRandom)).
    pub fn with_random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// Seeds the jitter's random source, making delays reproducible.
    pub fn with_rng_seed(self, seed: u64) -> Self {
        self.with_random(Arc::new(SeededRandom::new(seed)))
    }

    /// The policy in use.
    pub fn policy(&self) -> &PollPolicy {
        &self.policy
    }

    /// Polls until `accept` says the state is final and returns that state.
    /// The first poll happens at once; the deadline counts from this call.
    ///
    /// Fails with [`Error::JobFailed`] when `accept` returns
    /// [`Acceptance::Failure`], with [`Error::Timeout`] when the job is still
    /// pending after the last poll at the deadline, with [`Error::Config`]
    /// for an invalid policy, or with the poll function's own error (which
    /// ends the wait at once: retry transient failures inside `poll`).
    pub async fn wait<S, E, P, Fut, A>(&self, poll: P, accept: A) -> Result<S, E>
    where
        P: FnMut() -> Fut,
        Fut: Future<Output = Result<S, E>>,
        A: FnMut(&S) -> Acceptance,
        E: From<Error>,
    {
        let mut run = self.start(poll, accept)?;
        loop {
            match run.step().await? {
                Step::Pending(_) => {}
                Step::Succeeded(state) => return Ok(state),
                Step::Failed(_, err) | Step::TimedOut(_, err) => return Err(err.into()),
            }
        }
    }

    /// Polls like [`wait`](Self::wait) but yields every observed state, for
    /// progress reporting.
    ///
    /// Each poll's state is yielded as `Ok(state)`. On success the last item
    /// is the successful state. On failure or timeout the last state is
    /// followed by one `Err` ([`Error::JobFailed`] / [`Error::Timeout`]). A
    /// poll error is yielded as `Err` and ends the stream.
    ///
    /// ```no_run
    /// use client_core::waiter::{Acceptance, PollPolicy, Waiter};
    /// use futures::StreamExt;
    ///
    /// # async fn fetch_status() -> client_core::Result<String> { Ok(String::new()) }
    /// # async fn demo() -> client_core::Result<()> {
    /// let waiter = Waiter::new(PollPolicy::default());
    /// let states = waiter.stream(fetch_status, |s: &String| match s.as_str() {
    ///     "complete" => Acceptance::Success,
    ///     _ => Acceptance::Pending(None),
    /// });
    /// let mut states = std::pin::pin!(states);
    /// while let Some(state) = states.next().await {
    ///     let state = state?;
    ///     // update a progress bar with `state`
    ///     # drop(state);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream<S, E, P, Fut, A>(
        &self,
        poll: P,
        accept: A,
    ) -> impl Stream<Item = Result<S, E>> + use<S, E, P, Fut, A>
    where
        P: FnMut() -> Fut,
        Fut: Future<Output = Result<S, E>>,
        A: FnMut(&S) -> Acceptance,
        E: From<Error>,
    {
        let first = match self.start(poll, accept) {
            Ok(run) => StreamState::Running(Box::new(run)),
            Err(err) => StreamState::Fail(err),
        };
        futures::stream::unfold(first, |state| async move {
            match state {
                StreamState::Running(mut run) => match run.step().await {
                    Ok(Step::Pending(s)) => Some((Ok(s), StreamState::Running(run))),
                    Ok(Step::Succeeded(s)) => Some((Ok(s), StreamState::Done)),
                    Ok(Step::Failed(s, err) | Step::TimedOut(s, err)) => {
                        Some((Ok(s), StreamState::Fail(err)))
                    }
                    Err(err) => Some((Err(err), StreamState::Done)),
                },
                StreamState::Fail(err) => Some((Err(err.into()), StreamState::Done)),
                StreamState::Done => None,
            }
        })
    }

    fn start<P, A>(&self, poll: P, accept: A) -> Result<Run<P, A>, Error> {
        self.policy.validate()?;
        Ok(Run {
            waiter: self.clone(),
            poll,
            accept,
            started: self.clock.now(),
            polls: 0,
            next_delay: None,
        })
    }
}

/// What one poll found.
enum Step<S> {
    Pending(S),
    Succeeded(S),
    Failed(S, Error),
    TimedOut(S, Error),
}

enum StreamState<P, A> {
    Running(Box<Run<P, A>>),
    Fail(Error),
    Done,
}

/// One wait in progress.
struct Run<P, A> {
    waiter: Waiter,
    poll: P,
    accept: A,
    started: Instant,
    polls: u32,
    /// The sleep before the next poll; `None` before the first poll.
    next_delay: Option<Duration>,
}

impl<P, A> Run<P, A> {
    /// Sleeps if this is not the first poll, polls once and classifies.
    async fn step<S, E, Fut>(&mut self) -> Result<Step<S>, E>
    where
        P: FnMut() -> Fut,
        Fut: Future<Output = Result<S, E>>,
        A: FnMut(&S) -> Acceptance,
    {
        if let Some(delay) = self.next_delay.take() {
            tracing::debug!(
                delay_ms = delay.as_millis() as u64,
                polls = self.polls,
                "waiting before the next poll"
            );
            self.waiter.sleeper.sleep(delay).await;
        }
        let state = (self.poll)().await?;
        self.polls = self.polls.saturating_add(1);
        let hint = match (self.accept)(&state) {
            Acceptance::Success => return Ok(Step::Succeeded(state)),
            Acceptance::Failure(details) => {
                return Ok(Step::Failed(state, Error::JobFailed { details }));
            }
            Acceptance::Pending(hint) => hint,
        };
        let policy = &self.waiter.policy;
        let elapsed = self
            .waiter
            .clock
            .now()
            .saturating_duration_since(self.started);
        let Some(remaining) = policy
            .max_wait
            .checked_sub(elapsed)
            .filter(|r| !r.is_zero())
        else {
            tracing::debug!(
                polls = self.polls,
                ?elapsed,
                "job still pending at the deadline"
            );
            return Ok(Step::TimedOut(
                state,
                Error::Timeout {
                    elapsed,
                    polls: self.polls,
                },
            ));
        };
        let delay = policy.next_delay(self.polls, hint, self.waiter.random.as_ref());
        // Never sleep past the deadline: the last poll happens exactly at it.
        self.next_delay = Some(delay.min(remaining));
        Ok(Step::Pending(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_delay_grows_geometrically_and_is_capped() {
        let p = PollPolicy::default()
            .min_interval(Duration::from_secs(1))
            .max_interval(Duration::from_secs(5))
            .growth(2.0);
        let got: Vec<_> = (1..=5).map(|n| p.base_delay(n)).collect();
        let secs = |s| Duration::from_secs(s);
        assert_eq!(got, vec![secs(1), secs(2), secs(4), secs(5), secs(5)]);
        assert_eq!(p.base_delay(u32::MAX), secs(5));
    }

    #[test]
    fn server_hint_is_clamped_into_the_interval_range() {
        let p = PollPolicy::default();
        let random = SeededRandom::new(1);
        assert_eq!(
            p.next_delay(1, Some(Duration::ZERO), &random),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(3)), &random),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(3600)), &random),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn invalid_policies_are_rejected_with_a_reason() {
        let bad = [
            PollPolicy::default().min_interval(Duration::ZERO),
            PollPolicy::default().max_interval(Duration::from_millis(10)),
            PollPolicy::default().growth(0.5),
            PollPolicy::default().growth(f64::NAN),
            PollPolicy::default().jitter(1.5),
        ];
        for policy in bad {
            let err = policy.validate().expect_err("policy should be invalid");
            assert!(
                err.to_string()
                    .starts_with("invalid configuration: poll policy"),
                "{err}"
            );
        }
        assert!(PollPolicy::default().validate().is_ok());
    }
}
