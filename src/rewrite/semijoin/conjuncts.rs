//! Conjunct plumbing: putting conjunctions back together (splitting them is
//! `sql::analysis::ast::split_and`), the null-rejection test for LEFT joins, and the EXISTS
//! subquery itself.

use sqlparser::ast::{BinaryOperator, Expr, InTarget, SetExpr, Statement, TableWithJoins};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::resolve::Resolver;
use super::{NotProvable, np};
use crate::sql::analysis::ast::strip_nested;

/// `a AND b AND …` (left-deep, as the parser builds it), or `None` for no conjuncts. An OR
/// conjunct (a whole WHERE or ON that was one) gets parentheses: printed bare inside an AND it
/// would bind differently when parsed again.
pub(super) fn conjoin(conjuncts: Vec<Expr>) -> Option<Expr> {
    let single = conjuncts.len() == 1;
    conjuncts
        .into_iter()
        .map(|c| match c {
            Expr::BinaryOp {
                op: BinaryOperator::Or | BinaryOperator::Xor,
                ..
            } if !single => Expr::Nested(Box::new(c)),
            other => other,
        })
        .reduce(|acc, c| Expr::BinaryOp {
            left: Box::new(acc),
            op: BinaryOperator::And,
            right: Box::new(c),
        })
}

/// Whether the top-level WHERE conjunct `e` is false or NULL whenever relation `rel` is NULL
/// extended: a strict comparison-like predicate on a bare column of `rel` that is not under
/// OR/NOT/CASE/COALESCE. Such a WHERE discards every row a LEFT JOIN to `rel` adds over an
/// inner join, so the join may be treated as INNER.
pub(super) fn null_rejects(res: &Resolver<'_, '_>, e: &Expr, rel: usize) -> bool {
    let column_of_rel = |x: &Expr| {
        let mut x = x;
        while let Expr::Nested(inner) | Expr::Cast { expr: inner, .. } = x {
            x = inner;
        }
        matches!(res.bare_column(x), Some((r, _)) if r == rel)
    };
    match strip_nested(e) {
        Expr::BinaryOp { left, op, right } => {
            matches!(
                op,
                BinaryOperator::Eq
                    | BinaryOperator::NotEq
                    | BinaryOperator::Lt
                    | BinaryOperator::Gt
                    | BinaryOperator::LtEq
                    | BinaryOperator::GtEq
            ) && (column_of_rel(left) || column_of_rel(right))
        }
        Expr::Like {
            expr, any: false, ..
        }
        | Expr::ILike {
            expr, any: false, ..
        }
        | Expr::In {
            expr,
            target: InTarget::List(_),
            ..
        }
        | Expr::Between { expr, .. }
        | Expr::IsNotNull(expr) => column_of_rel(expr),
        _ => false,
    }
}

/// `EXISTS (SELECT 1 FROM <from> [WHERE <selection>])`. Built from a parsed template so every
/// field of the AST has the parser's own default.
pub(super) fn exists(
    from: Vec<TableWithJoins>,
    selection: Option<Expr>,
) -> Result<Expr, NotProvable> {
    let internal = || np("internal error: the EXISTS template did not parse");
    let mut statements =
        Parser::parse_sql(&PostgreSqlDialect {}, "SELECT 1").map_err(|_| internal())?;
    let Some(Statement::Query(mut query)) = statements.pop() else {
        return Err(internal());
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(internal());
    };
    select.from = from;
    select.selection = selection;
    Ok(Expr::Exists {
        subquery: query,
        negated: false,
    })
}
