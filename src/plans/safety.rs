//! Which sampled statements pgshape may EXPLAIN: a plain query (SELECT, VALUES, TABLE, set
//! operations, WITH over those), never one that writes (INSERT/UPDATE/DELETE/MERGE, also
//! inside a WITH), creates a table (`SELECT … INTO`), or takes row locks (`FOR UPDATE`).
//!
//! EXPLAIN without ANALYZE does not execute the statement, but a refusal here is the
//! promise the README makes, checked on the AST rather than trusted to the monitoring
//! role's privileges; the READ ONLY transaction the explain runs in is the second line.

use sqlparser::ast::{Query, SetExpr, Statement};

use crate::sql::lexer::{Lexer, TokenKind};

/// Why a statement is not explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "statement cannot be parsed ({0}); pgshape explains only statements it can prove read-only"
    )]
    Unparsed(String),
    #[error("{0} statements are not explained (they could have side effects)")]
    NotAQuery(&'static str),
    #[error("the statement {0}; it is not explained")]
    Writes(&'static str),
    #[error(
        "the statement has $n parameters and pgshape keeps no parameter values yet; only \
         statements sent with literal values (simple protocol, client-side binding) are explained"
    )]
    Parameters,
}

/// `Ok` when `sql` is one plain read-only query with literal values only.
pub fn check(sql: &str) -> Result<(), Refusal> {
    let statement =
        crate::sql::analysis::parse_one(sql).map_err(|e| Refusal::Unparsed(e.to_string()))?;
    match &statement {
        Statement::Query(query) => check_query(query)?,
        Statement::Insert(_) => return Err(Refusal::NotAQuery("INSERT")),
        Statement::Update { .. } => return Err(Refusal::NotAQuery("UPDATE")),
        Statement::Delete(_) => return Err(Refusal::NotAQuery("DELETE")),
        Statement::Merge { .. } => return Err(Refusal::NotAQuery("MERGE")),
        _ => return Err(Refusal::NotAQuery("DDL and utility")),
    }
    if Lexer::new(sql.as_bytes()).any(|t| t.kind == TokenKind::Param) {
        return Err(Refusal::Parameters);
    }
    Ok(())
}

fn check_query(query: &Query) -> Result<(), Refusal> {
    if !query.locks.is_empty() {
        return Err(Refusal::Writes("takes row locks (FOR UPDATE/SHARE)"));
    }
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            check_query(&cte.query)?;
        }
    }
    check_body(&query.body)
}

fn check_body(body: &SetExpr) -> Result<(), Refusal> {
    match body {
        SetExpr::Select(select) if select.into.is_some() => {
            Err(Refusal::Writes("creates a table (SELECT … INTO)"))
        }
        SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => Ok(()),
        SetExpr::Query(query) => check_query(query),
        SetExpr::SetOperation { left, right, .. } => {
            check_body(left)?;
            check_body(right)
        }
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            Err(Refusal::Writes("modifies data (a data-modifying WITH)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Refusal, check};

    #[test]
    fn plain_queries_pass() {
        for sql in [
            "SELECT 1",
            "SELECT DISTINCT o.id FROM shop_order o JOIN shop_orderitem i ON o.id = i.order_id WHERE i.sku IN ('A', 'B') LIMIT 25",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t UNION ALL SELECT 2",
            "VALUES (1), (2)",
            "SELECT '$1' AS not_a_param",
        ] {
            assert_eq!(check(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn anything_that_writes_is_refused() {
        let writes = |sql| matches!(check(sql), Err(Refusal::Writes(_)));
        let not_query = |sql| matches!(check(sql), Err(Refusal::NotAQuery(_)));
        assert!(not_query("DELETE FROM shop_order"));
        assert!(not_query("UPDATE shop_order SET status = 'x'"));
        assert!(not_query("INSERT INTO t VALUES (1)"));
        assert!(not_query("CREATE TABLE t (x int)"));
        assert!(not_query("SET statement_timeout = 0"));
        assert!(writes(
            "WITH gone AS (DELETE FROM shop_order RETURNING id) SELECT * FROM gone"
        ));
        assert!(writes("SELECT * INTO copy FROM shop_order"));
        assert!(writes("SELECT * FROM shop_order FOR UPDATE"));
        assert!(matches!(
            check("SELECT 1; DELETE FROM t"),
            Err(Refusal::Unparsed(_))
        ));
    }

    #[test]
    fn parameters_are_refused_with_the_reason() {
        assert_eq!(
            check("SELECT * FROM shop_order WHERE id = $1"),
            Err(Refusal::Parameters)
        );
    }
}
