//! Property tests of the job status state machine against the transition
//! table of specs/toucan_ld.md §B.5, written out independently here.

use ldbatch_client::{DOCUMENTED_STATUSES, JobStatus, StatusMonitor, Transition};
use proptest::prelude::*;

const N: usize = 8;

/// Index of a documented status in `DOCUMENTED_STATUSES`.
fn idx(s: &JobStatus) -> usize {
    DOCUMENTED_STATUSES
        .iter()
        .position(|d| d == s)
        .expect("documented status")
}

/// The spec's table: (from, to) by wire name.
const EDGES: &[(&str, &str)] = &[
    ("Initialized", "Accepted"),
    ("Initialized", "Rejected"),
    ("Initialized", "Canceling"),
    ("Accepted", "Processing"),
    ("Accepted", "Canceling"),
    ("Processing", "Completed"),
    ("Processing", "Failed"),
    ("Processing", "Canceling"),
    ("Canceling", "Canceled"),
    ("Canceling", "Completed"),
    ("Canceling", "Failed"),
];

fn adjacency() -> [[bool; N]; N] {
    let mut adj = [[false; N]; N];
    for (from, to) in EDGES {
        adj[idx(&JobStatus::from(*from))][idx(&JobStatus::from(*to))] = true;
    }
    adj
}

/// Transitive closure (one or more steps), by Floyd-Warshall.
fn reachable() -> [[bool; N]; N] {
    let mut r = adjacency();
    for k in 0..N {
        for i in 0..N {
            for j in 0..N {
                r[i][j] = r[i][j] || (r[i][k] && r[k][j]);
            }
        }
    }
    r
}

fn documented() -> impl Strategy<Value = JobStatus> {
    (0..N).prop_map(|i| DOCUMENTED_STATUSES[i].clone())
}

fn any_status() -> impl Strategy<Value = JobStatus> {
    prop_oneof![
        8 => documented(),
        1 => "[A-Z][a-z]{2,8}".prop_map(JobStatus::from),
    ]
}

/// A legal life of a job: a random walk over the table from `Initialized`
/// until a terminal status or `steps` moves.
fn legal_walk() -> impl Strategy<Value = Vec<JobStatus>> {
    proptest::collection::vec(0usize..16, 0..12).prop_map(|choices| {
        let adj = adjacency();
        let mut walk = vec![JobStatus::Initialized];
        for c in choices {
            let here = idx(walk.last().expect("non-empty"));
            let next: Vec<usize> = (0..N).filter(|&j| adj[here][j]).collect();
            if next.is_empty() {
                break;
            }
            walk.push(DOCUMENTED_STATUSES[next[c % next.len()]].clone());
        }
        walk
    })
}

/// What a poller sees of a walk: each status zero or more times, in order
/// (short-lived statuses may be missed, long ones polled repeatedly).
fn observed(walk: Vec<JobStatus>, repeats: Vec<usize>) -> Vec<JobStatus> {
    walk.into_iter()
        .zip(repeats.into_iter().chain(std::iter::repeat(1)))
        .flat_map(|(s, n)| std::iter::repeat_n(s, n))
        .collect()
}

proptest! {
    #[test]
    fn classification_matches_the_table(a in documented(), b in documented()) {
        let (i, j) = (idx(&a), idx(&b));
        let t = a.transition_to(&b);
        if i == j {
            prop_assert_eq!(t, Transition::Unchanged);
        } else if adjacency()[i][j] {
            prop_assert!(matches!(t, Transition::Documented | Transition::Inferred | Transition::CancelRace), "{a}->{b}: {t:?}");
        } else if reachable()[i][j] {
            prop_assert_eq!(t, Transition::Skipped, "{}->{}", a, b);
        } else {
            prop_assert_eq!(t, Transition::Illegal, "{}->{}", a, b);
        }
    }

    #[test]
    fn terminal_means_no_way_out(a in documented(), b in documented()) {
        if a.is_terminal() && a != b {
            prop_assert_eq!(a.transition_to(&b), Transition::Illegal);
        }
        if a.is_success() {
            prop_assert!(a.is_terminal());
        }
    }

    #[test]
    fn every_observed_legal_life_is_accepted_in_strict_mode(
        walk in legal_walk(),
        repeats in proptest::collection::vec(0usize..3, 0..16),
    ) {
        let seen = observed(walk, repeats);
        let mut monitor = StatusMonitor::new("job", true);
        for s in &seen {
            prop_assert!(monitor.observe(s).is_ok(), "rejected {s} after {:?} in {seen:?}", monitor.last());
        }
        prop_assert_eq!(monitor.last(), seen.last());
    }

    #[test]
    fn strict_mode_rejects_exactly_the_unreachable_steps(seq in proptest::collection::vec(any_status(), 1..20)) {
        let reach = reachable();
        let mut monitor = StatusMonitor::new("job", true);
        let mut last: Option<JobStatus> = None;
        for s in &seq {
            let expect_illegal = match &last {
                Some(prev) if prev != s && prev.is_known() && s.is_known() => !reach[idx(prev)][idx(s)],
                _ => false,
            };
            let result = monitor.observe(s);
            prop_assert_eq!(result.is_err(), expect_illegal, "{:?} -> {}", last, s);
            if let Err(e) = result {
                prop_assert_eq!(&e.to, s);
                prop_assert_eq!(Some(&e.from), last.as_ref());
                // A rejected status is not recorded.
                prop_assert_eq!(monitor.last(), last.as_ref());
            } else {
                last = Some(s.clone());
            }
        }
    }

    #[test]
    fn lenient_mode_never_fails_and_follows_the_server(seq in proptest::collection::vec(any_status(), 1..20)) {
        let mut monitor = StatusMonitor::new("job", false);
        for s in &seq {
            prop_assert!(monitor.observe(s).is_ok());
        }
        prop_assert_eq!(monitor.last(), seq.last());
    }

    #[test]
    fn unknown_statuses_are_never_judged(a in documented(), name in "[A-Z][a-z]{2,8}") {
        let unknown = JobStatus::from(name.as_str());
        prop_assume!(!unknown.is_known());
        prop_assert_eq!(a.transition_to(&unknown), Transition::Unjudgeable);
        prop_assert_eq!(unknown.transition_to(&a), Transition::Unjudgeable);
        prop_assert!(!unknown.is_terminal());
    }
}
