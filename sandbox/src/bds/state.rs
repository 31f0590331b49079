//! Shared state of one fake BDS tenant: config, virtual timeline, tokens, rate-limit bucket,
//! URL signing and the extract file cache.

use super::BdsConfig;
use super::catalog::{DATA_SETS, DataSetDef};
use super::extracts::{Extract, Schedule, Timeline};
use super::rows::{Evolution, RowStyle, mix};
use super::zipcache::{Built, ExtractSpec, ZipCache};
use crate::faults::Faults;
use crate::stats::Stats;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use tokio::time::Instant;

/// Base URLs of the three listeners, known once they are bound.
#[derive(Debug, Default)]
pub(crate) struct Urls {
    api: OnceLock<String>,
    blob: OnceLock<String>,
}

impl Urls {
    pub fn set_api(&self, url: &str) {
        let _ = self.api.set(url.to_owned());
    }
    pub fn set_blob(&self, url: &str) {
        let _ = self.blob.set(url.to_owned());
    }
    pub fn api(&self) -> &str {
        self.api.get().map_or("", String::as_str)
    }
    pub fn blob(&self) -> &str {
        self.blob.get().map_or("", String::as_str)
    }
}

/// An issued access token.
#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub expires: DateTime<Utc>,
    pub scopes: Vec<String>,
}

/// The per-minute credit bucket.
#[derive(Debug)]
pub(crate) struct Bucket {
    pub credits: u64,
    pub cost: u64,
    used: u64,
    window_start: Option<Instant>,
}

/// The outcome of charging one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// Allowed; headers to send.
    Ok {
        remaining: u64,
        reset_secs: u64,
        cost: u64,
    },
    /// Bucket empty: 429 with this `Retry-After`.
    Exhausted { retry_after: u64 },
}

impl Bucket {
    fn charge(&mut self, now: Instant) -> Charge {
        let window = std::time::Duration::from_secs(60);
        let start = match self.window_start {
            Some(s) if now.duration_since(s) < window => s,
            _ => {
                self.used = 0;
                self.window_start = Some(now);
                now
            }
        };
        let left = window.saturating_sub(now.duration_since(start));
        let reset_secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        if self.used + self.cost > self.credits {
            return Charge::Exhausted {
                retry_after: reset_secs.max(1),
            };
        }
        self.used += self.cost;
        Charge::Ok {
            remaining: self.credits - self.used,
            reset_secs,
            cost: self.cost,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub timeline: Timeline,
    pub refresh_token: String,
    refresh_counter: u64,
    pub access: HashMap<String, AccessToken>,
    pub bucket: Bucket,
    pub quota_403_next: u64,
    pub quota_retry_after: u64,
}

/// The whole tenant.
#[derive(Debug)]
pub(crate) struct Bds {
    pub config: BdsConfig,
    pub faults: Faults,
    pub stats: Stats,
    pub urls: Urls,
    pub zips: ZipCache,
    signer: RandomState,
    inner: Mutex<Inner>,
}

impl Bds {
    pub fn new(config: BdsConfig, faults: Faults, stats: Stats) -> std::io::Result<Self> {
        let mut timeline = Timeline::new(Schedule {
            full_every_days: config.full_every_days,
            diff_retention_days: config.diff_retention_days,
            full_retention: config.full_retention,
        });
        for _ in 0..config.initial_days {
            timeline.publish_day();
        }
        let inner = Inner {
            timeline,
            refresh_token: config.refresh_token.clone(),
            refresh_counter: 0,
            access: HashMap::new(),
            bucket: Bucket {
                credits: config.credits_per_minute,
                cost: config.request_cost,
                used: 0,
                window_start: None,
            },
            quota_403_next: 0,
            quota_retry_after: 30,
        };
        Ok(Bds {
            config,
            faults,
            stats,
            urls: Urls::default(),
            zips: ZipCache::new()?,
            signer: RandomState::new(),
            inner: Mutex::new(inner),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.lock().timeline.now()
    }

    pub fn current_refresh_token(&self) -> String {
        self.lock().refresh_token.clone()
    }

    /// Replaces the valid refresh token with a new one and returns it.
    pub fn rotate_refresh_token(inner: &mut Inner) -> String {
        inner.refresh_counter += 1;
        inner.refresh_token = format!(
            "rt{}.{}",
            inner.refresh_counter,
            uuid::Uuid::new_v4().simple()
        );
        inner.refresh_token.clone()
    }

    /// How rows of data set `index` evolve.
    pub fn evolution(&self, index: usize) -> Evolution {
        let def = &DATA_SETS[index];
        let base_rows = self
            .config
            .rows_per_data_set
            .get(def.name)
            .copied()
            .unwrap_or(self.config.rows);
        Evolution {
            base_rows,
            inserts_per_gen: self
                .config
                .inserts_per_day
                .unwrap_or((base_rows / 50).max(1)),
            updates_per_mille: self.config.updates_per_mille.min(1000),
            deletes_per_mille: self.config.deletes_per_mille.min(1000),
            style: def.deletes,
            salt: mix(self.config.seed, index as u64, 0xB05),
        }
    }

    pub fn spec(&self, e: &Extract) -> ExtractSpec {
        ExtractSpec {
            def: e.def(),
            evolution: self.evolution(e.dataset),
            full: e.full,
            generation: e.generation,
            style: self.style(e.generation),
        }
    }

    /// Literal style and column set of extracts (and the truth) at `generation`.
    pub fn style(&self, generation: u32) -> RowStyle {
        let from = self.config.append_column_from_day;
        RowStyle {
            bools_as_digits: self.config.bools_as_digits,
            appended_column: from.is_some_and(|d| generation >= d),
            appended_from: from.unwrap_or(u32::MAX),
        }
    }

    /// The extract's file, built on first use.
    pub async fn file(&self, e: &Extract) -> std::io::Result<Arc<Built>> {
        self.zips.get(e.dataset, self.spec(e)).await
    }

    pub fn charge(&self) -> Charge {
        self.lock().bucket.charge(Instant::now())
    }

    /// Consumes one forced quota 403, returning its `Retry-After`.
    pub fn take_quota_403(&self) -> Option<u64> {
        let mut inner = self.lock();
        (inner.quota_403_next > 0).then(|| {
            inner.quota_403_next -= 1;
            inner.quota_retry_after
        })
    }

    pub fn reset_bucket(inner: &mut Inner, credits: Option<u64>, cost: Option<u64>) {
        if let Some(c) = credits {
            inner.bucket.credits = c;
        }
        if let Some(c) = cost {
            inner.bucket.cost = c;
        }
        inner.bucket.used = 0;
        inner.bucket.window_start = None;
    }

    /// Signature of a blob path valid until `expires` (epoch seconds).
    pub fn sign(&self, path: &str, expires: i64) -> String {
        let mut h = self.signer.build_hasher();
        path.hash(&mut h);
        expires.hash(&mut h);
        format!("{:016x}", h.finish())
    }

    pub fn advance(&self, days: u32, seconds: i64) {
        let mut inner = self.lock();
        for _ in 0..days {
            inner.timeline.publish_day();
        }
        inner.timeline.advance_clock(Duration::seconds(seconds));
    }

    pub fn publish_full(&self) {
        self.lock().timeline.publish_full_now();
    }

    pub fn expire(&self, generations: &[u32]) -> usize {
        self.lock().timeline.expire_generations(generations)
    }

    /// Finds a data set by name or schema id.
    pub fn data_set(name_or_schema: &str) -> Option<(usize, &'static DataSetDef)> {
        let def = DataSetDef::by_name(name_or_schema)
            .or_else(|| DataSetDef::by_schema(name_or_schema))?;
        DATA_SETS
            .iter()
            .position(|d| d.kind == def.kind)
            .map(|i| (i, def))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_counts_down_then_refuses_until_the_window_ends() {
        let mut b = Bucket {
            credits: 25,
            cost: 10,
            used: 0,
            window_start: None,
        };
        let t0 = Instant::now();
        assert!(matches!(
            b.charge(t0),
            Charge::Ok {
                remaining: 15,
                reset_secs: 60,
                cost: 10
            }
        ));
        assert!(matches!(b.charge(t0), Charge::Ok { remaining: 5, .. }));
        assert_eq!(
            b.charge(t0 + std::time::Duration::from_secs(20)),
            Charge::Exhausted { retry_after: 40 }
        );
        assert!(matches!(
            b.charge(t0 + std::time::Duration::from_secs(61)),
            Charge::Ok { remaining: 15, .. }
        ));
    }
}
