//! Per-connection rule state: how often each fingerprint ran, for `n-plus-one`.
//!
//! The classic ORM lazy-loading loop runs one lookup per parent row: the same fingerprint many
//! times in one transaction, or (in autocommit) many times within a short window on one
//! connection. The session owns one [`ConnectionRuleState`], passes it to every
//! [`super::RuleEngine::evaluate`] and reports each ReadyForQuery status to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::sql::Fingerprint;

/// Most fingerprints tracked per connection; beyond it, stale ones are dropped first.
const MAX_TRACKED: usize = 512;

/// One fingerprint's recent executions on this connection.
#[derive(Debug, Clone, Default)]
pub struct Repeats {
    /// Executions in the current transaction block (0 outside one).
    pub in_transaction: u32,
    /// Times of the most recent executions, oldest first, at most the longest history a loaded
    /// rule looks at. Inline for a fingerprint that ran once or twice: with many distinct
    /// shapes a connection forgets and re-learns its fingerprints all the time, and a heap
    /// queue per fingerprint was a malloc and a free per statement there (callgrind).
    pub recent: SmallVec<[Instant; 2]>,
}

impl Repeats {
    /// Whether the statement ran more than `n` times in this transaction, or more than `n`
    /// times within `window` up to `now` (this execution included).
    pub fn exceeds(&self, n: u32, window: Duration, now: Instant) -> bool {
        if self.in_transaction > n {
            return true;
        }
        // `recent` is in time order, so more than `n` fall within the window exactly when the
        // (n+1)-th most recent does: one subtraction instead of one per remembered execution.
        let Some(at) = self.recent.len().checked_sub(n as usize + 1) else {
            return false;
        };
        self.recent
            .get(at)
            .is_some_and(|t| now.saturating_duration_since(*t) <= window)
    }
}

/// Most shapes whose static rule results a connection remembers; beyond it they are forgotten
/// all at once (and worked out again as the shapes come back).
const MAX_STATIC: usize = 1024;

/// What one rule decided for one shape, when that cannot change between executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticMatch {
    /// Off, out of this session's scope, or not matching.
    No,
    /// Matches (and which oracle judged a fan-out, if one did).
    Yes(Option<super::OracleKind>),
    /// The shape's conditions hold (with that oracle's judgement); the ones that depend on
    /// the execution (constants, comments, repeats) are checked every time.
    Dynamic(Option<super::OracleKind>),
}

/// The rule set, catalog state and application name a connection's remembered results hold
/// for; anything else empties the memory.
#[derive(Debug, Default, PartialEq, Eq)]
struct StaticKey {
    rule_set: u64,
    catalog_changes: u64,
    application_name: String,
}

/// Rule state of one client connection. Not shared: the session task owns it.
#[derive(Debug, Default)]
pub struct ConnectionRuleState {
    in_transaction: bool,
    seen: HashMap<Fingerprint, Repeats, crate::sql::FastHasher>,
    static_key: StaticKey,
    statics: HashMap<Fingerprint, std::sync::Arc<[StaticMatch]>, crate::sql::FastHasher>,
    /// This session's id in the engine's shared results (see `super::shared`), looked up
    /// once per static key.
    scope: Option<u64>,
}

impl ConnectionRuleState {
    pub fn new() -> ConnectionRuleState {
        ConnectionRuleState::default()
    }

    /// The remembered per-rule results for `fingerprint` under this rule set (its id),
    /// catalog and application name.
    pub(crate) fn static_matches(
        &mut self,
        rule_set: u64,
        catalog_changes: u64,
        application_name: &str,
        fingerprint: Fingerprint,
    ) -> Option<std::sync::Arc<[StaticMatch]>> {
        let key = &mut self.static_key;
        if key.rule_set != rule_set
            || key.catalog_changes != catalog_changes
            || key.application_name != application_name
        {
            key.rule_set = rule_set;
            key.catalog_changes = catalog_changes;
            key.application_name.clear();
            key.application_name.push_str(application_name);
            self.statics.clear();
            self.scope = None;
            return None;
        }
        self.statics.get(&fingerprint).cloned()
    }

    /// The session's scope id in the shared results, looking it up with `lookup` once.
    pub(crate) fn scope(&mut self, lookup: impl FnOnce() -> u64) -> u64 {
        *self.scope.get_or_insert_with(lookup)
    }

    pub(crate) fn remember_static_matches(
        &mut self,
        fingerprint: Fingerprint,
        matches: std::sync::Arc<[StaticMatch]>,
    ) {
        if self.statics.len() >= MAX_STATIC {
            self.statics.clear();
        }
        self.statics.insert(fingerprint, matches);
    }

    /// Reports a ReadyForQuery transaction status (`b'I'` idle, `b'T'` in a transaction block,
    /// `b'E'` in a failed one). Leaving a transaction resets the per-transaction counts.
    pub fn on_ready_for_query(&mut self, status: u8) {
        let in_transaction = matches!(status, b'T' | b'E');
        if self.in_transaction && !in_transaction {
            self.seen.retain(|_, r| {
                r.in_transaction = 0;
                !r.recent.is_empty()
            });
        }
        self.in_transaction = in_transaction;
    }

    /// Reports whether the next statement runs inside a transaction block (the proxy's own
    /// tracking, equivalent to the last ReadyForQuery status).
    pub fn observe_transaction(&mut self, in_transaction: bool) {
        self.on_ready_for_query(if in_transaction { b'T' } else { b'I' });
    }

    /// Fingerprints currently tracked (bounded by an internal cap).
    pub fn tracked(&self) -> usize {
        self.seen.len()
    }

    /// Whether the last ReadyForQuery said a transaction block is open.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// Records one execution and returns the fingerprint's history.
    pub(crate) fn record(
        &mut self,
        fingerprint: Fingerprint,
        now: Instant,
        history: usize,
        window: Duration,
    ) -> &Repeats {
        if self.seen.len() >= MAX_TRACKED && !self.seen.contains_key(&fingerprint) {
            let in_tx = self.in_transaction;
            self.seen.retain(|_, r| {
                (in_tx && r.in_transaction > 0)
                    || r.recent
                        .last()
                        .is_some_and(|t| now.saturating_duration_since(*t) <= window)
            });
            if self.seen.len() >= MAX_TRACKED {
                self.seen.clear();
            }
        }
        let entry = self.seen.entry(fingerprint).or_default();
        if self.in_transaction {
            entry.in_transaction = entry.in_transaction.saturating_add(1);
        }
        let keep = history.max(1);
        if entry.recent.len() >= keep {
            // Oldest first: drop from the front (a few elements shift; history is short).
            entry.recent.drain(..=entry.recent.len() - keep);
        }
        entry.recent.push(now);
        entry
    }
}
