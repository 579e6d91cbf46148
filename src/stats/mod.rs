//! Per-fingerprint statement statistics: the answer to "which query shape got slow, since when,
//! how often, how many rows, from which endpoint".
//!
//! [`Stats`] is a [`StatementObserver`]: the proxy hands it every finished statement on the
//! session's own task. Entries are keyed by (fingerprint, database, user) in a sharded
//! [`DashMap`]; a statement of a known shape costs one shard read-lock, one per-entry mutex
//! and no allocation (see `entry.rs` for why a mutex rather than atomics). The map is bounded:
//! past `max_fingerprints`, the least-called 5 % are folded into a per-(database, user)
//! `other` entry in one batch, as `pg_stat_statements` deallocates, so eviction's O(n) scan is
//! paid once per many inserts. Readers (Prometheus, the JSON API) take snapshots.
//!
//! - `histogram.rs`: the ≤ 1 % relative-error latency histogram behind the percentiles.
//! - `entry.rs`: the counters of one entry and how a statement updates them.
//! - `snapshot.rs`: read side, JSON-ready rows. `prom.rs`: Prometheus collector.
//! - `exemplars.rs`: the trace exemplar of each exported latency series (OpenMetrics).
//! - `slowlog.rs`: the slow statement log, a separate observer.
//! - `history.rs`: per-interval points of the busiest shapes over the last hour.

mod config;
mod entry;
mod exemplars;
pub mod histogram;
mod history;
mod key;
mod prom;
mod slowlog;
mod snapshot;
#[cfg(test)]
pub(crate) mod tests;
pub mod text;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use dashmap::DashMap;

pub use config::{DEFAULT_BUCKETS_MS, StatsConfig};
pub use entry::{ROUTE_TAGS, RouteCount};
pub use exemplars::trace_ids;
pub use history::{HistoryPoint, ShapeHistory};
pub use prom::StatsCollector;
pub use slowlog::SlowLog;
pub(crate) use snapshot::rfc3339;
pub use snapshot::{HistogramBucket, OTHER, QueryDetail, QueryStats, SortKey};

use crate::event::{StatementEvent, StatementObserver};
use crate::sql::Fingerprint;
use entry::{Entry, EntryData, Limits, Sample};
use key::{BuildKeyHasher, Key, KeyRef, KeyView};

/// (database, user) of the folded `other` entries.
type DbUser = (Box<str>, Box<str>);

/// Share of entries evicted at once when the map is full (`pg_stat_statements` uses 5 %).
const EVICT_FRACTION: usize = 20;

/// Statistics of every statement shape seen, bounded in memory.
#[derive(Debug)]
pub struct Stats {
    config: StatsConfig,
    bounds_ns: Box<[u64]>,
    entries: DashMap<Key, Entry, BuildKeyHasher>,
    /// Evicted entries, folded per (database, user). Touched only on eviction and by readers.
    other: Mutex<HashMap<DbUser, EntryData>>,
    /// Serializes creating entries so the bound is exact; never taken for a known key.
    insert_lock: Mutex<()>,
    evictions: AtomicU64,
    /// The busiest shapes' last hour; written by [`Stats::tick_history`] only.
    history: Mutex<history::History>,
    /// One (monotonic, wall) pair to turn the `Instant`s of events into wall-clock times.
    epoch: (Instant, SystemTime),
}

impl Stats {
    /// Empty statistics with these settings.
    pub fn new(config: StatsConfig) -> Self {
        let shards = (std::thread::available_parallelism().map_or(1, |n| n.get()) * 4)
            .next_power_of_two()
            .max(4);
        Stats {
            bounds_ns: config.bucket_bounds_ns().into_boxed_slice(),
            entries: DashMap::with_capacity_and_hasher_and_shard_amount(
                config.max_fingerprints.min(1 << 16),
                BuildKeyHasher::default(),
                shards,
            ),
            other: Mutex::new(HashMap::new()),
            insert_lock: Mutex::new(()),
            evictions: AtomicU64::new(0),
            history: Mutex::new(history::History::new(config.history_points)),
            epoch: (Instant::now(), SystemTime::now()),
            config,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &StatsConfig {
        &self.config
    }

    /// Entries currently tracked (not counting `other`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no statement has been counted since start or the last reset.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && lock(&self.other).is_empty()
    }

    /// Entries evicted into `other` since start (never reset, it backs a counter).
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Forgets every entry, like `pg_stat_statements_reset()`.
    pub fn reset(&self) {
        let _guard = lock(&self.insert_lock);
        self.entries.clear();
        lock(&self.other).clear();
        lock(&self.history).clear();
    }

    /// Counts one statement of shape `fingerprint`. [`StatementObserver::on_statement`] calls
    /// this; it is public for replaying recorded workloads and for benchmarks.
    pub fn record(&self, event: &StatementEvent<'_>, fingerprint: Fingerprint) {
        let sql = &event.statement.sql[..];
        let sample = Sample {
            duration_ns: u64::try_from(event.duration.as_nanos()).unwrap_or(u64::MAX),
            rows: event.rows,
            sqlstate: event.sqlstate,
            command: event.command,
            at: event.finished_at,
            tags: text::RawTags::of(sql),
            rewritten_by: event.statement.rewritten_by.as_ref(),
        };
        let limits = Limits {
            bounds_ns: &self.bounds_ns,
            max_routes: self.config.max_routes,
            exemplar_window: self.config.exemplar_window(),
        };
        let key = KeyRef {
            fingerprint: fingerprint.0,
            database: &event.session.database,
            user: &event.session.user,
        };
        if let Some(entry) = self.entries.get(&key as &dyn KeyView) {
            entry.lock().record(&sample, &limits);
            return;
        }
        self.insert(&key, sql, &sample, &limits);
    }

    /// Slow path: the first statement of a key.
    #[cold]
    fn insert(&self, key: &KeyRef<'_>, sql: &[u8], sample: &Sample<'_>, limits: &Limits<'_>) {
        let query = crate::sql::normalize(sql, self.config.max_query_length).into_boxed_str();
        let _guard = lock(&self.insert_lock);
        if self.entries.len() >= self.config.max_fingerprints
            && !self.entries.contains_key(key as &dyn KeyView)
        {
            self.evict();
        }
        let owned = Key {
            fingerprint: key.fingerprint,
            database: key.database.into(),
            user: key.user.into(),
        };
        let entry = self
            .entries
            .entry(owned)
            .or_insert_with(|| Entry::new(query, EntryData::new(self.bounds_ns.len(), sample.at)));
        entry.lock().record(sample, limits);
    }

    /// Folds the least-called entries into `other`. Called with `insert_lock` held.
    fn evict(&self) {
        let mut usage: Vec<(u64, Instant, Key)> = self
            .entries
            .iter()
            .map(|e| {
                let d = e.value().lock();
                (d.calls, d.last_seen, e.key().clone())
            })
            .collect();
        let n = (usage.len() / EVICT_FRACTION).max(1).min(usage.len());
        if n == 0 {
            return;
        }
        // Least calls first; among equals, the least recently seen.
        usage.select_nth_unstable_by(n - 1, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut other = lock(&self.other);
        for (_, _, key) in usage.drain(..n) {
            if let Some((key, entry)) = self.entries.remove(&key) {
                let data = entry.lock();
                other
                    .entry((key.database, key.user))
                    .or_insert_with(|| EntryData::new(self.bounds_ns.len(), data.first_seen))
                    .merge(&data, self.config.max_routes);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        tracing::debug!(
            evicted = n,
            max_fingerprints = self.config.max_fingerprints,
            "statistics full: least-called entries folded into other"
        );
    }

    /// Wall-clock time of an event's `Instant`.
    fn wall(&self, at: Instant) -> SystemTime {
        let (i0, w0) = self.epoch;
        match at.checked_duration_since(i0) {
            Some(d) => w0 + d,
            None => w0 - i0.duration_since(at),
        }
    }
}

impl StatementObserver for Stats {
    fn on_statement(&self, event: &StatementEvent<'_>) {
        // `None` means the tracker did not fingerprint (statistics off upstream). This observer
        // is only installed when statistics are on, so compute it rather than lose the statement.
        let fingerprint = event
            .statement
            .fingerprint
            .unwrap_or_else(|| crate::sql::fingerprint(&event.statement.sql));
        self.record(event, fingerprint);
    }
}

/// Locks a mutex whose data stays usable after a panic elsewhere (counters, maps of counters).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
