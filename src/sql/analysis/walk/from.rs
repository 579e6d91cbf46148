//! FROM lists: bindings, explicit joins with their equality pairs, implicit joins and
//! cartesian products.

use std::collections::HashSet;

use sqlparser::ast::{
    BinaryOperator, Expr, Join, JoinConstraint, JoinOperator, TableFactor, TableWithJoins,
};

use super::super::ast::{conjuncts, ident_name, name_parts};
use super::super::scope::{Binding, Level, table_ref};
use super::super::{ColumnRef, JoinFact, JoinKind, TableRef};
use super::expr::strip;
use super::{PendingJoin, Walker};

impl Walker {
    /// Binds one comma-separated FROM item and its joins; returns whether it is a plain table.
    pub(super) fn bind_item<'a>(
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

    pub(super) fn bind_join<'a>(
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
    pub(super) fn bind_factor<'a>(
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

    pub(super) fn resolve_join(&mut self, block: usize, join: PendingJoin<'_>) {
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
    pub(super) fn implicit_joins(
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

    pub(super) fn column_equality(&self, e: &Expr) -> Option<(ColumnRef, ColumnRef)> {
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
    pub(super) fn column_equals_constant(&self, e: &Expr) -> Option<ColumnRef> {
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

    pub(super) fn column_comparison(&self, e: &Expr) -> Option<(ColumnRef, ColumnRef)> {
        match e {
            Expr::BinaryOp { left, right, .. } => Some((self.column(left)?, self.column(right)?)),
            _ => None,
        }
    }

    /// A column reference, seen through parentheses and casts (`("t"."id")`, `"t"."x"::text`).
    pub(super) fn column(&self, e: &Expr) -> Option<ColumnRef> {
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
}

pub(super) fn join_kind(op: &JoinOperator) -> (JoinKind, Option<&JoinConstraint>) {
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
