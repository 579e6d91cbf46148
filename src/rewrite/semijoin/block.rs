//! The rewrite of one SELECT block: which relations stay, which move, where each conjunct
//! goes, and whether the DISTINCT can go.

use std::collections::BTreeSet;

use sqlparser::ast::{
    Distinct, Expr, FunctionArguments, OrderByKind, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, TableWithJoins,
};

use super::conjuncts::{conjoin, exists, null_rejects};
use super::resolve::{self, JoinKind, Relation, Resolver};
use super::shape::{Aggregate, aggregate, ordering_target, output_names};
use super::vet::{limit_exprs, plain_wildcard};
use super::{NotProvable, np};
use crate::rules::catalog::Snapshot;
use crate::sql::analysis::ast::{split_and, strip_nested};

/// What the select list may hold, and so which DISTINCT is being rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Distinct,
    DistinctOn,
    CountDistinct,
}

/// Why a relation stays in the outer query (for the "no join to move" message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    SelectList,
    DistinctOn,
    OrderBy,
    ToOne,
}

impl Kept {
    fn describe(self) -> &'static str {
        match self {
            Kept::SelectList => "referenced by the select list",
            Kept::DistinctOn => "referenced by DISTINCT ON",
            Kept::OrderBy => "referenced by the ORDER BY",
            Kept::ToOne => "joined to-one",
        }
    }
}

/// One rewritten SELECT block.
pub(super) struct Block {
    pub select: Select,
    pub distinct_dropped: bool,
    pub moved: Vec<String>,
}

/// Most WHERE and ON conjuncts put back together (see [`rewrite_block`]).
const MAX_CONJUNCTS: usize = 200;

/// A conjunct and the relations it references.
pub(super) type Conjunct<'a> = (&'a Expr, BTreeSet<usize>);

/// Whether relation `j` is joined to-one from kept relations: its ON conjuncts reference only
/// kept relations and `j`, and the columns of `j` they equate to a kept column or a constant
/// cover a unique key of `j` (NULLs never match an equality, so nullable keys count).
///
/// The other side must be a plain column or constant (casts allowed): an arbitrary expression
/// could bring a COLLATE or an operator whose equality is coarser than the index's.
fn joined_to_one(res: &Resolver<'_, '_>, j: usize, on: &[Conjunct<'_>], kept: &[bool]) -> bool {
    if on.is_empty() {
        return false;
    }
    let mut equated: Vec<String> = Vec::new();
    for (c, refs) in on {
        if refs.iter().any(|&k| k != j && !kept[k]) {
            return false;
        }
        if let Expr::BinaryOp {
            left,
            op: sqlparser::ast::BinaryOperator::Eq,
            right,
        } = strip_nested(c)
        {
            for (col_side, other) in [(left, right), (right, left)] {
                if let Some((r, col)) = res.bare_column(col_side)
                    && r == j
                    && plain_operand(other)
                    && res
                        .refs(other, "", false)
                        .is_ok_and(|other_refs| !other_refs.contains(&j))
                {
                    equated.push(col);
                }
            }
        }
    }
    let cols: Vec<&str> = equated.iter().map(String::as_str).collect();
    res.rels[j].info.has_unique_key(&cols)
}

/// A column, constant or `$k`, possibly cast or parenthesized.
fn plain_operand(mut e: &Expr) -> bool {
    while let Expr::Nested(inner) | Expr::Cast { expr: inner, .. } = e {
        e = inner;
    }
    matches!(
        e,
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_)
    )
}

/// The rewrite of one SELECT block (the statement, or form 3's inner query).
pub(super) fn rewrite_block(
    query: &Query,
    select: &Select,
    mode: Mode,
    schema: &Snapshot,
) -> Result<Block, NotProvable> {
    let rels = resolve::relations(&select.from, schema)?;
    let res = Resolver {
        rels: &rels,
        schema,
    };
    let n = rels.len();

    // ON conjuncts with their references. An ON clause may only see relations joined so far;
    // checked here so that regrouping cannot make an invalid statement valid.
    let mut on_conjuncts: Vec<Vec<Conjunct<'_>>> = Vec::with_capacity(n);
    let mut on_refs: Vec<BTreeSet<usize>> = Vec::with_capacity(n);
    for (j, rel) in rels.iter().enumerate() {
        let place = format!("the ON clause of {}", rel.binding);
        let mut list = Vec::new();
        let mut all = BTreeSet::new();
        for c in rel.on.map(split_and).unwrap_or_default() {
            let refs = res.refs(c, &place, true)?;
            if let Some(&late) = refs.iter().find(|&&k| k > j) {
                return Err(np(format!(
                    "{place} references {}, which is joined after it",
                    rels[late].binding
                )));
            }
            all.extend(refs.iter().copied());
            list.push((c, refs));
        }
        on_conjuncts.push(list);
        on_refs.push(all);
    }
    let where_split = select.selection.as_ref().map(split_and).unwrap_or_default();
    // The rebuilt AND chains are cloned and printed recursively; the walker's depth limit
    // covers each conjunct, this covers the chains.
    if where_split.len() + on_conjuncts.iter().map(Vec::len).sum::<usize>() > MAX_CONJUNCTS {
        return Err(np(format!(
            "the statement has more than {MAX_CONJUNCTS} conjuncts"
        )));
    }
    let mut where_conjuncts: Vec<Conjunct<'_>> = Vec::new();
    for c in where_split {
        where_conjuncts.push((c, res.refs(c, "the WHERE clause", true)?));
    }

    // KEPT, step 1: what the output (and its order) is computed from.
    let mut why: Vec<Option<Kept>> = vec![None; n];
    let mark = |why: &mut Vec<Option<Kept>>, refs: &BTreeSet<usize>, reason: Kept| {
        for &k in refs {
            why[k].get_or_insert(reason);
        }
    };
    let mut aggregates: Vec<Option<Aggregate>> = Vec::new();
    for item in &select.projection {
        let refs = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                if mode == Mode::CountDistinct {
                    let agg = aggregate(&res, e)?;
                    let refs = agg.refs.clone();
                    aggregates.push(Some(agg));
                    refs
                } else {
                    res.refs(e, "the select list", false)?
                }
            }
            SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), o)
                if plain_wildcard(o) && mode != Mode::CountDistinct =>
            {
                BTreeSet::from([res.wildcard(name)?])
            }
            SelectItem::Wildcard(_) => {
                return Err(np(
                    "SELECT * in the select list includes the columns of every joined relation",
                ));
            }
            other => {
                return Err(np(format!(
                    "unsupported select list item {}",
                    resolve::short(other)
                )));
            }
        };
        mark(&mut why, &refs, Kept::SelectList);
    }
    if mode == Mode::CountDistinct && !aggregates.iter().flatten().any(|a| a.count_distinct) {
        return Err(np("the select list has no COUNT(DISTINCT …)"));
    }
    let outputs = output_names(&select.projection);
    let distinct_on: &[Expr] = match &select.distinct {
        Some(Distinct::On(exprs)) => exprs,
        _ => &[],
    };
    for e in distinct_on {
        if let Some(target) = ordering_target(&outputs, e) {
            mark(
                &mut why,
                &res.refs(target, "DISTINCT ON", false)?,
                Kept::DistinctOn,
            );
        }
    }
    if let Some(order_by) = &query.order_by {
        if mode == Mode::CountDistinct {
            return Err(np("ORDER BY on an aggregate-only query is not supported"));
        }
        if let OrderByKind::Expressions(items) = &order_by.kind {
            for item in items {
                if let Some(target) = ordering_target(&outputs, &item.expr) {
                    mark(
                        &mut why,
                        &res.refs(target, "the ORDER BY", false)?,
                        Kept::OrderBy,
                    );
                }
            }
        }
    }
    for e in limit_exprs(query) {
        if !res.refs(e, "LIMIT/OFFSET", false)?.is_empty() {
            return Err(np("LIMIT/OFFSET references a column"));
        }
    }
    if why.iter().all(Option::is_none) {
        return Err(np("the select list references no relation"));
    }

    // KEPT, step 2: relations joined to-one from kept ones stay where they are. An ON clause
    // sees only earlier relations, whose status is final by then.
    let mut to_one = vec![false; n];
    for j in 1..n {
        let kept: Vec<bool> = why.iter().map(Option::is_some).collect();
        to_one[j] = joined_to_one(&res, j, &on_conjuncts[j], &kept);
        if to_one[j] {
            why[j].get_or_insert(Kept::ToOne);
        }
    }
    let kept: Vec<bool> = why.iter().map(Option::is_some).collect();
    if kept.iter().all(|&k| k) {
        let reasons: Vec<String> = rels
            .iter()
            .zip(&why)
            .filter_map(|(r, w)| w.map(|w| format!("{}: {}", r.binding, w.describe())))
            .collect();
        return Err(np(format!(
            "no join to move: every relation stays in the outer query ({})",
            reasons.join("; ")
        )));
    }

    // Moved LEFT joins: dropped when nothing but their own ON uses them (repeated, so a chain
    // of unused LEFT joins goes as a whole), else INNER when the WHERE rejects their NULLs.
    let mut dropped = vec![false; n];
    loop {
        let mut changed = false;
        for j in (0..n).rev() {
            if kept[j] || dropped[j] || rels[j].kind != JoinKind::Left {
                continue;
            }
            let used = where_conjuncts.iter().any(|(_, r)| r.contains(&j))
                || (0..n).any(|k| k != j && !dropped[k] && on_refs[k].contains(&j));
            if !used {
                dropped[j] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (j, rel) in rels.iter().enumerate() {
        if !kept[j]
            && !dropped[j]
            && rel.kind == JoinKind::Left
            && !where_conjuncts
                .iter()
                .any(|(c, _)| null_rejects(&res, c, j))
        {
            return Err(np(format!(
                "LEFT JOIN to {} is not null-rejected by the WHERE: its NULL-extended rows \
                 would be lost in an EXISTS",
                rel.binding
            )));
        }
    }

    // The outer FROM: kept relations in their order and with their joins; the first one is the
    // new base. If it was joined (not first), its own ON becomes a plain conjunct, which is
    // only equivalent for an inner join.
    let base = kept.iter().position(|&k| k).unwrap_or(0);
    let first_moved = |refs: &BTreeSet<usize>| refs.iter().copied().find(|&k| !kept[k]);
    if base > 0 && rels[base].kind == JoinKind::Left {
        return Err(np(format!(
            "kept relation {} is LEFT JOINed to moved relation {}",
            rels[base].binding, rels[0].binding
        )));
    }
    for j in base + 1..n {
        if kept[j]
            && let Some(m) = first_moved(&on_refs[j])
        {
            return Err(np(format!(
                "kept relation {} is reached through moved relation {}",
                rels[j].binding, rels[m].binding
            )));
        }
    }

    // The pool of conjuncts, in statement order: ON of the new base and of every moved (not
    // dropped) join, then WHERE.
    let mut pool: Vec<&Conjunct<'_>> = Vec::new();
    for (j, list) in on_conjuncts.iter().enumerate() {
        if (j == base && j > 0) || (!kept[j] && !dropped[j]) {
            pool.extend(list);
        }
    }
    pool.extend(&where_conjuncts);

    // Moved relations connected by a shared conjunct must be in the same EXISTS.
    let mut group: Vec<usize> = (0..n).collect();
    let find = |group: &Vec<usize>, mut k: usize| {
        while group[k] != k {
            k = group[k];
        }
        k
    };
    for (_, refs) in &pool {
        let moved_refs: Vec<usize> = refs.iter().copied().filter(|&k| !kept[k]).collect();
        for pair in moved_refs.windows(2) {
            let (a, b) = (find(&group, pair[0]), find(&group, pair[1]));
            group[a.max(b)] = a.min(b);
        }
    }
    let mut outer_conjuncts: Vec<Expr> = Vec::new();
    let mut inner_conjuncts: Vec<Vec<Expr>> = vec![Vec::new(); n];
    for (c, refs) in &pool {
        match first_moved(refs) {
            Some(m) => inner_conjuncts[find(&group, m)].push((*c).clone()),
            None => outer_conjuncts.push((*c).clone()),
        }
    }
    for root in 0..n {
        if kept[root] || dropped[root] || find(&group, root) != root {
            continue;
        }
        let from: Vec<TableWithJoins> = (0..n)
            .filter(|&k| !kept[k] && !dropped[k] && find(&group, k) == root)
            .map(|k| TableWithJoins {
                relation: rels[k].factor.clone(),
                joins: Vec::new(),
            })
            .collect();
        let conjuncts = std::mem::take(&mut inner_conjuncts[root]);
        outer_conjuncts.push(exists(from, conjoin(conjuncts))?);
    }

    // Each base row yields at most one outer row when every other kept relation is to-one.
    let others_to_one = (0..n).all(|j| j == base || !kept[j] || to_one[j]);
    let base_rel: &Relation<'_> = &rels[base];
    let mut out = select.clone();
    let mut distinct_dropped = false;
    match mode {
        Mode::Distinct => {
            let mut columns: Vec<String> = Vec::new();
            for item in &select.projection {
                match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        columns.extend(
                            res.bare_column(e)
                                .filter(|(r, _)| *r == base)
                                .map(|(_, c)| c),
                        )
                    }
                    SelectItem::QualifiedWildcard(
                        SelectItemQualifiedWildcardKind::ObjectName(name),
                        _,
                    ) if res.wildcard(name).is_ok_and(|r| r == base) => {
                        columns.extend(base_rel.info.columns.iter().map(|c| c.name.clone()))
                    }
                    _ => {}
                }
            }
            let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
            if others_to_one && base_rel.info.has_not_null_key(&cols) {
                out.distinct = None;
                distinct_dropped = true;
            }
        }
        Mode::DistinctOn => {
            let columns: Vec<String> = distinct_on
                .iter()
                .filter_map(|e| ordering_target(&outputs, e))
                .filter_map(|e| res.bare_column(e))
                .filter(|(r, _)| *r == base)
                .map(|(_, c)| c)
                .collect();
            let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
            if !base_rel.info.has_not_null_key(&cols) {
                return Err(np(format!(
                    "DISTINCT ON does not list a NOT NULL unique key of {} as bare columns, so \
                     which row survives depends on the join",
                    base_rel.binding
                )));
            }
            if let Some(j) = (0..n).find(|&j| j != base && kept[j] && !to_one[j]) {
                return Err(np(format!(
                    "DISTINCT ON: kept relation {} is not joined to-one, so which row survives \
                     depends on the join",
                    rels[j].binding
                )));
            }
        }
        Mode::CountDistinct => {
            for (item, agg) in out.projection.iter_mut().zip(&aggregates) {
                let Some((r, col)) = agg
                    .as_ref()
                    .filter(|a| a.count_distinct)
                    .and_then(|a| a.column.as_ref())
                else {
                    continue;
                };
                let single_not_null_key = base_rel
                    .info
                    .unique_keys
                    .iter()
                    .any(|k| k.as_slice() == std::slice::from_ref(col))
                    && base_rel.info.column(col).is_some_and(|c| c.not_null);
                if *r == base
                    && single_not_null_key
                    && others_to_one
                    && let SelectItem::UnnamedExpr(Expr::Function(f))
                    | SelectItem::ExprWithAlias {
                        expr: Expr::Function(f),
                        ..
                    } = item
                    && let FunctionArguments::List(list) = &mut f.args
                {
                    list.duplicate_treatment = None;
                    distinct_dropped = true;
                }
            }
        }
    }
    out.from = vec![TableWithJoins {
        relation: base_rel.factor.clone(),
        joins: (base + 1..n)
            .filter(|&j| kept[j])
            .filter_map(|j| rels[j].join.cloned())
            .collect(),
    }];
    out.selection = conjoin(outer_conjuncts);
    Ok(Block {
        select: out,
        distinct_dropped,
        moved: (0..n)
            .filter(|&j| !kept[j])
            .map(|j| rels[j].binding.clone())
            .collect(),
    })
}
