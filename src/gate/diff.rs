//! Comparing two snapshots shape by shape, and what counts as a regression.
//!
//! A latency change counts only when both runs have enough calls for their percentiles to mean
//! something (`min_calls`) and the change is larger than a few timer ticks (`min_increase_ms`):
//! a 0.05 ms statement that took 0.07 ms once is noise on a shared CI machine, not a
//! regression. A new rule hit counts whatever the call count: one execution of an unbounded
//! DELETE is one too many.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Snapshot;
use crate::admin::rows::{self, Bucket};

/// When a change fails the gate. A `None` limit never fails (the change is still reported).
#[derive(Debug, Clone, Serialize)]
pub struct Thresholds {
    /// Largest allowed p95 growth, as a fraction (0.2 = +20 %).
    pub p95: Option<f64>,
    /// Largest allowed mean growth.
    pub mean: Option<f64>,
    /// Largest allowed growth of rows returned per call.
    pub rows_per_call: Option<f64>,
    /// Largest allowed growth of calls (an N+1 multiplies a shape's calls per run).
    pub calls: Option<f64>,
    /// Latency and rows are judged only for shapes with at least this many calls in both runs.
    pub min_calls: u64,
    /// A p95 or mean growth smaller than this, in ms, is never a regression.
    pub min_increase_ms: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            p95: Some(0.20),
            // Off: a few stalls of a shared CI machine move the mean of a fast shape by more
            // than 20 % while its p95 stays put; the mean is still reported.
            mean: None,
            rows_per_call: Some(0.20),
            calls: None,
            min_calls: 50,
            min_increase_ms: 1.0,
        }
    }
}

/// A shape's figures in one run, all its (database, user) entries together.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figures {
    pub calls: u64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub p95_ms: f64,
    pub rows_per_call: f64,
    pub errors: u64,
    pub rules: BTreeSet<String>,
    #[serde(skip)]
    histogram: Vec<Bucket>,
}

/// What happened to a shape between the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Regressed,
    New,
    Vanished,
    Improved,
    Unchanged,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Regressed => "REGRESSED",
            Status::New => "new",
            Status::Vanished => "vanished",
            Status::Improved => "improved",
            Status::Unchanged => "same",
        }
    }
}

/// One shape in the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub status: Status,
    pub fingerprint: String,
    pub query: String,
    pub databases: BTreeSet<String>,
    pub before: Option<Figures>,
    pub after: Option<Figures>,
    /// Rules hitting the shape after that did not before.
    pub new_rules: Vec<String>,
    /// Why the shape fails the gate (empty unless `Regressed`).
    pub reasons: Vec<String>,
}

/// The comparison: every shape of either run, regressions first.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub regressions: usize,
    pub shapes_before: usize,
    pub shapes_after: usize,
    pub thresholds: Thresholds,
    pub changes: Vec<Change>,
}

impl Report {
    /// Whether the gate fails.
    pub fn failed(&self) -> bool {
        self.regressions > 0
    }

    /// Shapes with this status.
    pub fn count(&self, status: Status) -> usize {
        self.changes.iter().filter(|c| c.status == status).count()
    }
}

/// The shapes of a snapshot by fingerprint, entries summed (the folded `other` rows mix
/// unrelated shapes and are left out).
fn shapes(s: &Snapshot) -> BTreeMap<String, (String, BTreeSet<String>, Figures)> {
    let mut out: BTreeMap<String, (String, BTreeSet<String>, Figures)> = BTreeMap::new();
    let mut rows_of: BTreeMap<String, u64> = BTreeMap::new();
    for r in s.shapes.iter().filter(|r| !r.is_other()) {
        let (_, dbs, f) = out.entry(r.fingerprint.clone()).or_insert_with(|| {
            let empty = Figures {
                calls: 0,
                total_ms: 0.0,
                mean_ms: 0.0,
                p95_ms: 0.0,
                rows_per_call: 0.0,
                errors: 0,
                rules: BTreeSet::new(),
                histogram: Vec::new(),
            };
            (r.query.clone(), BTreeSet::new(), empty)
        });
        dbs.insert(r.database.clone());
        f.calls += r.calls;
        f.total_ms += r.total_ms;
        f.errors += r.error_count();
        f.rules.extend(r.rules.iter().cloned());
        rows::merge(&mut f.histogram, &r.histogram);
        // Without a histogram (a hand-edited file), the largest entry's own p95 stands in.
        f.p95_ms = f.p95_ms.max(r.p95_ms);
        *rows_of.entry(r.fingerprint.clone()).or_default() += r.rows;
    }
    for (fp, (_, _, f)) in &mut out {
        if f.calls > 0 {
            f.mean_ms = f.total_ms / f.calls as f64;
            f.rows_per_call = rows_of.get(fp).copied().unwrap_or(0) as f64 / f.calls as f64;
        }
        if let Some(p95) = rows::quantile(&f.histogram, 0.95) {
            f.p95_ms = p95;
        }
    }
    out
}

/// `after / before - 1`, or `None` when `before` is zero.
fn growth(before: f64, after: f64) -> Option<f64> {
    (before > 0.0).then(|| after / before - 1.0)
}

fn percent(g: f64) -> String {
    format!("{:+.0}%", g * 100.0)
}

/// Compares `before` with `after` under `limits`.
pub fn diff(before: &Snapshot, after: &Snapshot, limits: &Thresholds) -> Report {
    let old = shapes(before);
    let new = shapes(after);
    let fingerprints: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut changes: Vec<Change> = fingerprints
        .into_iter()
        .map(|fp| {
            let b = old.get(fp);
            let a = new.get(fp);
            let (query, mut databases) = a
                .or(b)
                .map(|(q, d, _)| (q.clone(), d.clone()))
                .unwrap_or_default();
            if let Some((_, d, _)) = b {
                databases.extend(d.iter().cloned());
            }
            let new_rules: Vec<String> = match (b, a) {
                (_, None) => Vec::new(),
                (None, Some((_, _, fa))) => fa.rules.iter().cloned().collect(),
                (Some((_, _, fb)), Some((_, _, fa))) => {
                    fa.rules.difference(&fb.rules).cloned().collect()
                }
            };
            let mut reasons: Vec<String> = new_rules
                .iter()
                .map(|r| format!("newly hit by rule {r}"))
                .collect();
            let mut improved = false;
            if let (Some((_, _, fb)), Some((_, _, fa))) = (b, a) {
                judge(fb, fa, limits, &mut reasons, &mut improved);
            }
            let status = if !reasons.is_empty() {
                Status::Regressed
            } else if b.is_none() {
                Status::New
            } else if a.is_none() {
                Status::Vanished
            } else if improved {
                Status::Improved
            } else {
                Status::Unchanged
            };
            Change {
                status,
                fingerprint: fp.clone(),
                query,
                databases,
                before: b.map(|(_, _, f)| f.clone()),
                after: a.map(|(_, _, f)| f.clone()),
                new_rules,
                reasons,
            }
        })
        .collect();
    // Regressions first, then the biggest time spent after (or before, for vanished shapes).
    let weight = |c: &Change| {
        c.after
            .as_ref()
            .or(c.before.as_ref())
            .map_or(0.0, |f| f.total_ms)
    };
    changes.sort_by(|x, y| {
        x.status
            .cmp(&y.status)
            .then_with(|| weight(y).total_cmp(&weight(x)))
    });
    Report {
        regressions: changes
            .iter()
            .filter(|c| c.status == Status::Regressed)
            .count(),
        shapes_before: old.len(),
        shapes_after: new.len(),
        thresholds: limits.clone(),
        changes,
    }
}

/// Pushes a reason per limit `after` exceeds against `before`; sets `improved` when the
/// latency went down by more than the limits would have allowed up.
fn judge(
    before: &Figures,
    after: &Figures,
    limits: &Thresholds,
    reasons: &mut Vec<String>,
    improved: &mut bool,
) {
    if let (Some(limit), Some(g)) = (
        limits.calls,
        growth(before.calls as f64, after.calls as f64),
    ) && g > limit
    {
        reasons.push(format!(
            "calls per run {} -> {} ({}, limit +{:.0}%)",
            before.calls,
            after.calls,
            percent(g),
            limit * 100.0
        ));
    }
    if before.calls < limits.min_calls || after.calls < limits.min_calls {
        return;
    }
    let latency = [
        ("p95", before.p95_ms, after.p95_ms, limits.p95),
        ("mean", before.mean_ms, after.mean_ms, limits.mean),
    ];
    for (name, b, a, limit) in latency {
        let Some(g) = growth(b, a) else { continue };
        let big_enough = (a - b).abs() >= limits.min_increase_ms;
        match limit {
            Some(limit) if g > limit && big_enough => reasons.push(format!(
                "{name} {b:.2} ms -> {a:.2} ms ({}, limit +{:.0}%)",
                percent(g),
                limit * 100.0
            )),
            Some(limit) if g < -limit && big_enough => *improved = true,
            _ => {}
        }
    }
    if let (Some(limit), Some(g)) = (
        limits.rows_per_call,
        growth(before.rows_per_call, after.rows_per_call),
    ) && g > limit
    {
        reasons.push(format!(
            "rows per call {:.1} -> {:.1} ({}, limit +{:.0}%)",
            before.rows_per_call,
            after.rows_per_call,
            percent(g),
            limit * 100.0
        ));
    }
}
