//! Comparing the results of an original statement and its rewrite (shadow verification).
//!
//! Rows are compared in order only when the original's ORDER BY is *total* (it ends in a NOT
//! NULL unique key of the one relation the rows come from): otherwise the server may return
//! ties in any order, and the comparison is of multisets. Under a LIMIT that was reached (or
//! an OFFSET) without a total order, the two statements may legitimately keep different ties:
//! equal row counts with different rows prove nothing there, and the verdict is
//! "unverifiable", never a false alarm. Different row counts are always a mismatch: equivalent
//! statements return the same number of rows whatever ties they keep.

use sqlparser::ast::{
    Expr, OrderByKind, SelectItem, SetExpr, Statement, TableFactor, TableWithJoins,
};

use crate::rules::catalog::Snapshot;
use crate::sql::analysis::{TableRef, parse_one};

/// One result row: each column's bytes, `None` for NULL.
pub type Row = Vec<Option<Vec<u8>>>;

/// What the original's ORDER BY and LIMIT allow to conclude.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderCheck {
    /// ORDER BY ends in a NOT NULL unique key: row order is fully determined.
    pub total: bool,
    /// LIMIT, OFFSET or FETCH: which ties survive is not determined without a total order.
    pub limited: bool,
    /// The LIMIT when it is a plain number and there is no OFFSET: a result shorter than it
    /// was not cut, so its rows are all the rows.
    pub limit: Option<u64>,
}

/// The comparison's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// Why, without any value (row counts and positions only).
    Mismatch(String),
    Unverifiable(String),
}

/// Reads the ORDER BY and LIMIT of a statement's text (its normalized form will do).
pub fn order_check(sql: &str, schema: Option<&Snapshot>) -> OrderCheck {
    let Ok(Statement::Query(query)) = parse_one(sql) else {
        return OrderCheck {
            total: false,
            limited: true,
            limit: None,
        };
    };
    let limited = query.limit_clause.is_some() || query.fetch.is_some();
    let limit = match &query.limit_clause {
        Some(sqlparser::ast::LimitClause::LimitOffset {
            limit: Some(Expr::Value(value)),
            offset: None,
            ..
        }) if query.fetch.is_none() => match &value.value {
            sqlparser::ast::Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        _ => None,
    };
    let total = (|| {
        let schema = schema?;
        let SetExpr::Select(select) = query.body.as_ref() else {
            return None;
        };
        let [TableWithJoins { relation, joins }] = select.from.as_slice() else {
            return None;
        };
        let TableFactor::Table { name, alias, .. } = relation else {
            return None;
        };
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(fold)
            .collect();
        let table = match parts.as_slice() {
            [name] => TableRef {
                schema: None,
                name: name.clone(),
            },
            [schema, name] => TableRef {
                schema: Some(schema.clone()),
                name: name.clone(),
            },
            _ => return None,
        };
        let binding = alias
            .as_ref()
            .map(|a| fold(&a.name))
            .unwrap_or_else(|| table.name.clone());
        let info = schema.table(&table)?;
        // With joins, rows of one key are one row only if every output column is the base
        // relation's: then ties on the key are identical rows.
        if !joins.is_empty() {
            let own_columns = select.projection.iter().all(|item| match item {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    column_of(e, &binding).is_some()
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    kind.to_string().eq_ignore_ascii_case(&binding)
                }
                _ => false,
            });
            if !own_columns || select.distinct.is_none() {
                return None;
            }
        }
        let order = query.order_by.as_ref()?;
        let OrderByKind::Expressions(exprs) = &order.kind else {
            return None;
        };
        let columns: Vec<String> = exprs
            .iter()
            .filter_map(|o| column_of(&o.expr, &binding))
            .collect();
        let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
        info.has_not_null_key(&refs).then_some(())
    })()
    .is_some();
    OrderCheck {
        total,
        limited,
        limit,
    }
}

/// Unquoted identifiers fold to lower case, as PostgreSQL resolves them.
fn fold(ident: &sqlparser::ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The column name when `expr` is a column of `binding` (qualified, or unqualified).
fn column_of(expr: &Expr, binding: &str) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(fold(ident)),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [qualifier, column] if fold(qualifier) == binding => Some(fold(column)),
            _ => None,
        },
        Expr::Nested(inner) => column_of(inner, binding),
        _ => None,
    }
}

/// Compares two results under what `order` allows.
pub fn compare(original: &[Row], rewritten: &[Row], order: OrderCheck) -> Verdict {
    if original == rewritten {
        return Verdict::Match;
    }
    let sorted = |rows: &[Row]| {
        let mut rows = rows.to_vec();
        rows.sort();
        rows
    };
    if order.total {
        return Verdict::Mismatch(first_difference(original, rewritten));
    }
    if sorted(original) == sorted(rewritten) {
        return Verdict::Match;
    }
    if original.len() != rewritten.len() {
        return Verdict::Mismatch(format!(
            "{} rows in the original, {} in the rewrite",
            original.len(),
            rewritten.len()
        ));
    }
    let cut = order.limited
        && order
            .limit
            .is_none_or(|limit| original.len() as u64 >= limit);
    if cut {
        return Verdict::Unverifiable(
            "a LIMIT or OFFSET under an ORDER BY that is not total: the two may keep different ties"
                .into(),
        );
    }
    Verdict::Mismatch(format!(
        "same number of rows ({}), different values",
        original.len()
    ))
}

fn first_difference(original: &[Row], rewritten: &[Row]) -> String {
    if original.len() != rewritten.len() {
        return format!(
            "{} rows in the original, {} in the rewrite",
            original.len(),
            rewritten.len()
        );
    }
    let at = original
        .iter()
        .zip(rewritten)
        .position(|(a, b)| a != b)
        .unwrap_or(0);
    format!(
        "row {} of {} differs (the order is total, so rows must match in order)",
        at + 1,
        original.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::catalog::{Column, TableInfo};

    fn row(values: &[&str]) -> Row {
        values.iter().map(|v| Some(v.as_bytes().to_vec())).collect()
    }

    fn schema() -> Snapshot {
        let mut s = Snapshot::default();
        s.tables.insert(
            ("public".into(), "orders".into()),
            TableInfo {
                unique_keys: vec![vec!["id".into()]],
                columns: vec![
                    Column {
                        name: "id".into(),
                        not_null: true,
                    },
                    Column {
                        name: "created_at".into(),
                        not_null: false,
                    },
                ],
                ..TableInfo::default()
            },
        );
        s
    }

    #[test]
    fn totality_needs_a_not_null_key_at_the_end_of_the_order() {
        let s = schema();
        let total = |sql: &str| order_check(sql, Some(&s)).total;
        assert!(total(
            "SELECT o.id FROM orders o ORDER BY o.created_at DESC, o.id LIMIT 5"
        ));
        assert!(!total(
            "SELECT o.id FROM orders o ORDER BY o.created_at DESC LIMIT 5"
        ));
        assert!(total(
            "SELECT DISTINCT o.id FROM orders o JOIN items i ON i.order_id = o.id ORDER BY o.id"
        ));
        // A child column in the output: one key, several rows.
        assert!(!total(
            "SELECT o.id, i.sku FROM orders o JOIN items i ON i.order_id = o.id ORDER BY o.id"
        ));
        let check = order_check("SELECT 1 FROM orders LIMIT 7", Some(&s));
        assert!(check.limited);
        assert_eq!(check.limit, Some(7));
        assert_eq!(
            order_check("SELECT 1 FROM orders LIMIT 7 OFFSET 2", Some(&s)).limit,
            None
        );
    }

    #[test]
    fn verdicts() {
        let a = vec![row(&["1"]), row(&["2"])];
        let b = vec![row(&["2"]), row(&["1"])];
        let c = vec![row(&["1"]), row(&["3"])];
        let loose = OrderCheck::default();
        let total = OrderCheck {
            total: true,
            limited: true,
            limit: Some(2),
        };
        let reached = OrderCheck {
            total: false,
            limited: true,
            limit: Some(2),
        };
        let not_reached = OrderCheck {
            limit: Some(10),
            ..reached
        };
        assert_eq!(compare(&a, &a, total), Verdict::Match);
        assert_eq!(compare(&a, &b, loose), Verdict::Match);
        assert!(matches!(compare(&a, &b, total), Verdict::Mismatch(_)));
        assert!(matches!(compare(&a, &c, loose), Verdict::Mismatch(_)));
        // Two rows kept of more: maybe other ties.
        assert!(matches!(compare(&a, &c, reached), Verdict::Unverifiable(_)));
        // The limit was not reached: these are all the rows, and they differ.
        assert!(matches!(compare(&a, &c, not_reached), Verdict::Mismatch(_)));
        // Counts never differ between equivalent statements.
        assert!(matches!(
            compare(&a, &c[..1], reached),
            Verdict::Mismatch(_)
        ));
    }
}
