//! `pgshape check --pg-stat-statements DSN`: the rules over the statement shapes a running
//! PostgreSQL has already seen, busiest first — which bad shapes are in production right now,
//! before pgshape is even in the path.
//!
//! pg_stat_statements keeps normalized text (`$1` for constants), so rules that judge values
//! (deep OFFSET, IN-list length, leading-wildcard LIKE) cannot hit; shape rules (DISTINCT over
//! a fan-out join, NOT IN subquery, cartesian join, ...) can. Texts cut by
//! `track_activity_query_size` fail to parse and are counted as not parsed. Rows whose text the
//! connecting role may not see (`<insufficient privilege>`: grant `pg_read_all_stats`) are
//! skipped and counted.

use std::time::Duration;

use tokio_postgres::NoTls;

use super::input::Statement;

/// Reading pg_stat_statements failed.
#[derive(Debug, thiserror::Error)]
pub enum PgssError {
    #[error("invalid DSN: {0}")]
    Dsn(tokio_postgres::Error),
    #[error("cannot connect: {0}")]
    Connect(tokio_postgres::Error),
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error(
        "cannot read pg_stat_statements ({0}); is the extension installed in that database \
         (CREATE EXTENSION pg_stat_statements, with shared_preload_libraries = 'pg_stat_statements')?"
    )]
    Query(tokio_postgres::Error),
}

/// What was read: the statements busiest first (`line` is the rank by total time), and how
/// many rows were hidden from the connecting role.
#[derive(Debug)]
pub struct PgssStatements {
    pub statements: Vec<Statement>,
    pub hidden: usize,
}

/// The `limit` shapes with the most total execution time, with their database and user.
///
/// # Errors
/// An invalid DSN, a failed connection, or a missing extension.
pub async fn read(dsn: &str, limit: u32) -> Result<PgssStatements, PgssError> {
    let mut config: tokio_postgres::Config = dsn.parse().map_err(PgssError::Dsn)?;
    let timeout = *config
        .connect_timeout(Duration::from_secs(5))
        .get_connect_timeout()
        .unwrap_or(&Duration::from_secs(5));
    let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
        .await
        .map_err(|_| PgssError::Timeout(timeout))?
        .map_err(PgssError::Connect)?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "pg_stat_statements connection ended");
        }
    });
    // total_exec_time since PostgreSQL 13, total_time before.
    let query = |time: &str| {
        format!(
            "SELECT s.query, coalesce(d.datname, ''), coalesce(r.rolname, ''), s.calls, s.{time} \
             FROM pg_stat_statements s \
             LEFT JOIN pg_database d ON d.oid = s.dbid \
             LEFT JOIN pg_roles r ON r.oid = s.userid \
             WHERE s.query IS NOT NULL \
             ORDER BY s.{time} DESC LIMIT $1"
        )
    };
    let limit = i64::from(limit);
    let rows = match client.query(&query("total_exec_time"), &[&limit]).await {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) => {
            client.query(&query("total_time"), &[&limit]).await
        }
        other => other,
    }
    .map_err(PgssError::Query)?;
    drop(client);
    let _ = driver.await;

    let mut out = PgssStatements {
        statements: Vec::with_capacity(rows.len()),
        hidden: 0,
    };
    for (rank, row) in rows.iter().enumerate() {
        let sql: String = row.get(0);
        if sql == "<insufficient privilege>" {
            out.hidden += 1;
            continue;
        }
        let calls: i64 = row.get(3);
        let total_ms: f64 = row.get(4);
        let mut stmt = Statement::new(rank + 1, sql);
        stmt.database = row.get(1);
        stmt.user = row.get(2);
        stmt.note = Some(format!(
            "{calls} calls, {:.1} ms mean, {:.1} s total (database {}, user {})",
            total_ms / calls.max(1) as f64,
            total_ms / 1e3,
            stmt.database,
            stmt.user
        ));
        out.statements.push(stmt);
    }
    Ok(out)
}
