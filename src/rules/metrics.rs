//! Rule metrics, registered into the registry the caller hands over (the admin server's).

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Counters of the rule engine.
#[derive(Debug, Clone)]
pub struct RuleMetrics {
    /// `pgshape_rule_hits_total{rule,fingerprint,action}`; `action` is the effective one
    /// (in shadow mode a block rule counts as `observe`).
    pub hits: IntCounterVec,
    /// `pgshape_rule_parse_failures_total`: statement shapes sqlparser could not analyse.
    pub parse_failures: IntCounter,
    /// `pgshape_rule_reloads_total{result="ok"|"error"}`.
    pub reloads: IntCounterVec,
}

impl RuleMetrics {
    /// Creates the counters and registers them.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(registry: &Registry) -> Result<RuleMetrics, prometheus::Error> {
        let hits = IntCounterVec::new(
            Opts::new("pgshape_rule_hits_total", "Statements that matched a rule."),
            &["rule", "fingerprint", "action"],
        )?;
        let parse_failures = IntCounter::new(
            "pgshape_rule_parse_failures_total",
            "Statement shapes the SQL parser could not analyse (never blocked).",
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("pgshape_rule_reloads_total", "Rule reloads by result."),
            &["result"],
        )?;
        registry.register(Box::new(hits.clone()))?;
        registry.register(Box::new(parse_failures.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(RuleMetrics {
            hits,
            parse_failures,
            reloads,
        })
    }
}
