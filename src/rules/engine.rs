//! [`RuleEngine::evaluate`]: the one call the proxy makes per statement, before forwarding it.
//!
//! Cost for a repeated statement shape: one read of the current rule set (an `Arc` clone under
//! a read lock), one facts-cache lookup, and for each active rule a handful of field
//! comparisons. Per-execution work (value scan, sqlcommenter tags, fan-out judgement, repeat
//! history) is done only when a loaded rule needs it. Hot reload swaps the whole [`RuleSet`];
//! statements already being evaluated finish with the set they started with.

mod rewrite;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use smallvec::SmallVec;

use super::catalog::{CatalogError, CatalogOracle};
use super::matcher::Subject;
use super::metrics::RuleMetrics;
use super::oracle::{FanoutCache, HeuristicOracle, OracleKind, UniquenessOracle};
use super::shared::SharedStatics;
use super::spec::{Rule, RuleLoadError, RuleSet};
use super::state::{ConnectionRuleState, StaticMatch};
use super::{Action, Mode, RulesConfig, Severity};
use crate::rewrite::Rewriter;
use crate::sql::Fingerprint;
use crate::sql::analysis::FactsCache;

/// The SQLSTATEs the proxy answers with (one definition, in the proxy's intercept module).
pub use crate::proxy::intercept::{BLOCKED_SQLSTATE, WARNING_SQLSTATE};

/// The statement being judged, as the proxy knows it.
#[derive(Debug, Clone, Copy)]
pub struct StatementInput<'a> {
    /// One statement's text (one statement of a multi-statement Query, or a Parse's query).
    pub sql: &'a [u8],
    pub fingerprint: Fingerprint,
    pub database: &'a str,
    pub user: &'a str,
    pub application_name: &'a str,
}

/// One rule that matched.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    #[serde(serialize_with = "ser_rule_id")]
    pub rule: Arc<Rule>,
    /// The rule's action after the global mode (shadow turns warn/block into observe).
    pub action: Action,
    /// Which oracle judged the fan-out, when the rule is about one.
    pub decided_by: Option<OracleKind>,
}

fn ser_rule_id<S: serde::Serializer>(rule: &Arc<Rule>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rule.id)
}

impl Hit {
    pub fn id(&self) -> &str {
        &self.rule.id
    }

    pub fn severity(&self) -> Severity {
        self.rule.severity
    }

    /// The message with the deciding oracle appended (`… [fan-out judged by catalog]`).
    pub fn message(&self) -> String {
        match self.decided_by {
            Some(kind) => format!(
                "{} [fan-out judged by {}]",
                self.rule.message,
                kind.as_str()
            ),
            None => self.rule.message.clone(),
        }
    }

    pub fn hint(&self) -> Option<&str> {
        self.rule.hint.as_deref()
    }
}

/// What the client is told for one `warn` hit (NoticeResponse, severity WARNING, 01000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub rule: String,
    /// The rule's message (with the deciding oracle when it judged a fan-out); the proxy
    /// prefixes `pgshape rule <id>: ` for the NoticeResponse `M` field.
    pub message: String,
    /// NoticeResponse `H` field.
    pub hint: Option<String>,
}

/// What the proxy must do with the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictAction {
    /// Forward it (also when only `observe` rules hit).
    Allow,
    /// Forward it and send these notices before its results.
    Warn { notices: Vec<Notice> },
    /// Do not forward it; answer with ErrorResponse (severity ERROR, [`BLOCKED_SQLSTATE`]).
    Block {
        rule: String,
        /// The rule's message; the proxy wraps it with the rule id for the ErrorResponse.
        message: String,
        /// ErrorResponse `H` field.
        hint: Option<String>,
    },
}

/// The engine's answer for one statement.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Inline for the usual one or two: a hot statement that hits a rule on every execution
    /// (n-plus-one) would otherwise allocate per statement.
    pub hits: SmallVec<[Hit; 2]>,
    pub action: VerdictAction,
}

impl Verdict {
    fn allow() -> Verdict {
        Verdict {
            hits: SmallVec::new(),
            action: VerdictAction::Allow,
        }
    }
}

/// Why an engine could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Rules(#[from] RuleLoadError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The rules, the facts cache, the uniqueness oracle and the counters, shared by all sessions.
#[derive(Debug)]
pub struct RuleEngine {
    rules: RwLock<Arc<RuleSet>>,
    /// Mirrors [`RuleSet::rewrites`] of the current set, so the per-statement rewrite question
    /// costs one atomic load, not the rule set's lock, when no rule rewrites (the default).
    rewrites: std::sync::atomic::AtomicBool,
    config: RwLock<RulesConfig>,
    facts: FactsCache,
    fanout: FanoutCache,
    statics: SharedStatics,
    oracle: Arc<dyn UniquenessOracle>,
    catalog: Option<Arc<CatalogOracle>>,
    metrics: Option<RuleMetrics>,
    pub(crate) stats: Arc<super::api::HitStats>,
    rewriter: Arc<Rewriter>,
    known: Known,
}

/// Holder of the [`KnownStatements`] lookup (a closure, so not `Debug` by itself).
#[derive(Default)]
struct Known(RwLock<Option<KnownStatements>>);

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Known(..)")
    }
}

/// The normalized text of a fingerprint seen before, if any.
pub type KnownStatements = Arc<dyn Fn(Fingerprint) -> Option<String> + Send + Sync>;

/// A rewrite the proxy must send in place of a statement, or (`shadow`) keep beside a
/// prepared statement whose Binds are sampled for shadow verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteAction {
    pub rule: Arc<str>,
    pub sql: bytes::Bytes,
    pub shadow: bool,
}

impl RuleEngine {
    /// Loads the rules `config` names (its `dir`, else the embedded ones) with the heuristic
    /// oracle and no metrics; see [`RuleEngine::from_config`] for the catalog too, and
    /// [`RuleEngine::with_catalog`] / [`RuleEngine::with_metrics`].
    ///
    /// # Errors
    /// When the rules do not load.
    pub fn new(config: RulesConfig) -> Result<RuleEngine, RuleLoadError> {
        let rules = load(&config)?;
        Ok(RuleEngine {
            facts: FactsCache::with_budget(config.facts_cache_size, config.analysis_budget()),
            fanout: FanoutCache::new(config.facts_cache_size),
            statics: SharedStatics::new(config.facts_cache_size),
            rewrites: std::sync::atomic::AtomicBool::new(rules.rewrites),
            rules: RwLock::new(Arc::new(rules)),
            config: RwLock::new(config),
            oracle: Arc::new(HeuristicOracle),
            catalog: None,
            metrics: None,
            stats: Arc::default(),
            rewriter: Arc::new(Rewriter::new(None)),
            known: Known::default(),
        })
    }

    /// As [`RuleEngine::new`], plus a [`CatalogOracle`] when `config.schema_dsn` is set (start
    /// its loader with [`CatalogOracle::spawn_refresher`] on a tokio runtime; it is reachable
    /// through [`RuleEngine::catalog`]).
    ///
    /// # Errors
    /// When the rules do not load or the schema DSN does not parse.
    pub fn from_config(config: RulesConfig) -> Result<RuleEngine, EngineError> {
        let catalog = match &config.schema_dsn {
            Some(dsn) => Some(Arc::new(CatalogOracle::new(
                dsn,
                Duration::from_secs(config.schema_refresh_secs.max(1)),
            )?)),
            None => None,
        };
        let engine = RuleEngine::new(config)?;
        Ok(match catalog {
            Some(catalog) => engine.with_catalog(catalog),
            None => engine,
        })
    }

    /// The catalog oracle, when the configuration has a schema DSN.
    pub fn catalog(&self) -> Option<&Arc<CatalogOracle>> {
        self.catalog.as_ref()
    }

    /// An engine over an already-built rule set (tests, `pgshape check`).
    pub fn from_rule_set(rules: RuleSet) -> RuleEngine {
        RuleEngine {
            facts: FactsCache::new(RulesConfig::default().facts_cache_size),
            fanout: FanoutCache::new(RulesConfig::default().facts_cache_size),
            statics: SharedStatics::new(RulesConfig::default().facts_cache_size),
            rewrites: std::sync::atomic::AtomicBool::new(rules.rewrites),
            rules: RwLock::new(Arc::new(rules)),
            config: RwLock::new(RulesConfig::default()),
            oracle: Arc::new(HeuristicOracle),
            catalog: None,
            metrics: None,
            stats: Arc::default(),
            rewriter: Arc::new(Rewriter::new(None)),
            known: Known::default(),
        }
    }

    /// Uses `oracle` to judge fan-out and table sizes; a [`CatalogOracle`] is also reachable
    /// through [`RuleEngine::catalog`] (on-demand refresh).
    pub fn with_oracle(mut self, oracle: Arc<dyn UniquenessOracle>) -> RuleEngine {
        self.catalog = oracle.clone().as_catalog();
        self.rewriter = Arc::new(Rewriter::new(self.catalog.clone()));
        self.oracle = oracle;
        self
    }

    /// Uses a catalog oracle (and exposes it through [`RuleEngine::catalog`]).
    pub fn with_catalog(mut self, catalog: Arc<CatalogOracle>) -> RuleEngine {
        self.oracle = catalog.clone();
        self.rewriter = Arc::new(Rewriter::new(Some(catalog.clone())));
        self.catalog = Some(catalog);
        self
    }

    /// The rewrite decisions (proofs, kill switch, counters).
    pub fn rewriter(&self) -> &Arc<Rewriter> {
        &self.rewriter
    }

    /// The hit counts, for [`RuleMetrics::register`] to export.
    pub fn hit_stats(&self) -> Arc<super::api::HitStats> {
        self.stats.clone()
    }

    /// Counts hits into `metrics` (see [`RuleMetrics::register`]).
    pub fn with_metrics(mut self, metrics: RuleMetrics) -> RuleEngine {
        self.metrics = Some(metrics);
        self
    }

    /// The current rule set.
    pub fn rules(&self) -> Arc<RuleSet> {
        match self.rules.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Shapes whose text did not parse (they are never matched by structural rules).
    pub fn parse_failures(&self) -> u64 {
        self.facts.parse_failures()
    }

    /// Statements relayed unanalysed because they went past `reason`'s analysis limit.
    pub fn analysis_skipped(&self, reason: crate::sql::analysis::OverBudget) -> u64 {
        self.facts.skipped(reason)
    }

    /// Re-reads the rules from where the configuration says; on error the old rules stay.
    ///
    /// # Errors
    /// The load error (file, line, field), also logged.
    pub fn reload(&self) -> Result<Arc<RuleSet>, RuleLoadError> {
        let config = match self.config.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        self.reload_with(config)
    }

    /// Adopts a new configuration (rules directory, mode) and reloads; on error nothing
    /// changes.
    ///
    /// # Errors
    /// The load error (file, line, field), also logged.
    pub fn reload_with(&self, config: RulesConfig) -> Result<Arc<RuleSet>, RuleLoadError> {
        match load(&config).and_then(|set| self.check_templates(set)) {
            Ok(rules) => {
                let rules = Arc::new(rules);
                tracing::info!(
                    source = %rules.source,
                    rules = rules.rules.len(),
                    mode = ?rules.mode,
                    "rules reloaded"
                );
                match self.rules.write() {
                    Ok(mut guard) => *guard = rules.clone(),
                    Err(poisoned) => *poisoned.into_inner() = rules.clone(),
                }
                self.rewrites
                    .store(rules.rewrites, std::sync::atomic::Ordering::Relaxed);
                match self.config.write() {
                    Ok(mut guard) => *guard = config,
                    Err(poisoned) => *poisoned.into_inner() = config,
                }
                self.rewriter.on_reload();
                if let Some(m) = &self.metrics {
                    m.reloads.with_label_values(&["ok"]).inc();
                }
                Ok(rules)
            }
            Err(error) => {
                tracing::error!(%error, "rule reload failed; keeping the previous rules");
                if let Some(m) = &self.metrics {
                    m.reloads.with_label_values(&["error"]).inc();
                }
                Err(error)
            }
        }
    }

    /// Judges one statement. Call it before forwarding the statement; report every
    /// ReadyForQuery status to `conn` ([`ConnectionRuleState::on_ready_for_query`]).
    ///
    /// Never fails: a statement that does not parse matches no structural rule (it still
    /// counts for `fingerprint`/`comment`/`repeats_gt`-only rules).
    pub fn evaluate(
        &self,
        stmt: &StatementInput<'_>,
        conn: &mut ConnectionRuleState,
        now: Instant,
    ) -> Verdict {
        let set = self.rules();
        if set.rules.is_empty() {
            return Verdict::allow();
        }
        // What the rules that depend on the shape alone decided for this shape on this
        // connection before: under the same rule set, catalog and application name they decide
        // the same again, so a repeated statement skips their evaluation (and its facts).
        let catalog_changes = self.oracle.changes();
        let mut cached = conn.static_matches(
            set.id,
            catalog_changes,
            stmt.application_name,
            stmt.fingerprint,
        );
        // Not remembered by this connection: maybe by another one in the same scope.
        let mut scope = None;
        if cached.is_none() {
            let id = conn.scope(|| {
                self.statics
                    .scope(stmt.database, stmt.user, stmt.application_name)
            });
            scope = Some(id);
            cached = self
                .statics
                .get(stmt.fingerprint, id, set.id, catalog_changes);
            if let Some(shared) = &cached {
                conn.remember_static_matches(stmt.fingerprint, shared.clone());
            }
        }
        if let Some(statics) = &cached
            && statics.iter().all(|m| *m == StaticMatch::No)
        {
            return Verdict::allow();
        }
        let needs = set.needs;
        // A remembered shape needs no facts: its per-execution conditions do not use them.
        // Over the analysis budget, the shape is judged without facts this once; what the
        // rules decide is not remembered, so the shape within budget is judged in full.
        let mut over_budget = false;
        let facts = if cached.is_none() && needs.facts {
            let before = self.facts.parse_failures();
            let facts = self.facts.lookup(stmt.fingerprint, stmt.sql);
            if let Some(m) = &self.metrics {
                if self.facts.parse_failures() > before {
                    m.parse_failures.inc();
                }
                if let Err(over) = facts {
                    m.analysis_skipped.with_label_values(&[over.as_str()]).inc();
                }
            }
            over_budget = facts.is_err();
            facts.unwrap_or(None)
        } else {
            None
        };
        let repeats = if needs.repeats {
            Some(conn.record(
                stmt.fingerprint,
                now,
                needs.repeat_history,
                needs.repeat_window,
            ))
        } else {
            None
        };
        let subject = Subject::new(
            stmt,
            facts.as_deref(),
            self.oracle.as_ref(),
            &self.fanout,
            repeats,
            now,
        );
        let mut hits = SmallVec::new();
        let mut learned = cached
            .is_none()
            .then(|| Vec::with_capacity(set.rules.len()));
        for (i, rule) in set.rules.iter().enumerate() {
            let known = cached.as_ref().and_then(|c| c.get(i).copied());
            let decided = match known {
                Some(StaticMatch::No) => None,
                Some(StaticMatch::Yes(decided_by)) => Some(decided_by),
                Some(StaticMatch::Dynamic(decided_by)) => rule
                    .compiled
                    .matches_execution(&subject)
                    .then_some(decided_by),
                None => {
                    let in_scope = rule.action != Action::Off
                        && rule
                            .scope
                            .applies(stmt.database, stmt.user, stmt.application_name);
                    let shape = if in_scope {
                        rule.compiled.evaluate_shape(&subject)
                    } else {
                        None
                    };
                    let per_execution = rule.compiled.needs.per_execution();
                    if let Some(learned) = &mut learned {
                        learned.push(match shape {
                            None => StaticMatch::No,
                            Some(decided_by) if per_execution => StaticMatch::Dynamic(decided_by),
                            Some(decided_by) => StaticMatch::Yes(decided_by),
                        });
                    }
                    match shape {
                        Some(decided_by) if per_execution => rule
                            .compiled
                            .matches_execution(&subject)
                            .then_some(decided_by),
                        other => other,
                    }
                }
            };
            if let Some(decided_by) = decided {
                let action = effective(rule.action, set.mode);
                if action != Action::Rewrite
                    && let Some(spec) = &rule.rewrite
                {
                    // Observe (and warn, block) show what the rewrite would send.
                    self.rewriter
                        .dry_run(rule, spec, stmt.fingerprint, stmt.database, stmt.sql);
                }
                hits.push(Hit {
                    rule: rule.clone(),
                    action,
                    decided_by,
                });
            }
        }
        if let Some(learned) = learned.filter(|_| !over_budget) {
            let learned: Arc<[StaticMatch]> = learned.into();
            if let Some(scope) = scope {
                self.statics.insert(
                    stmt.fingerprint,
                    scope,
                    set.id,
                    catalog_changes,
                    learned.clone(),
                );
            }
            conn.remember_static_matches(stmt.fingerprint, learned);
        }
        if hits.is_empty() {
            return Verdict::allow();
        }
        self.count(stmt, &hits);
        let action = decide(&hits);
        Verdict { hits, action }
    }

    fn count(&self, stmt: &StatementInput<'_>, hits: &[Hit]) {
        for hit in hits {
            let first = self
                .stats
                .record(&hit.rule.id, stmt.fingerprint, hit.action);
            // The first hit of a rule on a shape is news; repeats (an n+1 loop) are counted,
            // and logged only at debug level.
            macro_rules! log_hit {
                ($level:ident) => {
                    tracing::$level!(
                        target: "pgshape::rules",
                        rule = %hit.rule.id,
                        fingerprint = %stmt.fingerprint,
                        action = hit.action.as_str(),
                        severity = hit.rule.severity.as_str(),
                        decided_by = hit.decided_by.map(OracleKind::as_str),
                        database = stmt.database,
                        user = stmt.user,
                        "rule hit"
                    )
                };
            }
            if first {
                log_hit!(info);
            } else {
                log_hit!(debug);
            }
        }
    }

    /// Ids of the rules that have hit a fingerprint (the `rules` field of a query row).
    pub fn rules_for_fingerprint(&self, fingerprint: Fingerprint) -> Vec<String> {
        self.stats.rules_for(fingerprint)
    }
}

fn load(config: &RulesConfig) -> Result<RuleSet, RuleLoadError> {
    let set = match &config.dir {
        Some(dir) => RuleSet::load_dir(dir, config.mode)?,
        None => RuleSet::embedded(config.mode)?,
    };
    set.with_policy(config.block_on, &config.actions)
}

/// Shadow mode observes what enforce mode would warn about, block or rewrite.
pub(crate) fn effective(action: Action, mode: Mode) -> Action {
    match (mode, action) {
        (Mode::Shadow, Action::Warn | Action::Block | Action::Rewrite) => Action::Observe,
        (_, action) => action,
    }
}

/// Block beats warn beats allow; among blocks the most severe rule (then the first by id) speaks.
fn decide(hits: &[Hit]) -> VerdictAction {
    let blocking = hits
        .iter()
        .filter(|h| h.action == Action::Block)
        .max_by_key(|h| (h.rule.severity, std::cmp::Reverse(h.rule.id.clone())));
    if let Some(hit) = blocking {
        return VerdictAction::Block {
            rule: hit.rule.id.to_string(),
            message: hit.message(),
            hint: hit.hint().map(str::to_owned),
        };
    }
    let notices: Vec<Notice> = hits
        .iter()
        .filter(|h| h.action == Action::Warn)
        .map(|h| Notice {
            rule: h.rule.id.to_string(),
            message: h.message(),
            hint: h.hint().map(str::to_owned),
        })
        .collect();
    if notices.is_empty() {
        VerdictAction::Allow
    } else {
        VerdictAction::Warn { notices }
    }
}
