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
        "the statement has $n parameters and no Bind's values were captured yet: the next \
         execution through pgshape is sampled; retry after it"
    )]
    Parameters,
    #[error("EXPLAIN ANALYZE would run {0}, which is VOLATILE (it could have side effects)")]
    Volatile(String),
    #[error("{0}")]
    Values(#[from] super::params::ValueError),
}

/// `Ok` when `sql` is one plain read-only query (`$n` parameters are the caller's concern:
/// they need a sampled Bind's values, see [`has_parameters`]).
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
    Ok(())
}

/// The names a statement may call as functions (an identifier before `(`) and every
/// identifier in it (the relations among them may be views that call functions), lowercased
/// unless quoted: what `plans::run` looks up in `pg_proc` before an `EXPLAIN ANALYZE`. By
/// name, so over-inclusive: a keyword before `(` matches no volatile function.
pub fn names(sql: &str) -> (Vec<String>, Vec<String>) {
    let bytes = sql.as_bytes();
    let tokens: Vec<_> = Lexer::new(bytes).filter(|t| !t.kind.is_trivia()).collect();
    let mut functions = Vec::new();
    let mut identifiers = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let text = String::from_utf8_lossy(token.text(bytes));
        let name = match token.kind {
            TokenKind::Ident => text.to_lowercase(),
            TokenKind::QuotedIdent if text.starts_with('"') => {
                text.trim_matches('"').replace("\"\"", "\"")
            }
            _ => continue,
        };
        let called = tokens
            .get(i + 1)
            .is_some_and(|next| next.kind == TokenKind::Punct && next.text(bytes) == b"(");
        if called && !functions.contains(&name) {
            functions.push(name.clone());
        }
        if !identifiers.contains(&name) {
            identifiers.push(name);
        }
    }
    (functions, identifiers)
}

/// Whether `sql` has `$n` parameters (outside literals and comments).
pub fn has_parameters(sql: &str) -> bool {
    Lexer::new(sql.as_bytes()).any(|t| t.kind == TokenKind::Param)
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
    use super::{Refusal, check, has_parameters, names};

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
    fn parameters_pass_the_check_and_are_found_by_the_lexer() {
        let sql = "SELECT * FROM shop_order WHERE id = $1";
        assert_eq!(check(sql), Ok(()));
        assert!(has_parameters(sql));
        assert!(!has_parameters("SELECT '$1' -- $2"));
    }

    #[test]
    fn names_called_and_named() {
        let (functions, identifiers) = names(
            r#"SELECT count(*), public.Next_Val(x), "Odd""Fn"(1) FROM v JOIN generate_series(1, 2) g ON true WHERE y IN (1)"#,
        );
        assert_eq!(
            functions,
            ["count", "next_val", "Odd\"Fn", "generate_series", "in"]
        );
        for name in ["select", "public", "x", "v", "g", "y"] {
            assert!(identifiers.contains(&name.to_owned()), "{name}");
        }
    }
}
