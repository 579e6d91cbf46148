//! Name resolution while walking a statement: which alias or table a column qualifier means.
//!
//! PostgreSQL resolves `t.col` against the innermost query level first, then the enclosing
//! ones (correlated subqueries); an unqualified column is only resolvable here when its level
//! has exactly one relation (we do not know the catalog's column lists at this point).

use std::collections::HashSet;

use sqlparser::ast::ObjectName;

use super::ast::name_parts;
use super::{ColumnRef, TableRef};

/// `schema.table` or `table` as a [`TableRef`]; the catalog part of `db.schema.table` is dropped.
pub(super) fn table_ref(name: &ObjectName) -> Option<TableRef> {
    let mut parts = name_parts(name);
    let table = parts.pop()?;
    Some(TableRef {
        schema: parts.pop(),
        name: table,
    })
}

/// One relation visible in a query level.
#[derive(Debug, Clone)]
pub(super) struct Binding {
    /// The alias, or the table name when there is none.
    pub key: String,
    /// The base table, when the relation is one (not a derived table, CTE or function).
    pub table: Option<TableRef>,
}

/// The relations of one query level.
#[derive(Debug, Default, Clone)]
pub(super) struct Level {
    pub bindings: Vec<Binding>,
}

impl Level {
    fn find(&self, qualifier: &[String]) -> Option<&Binding> {
        match qualifier {
            [name] => self.bindings.iter().find(|b| &b.key == name),
            // `schema.table.col`: only unaliased tables can be named like that.
            [schema, name] => self.bindings.iter().find(|b| {
                &b.key == name
                    && b.table
                        .as_ref()
                        .is_some_and(|t| t.schema.as_deref().is_none_or(|s| s == schema))
            }),
            _ => None,
        }
    }
}

/// The stack of query levels, innermost last, plus the CTE names in force.
#[derive(Debug, Default)]
pub(super) struct Scopes {
    pub levels: Vec<Level>,
    pub ctes: Vec<HashSet<String>>,
}

impl Scopes {
    /// Whether a one-part name refers to a CTE rather than a table.
    pub fn is_cte(&self, name: &ObjectName) -> bool {
        let parts = name_parts(name);
        parts.len() == 1 && self.ctes.iter().any(|set| set.contains(&parts[0]))
    }

    /// Resolves a column given as identifier parts (`col`, `t.col`, `s.t.col`).
    pub fn column(&self, parts: &[String]) -> Option<ColumnRef> {
        let (column, qualifier) = parts.split_last()?;
        let binding = if qualifier.is_empty() {
            // Unqualified: resolvable only against a single-relation innermost level.
            match self.levels.last().map(|l| l.bindings.as_slice()) {
                Some([only]) => Some(only),
                _ => None,
            }
        } else {
            self.levels
                .iter()
                .rev()
                .find_map(|level| level.find(qualifier))
        };
        Some(ColumnRef {
            binding: binding.map(|b| b.key.clone()),
            table: binding.and_then(|b| b.table.clone()),
            column: column.clone(),
        })
    }
}
