//! The rewrite `pgshape check` prints under a hit whose rule has one: the fix to paste, with
//! the statement's own constants.
//!
//! The same proof as the proxy's ([`crate::rewrite`]), done once per hit instead of once per
//! shape: the built-in semi-join rewrite is proposed from the catalog of the statement's
//! database (so it needs `--schema-dsn`), an operator's template is applied as it is; with a
//! schema connection both statements are then prepared there (Parse/Describe, nothing runs) and
//! must describe the same parameters and columns.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::rewrite::describe::{DescribeError, describe_both};
use crate::rewrite::explain::form_label;
use crate::rewrite::semijoin::{self, Form};
use crate::rewrite::template::Template;
use crate::rules::catalog::{CatalogOracle, ConnectError};
use crate::rules::spec::RewriteSpec;

/// Longest a Describe of one statement may take on the schema connection.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What check says about the rewrite of one hit. In JSON: `{"sql", "kind", "form",
/// "distinct_dropped", "result_shape_checked"}`, or `{"not_provable": reason}`,
/// `{"refused": reason}` (an operator's template that does not fit), `{"not_proposed": reason}`
/// (no schema connection to prove from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RewriteInfo {
    Proposed {
        /// The rewritten statement, with the hit statement's constants.
        sql: String,
        /// `semi_join` (built-in) or `template` (the operator's).
        kind: &'static str,
        /// Which semi-join shape (`null` for a template).
        form: Option<Form>,
        distinct_dropped: bool,
        /// Both statements prepared on the schema connection with the same parameter types
        /// and result columns.
        result_shape_checked: bool,
    },
    NotProvable {
        not_provable: String,
    },
    Refused {
        refused: String,
    },
    NotProposed {
        not_proposed: String,
    },
}

impl RewriteInfo {
    /// The human report's line (without indentation).
    pub fn line(&self) -> String {
        match self {
            RewriteInfo::Proposed {
                sql,
                form,
                distinct_dropped,
                result_shape_checked,
                ..
            } => {
                let mut label = form_label(*form, *distinct_dropped);
                if *result_shape_checked {
                    label.push_str(", result shape checked");
                }
                format!("rewrite ({label}): {sql}")
            }
            RewriteInfo::NotProvable { not_provable: r } | RewriteInfo::Refused { refused: r } => {
                format!("not rewritable: {r}")
            }
            RewriteInfo::NotProposed { not_proposed } => {
                format!("rewrite not proposed: {not_proposed}")
            }
        }
    }
}

/// Why the built-in rewrite is not proposed without a catalog.
pub const NEEDS_SCHEMA_DSN: &str = "needs --schema-dsn (a rewrite is proven from the catalog)";

/// One hit whose rule rewrites.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub spec: RewriteSpec,
    pub sql: String,
    /// Database whose catalog proves it (the statement's, or the DSN's).
    pub database: String,
}

/// The rewrite of every pending hit, in order. With `catalog`, databases not loaded yet are
/// read and both statements are described; that async work runs on a runtime of its own on a
/// scoped thread, so callers may be inside or outside a runtime.
pub(super) fn resolve(
    pending: &[Pending],
    catalog: Option<&Arc<CatalogOracle>>,
) -> Vec<RewriteInfo> {
    let Some(catalog) = catalog else {
        return pending.iter().map(|p| propose(p, None)).collect();
    };
    if pending.is_empty() {
        return Vec::new();
    }
    std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(prove_all(pending, catalog)),
                // Without a runtime: the proofs still hold, the shapes are not described.
                Err(_) => pending
                    .iter()
                    .map(|p| propose(p, catalog.snapshot(&p.database).as_deref()))
                    .collect(),
            }
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

async fn prove_all(pending: &[Pending], catalog: &Arc<CatalogOracle>) -> Vec<RewriteInfo> {
    // Catalogs of databases the statements name (JSON logs, pg_stat_statements) are read once.
    let mut unreadable: HashMap<&str, String> = HashMap::new();
    for p in pending {
        if p.spec.template.is_none()
            && catalog.snapshot(&p.database).is_none()
            && !unreadable.contains_key(p.database.as_str())
            && let Err(error) = catalog.refresh(&p.database).await
        {
            unreadable.insert(&p.database, error.to_string());
        }
    }
    let mut describer = Describer::new(catalog);
    let mut out = Vec::with_capacity(pending.len());
    for p in pending {
        if let Some(error) = unreadable.get(p.database.as_str()) {
            out.push(RewriteInfo::NotProvable {
                not_provable: format!("the catalog could not be read: {error}"),
            });
            continue;
        }
        let mut info = propose(p, catalog.snapshot(&p.database).as_deref());
        if let RewriteInfo::Proposed {
            sql,
            result_shape_checked,
            ..
        } = &mut info
        {
            match describer.both(&p.database, &p.sql, sql).await {
                Some(Ok(())) => *result_shape_checked = true,
                // No connection: the proof stands, the result shape is just not checked.
                None => {}
                Some(Err(DescribeError::Original(reason))) => {
                    info = RewriteInfo::NotProvable {
                        not_provable: format!(
                            "the original does not prepare on the schema connection: {reason}"
                        ),
                    };
                }
                Some(Err(DescribeError::Rewrite(reason))) => {
                    info = if p.spec.template.is_some() {
                        RewriteInfo::Refused { refused: reason }
                    } else {
                        RewriteInfo::NotProvable {
                            not_provable: reason,
                        }
                    };
                }
            }
        }
        out.push(info);
    }
    out
}

/// The rewrite of one hit from `schema` (the catalog of its database, when there is one).
fn propose(p: &Pending, schema: Option<&crate::rules::catalog::Snapshot>) -> RewriteInfo {
    let sql = p.sql.as_bytes();
    let (template, form, distinct_dropped) = match &p.spec.template {
        Some(template) => (template.clone(), None, false),
        None => {
            let Some(schema) = schema else {
                return RewriteInfo::NotProposed {
                    not_proposed: NEEDS_SCHEMA_DSN.into(),
                };
            };
            let normalized = crate::sql::normalize(sql, usize::MAX);
            let proposal = match semijoin::propose(&normalized, schema) {
                Ok(proposal) => proposal,
                Err(not) => {
                    return RewriteInfo::NotProvable {
                        not_provable: not.0,
                    };
                }
            };
            match Template::parse(&proposal.sql) {
                Ok(t) => (Arc::new(t), Some(proposal.form), proposal.distinct_dropped),
                Err(e) => {
                    return RewriteInfo::NotProvable {
                        not_provable: e.to_string(),
                    };
                }
            }
        }
    };
    let rewritten = match template.apply(sql) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if p.spec.template.is_some() => {
            return RewriteInfo::Refused {
                refused: e.to_string(),
            };
        }
        Err(e) => {
            return RewriteInfo::NotProvable {
                not_provable: e.to_string(),
            };
        }
    };
    RewriteInfo::Proposed {
        sql: rewritten,
        kind: if p.spec.template.is_some() {
            "template"
        } else {
            "semi_join"
        },
        form,
        distinct_dropped,
        result_shape_checked: false,
    }
}

/// One schema connection per database, opened on first use (a failed connect is not retried).
struct Describer<'a> {
    catalog: &'a CatalogOracle,
    clients: HashMap<String, Option<tokio_postgres::Client>>,
}

impl<'a> Describer<'a> {
    fn new(catalog: &'a CatalogOracle) -> Self {
        Describer {
            catalog,
            clients: HashMap::new(),
        }
    }

    async fn client(&mut self, database: &str) -> Option<&tokio_postgres::Client> {
        if !self.clients.contains_key(database) {
            let client = match self.catalog.connect(database, Some("pgshape-check")).await {
                Ok((client, _driver)) => Some(client),
                Err(ConnectError::Failed(error)) => {
                    tracing::warn!(%error, database, "rewrite result shapes not checked");
                    None
                }
                Err(ConnectError::Timeout) => {
                    tracing::warn!(
                        database,
                        "rewrite result shapes not checked: connect timed out"
                    );
                    None
                }
            };
            self.clients.insert(database.to_owned(), client);
        }
        self.clients.get(database).and_then(Option::as_ref)
    }

    /// Prepares both statements on the database's schema connection (see [`describe_both`]);
    /// `None` without a connection.
    async fn both(
        &mut self,
        database: &str,
        original: &str,
        rewritten: &str,
    ) -> Option<Result<(), DescribeError>> {
        let client = self.client(database).await?;
        Some(describe_both(client, original, rewritten, Some(DESCRIBE_TIMEOUT)).await)
    }
}
