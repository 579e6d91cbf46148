//! The `[match]` table of a rule: a small declarative vocabulary over analysis facts.
//!
//! Every key is optional; a rule matches when *all* keys it sets hold (AND). Boolean keys
//! compare with the fact (`distinct = true` needs DISTINCT, `distinct = false` forbids it).
//!
//! | key | holds when |
//! |---|---|
//! | `statement` | statement kind is this one or one of this list (`select`, `insert`, `update`, `delete`, `merge`, `other`) |
//! | `tables` | some table read or written matches one of these globs (`shop_*`, `public.orders`) |
//! | `tables_written` | some written table matches one of these globs |
//! | `join` | the statement joins (explicitly or `FROM a, b WHERE …`) |
//! | `fanout_join` | some join fans out (see [`super::oracle`]) |
//! | `distinct`, `distinct_on` | some SELECT block has DISTINCT / DISTINCT ON |
//! | `distinct_over_fanout_join` | a DISTINCT block reads fanned-out rows (its own join, or a derived table's) |
//! | `aggregate`, `group_by`, `order_by`, `order_by_random` | as named (`order_by`: the outermost query) |
//! | `count_distinct` | an aggregate with DISTINCT (`COUNT(DISTINCT …)`) |
//! | `count_distinct_over_fanout_join` | such an aggregate reads fanned-out rows |
//! | `where_absent`, `limit_absent` | the statement has no WHERE / the outermost query no LIMIT or FETCH |
//! | `offset_gt = N` | a literal OFFSET greater than N (a `$n` OFFSET never matches) |
//! | `in_list_len_gt = N` | an `IN (…)` list or `ARRAY[…]` with more than N elements |
//! | `leading_wildcard_like` | `LIKE`/`ILIKE` with a literal pattern starting with `%` or `_` |
//! | `not_in_subquery`, `function_on_column_in_where`, `cartesian_join`, `select_star` | as named |
//! | `table_rows_gt = N` | a table read has more than N estimated rows (needs the catalog) |
//! | `fingerprint` | the statement's fingerprint is this one (16 hex digits) or in this list |
//! | `comment = { route = "api/*" }` | sqlcommenter tags present and matching these globs |
//! | `repeats_gt = N` | this fingerprint ran more than N times in the current transaction, or within `repeat_window_ms` (default 1000) on this connection |

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::engine::StatementInput;
use super::glob::glob_match;
use super::oracle::{Fanout, FanoutCache, OracleKind, UniquenessOracle};
use super::state::Repeats;
use crate::sql::Fingerprint;
use crate::sql::analysis::{Facts, StatementKind, ValueFacts, scan_values};
use crate::sql::commenter;

/// Default window for `repeats_gt` outside a transaction.
pub const DEFAULT_REPEAT_WINDOW_MS: u64 = 1_000;

/// One value or a list of them (`statement = "select"` or `statement = ["update", "delete"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

// By hand rather than `#[serde(untagged)]`, which replaces the element's own error ("unknown
// variant `selct`") with "data did not match any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(serde::de::value::StrDeserializer::<E>::new(v)).map(OneOrMany::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(OneOrMany::Many)
            }
        }
        d.deserialize_any(Visitor(std::marker::PhantomData))
    }
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

/// A fingerprint written as 16 hex digits, checked at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct FingerprintSpec(pub Fingerprint);

impl From<FingerprintSpec> for String {
    fn from(f: FingerprintSpec) -> String {
        f.0.to_string()
    }
}

impl<'de> Deserialize<'de> for FingerprintSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() != 16 {
            return Err(serde::de::Error::custom(format!(
                "fingerprint `{s}` must be 16 hex digits"
            )));
        }
        u64::from_str_radix(&s, 16)
            .map(|v| FingerprintSpec(Fingerprint(v)))
            .map_err(|_| serde::de::Error::custom(format!("fingerprint `{s}` is not hexadecimal")))
    }
}

/// The `[match]` table as written (see the module doc for each key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<OneOrMany<StatementKind>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables_written: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fanout_join: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct_over_fanout_join: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_distinct: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_distinct_over_fanout_join: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_by: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_by_random: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub where_absent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_absent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_gt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_list_len_gt: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leading_wildcard_like: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_in_subquery: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_on_column_in_where: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cartesian_join: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub select_star: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_rows_gt: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<OneOrMany<FingerprintSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeats_gt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_window_ms: Option<u64>,
}

/// What evaluating a set of matches needs beyond the cached facts (so a statement pays only
/// for what the loaded rules use).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub facts: bool,
    pub values: bool,
    pub tags: bool,
    pub repeats: bool,
    /// Longest repeat history any rule looks at (largest `repeats_gt` + 1).
    pub repeat_history: usize,
    /// Longest repeat window any rule uses.
    pub repeat_window: Duration,
}

impl Needs {
    /// Whether a match can differ between two executions of one shape in one session (it
    /// reads constants, comments or the repeat history).
    pub fn per_execution(&self) -> bool {
        self.values || self.tags || self.repeats
    }

    pub fn union(self, other: Needs) -> Needs {
        Needs {
            facts: self.facts || other.facts,
            values: self.values || other.values,
            tags: self.tags || other.tags,
            repeats: self.repeats || other.repeats,
            repeat_history: self.repeat_history.max(other.repeat_history),
            repeat_window: self.repeat_window.max(other.repeat_window),
        }
    }
}

impl MatchSpec {
    /// Whether no key is set (a rule must say what it matches).
    pub fn is_empty(&self) -> bool {
        *self == MatchSpec::default()
    }

    /// What evaluating this match needs.
    pub fn needs(&self) -> Needs {
        let values = self.offset_gt.is_some()
            || self.in_list_len_gt.is_some()
            || self.leading_wildcard_like.is_some();
        let mut structural = self.clone();
        structural.fingerprint = None;
        structural.comment = None;
        structural.repeats_gt = None;
        structural.repeat_window_ms = None;
        let facts = !structural.is_empty();
        Needs {
            facts,
            values,
            tags: self.comment.is_some(),
            repeats: self.repeats_gt.is_some(),
            repeat_history: self.repeats_gt.map_or(0, |n| n as usize + 1),
            repeat_window: Duration::from_millis(
                self.repeat_window_ms.unwrap_or(DEFAULT_REPEAT_WINDOW_MS),
            ),
        }
    }
}

/// Everything one statement is matched against, computed lazily and at most once per
/// statement however many rules look at it.
pub struct Subject<'a> {
    pub sql: &'a [u8],
    pub fingerprint: Fingerprint,
    pub database: &'a str,
    pub facts: Option<&'a Facts>,
    pub oracle: &'a dyn UniquenessOracle,
    pub fanout_cache: &'a FanoutCache,
    pub repeats: Option<&'a Repeats>,
    pub now: Instant,
    fanout: OnceCell<Fanout>,
    values: OnceCell<ValueFacts>,
    tags: OnceCell<Option<commenter::SqlComment>>,
}

impl<'a> Subject<'a> {
    pub fn new(
        stmt: &StatementInput<'a>,
        facts: Option<&'a Facts>,
        oracle: &'a dyn UniquenessOracle,
        fanout_cache: &'a FanoutCache,
        repeats: Option<&'a Repeats>,
        now: Instant,
    ) -> Subject<'a> {
        Subject {
            sql: stmt.sql,
            fingerprint: stmt.fingerprint,
            database: stmt.database,
            facts,
            oracle,
            fanout_cache,
            repeats,
            now,
            fanout: OnceCell::new(),
            values: OnceCell::new(),
            tags: OnceCell::new(),
        }
    }

    fn fanout(&self, facts: &Facts) -> &Fanout {
        self.fanout.get_or_init(|| {
            self.fanout_cache
                .get_or_judge(self.fingerprint, self.database, facts, self.oracle)
        })
    }

    fn values(&self) -> &ValueFacts {
        self.values.get_or_init(|| scan_values(self.sql))
    }

    fn tags(&self) -> &[(String, String)] {
        self.tags
            .get_or_init(|| commenter::parse(self.sql))
            .as_ref()
            .map_or(&[], |c| c.pairs())
    }
}

/// The outcome of matching one rule: `Some(decided_by)` on a match, where `decided_by` names
/// the oracle when a fan-out condition took part.
pub type MatchResult = Option<Option<OracleKind>>;

fn check(want: Option<bool>, fact: impl FnOnce() -> bool) -> bool {
    want.is_none_or(|w| w == fact())
}

fn tables_match(patterns: &[String], mut tables: impl Iterator<Item = String>) -> bool {
    tables.any(|t| patterns.iter().any(|p| glob_match(p, &t)))
}

/// A match with its needs worked out once, at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledMatch {
    pub spec: MatchSpec,
    pub needs: Needs,
}

impl CompiledMatch {
    pub fn new(spec: MatchSpec) -> CompiledMatch {
        let needs = spec.needs();
        CompiledMatch { spec, needs }
    }

    /// Matches one statement.
    pub fn evaluate(&self, s: &Subject<'_>) -> MatchResult {
        if !self.matches_execution(s) {
            return None;
        }
        self.evaluate_shape(s)
    }

    /// Whether the conditions that can change from one execution of a shape to the next hold:
    /// comment tags, repeats, and the values of OFFSET, IN lists and LIKE patterns. None of
    /// them needs the statement's facts, so a shape whose other conditions are known to hold
    /// (see [`CompiledMatch::evaluate_shape`]) is judged again without them.
    pub fn matches_execution(&self, s: &Subject<'_>) -> bool {
        let m = &self.spec;
        if let Some(wanted) = &m.comment {
            let tags = s.tags();
            let all = wanted
                .iter()
                .all(|(key, pattern)| tags.iter().any(|(k, v)| k == key && glob_match(pattern, v)));
            if !all {
                return false;
            }
        }
        if let Some(n) = m.repeats_gt {
            let window =
                Duration::from_millis(m.repeat_window_ms.unwrap_or(DEFAULT_REPEAT_WINDOW_MS));
            if !s.repeats.is_some_and(|r| r.exceeds(n, window, s.now)) {
                return false;
            }
        }
        m.offset_gt
            .is_none_or(|n| s.values().offset.is_some_and(|o| o > n))
            && m.in_list_len_gt
                .is_none_or(|n| s.values().max_in_list_len > n)
            && check(m.leading_wildcard_like, || s.values().leading_wildcard_like)
    }

    /// Matches the conditions that depend on the shape alone (with the catalog): the same for
    /// every execution of a fingerprint. Conditions on values are reduced to what the shape
    /// says (an OFFSET, an IN list, a LIKE is present).
    pub fn evaluate_shape(&self, s: &Subject<'_>) -> MatchResult {
        let m = &self.spec;
        if let Some(fps) = &m.fingerprint
            && !fps.as_slice().iter().any(|f| f.0 == s.fingerprint)
        {
            return None;
        }
        let mut decided_by = None;
        if !self.needs.facts {
            return Some(decided_by);
        }
        let f = s.facts?;
        let ok = m
            .statement
            .as_ref()
            .is_none_or(|k| k.as_slice().contains(&f.statement))
            && m.tables.as_ref().is_none_or(|p| {
                tables_match(p, f.tables().flat_map(|t| [t.name.clone(), t.to_string()]))
            })
            && m.tables_written.as_ref().is_none_or(|p| {
                tables_match(
                    p,
                    f.tables_written
                        .iter()
                        .flat_map(|t| [t.name.clone(), t.to_string()]),
                )
            })
            && check(m.join, || f.join_count() > 0)
            && check(m.distinct, || f.distinct())
            && check(m.distinct_on, || f.scopes.iter().any(|b| b.distinct_on))
            && check(m.aggregate, || f.aggregate())
            && check(m.count_distinct, || {
                f.scopes.iter().any(|b| b.aggregate_distinct)
            })
            && check(m.group_by, || f.scopes.iter().any(|b| b.group_by))
            && check(m.order_by, || f.order_by)
            && check(m.order_by_random, || f.order_by_random)
            && check(m.where_absent, || !f.where_present)
            && check(m.limit_absent, || !f.limit)
            && check(m.not_in_subquery, || f.not_in_subquery)
            && check(m.function_on_column_in_where, || {
                f.function_on_column_in_where
            })
            && check(m.cartesian_join, || f.cartesian_join)
            && check(m.select_star, || f.select_star)
            && (m.offset_gt.is_none() || f.offset)
            && (m.in_list_len_gt.is_none() || f.has_in_list)
            && (m.leading_wildcard_like != Some(true) || f.has_like)
            && m.table_rows_gt.is_none_or(|n| {
                f.tables_read.iter().any(|t| {
                    s.oracle
                        .estimated_rows(s.database, t)
                        .is_some_and(|r| r > n)
                })
            });
        if !ok {
            return None;
        }
        let fanout_conditions = [
            (m.fanout_join, FanoutKind::Any),
            (m.distinct_over_fanout_join, FanoutKind::Distinct),
            (
                m.count_distinct_over_fanout_join,
                FanoutKind::AggregateDistinct,
            ),
        ];
        for (want, kind) in fanout_conditions {
            let Some(want) = want else { continue };
            let fanout = if f.join_count() == 0 {
                None
            } else {
                let judged = s.fanout(f);
                match kind {
                    FanoutKind::Any => judged.any_join,
                    FanoutKind::Distinct => judged.distinct,
                    FanoutKind::AggregateDistinct => judged.aggregate_distinct,
                }
            };
            if want != fanout.is_some() {
                return None;
            }
            decided_by = decided_by.or(fanout);
        }
        Some(decided_by)
    }
}

#[derive(Clone, Copy)]
enum FanoutKind {
    Any,
    Distinct,
    AggregateDistinct,
}
