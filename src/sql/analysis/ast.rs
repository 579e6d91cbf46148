//! Small AST helpers shared by the analysis walk and the semi-join rewrite
//! (`crate::rewrite::semijoin`): identifier folding, function names, the built-in aggregates,
//! parentheses and conjuncts.

use sqlparser::ast::{BinaryOperator, Expr, Function, Ident, ObjectName, ObjectNamePart};

/// Aggregate functions PostgreSQL ships (window calls with OVER are not aggregates).
pub(crate) const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "array_agg",
    "string_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "bool_and",
    "bool_or",
    "every",
    "bit_and",
    "bit_or",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
    "percentile_cont",
    "percentile_disc",
    "mode",
    "xmlagg",
];

/// PostgreSQL folds unquoted identifiers to lower case; quoted ones keep their spelling.
pub(crate) fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// One part of an object name, folded.
pub(crate) fn part_name(part: &ObjectNamePart) -> String {
    match part {
        ObjectNamePart::Identifier(ident) => ident_name(ident),
        ObjectNamePart::Function(f) => ident_name(&f.name),
    }
}

/// The identifier parts of an object name, folded.
pub(crate) fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0.iter().map(part_name).collect()
}

/// The (folded) unqualified name of a function or aggregate call.
pub(crate) fn function_name(f: &Function) -> String {
    f.name.0.last().map(part_name).unwrap_or_default()
}

/// `e` without redundant parentheses.
pub(crate) fn strip_nested(mut e: &Expr) -> &Expr {
    while let Expr::Nested(inner) = e {
        e = inner;
    }
    e
}

/// The conjuncts of `e` split on top-level AND, in order; parentheses around a nested AND are
/// redundant (`(a AND b)` splits into `a`, `b`), other parentheses are kept. Iterative: ORM
/// chains can be long.
pub(crate) fn split_and(e: &Expr) -> Vec<&Expr> {
    let mut out = Vec::new();
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner)
                if matches!(
                    strip_nested(inner),
                    Expr::BinaryOp {
                        op: BinaryOperator::And,
                        ..
                    }
                ) =>
            {
                stack.push(strip_nested(inner))
            }
            other => out.push(other),
        }
    }
    out
}

/// The AND-ed parts of a predicate, parentheses removed.
pub(crate) fn conjuncts(e: &Expr) -> Vec<&Expr> {
    split_and(e).into_iter().map(strip_nested).collect()
}
