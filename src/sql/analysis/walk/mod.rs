//! The AST walk that fills [`Facts`]: one pass over the statement, one [`SelectScope`] per
//! SELECT block, join equalities resolved to the tables behind their aliases.
//!
//! [`from`] binds FROM lists and resolves joins; [`expr`] walks expressions.

mod expr;
mod from;

use std::collections::HashSet;

use sqlparser::ast::{
    Distinct, Expr, FromTable, GroupByExpr, JoinConstraint, LimitClause, OrderByKind, Query,
    Select, SelectItem, SetExpr, Statement, TableFactor, TableObject, TableWithJoins,
    UpdateTableFromKind,
};

use super::ast::ident_name;
use super::scope::{Level, Scopes, table_ref};
use super::{Facts, JoinKind, SelectScope, StatementKind, TableRef};
use expr::{is_null, is_random_call};

pub(super) fn facts_of(statement: &Statement) -> Facts {
    let mut w = Walker::default();
    let kind = match statement {
        Statement::Query(q) => {
            w.query(q, true);
            StatementKind::Select
        }
        Statement::Insert(insert) => {
            if let TableObject::TableName(name) = &insert.table {
                w.written.extend(table_ref(name));
            }
            if let Some(source) = &insert.source {
                w.query(source, false);
            }
            StatementKind::Insert
        }
        Statement::Update(update) => {
            w.facts_where = update.selection.is_some();
            let mut items: Vec<&TableWithJoins> = vec![&update.table];
            if let Some(
                UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
            ) = &update.from
            {
                items.extend(from.iter());
            }
            if let TableFactor::Table { name, .. } = &update.table.relation {
                w.written.extend(table_ref(name));
            }
            w.dml_block(&items, update.selection.as_ref());
            StatementKind::Update
        }
        Statement::Delete(delete) => {
            w.facts_where = delete.selection.is_some();
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = &delete.from;
            for item in from {
                if let TableFactor::Table { name, .. } = &item.relation {
                    w.written.extend(table_ref(name));
                }
            }
            let mut items: Vec<&TableWithJoins> = from.iter().collect();
            if let Some(using) = &delete.using {
                items.extend(using.iter());
            }
            w.dml_block(&items, delete.selection.as_ref());
            StatementKind::Delete
        }
        Statement::Merge(_) => StatementKind::Merge,
        _ => StatementKind::Other,
    };
    w.finish(kind)
}

/// A join found while binding a FROM list, resolved once all relations of the level are bound.
struct PendingJoin<'a> {
    kind: JoinKind,
    table: Option<TableRef>,
    /// Bindings of the relation this join adds.
    joined: Vec<String>,
    constraint: Option<&'a JoinConstraint>,
    lateral: bool,
    /// Both sides are plain tables (a CROSS JOIN of two tables is a cartesian product).
    both_tables: bool,
}

/// Deepest expression nesting walked (AND/OR chains excepted, see [`Walker::expr`]).
const MAX_EXPR_DEPTH: usize = 128;

#[derive(Default)]
struct Walker {
    depth: usize,
    scopes: Scopes,
    blocks: Vec<SelectScope>,
    current: Option<usize>,
    read: Vec<TableRef>,
    written: Vec<TableRef>,
    facts_where: bool,
    limit: bool,
    offset: bool,
    order_by: bool,
    order_by_random: bool,
    not_in_subquery: bool,
    function_on_column_in_where: bool,
    cartesian_join: bool,
    select_star: bool,
    has_like: bool,
    has_in_list: bool,
}

impl Walker {
    fn finish(mut self, statement: StatementKind) -> Facts {
        self.read.sort();
        self.read.dedup();
        self.written.sort();
        self.written.dedup();
        Facts {
            statement,
            tables_read: self.read,
            tables_written: self.written,
            scopes: self.blocks,
            where_present: self.facts_where,
            limit: self.limit,
            offset: self.offset,
            order_by: self.order_by,
            order_by_random: self.order_by_random,
            not_in_subquery: self.not_in_subquery,
            function_on_column_in_where: self.function_on_column_in_where,
            cartesian_join: self.cartesian_join,
            select_star: self.select_star,
            has_like: self.has_like,
            has_in_list: self.has_in_list,
        }
    }

    /// Walks a query; returns the index of its first SELECT block, if it has one.
    fn query(&mut self, query: &Query, top: bool) -> Option<usize> {
        let mut names = HashSet::new();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                names.insert(ident_name(&cte.alias.name));
            }
        }
        self.scopes.ctes.push(names);
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.query(&cte.query, false);
            }
        }
        let first = self.set_expr(&query.body, top);
        if let Some(order_by) = &query.order_by {
            if top {
                self.order_by = true;
            }
            if let OrderByKind::Expressions(exprs) = &order_by.kind {
                for item in exprs {
                    if is_random_call(&item.expr) {
                        self.order_by_random = true;
                    }
                    self.expr(&item.expr, false);
                }
            }
        }
        if top {
            match &query.limit_clause {
                Some(LimitClause::LimitOffset { limit, offset, .. }) => {
                    // `LIMIT ALL` and `LIMIT NULL` are no limit at all.
                    self.limit = limit.as_ref().is_some_and(|l| !is_null(l));
                    self.offset = offset.is_some();
                }
                Some(LimitClause::OffsetCommaLimit { .. }) => {
                    self.limit = true;
                    self.offset = true;
                }
                None => {}
            }
            if query.fetch.is_some() {
                self.limit = true;
            }
        }
        self.scopes.ctes.pop();
        first
    }

    fn set_expr(&mut self, body: &SetExpr, top: bool) -> Option<usize> {
        match body {
            SetExpr::Select(select) => Some(self.select(select, top)),
            SetExpr::Query(query) => self.query(query, top),
            SetExpr::SetOperation { left, right, .. } => {
                let first = self.set_expr(left, top);
                self.set_expr(right, top);
                first
            }
            SetExpr::Values(values) => {
                for row in &values.rows {
                    for e in row.iter() {
                        self.expr(e, false);
                    }
                }
                None
            }
            _ => None,
        }
    }

    fn select(&mut self, select: &Select, top: bool) -> usize {
        let index = self.blocks.len();
        let mut block = SelectScope::default();
        match &select.distinct {
            Some(Distinct::Distinct) => block.distinct = true,
            Some(Distinct::On(_)) => {
                block.distinct = true;
                block.distinct_on = true;
            }
            _ => {}
        }
        block.group_by = match &select.group_by {
            GroupByExpr::All(_) => true,
            GroupByExpr::Expressions(exprs, _) => !exprs.is_empty(),
        };
        self.blocks.push(block);
        let saved = self.current.replace(index);
        if top {
            self.facts_where |= select.selection.is_some();
            self.select_star |= select.projection.iter().any(|item| {
                matches!(
                    item,
                    SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
                )
            });
        }
        let items: Vec<&TableWithJoins> = select.from.iter().collect();
        self.block_body(index, &items, select.selection.as_ref(), |w| {
            for item in &select.projection {
                match item {
                    SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                        w.expr(e, false)
                    }
                    _ => {}
                }
            }
            if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
                for e in exprs {
                    w.expr(e, false);
                }
            }
            if let Some(having) = &select.having {
                w.expr(having, false);
            }
        });
        self.current = saved;
        index
    }

    /// UPDATE/DELETE: the target and its FROM/USING list form one level, like a SELECT block.
    fn dml_block(&mut self, items: &[&TableWithJoins], selection: Option<&Expr>) {
        let index = self.blocks.len();
        self.blocks.push(SelectScope::default());
        let saved = self.current.replace(index);
        self.block_body(index, items, selection, |_| {});
        self.current = saved;
    }

    /// Binds a FROM list, resolves its joins, walks WHERE and the rest (`more`), and works out
    /// implicit joins and cartesian products among the comma-separated items.
    fn block_body(
        &mut self,
        index: usize,
        items: &[&TableWithJoins],
        selection: Option<&Expr>,
        more: impl FnOnce(&mut Self),
    ) {
        let mut level = Level::default();
        let mut pending = Vec::new();
        // Which comma-separated item each binding came from, for implicit joins.
        let mut item_of: Vec<(String, usize, Option<TableRef>, bool)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let start = level.bindings.len();
            let plain = self.bind_item(item, &mut level, &mut pending, index);
            for b in &level.bindings[start..] {
                item_of.push((b.key.clone(), i, b.table.clone(), plain));
            }
        }
        self.scopes.levels.push(level);
        for join in pending {
            self.resolve_join(index, join);
        }
        if let Some(selection) = selection {
            self.expr(selection, true);
            if items.len() > 1 {
                self.implicit_joins(index, items.len(), &item_of, selection);
            }
        } else if items.len() > 1 && item_of.iter().filter(|(.., plain)| *plain).count() > 1 {
            self.cartesian_join = true;
        }
        more(self);
        self.scopes.levels.pop();
    }
}
