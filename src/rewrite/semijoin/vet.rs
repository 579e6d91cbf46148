//! Expression vetting: every column resolves, every call is known safe to move, and
//! subqueries keep meaning the same relations wherever they end up.

use std::collections::BTreeSet;

use sqlparser::ast::{
    AccessExpr, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, InTarget,
    JoinConstraint, JoinOperator, ObjectNamePart, Query, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Subscript, WildcardAdditionalOptions,
};

use super::resolve::{Resolver, bind_table, short};
use super::shape::{check_query, check_select};
use super::{NotProvable, np};
use crate::sql::analysis::ast::{AGGREGATES, function_name, ident_name};

/// Deepest expression nesting examined. Long left-deep chains (`a + b + …`, AND lists) are
/// walked without recursion, but the rewrite clones and prints them recursively, so a
/// statement deeper than this is left alone rather than risking the stack.
const MAX_DEPTH: usize = 200;

/// SQL keywords that look like calls but are expressions (`COALESCE(…)`): not in `pg_proc`.
const KEYWORD_CALLS: &[&str] = &["coalesce", "nullif", "greatest", "least"];

/// SQL value functions written without parentheses; all stable within a statement.
const VALUE_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "session_user",
    "current_role",
    "current_schema",
    "current_catalog",
];

/// The relations `e` references; see [`Resolver::refs`].
pub(super) fn refs(
    res: &Resolver<'_, '_>,
    e: &Expr,
    place: &str,
    subqueries: bool,
) -> Result<BTreeSet<usize>, NotProvable> {
    let mut walk = Walk {
        res,
        place,
        subqueries,
        refs: BTreeSet::new(),
        scopes: Vec::new(),
    };
    walk.expr(e, 0)?;
    Ok(walk.refs)
}

/// One expression walk: the relations referenced so far and the subquery bindings in force.
struct Walk<'w, 'r, 'a> {
    res: &'w Resolver<'r, 'a>,
    place: &'w str,
    subqueries: bool,
    refs: BTreeSet<usize>,
    /// Bindings of enclosing subqueries, innermost last.
    scopes: Vec<Vec<String>>,
}

impl Walk<'_, '_, '_> {
    fn column(&mut self, parts: &[Ident]) -> Result<(), NotProvable> {
        let names: Vec<String> = parts.iter().map(ident_name).collect();
        if !self.scopes.is_empty() {
            match names.as_slice() {
                [col] => {
                    // Inside a subquery an unqualified name could bind to the subquery's own
                    // tables or, if they lack it, to ours; after the rewrite to other ones.
                    return Err(np(format!(
                        "unqualified column {col} inside a subquery in {}",
                        self.place
                    )));
                }
                [q, _] if self.scopes.iter().any(|s| s.contains(q)) => return Ok(()),
                _ => {}
            }
        }
        let rel = self.res.column(&names, self.place)?;
        self.refs.insert(rel);
        Ok(())
    }

    fn expr(&mut self, root: &Expr, depth: usize) -> Result<(), NotProvable> {
        let mut stack = vec![(root, depth)];
        while let Some((e, d)) = stack.pop() {
            if d > MAX_DEPTH {
                return Err(np(format!(
                    "an expression in {} is nested too deeply",
                    self.place
                )));
            }
            let d = d + 1;
            match e {
                Expr::Identifier(id) => self.column(std::slice::from_ref(id))?,
                Expr::CompoundIdentifier(parts) => self.column(parts)?,
                Expr::Value(_) | Expr::TypedString(_) => {}
                Expr::BinaryOp { left, right, .. }
                | Expr::IsDistinctFrom(left, right)
                | Expr::IsNotDistinctFrom(left, right)
                | Expr::AnyOp { left, right, .. }
                | Expr::AllOp { left, right, .. }
                | Expr::AtTimeZone {
                    timestamp: left,
                    time_zone: right,
                }
                | Expr::Position {
                    expr: left,
                    r#in: right,
                } => {
                    stack.push((right, d));
                    stack.push((left, d));
                }
                Expr::UnaryOp { expr, .. }
                | Expr::Nested(expr)
                | Expr::IsNull(expr)
                | Expr::IsNotNull(expr)
                | Expr::IsTrue(expr)
                | Expr::IsNotTrue(expr)
                | Expr::IsFalse(expr)
                | Expr::IsNotFalse(expr)
                | Expr::IsUnknown(expr)
                | Expr::IsNotUnknown(expr)
                | Expr::Collate { expr, .. }
                | Expr::Cast { expr, .. }
                | Expr::Extract { expr, .. } => stack.push((expr, d)),
                Expr::In { expr, target, .. } => {
                    stack.push((expr, d));
                    match target {
                        InTarget::List(list) => stack.extend(list.iter().map(|x| (x, d))),
                        InTarget::Subquery(q) => self.query(q, d)?,
                        _ => return Err(self.unsupported(e)),
                    }
                }
                Expr::Between {
                    expr, low, high, ..
                } => stack.extend([(&**expr, d), (&**low, d), (&**high, d)]),
                Expr::Like {
                    expr,
                    pattern,
                    escape_char,
                    any: false,
                    ..
                }
                | Expr::ILike {
                    expr,
                    pattern,
                    escape_char,
                    any: false,
                    ..
                }
                | Expr::SimilarTo {
                    expr,
                    pattern,
                    escape_char,
                    ..
                } => {
                    stack.extend([(&**expr, d), (&**pattern, d)]);
                    stack.extend(escape_char.iter().map(|x| (&**x, d)));
                }
                Expr::Case {
                    operand,
                    conditions,
                    else_result,
                    ..
                } => {
                    stack.extend(operand.iter().map(|x| (&**x, d)));
                    for when in conditions {
                        stack.extend([(&when.condition, d), (&when.result, d)]);
                    }
                    stack.extend(else_result.iter().map(|x| (&**x, d)));
                }
                Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => {
                    self.query(subquery, d)?
                }
                Expr::Function(f) => self.function(f, d)?,
                Expr::Tuple(items) => stack.extend(items.iter().map(|x| (x, d))),
                Expr::Array(array) => stack.extend(array.elem.iter().map(|x| (x, d))),
                Expr::Interval(interval) => stack.push((&interval.value, d)),
                Expr::Substring {
                    expr,
                    substring_from,
                    substring_for,
                    ..
                } => {
                    stack.push((expr, d));
                    stack.extend(substring_from.iter().map(|x| (&**x, d)));
                    stack.extend(substring_for.iter().map(|x| (&**x, d)));
                }
                Expr::Trim {
                    expr,
                    trim_what,
                    trim_characters,
                    ..
                } => {
                    stack.push((expr, d));
                    stack.extend(trim_what.iter().map(|x| (&**x, d)));
                    stack.extend(trim_characters.iter().flatten().map(|x| (x, d)));
                }
                Expr::Overlay {
                    expr,
                    overlay_what,
                    overlay_from,
                    overlay_for,
                } => {
                    stack.extend([(&**expr, d), (&**overlay_what, d), (&**overlay_from, d)]);
                    stack.extend(overlay_for.iter().map(|x| (&**x, d)));
                }
                Expr::CompoundFieldAccess { root, access_chain } => {
                    stack.push((root, d));
                    for access in access_chain {
                        match access {
                            AccessExpr::Subscript(Subscript::Index { index }) => {
                                stack.push((index, d))
                            }
                            AccessExpr::Subscript(Subscript::Slice {
                                lower_bound,
                                upper_bound,
                                stride,
                            }) => {
                                for x in [lower_bound, upper_bound, stride].into_iter().flatten() {
                                    stack.push((x, d));
                                }
                            }
                            AccessExpr::Dot(_) => return Err(self.unsupported(e)),
                        }
                    }
                }
                _ => return Err(self.unsupported(e)),
            }
        }
        Ok(())
    }

    fn unsupported(&self, e: &Expr) -> NotProvable {
        np(format!(
            "unsupported expression {} in {}",
            short(e),
            self.place
        ))
    }

    fn function(&mut self, f: &Function, depth: usize) -> Result<(), NotProvable> {
        let name = function_name(f);
        let place = self.place;
        if f.over.is_some() {
            return Err(np(format!("window function {name}() in {place}")));
        }
        // Aggregates are never safe outside the places a form allows them (they would aggregate
        // over a different row set once the join is gone); user-defined ones are caught by
        // `safe_functions`, which holds plain functions only.
        if AGGREGATES.contains(&name.as_str()) {
            return Err(np(format!("aggregate {name}() in {place}")));
        }
        if !matches!(f.parameters, FunctionArguments::None)
            || f.filter.is_some()
            || !f.within_group.is_empty()
            || f.null_treatment.is_some()
            || f.uses_odbc_syntax
        {
            return Err(np(format!(
                "unsupported call syntax of {name}() in {place}"
            )));
        }
        let safe = self.res.schema.safe_functions.contains(&name);
        let not_safe = || {
            np(format!(
                "function {name}() in {place} is not known to be immutable or stable \
                 (volatile, set-returning or not in the catalog)"
            ))
        };
        match &f.args {
            FunctionArguments::None if safe || VALUE_FUNCTIONS.contains(&name.as_str()) => Ok(()),
            FunctionArguments::None | FunctionArguments::Subquery(_) => Err(not_safe()),
            FunctionArguments::List(list) => {
                if !safe && !KEYWORD_CALLS.contains(&name.as_str()) {
                    return Err(not_safe());
                }
                if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                    return Err(np(format!(
                        "unsupported call syntax of {name}() in {place}"
                    )));
                }
                for arg in &list.args {
                    match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                        | FunctionArg::Named {
                            arg: FunctionArgExpr::Expr(e),
                            ..
                        } => self.expr(e, depth)?,
                        _ => {
                            return Err(np(format!("unsupported argument of {name}() in {place}")));
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// A subquery in WHERE/ON: its own tables must be known, its columns qualified, and its
    /// bindings distinct from every enclosing one, so that each name means the same relation
    /// wherever the subquery ends up.
    fn query(&mut self, q: &Query, depth: usize) -> Result<(), NotProvable> {
        let place = self.place;
        if !self.subqueries {
            return Err(np(format!("subquery in {place}")));
        }
        let what = format!("a subquery in {place}");
        check_query(q, &what)?;
        let SetExpr::Select(s) = q.body.as_ref() else {
            return Err(np(format!("{what} is not a plain SELECT")));
        };
        check_select(s, &what)?;
        if matches!(s.distinct, Some(sqlparser::ast::Distinct::On(_))) {
            return Err(np(format!("{what} uses DISTINCT ON")));
        }
        let mut names: Vec<String> = Vec::new();
        let mut ons: Vec<&Expr> = Vec::new();
        for item in &s.from {
            let factors =
                std::iter::once(&item.relation).chain(item.joins.iter().map(|j| &j.relation));
            for factor in factors {
                let (binding, _, _) = bind_table(factor, self.res.schema)?;
                if self.res.rels.iter().any(|r| r.binding == binding)
                    || self.scopes.iter().any(|s| s.contains(&binding))
                    || names.contains(&binding)
                {
                    return Err(np(format!(
                        "{what} binds {binding}, which shadows a relation of an enclosing query"
                    )));
                }
                names.push(binding);
            }
            for join in &item.joins {
                match &join.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::Right(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::FullOuter(c)
                    | JoinOperator::CrossJoin(c) => match c {
                        JoinConstraint::On(e) => ons.push(e),
                        JoinConstraint::None => {}
                        _ => return Err(np(format!("{what} joins with USING or NATURAL"))),
                    },
                    _ => return Err(np(format!("{what} has an unsupported join"))),
                }
            }
        }
        self.scopes.push(names);
        let result = self.query_body(q, s, &ons, depth, &what);
        self.scopes.pop();
        result
    }

    fn query_body(
        &mut self,
        q: &Query,
        s: &sqlparser::ast::Select,
        ons: &[&Expr],
        depth: usize,
        what: &str,
    ) -> Result<(), NotProvable> {
        for on in ons {
            self.expr(on, depth)?;
        }
        for item in &s.projection {
            match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    self.expr(e, depth)?
                }
                SelectItem::Wildcard(options) if plain_wildcard(options) => {}
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(name),
                    options,
                ) if plain_wildcard(options)
                    && matches!(name.0.as_slice(), [ObjectNamePart::Identifier(id)]
                        if self.scopes.last().is_some_and(|s| s.contains(&ident_name(id)))) => {}
                _ => {
                    return Err(np(format!(
                        "{what} has an unsupported select item {}",
                        short(item)
                    )));
                }
            }
        }
        if let Some(selection) = &s.selection {
            self.expr(selection, depth)?;
        }
        for e in query_tail_exprs(q) {
            self.expr(e, depth)?;
        }
        Ok(())
    }
}

/// `*` without EXCLUDE/REPLACE/… options.
pub(super) fn plain_wildcard(options: &WildcardAdditionalOptions) -> bool {
    options.opt_ilike.is_none()
        && options.opt_exclude.is_none()
        && options.opt_except.is_none()
        && options.opt_replace.is_none()
        && options.opt_rename.is_none()
        && options.opt_alias.is_none()
}

/// ORDER BY, LIMIT, OFFSET and FETCH expressions of a query (already checked for shape by
/// [`check_query`]).
pub(super) fn query_tail_exprs(q: &Query) -> Vec<&Expr> {
    let mut out: Vec<&Expr> = Vec::new();
    if let Some(order_by) = &q.order_by
        && let sqlparser::ast::OrderByKind::Expressions(items) = &order_by.kind
    {
        out.extend(items.iter().map(|i| &i.expr));
    }
    out.extend(limit_exprs(q));
    out
}

/// LIMIT, OFFSET and FETCH quantities.
pub(super) fn limit_exprs(q: &Query) -> Vec<&Expr> {
    let mut out: Vec<&Expr> = Vec::new();
    if let Some(sqlparser::ast::LimitClause::LimitOffset { limit, offset, .. }) = &q.limit_clause {
        out.extend(limit.iter());
        out.extend(offset.iter().map(|o| &o.value));
    }
    if let Some(fetch) = &q.fetch {
        out.extend(fetch.quantity.iter());
    }
    out
}
