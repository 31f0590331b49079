use super::*;
use chrono::TimeZone;

fn day(d: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 4, 0, 0).unwrap() + Duration::days(d)
}

fn full(d: i64) -> Extract {
    Extract::new("full", BdsType::Full, day(d)).with_download_link(format!("https://h/full/{d}"))
}

fn diff(d: i64) -> Extract {
    Extract::new("diff", BdsType::Differential, day(d))
        .with_download_link(format!("https://h/diff/{d}"))
}

fn diffs(range: std::ops::RangeInclusive<i64>) -> Vec<Extract> {
    range.map(diff).collect()
}

fn state(last_full: Option<i64>, last_differential: Option<i64>) -> TableState {
    TableState {
        last_full: last_full.map(day),
        last_differential: last_differential.map(day),
    }
}

/// The plan as `(action, type, day)` triples, for compact assertions.
fn shape(plan: &Plan) -> Vec<(ApplyAction, BdsType, i64)> {
    plan.steps
        .iter()
        .map(|s| {
            (
                s.action,
                s.extract.bds_type.clone(),
                (s.extract.time().unwrap() - day(0)).num_days(),
            )
        })
        .collect()
}

use ApplyAction::{Replace, Upsert};
use BdsType::{Differential as D, Full as F};

fn run(st: TableState, listed: Vec<Extract>) -> Plan {
    plan(&st, &listed, &PlanOptions::default())
}

#[test]
fn empty_table_and_empty_listing_needs_a_full() {
    let p = run(TableState::default(), vec![]);
    assert_eq!(p.kind, PlanKind::FullNeeded(FullNeeded::NoFullListed));
    assert!(p.is_empty());
}

#[test]
fn empty_table_with_only_differentials_needs_a_full() {
    let p = run(TableState::default(), diffs(1..=3));
    assert_eq!(p.kind, PlanKind::FullNeeded(FullNeeded::NoFullListed));
    assert!(
        p.is_empty(),
        "differentials without a baseline would give a partial table"
    );
}

#[test]
fn first_run_takes_the_newest_full_then_every_later_differential() {
    let mut listed = vec![
        diff(9),
        full(7),
        diff(3),
        full(0),
        diff(8),
        diff(7),
        diff(1),
    ];
    listed.push(full(7)); // listed twice (current + previous): applied once
    let p = run(TableState::default(), listed);
    assert_eq!(p.kind, PlanKind::Initial);
    assert_eq!(
        shape(&p),
        vec![(Replace, F, 7), (Upsert, D, 8), (Upsert, D, 9)]
    );
    assert!(p.stopped_before.is_none());
}

#[test]
fn first_run_skips_an_unavailable_newest_full_for_the_previous_one() {
    let mut listed = vec![full(0), full(7).with_availability(false)];
    listed.extend(diffs(1..=8));
    let p = run(TableState::default(), listed);
    assert_eq!(p.kind, PlanKind::Initial);
    let expected: Vec<_> = std::iter::once((Replace, F, 0))
        .chain((1..=8).map(|d| (Upsert, D, d)))
        .collect();
    assert_eq!(shape(&p), expected);
}

#[test]
fn first_run_with_every_full_unavailable_says_so() {
    let mut unlinked = full(7);
    unlinked.download_link = None;
    let p = run(TableState::default(), vec![unlinked, diff(8)]);
    assert_eq!(
        p.kind,
        PlanKind::FullNeeded(FullNeeded::FullUnavailable {
            latest_full: day(7)
        })
    );
    assert!(p.is_empty());
    assert!(p.kind.to_string().contains("temporarily unavailable"));
}

#[test]
fn normal_run_applies_only_the_new_differentials() {
    let mut listed = diffs(1..=10);
    listed.push(full(7));
    let p = run(state(Some(7), Some(9)), listed);
    assert_eq!(p.kind, PlanKind::Incremental);
    assert_eq!(shape(&p), vec![(Upsert, D, 10)]);
}

#[test]
fn missed_differentials_are_recovered_in_order() {
    let mut listed = diffs(1..=10);
    listed.reverse();
    listed.push(full(0));
    let p = run(state(Some(0), Some(6)), listed);
    assert_eq!(p.kind, PlanKind::Incremental);
    assert_eq!(
        shape(&p),
        vec![
            (Upsert, D, 7),
            (Upsert, D, 8),
            (Upsert, D, 9),
            (Upsert, D, 10)
        ]
    );
}

#[test]
fn nothing_new_is_up_to_date() {
    let mut listed = diffs(1..=10);
    listed.push(full(7));
    let p = run(state(Some(7), Some(10)), listed);
    assert_eq!(p.kind, PlanKind::UpToDate);
    assert!(p.is_empty());
}

#[test]
fn a_full_only_state_continues_with_differentials_after_it() {
    let mut listed = diffs(5..=9);
    listed.push(full(7));
    let p = run(state(Some(7), None), listed);
    assert_eq!(p.kind, PlanKind::Incremental);
    assert_eq!(shape(&p), vec![(Upsert, D, 8), (Upsert, D, 9)]);
}

#[test]
fn an_expired_chain_rebaselines_from_a_newer_full() {
    // Applied through day 3; differentials 4..=9 have expired.
    let mut listed = diffs(10..=20);
    listed.extend([full(7), full(14)]);
    let p = run(state(Some(0), Some(3)), listed);
    assert_eq!(
        p.kind,
        PlanKind::Rebaseline(RebaselineReason::ChainBroken {
            applied_through: day(3),
            oldest_available: day(10)
        })
    );
    let expected: Vec<_> = std::iter::once((Replace, F, 14))
        .chain((15..=20).map(|d| (Upsert, D, d)))
        .collect();
    assert_eq!(shape(&p), expected);
    assert!(p.kind.to_string().contains("expired"));
}

#[test]
fn an_expired_chain_without_a_newer_full_applies_nothing_and_says_why() {
    let mut listed = diffs(10..=20);
    listed.push(full(2));
    let p = run(state(Some(2), Some(5)), listed);
    assert_eq!(
        p.kind,
        PlanKind::FullNeeded(FullNeeded::ChainBroken {
            applied_through: day(5),
            oldest_available: day(10),
            latest_full: Some(day(2)),
        })
    );
    assert!(
        p.is_empty(),
        "applying later differentials would hide the hole"
    );
    let why = p.kind.to_string();
    assert!(
        why.contains("expired") && why.contains("2024-01-06T04:00:00Z"),
        "{why}"
    );
}

#[test]
fn a_full_older_than_the_applied_data_is_never_applied() {
    // Differentials 1..=10 applied on top of full 0; a full of day 7 appears.
    let mut listed = diffs(1..=11);
    listed.extend([full(0), full(7)]);
    for options in [
        PlanOptions::default(),
        PlanOptions::default().rebaseline_on_new_full(true),
    ] {
        let p = plan(&state(Some(0), Some(10)), &listed, &options);
        assert_eq!(p.kind, PlanKind::Incremental);
        assert_eq!(shape(&p), vec![(Upsert, D, 11)]);
    }
    // Even when the chain is broken, the older full is not used.
    let p = run(state(Some(0), Some(10)), vec![full(7), diff(13)]);
    assert!(matches!(
        p.kind,
        PlanKind::FullNeeded(FullNeeded::ChainBroken { .. })
    ));
    assert!(p.is_empty());
}

#[test]
fn rebaseline_on_new_full_uses_a_full_at_least_as_new_as_the_data() {
    let mut listed = diffs(1..=9);
    listed.extend([full(0), full(7)]);
    let options = PlanOptions::default().rebaseline_on_new_full(true);
    let p = plan(&state(Some(0), Some(6)), &listed, &options);
    assert_eq!(p.kind, PlanKind::Rebaseline(RebaselineReason::Requested));
    assert_eq!(
        shape(&p),
        vec![(Replace, F, 7), (Upsert, D, 8), (Upsert, D, 9)]
    );
    // The same full is not applied twice.
    let p = plan(&state(Some(7), Some(9)), &listed, &options);
    assert_eq!(p.kind, PlanKind::UpToDate);
}

#[test]
fn a_data_set_without_differentials_is_replaced_by_each_newer_full() {
    let p = run(state(Some(0), None), vec![full(0), full(7)]);
    assert_eq!(p.kind, PlanKind::Rebaseline(RebaselineReason::NewerFull));
    assert_eq!(shape(&p), vec![(Replace, F, 7)]);
    let p = run(state(Some(7), None), vec![full(0), full(7)]);
    assert_eq!(p.kind, PlanKind::UpToDate);
}

#[test]
fn a_newer_full_without_new_differentials_is_not_needed() {
    let mut listed = diffs(1..=7);
    listed.push(full(8));
    let p = run(state(Some(0), Some(7)), listed);
    assert_eq!(p.kind, PlanKind::UpToDate);
}

#[test]
fn the_cadence_decides_whether_an_unlisted_predecessor_was_the_last_applied() {
    // Differential 3 was applied and has since left the listing.
    let listed = diffs(4..=6);
    let p = run(state(Some(0), Some(3)), listed.clone());
    assert_eq!(
        p.kind,
        PlanKind::Incremental,
        "daily cadence: day 4 follows day 3"
    );
    assert_eq!(
        shape(&p),
        vec![(Upsert, D, 4), (Upsert, D, 5), (Upsert, D, 6)]
    );

    let p = run(state(Some(0), Some(1)), listed.clone());
    assert!(
        matches!(p.kind, PlanKind::FullNeeded(FullNeeded::ChainBroken { .. })),
        "days 2 and 3 are missing"
    );

    let hourly = PlanOptions::default().max_differential_gap(Duration::hours(2));
    let p = plan(&state(Some(0), Some(3)), &listed, &hourly);
    assert!(
        matches!(p.kind, PlanKind::FullNeeded(_)),
        "with an hourly cadence a day is a hole"
    );
}

#[test]
fn a_single_unanchored_differential_is_not_trusted() {
    let p = run(state(Some(0), Some(3)), vec![diff(4)]);
    assert!(matches!(p.kind, PlanKind::FullNeeded(_)));
    let p = run(state(Some(0), Some(3)), vec![diff(3), diff(4)]);
    assert_eq!(
        shape(&p),
        vec![(Upsert, D, 4)],
        "anchored by the listed predecessor"
    );
}

#[test]
fn a_hole_inside_the_listing_is_found() {
    // Applied through 7; 8 and 9 expired although older ones are still listed.
    let mut listed: Vec<_> = (1..=7).chain(10..=12).map(diff).collect();
    listed.extend([full(0), full(7)]);
    let p = run(state(Some(0), Some(7)), listed.clone());
    assert!(
        matches!(
            p.kind,
            PlanKind::Rebaseline(RebaselineReason::ChainBroken { .. })
        ),
        "{:?}",
        p.kind
    );
    assert_eq!(
        shape(&p),
        vec![(Replace, F, 7)],
        "the full, but no differential across the hole"
    );
    assert_eq!(
        p.gap,
        Some(Gap {
            after: day(7),
            next_listed: day(10)
        })
    );

    // A first run stops at the hole too: consistent as of day 3.
    let mut listed: Vec<_> = (1..=3).chain(6..=8).map(diff).collect();
    listed.push(full(0));
    let p = run(TableState::default(), listed);
    assert_eq!(
        shape(&p),
        vec![
            (Replace, F, 0),
            (Upsert, D, 1),
            (Upsert, D, 2),
            (Upsert, D, 3)
        ]
    );
    assert_eq!(
        p.gap,
        Some(Gap {
            after: day(3),
            next_listed: day(6)
        })
    );
}

#[test]
fn an_unavailable_differential_stops_the_plan_before_it() {
    let mut listed = diffs(1..=6);
    listed[3] = diff(4).with_availability(false);
    let p = run(state(Some(0), Some(2)), listed);
    assert_eq!(p.kind, PlanKind::Incremental);
    assert_eq!(shape(&p), vec![(Upsert, D, 3)]);
    assert_eq!(
        p.stopped_before.as_ref().and_then(Extract::time),
        Some(day(4))
    );
}

#[test]
fn undated_and_unknown_extracts_are_ignored_and_counted() {
    let mut undated = diff(5);
    undated.queued_for_processing_date = None;
    let odd = Extract::new("x", BdsType::Unknown("Hourly".into()), day(6));
    let p = run(
        TableState::default(),
        vec![full(0), undated, odd, diff(1), diff(2)],
    );
    assert_eq!(p.ignored, 2);
    assert_eq!(
        shape(&p),
        vec![(Replace, F, 0), (Upsert, D, 1), (Upsert, D, 2)]
    );
}

#[test]
fn created_date_orders_extracts_without_a_queued_date() {
    let mut late = Extract::new("diff", D, day(0)).with_download_link("https://h/late");
    late.queued_for_processing_date = None;
    late.created_date = Some(day(2));
    let p = run(TableState::default(), vec![late, full(0), diff(1)]);
    assert_eq!(
        shape(&p),
        vec![(Replace, F, 0), (Upsert, D, 1), (Upsert, D, 2)]
    );
}

#[test]
fn applying_a_plan_step_by_step_converges() {
    let mut listed = diffs(1..=20);
    listed.extend([full(0), full(7), full(14)]);
    let mut st = TableState::default();
    for _ in 0..3 {
        let p = run(st, listed.clone());
        for step in &p.steps {
            st = st.after(step);
        }
    }
    assert_eq!(st, state(Some(14), Some(20)));
    assert_eq!(run(st, listed).kind, PlanKind::UpToDate);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn arb_extract() -> impl Strategy<Value = Extract> {
        (0i64..30, any::<bool>(), prop::bool::weighted(0.9)).prop_map(|(d, is_full, available)| {
            let e = if is_full { full(d) } else { diff(d) };
            e.with_availability(available)
        })
    }

    fn arb_state() -> impl Strategy<Value = TableState> {
        (prop::option::of(0i64..30), prop::option::of(0i64..30))
            .prop_map(|(f, d)| state(f, d.filter(|d| f.is_none_or(|f| *d > f))))
    }

    proptest! {
        #[test]
        fn plans_are_ordered_safe_and_never_go_back(
            st in arb_state(),
            listed in prop::collection::vec(arb_extract(), 0..40),
            rebaseline in any::<bool>(),
        ) {
            let options = PlanOptions::default().rebaseline_on_new_full(rebaseline);
            let p = plan(&st, &listed, &options);
            // Strictly increasing times: nothing applied twice or out of order.
            let times: Vec<_> = p.steps.iter().map(|s| s.extract.time().unwrap()).collect();
            prop_assert!(times.windows(2).all(|w| w[0] < w[1]));
            // Only the first step may replace, and only with a full.
            for (i, s) in p.steps.iter().enumerate() {
                prop_assert!(s.extract.is_downloadable());
                match s.action {
                    Replace => prop_assert!(i == 0 && s.extract.bds_type == F),
                    Upsert => prop_assert_eq!(&s.extract.bds_type, &D),
                }
            }
            // Never an older extract over newer data.
            if let (Some(w), Some(first)) = (st.watermark(), times.first()) {
                prop_assert!(*first >= w);
                if p.steps[0].action == Upsert { prop_assert!(*first > w); }
            }
            // Empty only for the kinds that say nothing is to be done (or a stop).
            if p.steps.is_empty() {
                prop_assert!(
                    matches!(p.kind, PlanKind::UpToDate | PlanKind::FullNeeded(_)) || p.stopped_before.is_some()
                );
            }
            // Consecutive differentials never straddle a step the planner calls a hole.
            if let Some(gap) = p.gap {
                prop_assert!(times.iter().all(|t| *t <= gap.after || *t < gap.next_listed));
            }
        }
    }
}
