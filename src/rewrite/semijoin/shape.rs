//! The shapes the rewrite accepts: clauses it refuses outright, the COUNT forms' select lists,
//! and ORDER BY / DISTINCT ON names that mean output columns.

use std::collections::BTreeSet;

use sqlparser::ast::{
    DuplicateTreatment, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr,
    LimitClause, OrderByKind, Query, Select, SelectFlavor, SelectItem, SetExpr, TableFactor,
    TableWithJoins,
};

use super::resolve::{self, Resolver};
use super::{NotProvable, np};
use crate::sql::analysis::ast::{function_name, ident_name, strip_nested};

/// Query-level clauses the rewrite does not understand (checked for the statement and for
/// every subquery).
pub(super) fn check_query(q: &Query, what: &str) -> Result<(), NotProvable> {
    if q.with.is_some() {
        return Err(np(format!("{what} has a WITH clause")));
    }
    match q.body.as_ref() {
        SetExpr::Select(_) => {}
        SetExpr::SetOperation { op, .. } => {
            return Err(np(format!("{what} is a set operation ({op})")));
        }
        _ => return Err(np(format!("{what} is not a plain SELECT"))),
    }
    if !q.locks.is_empty() {
        return Err(np(format!(
            "{what} has a locking clause (FOR UPDATE/SHARE)"
        )));
    }
    if q.for_clause.is_some()
        || q.settings.is_some()
        || q.format_clause.is_some()
        || !q.pipe_operators.is_empty()
    {
        return Err(np(format!("{what} has a clause PostgreSQL does not have")));
    }
    match &q.limit_clause {
        None => {}
        Some(LimitClause::LimitOffset { limit_by, .. }) if limit_by.is_empty() => {}
        Some(_) => return Err(np(format!("{what} has an unsupported LIMIT form"))),
    }
    if let Some(order_by) = &q.order_by {
        match &order_by.kind {
            OrderByKind::Expressions(items)
                if order_by.interpolate.is_none()
                    && items.iter().all(|i| i.with_fill.is_none()) => {}
            _ => return Err(np(format!("{what} has an unsupported ORDER BY form"))),
        }
    }
    Ok(())
}

/// SELECT-level clauses the rewrite refuses: GROUP BY/HAVING/windows change what a row is, the
/// rest are not PostgreSQL.
pub(super) fn check_select(s: &Select, what: &str) -> Result<(), NotProvable> {
    let refuse = |clause: &str| Err(np(format!("{what} has {clause}")));
    match &s.group_by {
        GroupByExpr::Expressions(exprs, modifiers) if exprs.is_empty() && modifiers.is_empty() => {}
        _ => return refuse("GROUP BY"),
    }
    if s.having.is_some() {
        return refuse("HAVING");
    }
    if !s.named_window.is_empty() {
        return refuse("a WINDOW clause");
    }
    if s.qualify.is_some() {
        return refuse("QUALIFY");
    }
    if s.into.is_some() {
        return refuse("INTO (SELECT INTO)");
    }
    if !s.optimizer_hints.is_empty()
        || s.select_modifiers.is_some()
        || s.top.is_some()
        || s.exclude.is_some()
        || !s.lateral_views.is_empty()
        || s.prewhere.is_some()
        || !s.connect_by.is_empty()
        || !s.cluster_by.is_empty()
        || !s.distribute_by.is_empty()
        || !s.sort_by.is_empty()
        || s.value_table_mode.is_some()
        || s.flavor != SelectFlavor::Standard
    {
        return refuse("a clause PostgreSQL does not have");
    }
    Ok(())
}

/// `SELECT COUNT(*) [AS x] FROM (…) [AS] alias`: the shape of Django's `.distinct().count()`.
pub(super) fn is_count_over_derived(select: &Select) -> bool {
    let count = match select.projection.as_slice() {
        [SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }] => e,
        _ => return false,
    };
    is_count_star(count)
        && matches!(select.from.as_slice(),
            [TableWithJoins { relation: TableFactor::Derived { .. }, joins }] if joins.is_empty())
}

pub(super) fn is_count_star(e: &Expr) -> bool {
    let Expr::Function(f) = e else { return false };
    function_name(f) == "count"
        && f.over.is_none()
        && f.filter.is_none()
        && f.within_group.is_empty()
        && f.null_treatment.is_none()
        && matches!(f.parameters, FunctionArguments::None)
        && matches!(&f.args, FunctionArguments::List(list)
            if list.duplicate_treatment.is_none()
                && list.clauses.is_empty()
                && matches!(list.args.as_slice(), [FunctionArg::Unnamed(FunctionArgExpr::Wildcard)]))
}

/// One aggregate of a form-4 select list.
pub(super) struct Aggregate {
    pub refs: BTreeSet<usize>,
    /// A `COUNT(DISTINCT …)`.
    pub count_distinct: bool,
    /// Its argument when that is a bare column: a candidate for dropping the DISTINCT.
    pub column: Option<(usize, String)>,
}

/// Form 4 allows only aggregates whose value depends on the *set* of values over the joined
/// rows (DISTINCT ones, MIN, MAX): the set is the same over the semi-join, the multiset is not.
pub(super) fn aggregate(res: &Resolver<'_, '_>, e: &Expr) -> Result<Aggregate, NotProvable> {
    if is_count_star(e) {
        return Err(np(
            "COUNT(*) over the join counts joined rows, which the rewrite changes",
        ));
    }
    let Expr::Function(f) = e else {
        return Err(np(format!(
            "select list item {} is not an aggregate (a COUNT(DISTINCT …) query may only select \
             aggregates)",
            resolve::short(e)
        )));
    };
    let name = function_name(f);
    if !matches!(name.as_str(), "count" | "sum" | "avg" | "min" | "max") {
        return Err(np(format!(
            "{name}() in the select list is not count/sum/avg/min/max"
        )));
    }
    if f.over.is_some() {
        return Err(np(format!("window function {name}() in the select list")));
    }
    let arg = match &f.args {
        FunctionArguments::List(list)
            if f.filter.is_none()
                && f.within_group.is_empty()
                && f.null_treatment.is_none()
                && matches!(f.parameters, FunctionArguments::None)
                && list.clauses.is_empty() =>
        {
            match list.args.as_slice() {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => Some((arg, list)),
                _ => None,
            }
        }
        _ => None,
    };
    let Some((arg, list)) = arg else {
        return Err(np(format!(
            "{name}() in the select list has an unsupported argument list \
             (FILTER, ORDER BY, * or several arguments)"
        )));
    };
    let distinct = matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct));
    if !distinct && !matches!(name.as_str(), "min" | "max") {
        return Err(np(format!(
            "{name}() without DISTINCT in the select list aggregates every joined row"
        )));
    }
    let refs = res.refs(arg, &format!("the argument of {name}()"), false)?;
    Ok(Aggregate {
        refs,
        count_distinct: name == "count" && distinct,
        column: res.bare_column(arg),
    })
}

/// The output names of a select list, for ORDER BY / DISTINCT ON names that mean an output
/// column: an alias, or the column name of a bare column item.
pub(super) fn output_names(projection: &[SelectItem]) -> Vec<(String, &Expr)> {
    projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { expr, alias } => Some((ident_name(alias), expr)),
            SelectItem::UnnamedExpr(expr) => match strip_nested(expr) {
                Expr::Identifier(id) => Some((ident_name(id), expr)),
                Expr::CompoundIdentifier(parts) => parts.last().map(|id| (ident_name(id), expr)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// An ORDER BY or DISTINCT ON expression: a bare name matching an output column means that
/// column (PostgreSQL prefers it over an input column), which is already accounted for.
/// Returns the select-list expression it stands for, if any, else `e`.
pub(super) fn ordering_target<'e>(outputs: &[(String, &'e Expr)], e: &'e Expr) -> Option<&'e Expr> {
    let Expr::Identifier(id) = e else {
        return Some(e);
    };
    let name = ident_name(id);
    let mut matches = outputs.iter().filter(|(n, _)| *n == name);
    match (matches.next(), matches.next()) {
        (Some((_, item)), None) => Some(item),
        (Some(_), Some(_)) => None,
        (None, _) => Some(e),
    }
}
