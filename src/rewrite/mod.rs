//! Rewrites: pgshape sends the server an equivalent, faster statement in place of a bad one.
//!
//! Why it exists: in the incident the fix was known after 2.5 days, but needed a deploy while the
//! panel stayed at 8.5 s. A rewrite rule fixes the query in the proxy, in minutes, while the
//! application keeps sending the bad SQL. A wrong rewrite returns wrong data, so a rewrite is
//! applied only once it is *proven*, never on a guess:
//!
//! - [`template`]: every rewrite is a SQL text over the original's constant slots
//!   ([`crate::sql::slots`]); applying it to one execution copies that execution's constants, so
//!   the hot path lexes and copies, never parses. `$n` parameters stay `$n`, so Binds fit.
//! - [`semijoin`]: the built-in rewrite of DISTINCT over a one-to-many join into EXISTS, proven
//!   from the catalog (keys, NOT NULL, function volatility) or refused with the reason.
//! - [`worker`]: proofs happen off the hot path, once per (fingerprint, database, catalog
//!   generation, rule set): the proposal or the operator's template, then a `Describe` of both
//!   statements on a side connection, which must give the same parameters and columns. Shadow
//!   verification runs there too.
//! - [`Rewriter`]: the per-shape decisions the sessions read, the kill switch, the counters.
//!
//! Until a proof finishes (and whenever it fails) statements pass through unchanged.

pub mod compare;
pub mod describe;
pub mod explain;
pub mod metrics;
pub mod semijoin;
pub mod template;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::rules::CatalogOracle;
use crate::rules::spec::{RewriteSpec, Rule, Verify};
use crate::sql::Fingerprint;
pub use metrics::{Outcome, RewriteCounts};
use template::Template;

/// Most (fingerprint, database) decisions kept; beyond it the oldest half is forgotten (and
/// re-proved if seen again).
const MAX_PLANS: usize = 10_000;
/// Proof and shadow jobs waiting for the worker; more are dropped (a proof is asked again by
/// the next execution, a shadow sample is skipped).
const QUEUE: usize = 256;

/// A decision is per shape, database and rule (an observing rule's dry run and an operator's
/// hot-patch of the same shape are two decisions).
type PlanKey = (Fingerprint, Box<str>, Arc<str>);

/// Where a shape's rewrite stands in one database.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlanState {
    /// The proof runs; the statement passes through meanwhile.
    Proving,
    /// Proven: executions are rewritten (or shadow-verified) with this template.
    Ready {
        #[serde(skip)]
        template: Arc<Template>,
        /// The template as text (slots as `$k`).
        template_sql: String,
        /// The statement that was proven, rewritten (constants as its execution had them).
        sample: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        form: Option<semijoin::Form>,
        distinct_dropped: bool,
        /// Whether a Describe of both statements confirmed the same parameters and columns
        /// (false only without a schema connection).
        described: bool,
    },
    /// A precondition is not proven: the statement is left alone.
    NotProvable { reason: String },
    /// The operator's template does not fit the statement (slots, result shape).
    Refused { reason: String },
}

/// The decision for one (fingerprint, database).
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    #[serde(serialize_with = "ser_arc_str")]
    pub rule: Arc<str>,
    pub fingerprint: String,
    pub database: String,
    /// The normalized original, slots as `$k`.
    pub original: String,
    #[serde(flatten)]
    pub state: PlanState,
    /// Rule-set epoch and catalog generation it was decided under.
    #[serde(skip)]
    epoch: u64,
    #[serde(skip)]
    generation: u64,
}

/// Whether a statement text holds a `$n` parameter (outside strings and comments).
fn has_parameters(sql: &[u8]) -> bool {
    memchr::memchr(b'$', sql).is_some()
        && crate::sql::lexer::Lexer::new(sql).any(|t| t.kind == crate::sql::lexer::TokenKind::Param)
}

fn ser_arc_str<S: serde::Serializer>(value: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value)
}

/// What a session does with one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send this text instead.
    Apply(Bytes),
    /// Send the original; `rewritten` is for sampled verification. `at_bind`: the statement
    /// has `$n` parameters, so samples are taken at Bind (where their values are); otherwise
    /// this execution may already have been sampled.
    Shadow { rewritten: Bytes, at_bind: bool },
    /// Send the original.
    Keep,
}

/// A shadow verification request: both statements run on the side connection.
#[derive(Debug)]
pub struct ShadowRun {
    pub rule: Arc<str>,
    pub fingerprint: Fingerprint,
    pub database: String,
    pub original: Bytes,
    pub rewritten: Bytes,
    /// For a `$n` statement: the declared parameter types and the sampled Bind's values.
    pub params: Option<ShadowParams>,
}

/// The parameters of one sampled execution of a prepared statement.
#[derive(Debug)]
pub struct ShadowParams {
    /// Parameter type OIDs as the Parse declared them (0: unspecified).
    pub types: Vec<u32>,
    pub bind: crate::protocol::frontend::BindParams,
}

#[derive(Debug)]
enum Job {
    Prove {
        rule: Arc<Rule>,
        spec: RewriteSpec,
        fingerprint: Fingerprint,
        database: String,
        sql: Bytes,
        epoch: u64,
    },
    Shadow(ShadowRun),
}

/// Rewrite decisions shared by all sessions.
#[derive(Debug)]
pub struct Rewriter {
    plans: DashMap<PlanKey, Arc<Plan>>,
    /// Fingerprints whose rewrite is switched off until the next reload, with why.
    disabled: DashMap<Fingerprint, String>,
    counts: Arc<RewriteCounts>,
    jobs: mpsc::Sender<Job>,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<Job>>>,
    catalog: Option<Arc<CatalogOracle>>,
    /// Bumped on every rule reload: decisions of an older rule set are made again.
    epoch: AtomicU64,
    /// Drives sampling (a counter, not a random source: every 1/rate-th eligible execution).
    sampled: AtomicU64,
}

impl Rewriter {
    /// A rewriter that proves with `catalog` (and its DSN for the side connection), if any.
    pub fn new(catalog: Option<Arc<CatalogOracle>>) -> Rewriter {
        let (jobs, receiver) = mpsc::channel(QUEUE);
        Rewriter {
            plans: DashMap::new(),
            disabled: DashMap::new(),
            counts: Arc::default(),
            jobs,
            receiver: std::sync::Mutex::new(Some(receiver)),
            catalog,
            epoch: AtomicU64::new(1),
            sampled: AtomicU64::new(0),
        }
    }

    /// The counters, for [`metrics::register`].
    pub fn counts(&self) -> Arc<RewriteCounts> {
        self.counts.clone()
    }

    /// Starts the proof and shadow worker on the current tokio runtime (once).
    pub fn spawn_worker(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let receiver = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(tokio::spawn(worker::run(Arc::downgrade(self), receiver)))
    }

    /// The rules changed: every decision is made again, and switched-off rewrites come back.
    pub fn on_reload(&self) {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        self.disabled.clear();
    }

    fn generation(&self, database: &str) -> u64 {
        use crate::rules::UniquenessOracle;
        self.catalog.as_ref().map_or(0, |c| c.generation(database))
    }

    /// The decision for one execution of `sql` (fingerprint `fingerprint`, in `database`)
    /// that `rule` (action rewrite, or a dry run) matched. Cheap when the shape's plan is
    /// known: a map read, a lexing pass and a copy. `in_transaction` executions are never
    /// shadow-sampled (the side connection cannot see the transaction's snapshot).
    pub fn decide(
        &self,
        rule: &Arc<Rule>,
        spec: &RewriteSpec,
        fingerprint: Fingerprint,
        database: &str,
        sql: &[u8],
        in_transaction: bool,
    ) -> Decision {
        if self.disabled.contains_key(&fingerprint) {
            self.counts.add(&rule.id, fingerprint, Outcome::Disabled);
            return Decision::Keep;
        }
        let Some(plan) = self.current_plan(rule, spec, fingerprint, database, sql) else {
            return Decision::Keep;
        };
        let template = match &plan.state {
            PlanState::Ready { template, .. } => template,
            PlanState::NotProvable { .. } | PlanState::Refused { .. } => {
                self.counts.add(&rule.id, fingerprint, Outcome::NotProvable);
                return Decision::Keep;
            }
            PlanState::Proving => return Decision::Keep,
        };
        let rewritten = match template.apply(sql) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                // This execution's constants do not fit (a collapsed list where the template
                // wants one value): this one runs as sent.
                tracing::debug!(%error, %fingerprint, "rewrite does not fit this execution");
                self.counts.add(&rule.id, fingerprint, Outcome::NotProvable);
                return Decision::Keep;
            }
        };
        match spec.verify {
            Verify::None => {
                self.counts.add(&rule.id, fingerprint, Outcome::Applied);
                Decision::Apply(rewritten)
            }
            Verify::Shadow => {
                let at_bind = has_parameters(sql);
                if !at_bind && !in_transaction && self.sample(spec.sample_rate) {
                    self.shadow(ShadowRun {
                        rule: rule.id.clone(),
                        fingerprint,
                        database: database.to_owned(),
                        original: Bytes::copy_from_slice(sql),
                        rewritten: rewritten.clone(),
                        params: None,
                    });
                }
                Decision::Shadow { rewritten, at_bind }
            }
        }
    }

    /// Dry run for a rule that is not (yet) `rewrite`: makes sure the shape's plan exists, so
    /// `/api/rules` and the page show what would be sent, or why nothing would.
    pub fn dry_run(
        &self,
        rule: &Arc<Rule>,
        spec: &RewriteSpec,
        fingerprint: Fingerprint,
        database: &str,
        sql: &[u8],
    ) {
        let _ = self.current_plan(rule, spec, fingerprint, database, sql);
    }

    /// A Bind of a `$n` statement under shadow verification (outside a transaction block):
    /// sampled at `rate`, its parameter values are decoded and queued with both statements.
    pub fn shadow_bind(
        &self,
        fingerprint: Fingerprint,
        database: &str,
        original: &[u8],
        target: &crate::event::ShadowTarget,
        rate: f64,
        params: &[u8],
    ) {
        if self.disabled.contains_key(&fingerprint) || !self.sample(rate) {
            return;
        }
        let bind = match crate::protocol::frontend::BindParams::decode(params) {
            Ok(bind) => bind,
            Err(error) => {
                tracing::debug!(%error, "shadow sample skipped: Bind not decodable");
                return;
            }
        };
        let types = target
            .param_types
            .get(2..)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        self.shadow(ShadowRun {
            rule: target.rule.clone(),
            fingerprint,
            database: database.to_owned(),
            original: Bytes::copy_from_slice(original),
            rewritten: target.sql.clone(),
            params: Some(ShadowParams { types, bind }),
        });
    }

    /// Queues a shadow run unless the queue is full.
    pub fn shadow(&self, run: ShadowRun) {
        if self.jobs.try_send(Job::Shadow(run)).is_err() {
            tracing::debug!("shadow verification queue full; sample skipped");
        }
    }

    fn sample(&self, rate: f64) -> bool {
        let every = (1.0 / rate).round().max(1.0) as u64;
        self.sampled
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(every)
    }

    /// The plan for this shape under the current rules and catalog, asking for a proof when
    /// there is none yet.
    fn current_plan(
        &self,
        rule: &Arc<Rule>,
        spec: &RewriteSpec,
        fingerprint: Fingerprint,
        database: &str,
        sql: &[u8],
    ) -> Option<Arc<Plan>> {
        let epoch = self.epoch.load(Ordering::Relaxed);
        let generation = self.generation(database);
        let key = (fingerprint, Box::<str>::from(database), rule.id.clone());
        if let Some(plan) = self.plans.get(&key)
            && plan.epoch == epoch
            && plan.generation == generation
        {
            return Some(plan.clone());
        }
        let original = crate::sql::normalize(sql, usize::MAX);
        let proving = |state| {
            Arc::new(Plan {
                rule: rule.id.clone(),
                fingerprint: fingerprint.to_string(),
                database: database.to_owned(),
                original: original.clone(),
                state,
                epoch,
                generation,
            })
        };
        if spec.template.is_none() && self.catalog.is_none() {
            let plan = proving(PlanState::NotProvable {
                reason: "no schema connection (--schema-dsn): the built-in rewrite is proven from \
                         the catalog only"
                    .into(),
            });
            self.insert(key, plan.clone());
            return Some(plan);
        }
        self.insert(key.clone(), proving(PlanState::Proving));
        let job = Job::Prove {
            rule: rule.clone(),
            spec: spec.clone(),
            fingerprint,
            database: database.to_owned(),
            sql: Bytes::copy_from_slice(sql),
            epoch,
        };
        if self.jobs.try_send(job).is_err() {
            // Full queue: forget the placeholder so the next execution asks again.
            self.plans.remove(&key);
        }
        None
    }

    fn insert(&self, key: PlanKey, plan: Arc<Plan>) {
        if self.plans.len() >= MAX_PLANS && !self.plans.contains_key(&key) {
            let mut keep = false;
            self.plans.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        self.plans.insert(key, plan);
    }

    /// Records a finished proof, under the catalog generation it was made with (ignored when
    /// the rules changed meanwhile).
    fn finish(&self, fingerprint: Fingerprint, database: &str, plan: Plan) {
        if plan.epoch != self.epoch.load(Ordering::Relaxed) {
            return;
        }
        let key = (fingerprint, Box::<str>::from(database), plan.rule.clone());
        match &plan.state {
            PlanState::Ready { sample, .. } => tracing::info!(
                target: "pgshape::rewrite",
                rule = %plan.rule, %fingerprint, database, rewritten = %sample,
                "rewrite proven"
            ),
            PlanState::NotProvable { reason } => tracing::info!(
                target: "pgshape::rewrite",
                rule = %plan.rule, %fingerprint, database, %reason,
                "rewrite not provable; statement left alone"
            ),
            PlanState::Refused { reason } => tracing::error!(
                target: "pgshape::rewrite",
                rule = %plan.rule, %fingerprint, database, %reason,
                "rewrite template refused"
            ),
            PlanState::Proving => {}
        }
        self.plans.insert(key, Arc::new(plan));
    }

    /// Switches the rewrite of `fingerprint` off until the next reload (the kill switch, and
    /// what a shadow mismatch does). Returns whether it was on.
    pub fn disable(&self, fingerprint: Fingerprint, why: &str) -> bool {
        tracing::warn!(target: "pgshape::rewrite", %fingerprint, reason = why, "rewrite disabled");
        self.disabled.insert(fingerprint, why.to_owned()).is_none()
    }

    /// Why the rewrite of `fingerprint` is switched off, if it is.
    pub fn disabled(&self, fingerprint: Fingerprint) -> Option<String> {
        self.disabled.get(&fingerprint).map(|r| r.clone())
    }

    /// Every current decision for `fingerprint` (one per database).
    pub fn plans_for(&self, fingerprint: Fingerprint) -> Vec<Plan> {
        let mut plans: Vec<_> = self
            .plans
            .iter()
            .filter(|e| e.key().0 == fingerprint)
            .map(|e| Plan::clone(e.value()))
            .collect();
        plans.sort_by(|a, b| a.database.cmp(&b.database));
        plans
    }

    /// `GET /api/queries/{fp}`'s `rewrite` object: each database's decision (the normalized
    /// original with its numbered slots, the template, a sample rewritten statement or the
    /// reason there is none), whether it is switched off, and the outcome counts. `None` when
    /// no rewrite rule ever looked at the shape.
    pub fn explain(&self, fingerprint: Fingerprint) -> Option<serde_json::Value> {
        let plans = self.plans_for(fingerprint);
        let counts = self.counts.of_fingerprint(fingerprint);
        let disabled = self.disabled(fingerprint);
        if plans.is_empty() && counts.is_empty() && disabled.is_none() {
            return None;
        }
        let outcomes: serde_json::Map<String, serde_json::Value> = counts
            .into_iter()
            .map(|(rule, outcomes)| {
                let by: serde_json::Map<String, serde_json::Value> = outcomes
                    .into_iter()
                    .map(|(o, n)| (o.as_str().to_owned(), n.into()))
                    .collect();
                (rule.to_string(), by.into())
            })
            .collect();
        Some(serde_json::json!({
            "disabled": disabled,
            "plans": plans,
            "outcomes": outcomes,
        }))
    }

    /// Every current decision of `rule`.
    pub fn plans_of_rule(&self, rule: &str) -> Vec<Plan> {
        let mut plans: Vec<_> = self
            .plans
            .iter()
            .filter(|e| &*e.value().rule == rule)
            .map(|e| Plan::clone(e.value()))
            .collect();
        plans.sort_by(|a, b| (&a.fingerprint, &a.database).cmp(&(&b.fingerprint, &b.database)));
        plans
    }
}
