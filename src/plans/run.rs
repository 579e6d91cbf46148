//! One explain on the monitoring connection, in a `READ ONLY` transaction with short
//! `statement_timeout` and `lock_timeout` that is always rolled back.
//!
//! - A literal statement: `EXPLAIN (FORMAT JSON) <sql>`.
//! - A `$n` statement with a sampled Bind: `PREPARE pgshape_explain (declared types) AS <sql>`,
//!   then `EXPLAIN (FORMAT JSON) EXECUTE pgshape_explain('v1', ...)` (PostgreSQL 15 has no
//!   `GENERIC_PLAN`). A fresh prepared statement gets custom plans for its first executions,
//!   so this is the plan for the sampled values. The server's message for a failing EXECUTE
//!   is not passed on: it may quote a value.
//! - `analyze`: `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`, after checking in `pg_proc` that
//!   no function the statement names, and none that the views it names call, is VOLATILE.

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::params;
use super::safety::{self, Refusal};
use crate::rules::CatalogOracle;
use crate::rules::catalog::ConnectError;

/// Longest wait for a table lock while planning.
const LOCK_TIMEOUT: Duration = Duration::from_millis(200);

/// What to explain.
pub(super) struct Request<'a> {
    pub database: &'a str,
    /// Checked by [`safety::check`] to be one read-only query.
    pub sql: &'a str,
    /// For a `$n` statement: the Parse's parameter-type section and the sampled Bind's
    /// parameter section.
    pub bind: Option<(&'a [u8], &'a [u8])>,
    pub analyze: bool,
    pub timeout: Duration,
}

#[derive(Debug)]
pub(super) enum RunError {
    Refused(Refusal),
    Connect(String),
    Explain(String),
}

/// A VOLATILE function among those the statement names, or that a view it names calls
/// (following views over views). By name, over every schema: over-refusing is the safe side.
const VOLATILE: &str = "WITH RECURSIVE views(oid) AS ( \
        SELECT c.oid FROM pg_class c WHERE c.relkind = 'v' AND c.relname::text = ANY($2) \
      UNION \
        SELECT d.refobjid FROM views v \
        JOIN pg_rewrite r ON r.ev_class = v.oid \
        JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
          AND d.refclassid = 'pg_class'::regclass \
        JOIN pg_class c ON c.oid = d.refobjid AND c.relkind = 'v') \
    SELECT p.proname::text FROM pg_proc p WHERE p.provolatile = 'v' AND ( \
        p.proname::text = ANY($1) \
        OR p.oid IN (SELECT d.refobjid FROM views v \
          JOIN pg_rewrite r ON r.ev_class = v.oid \
          JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid \
            AND d.refclassid = 'pg_proc'::regclass)) \
    LIMIT 1";

/// Runs the explain and returns the `"Plan"` object of its output.
pub(super) async fn explain(
    oracle: &CatalogOracle,
    request: &Request<'_>,
) -> Result<Value, RunError> {
    let (client, driver) = oracle
        .connect(request.database, Some("pgshape explain"))
        .await
        .map_err(|e| {
            RunError::Connect(match e {
                ConnectError::Timeout => "connect timed out".to_owned(),
                ConnectError::Failed(e) => e.to_string(),
            })
        })?;
    let result = run(&client, request).await;
    let _ = client.simple_query("ROLLBACK").await;
    drop(client);
    let _ = driver.await;
    result
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_owned())
}

async fn run(client: &Client, request: &Request<'_>) -> Result<Value, RunError> {
    let failed = |e: tokio_postgres::Error| RunError::Explain(message(&e));
    let timeout = request.timeout.max(Duration::from_millis(1));
    // A short lock_timeout: planning takes ACCESS SHARE locks, and a migration waiting for
    // its ACCESS EXCLUSIVE lock must not wait long on a monitoring query. Standard strings:
    // the sampled values are quoted for them.
    client
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL lock_timeout = {}; \
             SET LOCAL standard_conforming_strings = on",
            timeout.as_millis(),
            timeout.min(LOCK_TIMEOUT).as_millis()
        ))
        .await
        .map_err(failed)?;
    if request.analyze {
        let (functions, identifiers) = safety::names(request.sql);
        if let Some(row) = client
            .query_opt(VOLATILE, &[&functions, &identifiers])
            .await
            .map_err(failed)?
        {
            return Err(RunError::Refused(Refusal::Volatile(row.get(0))));
        }
    }
    let options = match request.analyze {
        true => "ANALYZE, BUFFERS, FORMAT JSON",
        false => "FORMAT JSON",
    };
    // Simple protocol so the JSON comes back as text.
    let output = match request.bind {
        None => client
            .simple_query(&format!("EXPLAIN ({options}) {}", request.sql))
            .await
            .map_err(failed)?,
        Some((param_types, bind)) => {
            let arguments = prepare(client, request.sql, param_types, bind).await?;
            client
                .simple_query(&format!(
                    "EXPLAIN ({options}) EXECUTE pgshape_explain{arguments}"
                ))
                .await
                .map_err(|e| {
                    RunError::Explain(format!(
                        "EXPLAIN EXECUTE with the sampled values failed (SQLSTATE {}; the \
                         server's message is not shown, it may quote a value)",
                        e.code().map_or("?", |c| c.code())
                    ))
                })?
        }
    };
    plan_of(output)
}

/// Prepares the `$n` statement with the Parse's declared types and returns the sampled
/// values as `EXECUTE`'s argument list (empty without parameters).
async fn prepare(
    client: &Client,
    sql: &str,
    param_types: &[u8],
    bind: &[u8],
) -> Result<String, RunError> {
    let failed = |e: tokio_postgres::Error| RunError::Explain(message(&e));
    let declared = params::declared_types(param_types);
    let names: Vec<String> = match declared.iter().all(|&oid| oid == 0) {
        true => Vec::new(),
        false => client
            .query(
                "SELECT CASE WHEN o = 0 THEN 'unknown' ELSE o::regtype::text END \
                 FROM unnest($1::oid[]) WITH ORDINALITY AS u(o, i) ORDER BY i",
                &[&declared],
            )
            .await
            .map_err(failed)?
            .iter()
            .map(|row| row.get(0))
            .collect(),
    };
    client
        .batch_execute(&format!(
            "PREPARE pgshape_explain{} AS {sql}",
            params::type_list(&names)
        ))
        .await
        .map_err(failed)?;
    let types: Vec<u32> = client
        .query_one(
            "SELECT parameter_types::oid[] FROM pg_prepared_statements \
             WHERE name = 'pgshape_explain'",
            &[],
        )
        .await
        .map_err(failed)?
        .get(0);
    let values = params::literals(bind, &types).map_err(|e| RunError::Refused(e.into()))?;
    Ok(match values.is_empty() {
        true => String::new(),
        false => format!("({values})"),
    })
}

fn plan_of(output: Vec<SimpleQueryMessage>) -> Result<Value, RunError> {
    let text = output
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| RunError::Explain("EXPLAIN returned no row".to_owned()))?;
    let mut output: Value = serde_json::from_str(&text)
        .map_err(|e| RunError::Explain(format!("EXPLAIN output is not JSON: {e}")))?;
    output
        .get_mut(0)
        .and_then(|o| o.get_mut("Plan"))
        .map(Value::take)
        .ok_or_else(|| RunError::Explain("EXPLAIN output has no Plan".to_owned()))
}
