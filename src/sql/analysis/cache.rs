//! The per-fingerprint cache of structural facts: a statement shape is parsed once, and every
//! later execution of it costs one map lookup.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::{Facts, analyze};
use crate::sql::Fingerprint;

/// Bounded concurrent map `Fingerprint → Option<Facts>` (`None`: the statement did not parse).
///
/// When full, about half the entries are dropped at once; a dropped shape is simply parsed
/// again the next time, so crude eviction costs a parse, never correctness.
#[derive(Debug)]
pub struct FactsCache {
    map: DashMap<Fingerprint, Option<Arc<Facts>>, crate::sql::FastHasher>,
    capacity: usize,
    parse_failures: AtomicU64,
}

impl FactsCache {
    /// A cache holding at most about `capacity` shapes (at least one).
    pub fn new(capacity: usize) -> FactsCache {
        FactsCache {
            map: DashMap::default(),
            capacity: capacity.max(1),
            parse_failures: AtomicU64::new(0),
        }
    }

    /// The facts of `sql`, parsed on the first sight of `fingerprint`.
    ///
    /// Returns `None` for a statement that does not parse; such a shape is counted once (per
    /// cache entry) in [`FactsCache::parse_failures`] and not parsed again.
    pub fn get_or_analyze(&self, fingerprint: Fingerprint, sql: &[u8]) -> Option<Arc<Facts>> {
        if let Some(entry) = self.map.get(&fingerprint) {
            return entry.value().clone();
        }
        let facts = match analyze(sql) {
            Ok(facts) => Some(Arc::new(facts)),
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
        facts
    }

    /// Statement shapes sqlparser could not parse (each counted when first seen).
    pub fn parse_failures(&self) -> u64 {
        self.parse_failures.load(Ordering::Relaxed)
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
