//! The rewrite worker: proofs and shadow runs, one at a time, on a side connection per
//! database (the schema DSN's role, as the catalog uses).
//!
//! One task does everything in arrival order, so at most one side statement runs per database
//! (and in all) at any time: proofs are a Describe each, shadow runs are bounded by a
//! `statement_timeout`, and the queue in front of the task is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_postgres::{Client, SimpleQueryMessage};

use super::compare::{self, Row, Verdict};
use super::describe::{DescribeError, db_error, describe_both};
use super::metrics::Outcome;
use super::semijoin;
use super::template::Template;
use super::{Job, Plan, PlanState, Rewriter, ShadowRun};
use crate::rules::catalog::ConnectError;
use crate::rules::spec::{RewriteSpec, Rule};

/// Longest a shadow statement may run on the side connection.
const SHADOW_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(rewriter: Weak<Rewriter>, mut jobs: mpsc::Receiver<Job>) {
    let mut side = SideConnections::default();
    while let Some(job) = jobs.recv().await {
        let Some(rewriter) = rewriter.upgrade() else {
            return;
        };
        match job {
            Job::Prove {
                rule,
                spec,
                fingerprint,
                database,
                sql,
                epoch,
            } => {
                let state = prove(&rewriter, &mut side, &rule, &spec, &database, &sql).await;
                // The catalog the proof read (it may have been loaded just now).
                let generation = rewriter.generation(&database);
                let plan = Plan {
                    rule: rule.id.clone(),
                    fingerprint: fingerprint.to_string(),
                    database: database.clone(),
                    original: crate::sql::normalize(&sql, usize::MAX),
                    state,
                    epoch,
                    generation,
                };
                rewriter.finish(fingerprint, &database, plan);
            }
            Job::Shadow(run) => shadow(&rewriter, &mut side, run).await,
        }
    }
}

/// One client per database, reconnected when it broke.
#[derive(Default)]
struct SideConnections {
    clients: HashMap<String, Client>,
}

impl SideConnections {
    async fn get(&mut self, rewriter: &Rewriter, database: &str) -> Result<&Client, String> {
        let catalog = rewriter
            .catalog
            .as_ref()
            .ok_or_else(|| "no schema connection (--schema-dsn)".to_owned())?;
        if self.clients.get(database).is_none_or(Client::is_closed) {
            let (client, _driver) = catalog
                .connect(database, Some("pgshape-rewrite"))
                .await
                .map_err(|error| match error {
                    ConnectError::Timeout => {
                        format!("side connection to {database}: connect timed out")
                    }
                    ConnectError::Failed(e) => format!("side connection to {database}: {e}"),
                })?;
            self.clients.insert(database.to_owned(), client);
        }
        self.clients
            .get(database)
            .ok_or_else(|| "side connection lost".to_owned())
    }
}

/// Proves one shape's rewrite: the template (built-in proposal or the operator's), applied
/// to the execution at hand, then a Describe of both statements.
async fn prove(
    rewriter: &Rewriter,
    side: &mut SideConnections,
    rule: &Rule,
    spec: &RewriteSpec,
    database: &str,
    sql: &Bytes,
) -> PlanState {
    let builtin = spec.template.is_none();
    let refuse = |reason: String| {
        if builtin {
            PlanState::NotProvable { reason }
        } else {
            PlanState::Refused { reason }
        }
    };
    if let Some(catalog) = rewriter.catalog.as_ref()
        && catalog.snapshot(database).is_none()
        && let Err(error) = catalog.refresh(database).await
    {
        return PlanState::NotProvable {
            reason: format!("the catalog could not be read: {error}"),
        };
    }
    let (template, form, distinct_dropped) = match &spec.template {
        Some(template) => (template.clone(), None, false),
        None => {
            let Some(catalog) = rewriter.catalog.as_ref() else {
                return PlanState::NotProvable {
                    reason: "no schema connection (--schema-dsn)".into(),
                };
            };
            let Some(snapshot) = catalog.snapshot(database) else {
                return PlanState::NotProvable {
                    reason: format!("no catalog for database {database}"),
                };
            };
            let normalized = crate::sql::normalize(sql, usize::MAX);
            let proposal = match semijoin::propose(&normalized, &snapshot) {
                Ok(p) => p,
                Err(not) => return PlanState::NotProvable { reason: not.0 },
            };
            match Template::parse(&proposal.sql) {
                Ok(t) => (Arc::new(t), Some(proposal.form), proposal.distinct_dropped),
                Err(e) => return refuse(e.to_string()),
            }
        }
    };
    let rewritten = match template.apply(sql) {
        Ok(bytes) => bytes,
        Err(e) => return refuse(e.to_string()),
    };
    let (Ok(original_text), Ok(rewritten_text)) =
        (std::str::from_utf8(sql), std::str::from_utf8(&rewritten))
    else {
        return PlanState::NotProvable {
            reason: "the statement is not valid UTF-8".into(),
        };
    };
    let described = if rewriter.catalog.is_some() {
        match describe(rewriter, side, database, original_text, rewritten_text).await {
            Ok(()) => true,
            Err(DescribeError::Original(e)) => {
                return PlanState::NotProvable {
                    reason: format!("the original does not prepare on the side connection: {e}"),
                };
            }
            Err(DescribeError::Rewrite(e)) => return refuse(e),
        }
    } else {
        tracing::warn!(
            target: "pgshape::rewrite",
            rule = %rule.id,
            "no schema connection: the template's result shape is not checked against the original"
        );
        false
    };
    PlanState::Ready {
        template_sql: template.text().to_owned(),
        template,
        sample: rewritten_text.to_owned(),
        form,
        distinct_dropped,
        described,
    }
}

/// Prepares both statements on the database's side connection: see [`describe_both`].
async fn describe(
    rewriter: &Rewriter,
    side: &mut SideConnections,
    database: &str,
    original: &str,
    rewritten: &str,
) -> Result<(), DescribeError> {
    let client = side
        .get(rewriter, database)
        .await
        .map_err(DescribeError::Original)?;
    describe_both(client, original, rewritten, None).await
}

/// Runs both statements in one REPEATABLE READ READ ONLY transaction (one snapshot, so
/// concurrent writes cannot make them differ) and compares the results.
async fn shadow(rewriter: &Rewriter, side: &mut SideConnections, run: ShadowRun) {
    let verdict = match shadow_rows(rewriter, side, &run).await {
        Ok((original, rewritten)) => {
            let snapshot = rewriter
                .catalog
                .as_ref()
                .and_then(|c| c.snapshot(&run.database));
            // The statement as sent: its LIMIT value matters, not just its shape.
            let order =
                compare::order_check(&String::from_utf8_lossy(&run.original), snapshot.as_deref());
            compare::compare(&original, &rewritten, order)
        }
        Err(reason) => Verdict::Unverifiable(reason),
    };
    let counts = &rewriter.counts;
    match verdict {
        Verdict::Match => counts.add(&run.rule, run.fingerprint, Outcome::VerifyMatch),
        Verdict::Unverifiable(reason) => {
            tracing::debug!(target: "pgshape::rewrite", fingerprint = %run.fingerprint, %reason, "shadow run unverifiable");
            counts.add(&run.rule, run.fingerprint, Outcome::VerifyUnverifiable);
        }
        Verdict::Mismatch(reason) => {
            counts.add(&run.rule, run.fingerprint, Outcome::VerifyMismatch);
            tracing::error!(
                target: "pgshape::rewrite",
                rule = %run.rule,
                fingerprint = %run.fingerprint,
                database = %run.database,
                slots = %slot_shapes(&run.original),
                %reason,
                "shadow verification: results differ; rewrite disabled until reload"
            );
            rewriter.disable(
                run.fingerprint,
                &format!("shadow verification mismatch: {reason}"),
            );
        }
    }
}

async fn shadow_rows(
    rewriter: &Rewriter,
    side: &mut SideConnections,
    run: &ShadowRun,
) -> Result<(Vec<Row>, Vec<Row>), String> {
    let original = std::str::from_utf8(&run.original).map_err(|_| "not UTF-8".to_owned())?;
    let rewritten = std::str::from_utf8(&run.rewritten).map_err(|_| "not UTF-8".to_owned())?;
    let client = side.get(rewriter, &run.database).await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = {}",
            SHADOW_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| db_error(&e))?;
    let result = async {
        match &run.params {
            None => Ok::<_, String>((
                rows(client, original).await?,
                rows(client, rewritten).await?,
            )),
            Some(params) => Ok((
                rows_bound(client, original, params).await?,
                rows_bound(client, rewritten, params).await?,
            )),
        }
    }
    .await;
    // Whatever happened, the transaction ends here; a failed ROLLBACK means a broken
    // connection, which the next use replaces.
    let _ = client.batch_execute("ROLLBACK").await;
    result
}

async fn rows(client: &Client, sql: &str) -> Result<Vec<Row>, String> {
    let messages = client.simple_query(sql).await.map_err(|e| db_error(&e))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(|v| v.as_bytes().to_vec()))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// Runs a `$n` statement with one sampled execution's parameters, exactly as the client sent
/// them (types as declared, each value in its format), and returns the rows in binary format.
async fn rows_bound(
    client: &Client,
    sql: &str,
    params: &super::ShadowParams,
) -> Result<Vec<Row>, String> {
    use tokio_postgres::types::{Kind, Type};
    let types: Vec<Type> = params
        .types
        .iter()
        .map(|&oid| {
            Type::from_oid(oid).unwrap_or_else(|| {
                // 0 is "unspecified"; other unknown OIDs (extension types) pass as they are.
                Type::new(String::new(), oid, Kind::Pseudo, String::new())
            })
        })
        .collect();
    let statement = client
        .prepare_typed(sql, &types)
        .await
        .map_err(|e| db_error(&e))?;
    if statement.params().len() != params.bind.values.len() {
        return Err("the sampled Bind has another parameter count".into());
    }
    let values: Vec<RawParam<'_>> = params
        .bind
        .values
        .iter()
        .zip(&params.bind.binary)
        .map(|(value, &binary)| RawParam { value, binary })
        .collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let rows = client
        .query(&statement, &refs)
        .await
        .map_err(|e| db_error(&e))?;
    Ok(rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<_, RawValue>(i).ok().and_then(|v| v.0))
                .collect()
        })
        .collect())
}

/// A parameter passed on byte for byte, in the format the client used.
#[derive(Debug)]
struct RawParam<'a> {
    value: &'a Option<Vec<u8>>,
    binary: bool,
}

impl tokio_postgres::types::ToSql for RawParam<'_> {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match self.value {
            Some(bytes) => {
                out.extend_from_slice(bytes);
                tokio_postgres::types::IsNull::No
            }
            None => tokio_postgres::types::IsNull::Yes,
        })
    }

    fn accepts(_ty: &tokio_postgres::types::Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &tokio_postgres::types::Type) -> tokio_postgres::types::Format {
        if self.binary {
            tokio_postgres::types::Format::Binary
        } else {
            tokio_postgres::types::Format::Text
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A result column's bytes, whatever its type.
struct RawValue(Option<Vec<u8>>);

impl<'a> tokio_postgres::types::FromSql<'a> for RawValue {
    fn from_sql(
        _ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(Some(raw.to_vec())))
    }

    fn from_sql_null(
        _ty: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(None))
    }

    fn accepts(_ty: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// The kinds of a statement's constants, never their values: what a log line may say about
/// the execution that exposed a mismatch.
fn slot_shapes(sql: &[u8]) -> String {
    let Ok(slots) = crate::sql::slots(sql) else {
        return "unslottable".into();
    };
    let kinds: Vec<String> = slots
        .iter()
        .map(|slot| {
            let text = &sql[slot.range.clone()];
            if slot.list {
                format!("list({})", text.iter().filter(|&&b| b == b',').count() + 1)
            } else if text.first() == Some(&b'$') {
                "param".into()
            } else if text.first() == Some(&b'\'') || text.starts_with(b"E'") {
                "string".into()
            } else if text
                .first()
                .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
            {
                "number".into()
            } else {
                "other".into()
            }
        })
        .collect();
    format!("[{}]", kinds.join(", "))
}
