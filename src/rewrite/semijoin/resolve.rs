//! Name resolution for the semi-join rewrite: the FROM list's relations and which of them
//! each column means.
//!
//! Moving a predicate into an EXISTS changes which relations are in scope around it, so every
//! column must be pinned to exactly one FROM relation *before* anything moves: a name that
//! could mean two things here might silently mean the other one there.

use std::collections::BTreeSet;

use sqlparser::ast::{
    Expr, Ident, Join, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, TableFactor,
    TableWithJoins,
};

use super::{NotProvable, np};
use crate::rules::catalog::{Snapshot, TableInfo};
use crate::sql::analysis::TableRef;
use crate::sql::analysis::ast::{ident_name, name_parts, strip_nested};

/// How a relation entered the FROM list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinKind {
    Base,
    Inner,
    Left,
}

/// One plain table of the top-level FROM list.
pub(super) struct Relation<'a> {
    /// The alias, or the table name when there is none: what columns are qualified with.
    pub binding: String,
    pub info: &'a TableInfo,
    pub kind: JoinKind,
    pub on: Option<&'a Expr>,
    pub factor: &'a TableFactor,
    pub join: Option<&'a Join>,
    /// With an alias the table name no longer qualifies columns (`orders.id` is an error).
    aliased: bool,
}

/// The table behind a FROM item, when it is a plain table (no function call, sample, hints or
/// column aliases, which would change what its columns are called).
fn plain_table(factor: &TableFactor) -> Result<(&ObjectName, Option<&Ident>), NotProvable> {
    match factor {
        TableFactor::Table {
            name,
            alias,
            args: None,
            with_hints,
            version: None,
            with_ordinality: false,
            partitions,
            json_path: None,
            sample: None,
            index_directives,
            inheritance: _,
        } if with_hints.is_empty() && partitions.is_empty() && index_directives.is_empty() => {
            match alias {
                Some(a) if !a.columns.is_empty() || a.at.is_some() => Err(np(format!(
                    "FROM item {factor} renames its columns; only plain tables are supported"
                ))),
                _ => Ok((name, alias.as_ref().map(|a| &a.name))),
            }
        }
        TableFactor::Derived { .. } => Err(np(format!(
            "FROM item {} is a derived table; only plain tables are supported",
            short(factor)
        ))),
        TableFactor::NestedJoin { .. } => Err(np(format!(
            "FROM item {} is a parenthesized join; only plain tables are supported",
            short(factor)
        ))),
        _ => Err(np(format!(
            "FROM item {} is not a plain table",
            short(factor)
        ))),
    }
}

/// `schema.table` or `table`; three-part names and computed parts are refused.
fn table_ref(name: &ObjectName) -> Result<TableRef, NotProvable> {
    let parts: Result<Vec<String>, NotProvable> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(ident) => Ok(ident_name(ident)),
            ObjectNamePart::Function(_) => Err(np(format!("table name {name} is computed"))),
        })
        .collect();
    match parts?.as_slice() {
        [table] => Ok(TableRef {
            schema: None,
            name: table.clone(),
        }),
        [schema, table] => Ok(TableRef {
            schema: Some(schema.clone()),
            name: table.clone(),
        }),
        _ => Err(np(format!(
            "table name {name} has a database part; not supported"
        ))),
    }
}

/// A plain table's binding and catalog entry; unknown tables (and views, which the snapshot
/// does not list) are refused because nothing about their keys or columns is known.
pub(super) fn bind_table<'a>(
    factor: &'a TableFactor,
    schema: &'a Snapshot,
) -> Result<(String, &'a TableInfo, bool), NotProvable> {
    let (name, alias) = plain_table(factor)?;
    let table = table_ref(name)?;
    if table.schema.is_none() {
        // The session's search_path picks among same-named tables, and pgshape cannot see it:
        // proving keys of the wrong one would prove nothing.
        let schemas = schema.schemas_of(&table.name);
        if schemas.len() > 1 {
            return Err(np(format!(
                "table {} exists in schemas {}: the session's search_path decides which one an \
                 unqualified name means; qualify it",
                table.name,
                schemas.join(", ")
            )));
        }
    }
    let info = schema
        .table(&table)
        .ok_or_else(|| np(format!("table {table} is not in the catalog snapshot")))?;
    Ok(match alias {
        Some(alias) => (ident_name(alias), info, true),
        None => (table.name, info, false),
    })
}

/// The relations of a FROM list of exactly one plain-table join tree with INNER/LEFT joins.
pub(super) fn relations<'a>(
    from: &'a [TableWithJoins],
    schema: &'a Snapshot,
) -> Result<Vec<Relation<'a>>, NotProvable> {
    let item = match from {
        [item] => item,
        [] => return Err(np("the query has no FROM clause")),
        _ => {
            return Err(np(
                "the FROM list has several comma-separated items (an implicit join); \
                 only explicit JOIN … ON is supported",
            ));
        }
    };
    let (binding, info, aliased) = bind_table(&item.relation, schema)?;
    let mut rels = vec![Relation {
        binding,
        info,
        kind: JoinKind::Base,
        on: None,
        factor: &item.relation,
        join: None,
        aliased,
    }];
    for join in &item.joins {
        let target = short(&join.relation);
        let (kind, constraint) = match &join.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
            JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
                return Err(np(format!("RIGHT JOIN to {target} is not supported")));
            }
            JoinOperator::FullOuter(_) => {
                return Err(np(format!("FULL JOIN to {target} is not supported")));
            }
            JoinOperator::CrossJoin(_) => {
                return Err(np(format!("CROSS JOIN to {target} is not supported")));
            }
            _ => return Err(np(format!("the join to {target} is not INNER or LEFT"))),
        };
        let on = match constraint {
            JoinConstraint::On(e) => e,
            JoinConstraint::Natural => {
                return Err(np(format!("NATURAL JOIN to {target} is not supported")));
            }
            JoinConstraint::Using(_) | JoinConstraint::UsingAlias(..) => {
                return Err(np(format!("JOIN … USING to {target} is not supported")));
            }
            JoinConstraint::None => {
                return Err(np(format!("the join to {target} has no ON condition")));
            }
        };
        if join.global {
            return Err(np(format!("GLOBAL JOIN to {target} is not supported")));
        }
        let (binding, info, aliased) = bind_table(&join.relation, schema)?;
        rels.push(Relation {
            binding,
            info,
            kind,
            on: Some(on),
            factor: &join.relation,
            join: Some(join),
            aliased,
        });
    }
    for (i, r) in rels.iter().enumerate() {
        if rels[..i].iter().any(|o| o.binding == r.binding) {
            return Err(np(format!("the name {} is bound twice in FROM", r.binding)));
        }
    }
    Ok(rels)
}

/// A short rendering of an AST node for messages.
pub(super) fn short(node: &impl std::fmt::Display) -> String {
    let text = node.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// Resolves columns of the top-level FROM list.
pub(super) struct Resolver<'r, 'a> {
    pub rels: &'r [Relation<'a>],
    pub schema: &'a Snapshot,
}

impl<'r, 'a> Resolver<'r, 'a> {
    /// The relations `e` references (columns, outer references from subqueries), after
    /// checking every column resolves, every call is safe, and subqueries only where `place`
    /// allows them (`subqueries`).
    pub fn refs(
        &self,
        e: &Expr,
        place: &str,
        subqueries: bool,
    ) -> Result<BTreeSet<usize>, NotProvable> {
        super::vet::refs(self, e, place, subqueries)
    }

    /// The relation and column of a bare column reference (parentheses allowed), if `e` is one
    /// that resolves.
    pub fn bare_column(&self, e: &Expr) -> Option<(usize, String)> {
        let parts: &[Ident] = match strip_nested(e) {
            Expr::Identifier(id) => std::slice::from_ref(id),
            Expr::CompoundIdentifier(parts) => parts,
            _ => return None,
        };
        let names: Vec<String> = parts.iter().map(ident_name).collect();
        let rel = self.column(&names, "").ok()?;
        Some((rel, names.last()?.clone()))
    }

    /// The relation a `q.*` item names.
    pub fn wildcard(&self, name: &ObjectName) -> Result<usize, NotProvable> {
        let mut parts = name_parts(name);
        let binding = parts.pop().unwrap_or_default();
        let rel = match parts.as_slice() {
            [] => self.rels.iter().position(|r| r.binding == binding),
            [schema] => self.schema_qualified(schema, &binding),
            _ => None,
        };
        rel.ok_or_else(|| np(format!("{name}.* does not name a relation in FROM")))
    }

    fn schema_qualified(&self, schema: &str, table: &str) -> Option<usize> {
        let info = self.schema.table(&TableRef {
            schema: Some(schema.to_owned()),
            name: table.to_owned(),
        })?;
        self.rels
            .iter()
            .position(|r| !r.aliased && r.binding == table && std::ptr::eq(r.info, info))
    }

    /// Resolves `col`, `q.col` or `schema.table.col` to a relation that has that column.
    pub(super) fn column(&self, names: &[String], place: &str) -> Result<usize, NotProvable> {
        match names {
            [col] => {
                let owners: Vec<usize> = (0..self.rels.len())
                    .filter(|&i| self.rels[i].info.column(col).is_some())
                    .collect();
                match owners.as_slice() {
                    [only] => Ok(*only),
                    [] => Err(np(format!(
                        "column {col} in {place} is not a column of any relation in FROM"
                    ))),
                    many => Err(np(format!(
                        "column {col} in {place} is ambiguous: {} all have it",
                        many.iter()
                            .map(|&i| self.rels[i].binding.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
            [q, col] => {
                let i = self
                    .rels
                    .iter()
                    .position(|r| &r.binding == q)
                    .ok_or_else(|| {
                        np(format!(
                            "{q}.{col} in {place}: {q} is not a relation in FROM"
                        ))
                    })?;
                self.has_column(i, col, place)
            }
            [schema, table, col] => {
                let i = self.schema_qualified(schema, table).ok_or_else(|| {
                    np(format!(
                        "{schema}.{table}.{col} in {place} does not name an unaliased table in FROM"
                    ))
                })?;
                self.has_column(i, col, place)
            }
            _ => Err(np(format!(
                "column reference {} in {place} has too many parts",
                names.join(".")
            ))),
        }
    }

    fn has_column(&self, i: usize, col: &str, place: &str) -> Result<usize, NotProvable> {
        let r = &self.rels[i];
        if r.info.column(col).is_some() {
            Ok(i)
        } else {
            Err(np(format!(
                "{}.{col} in {place}: the catalog has no such column",
                r.binding
            )))
        }
    }
}
