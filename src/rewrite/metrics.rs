//! `pgshape_rewrites_total{rule,fingerprint,outcome}`: what happened to each execution a
//! rewrite rule matched, and to each shadow verification.
//!
//! Bounded like the rule hits: counts are kept for the first [`MAX_FINGERPRINTS`] shapes (later
//! ones count per rule and outcome only), and at each scrape the [`TOP_SHAPES_PER_RULE`] shapes
//! with the most counts keep their own series while the rest sum into `fingerprint="other"`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::rules::metrics::{counter_family, counter_metric};
use crate::sql::Fingerprint;

const MAX_FINGERPRINTS: usize = 10_000;
/// Shapes with their own series, per rule.
pub const TOP_SHAPES_PER_RULE: usize = 50;
const NAME: &str = "pgshape_rewrites_total";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The rewritten statement was sent.
    Applied,
    /// The rule matched but the rewrite is not proven (or was refused, or does not fit this
    /// execution's constants): the original was sent.
    NotProvable,
    /// Switched off (kill switch or a shadow mismatch): the original was sent.
    Disabled,
    /// Shadow run: identical results.
    VerifyMatch,
    /// Shadow run: different results; the rewrite was switched off.
    VerifyMismatch,
    /// Shadow run: no verdict (a LIMIT under a non-total order, a timeout, an error).
    VerifyUnverifiable,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Applied,
        Outcome::NotProvable,
        Outcome::Disabled,
        Outcome::VerifyMatch,
        Outcome::VerifyMismatch,
        Outcome::VerifyUnverifiable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::NotProvable => "not_provable",
            Outcome::Disabled => "disabled",
            Outcome::VerifyMatch => "verify_match",
            Outcome::VerifyMismatch => "verify_mismatch",
            Outcome::VerifyUnverifiable => "verify_unverifiable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

type Row = [AtomicU64; 6];

/// Non-zero outcome counts of one shape.
pub type OutcomeCounts = Vec<(Outcome, u64)>;

/// The counts behind the metric and the JSON API.
#[derive(Debug, Default)]
pub struct RewriteCounts {
    by_shape: DashMap<(Arc<str>, Fingerprint), Row>,
    untracked: DashMap<Arc<str>, Row>,
}

impl RewriteCounts {
    /// Counts one outcome.
    pub fn add(&self, rule: &Arc<str>, fingerprint: Fingerprint, outcome: Outcome) {
        let key = (rule.clone(), fingerprint);
        if let Some(row) = self.by_shape.get(&key) {
            row[outcome.index()].fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.by_shape.len() >= MAX_FINGERPRINTS {
            self.untracked.entry(rule.clone()).or_default()[outcome.index()]
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.by_shape.entry(key).or_default()[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of one outcome for one shape (0 when none).
    pub fn get(&self, rule: &str, fingerprint: Fingerprint, outcome: Outcome) -> u64 {
        self.by_shape
            .get(&(Arc::from(rule), fingerprint))
            .map_or(0, |row| row[outcome.index()].load(Ordering::Relaxed))
    }

    /// Every outcome count of one shape, by rule.
    pub fn of_fingerprint(&self, fingerprint: Fingerprint) -> Vec<(Arc<str>, OutcomeCounts)> {
        let mut out: Vec<_> = self
            .by_shape
            .iter()
            .filter(|e| e.key().1 == fingerprint)
            .map(|e| (e.key().0.clone(), snapshot(e.value())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn snapshot(row: &Row) -> OutcomeCounts {
    Outcome::ALL
        .iter()
        .map(|o| (*o, row[o.index()].load(Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Registers `pgshape_rewrites_total` over `counts`.
///
/// # Errors
/// When a metric of the same name is already registered.
pub fn register(
    registry: &prometheus::Registry,
    counts: Arc<RewriteCounts>,
) -> prometheus::Result<()> {
    let labels = ["rule", "fingerprint", "outcome"]
        .map(String::from)
        .to_vec();
    let desc = Desc::new(
        NAME.into(),
        "Executions matched by a rewrite rule and shadow verifications, by outcome.".into(),
        labels,
        HashMap::new(),
    )?;
    registry.register(Box::new(CountsCollector { counts, desc }))
}

struct CountsCollector {
    counts: Arc<RewriteCounts>,
    desc: Desc,
}

impl Collector for CountsCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Per rule: shapes by total count, the top ones keep their series.
        let mut by_rule: BTreeMap<Arc<str>, Vec<(Fingerprint, OutcomeCounts)>> = BTreeMap::new();
        for e in self.counts.by_shape.iter() {
            by_rule
                .entry(e.key().0.clone())
                .or_default()
                .push((e.key().1, snapshot(e.value())));
        }
        let mut series: Vec<(String, String, &'static str, u64)> = Vec::new();
        for (rule, mut shapes) in by_rule {
            shapes.sort_by(|a, b| {
                let total = |s: &OutcomeCounts| s.iter().map(|(_, n)| n).sum::<u64>();
                total(&b.1).cmp(&total(&a.1)).then(a.0.cmp(&b.0))
            });
            let mut other: BTreeMap<Outcome, u64> = BTreeMap::new();
            if let Some(row) = self.counts.untracked.get(&rule) {
                for (o, n) in snapshot(&row) {
                    *other.entry(o).or_default() += n;
                }
            }
            for (i, (fingerprint, outcomes)) in shapes.into_iter().enumerate() {
                for (outcome, n) in outcomes {
                    if i < TOP_SHAPES_PER_RULE {
                        series.push((
                            rule.to_string(),
                            fingerprint.to_string(),
                            outcome.as_str(),
                            n,
                        ));
                    } else {
                        *other.entry(outcome).or_default() += n;
                    }
                }
            }
            for (outcome, n) in other {
                series.push((rule.to_string(), "other".into(), outcome.as_str(), n));
            }
        }
        let metrics = series
            .into_iter()
            .map(|(rule, fingerprint, outcome, n)| {
                // Labels in name order, as the crate's own vectors write them.
                counter_metric(
                    &[
                        ("fingerprint", fingerprint.as_str()),
                        ("outcome", outcome),
                        ("rule", rule.as_str()),
                    ],
                    n,
                )
            })
            .collect();
        vec![counter_family(NAME, &self.desc.help, metrics)]
    }
}
