//! Query-shape facts for the rules, computed from the sqlparser AST (PostgreSQL dialect).
//!
//! Why two kinds of facts: the fingerprint collapses constants (`LIMIT 10` and `LIMIT 20`,
//! `IN (1)` and `IN (1, …, 5000)`, `LIKE 'a%'` and `LIKE '%a'` share one fingerprint), so
//! - [`Facts`] are the *structural* facts, identical for every statement of one fingerprint and
//!   for the inline-literal and `$n`-parameter forms of a statement. They need a full parse, so
//!   they are computed once per fingerprint and cached ([`FactsCache`]).
//! - [`ValueFacts`] depend on the constants of one execution (OFFSET value, IN-list length,
//!   leading `%` of a LIKE pattern). They come from a token scan ([`scan_values`]), done only when
//!   a loaded rule needs them and the structural facts say the construct is there at all.
//!
//! Parsing never blocks anything: a statement sqlparser cannot parse has no facts (`None`), is
//! counted by the caller, and no structural rule matches it (fail open).
//!
//! Parsing is also the one step whose cost grows with more than the text's length (an AST many
//! times the size of the text, recursion per nesting level), so it runs within a [`Budget`]: a
//! statement larger or more deeply nested than the budget is relayed unanalysed
//! ([`AnalysisError::OverBudget`]) instead of risking a worker's stack or memory.

pub(crate) mod ast;
mod budget;
mod cache;
mod scope;
mod values;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

pub use budget::{Budget, OverBudget};
pub use cache::FactsCache;
pub use values::{ValueFacts, scan_values};

/// Deepest expression nesting the parser accepts; deeper statements are left unanalysed
/// rather than risking the stack of a proxy worker.
const RECURSION_LIMIT: usize = 64;

/// What kind of statement this is, as rules name it (`statement = "select"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    /// DDL, utility and session statements (`SET`, `BEGIN`, `CREATE …`).
    Other,
}

impl StatementKind {
    /// The lowercase name used in rule files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::Other => "other",
        }
    }
}

/// A table as PostgreSQL resolves its name: unquoted identifiers folded to lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TableRef {
    pub schema: Option<String>,
    pub name: String,
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A column reference resolved to the relation it belongs to, where that was possible.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnRef {
    /// The binding (alias, or table name when unaliased) the column was resolved to.
    pub binding: Option<String>,
    /// The base table behind that binding; `None` for derived tables, CTEs and unresolved names.
    pub table: Option<TableRef>,
    pub column: String,
}

/// Join flavour as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    Cross,
    /// `FROM a, b WHERE a.x = b.y`: a join written as a comma list plus a WHERE predicate.
    Implicit,
    /// Semi/anti/apply and dialect-specific joins PostgreSQL does not have.
    Other,
}

/// One join and the equalities that link it to the relations before it.
///
/// `pairs` are `(outer, joined)`: `outer` belongs to a relation joined earlier, `joined` to the
/// relation this join adds (for RIGHT joins the sides are swapped, so `joined` is always the side
/// whose rows may be repeated). A join fans out when the `joined` columns of one table do not
/// cover a unique key of that table; [`crate::rules`] judges that with a uniqueness oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinFact {
    pub kind: JoinKind,
    /// The added relation's base table; `None` for derived tables, CTEs and functions.
    pub table: Option<TableRef>,
    pub pairs: Vec<(ColumnRef, ColumnRef)>,
    /// Columns of the added relation the ON clause fixes to a constant (`pp.currency = 'EUR'`):
    /// they count towards covering a multi-column unique key.
    pub fixed: Vec<ColumnRef>,
    /// LATERAL subquery or function: rows depend on the outer row, never a cartesian product.
    pub lateral: bool,
}

/// Facts about one SELECT block (the top-level query, each subquery, derived table and CTE).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectScope {
    /// `SELECT DISTINCT` or `SELECT DISTINCT ON (…)`.
    pub distinct: bool,
    pub distinct_on: bool,
    /// An aggregate with DISTINCT: `COUNT(DISTINCT …)`, `SUM(DISTINCT …)`, …
    pub aggregate_distinct: bool,
    pub aggregate: bool,
    pub group_by: bool,
    pub joins: Vec<JoinFact>,
    /// Indexes (into [`Facts::scopes`]) of derived tables in this block's FROM: their rows
    /// become this block's rows, so a fan-out inside them is a fan-out here.
    pub derived: Vec<usize>,
}

/// The structural facts of one statement (see the module doc for what is not in here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub statement: StatementKind,
    /// Base tables read anywhere in the statement (FROM, JOIN, subqueries, CTE bodies), sorted.
    pub tables_read: Vec<TableRef>,
    /// Tables an INSERT/UPDATE/DELETE/MERGE writes.
    pub tables_written: Vec<TableRef>,
    /// Every SELECT block; index 0 is the outermost one when the statement is a query.
    pub scopes: Vec<SelectScope>,
    /// The statement's own WHERE (outermost SELECT block, or the UPDATE/DELETE).
    pub where_present: bool,
    /// The outermost query has a LIMIT or FETCH FIRST (its value is in [`ValueFacts`]).
    pub limit: bool,
    /// The outermost query has an OFFSET (its value is in [`ValueFacts`]).
    pub offset: bool,
    pub order_by: bool,
    /// `ORDER BY random()` anywhere.
    pub order_by_random: bool,
    /// `x NOT IN (SELECT …)` anywhere (NULL-unsafe and an anti-join PostgreSQL cannot hash).
    pub not_in_subquery: bool,
    /// A comparison in a WHERE with a function applied to a column (`lower(email) = …`).
    pub function_on_column_in_where: bool,
    /// `FROM a, b` (or `CROSS JOIN`) with no predicate linking the relations.
    pub cartesian_join: bool,
    /// `SELECT *` or `t.*` in the outermost block.
    pub select_star: bool,
    /// Constructs whose values [`scan_values`] reads: a LIKE/ILIKE, an OFFSET, an IN list.
    pub has_like: bool,
    pub has_in_list: bool,
}

impl Facts {
    /// Any SELECT block with DISTINCT or DISTINCT ON.
    pub fn distinct(&self) -> bool {
        self.scopes.iter().any(|s| s.distinct)
    }

    /// Any aggregate anywhere.
    pub fn aggregate(&self) -> bool {
        self.scopes.iter().any(|s| s.aggregate)
    }

    /// Any join anywhere, explicit or implicit.
    pub fn join_count(&self) -> usize {
        self.scopes.iter().map(|s| s.joins.len()).sum()
    }

    /// Every table the statement touches, read or written.
    pub fn tables(&self) -> impl Iterator<Item = &TableRef> {
        self.tables_read.iter().chain(self.tables_written.iter())
    }
}

/// Why a statement has no facts.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnalysisError {
    #[error("statement is not valid UTF-8")]
    Utf8,
    #[error("sqlparser: {0}")]
    Parse(String),
    #[error("no statement")]
    Empty,
    #[error("over the analysis budget: {0}")]
    OverBudget(OverBudget),
}

/// Parses `sql` as exactly one statement (a rewrite template, say).
///
/// # Errors
/// When sqlparser cannot parse it, or it holds no statement or several.
pub fn parse_one(sql: &str) -> Result<sqlparser::ast::Statement, AnalysisError> {
    let dialect = PostgreSqlDialect {};
    let mut statements = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| AnalysisError::Parse(e.to_string()))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(AnalysisError::Empty),
        n => Err(AnalysisError::Parse(format!(
            "{n} statements where one was expected"
        ))),
    }
}

/// Parses one statement within the default [`Budget`] and computes its structural facts.
///
/// # Errors
/// As [`analyze_within`].
pub fn analyze(sql: &[u8]) -> Result<Facts, AnalysisError> {
    analyze_within(sql, &Budget::default())
}

/// Parses one statement and computes its structural facts, if it is within `budget`.
///
/// # Errors
/// When the text is over the budget, not UTF-8, or sqlparser cannot parse it; callers count
/// that and let the statement through. Of a multi-statement text only the first statement is
/// analysed.
pub fn analyze_within(sql: &[u8], budget: &Budget) -> Result<Facts, AnalysisError> {
    budget.check(sql).map_err(AnalysisError::OverBudget)?;
    let text = std::str::from_utf8(sql).map_err(|_| AnalysisError::Utf8)?;
    let dialect = PostgreSqlDialect {};
    let statements = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| match e {
            // The token scan of the budget counts brackets; the parser also recurses for
            // operators and keywords, so deep nesting of another kind ends up here.
            sqlparser::parser::ParserError::RecursionLimitExceeded => {
                AnalysisError::OverBudget(OverBudget::Depth)
            }
            e => AnalysisError::Parse(e.to_string()),
        })?;
    let first = statements.first().ok_or(AnalysisError::Empty)?;
    Ok(walk::facts_of(first))
}
