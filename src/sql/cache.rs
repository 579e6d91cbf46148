//! Raw statement text → fingerprint, so a statement sent again verbatim costs one hash of its
//! text instead of a lexer pass.
//!
//! With `$n` parameters (psycopg 3, asyncpg, JDBC, ORMs' repeated queries) the same text comes
//! back again and again; with inline literals it mostly does not, which is why the lexer itself
//! is fast and this cache is bounded and cheap to miss. A text is admitted on its second sight
//! only (a doorkeeper, as in TinyLFU): texts whose literals change every time (pgbench -S in
//! simple mode, psycopg2's inlined parameters) then cost no copy, no insert and no share of a
//! sweep each; callgrind: 14,068 -> 13,496 user instructions per statement there.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use super::fingerprint::{Fingerprint, fingerprint, hash_bytes};

/// Statements longer than this are fingerprinted every time and never cached: a huge text
/// would evict many small ones, and the lexer pass is cheap next to shipping such a statement.
pub const MAX_CACHED_STATEMENT_BYTES: usize = 16 * 1024;

/// Bookkeeping bytes counted per entry on top of the text, so tiny statements are bounded too.
const ENTRY_OVERHEAD_BYTES: usize = 64;

/// Slots of the doorkeeper: the hashes of recent misses. A text missed again before another
/// text's hash took its slot is admitted; 4096 slots (32 KiB) remember the last few thousand.
const DOORKEEPER_SLOTS: usize = 4096;

struct Entry {
    text: Box<[u8]>,
    fingerprint: Fingerprint,
}

impl Entry {
    fn cost(&self) -> usize {
        self.text.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// Bounded concurrent map from raw SQL text to its [`Fingerprint`].
///
/// Keyed by a 64-bit hash of the text, with the text stored and compared on every hit, so a
/// hash collision is a miss, never a wrong fingerprint. Bounded by entry count and by bytes
/// (text plus a fixed overhead per entry). Eviction is deliberately simple: when an insert would
/// go over a bound, about half of the entries (those whose key has a given bit set, the bit
/// rotating on each eviction) are dropped in one sweep. A full cache therefore costs one sweep
/// per half-capacity inserts, and a hot statement evicted by a sweep comes back on its next
/// call. Lookups take a shard read lock only.
pub struct FingerprintCache {
    map: DashMap<u64, Entry, super::FastHasher>,
    /// Hashes of texts missed once (see the module docs); racy by design: a lost update only
    /// delays or hastens one admission.
    doorkeeper: Box<[AtomicU64]>,
    max_entries: usize,
    max_bytes: usize,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    sweeps: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for FingerprintCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FingerprintCache")
            .field("entries", &self.len())
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl FingerprintCache {
    /// A cache of at most `max_entries` statements and `max_entries` × 2 KiB of text.
    /// `max_entries == 0` disables caching (every call runs the lexer).
    pub fn new(max_entries: usize) -> Self {
        Self::with_limits(max_entries, max_entries.saturating_mul(2048))
    }

    /// A cache bounded by `max_entries` statements and `max_bytes` of text plus overhead.
    pub fn with_limits(max_entries: usize, max_bytes: usize) -> Self {
        FingerprintCache {
            map: DashMap::default(),
            doorkeeper: (0..DOORKEEPER_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            max_entries,
            max_bytes,
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            sweeps: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The fingerprint of `sql`, from the cache when this exact text was seen before.
    pub fn fingerprint(&self, sql: &[u8]) -> Fingerprint {
        if self.max_entries == 0 || sql.len() > MAX_CACHED_STATEMENT_BYTES {
            return fingerprint(sql);
        }
        let key = hash_bytes(sql);
        if let Some(e) = self.map.get(&key)
            && *e.text == *sql
        {
            return e.fingerprint;
        }
        let fp = fingerprint(sql);
        if self.second_sight(key) {
            self.insert(key, sql, fp);
        }
        fp
    }

    /// Whether the text hashed to `key` was missed recently; remembers it when not.
    fn second_sight(&self, key: u64) -> bool {
        // The slot from the high bits: the map's shards use the low ones.
        let slot = &self.doorkeeper[(key >> 52) as usize % DOORKEEPER_SLOTS];
        // 0 marks an empty slot, so a text hashing to 0 is admitted at once: harmless. A load
        // and a store, not a swap: no locked instruction on the miss path.
        if slot.load(Ordering::Relaxed) == key {
            return true;
        }
        slot.store(key, Ordering::Relaxed);
        false
    }

    /// Statements currently cached.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries dropped to stay within the bounds since the cache was made.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn insert(&self, key: u64, sql: &[u8], fingerprint: Fingerprint) {
        let entry = Entry {
            text: sql.into(),
            fingerprint,
        };
        let cost = entry.cost();
        if cost > self.max_bytes {
            return;
        }
        let over = || {
            self.entries.load(Ordering::Relaxed) >= self.max_entries
                || self.bytes.load(Ordering::Relaxed) + cost > self.max_bytes
        };
        // A sweep may drop little when the keys happen to share its bit; try a few bits, then
        // drop everything rather than overshoot the bound.
        let mut sweeps = 0;
        while over() {
            self.sweep(sweeps < 4);
            sweeps += 1;
        }
        self.bytes.fetch_add(cost, Ordering::Relaxed);
        match self.map.insert(key, entry) {
            // Same hash, other text (or a racing insert of the same text): replaced.
            Some(old) => {
                self.bytes.fetch_sub(old.cost(), Ordering::Relaxed);
            }
            None => {
                self.entries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Drops the entries whose key has this sweep's bit set (about half of them), or all of
    /// them when not `by_bit`.
    fn sweep(&self, by_bit: bool) {
        let bit = self.sweeps.fetch_add(1, Ordering::Relaxed) % 64;
        let mut dropped = 0u64;
        self.map.retain(|key, e| {
            let keep = by_bit && (key >> bit) & 1 == 0;
            if !keep {
                self.bytes.fetch_sub(e.cost(), Ordering::Relaxed);
                self.entries.fetch_sub(1, Ordering::Relaxed);
                dropped += 1;
            }
            keep
        });
        self.evictions.fetch_add(dropped, Ordering::Relaxed);
        tracing::debug!(dropped, bit, by_bit, "fingerprint cache sweep");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_returns_the_lexer_fingerprint() {
        let cache = FingerprintCache::new(100);
        let sql = b"SELECT * FROM t WHERE id = 42";
        for _ in 0..3 {
            assert_eq!(cache.fingerprint(sql), fingerprint(sql));
        }
        assert_eq!(cache.len(), 1);
        for _ in 0..2 {
            assert_eq!(cache.fingerprint(b"SELECT 1"), fingerprint(b"SELECT 1"));
        }
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_text_is_admitted_on_its_second_sight_only() {
        let cache = FingerprintCache::new(100);
        let sql = b"SELECT * FROM t WHERE id = 42";
        assert_eq!(cache.fingerprint(sql), fingerprint(sql));
        assert!(cache.is_empty(), "seen once: not cached");
        assert_eq!(cache.fingerprint(sql), fingerprint(sql));
        assert_eq!(cache.len(), 1, "seen twice: cached");
        // Texts whose literal changes every time never fill the cache nor evict what is in it.
        for i in 0..10_000 {
            let one_off = format!("SELECT * FROM t WHERE id = {i} AND x = 'y'");
            assert_eq!(
                cache.fingerprint(one_off.as_bytes()),
                fingerprint(one_off.as_bytes())
            );
        }
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.evictions(), 0);
    }

    #[test]
    fn stays_within_entry_bound() {
        let tiny = FingerprintCache::new(1);
        for i in 0..100 {
            let sql = format!("SELECT {i}");
            tiny.fingerprint(sql.as_bytes());
            tiny.fingerprint(sql.as_bytes());
            assert_eq!(tiny.len(), 1);
        }
        let cache = FingerprintCache::new(64);
        for i in 0..10_000 {
            let sql = format!("SELECT * FROM t WHERE id = {i}");
            for _ in 0..2 {
                assert_eq!(
                    cache.fingerprint(sql.as_bytes()),
                    fingerprint(sql.as_bytes())
                );
            }
            assert!(cache.len() <= 64, "{} entries", cache.len());
            assert_eq!(cache.map.len(), cache.len());
        }
        assert!(cache.evictions() >= 10_000 - 64);
    }

    #[test]
    fn stays_within_byte_bound() {
        let cache = FingerprintCache::with_limits(1_000_000, 8 * 1024);
        for i in 0..2_000 {
            let sql = format!("SELECT '{}' AS pad, {i}", "x".repeat(200));
            cache.fingerprint(sql.as_bytes());
            cache.fingerprint(sql.as_bytes());
            assert!(cache.bytes.load(Ordering::Relaxed) <= 8 * 1024);
        }
        assert!(!cache.is_empty());
    }

    #[test]
    fn long_statements_and_zero_capacity_bypass_the_cache() {
        let cache = FingerprintCache::new(10);
        let long = format!("SELECT '{}'", "x".repeat(MAX_CACHED_STATEMENT_BYTES));
        assert_eq!(
            cache.fingerprint(long.as_bytes()),
            fingerprint(long.as_bytes())
        );
        assert!(cache.is_empty());
        let off = FingerprintCache::new(0);
        assert_eq!(off.fingerprint(b"SELECT 1"), fingerprint(b"SELECT 1"));
        assert!(off.is_empty());
    }
}
