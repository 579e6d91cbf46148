//! The read side: consistent per-entry copies for the JSON API and the Prometheus collector.
//!
//! Each entry is copied under its own lock, one at a time, so a scrape never stalls the hot
//! path for longer than one entry's copy; the snapshot as a whole is not atomic (neither is
//! `pg_stat_statements`).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::entry::{EntryData, ROUTE_TAGS, RouteCount, class_str};
use super::{Stats, lock};
use crate::sql::Fingerprint;

/// Fingerprint label/field of the folded entries.
pub const OTHER: &str = "other";

/// One row of the JSON API, like a `pg_stat_statements` row plus percentiles, errors by class,
/// routes and a trace exemplar. Times in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct QueryStats {
    /// 16 hex digits, or `other` for evicted entries folded together.
    pub fingerprint: String,
    /// Normalized text, literals replaced by `$n`.
    pub query: String,
    /// Command tag word(s) of the first successful execution (`SELECT`, `INSERT`).
    pub command: String,
    pub database: String,
    pub user: String,
    pub calls: u64,
    pub rows: u64,
    /// Failed executions by SQLSTATE class (`23` integrity, `40` rollback, `57` cancel, ...).
    pub errors: BTreeMap<String, u64>,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub stddev_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Top sqlcommenter `route`/`controller`/`action` values, most frequent first.
    pub routes: Vec<RouteCount>,
    /// `traceparent` of the slowest recent traced execution.
    pub traceparent: Option<String>,
    /// Duration of that execution.
    pub traceparent_ms: Option<f64>,
    /// RFC 3339, UTC.
    pub first_seen: String,
    pub last_seen: String,
    /// Ids of the rules that have hit this shape (filled in by the admin API).
    pub rules: Vec<String>,
    /// Before/after of a rewrite, once a call of this shape was rewritten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<RewriteStats>,
    #[serde(skip)]
    pub(crate) total_ns: u64,
    #[serde(skip)]
    pub(crate) fp: Option<u64>,
    /// Non-cumulative counts per configured Prometheus bucket, plus the overflow slot.
    #[serde(skip)]
    pub(crate) prom_buckets: Box<[u64]>,
}

impl QueryStats {
    /// The fingerprint, `None` for the `other` row.
    pub fn fingerprint_id(&self) -> Option<crate::sql::Fingerprint> {
        self.fp.map(crate::sql::Fingerprint)
    }

    /// Failed executions of any class.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The `rewrite` object of a row: the shape's calls split by what the server ran.
#[derive(Debug, Clone, Serialize)]
pub struct RewriteStats {
    /// The rule of the latest rewritten call.
    pub rule: String,
    pub calls_rewritten: u64,
    /// Calls sent as written (before the rewrite was proven, outside its scope, or after it was
    /// switched off).
    pub original: VariantStats,
    pub rewritten: VariantStats,
}

/// Latency of one variant of a shape.
#[derive(Debug, Clone, Serialize)]
pub struct VariantStats {
    pub calls: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

fn variant(v: &super::entry::Variant) -> VariantStats {
    let q = |p: f64| v.hist.quantile(p).map_or(0.0, ms);
    VariantStats {
        calls: v.calls,
        mean_ms: if v.calls == 0 {
            0.0
        } else {
            ms(v.total_ns as f64 / v.calls as f64)
        },
        p50_ms: q(0.50),
        p95_ms: q(0.95),
    }
}

/// One histogram bucket of a detail view: `count` executions took `[lower_ms, upper_ms)`.
#[derive(Debug, Clone, Serialize)]
pub struct HistogramBucket {
    pub lower_ms: f64,
    pub upper_ms: f64,
    pub count: u64,
}

/// A row with its full latency histogram, for `GET /api/queries/{fingerprint}`.
#[derive(Debug, Clone, Serialize)]
pub struct QueryDetail {
    #[serde(flatten)]
    pub stats: QueryStats,
    pub histogram: Vec<HistogramBucket>,
}

/// Orders of the JSON listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    TotalTime,
    MeanTime,
    P95,
    P99,
    Calls,
    Errors,
    Rows,
}

impl FromStr for SortKey {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "total_time" => SortKey::TotalTime,
            "mean_time" => SortKey::MeanTime,
            "p95" => SortKey::P95,
            "p99" => SortKey::P99,
            "calls" => SortKey::Calls,
            "errors" => SortKey::Errors,
            "rows" => SortKey::Rows,
            _ => return Err(()),
        })
    }
}

impl SortKey {
    /// Accepted spellings, for error messages.
    pub const NAMES: &'static str = "total_time, mean_time, p95, p99, calls, errors, rows";

    /// Sorts rows descending by this key.
    pub fn sort(self, rows: &mut [QueryStats]) {
        rows.sort_by(|a, b| self.value(b).total_cmp(&self.value(a)));
    }

    /// Sorts rows with histograms descending by this key.
    pub fn sort_details(self, rows: &mut [QueryDetail]) {
        rows.sort_by(|a, b| self.value(&b.stats).total_cmp(&self.value(&a.stats)));
    }

    fn value(self, r: &QueryStats) -> f64 {
        match self {
            SortKey::TotalTime => r.total_ns as f64,
            SortKey::MeanTime => r.mean_ms,
            SortKey::P95 => r.p95_ms,
            SortKey::P99 => r.p99_ms,
            SortKey::Calls => r.calls as f64,
            SortKey::Errors => r.error_count() as f64,
            SortKey::Rows => r.rows as f64,
        }
    }
}

fn ms(ns: f64) -> f64 {
    ns / 1e6
}

impl Stats {
    /// Every entry, plus one `other` row per (database, user) that had evictions.
    pub fn snapshot(&self) -> Vec<QueryStats> {
        self.rows(|_| ()).into_iter().map(|(row, ())| row).collect()
    }

    /// [`Stats::snapshot`] with each row's latency histogram, for clients that compute
    /// percentiles over an interval or across runs from bucket differences.
    pub fn snapshot_with_histograms(&self) -> Vec<QueryDetail> {
        self.rows(histogram)
            .into_iter()
            .map(|(stats, histogram)| QueryDetail { stats, histogram })
            .collect()
    }

    fn rows<T>(&self, extra: impl Fn(&EntryData) -> T) -> Vec<(QueryStats, T)> {
        let mut rows = Vec::with_capacity(self.entries.len() + 1);
        for e in self.entries.iter() {
            let data = e.value().lock();
            let row = self.row(
                Some(e.key().fingerprint),
                &e.value().query,
                &e.key().database,
                &e.key().user,
                &data,
            );
            rows.push((row, extra(&data)));
        }
        for ((db, user), data) in lock(&self.other).iter() {
            rows.push((self.row(None, "", db, user, data), extra(data)));
        }
        rows
    }

    /// The normalized text of a fingerprint seen (in any database), if kept. The text is the
    /// one shown in the API, so it is cut at `max_query_length`.
    pub fn normalized(&self, fingerprint: Fingerprint) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.key().fingerprint == fingerprint.0)
            .map(|e| e.value().query.to_string())
    }

    /// The entries of one fingerprint (one per database and user), with histograms.
    pub fn detail(&self, fingerprint: Fingerprint) -> Vec<QueryDetail> {
        let mut out: Vec<QueryDetail> = self
            .entries
            .iter()
            .filter(|e| e.key().fingerprint == fingerprint.0)
            .map(|e| {
                let data = e.value().lock();
                QueryDetail {
                    stats: self.row(
                        Some(fingerprint.0),
                        &e.value().query,
                        &e.key().database,
                        &e.key().user,
                        &data,
                    ),
                    histogram: histogram(&data),
                }
            })
            .collect();
        out.sort_by_key(|d| std::cmp::Reverse(d.stats.total_ns));
        out
    }

    /// Folded entries with their histograms, for `GET /api/queries/other`.
    pub fn detail_other(&self) -> Vec<QueryDetail> {
        lock(&self.other)
            .iter()
            .map(|((db, user), data)| QueryDetail {
                stats: self.row(None, "", db, user, data),
                histogram: histogram(data),
            })
            .collect()
    }

    fn row(&self, fp: Option<u64>, query: &str, db: &str, user: &str, d: &EntryData) -> QueryStats {
        // A bucket's representative value may lie up to 1 % outside the exact extremes; clamp
        // so that min <= p50 <= ... <= p99 <= max always reads true (max/min, not clamp, which
        // would panic on an inconsistent entry).
        let q = |p: f64| {
            d.hist
                .quantile(p)
                .map_or(0.0, |v| ms(v.max(d.min_ns as f64).min(d.max_ns as f64)))
        };
        let mut routes = d.routes.clone();
        // Most frequent first; on ties `route` before `controller` before `action`.
        let tag_rank = |t: &str| ROUTE_TAGS.iter().position(|x| *x == t);
        routes.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| tag_rank(a.tag).cmp(&tag_rank(b.tag)))
                .then_with(|| a.value.cmp(&b.value))
        });
        QueryStats {
            fingerprint: fp.map_or_else(|| OTHER.to_owned(), |f| Fingerprint(f).to_string()),
            query: query.to_owned(),
            command: d.command.clone(),
            database: db.to_owned(),
            user: user.to_owned(),
            calls: d.calls,
            rows: d.rows,
            errors: d
                .errors
                .iter()
                .map(|(c, n)| (class_str(c).to_owned(), *n))
                .collect(),
            total_ms: ms(d.total_ns as f64),
            mean_ms: ms(d.mean_ns),
            stddev_ms: ms(d.stddev_ns()),
            min_ms: if d.calls == 0 {
                0.0
            } else {
                ms(d.min_ns as f64)
            },
            max_ms: ms(d.max_ns as f64),
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p95_ms: q(0.95),
            p99_ms: q(0.99),
            routes,
            traceparent: d.exemplar.as_ref().map(|e| e.traceparent.clone()),
            traceparent_ms: d.exemplar.as_ref().map(|e| ms(e.duration_ns as f64)),
            first_seen: rfc3339(self.wall(d.first_seen)),
            last_seen: rfc3339(self.wall(d.last_seen)),
            rules: Vec::new(),
            rewrite: d.rewrite.as_ref().map(|split| RewriteStats {
                rule: split.rule.to_string(),
                calls_rewritten: split.rewritten.calls,
                original: variant(&split.original),
                rewritten: variant(&split.rewritten),
            }),
            total_ns: d.total_ns,
            fp,
            prom_buckets: d.prom_buckets.clone(),
        }
    }
}

fn histogram(d: &EntryData) -> Vec<HistogramBucket> {
    d.hist
        .buckets()
        .map(|(lo, hi, count)| HistogramBucket {
            lower_ms: ms(lo as f64),
            upper_ms: ms(hi as f64),
            count,
        })
        .collect()
}

/// `2026-11-26T17:14:30.123Z`. Hand-written because it is 20 lines and the only date
/// formatting pgshape needs (days-to-civil after Howard Hinnant's algorithm).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}
