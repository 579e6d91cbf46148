//! Plans per fingerprint: `EXPLAIN (FORMAT JSON)` of a recent execution of a query shape, run
//! by pgshape itself on the monitoring connection (`--schema-dsn`), kept per fingerprint with
//! plan-change detection.
//!
//! Why the proxy does it: `auto_explain` needs server settings and log shipping (often not
//! available on managed PostgreSQL), `pg_store_plans` an extension. pgshape already sees every
//! statement, so it keeps one recent sample text per shape and explains it on request
//! (`POST /api/queries/{fp}/explain`, `pgshape explain FP`). The incident's plan (a Unique
//! over a sort of a fan-out join) would have shown its cause in minutes.
//!
//! Safety and privacy:
//! - only plain read-only queries are explained (see [`safety`]), in a `READ ONLY`
//!   transaction with a short `statement_timeout` that is rolled back, at most one at a time
//!   per database; `EXPLAIN ANALYZE` only when configured, and never for a statement that
//!   calls a VOLATILE function (`run`);
//! - `$n` statements (most ORMs on the extended protocol) are explained with the values of
//!   one Bind the tracker copies when the sampler asks for it ([`crate::event::BindSample`];
//!   one atomic load per Bind otherwise), through `PREPARE` + `EXPLAIN EXECUTE` ([`params`]);
//! - the sample texts and values hold customers' constants: they stay in memory (bounded: one
//!   per shape, at most `max_shapes`, each text at most 64 KiB), are never shown or logged;
//! - the plans stored and shown have their expression constants masked ([`shape::mask`])
//!   unless `[stats] log_parameters` is on, like the slow log; always for sampled values.
//!
//! - [`shape`]: shape hash, masking, the incident's signature, the terminal tree (pure).
//! - [`safety`]: which statements may be explained.
//! - [`params`]: a sampled Bind's values as literals; `run`: one explain on the server.
//! - [`store`]: the last few distinct plans per fingerprint, plan changes.
//! - [`api`]: the admin endpoints.

pub mod api;
pub mod params;
mod run;
pub mod safety;
pub mod shape;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde::Deserialize;

use crate::event::{Protocol, StatementEvent, StatementObserver};
use crate::rules::CatalogOracle;
use crate::sql::Fingerprint;

pub use store::{PlanRecord, PlanStore};

/// `[plans]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlansConfig {
    /// Keep a sample text per shape and answer explain requests. Texts are kept only with
    /// `[rules] schema_dsn` (the monitoring connection); without it requests get a clear error.
    pub enabled: bool,
    /// `statement_timeout` of one EXPLAIN (planning a statement is usually milliseconds).
    pub statement_timeout_ms: u64,
    /// Distinct plans kept per fingerprint (the oldest is dropped).
    pub max_plans: usize,
    /// Shapes with a sample text and with plans, at most.
    pub max_shapes: usize,
    /// Explain a shape automatically when its p95 over the last history interval
    /// (`[stats] history_interval_s`) reaches this; unset: the slow-log threshold
    /// (`log_min_duration_ms`), and no automatic explains when that is off too. Automatic
    /// explains need `schema_dsn` and the admin listener (which drives the history).
    pub slow_ms: Option<u64>,
    /// A shape is explained automatically at most once per this many seconds.
    pub auto_every_s: u64,
    /// Run `EXPLAIN (ANALYZE, BUFFERS)`: the statement is executed (read-only, rolled back,
    /// under `statement_timeout`), and only when no function it calls is VOLATILE.
    pub analyze: bool,
}

impl Default for PlansConfig {
    fn default() -> Self {
        PlansConfig {
            enabled: true,
            statement_timeout_ms: 2_000,
            max_plans: 5,
            max_shapes: 1_000,
            slow_ms: None,
            auto_every_s: 600,
            analyze: false,
        }
    }
}

/// Why an explain request failed; each maps to one HTTP status in [`api`].
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "plans need the monitoring connection: start pgshape with --schema-dsn (the role needs \
         CONNECT on the databases and SELECT on the tables the statements read)"
    )]
    NoSchemaDsn,
    #[error(
        "no recent successful execution of {0} was seen (only statements that returned rows \
         are sampled; run it through pgshape first)"
    )]
    NoSample(Fingerprint),
    #[error("refusing to EXPLAIN {fingerprint}: {refusal}")]
    Refused {
        fingerprint: Fingerprint,
        refusal: safety::Refusal,
    },
    #[error("an EXPLAIN is already running in database {0}; retry in a moment")]
    Busy(String),
    #[error("cannot connect the monitoring role to database {database}: {why}")]
    Connect { database: String, why: String },
    #[error("EXPLAIN failed in database {database}: {why}")]
    Explain { database: String, why: String },
}

/// A shape's recent execution: its text and database. The text is copied: the session's
/// may be a slice of a much larger `Query` message that a sample must not keep alive.
#[derive(Clone)]
struct Sample {
    sql: bytes::Bytes,
    database: Arc<str>,
    at: std::time::Instant,
    /// Sent with its values inline (no `$n`).
    literal: bool,
    /// A `$n` statement's values: held for this sample only, never stored with a plan,
    /// shown or logged (no `Debug`).
    bind: Option<SampledBind>,
}

/// One Bind of a `$n` statement, undecoded ([`params`] reads it at explain time).
#[derive(Clone)]
struct SampledBind {
    /// The Parse's parameter-type section.
    param_types: bytes::Bytes,
    /// The Bind's parameter section (formats, values, result formats).
    params: bytes::Bytes,
}

impl Sample {
    /// Recent enough, in the same database, not to be replaced by this execution.
    fn fresh(&self, database: &str, at: std::time::Instant) -> bool {
        *self.database == *database && at.saturating_duration_since(self.at) < RESAMPLE_AFTER
    }

    /// Whether it can be explained: literal, or with a Bind's values.
    fn explainable(&self) -> bool {
        self.literal || self.bind.is_some()
    }
}

/// Whether `sql` has `$n` parameters (a `$` before a digit; one inside a string literal only
/// costs that sample its preference).
fn has_parameters(sql: &[u8]) -> bool {
    sql.windows(2)
        .any(|pair| pair[0] == b'$' && pair[1].is_ascii_digit())
}

/// A shape's sample is replaced by a newer execution at most this often, so a shape sent
/// over and over in the simple protocol costs a map lookup, not an insert, per statement.
const RESAMPLE_AFTER: Duration = Duration::from_secs(10);

/// Longer statements are not sampled (their text would dominate the samples' memory).
const MAX_SAMPLE_BYTES: usize = 64 * 1024;

/// The result of one explain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explained {
    pub fingerprint: String,
    pub database: String,
    pub shape_hash: String,
    /// The `"Plan"` object of `EXPLAIN (FORMAT JSON)`, constants masked unless
    /// `log_parameters`.
    pub plan: serde_json::Value,
    /// A different shape hash than the fingerprint's previous plan.
    pub plan_change: bool,
    /// The incident's signature, when the plan has it (see [`shape::signature`]).
    pub signature: Option<String>,
}

/// Samples statements (as a [`StatementObserver`]) and explains them on request.
pub struct Planner {
    config: PlansConfig,
    oracle: Option<Arc<CatalogOracle>>,
    log_parameters: bool,
    samples: DashMap<u64, Sample, crate::sql::FastHasher>,
    /// One lock per database: at most one EXPLAIN at a time there.
    running: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// When each shape was last explained automatically (rate limit; bounded by the shapes
    /// followed by the history).
    auto_at: DashMap<u64, std::time::Instant, crate::sql::FastHasher>,
    store: PlanStore,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("samples", &self.samples.len())
            .finish_non_exhaustive()
    }
}

impl Planner {
    pub fn new(
        config: PlansConfig,
        oracle: Option<Arc<CatalogOracle>>,
        log_parameters: bool,
    ) -> Planner {
        let store = PlanStore::new(config.max_plans.max(1), config.max_shapes.max(1));
        Planner {
            config,
            oracle,
            log_parameters,
            samples: DashMap::default(),
            running: DashMap::new(),
            auto_at: DashMap::default(),
            store,
        }
    }

    pub fn store(&self) -> &PlanStore {
        &self.store
    }

    /// Explains the sampled execution of `fingerprint` now and records its plan.
    ///
    /// # Errors
    /// See [`PlanError`]: no monitoring connection, no sample, a statement that is not
    /// explained, another explain running in the database, connection or EXPLAIN errors.
    pub async fn explain(&self, fingerprint: Fingerprint) -> Result<Explained, PlanError> {
        self.explain_at(fingerprint, None).await
    }

    /// [`Self::explain`], noting the p95 that made the shape slow with its plan.
    async fn explain_at(
        &self,
        fingerprint: Fingerprint,
        p95_ms: Option<f64>,
    ) -> Result<Explained, PlanError> {
        let oracle = self.oracle.as_ref().ok_or(PlanError::NoSchemaDsn)?;
        let sample = self
            .samples
            .get(&fingerprint.0)
            .map(|s| s.value().clone())
            .ok_or(PlanError::NoSample(fingerprint))?;
        let sql = String::from_utf8_lossy(&sample.sql).into_owned();
        let refused = |refusal| PlanError::Refused {
            fingerprint,
            refusal,
        };
        safety::check(&sql).map_err(refused)?;
        let bind = match (safety::has_parameters(&sql), &sample.bind) {
            (false, _) => None,
            (true, Some(bind)) => Some((&bind.param_types[..], &bind.params[..])),
            (true, None) => return Err(refused(safety::Refusal::Parameters)),
        };
        let database = sample.database.to_string();
        let lock = self
            .running
            .entry(database.clone())
            .or_default()
            .value()
            .clone();
        let _running = lock
            .try_lock()
            .map_err(|_| PlanError::Busy(database.clone()))?;
        let request = run::Request {
            database: &database,
            sql: &sql,
            bind,
            analyze: self.config.analyze,
            timeout: Duration::from_millis(self.config.statement_timeout_ms),
        };
        let mut plan = run::explain(oracle, &request).await.map_err(|e| match e {
            run::RunError::Refused(refusal) => refused(refusal),
            run::RunError::Connect(why) => PlanError::Connect {
                database: database.clone(),
                why,
            },
            run::RunError::Explain(why) => PlanError::Explain {
                database: database.clone(),
                why,
            },
        })?;
        // A sampled Bind's values are never kept, whatever `log_parameters` says.
        if !self.log_parameters || bind.is_some() {
            shape::mask(&mut plan);
        }
        let shape_hash = shape::shape_hash(&plan);
        let signature = shape::signature(&plan);
        let plan_change = self
            .store
            .record(fingerprint, &database, &shape_hash, &plan, p95_ms);
        Ok(Explained {
            fingerprint: fingerprint.to_string(),
            database,
            shape_hash,
            plan,
            plan_change,
            signature,
        })
    }

    /// Explains, one after the other, the shapes of `p95s` (the last interval's p95 in ms per
    /// shape) at or above `[plans] slow_ms`, each at most once per `auto_every_s`. Fails open:
    /// what cannot be explained is logged and skipped.
    pub async fn explain_slow(&self, p95s: Vec<(Fingerprint, f64)>) {
        let Some(slow_ms) = self.config.slow_ms else {
            return;
        };
        if self.oracle.is_none() {
            return;
        }
        let every = Duration::from_secs(self.config.auto_every_s);
        let now = std::time::Instant::now();
        self.auto_at
            .retain(|_, at| now.saturating_duration_since(*at) < every);
        for (fingerprint, p95_ms) in p95s {
            if p95_ms < slow_ms as f64 || self.auto_at.contains_key(&fingerprint.0) {
                continue;
            }
            if !self.samples.contains_key(&fingerprint.0) {
                continue;
            }
            self.auto_at.insert(fingerprint.0, now);
            match self.explain_at(fingerprint, Some(p95_ms)).await {
                Ok(explained) => tracing::info!(
                    fingerprint = %fingerprint,
                    database = %explained.database,
                    p95_ms,
                    shape_hash = %explained.shape_hash,
                    plan_change = explained.plan_change,
                    signature = explained.signature.as_deref().unwrap_or(""),
                    "slow shape explained"
                ),
                Err(error) => {
                    tracing::info!(fingerprint = %fingerprint, p95_ms, %error, "slow shape not explained")
                }
            }
        }
    }
}

impl StatementObserver for Planner {
    fn on_statement(&self, event: &StatementEvent<'_>) {
        // Values captured for this execution are taken whatever happens next, so none
        // outlive it unless they become the sample.
        let captured = event.statement.bind.take();
        // Only executions that succeeded as queries: what failed or wrote is never explained.
        if event.sqlstate.is_some()
            || event.command != "SELECT"
            || event.statement.sql.len() > MAX_SAMPLE_BYTES
        {
            return;
        }
        let Some(fingerprint) = event.statement.fingerprint else {
            return;
        };
        let database = event.session.database.as_str();
        // A fresh explainable sample is kept without looking at the text (the common case
        // for a shape sent over and over).
        let current = self
            .samples
            .get(&fingerprint.0)
            .map(|s| (s.fresh(database, event.finished_at), s.explainable()));
        if captured.is_none() && current.is_some_and(|(fresh, explainable)| fresh && explainable) {
            return;
        }
        let literal = !has_parameters(&event.statement.sql);
        let bind = match (literal, captured) {
            (true, _) => None,
            (false, Some(params)) => Some(SampledBind {
                param_types: event.statement.bind.param_types.clone(),
                params,
            }),
            (false, None) => {
                // Ask for the values of this statement's next Bind; until they come, a
                // shape with no sample gets one that says why it cannot be explained yet.
                if event.protocol == Protocol::Extended {
                    event.statement.bind.request();
                }
                if current.is_some() {
                    return;
                }
                None
            }
        };
        if current.is_none() && self.samples.len() >= self.config.max_shapes {
            return;
        }
        self.samples.insert(
            fingerprint.0,
            Sample {
                sql: bytes::Bytes::copy_from_slice(&event.statement.sql),
                database: Arc::from(database),
                at: event.finished_at,
                literal,
                bind,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::{Planner, PlansConfig};
    use crate::event::{Protocol, SessionInfo, StatementEvent, StatementObserver, StatementText};

    fn text(sql: &str) -> Arc<StatementText> {
        Arc::new(StatementText {
            sql: bytes::Bytes::copy_from_slice(sql.as_bytes()),
            fingerprint: Some(crate::sql::fingerprint(sql.as_bytes())),
            rewritten_by: None,
            shadow: None,
            bind: Default::default(),
        })
    }

    fn run(planner: &Planner, sql: &str, command: &str, at: Instant) {
        finish(planner, &text(sql), Protocol::Simple, command, at);
    }

    fn finish(
        planner: &Planner,
        statement: &Arc<StatementText>,
        protocol: Protocol,
        command: &str,
        at: Instant,
    ) {
        let session = SessionInfo {
            database: "shop".into(),
            ..SessionInfo::default()
        };
        planner.on_statement(&StatementEvent {
            session: &session,
            statement,
            protocol,
            duration: Duration::from_millis(1),
            finished_at: at,
            rows: 1,
            command,
            sqlstate: None,
            in_transaction: false,
        });
    }

    fn sample(planner: &Planner, sql: &str) -> Option<String> {
        let fp = crate::sql::fingerprint(sql.as_bytes());
        planner
            .samples
            .get(&fp.0)
            .map(|s| String::from_utf8_lossy(&s.sql).into_owned())
    }

    #[test]
    fn samples_are_bounded_selects_refreshed_at_most_every_ten_seconds() {
        let planner = Planner::new(
            PlansConfig {
                max_shapes: 2,
                ..PlansConfig::default()
            },
            None,
            false,
        );
        let t0 = Instant::now();
        run(&planner, "DELETE FROM t WHERE id = 1", "DELETE", t0);
        assert_eq!(sample(&planner, "DELETE FROM t WHERE id = 1"), None);
        run(&planner, "SELECT * FROM t WHERE id = 1", "SELECT", t0);
        run(
            &planner,
            "SELECT * FROM t WHERE id = 2",
            "SELECT",
            t0 + Duration::from_secs(1),
        );
        assert_eq!(
            sample(&planner, "SELECT * FROM t WHERE id = 9").as_deref(),
            Some("SELECT * FROM t WHERE id = 1")
        );
        run(
            &planner,
            "SELECT * FROM t WHERE id = 3",
            "SELECT",
            t0 + Duration::from_secs(11),
        );
        assert_eq!(
            sample(&planner, "SELECT * FROM t WHERE id = 9").as_deref(),
            Some("SELECT * FROM t WHERE id = 3")
        );
        run(&planner, "SELECT * FROM u", "SELECT", t0);
        run(&planner, "SELECT * FROM v", "SELECT", t0);
        assert!(sample(&planner, "SELECT * FROM u").is_some());
        assert_eq!(sample(&planner, "SELECT * FROM v"), None, "max_shapes = 2");
    }

    #[test]
    fn a_literal_execution_replaces_a_parameterized_sample_at_once() {
        let planner = Planner::new(PlansConfig::default(), None, false);
        let t0 = Instant::now();
        run(&planner, "SELECT * FROM t WHERE id = $1", "SELECT", t0);
        let later = t0 + Duration::from_secs(1);
        run(&planner, "SELECT * FROM t WHERE id = 7", "SELECT", later);
        assert_eq!(
            sample(&planner, "SELECT * FROM t WHERE id = 9").as_deref(),
            Some("SELECT * FROM t WHERE id = 7")
        );
        // ... and is not replaced by the next `$n` one.
        run(&planner, "SELECT * FROM t WHERE id = $1", "SELECT", later);
        assert_eq!(
            sample(&planner, "SELECT * FROM t WHERE id = 9").as_deref(),
            Some("SELECT * FROM t WHERE id = 7")
        );
    }

    #[test]
    fn a_parameterized_shape_asks_for_the_values_of_one_bind() {
        let planner = Planner::new(PlansConfig::default(), None, false);
        let statement = text("SELECT * FROM t WHERE id = $1");
        let fp = statement.fingerprint.unwrap().0;
        let bound = |planner: &Planner| planner.samples.get(&fp).unwrap().bind.clone();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        finish(&planner, &statement, Protocol::Extended, "SELECT", t0);
        assert!(
            statement.bind.wanted(),
            "no sample: the next Bind is asked for"
        );
        assert!(bound(&planner).is_none());
        // A failed execution drops what its Bind captured.
        statement.bind.capture(b"failed");
        planner.on_statement(&StatementEvent {
            session: &SessionInfo::default(),
            statement: &statement,
            protocol: Protocol::Extended,
            duration: Duration::from_millis(1),
            finished_at: at(1),
            rows: 0,
            command: "",
            sqlstate: Some(*b"22012"),
            in_transaction: false,
        });
        assert_eq!(statement.bind.take(), None);
        finish(&planner, &statement, Protocol::Extended, "SELECT", at(1));
        statement.bind.capture(b"values");
        finish(&planner, &statement, Protocol::Extended, "SELECT", at(2));
        assert_eq!(
            bound(&planner).map(|b| b.params),
            Some(bytes::Bytes::from("values"))
        );
        // Fresh values: nothing more is asked; old ones are kept until new ones come.
        finish(&planner, &statement, Protocol::Extended, "SELECT", at(3));
        assert!(!statement.bind.wanted());
        finish(&planner, &statement, Protocol::Extended, "SELECT", at(13));
        assert!(statement.bind.wanted());
        assert!(bound(&planner).is_some());
        statement.bind.capture(b"newer");
        finish(&planner, &statement, Protocol::Extended, "SELECT", at(14));
        assert_eq!(
            bound(&planner).map(|b| b.params),
            Some(bytes::Bytes::from("newer"))
        );
    }
}
