//! The per-fingerprint cache of structural facts: a statement shape is parsed once, and every
//! later execution of it costs one map lookup.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::{AnalysisError, Budget, Facts, OverBudget, analyze_within};
use crate::sql::Fingerprint;

/// Bounded concurrent map `Fingerprint → Option<Facts>` (`None`: the statement did not parse).
///
/// When full, about half the entries are dropped at once; a dropped shape is simply parsed
/// again the next time, so crude eviction costs a parse, never correctness.
#[derive(Debug)]
pub struct FactsCache {
    map: DashMap<Fingerprint, Option<Arc<Facts>>, crate::sql::FastHasher>,
    capacity: usize,
    budget: Budget,
    parse_failures: AtomicU64,
    /// Lookups over the budget, by [`OverBudget::ALL`] index.
    skipped: [AtomicU64; 2],
}

impl FactsCache {
    /// A cache holding at most about `capacity` shapes (at least one), parsing within the
    /// default [`Budget`].
    pub fn new(capacity: usize) -> FactsCache {
        Self::with_budget(capacity, Budget::default())
    }

    /// A cache holding at most about `capacity` shapes, parsing statements within `budget`.
    pub fn with_budget(capacity: usize, budget: Budget) -> FactsCache {
        FactsCache {
            map: DashMap::default(),
            capacity: capacity.max(1),
            budget,
            parse_failures: AtomicU64::new(0),
            skipped: Default::default(),
        }
    }

    /// The facts of `sql`, parsed on the first sight of `fingerprint`.
    ///
    /// Returns `None` for a statement that does not parse or is over the budget (see
    /// [`FactsCache::lookup`]).
    pub fn get_or_analyze(&self, fingerprint: Fingerprint, sql: &[u8]) -> Option<Arc<Facts>> {
        self.lookup(fingerprint, sql).unwrap_or(None)
    }

    /// The facts of `sql`, parsed on the first sight of `fingerprint`.
    ///
    /// `Ok(None)` for a statement that does not parse; such a shape is counted once (per cache
    /// entry) in [`FactsCache::parse_failures`] and not parsed again.
    ///
    /// # Errors
    /// A statement over the budget whose shape has no facts yet. Nothing is cached for it: the
    /// same shape may come back within the budget (a shorter `IN` list), and then it is parsed.
    pub fn lookup(
        &self,
        fingerprint: Fingerprint,
        sql: &[u8],
    ) -> Result<Option<Arc<Facts>>, OverBudget> {
        if let Some(entry) = self.map.get(&fingerprint) {
            return Ok(entry.value().clone());
        }
        let facts = match analyze_within(sql, &self.budget) {
            Ok(facts) => Some(Arc::new(facts)),
            Err(AnalysisError::OverBudget(over)) => {
                self.skipped[over as usize].fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%fingerprint, bytes = sql.len(), reason = over.as_str(), "statement over the analysis budget, not analysed");
                return Err(over);
            }
            Err(error) => {
                self.parse_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%fingerprint, %error, "statement not analysed");
                None
            }
        };
        if self.map.len() >= self.capacity {
            let mut keep = false;
            self.map.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        self.map.insert(fingerprint, facts.clone());
        Ok(facts)
    }

    /// Statement shapes sqlparser could not parse (each counted when first seen).
    pub fn parse_failures(&self) -> u64 {
        self.parse_failures.load(Ordering::Relaxed)
    }

    /// Statements relayed unanalysed for going past `reason`'s limit.
    pub fn skipped(&self, reason: OverBudget) -> u64 {
        self.skipped[reason as usize].load(Ordering::Relaxed)
    }

    /// Shapes currently cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Forgets everything (after a schema change the facts are still valid; this is for tests
    /// and memory pressure).
    pub fn clear(&self) {
        self.map.clear();
    }
}
