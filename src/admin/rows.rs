//! The rows of `GET /api/queries?histogram=true` as the CLI reads them, and the bucket
//! arithmetic `top` and `diff` share.
//!
//! Percentiles are not additive: the p95 of the last two seconds, or of several (database,
//! user) entries of one shape together, cannot come from the cumulative p95s. It comes from the
//! histograms: subtract the previous poll's bucket counts, or add the entries' counts, then take
//! the nearest-rank quantile as the server does (the midpoint of the bucket holding the rank,
//! within 1 % of the true value).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::client::{AdminClient, ClientError};

/// The listing with every row and its histogram (the API's largest `limit`, which holds the
/// default 5,000 entries).
pub const LIST_ALL: &str = "/api/queries?limit=10000&histogram=true";

/// One row of the listing: a (fingerprint, database, user) entry, cumulative since the
/// statistics started or were reset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// 16 hex digits, or `other` for evicted entries folded together.
    pub fingerprint: String,
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub database: String,
    #[serde(default)]
    pub user: String,
    pub calls: u64,
    #[serde(default)]
    pub rows: u64,
    /// Failed executions by SQLSTATE class.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    pub total_ms: f64,
    #[serde(default)]
    pub mean_ms: f64,
    #[serde(default)]
    pub p95_ms: f64,
    #[serde(default)]
    pub p99_ms: f64,
    /// Ids of the rules that have hit the shape.
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub histogram: Vec<Bucket>,
}

impl Row {
    /// Failed executions of any class.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Whether this is the folded `other` row rather than one shape.
    pub fn is_other(&self) -> bool {
        self.fingerprint == crate::stats::OTHER
    }
}

/// A sqlcommenter route of a row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub tag: String,
    pub value: String,
    pub count: u64,
}

/// `count` executions took `[lower_ms, upper_ms)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub lower_ms: f64,
    pub upper_ms: f64,
    pub count: u64,
}

/// Every row of the admin API at `client`, with histograms.
///
/// # Errors
/// As [`AdminClient::get_json`].
pub fn list_all(client: &AdminClient) -> Result<Vec<Row>, ClientError> {
    client.get_json(LIST_ALL)
}

/// Buckets are identified by their lower bound, which both sides serialize from the same
/// integer nanoseconds (so equal bounds compare equal as bits).
fn key(b: &Bucket) -> u64 {
    b.lower_ms.to_bits()
}

/// `now - before` per bucket: the executions between two polls. A bucket that shrank (the
/// server folded its lowest buckets together, or the statistics were reset) counts zero.
pub fn subtract(now: &[Bucket], before: &[Bucket]) -> Vec<Bucket> {
    let before: BTreeMap<u64, u64> = before.iter().map(|b| (key(b), b.count)).collect();
    now.iter()
        .filter_map(|b| {
            let count = b
                .count
                .saturating_sub(before.get(&key(b)).copied().unwrap_or(0));
            (count > 0).then_some(Bucket { count, ..*b })
        })
        .collect()
}

/// Adds `more` into `into`, keeping the buckets in ascending order.
pub fn merge(into: &mut Vec<Bucket>, more: &[Bucket]) {
    let mut all: BTreeMap<u64, Bucket> = into.drain(..).map(|b| (key(&b), b)).collect();
    for b in more {
        all.entry(key(b))
            .and_modify(|have| have.count += b.count)
            .or_insert(*b);
    }
    // Bounds are non-negative, so the bit patterns sort as the values do.
    into.extend(all.into_values());
}

/// The nearest-rank quantile `q` of ascending buckets, in ms (the bucket's midpoint, as the
/// server reports it); `None` when they count nothing.
pub fn quantile(buckets: &[Bucket], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    if total == 0 {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    let mid = |b: &Bucket| (b.lower_ms + b.upper_ms) / 2.0;
    for b in buckets {
        seen += b.count;
        if seen >= rank {
            return Some(mid(b));
        }
    }
    buckets.last().map(mid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(lower_ms: f64, count: u64) -> Bucket {
        Bucket {
            lower_ms,
            upper_ms: lower_ms * 1.015625,
            count,
        }
    }

    #[test]
    fn interval_buckets_are_the_difference() {
        let before = [b(1.0, 100), b(2.0, 5)];
        let now = [b(1.0, 102), b(2.0, 5), b(64.0, 3)];
        assert_eq!(subtract(&now, &before), vec![b(1.0, 2), b(64.0, 3)]);
        // The interval's p95 is the slow bucket, though cumulatively it is far below p95.
        let interval = subtract(&now, &before);
        let p95 = quantile(&interval, 0.95).unwrap();
        assert!((64.0..65.0).contains(&p95), "{p95}");
        assert!(quantile(&now, 0.95).unwrap() < 3.0);
        // A reset (counts fall) gives nothing negative.
        assert!(subtract(&[b(1.0, 1)], &before).is_empty());
    }

    #[test]
    fn merged_entries_and_quantiles() {
        let mut all = vec![b(2.0, 1)];
        merge(&mut all, &[b(1.0, 9), b(2.0, 1), b(8.0, 1)]);
        assert_eq!(all, vec![b(1.0, 9), b(2.0, 2), b(8.0, 1)]);
        assert!(quantile(&all, 0.5).unwrap() < 1.1);
        assert!(quantile(&all, 1.0).unwrap() > 8.0);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn rows_read_with_and_without_optional_fields() {
        let row: Row = serde_json::from_str(
            r#"{"fingerprint":"00000000000000a1","calls":3,"total_ms":1.5,"future_field":1}"#,
        )
        .unwrap();
        assert_eq!((row.calls, row.error_count()), (3, 0));
        assert!(!row.is_other());
    }
}
