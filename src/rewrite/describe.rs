//! Describing a statement and its rewrite on one connection: both must prepare, with the same
//! parameter types and result columns (names, types, order), which is what a client sees of a
//! statement through Describe. Used by the proxy's proofs ([`super::worker`]) and by
//! `pgshape check`.

use std::time::Duration;

use tokio_postgres::Client;

/// Why two statements do not describe alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescribeError {
    /// The original itself does not prepare there (a temporary table, another search_path).
    Original(String),
    /// The rewrite does not prepare, or describes differently.
    Rewrite(String),
}

/// Prepares both statements on `client`, each within `timeout` when one is given, and compares
/// their parameter types and result columns.
///
/// # Errors
/// When either does not prepare or they describe differently.
pub async fn describe_both(
    client: &Client,
    original: &str,
    rewritten: &str,
    timeout: Option<Duration>,
) -> Result<(), DescribeError> {
    let prepare = |sql: &str| {
        let sql = sql.to_owned();
        async move {
            let prepared = client.prepare(&sql);
            let result = match timeout {
                Some(timeout) => tokio::time::timeout(timeout, prepared)
                    .await
                    .map_err(|_| "Describe timed out".to_owned())?,
                None => prepared.await,
            };
            result.map_err(|e| db_error(&e))
        }
    };
    let a = prepare(original).await.map_err(DescribeError::Original)?;
    let b = prepare(rewritten)
        .await
        .map_err(|e| DescribeError::Rewrite(format!("the rewrite does not prepare: {e}")))?;
    let types = |ts: &[tokio_postgres::types::Type]| {
        ts.iter()
            .map(|t| t.name().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if a.params() != b.params() {
        return Err(DescribeError::Rewrite(format!(
            "parameter types differ: original ({}) vs rewrite ({})",
            types(a.params()),
            types(b.params())
        )));
    }
    let columns = |s: &tokio_postgres::Statement| {
        s.columns()
            .iter()
            .map(|c| format!("{} {}", c.name(), c.type_().name()))
            .collect::<Vec<_>>()
    };
    let (ca, cb) = (columns(&a), columns(&b));
    if ca != cb {
        return Err(DescribeError::Rewrite(format!(
            "the result columns differ: original ({}) vs rewrite ({})",
            ca.join(", "),
            cb.join(", ")
        )));
    }
    Ok(())
}

/// A server error as `SQLSTATE: message`; other errors as they display.
pub(crate) fn db_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}
