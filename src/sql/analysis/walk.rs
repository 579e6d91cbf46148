//! The AST walk that fills [`Facts`]: one pass over the statement, one [`SelectScope`] per
//! SELECT block, join equalities resolved to the tables behind their aliases.

use std::collections::HashSet;

use sqlparser::ast::UnaryOperator;
use sqlparser::ast::{
    BinaryOperator, Distinct, DuplicateTreatment, Expr, FromTable, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, GroupByExpr, InTarget, Join, JoinConstraint, JoinOperator,
    LimitClause, OrderByKind, Query, Select, SelectItem, SetExpr, Statement, TableFactor,
    TableObject, TableWithJoins, UpdateTableFromKind,
};

use super::scope::{Binding, Level, Scopes, ident_name, name_parts, table_ref};
use super::{ColumnRef, Facts, JoinFact, JoinKind, SelectScope, StatementKind, TableRef};

/// Aggregate functions PostgreSQL ships (window calls with OVER are not aggregates here).
const AGGREGATES: &[&str] = &[
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

    /// Binds one comma-separated FROM item and its joins; returns whether it is a plain table.
    fn bind_item<'a>(
        &mut self,
        item: &'a TableWithJoins,
        level: &mut Level,
        pending: &mut Vec<PendingJoin<'a>>,
        block: usize,
    ) -> bool {
        let plain = self.bind_factor(&item.relation, level, pending, block);
        let mut left_plain = plain;
        for join in &item.joins {
            left_plain &= self.bind_join(join, level, pending, block, left_plain);
        }
        plain && item.joins.is_empty()
    }

    fn bind_join<'a>(
        &mut self,
        join: &'a Join,
        level: &mut Level,
        pending: &mut Vec<PendingJoin<'a>>,
        block: usize,
        left_plain: bool,
    ) -> bool {
        let start = level.bindings.len();
        let plain = self.bind_factor(&join.relation, level, pending, block);
        let joined: Vec<String> = level.bindings[start..]
            .iter()
            .map(|b| b.key.clone())
            .collect();
        let table = match &join.relation {
            TableFactor::Table {
                name, args: None, ..
            } if !self.scopes.is_cte(name) => table_ref(name),
            _ => None,
        };
        let (kind, constraint) = join_kind(&join.join_operator);
        let lateral = matches!(
            &join.relation,
            TableFactor::Derived { lateral: true, .. }
                | TableFactor::Function { lateral: true, .. }
        ) || matches!(&join.relation, TableFactor::Table { args: Some(_), .. });
        pending.push(PendingJoin {
            kind,
            table,
            joined,
            constraint,
            lateral,
            both_tables: plain && left_plain,
        });
        plain
    }

    /// Adds the bindings of one relation; returns whether it is a plain (non-CTE) table.
    fn bind_factor<'a>(
        &mut self,
        factor: &'a TableFactor,
        level: &mut Level,
        pending: &mut Vec<PendingJoin<'a>>,
        block: usize,
    ) -> bool {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let cte = self.scopes.is_cte(name);
                let table = if cte || args.is_some() {
                    None
                } else {
                    table_ref(name)
                };
                if let Some(t) = &table {
                    self.read.push(t.clone());
                }
                let key = match alias {
                    Some(alias) => ident_name(&alias.name),
                    None => name_parts(name).pop().unwrap_or_default(),
                };
                let plain = table.is_some();
                level.bindings.push(Binding { key, table });
                plain
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                // Correlation of LATERAL subqueries is resolved against the bindings so far.
                self.scopes.levels.push(level.clone());
                let inner = self.query(subquery, false);
                self.scopes.levels.pop();
                if let (Some(inner), Some(block)) = (inner, self.blocks.get_mut(block)) {
                    block.derived.push(inner);
                }
                if let Some(alias) = alias {
                    level.bindings.push(Binding {
                        key: ident_name(&alias.name),
                        table: None,
                    });
                }
                false
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.bind_item(table_with_joins, level, pending, block);
                false
            }
            TableFactor::Function { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::UNNEST { alias, .. } => {
                if let Some(alias) = alias {
                    level.bindings.push(Binding {
                        key: ident_name(&alias.name),
                        table: None,
                    });
                }
                false
            }
            _ => false,
        }
    }

    fn resolve_join(&mut self, block: usize, join: PendingJoin<'_>) {
        let mut pairs = Vec::new();
        let mut fixed = Vec::new();
        match join.constraint {
            Some(JoinConstraint::On(on)) => {
                for conjunct in conjuncts(on) {
                    if let Some(column) = self.column_equals_constant(conjunct)
                        && column
                            .binding
                            .as_ref()
                            .is_some_and(|k| join.joined.contains(k))
                    {
                        fixed.push(column);
                        continue;
                    }
                    if let Some((a, b)) = self.column_equality(conjunct) {
                        let a_joined = a.binding.as_ref().is_some_and(|k| join.joined.contains(k));
                        let b_joined = b.binding.as_ref().is_some_and(|k| join.joined.contains(k));
                        match (a_joined, b_joined) {
                            (false, true) => pairs.push((a, b)),
                            (true, false) => pairs.push((b, a)),
                            _ => {}
                        }
                    }
                }
                self.expr(on, false);
            }
            Some(JoinConstraint::Using(columns) | JoinConstraint::UsingAlias(columns, _)) => {
                let binding = join.joined.first().cloned();
                for column in columns {
                    if let Some(column) = name_parts(column).pop() {
                        let outer = ColumnRef {
                            binding: None,
                            table: None,
                            column: column.clone(),
                        };
                        let joined = ColumnRef {
                            binding: binding.clone(),
                            table: join.table.clone(),
                            column,
                        };
                        pairs.push((outer, joined));
                    }
                }
            }
            _ => {}
        }
        if join.kind == JoinKind::Right {
            // The preserved side of a RIGHT join is the new relation; the earlier rows repeat.
            pairs = pairs.into_iter().map(|(a, b)| (b, a)).collect();
        }
        let no_predicate = matches!(join.constraint, None | Some(JoinConstraint::None));
        if no_predicate && join.both_tables && !join.lateral {
            self.cartesian_join = true;
        }
        if let Some(block) = self.blocks.get_mut(block) {
            block.joins.push(JoinFact {
                kind: join.kind,
                table: join.table,
                pairs,
                fixed,
                lateral: join.lateral,
            });
        }
    }

    /// `FROM a, b WHERE a.x = b.y`: records the equalities as joins and flags plain tables
    /// that no equality connects (a cartesian product).
    fn implicit_joins(
        &mut self,
        block: usize,
        items: usize,
        item_of: &[(String, usize, Option<TableRef>, bool)],
        selection: &Expr,
    ) {
        let item = |c: &ColumnRef| {
            let key = c.binding.as_ref()?;
            item_of
                .iter()
                .find(|(k, ..)| k == key)
                .map(|(_, i, t, _)| (*i, t.clone()))
        };
        let mut parent: Vec<usize> = (0..items).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        let mut joins = Vec::new();
        for conjunct in conjuncts(selection) {
            // Any predicate touching two items links them, equality or not.
            let Some((a, b)) = self.column_comparison(conjunct) else {
                continue;
            };
            let (Some((ia, _)), Some((ib, tb))) = (item(&a), item(&b)) else {
                continue;
            };
            if ia == ib {
                continue;
            }
            let (ra, rb) = (root(&mut parent, ia), root(&mut parent, ib));
            parent[ra] = rb;
            if matches!(
                conjunct,
                Expr::BinaryOp {
                    op: BinaryOperator::Eq,
                    ..
                }
            ) {
                let (outer, joined, table) = if ia < ib {
                    (a, b, tb)
                } else {
                    let ta = item(&a).and_then(|(_, t)| t);
                    (b, a, ta)
                };
                joins.push(JoinFact {
                    kind: JoinKind::Implicit,
                    table,
                    pairs: vec![(outer, joined)],
                    fixed: Vec::new(),
                    lateral: false,
                });
            }
        }
        let plain_items: HashSet<usize> = item_of
            .iter()
            .filter(|(.., plain)| *plain)
            .map(|(_, i, ..)| *i)
            .collect();
        let roots: HashSet<usize> = plain_items.iter().map(|&i| root(&mut parent, i)).collect();
        if roots.len() > 1 {
            self.cartesian_join = true;
        }
        if let Some(block) = self.blocks.get_mut(block) {
            block.joins.extend(joins);
        }
    }

    fn column_equality(&self, e: &Expr) -> Option<(ColumnRef, ColumnRef)> {
        match e {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => Some((self.column(left)?, self.column(right)?)),
            _ => None,
        }
    }

    /// `col = constant` (literal or `$n`), either way round.
    fn column_equals_constant(&self, e: &Expr) -> Option<ColumnRef> {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = e
        else {
            return None;
        };
        match (strip(left), strip(right)) {
            (Expr::Value(_), other) | (other, Expr::Value(_)) => self.column(other),
            _ => None,
        }
    }

    fn column_comparison(&self, e: &Expr) -> Option<(ColumnRef, ColumnRef)> {
        match e {
            Expr::BinaryOp { left, right, .. } => Some((self.column(left)?, self.column(right)?)),
            _ => None,
        }
    }

    /// A column reference, seen through parentheses and casts (`("t"."id")`, `"t"."x"::text`).
    fn column(&self, e: &Expr) -> Option<ColumnRef> {
        match e {
            Expr::Identifier(ident) => self.scopes.column(&[ident_name(ident)]),
            Expr::CompoundIdentifier(parts) => {
                let parts: Vec<String> = parts.iter().map(ident_name).collect();
                self.scopes.column(&parts)
            }
            Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => self.column(inner),
            _ => None,
        }
    }

    /// Walks an expression. AND/OR chains (left-deep in the AST, thousands of terms long when
    /// an ORM builds `a = 1 OR a = 2 OR …`) are walked with an explicit stack; any other
    /// nesting deeper than [`MAX_EXPR_DEPTH`] is left unanalysed rather than risking the stack.
    fn expr(&mut self, e: &Expr, in_where: bool) {
        if self.depth >= MAX_EXPR_DEPTH {
            return;
        }
        self.depth += 1;
        let mut stack = vec![e];
        while let Some(e) = stack.pop() {
            match e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And | BinaryOperator::Or,
                    right,
                } => {
                    stack.push(right);
                    stack.push(left);
                }
                Expr::Nested(inner)
                    if matches!(
                        inner.as_ref(),
                        Expr::BinaryOp {
                            op: BinaryOperator::And | BinaryOperator::Or,
                            ..
                        }
                    ) =>
                {
                    stack.push(inner)
                }
                other => self.expr_node(other, in_where),
            }
        }
        self.depth -= 1;
    }

    fn expr_node(&mut self, e: &Expr, in_where: bool) {
        match e {
            Expr::Function(f) => self.function(f, in_where),
            Expr::In {
                expr,
                target,
                negated,
                ..
            } => {
                self.comparison_operand(expr, in_where);
                self.expr(expr, in_where);
                match target {
                    InTarget::List(list) => {
                        self.has_in_list = true;
                        for item in list {
                            self.expr(item, in_where);
                        }
                    }
                    InTarget::Subquery(query) => {
                        self.not_in_subquery |= *negated;
                        self.query(query, false);
                    }
                    InTarget::Unnest(inner) => self.expr(inner, in_where),
                    InTarget::Table { .. } => {}
                }
            }
            Expr::Like { expr, pattern, .. } | Expr::ILike { expr, pattern, .. } => {
                self.has_like = true;
                self.comparison_operand(expr, in_where);
                self.expr(expr, in_where);
                self.expr(pattern, in_where);
            }
            Expr::BinaryOp { left, op, right } => {
                if is_comparison(op) {
                    self.comparison_operand(left, in_where);
                    self.comparison_operand(right, in_where);
                }
                self.expr(left, in_where);
                self.expr(right, in_where);
            }
            Expr::AnyOp { left, right, .. } | Expr::AllOp { left, right, .. } => {
                self.comparison_operand(left, in_where);
                self.expr(left, in_where);
                if matches!(right.as_ref(), Expr::Array(_)) {
                    self.has_in_list = true;
                }
                self.expr(right, in_where);
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.comparison_operand(expr, in_where);
                for e in [expr, low, high] {
                    self.expr(e, in_where);
                }
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => {
                self.query(subquery, false);
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: inner,
            } if matches!(
                strip(inner),
                Expr::In {
                    target: InTarget::Subquery(_),
                    negated: false,
                    ..
                }
            ) =>
            {
                // Django's exclude(): NOT (x IN (SELECT …)), the same NULL trap as NOT IN.
                self.not_in_subquery = true;
                self.expr(inner, in_where);
            }
            Expr::Nested(inner)
            | Expr::UnaryOp { expr: inner, .. }
            | Expr::Cast { expr: inner, .. }
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::IsTrue(inner)
            | Expr::IsFalse(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsNotFalse(inner)
            | Expr::Collate { expr: inner, .. }
            | Expr::AtTimeZone {
                timestamp: inner, ..
            } => self.expr(inner, in_where),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.expr(a, in_where);
                self.expr(b, in_where);
            }
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(op) = operand {
                    self.expr(op, in_where);
                }
                for when in conditions {
                    self.expr(&when.condition, in_where);
                    self.expr(&when.result, in_where);
                }
                if let Some(e) = else_result {
                    self.expr(e, in_where);
                }
            }
            Expr::Tuple(items) => {
                for item in items {
                    self.expr(item, in_where);
                }
            }
            Expr::Array(array) => {
                for item in &array.elem {
                    self.expr(item, in_where);
                }
            }
            _ => {}
        }
    }

    /// A comparison operand in a WHERE that applies a function to a column.
    fn comparison_operand(&mut self, e: &Expr, in_where: bool) {
        if in_where && let Expr::Function(f) = strip(e) {
            let args = function_args(f);
            if args.iter().any(|a| self.column(a).is_some()) {
                self.function_on_column_in_where = true;
            }
        }
    }

    fn function(&mut self, f: &Function, in_where: bool) {
        let name = name_parts(&f.name).pop().unwrap_or_default();
        if f.over.is_none()
            && AGGREGATES.contains(&name.as_str())
            && let Some(block) = self.current.and_then(|i| self.blocks.get_mut(i))
        {
            block.aggregate = true;
            if let FunctionArguments::List(list) = &f.args
                && list.duplicate_treatment == Some(DuplicateTreatment::Distinct)
            {
                block.aggregate_distinct = true;
            }
        }
        match &f.args {
            FunctionArguments::Subquery(query) => {
                self.query(query, false);
            }
            FunctionArguments::List(_) => {
                for arg in function_args(f) {
                    self.expr(arg, in_where);
                }
            }
            FunctionArguments::None => {}
        }
        if let Some(filter) = &f.filter {
            self.expr(filter, in_where);
        }
    }
}

fn join_kind(op: &JoinOperator) -> (JoinKind, Option<&JoinConstraint>) {
    match op {
        JoinOperator::Join(c) | JoinOperator::Inner(c) | JoinOperator::StraightJoin(c) => {
            (JoinKind::Inner, Some(c))
        }
        JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, Some(c)),
        JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (JoinKind::Right, Some(c)),
        JoinOperator::FullOuter(c) => (JoinKind::Full, Some(c)),
        JoinOperator::CrossJoin(c) => (JoinKind::Cross, Some(c)),
        JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c) => (JoinKind::Other, Some(c)),
        _ => (JoinKind::Other, None),
    }
}

/// The AND-ed parts of a predicate, parentheses removed.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
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
            Expr::Nested(inner) => stack.push(inner),
            other => out.push(other),
        }
    }
    out
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => strip(inner),
        other => other,
    }
}

fn function_args(f: &Function) -> Vec<&Expr> {
    match &f.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                | FunctionArg::Named {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                }
                | FunctionArg::ExprNamed {
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => Some(e),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

fn is_random_call(e: &Expr) -> bool {
    match strip(e) {
        Expr::Function(f) => name_parts(&f.name)
            .last()
            .is_some_and(|n| n == "random" || n == "rand"),
        _ => false,
    }
}

fn is_null(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Null)
    )
}
