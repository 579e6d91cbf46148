//! Prometheus exposition of the statistics, built fresh at every scrape.
//!
//! Why a custom [`Collector`] rather than `HistogramVec` and friends: the set of
//! (fingerprint, database, user) entries with their own series (the top K by total time)
//! changes between scrapes, and a `*Vec`
//! never forgets a label set, so its series count would only grow. Building the families from
//! a snapshot keeps the series count at most K + one `other` per (database, user), whatever
//! the workload. The crate's `TextEncoder` writes them (label values need escaping; the
//! normalized SQL in `pgshape_query_info` has quotes, backslashes and newlines).
//!
//! Counters of the `other` series can go down when a fingerprint enters the top K;
//! Prometheus' `rate()` treats that as a counter reset, which under-counts for one interval.
//!
//! The `prometheus` crate's encoder cannot write exemplars: `exemplars.rs` supplies them for
//! the histogram series and [`crate::openmetrics`] writes them when the scraper asks for
//! OpenMetrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use super::Stats;
use super::entry::truncate;

#[cfg(test)]
#[path = "prom_tests.rs"]
mod tests;
use super::snapshot::{OTHER, QueryStats};

pub(crate) const DURATION: &str = "pgshape_query_duration_seconds";
const CALLS: &str = "pgshape_query_calls_total";
const ROWS: &str = "pgshape_query_rows_total";
const ERRORS: &str = "pgshape_query_errors_total";
const INFO: &str = "pgshape_query_info";
const TRACKED: &str = "pgshape_stats_fingerprints";
const EVICTIONS: &str = "pgshape_stats_evictions_total";

/// Registers [`Stats`] in a `prometheus::Registry`.
#[derive(Debug)]
pub struct StatsCollector {
    stats: Arc<Stats>,
    descs: Vec<Desc>,
}

impl StatsCollector {
    /// A collector over `stats`.
    ///
    /// # Errors
    /// Only if a metric name or label were invalid, which the constants here are not.
    pub fn new(stats: Arc<Stats>) -> prometheus::Result<Self> {
        let key = || vec!["fingerprint".into(), "database".into(), "user".into()];
        let mut with_class = key();
        with_class.push("sqlstate_class".into());
        let specs: [(&str, &str, Vec<String>); 7] = [
            (
                DURATION,
                "Statement latency seen by the proxy, per query shape.",
                key(),
            ),
            (CALLS, "Statements executed, per query shape.", key()),
            (ROWS, "Rows returned or affected, per query shape.", key()),
            (
                ERRORS,
                "Failed statements by SQLSTATE class, per query shape.",
                with_class,
            ),
            (
                INFO,
                "Normalized text and command of a query shape (always 1).",
                vec!["fingerprint".into(), "query".into(), "command".into()],
            ),
            (TRACKED, "Query shape entries currently tracked.", vec![]),
            (
                EVICTIONS,
                "Entries evicted into fingerprint=\"other\".",
                vec![],
            ),
        ];
        let descs = specs
            .into_iter()
            .map(|(name, help, labels)| Desc::new(name.into(), help.into(), labels, HashMap::new()))
            .collect::<prometheus::Result<Vec<_>>>()?;
        Ok(StatsCollector { stats, descs })
    }
}

impl Stats {
    /// Adds these statistics to `registry` (every scrape of it then includes them).
    ///
    /// # Errors
    /// When the registry already holds metrics of the same names.
    pub fn register(self: &Arc<Self>, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(StatsCollector::new(Arc::clone(self))?))
    }
}

/// Sums of one exported series.
struct Series {
    fingerprint: String,
    database: String,
    user: String,
    calls: u64,
    rows: u64,
    total_ns: u64,
    buckets: Vec<u64>,
    errors: BTreeMap<String, u64>,
}

impl Series {
    fn from_row(r: QueryStats) -> Self {
        Series {
            fingerprint: r.fingerprint,
            database: r.database,
            user: r.user,
            calls: r.calls,
            rows: r.rows,
            total_ns: r.total_ns,
            buckets: r.prom_buckets.into_vec(),
            errors: r.errors,
        }
    }

    fn add(&mut self, r: &QueryStats) {
        self.calls += r.calls;
        self.rows += r.rows;
        self.total_ns += r.total_ns;
        for (a, b) in self.buckets.iter_mut().zip(r.prom_buckets.iter()) {
            *a += b;
        }
        for (class, n) in &r.errors {
            *self.errors.entry(class.clone()).or_default() += n;
        }
    }
}

impl Collector for StatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut rows = self.stats.snapshot();
        // Tracked entries by total time; the first K keep their own series.
        rows.sort_by(|a, b| {
            b.fp.is_some()
                .cmp(&a.fp.is_some())
                .then(b.total_ns.cmp(&a.total_ns))
        });
        let tracked = rows.iter().filter(|r| r.fp.is_some()).count();
        let k = self.stats.config.top_k.min(tracked);
        let rest = rows.split_off(k);
        let mut info: Vec<Metric> = Vec::with_capacity(k);
        let max_label = self.stats.config.max_query_label_length;
        // One info series per fingerprint even when it is in the top K for several
        // (database, user): duplicate series would make Prometheus reject the scrape.
        let mut seen = std::collections::HashSet::with_capacity(k);
        for r in rows.iter().filter(|r| seen.insert(r.fingerprint.as_str())) {
            info.push(gauge(
                &[
                    ("fingerprint", &r.fingerprint),
                    ("query", truncate(&r.query, max_label)),
                    ("command", &r.command),
                ],
                1.0,
            ));
        }
        let mut series: Vec<Series> = rows.into_iter().map(Series::from_row).collect();
        let mut folded: BTreeMap<(String, String), Series> = BTreeMap::new();
        for r in rest {
            match folded.get_mut(&(r.database.clone(), r.user.clone())) {
                Some(s) => s.add(&r),
                None => {
                    let key = (r.database.clone(), r.user.clone());
                    let mut s = Series::from_row(r);
                    s.fingerprint = OTHER.to_owned();
                    folded.insert(key, s);
                }
            }
        }
        series.extend(folded.into_values());

        let bounds_s: Vec<f64> = self
            .stats
            .config
            .histogram_buckets_ms
            .iter()
            .map(|ms| ms / 1e3)
            .collect();
        let (mut durations, mut calls, mut rows_m, mut errors) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for s in &series {
            let labels = [
                ("fingerprint", s.fingerprint.as_str()),
                ("database", s.database.as_str()),
                ("user", s.user.as_str()),
            ];
            durations.push(histogram(&labels, s, &bounds_s));
            calls.push(counter(&labels, s.calls as f64));
            rows_m.push(counter(&labels, s.rows as f64));
            for (class, n) in &s.errors {
                let mut l = labels.to_vec();
                l.push(("sqlstate_class", class));
                errors.push(counter(&l, *n as f64));
            }
        }
        let help = |name: &str| {
            self.descs
                .iter()
                .find(|d| d.fq_name == name)
                .map_or_else(String::new, |d| d.help.clone())
        };
        vec![
            family(DURATION, help(DURATION), MetricType::HISTOGRAM, durations),
            family(CALLS, help(CALLS), MetricType::COUNTER, calls),
            family(ROWS, help(ROWS), MetricType::COUNTER, rows_m),
            family(ERRORS, help(ERRORS), MetricType::COUNTER, errors),
            family(INFO, help(INFO), MetricType::GAUGE, info),
            family(
                TRACKED,
                help(TRACKED),
                MetricType::GAUGE,
                vec![gauge(&[], tracked as f64)],
            ),
            family(
                EVICTIONS,
                help(EVICTIONS),
                MetricType::COUNTER,
                vec![counter(&[], self.stats.evictions() as f64)],
            ),
        ]
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect()
}

fn counter(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::from_label(labels(pairs));
    m.set_gauge(g);
    m
}

fn histogram(pairs: &[(&str, &str)], s: &Series, bounds_s: &[f64]) -> Metric {
    let mut cumulative = 0;
    let buckets = bounds_s
        .iter()
        .zip(&s.buckets)
        .map(|(le, n)| {
            cumulative += n;
            let mut b = Bucket::default();
            b.set_upper_bound(*le);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = Histogram::default();
    h.set_bucket(buckets);
    h.set_sample_count(s.calls);
    h.set_sample_sum(s.total_ns as f64 / 1e9);
    let mut m = Metric::from_label(labels(pairs));
    m.set_histogram(h);
    m
}

fn family(name: &str, help: String, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help);
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}
