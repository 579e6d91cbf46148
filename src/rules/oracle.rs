//! Fan-out: does a join repeat the rows of the relations before it?
//!
//! `A JOIN B ON B.x = A.y` repeats each row of A once per matching row of B, so it *fans out*
//! unless `B.x` is unique in B. More precisely: the columns of B that the join equates with
//! earlier relations must cover a unique key of B (a primary key or a unique index, single- or
//! multi-column). A many-to-many path (`posts → post_tags → tags`) fans out at its first hop.
//!
//! Who knows whether columns are unique is a [`UniquenessOracle`]: the schema catalog
//! ([`super::CatalogOracle`]) when pgshape has a schema DSN, else [`HeuristicOracle`].

use std::collections::BTreeMap;

use dashmap::DashMap;
use serde::Serialize;

use crate::sql::Fingerprint;
use crate::sql::analysis::{Facts, TableRef};

/// Which oracle decided a uniqueness question (reported with every fan-out hit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OracleKind {
    /// Primary keys and unique indexes read from `pg_catalog`.
    Catalog,
    /// Column naming conventions ([`HeuristicOracle`]).
    Heuristic,
}

impl OracleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OracleKind::Catalog => "catalog",
            OracleKind::Heuristic => "heuristic",
        }
    }
}

/// An answer: `unique` is `None` when the oracle cannot tell (treated as "does not fan out",
/// so an unknown schema never produces a false alarm).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uniqueness {
    pub unique: Option<bool>,
    pub decided_by: OracleKind,
}

/// Answers whether a set of columns is unique in a table.
pub trait UniquenessOracle: Send + Sync + std::fmt::Debug {
    /// Whether `columns` of `table` (in `database`) cover a unique key. `table` is `None` for
    /// derived tables and CTEs, where only naming can help.
    fn uniqueness(&self, database: &str, table: Option<&TableRef>, columns: &[&str]) -> Uniqueness;

    /// Estimated row count of a table (`pg_class.reltuples`), when known.
    fn estimated_rows(&self, _database: &str, _table: &TableRef) -> Option<u64> {
        None
    }

    /// Changes whenever this oracle's answers for `database` may have changed (a new catalog
    /// snapshot); cached fan-out judgements of an older generation are recomputed.
    fn generation(&self, _database: &str) -> u64 {
        0
    }

    /// Changes whenever any answer of this oracle may have changed, in any database (a cheap
    /// read: per-connection caches compare it on every statement).
    fn changes(&self) -> u64 {
        0
    }

    /// This oracle as the catalog oracle, if it is one (for on-demand refresh and reporting).
    fn as_catalog(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<super::CatalogOracle>> {
        None
    }
}

/// The documented fallback when there is no catalog, following ORM naming conventions:
/// - a join on a column named `id` is a join on a primary key: unique;
/// - otherwise a join on a `*_id` column (a foreign key by convention) is not unique;
/// - anything else is unknown, and unknown never counts as a fan-out.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeuristicOracle;

impl UniquenessOracle for HeuristicOracle {
    fn uniqueness(
        &self,
        _database: &str,
        _table: Option<&TableRef>,
        columns: &[&str],
    ) -> Uniqueness {
        let unique = if columns.contains(&"id") {
            Some(true)
        } else if columns.iter().any(|c| c.ends_with("_id")) {
            Some(false)
        } else {
            None
        };
        Uniqueness {
            unique,
            decided_by: OracleKind::Heuristic,
        }
    }
}

/// Fan-out judgement of one statement against one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Some join anywhere fans out (and who said so).
    pub any_join: Option<OracleKind>,
    /// A DISTINCT / DISTINCT ON block reads fanned-out rows.
    pub distinct: Option<OracleKind>,
    /// An aggregate with DISTINCT (`COUNT(DISTINCT …)`) reads fanned-out rows.
    pub aggregate_distinct: Option<OracleKind>,
}

/// Judges every join of `facts` with `oracle`.
///
/// A block reads fanned-out rows when one of its own joins fans out, or when a derived table
/// in its FROM does and does not de-duplicate or group them itself.
pub fn judge(facts: &Facts, database: &str, oracle: &dyn UniquenessOracle) -> Fanout {
    let mut block_fanout: Vec<Option<OracleKind>> = vec![None; facts.scopes.len()];
    let mut out = Fanout::default();
    // Derived blocks always come after the block that contains them, so walk backwards.
    for (i, block) in facts.scopes.iter().enumerate().rev() {
        let mut decided: Option<OracleKind> = None;
        for join in &block.joins {
            // Group the joined-side columns by the relation they belong to.
            let mut by_binding: BTreeMap<Option<&str>, (Option<&TableRef>, Vec<&str>)> =
                BTreeMap::new();
            for (_, joined) in &join.pairs {
                let entry = by_binding
                    .entry(joined.binding.as_deref())
                    .or_insert((joined.table.as_ref(), Vec::new()));
                entry.1.push(joined.column.as_str());
            }
            for fixed in &join.fixed {
                if let Some(entry) = by_binding.get_mut(&fixed.binding.as_deref()) {
                    entry.1.push(fixed.column.as_str());
                }
            }
            for (table, columns) in by_binding.values() {
                let answer = oracle.uniqueness(database, *table, columns);
                if answer.unique == Some(false) {
                    decided = Some(prefer(decided, answer.decided_by));
                }
            }
        }
        if let Some(kind) = decided {
            out.any_join = Some(prefer(out.any_join, kind));
        }
        for &child in &block.derived {
            let Some(child_block) = facts.scopes.get(child) else {
                continue;
            };
            // DISTINCT, GROUP BY or a plain aggregate collapse the repeated rows again.
            let collapses = child_block.distinct || child_block.group_by || child_block.aggregate;
            if let Some(kind) = block_fanout.get(child).copied().flatten()
                && !collapses
            {
                decided = Some(prefer(decided, kind));
            }
        }
        block_fanout[i] = decided;
        if let Some(kind) = decided {
            if block.distinct {
                out.distinct = Some(prefer(out.distinct, kind));
            }
            if block.aggregate_distinct {
                out.aggregate_distinct = Some(prefer(out.aggregate_distinct, kind));
            }
        }
    }
    out
}

/// The catalog's word beats the heuristic's when both flagged something.
fn prefer(current: Option<OracleKind>, new: OracleKind) -> OracleKind {
    current.map_or(new, |c| c.min(new))
}

/// One database's judgement of a shape, with the oracle generation it was made under.
type Judged = (Box<str>, u64, Fanout);

/// Judgements per (fingerprint, database), so a repeated statement is not re-judged: a handful
/// of databases per shape, each with the oracle generation it was judged under.
#[derive(Debug)]
pub struct FanoutCache {
    map: DashMap<Fingerprint, Vec<Judged>, crate::sql::FastHasher>,
    capacity: usize,
}

impl FanoutCache {
    /// A cache of about `capacity` statement shapes.
    pub fn new(capacity: usize) -> FanoutCache {
        FanoutCache {
            map: DashMap::default(),
            capacity: capacity.max(1),
        }
    }

    /// The judgement of `facts` (the facts of `fingerprint`) in `database`.
    pub fn get_or_judge(
        &self,
        fingerprint: Fingerprint,
        database: &str,
        facts: &Facts,
        oracle: &dyn UniquenessOracle,
    ) -> Fanout {
        let generation = oracle.generation(database);
        if let Some(entry) = self.map.get(&fingerprint)
            && let Some((_, g, fanout)) = entry.iter().find(|(db, ..)| &**db == database)
            && *g == generation
        {
            return *fanout;
        }
        let fanout = judge(facts, database, oracle);
        if self.map.len() >= self.capacity && !self.map.contains_key(&fingerprint) {
            let mut keep = false;
            self.map.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        let mut entry = self.map.entry(fingerprint).or_default();
        match entry.iter_mut().find(|(db, ..)| &**db == database) {
            Some(slot) => {
                slot.1 = generation;
                slot.2 = fanout;
            }
            None => entry.push((database.into(), generation, fanout)),
        }
        fanout
    }
}
