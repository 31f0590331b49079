//! The tenant's virtual clock and its history of published extracts.
//!
//! Time only moves when the control API says so, which keeps listings, token expiry, URL
//! expiry and the rate-limit window deterministic. Each simulated day publishes one
//! differential per data set (a new generation), and every `full_every_days` days also a
//! full of that generation, queued 30 minutes after the differential so that "apply every
//! differential queued after the newest full" is exactly right. Differentials older than
//! the retention window (14 days, like D2L) and all but the newest fulls expire: they leave
//! the listings and their download links answer 404.

use super::catalog::{DATA_SETS, DataSetDef};
use super::rows::epoch;
use chrono::{DateTime, Duration, Utc};

/// One published extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Extract {
    /// Index into [`DATA_SETS`].
    pub dataset: usize,
    /// Full (true) or differential.
    pub full: bool,
    /// Generation whose state (full) or changes (differential) it holds.
    pub generation: u32,
    /// `QueuedForProcessingDate`; its epoch seconds are the extract identifier.
    pub queued: DateTime<Utc>,
    /// `CreatedDate`.
    pub created: DateTime<Utc>,
    /// No longer listed or downloadable.
    pub expired: bool,
}

impl Extract {
    /// The data set this extract belongs to.
    pub fn def(&self) -> &'static DataSetDef {
        &DATA_SETS[self.dataset]
    }
    /// The plugin id (full and differential plugins differ).
    pub fn plugin(&self) -> &'static str {
        if self.full {
            self.def().full_plugin
        } else {
            self.def().diff_plugin
        }
    }
    /// The "scheduled export identifier" in download links: epoch seconds of `queued`.
    pub fn identifier(&self) -> i64 {
        self.queued.timestamp()
    }
    /// `Full` or `Differential`, as `BdsType` spells it.
    pub fn bds_type(&self) -> &'static str {
        if self.full { "Full" } else { "Differential" }
    }
}

/// Publishing schedule and retention.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    pub full_every_days: u32,
    pub diff_retention_days: u32,
    pub full_retention: usize,
}

/// Virtual clock, current generation and every extract ever published.
#[derive(Debug)]
pub(crate) struct Timeline {
    now: DateTime<Utc>,
    generation: u32,
    day: u32,
    extracts: Vec<Extract>,
    schedule: Schedule,
}

impl Timeline {
    /// A tenant whose initial fulls (generation 0) were just published.
    pub fn new(schedule: Schedule) -> Self {
        let mut t = Timeline {
            now: epoch(),
            generation: 0,
            day: 0,
            extracts: Vec::new(),
            schedule,
        };
        t.publish_fulls(epoch());
        t.now = epoch() + Duration::hours(1);
        t
    }

    /// The virtual "now".
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// The newest generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Moves the clock without publishing anything.
    pub fn advance_clock(&mut self, by: Duration) {
        self.now += by;
        self.apply_diff_retention();
    }

    fn publish(&mut self, full: bool, queued: DateTime<Utc>) {
        for dataset in 0..DATA_SETS.len() {
            let created = queued
                + Duration::minutes(10)
                + Duration::seconds(dataset as i64 * 7)
                + Duration::milliseconds(123);
            self.extracts.push(Extract {
                dataset,
                full,
                generation: self.generation,
                queued,
                created,
                expired: false,
            });
        }
    }

    fn publish_fulls(&mut self, queued: DateTime<Utc>) {
        self.publish(true, queued);
        self.apply_full_retention();
    }

    /// Simulates one day: a differential of a new generation for every data set, a full
    /// when the schedule says so, then expiry.
    pub fn publish_day(&mut self) {
        self.day += 1;
        self.generation += 1;
        // `now` is past every queued time, so a clock moved by hand keeps queue order monotonic.
        let day_start = (epoch() + Duration::days(i64::from(self.day))).max(self.now);
        self.publish(false, day_start);
        if self.schedule.full_every_days > 0
            && self.day.is_multiple_of(self.schedule.full_every_days)
        {
            self.publish_fulls(day_start + Duration::minutes(30));
        }
        self.now = self.now.max(day_start + Duration::hours(1));
        self.apply_diff_retention();
    }

    /// Publishes fulls of the current generation right now (outside the schedule).
    pub fn publish_full_now(&mut self) {
        let latest = self
            .extracts
            .iter()
            .map(|e| e.queued)
            .max()
            .unwrap_or(self.now);
        let queued = self.now.max(latest + Duration::seconds(1));
        self.now = queued + Duration::minutes(20);
        self.publish_fulls(queued);
    }

    fn apply_diff_retention(&mut self) {
        let cutoff = self.now - Duration::days(i64::from(self.schedule.diff_retention_days));
        for e in self
            .extracts
            .iter_mut()
            .filter(|e| !e.full && e.queued < cutoff)
        {
            e.expired = true;
        }
    }

    fn apply_full_retention(&mut self) {
        let keep = self.schedule.full_retention.max(1);
        for dataset in 0..DATA_SETS.len() {
            let mut fulls: Vec<&mut Extract> = self
                .extracts
                .iter_mut()
                .filter(|e| e.full && e.dataset == dataset && !e.expired)
                .collect();
            let n = fulls.len();
            for e in fulls.iter_mut().take(n.saturating_sub(keep)) {
                e.expired = true;
            }
        }
    }

    /// Expires the differentials of the given generations (all data sets); returns how many.
    pub fn expire_generations(&mut self, generations: &[u32]) -> usize {
        let mut n = 0;
        for e in self
            .extracts
            .iter_mut()
            .filter(|e| !e.full && !e.expired && generations.contains(&e.generation))
        {
            e.expired = true;
            n += 1;
        }
        n
    }

    /// Keeps only the newest `keep` differentials per data set; returns how many expired.
    pub fn keep_last_differentials(&mut self, keep: u32) -> usize {
        let floor = self.generation.saturating_sub(keep);
        let old: Vec<u32> = (0..=floor).collect();
        if keep >= self.generation {
            0
        } else {
            self.expire_generations(&old)
        }
    }

    /// Every extract ever published, expired ones included, in publication order.
    pub fn all(&self) -> &[Extract] {
        &self.extracts
    }

    /// Available (not expired) extracts, in publication order.
    pub fn available(&self) -> impl Iterator<Item = &Extract> {
        self.extracts.iter().filter(|e| !e.expired)
    }

    /// Finds an extract (expired or not) by plugin and identifier.
    pub fn find(&self, plugin: &str, identifier: i64) -> Option<&Extract> {
        self.extracts
            .iter()
            .find(|e| e.plugin().eq_ignore_ascii_case(plugin) && e.identifier() == identifier)
    }

    /// The newest available extract of a plugin.
    #[cfg(test)]
    pub fn latest(&self, plugin: &str) -> Option<&Extract> {
        self.available()
            .filter(|e| e.plugin().eq_ignore_ascii_case(plugin))
            .max_by_key(|e| e.queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule() -> Schedule {
        Schedule {
            full_every_days: 7,
            diff_retention_days: 14,
            full_retention: 2,
        }
    }

    #[test]
    fn days_publish_differentials_and_weekly_fulls() {
        let mut t = Timeline::new(schedule());
        for _ in 0..7 {
            t.publish_day();
        }
        let ue = DATA_SETS[0].full_plugin;
        let fulls: Vec<u32> = t
            .available()
            .filter(|e| e.plugin() == ue)
            .map(|e| e.generation)
            .collect();
        assert_eq!(fulls, vec![0, 7]);
        let latest_full = t.latest(ue).expect("full");
        let diff = t.latest(DATA_SETS[0].diff_plugin).expect("diff");
        assert_eq!(diff.generation, 7);
        assert!(
            latest_full.queued > diff.queued,
            "full of gen 7 is queued after diff 7"
        );
        assert!(t.now() > latest_full.created);
    }

    #[test]
    fn retention_expires_old_extracts() {
        let mut t = Timeline::new(schedule());
        for _ in 0..22 {
            t.publish_day();
        }
        let diff = DATA_SETS[1].diff_plugin;
        let gens: Vec<u32> = t
            .available()
            .filter(|e| e.plugin() == diff)
            .map(|e| e.generation)
            .collect();
        assert_eq!(gens.first(), Some(&9), "{gens:?}");
        assert_eq!(gens.last(), Some(&22));
        let full = DATA_SETS[1].full_plugin;
        let fulls: Vec<u32> = t
            .available()
            .filter(|e| e.plugin() == full)
            .map(|e| e.generation)
            .collect();
        assert_eq!(fulls, vec![14, 21]);
        let first = t
            .find(full, epoch().timestamp())
            .expect("gen 0 full is still known");
        assert!(first.expired);
    }

    #[test]
    fn queue_order_stays_monotonic_when_the_clock_is_moved_by_hand() {
        let mut t = Timeline::new(schedule());
        t.publish_day();
        t.advance_clock(Duration::days(3));
        t.publish_full_now();
        t.publish_day();
        let queued: Vec<_> = t
            .all()
            .iter()
            .filter(|e| e.dataset == 0)
            .map(|e| (e.queued, e.generation, e.full))
            .collect();
        assert!(queued.windows(2).all(|w| w[0].0 <= w[1].0), "{queued:?}");
        let last = queued.last().expect("extracts");
        assert_eq!((last.1, last.2), (2, false));
    }

    #[test]
    fn control_expiry_makes_gaps() {
        let mut t = Timeline::new(schedule());
        for _ in 0..5 {
            t.publish_day();
        }
        assert_eq!(t.expire_generations(&[2]), DATA_SETS.len());
        assert_eq!(t.keep_last_differentials(2), 2 * DATA_SETS.len());
        let diff = DATA_SETS[0].diff_plugin;
        let gens: Vec<u32> = t
            .available()
            .filter(|e| e.plugin() == diff)
            .map(|e| e.generation)
            .collect();
        assert_eq!(gens, vec![4, 5]);
    }
}
