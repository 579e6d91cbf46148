//! The `[stats]` section of the configuration: what statistics pgshape keeps and how much.
//!
//! Lives beside the statistics it tunes; `crate::config::Config` only holds one field of it.

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// Default Prometheus buckets for `pgshape_query_duration_seconds`, in milliseconds: 0.5 ms to
/// 60 s, roughly ×2–2.5 apart, so that both an index lookup and a runaway report are resolved;
/// plus 3 s, the latency SLO of the shipped alert (docker/prometheus): a quantile is exact only
/// at a bucket bound, so the alert threshold is one.
pub const DEFAULT_BUCKETS_MS: [f64; 17] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 3_000.0, 5_000.0,
    10_000.0, 30_000.0, 60_000.0,
];

/// Settings of per-fingerprint statistics, the slow log and their exports.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// Keep per-fingerprint statistics at all.
    pub enabled: bool,
    /// Most (fingerprint, database, user) entries kept; beyond it the least-called are folded
    /// into `other` (like `pg_stat_statements.max`).
    pub max_fingerprints: usize,
    /// Entries, i.e. (fingerprint, database, user), with the most total time that get their
    /// own Prometheus series; the rest are exported as `fingerprint="other"` per (database,
    /// user), which bounds the series count. Counting entries rather than fingerprints keeps
    /// the bound exact when one shape runs in many databases.
    pub top_k: usize,
    /// Upper bounds of the Prometheus histogram buckets, in milliseconds, ascending.
    pub histogram_buckets_ms: Vec<f64>,
    /// Normalized query text kept per fingerprint is cut at this many bytes.
    pub max_query_length: usize,
    /// The `query` label of `pgshape_query_info` is cut at this many bytes.
    pub max_query_label_length: usize,
    /// Distinct sqlcommenter `route`/`controller`/`action` values kept per entry.
    pub max_routes: usize,
    /// How long the slowest statement's `traceparent` stays the exemplar before a faster,
    /// more recent one may replace it, in seconds.
    pub exemplar_window_s: u64,
    /// Log statement text with its literal values in the slow log. Off by default: literals
    /// carry personal data (emails, tokens).
    pub log_parameters: bool,
    /// Seconds between two points of the per-shape history (the admin page's chart).
    pub history_interval_s: u64,
    /// Points kept per shape: 120 × 30 s is the last hour.
    pub history_points: usize,
    /// The shapes with the most total time that get a history.
    pub history_shapes: usize,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            enabled: true,
            max_fingerprints: 20_000,
            top_k: 200,
            histogram_buckets_ms: DEFAULT_BUCKETS_MS.to_vec(),
            max_query_length: 2_048,
            max_query_label_length: 200,
            max_routes: 10,
            exemplar_window_s: 300,
            log_parameters: false,
            history_interval_s: 30,
            history_points: 120,
            history_shapes: 50,
        }
    }
}

impl StatsConfig {
    /// Checks values a TOML file can get wrong.
    ///
    /// # Errors
    /// When the limits are zero or the buckets are not finite, positive and ascending.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_fingerprints == 0 {
            return Err(invalid("stats.max_fingerprints", "must be at least 1"));
        }
        if self.histogram_buckets_ms.is_empty() {
            return Err(invalid("stats.histogram_buckets_ms", "must not be empty"));
        }
        let ascending = self.histogram_buckets_ms.windows(2).all(|w| w[0] < w[1]);
        let positive = self
            .histogram_buckets_ms
            .iter()
            .all(|b| b.is_finite() && *b > 0.0);
        if !ascending || !positive {
            return Err(invalid(
                "stats.histogram_buckets_ms",
                "must be finite, positive and strictly ascending",
            ));
        }
        if self.history_interval_s == 0 {
            return Err(invalid("stats.history_interval_s", "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.history_points) {
            return Err(invalid("stats.history_points", "must be from 1 to 10000"));
        }
        if !(1..=1_000).contains(&self.history_shapes) {
            return Err(invalid("stats.history_shapes", "must be from 1 to 1000"));
        }
        Ok(())
    }

    /// Bucket upper bounds in nanoseconds, for exact `le` counting on the hot path.
    pub(crate) fn bucket_bounds_ns(&self) -> Vec<u64> {
        self.histogram_buckets_ms
            .iter()
            .map(|ms| (ms * 1e6) as u64)
            .collect()
    }

    pub(crate) fn exemplar_window(&self) -> Duration {
        Duration::from_secs(self.exemplar_window_s)
    }

    /// Time between two history points.
    pub fn history_interval(&self) -> Duration {
        Duration::from_secs(self.history_interval_s.max(1))
    }
}

fn invalid(key: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.to_owned(),
    }
}
