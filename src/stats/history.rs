//! The last hour of the busiest shapes, for the admin page's per-shape chart: "when did this
//! get slow" needs latency over time, which cumulative statistics cannot answer.
//!
//! Every `history_interval_s` the admin thread calls [`Stats::tick_history`]: it picks the
//! `history_shapes` fingerprints with the most total time, copies their cumulative counters
//! (summed over databases and users), and records for each the difference to the previous
//! tick — calls, errors, rows, time and the p95 of that interval alone, from the difference of
//! the latency histograms. A shape that just entered the top has no previous copy: it gets its
//! first point one tick later.
//!
//! Bounded memory: at most `history_shapes` points per tick and `history_points` ticks kept, so
//! `history_shapes × history_points` points (6,000 by default, ~300 KiB), plus one histogram
//! copy per tracked shape. Points older than the window are dropped with their empty series.

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::histogram::LogHistogram;
use super::snapshot::rfc3339;
use super::{Stats, lock};
use crate::sql::Fingerprint;

/// Cumulative counters of one shape at one tick, all its (database, user) entries summed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cumulative {
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_ns: u64,
    pub hist: LogHistogram,
}

/// One interval of one shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryPoint {
    /// End of the interval, RFC 3339 UTC.
    pub at: String,
    /// The same, in milliseconds since the Unix epoch (what a chart's x axis wants).
    pub unix_ms: u64,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    /// Mean and p95 of the interval's calls; `null` when there were none.
    pub mean_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    #[serde(skip)]
    tick: u64,
}

/// The body of `GET /api/queries/{fingerprint}/history`.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeHistory {
    pub fingerprint: String,
    /// Seconds between points.
    pub interval_s: u64,
    /// Points kept per shape at most (the window is `interval_s × points_kept`).
    pub points_kept: usize,
    /// How many of the busiest shapes are followed.
    pub shapes_followed: usize,
    /// Whether the shape is among them at the last tick.
    pub followed: bool,
    /// Oldest first.
    pub points: Vec<HistoryPoint>,
}

/// The ring of per-interval points. Pure bookkeeping, fed by [`Stats::tick_history`].
#[derive(Debug)]
pub(crate) struct History {
    points_kept: usize,
    tick: u64,
    /// Counters at the last tick of the shapes followed then.
    last: HashMap<u64, Cumulative>,
    series: HashMap<u64, VecDeque<HistoryPoint>>,
}

impl History {
    pub fn new(points_kept: usize) -> Self {
        History {
            points_kept: points_kept.max(1),
            tick: 0,
            last: HashMap::new(),
            series: HashMap::new(),
        }
    }

    /// Records one tick at `now` from the current counters of the shapes to follow.
    pub fn record(&mut self, now: SystemTime, current: Vec<(u64, Cumulative)>) {
        self.tick += 1;
        let unix_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let at = rfc3339(now);
        let mut last = HashMap::with_capacity(current.len());
        for (fp, cur) in current {
            if let Some(prev) = self.last.get(&fp) {
                let point = interval(&cur, prev, &at, unix_ms, self.tick);
                self.series.entry(fp).or_default().push_back(point);
            }
            last.insert(fp, cur);
        }
        self.last = last;
        let oldest = self.tick.saturating_sub(self.points_kept as u64);
        self.series.retain(|_, points| {
            while points.front().is_some_and(|p| p.tick <= oldest) {
                points.pop_front();
            }
            !points.is_empty()
        });
    }

    /// The points of one shape, oldest first, and whether it is followed now.
    pub fn of(&self, fp: u64) -> (Vec<HistoryPoint>, bool) {
        let points = self
            .series
            .get(&fp)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        (points, self.last.contains_key(&fp))
    }

    /// The p95 of the last interval of every followed shape that had calls in it.
    pub fn latest_p95(&self) -> Vec<(u64, f64)> {
        self.series
            .iter()
            .filter_map(|(fp, points)| {
                let last = points.back().filter(|p| p.tick == self.tick)?;
                Some((*fp, last.p95_ms?))
            })
            .collect()
    }

    /// Points held in total (for the memory bound's test).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.series.values().map(VecDeque::len).sum()
    }

    pub fn clear(&mut self) {
        self.last.clear();
        self.series.clear();
    }
}

/// What happened between `prev` and `cur`. After a reset (fewer calls than before) the
/// counters started again from zero, so all of `cur` is the interval.
fn interval(
    cur: &Cumulative,
    prev: &Cumulative,
    at: &str,
    unix_ms: u64,
    tick: u64,
) -> HistoryPoint {
    let restarted = cur.calls < prev.calls;
    let (calls, errors, rows, total_ns, hist) = if restarted {
        (
            cur.calls,
            cur.errors,
            cur.rows,
            cur.total_ns,
            cur.hist.clone(),
        )
    } else {
        (
            cur.calls - prev.calls,
            cur.errors.saturating_sub(prev.errors),
            cur.rows.saturating_sub(prev.rows),
            cur.total_ns.saturating_sub(prev.total_ns),
            cur.hist.since(&prev.hist),
        )
    };
    let ms = |ns: f64| ns / 1e6;
    HistoryPoint {
        at: at.to_owned(),
        unix_ms,
        calls,
        errors,
        rows,
        mean_ms: (calls > 0).then(|| ms(total_ns as f64 / calls as f64)),
        p95_ms: hist.quantile(0.95).map(ms),
        tick,
    }
}

impl Stats {
    /// Takes one history point for each of the busiest shapes; the admin thread calls this
    /// every `history_interval_s`.
    pub fn tick_history(&self) {
        let current = self.busiest(self.config.history_shapes);
        lock(&self.history).record(SystemTime::now(), current);
    }

    /// The p95 (ms) over the last history interval of each followed shape with calls in it:
    /// what the automatic explain of slow shapes watches.
    pub fn last_interval_p95(&self) -> Vec<(Fingerprint, f64)> {
        lock(&self.history)
            .latest_p95()
            .into_iter()
            .map(|(fp, p95)| (Fingerprint(fp), p95))
            .collect()
    }

    /// The last hour (by default) of one shape.
    pub fn history(&self, fingerprint: Fingerprint) -> ShapeHistory {
        let (points, followed) = lock(&self.history).of(fingerprint.0);
        ShapeHistory {
            fingerprint: fingerprint.to_string(),
            interval_s: self.config.history_interval_s,
            points_kept: self.config.history_points,
            shapes_followed: self.config.history_shapes,
            followed,
            points,
        }
    }

    /// Cumulative counters of the `n` fingerprints with the most total time. Two passes, so
    /// that only those `n` histograms are copied, not one per entry.
    pub(crate) fn busiest(&self, n: usize) -> Vec<(u64, Cumulative)> {
        let mut totals: HashMap<u64, u64> = HashMap::new();
        for e in self.entries.iter() {
            let total = e.value().lock().total_ns;
            *totals.entry(e.key().fingerprint).or_default() += total;
        }
        let mut ranked: Vec<(u64, u64)> = totals.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(n);
        let mut out: HashMap<u64, Cumulative> = ranked
            .iter()
            .map(|(fp, _)| (*fp, Cumulative::default()))
            .collect();
        for e in self.entries.iter() {
            if let Some(sum) = out.get_mut(&e.key().fingerprint) {
                let d = e.value().lock();
                sum.calls += d.calls;
                sum.errors += d.errors.iter().map(|(_, n)| n).sum::<u64>();
                sum.rows += d.rows;
                sum.total_ns = sum.total_ns.saturating_add(d.total_ns);
                sum.hist.merge(&d.hist);
            }
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cumulative(latencies_ns: &[u64], errors: u64) -> Cumulative {
        let mut c = Cumulative::default();
        for &v in latencies_ns {
            c.calls += 1;
            c.rows += 1;
            c.total_ns += v;
            c.hist.record(v);
        }
        c.errors = errors;
        c
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn a_point_is_the_difference_to_the_previous_tick() {
        let mut h = History::new(10);
        let fast = vec![1_000_000; 100];
        h.record(at(0), vec![(1, cumulative(&fast, 0))]);
        assert_eq!(h.of(1), (vec![], true), "no point before a previous copy");

        // 20 more calls, all at 50 ms: that interval's p95 is 50 ms, not the 1 ms the
        // cumulative histogram (100 fast + 20 slow) would say.
        let mut later = fast.clone();
        later.extend([50_000_000; 20]);
        h.record(at(30), vec![(1, cumulative(&later, 3))]);
        let (points, followed) = h.of(1);
        assert!(followed);
        assert_eq!(points.len(), 1);
        let p = &points[0];
        assert_eq!((p.calls, p.errors, p.rows), (20, 3, 20));
        assert_eq!(p.unix_ms, 1_800_000_030_000);
        assert_eq!(p.at, "2027-01-15T08:00:30.000Z");
        let p95 = p.p95_ms.unwrap_or(0.0);
        assert!((p95 - 50.0).abs() < 0.5, "p95 {p95}");
        assert!((p.mean_ms.unwrap_or(0.0) - 50.0).abs() < 1e-9);

        // An idle interval: a point with no calls and no latency.
        h.record(at(60), vec![(1, cumulative(&later, 3))]);
        let (points, _) = h.of(1);
        assert_eq!(points[1].calls, 0);
        assert_eq!(points[1].p95_ms, None);
        assert_eq!(points[1].mean_ms, None);
    }

    #[test]
    fn after_a_reset_the_counters_start_again() {
        let mut h = History::new(10);
        h.record(at(0), vec![(1, cumulative(&[1_000_000; 50], 0))]);
        h.record(at(30), vec![(1, cumulative(&[2_000_000; 5], 0))]);
        let (points, _) = h.of(1);
        assert_eq!(points[0].calls, 5);
        let p95 = points[0].p95_ms.unwrap_or(0.0);
        assert!((p95 - 2.0).abs() < 0.02, "p95 {p95}");
    }

    #[test]
    fn memory_is_bounded_by_points_kept_times_shapes() {
        let (kept, shapes) = (5, 3);
        let mut h = History::new(kept);
        // Every tick a different set of shapes is the busiest, the worst case for the bound.
        for tick in 0..100u64 {
            let current = (0..shapes)
                .map(|i| (tick / 2 * 10 + i, cumulative(&[1_000; 3], 0)))
                .collect();
            h.record(at(tick * 30), current);
            assert!(
                h.len() <= kept * shapes as usize,
                "tick {tick}: {}",
                h.len()
            );
            assert!(h.last.len() <= shapes as usize);
        }
        let mut h = History::new(kept);
        for tick in 0..100u64 {
            h.record(
                at(tick),
                vec![(7, cumulative(&vec![1_000; tick as usize], 0))],
            );
        }
        let (points, _) = h.of(7);
        assert_eq!(points.len(), kept, "the oldest points are dropped");
        assert_eq!(points.last().map(|p| p.calls), Some(1));
        assert_eq!(points[0].unix_ms, 1_800_000_095_000);
    }

    #[test]
    fn a_shape_that_left_the_top_keeps_its_points_until_they_age_out() {
        let mut h = History::new(3);
        h.record(at(0), vec![(1, cumulative(&[1_000], 0))]);
        h.record(at(1), vec![(1, cumulative(&[1_000; 2], 0))]);
        h.record(at(2), vec![(2, cumulative(&[1_000], 0))]);
        let (points, followed) = h.of(1);
        assert_eq!((points.len(), followed), (1, false));
        h.record(at(3), vec![(2, cumulative(&[1_000], 0))]);
        h.record(at(4), vec![(2, cumulative(&[1_000], 0))]);
        assert_eq!(h.of(1).0.len(), 0);
        assert!(!h.series.contains_key(&1), "an empty series is dropped");
        h.clear();
        assert_eq!(h.of(2), (vec![], false));
    }

    #[test]
    fn the_busiest_shapes_are_summed_over_databases_and_users() {
        use crate::stats::{Stats, StatsConfig, tests::Fixture};
        let stats = Stats::new(StatsConfig::default());
        let f = Fixture::new();
        let mut reports = Fixture::new();
        reports.session.database = "reports".into();
        // Shape 1: 3 × 1 ms + 2 × 1 ms elsewhere; shape 2: 1 × 10 ms; shape 3: 1 × 0.5 ms.
        for _ in 0..3 {
            f.run(&stats, 1, "SELECT 1", 1_000, 1, None);
        }
        for _ in 0..2 {
            reports.run(&stats, 1, "SELECT 1", 1_000, 4, Some(b"57014"));
        }
        f.run(&stats, 2, "SELECT 2", 10_000, 0, None);
        f.run(&stats, 3, "SELECT 3", 500, 0, None);
        let mut top = stats.busiest(2);
        top.sort_by_key(|(fp, _)| *fp);
        let fps: Vec<u64> = top.iter().map(|(fp, _)| *fp).collect();
        assert_eq!(fps, [1, 2], "by total time: 10 ms, 5 ms, then 0.5 ms");
        let one = &top[0].1;
        assert_eq!((one.calls, one.errors, one.rows), (5, 2, 3 + 2 * 4));
        assert_eq!(one.hist.count(), 5);
    }
}
