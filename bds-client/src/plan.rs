//! The extract planner: which extracts to apply, in which order, and why.
//!
//! A differential holds the changes since the *previous differential*, so the
//! table is correct only if every differential after its baseline full was
//! applied, oldest first. [`plan`] is a pure function of the table's
//! [`TableState`] and the extracts the server lists; it never applies a full
//! that is older than data already applied, and when the chain of
//! differentials has a hole it says so instead of silently skipping data.
//!
//! ```
//! use bds_client::plan::{plan, PlanKind, PlanOptions, TableState};
//! use bds_client::{BdsType, Extract};
//! use chrono::{TimeZone, Utc};
//!
//! let day = |d| Utc.with_ymd_and_hms(2024, 9, d, 4, 0, 0).unwrap();
//! let available = vec![
//!     Extract::new("full-id", BdsType::Full, day(1)).with_download_link("https://h/f1"),
//!     Extract::new("diff-id", BdsType::Differential, day(2)).with_download_link("https://h/d2"),
//!     Extract::new("diff-id", BdsType::Differential, day(3)).with_download_link("https://h/d3"),
//! ];
//! let first = plan(&TableState::default(), &available, &PlanOptions::default());
//! assert_eq!(first.kind, PlanKind::Initial);
//! assert_eq!(first.steps.len(), 3);
//!
//! let state = TableState { last_full: Some(day(1)), last_differential: Some(day(2)) };
//! let next = plan(&state, &available, &PlanOptions::default());
//! assert_eq!(next.kind, PlanKind::Incremental);
//! assert_eq!(next.steps[0].extract.time(), Some(day(3)));
//! ```

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{BdsType, Extract};

/// What has been applied to a table so far: the queued times of the last
/// full and of the last differential applied since that full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableState {
    /// Queued time of the full the table was last (re)built from.
    pub last_full: Option<DateTime<Utc>>,
    /// Queued time of the last differential applied after that full.
    pub last_differential: Option<DateTime<Utc>>,
}

impl TableState {
    /// The point in time the table's data is current to, if any.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.last_full.max(self.last_differential)
    }

    /// The state after `step` has been applied.
    pub fn after(&self, step: &PlanStep) -> TableState {
        let time = step.extract.time();
        match step.action {
            ApplyAction::Replace => TableState {
                last_full: time,
                last_differential: None,
            },
            ApplyAction::Upsert => TableState {
                last_full: self.last_full,
                last_differential: time,
            },
        }
    }
}

/// Knobs of the planner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanOptions {
    /// The longest time between two consecutive differentials; a longer step
    /// is a hole (expired or missing differentials). `None` (the default)
    /// infers it from the listing: 1.5 times the median step. With fewer than
    /// two differentials listed and no value set, the chain is proven only by
    /// a differential listed at or before the table's data.
    pub max_differential_gap: Option<Duration>,
    /// Rebuild the table from a full whenever a full newer than the table's
    /// data is listed (confirms hard deletes, costs a full download).
    pub rebaseline_on_new_full: bool,
}

impl PlanOptions {
    /// Sets [`PlanOptions::max_differential_gap`].
    pub fn max_differential_gap(mut self, gap: Duration) -> Self {
        self.max_differential_gap = Some(gap);
        self
    }

    /// Sets [`PlanOptions::rebaseline_on_new_full`].
    pub fn rebaseline_on_new_full(mut self, yes: bool) -> Self {
        self.rebaseline_on_new_full = yes;
        self
    }
}

/// How to apply one extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyAction {
    /// Replace the table's contents with the extract's rows (a full).
    Replace,
    /// Insert or update the extract's rows by primary key (a differential).
    Upsert,
}

/// One extract to apply.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PlanStep {
    /// The extract.
    pub extract: Extract,
    /// How to apply it.
    pub action: ApplyAction,
}

/// Why a table needs a full that cannot be applied now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullNeeded {
    /// The table is empty and no full extract is listed.
    NoFullListed,
    /// The table is empty and every listed full is temporarily unavailable.
    FullUnavailable {
        /// Queued time of the newest full.
        latest_full: DateTime<Utc>,
    },
    /// Differentials between the table's data and the oldest listed one have
    /// expired, and no full at least as new as the table's data is listed.
    ChainBroken {
        /// What the table's data is current to.
        applied_through: DateTime<Utc>,
        /// The oldest listed differential newer than that.
        oldest_available: DateTime<Utc>,
        /// The newest listed full, older than the table's data.
        latest_full: Option<DateTime<Utc>>,
    },
}

/// Why the table is rebuilt from a full.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RebaselineReason {
    /// Differentials after the table's data expired; a newer full closes the gap.
    ChainBroken {
        /// What the table's data is current to.
        applied_through: DateTime<Utc>,
        /// The oldest listed differential newer than that.
        oldest_available: DateTime<Utc>,
    },
    /// The data set has no differentials and a newer full is listed.
    NewerFull,
    /// [`PlanOptions::rebaseline_on_new_full`] is set and a newer full is listed.
    Requested,
}

/// What kind of run the plan is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlanKind {
    /// Nothing new to apply.
    UpToDate,
    /// First load: the newest full, then every later differential.
    Initial,
    /// The differentials newer than the table's data, oldest first
    /// (including any that earlier runs missed).
    Incremental,
    /// The table is rebuilt from a full, then later differentials applied.
    Rebaseline(RebaselineReason),
    /// Nothing can be applied safely until a suitable full is listed.
    FullNeeded(FullNeeded),
}

/// The ordered extracts to apply to one table.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Plan {
    /// What kind of run this is and why.
    pub kind: PlanKind,
    /// The extracts to apply, in order; each should be applied atomically
    /// together with the new [`TableState`] (see [`TableState::after`]).
    pub steps: Vec<PlanStep>,
    /// Set when the plan stops early because a needed extract is temporarily
    /// unavailable; run again later to continue from there.
    pub stopped_before: Option<Extract>,
    /// Set when the plan stops at a hole in the listed differentials; a
    /// later run rebuilds from the next full that is newer than the hole.
    pub gap: Option<Gap>,
    /// Listed extracts that were ignored: unknown type or no date.
    pub ignored: usize,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Computes the ordered extracts to apply to a table in `state`, given every
/// extract the server lists for the data set (both variants, any order,
/// duplicates allowed). Pure: no I/O.
pub fn plan(state: &TableState, available: &[Extract], options: &PlanOptions) -> Plan {
    let listing = Listing::new(available, options);
    let (kind, baseline) = decide(state, &listing, options);
    let mut steps = Vec::new();
    let mut stopped_before = None;
    let mut gap = None;
    let anchor = match baseline {
        Some(full) => {
            steps.push(PlanStep {
                extract: full.clone(),
                action: ApplyAction::Replace,
            });
            full.time()
        }
        None => state.watermark(),
    };
    if let (false, Some(anchor)) = (
        matches!(kind, PlanKind::FullNeeded(_) | PlanKind::UpToDate),
        anchor,
    ) {
        let chain = listing.chain_after(anchor);
        gap = chain.gap;
        for diff in chain.differentials {
            if !diff.is_downloadable() {
                stopped_before = Some(diff.clone());
                break;
            }
            steps.push(PlanStep {
                extract: diff.clone(),
                action: ApplyAction::Upsert,
            });
        }
    }
    Plan {
        kind,
        steps,
        stopped_before,
        gap,
        ignored: listing.ignored,
    }
}

/// Chooses the kind of run and, when the table is (re)built, the full.
fn decide<'a>(
    state: &TableState,
    listing: &Listing<'a>,
    options: &PlanOptions,
) -> (PlanKind, Option<&'a Extract>) {
    let latest_full = listing.latest_downloadable_full();
    let Some(watermark) = state.watermark() else {
        return match latest_full {
            Some(full) => (PlanKind::Initial, Some(full)),
            None => (PlanKind::FullNeeded(listing.why_no_full()), None),
        };
    };
    // A full is usable as a new baseline only if it is not older than the data.
    let newer_full = latest_full
        .filter(|f| f.time().is_some_and(|t| t >= watermark) && f.time() != state.last_full);
    if options.rebaseline_on_new_full
        && let Some(full) = newer_full
    {
        return (
            PlanKind::Rebaseline(RebaselineReason::Requested),
            Some(full),
        );
    }
    let chain = listing.chain_after(watermark);
    if !chain.differentials.is_empty() {
        return (PlanKind::Incremental, None);
    }
    let Some(gap) = chain.gap else {
        return match newer_full {
            Some(full) if listing.differentials.is_empty() => (
                PlanKind::Rebaseline(RebaselineReason::NewerFull),
                Some(full),
            ),
            _ => (PlanKind::UpToDate, None),
        };
    };
    let (applied_through, oldest_available) = (watermark, gap.next_listed);
    match newer_full {
        Some(full) => (
            PlanKind::Rebaseline(RebaselineReason::ChainBroken {
                applied_through,
                oldest_available,
            }),
            Some(full),
        ),
        None => (
            PlanKind::FullNeeded(FullNeeded::ChainBroken {
                applied_through,
                oldest_available,
                latest_full: latest_full.and_then(Extract::time),
            }),
            None,
        ),
    }
}

/// A hole in the listed differentials: the ones between `after` and
/// `next_listed` have expired (or were never listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    /// The last point the chain is known to be complete to.
    pub after: DateTime<Utc>,
    /// The next differential listed after the hole.
    pub next_listed: DateTime<Utc>,
}

/// The unbroken run of differentials after an anchor, and the hole that ends it.
struct Chain<'a> {
    differentials: Vec<&'a Extract>,
    gap: Option<Gap>,
}

/// The listed extracts, deduplicated and sorted by time, split by type.
struct Listing<'a> {
    fulls: Vec<&'a Extract>,
    differentials: Vec<&'a Extract>,
    /// The longest step between consecutive differentials that is not a hole.
    max_step: Option<Duration>,
    ignored: usize,
}

impl<'a> Listing<'a> {
    fn new(available: &'a [Extract], options: &PlanOptions) -> Self {
        let mut fulls = Vec::new();
        let mut differentials = Vec::new();
        let mut ignored = 0;
        for extract in available {
            match (&extract.bds_type, extract.time()) {
                (BdsType::Full, Some(_)) => fulls.push(extract),
                (BdsType::Differential, Some(_)) => differentials.push(extract),
                _ => ignored += 1,
            }
        }
        let differentials = sorted_unique(differentials);
        let max_step = options
            .max_differential_gap
            .or_else(|| inferred_max_step(&differentials));
        Listing {
            fulls: sorted_unique(fulls),
            differentials,
            max_step,
            ignored,
        }
    }

    fn latest_downloadable_full(&self) -> Option<&'a Extract> {
        self.fulls
            .iter()
            .rev()
            .find(|f| f.is_downloadable())
            .copied()
    }

    fn why_no_full(&self) -> FullNeeded {
        match self.fulls.last().and_then(|f| f.time()) {
            Some(latest_full) => FullNeeded::FullUnavailable { latest_full },
            None => FullNeeded::NoFullListed,
        }
    }

    /// The differentials after `anchor` that continue the chain without a hole.
    ///
    /// A differential holds the changes since the previous one, so the first
    /// one after the anchor is usable only if its predecessor is listed at or
    /// before the anchor (the listing is a window of the newest ones) or, when
    /// nothing that old is listed, if it is within one step of the anchor.
    /// Every later one must follow its predecessor within one step.
    fn chain_after(&self, anchor: DateTime<Utc>) -> Chain<'a> {
        let time = |e: &Extract| e.time().unwrap_or(anchor);
        let split = self.differentials.partition_point(|d| time(d) <= anchor);
        let predecessor = split.checked_sub(1).map(|i| time(self.differentials[i]));
        let mut differentials = Vec::new();
        let mut previous = predecessor.unwrap_or(anchor);
        let mut proven = predecessor.is_some();
        for diff in &self.differentials[split..] {
            let t = time(diff);
            let step_ok = self.max_step.is_some_and(|max| t - previous <= max);
            // Without a known cadence, a listed predecessor is the only proof.
            let linked = step_ok || (proven && self.max_step.is_none());
            if !linked {
                return Chain {
                    differentials,
                    gap: Some(Gap {
                        after: previous.max(anchor),
                        next_listed: t,
                    }),
                };
            }
            differentials.push(*diff);
            previous = t;
            proven = true;
        }
        Chain {
            differentials,
            gap: None,
        }
    }
}

/// The usual cadence of the listed differentials with some slack: 1.5 times
/// the median step. Schedules are regular (daily, hourly), so a step much
/// longer than the median is a hole. `None` with fewer than two.
fn inferred_max_step(differentials: &[&Extract]) -> Option<Duration> {
    let mut steps: Vec<Duration> = differentials
        .windows(2)
        .filter_map(|w| Some(w[1].time()? - w[0].time()?))
        .filter(|d| *d > Duration::zero())
        .collect();
    steps.sort();
    let median = *steps.get(steps.len() / 2)?;
    Some(median + median / 2)
}

/// Sorts by time; of several extracts with the same time keeps the best one
/// (downloadable, then most recently created).
fn sorted_unique(mut extracts: Vec<&Extract>) -> Vec<&Extract> {
    extracts.sort_by_key(|e| (e.time(), e.is_downloadable(), e.created_date));
    let mut unique: Vec<&Extract> = Vec::with_capacity(extracts.len());
    for extract in extracts {
        match unique.last_mut() {
            Some(last) if last.time() == extract.time() => *last = extract,
            _ => unique.push(extract),
        }
    }
    unique
}

fn show(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl std::fmt::Display for FullNeeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FullNeeded::NoFullListed => f.write_str(
                "the table is empty and no full extract is listed; wait for the next full extract",
            ),
            FullNeeded::FullUnavailable { latest_full } => write!(
                f,
                "the table is empty and the newest full extract ({}) is temporarily unavailable; retry later",
                show(*latest_full)
            ),
            FullNeeded::ChainBroken {
                applied_through,
                oldest_available,
                latest_full,
            } => {
                write!(
                    f,
                    "differentials between {} (applied) and {} (oldest listed) have expired, and ",
                    show(*applied_through),
                    show(*oldest_available)
                )?;
                match latest_full {
                    Some(t) => write!(
                        f,
                        "the newest full ({}) is older than the table's data",
                        show(*t)
                    )?,
                    None => f.write_str("no full extract is listed")?,
                }
                f.write_str("; the table is left as is until a newer full extract is listed")
            }
        }
    }
}

impl std::fmt::Display for RebaselineReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RebaselineReason::ChainBroken {
                applied_through,
                oldest_available,
            } => write!(
                f,
                "differentials between {} and {} have expired; rebuilding from the newest full",
                show(*applied_through),
                show(*oldest_available)
            ),
            RebaselineReason::NewerFull => f.write_str("a newer full extract replaces the table"),
            RebaselineReason::Requested => {
                f.write_str("rebuilding from the newer full extract, as configured")
            }
        }
    }
}

impl std::fmt::Display for PlanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanKind::UpToDate => f.write_str("up to date"),
            PlanKind::Initial => f.write_str("first load: newest full, then later differentials"),
            PlanKind::Incremental => f.write_str("new differentials"),
            PlanKind::Rebaseline(why) => write!(f, "rebaseline: {why}"),
            PlanKind::FullNeeded(why) => write!(f, "full needed: {why}"),
        }
    }
}

#[cfg(test)]
mod tests;
