//! Expressions: predicates, aggregates, subqueries in expressions, and the WHERE-level facts
//! (NOT IN subquery, functions on columns, IN lists, LIKE).

use sqlparser::ast::{
    BinaryOperator, DuplicateTreatment, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, InTarget, UnaryOperator,
};

use super::super::ast::{AGGREGATES, function_name, name_parts};
use super::{MAX_EXPR_DEPTH, Walker};

impl Walker {
    /// Walks an expression. AND/OR chains (left-deep in the AST, thousands of terms long when
    /// an ORM builds `a = 1 OR a = 2 OR …`) are walked with an explicit stack; any other
    /// nesting deeper than [`MAX_EXPR_DEPTH`] is left unanalysed rather than risking the stack.
    pub(super) fn expr(&mut self, e: &Expr, in_where: bool) {
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

    pub(super) fn expr_node(&mut self, e: &Expr, in_where: bool) {
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
    pub(super) fn comparison_operand(&mut self, e: &Expr, in_where: bool) {
        if in_where && let Expr::Function(f) = strip(e) {
            let args = function_args(f);
            if args.iter().any(|a| self.column(a).is_some()) {
                self.function_on_column_in_where = true;
            }
        }
    }

    pub(super) fn function(&mut self, f: &Function, in_where: bool) {
        let name = function_name(f);
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

pub(super) fn strip(e: &Expr) -> &Expr {
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

pub(super) fn is_random_call(e: &Expr) -> bool {
    match strip(e) {
        Expr::Function(f) => name_parts(&f.name)
            .last()
            .is_some_and(|n| n == "random" || n == "rand"),
        _ => false,
    }
}

pub(super) fn is_null(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Value(v) if matches!(v.value, sqlparser::ast::Value::Null)
    )
}
