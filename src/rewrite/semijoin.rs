//! The built-in semi-join rewrite: a DISTINCT over a one-to-many join becomes EXISTS.
//!
//! Why: ORMs answer "parents that have a matching child" with `SELECT DISTINCT parent.… FROM
//! parent JOIN child …` (Django's `.filter(children__x=…).distinct()`). PostgreSQL then builds
//! every parent × child row and sorts or hashes them all away again; the incident behind
//! pgshape spent 8.5 s doing that. `WHERE EXISTS (SELECT 1 FROM child WHERE …)` asks the same
//! question and stops at the first child.
//!
//! A wrong rewrite returns wrong rows to an application, so [`propose`] rewrites only what it
//! can prove equivalent from the statement and the catalog snapshot, and otherwise says which
//! precondition failed (operators see that text). In short:
//!
//! - relations the select list, DISTINCT ON and ORDER BY reference stay (KEPT), as do those
//!   joined to-one from them (the join equates a unique key); the others move (MOVED);
//! - conjuncts of WHERE and of the moved joins' ON that touch a moved relation go into one
//!   EXISTS per connected group of moved relations, the rest stay outside;
//! - a moved LEFT JOIN is dropped when nothing else uses it and treated as INNER when the
//!   WHERE rejects its NULL rows, otherwise nothing is rewritten;
//! - the DISTINCT itself goes only when the select list holds a NOT NULL unique key of the
//!   outer base relation and every other kept relation is joined to-one.
//!
//! Why that is sound: every kept expression sees only kept columns, and a kept row combination
//! survives the join exactly when some tuple of each moved group satisfies that group's
//! conjuncts, which is what the EXISTS tests. Duplicates differ, which DISTINCT (or a
//! set-valued aggregate) hides. Name resolution and the safety of every call are checked in
//! [`resolve`] before anything moves.

mod block;
mod conjuncts;
mod resolve;
mod shape;
mod vet;

use sqlparser::ast::{
    Distinct, Expr, Query, Select, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::rules::catalog::Snapshot;
use block::{Mode, rewrite_block};
use shape::{check_query, check_select, is_count_over_derived};

/// Which shape was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// `SELECT DISTINCT … FROM parent JOIN child …`
    Distinct,
    /// `SELECT DISTINCT ON (key) … FROM parent JOIN child …`
    DistinctOn,
    /// Django's `.distinct().count()`: `SELECT COUNT(*) FROM (SELECT DISTINCT …) subquery`
    CountOverDistinct,
    /// `SELECT COUNT(DISTINCT parent.pk) FROM parent JOIN child …`
    CountDistinct,
}

/// A proven rewrite of one normalized statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Proposal {
    /// The rewritten statement over the same `$1..$n` slots as the normalized input.
    pub sql: String,
    pub form: Form,
    /// The DISTINCT (or the DISTINCT inside the count) was dropped: the select list holds a NOT
    /// NULL unique key of the parent.
    pub distinct_dropped: bool,
    /// Bindings (aliases or table names) moved into EXISTS subqueries, in FROM order.
    pub moved: Vec<String>,
}

/// Why a statement is left alone; the text says which precondition failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotProvable(pub String);

pub(super) fn np(reason: impl Into<String>) -> NotProvable {
    NotProvable(reason.into())
}

/// Proposes the semi-join rewrite of `normalized` (a statement's normalized text, constants as
/// `$1..$n`) with the facts of `schema`, or says which precondition is not proven.
///
/// # Errors
/// [`NotProvable`] naming the precondition that failed.
pub fn propose(normalized: &str, schema: &Snapshot) -> Result<Proposal, NotProvable> {
    let dialect = PostgreSqlDialect {};
    let statements = Parser::new(&dialect)
        .with_recursion_limit(64)
        .try_with_sql(normalized)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| np(format!("the statement does not parse: {e}")))?;
    let query = match statements.as_slice() {
        [Statement::Query(query)] => query,
        [_] => return Err(np("the statement is not a SELECT")),
        _ => {
            return Err(np(format!(
                "expected exactly one statement, found {}",
                statements.len()
            )));
        }
    };
    check_query(query, "the statement")?;
    let select = body_select(query)?;
    check_select(select, "the statement")?;
    let (form, mode) = match &select.distinct {
        Some(Distinct::Distinct) => (Form::Distinct, Mode::Distinct),
        Some(Distinct::On(_)) => (Form::DistinctOn, Mode::DistinctOn),
        _ if is_count_over_derived(select) => return count_over_distinct(query, select, schema),
        _ if select.projection.iter().any(|item| {
            matches!(
                item,
                SelectItem::UnnamedExpr(Expr::Function(_))
                    | SelectItem::ExprWithAlias {
                        expr: Expr::Function(_),
                        ..
                    }
            )
        }) =>
        {
            (Form::CountDistinct, Mode::CountDistinct)
        }
        _ => return Err(np("not a DISTINCT query: nothing to rewrite")),
    };
    let block = rewrite_block(query, select, mode, schema)?;
    let mut out = query.clone();
    *out.body = SetExpr::Select(Box::new(block.select));
    Ok(Proposal {
        sql: out.to_string(),
        form,
        distinct_dropped: block.distinct_dropped,
        moved: block.moved,
    })
}

pub(super) fn body_select(query: &Query) -> Result<&Select, NotProvable> {
    match query.body.as_ref() {
        SetExpr::Select(select) => Ok(select),
        _ => Err(np("the query is not a plain SELECT")),
    }
}

/// Form 3: the inner DISTINCT query is rewritten as form 1; the outer COUNT(*) counts its rows,
/// which the rewrite keeps one per distinct row.
fn count_over_distinct(
    query: &Query,
    select: &Select,
    schema: &Snapshot,
) -> Result<Proposal, NotProvable> {
    if select.selection.is_some()
        || select.distinct.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return Err(np(
            "the query around the DISTINCT subquery has more than SELECT COUNT(*) FROM (…)",
        ));
    }
    let [
        TableWithJoins {
            relation:
                TableFactor::Derived {
                    lateral: false,
                    subquery,
                    sample: None,
                    ..
                },
            ..
        },
    ] = select.from.as_slice()
    else {
        return Err(np("the subquery under COUNT(*) is LATERAL or sampled"));
    };
    let what = "the subquery under COUNT(*)";
    check_query(subquery, what)?;
    let inner = body_select(subquery)?;
    check_select(inner, what)?;
    if !matches!(inner.distinct, Some(Distinct::Distinct)) {
        return Err(np(format!("{what} is not a SELECT DISTINCT")));
    }
    let block = rewrite_block(subquery, inner, Mode::Distinct, schema)?;
    let mut out = query.clone();
    let internal = || np("internal error: the COUNT(*) query changed shape");
    let SetExpr::Select(outer) = out.body.as_mut() else {
        return Err(internal());
    };
    let Some(TableWithJoins {
        relation: TableFactor::Derived { subquery, .. },
        ..
    }) = outer.from.first_mut()
    else {
        return Err(internal());
    };
    *subquery.body = SetExpr::Select(Box::new(block.select));
    Ok(Proposal {
        sql: out.to_string(),
        form: Form::CountOverDistinct,
        distinct_dropped: block.distinct_dropped,
        moved: block.moved,
    })
}

#[cfg(test)]
mod tests;
