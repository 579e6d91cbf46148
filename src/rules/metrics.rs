//! Rule metrics, registered into the registry the caller hands over (the admin server's).
//!
//! `pgshape_rule_hits_total{rule,fingerprint,action}` is built at each scrape from the hit
//! counts (a collector, like the query statistics'): per (rule, action) the
//! [`TOP_SHAPES_PER_RULE`] shapes with the most hits keep their own series and the rest are
//! summed into `fingerprint="other"`, so the series count stays bounded however many shapes
//! hit a rule. As with the query histograms, a shape entering the top makes `other` go down
//! once, which `rate()` reads as a counter reset.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::api::HitStats;
use crate::sql::Fingerprint;

/// Shapes with their own `pgshape_rule_hits_total` series, per rule and action.
pub const TOP_SHAPES_PER_RULE: usize = 50;

const HITS: &str = "pgshape_rule_hits_total";

/// Counters of the rule engine.
#[derive(Debug, Clone)]
pub struct RuleMetrics {
    /// `pgshape_rule_parse_failures_total`: statement shapes sqlparser could not analyse.
    pub parse_failures: IntCounter,
    /// `pgshape_rule_reloads_total{result="ok"|"error"}`.
    pub reloads: IntCounterVec,
    /// `pgshape_analysis_skipped_total{reason="size"|"depth"}`: statements relayed without
    /// analysis because they were over the analysis budget.
    pub analysis_skipped: IntCounterVec,
}

impl RuleMetrics {
    /// Creates the counters and registers them, with the hit counts of `hits` exported as
    /// `pgshape_rule_hits_total`; `action` there is the effective one (in shadow mode a block
    /// rule counts as `observe`).
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(
        registry: &Registry,
        hits: Arc<HitStats>,
    ) -> Result<RuleMetrics, prometheus::Error> {
        let parse_failures = IntCounter::new(
            "pgshape_rule_parse_failures_total",
            "Statement shapes the SQL parser could not analyse (never blocked).",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("pgshape_rule_reloads_total", "Rule reloads by result."),
            &["result"],
        )?;
        let analysis_skipped = IntCounterVec::new(
            Opts::new(
                "pgshape_analysis_skipped_total",
                "Statements relayed unanalysed because they were over the analysis budget.",
            ),
            &["reason"],
        )?;
        for reason in crate::sql::analysis::OverBudget::ALL {
            analysis_skipped.with_label_values(&[reason.as_str()]);
        }
        registry.register(Box::new(HitsCollector::new(hits)?))?;
        registry.register(Box::new(parse_failures.clone()))?;
        // Both results exported at 0 from the start, so `increase()` sees the first reload.
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
        }
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(analysis_skipped.clone()))?;
        Ok(RuleMetrics {
            parse_failures,
            reloads,
            analysis_skipped,
        })
    }
}

/// The hits of one (rule, action): per tracked shape, and of the untracked ones together.
type Group = (Vec<(Fingerprint, u64)>, u64);

struct HitsCollector {
    hits: Arc<HitStats>,
    desc: Desc,
}

impl HitsCollector {
    fn new(hits: Arc<HitStats>) -> prometheus::Result<Self> {
        let labels = ["rule", "fingerprint", "action"].map(String::from).to_vec();
        let desc = Desc::new(
            HITS.into(),
            "Statements that matched a rule.".into(),
            labels,
            HashMap::new(),
        )?;
        Ok(HitsCollector { hits, desc })
    }
}

impl Collector for HitsCollector {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut groups: BTreeMap<(Arc<str>, &'static str), Group> = BTreeMap::new();
        for c in self.hits.counts() {
            let group = groups.entry((c.rule, c.action.as_str())).or_default();
            match c.fingerprint {
                Some(fp) => group.0.push((fp, c.hits)),
                None => group.1 += c.hits,
            }
        }
        let mut metrics = Vec::new();
        for ((rule, action), (mut shapes, mut other)) in groups {
            shapes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let rest = shapes.split_off(TOP_SHAPES_PER_RULE.min(shapes.len()));
            other += rest.iter().map(|(_, hits)| hits).sum::<u64>();
            for (fp, hits) in shapes {
                metrics.push(counter(&rule, &fp.to_string(), action, hits));
            }
            if other > 0 {
                metrics.push(counter(&rule, "other", action, other));
            }
        }
        vec![counter_family(HITS, &self.desc.help, metrics)]
    }
}

fn counter(rule: &str, fingerprint: &str, action: &str, hits: u64) -> Metric {
    counter_metric(
        &[
            ("action", action),
            ("fingerprint", fingerprint),
            ("rule", rule),
        ],
        hits,
    )
}

/// One counter sample. Give the labels in name order, as the crate's own vectors write them.
pub(crate) fn counter_metric(labels: &[(&str, &str)], value: u64) -> Metric {
    let labels = labels
        .iter()
        .map(|(name, value)| {
            let mut l = LabelPair::default();
            l.set_name((*name).to_owned());
            l.set_value((*value).to_owned());
            l
        })
        .collect();
    let mut c = Counter::default();
    c.set_value(value as f64);
    let mut m = Metric::from_label(labels);
    m.set_counter(c);
    m
}

/// A counter family of `metrics`, as a collector returns it.
pub(crate) fn counter_family(name: &str, help: &str, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(MetricType::COUNTER);
    family.set_metric(metrics);
    family
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Action;

    #[test]
    fn series_stay_bounded_per_rule_and_action_and_every_hit_counts() {
        let stats = Arc::new(HitStats::default());
        let registry = Registry::new();
        RuleMetrics::register(&registry, stats.clone()).unwrap();
        let (n_plus_one, distinct): (Arc<str>, Arc<str>) = ("n-plus-one".into(), "distinct".into());
        // Shape i is hit i + 1 times: the top 50 are the 50 highest ids.
        for i in 0..200u64 {
            for _ in 0..=i {
                stats.record(&n_plus_one, Fingerprint(i), crate::rules::Action::Observe);
            }
        }
        stats.record(&distinct, Fingerprint(7), Action::Block);
        let families = registry.gather();
        let hits = families.iter().find(|f| f.name() == HITS).unwrap();
        let series: Vec<(String, String, String, u64)> = hits
            .get_metric()
            .iter()
            .map(|m| {
                let l = |n: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == n)
                        .unwrap()
                        .value()
                        .to_owned()
                };
                (
                    l("rule"),
                    l("fingerprint"),
                    l("action"),
                    m.get_counter().get_value() as u64,
                )
            })
            .collect();
        let of = |rule: &str| series.iter().filter(|s| s.0 == rule).collect::<Vec<_>>();
        assert_eq!(of("n-plus-one").len(), TOP_SHAPES_PER_RULE + 1);
        assert!(
            of("n-plus-one")
                .iter()
                .any(|s| s.1 == Fingerprint(199).to_string() && s.3 == 200)
        );
        assert!(
            !of("n-plus-one")
                .iter()
                .any(|s| s.1 == Fingerprint(149).to_string())
        );
        let total: u64 = of("n-plus-one").iter().map(|s| s.3).sum();
        assert_eq!(total, 200 * 201 / 2, "folding loses no hit");
        let other = of("n-plus-one")
            .into_iter()
            .find(|s| s.1 == "other")
            .unwrap();
        assert_eq!(other.3, 150 * 151 / 2);
        assert_eq!(
            of("distinct"),
            vec![&(
                "distinct".to_owned(),
                Fingerprint(7).to_string(),
                "block".to_owned(),
                1
            )]
        );
    }
}
