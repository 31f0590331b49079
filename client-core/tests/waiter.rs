//! The job waiter: backoff schedule, deadline with one last poll, failure
//! states and the progress stream. Time is a ManualClock advanced by a
//! RecordingSleeper, so no real time passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use client_core::Error;
use client_core::time::{ManualClock, RecordingSleeper};
use client_core::waiter::{Acceptance, PollPolicy, Waiter};
use futures::StreamExt;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn waiter(policy: PollPolicy, seed: u64) -> (Waiter, RecordingSleeper) {
    let clock = ManualClock::new();
    let sleeper = RecordingSleeper::with_clock(clock.clone());
    let waiter = Waiter::new(policy)
        .with_clock(Arc::new(clock))
        .with_sleeper(Arc::new(sleeper.clone()))
        .with_rng_seed(seed);
    (waiter, sleeper)
}

/// A poll function returning `states` in order (the last one repeats) and
/// counting its calls.
fn scripted(
    states: &'static [&'static str],
) -> (
    Arc<AtomicU32>,
    impl FnMut() -> futures::future::Ready<Result<String, Error>>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let poll = move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
        let state = states[n.min(states.len() - 1)];
        futures::future::ready(Ok(state.to_string()))
    };
    (calls, poll)
}

#[allow(clippy::ptr_arg)] // the waiter hands the acceptor `&S`, here `&String`
fn accept(state: &String) -> Acceptance {
    match state.as_str() {
        "complete" => Acceptance::Success,
        s if s.starts_with("failed") => Acceptance::Failure(s.to_string()),
        _ => Acceptance::Pending(None),
    }
}

const SIX_PENDING: &[&str] = &[
    "waiting", "running", "running", "running", "running", "running", "complete",
];

fn growing_policy(jitter: f64) -> PollPolicy {
    PollPolicy::default()
        .min_interval(secs(1.0))
        .max_interval(secs(5.0))
        .growth(2.0)
        .jitter(jitter)
        .max_wait(secs(3600.0))
}

#[tokio::test]
async fn without_jitter_delays_grow_geometrically_up_to_the_maximum() {
    let (waiter, sleeper) = waiter(growing_policy(0.0), 7);
    let (calls, poll) = scripted(SIX_PENDING);
    let state = waiter.wait(poll, accept).await.unwrap();
    assert_eq!(state, "complete");
    assert_eq!(calls.load(Ordering::SeqCst), 7);
    assert_eq!(
        sleeper.sleeps(),
        vec![
            secs(1.0),
            secs(2.0),
            secs(4.0),
            secs(5.0),
            secs(5.0),
            secs(5.0)
        ]
    );
}

#[tokio::test]
async fn jittered_delays_stay_between_min_and_the_grown_delay_and_are_reproducible() {
    let (waiter_a, sleeper_a) = waiter(growing_policy(0.5), 42);
    waiter_a
        .wait(scripted(SIX_PENDING).1, accept)
        .await
        .unwrap();
    let sleeps = sleeper_a.sleeps();

    let bases = [1.0, 2.0, 4.0, 5.0, 5.0, 5.0];
    assert_eq!(sleeps.len(), bases.len());
    for (sleep, base) in sleeps.iter().zip(bases) {
        let lowest = (base * 0.5_f64).max(1.0);
        assert!(
            *sleep >= secs(lowest) && *sleep <= secs(base),
            "{sleep:?} outside [{lowest}, {base}] s"
        );
    }
    let jittered = sleeps
        .iter()
        .zip(bases)
        .filter(|(s, b)| **s < secs(*b))
        .count();
    assert!(
        jittered >= 3,
        "jitter should shorten most delays: {sleeps:?}"
    );

    let (waiter_b, sleeper_b) = waiter(growing_policy(0.5), 42);
    waiter_b
        .wait(scripted(SIX_PENDING).1, accept)
        .await
        .unwrap();
    assert_eq!(
        sleeper_b.sleeps(),
        sleeps,
        "the same seed must give the same delays"
    );
}

#[tokio::test]
async fn the_deadline_gives_a_timeout_after_one_last_poll_exactly_at_it() {
    let policy = PollPolicy::default()
        .min_interval(secs(1.0))
        .max_interval(secs(4.0))
        .growth(2.0)
        .jitter(0.0)
        .max_wait(secs(10.0));
    let (waiter, sleeper) = waiter(policy, 1);
    let (calls, poll) = scripted(&["running"]);

    let err = waiter.wait(poll, accept).await.unwrap_err();

    // Polls at t = 0, 1, 3, 7 and, instead of t = 11, at the 10 s deadline.
    assert_eq!(
        sleeper.sleeps(),
        vec![secs(1.0), secs(2.0), secs(4.0), secs(3.0)]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    match err {
        Error::Timeout { elapsed, polls } => {
            assert_eq!(elapsed, secs(10.0));
            assert_eq!(polls, 5);
        }
        other => panic!("expected a timeout, got {other}"),
    }
}

#[tokio::test]
async fn a_success_on_the_last_poll_at_the_deadline_is_returned() {
    let policy = PollPolicy::default()
        .jitter(0.0)
        .growth(1.0)
        .max_wait(secs(2.5));
    let (waiter, sleeper) = waiter(policy, 1);
    let (_, poll) = scripted(&["running", "running", "running", "complete"]);
    assert_eq!(waiter.wait(poll, accept).await.unwrap(), "complete");
    assert_eq!(sleeper.sleeps(), vec![secs(1.0), secs(1.0), secs(0.5)]);
}

#[tokio::test]
async fn a_failed_state_ends_the_wait_with_its_details() {
    let (waiter, sleeper) = waiter(growing_policy(0.0), 1);
    let (calls, poll) = scripted(&["waiting", "running", "failed: SnapshotRequired", "complete"]);
    let err = waiter.wait(poll, accept).await.unwrap_err();
    match &err {
        Error::JobFailed { details } => assert_eq!(details, "failed: SnapshotRequired"),
        other => panic!("expected JobFailed, got {other}"),
    }
    assert_eq!(err.to_string(), "the job failed: failed: SnapshotRequired");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "no poll after the failure");
    assert_eq!(sleeper.sleeps().len(), 2);
}

#[tokio::test]
async fn a_poll_error_ends_the_wait_at_once() {
    let (waiter, sleeper) = waiter(growing_policy(0.0), 1);
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let poll = move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 1 {
                Err(Error::Config("job id unknown".into()))
            } else {
                Ok("running".to_string())
            }
        }
    };
    let err = waiter.wait(poll, accept).await.unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m == "job id unknown"),
        "{err}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(sleeper.sleeps(), vec![secs(1.0)]);
}

#[tokio::test]
async fn a_server_hint_replaces_the_backoff_clamped_to_the_interval_range() {
    let (waiter, sleeper) = waiter(growing_policy(0.5), 3);
    let (_, poll) = scripted(&["hint 3", "hint 0", "hint 60", "complete"]);
    let state = waiter
        .wait(poll, |s: &String| match s.as_str() {
            "hint 3" => Acceptance::Pending(Some(secs(3.0))),
            "hint 0" => Acceptance::Pending(Some(Duration::ZERO)),
            "hint 60" => Acceptance::Pending(Some(secs(60.0))),
            other => accept(&other.to_string()),
        })
        .await
        .unwrap();
    assert_eq!(state, "complete");
    assert_eq!(sleeper.sleeps(), vec![secs(3.0), secs(1.0), secs(5.0)]);
}

#[tokio::test]
async fn an_invalid_policy_fails_before_polling() {
    let (waiter, _) = waiter(PollPolicy::default().growth(0.0), 1);
    let (calls, poll) = scripted(&["running"]);
    let err = waiter.wait(poll, accept).await.unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_stream_yields_every_observed_state_then_ends() {
    let (waiter, _) = waiter(growing_policy(0.2), 9);
    let (_, poll) = scripted(&["waiting", "running", "running", "complete"]);
    let items: Vec<_> = waiter.stream(poll, accept).collect().await;
    let states: Vec<String> = items.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(states, ["waiting", "running", "running", "complete"]);
}

#[tokio::test]
async fn the_stream_ends_a_failure_with_the_failed_state_then_job_failed() {
    let (waiter, _) = waiter(growing_policy(0.2), 9);
    let (calls, poll) = scripted(&["running", "failed: quota", "complete"]);
    let items: Vec<Result<String, Error>> = waiter.stream(poll, accept).collect().await;
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap(), "running");
    assert_eq!(items[1].as_ref().unwrap(), "failed: quota");
    assert!(matches!(&items[2], Err(Error::JobFailed { details }) if details == "failed: quota"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_stream_ends_a_timeout_with_the_timeout_error() {
    let policy = PollPolicy::default()
        .jitter(0.0)
        .growth(1.0)
        .max_wait(secs(2.0));
    let (waiter, _) = waiter(policy, 9);
    let (_, poll) = scripted(&["running"]);
    let items: Vec<Result<String, Error>> = waiter.stream(poll, accept).collect().await;
    assert_eq!(
        items.len(),
        4,
        "polls at 0, 1 and 2 s, then the timeout: {items:?}"
    );
    assert!(
        items[..3]
            .iter()
            .all(|r| r.as_ref().is_ok_and(|s| s == "running"))
    );
    assert!(
        matches!(items[3], Err(Error::Timeout { polls: 3, .. })),
        "{:?}",
        items[3]
    );
}
