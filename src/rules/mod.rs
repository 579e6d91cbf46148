//! Query-shape rules: declarative TOML rules matched against analysis facts, with actions.
//!
//! Why this exists: the incident behind pgshape was a `SELECT DISTINCT` over a one-to-many
//! join that nothing flagged in staging. Rules catch such shapes on live traffic (in the proxy)
//! and in captured traffic (`pgshape check`).
//!
//! The parts:
//! - [`spec`]: the rule file format (one rule per `*.toml`) and its loader, whose errors name
//!   file, line and field; the shipped rules are embedded in the binary ([`embedded`]).
//! - [`matcher`]: a rule's `match` table, compiled once, evaluated against
//!   [`crate::sql::analysis::Facts`] plus per-execution values.
//! - [`oracle`] and [`catalog`]: whether a join *fans out* (repeats rows of the relations before
//!   it), decided by a [`UniquenessOracle`]: the schema catalog when a schema DSN is configured,
//!   else a documented naming heuristic. Every hit records which one decided.
//! - [`engine`]: [`RuleEngine::evaluate`], the call the proxy makes per statement, with the
//!   hot-reloadable rule set, the per-connection n-plus-one state ([`ConnectionRuleState`]),
//!   metrics and the `/api/rules` JSON ([`api`]).
//! - [`check`]: the `pgshape check` staging guard over SQL files and logs.

pub mod api;
pub mod catalog;
pub mod check;
pub mod embedded;
pub mod engine;
pub mod gate;
pub mod glob;
pub mod matcher;
pub mod metrics;
pub mod oracle;
mod shared;
pub mod spec;
pub mod state;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use catalog::CatalogOracle;
pub use engine::{
    BLOCKED_SQLSTATE, EngineError, Hit, Notice, RuleEngine, StatementInput, Verdict, VerdictAction,
    WARNING_SQLSTATE,
};
pub use metrics::RuleMetrics;
pub use oracle::{HeuristicOracle, OracleKind, Uniqueness, UniquenessOracle};
pub use spec::{RuleLoadError, RuleSet};
pub use state::ConnectionRuleState;

/// How bad a hit is; `pgshape check --fail-on` compares against it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The rule is loaded but never evaluated.
    Off,
    /// Count and log the hit.
    #[default]
    Observe,
    /// As observe, plus a NoticeResponse (WARNING, SQLSTATE 01000) to the client.
    Warn,
    /// Do not execute; the client gets an ErrorResponse with [`BLOCKED_SQLSTATE`].
    Block,
    /// Send the server an equivalent statement instead, once it is proven (see
    /// [`crate::rewrite`]); until then, and whenever it cannot be proven, as observe.
    Rewrite,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Observe => "observe",
            Action::Warn => "warn",
            Action::Block => "block",
            Action::Rewrite => "rewrite",
        }
    }
}

impl std::str::FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Action, String> {
        match s {
            "off" => Ok(Action::Off),
            "observe" => Ok(Action::Observe),
            "warn" => Ok(Action::Warn),
            "block" => Ok(Action::Block),
            "rewrite" => Ok(Action::Rewrite),
            other => Err(format!(
                "unknown action `{other}`, expected off, observe, warn, block or rewrite"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Global mode: `shadow` downgrades warn and block to observe, so a rule can be measured on
/// production traffic before it is allowed to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// The `[rules]` table of the configuration file.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Directory of `*.toml` rule files; `None` uses the rules embedded in the binary.
    pub dir: Option<PathBuf>,
    pub mode: Mode,
    /// Monitoring connection string for catalog lookups (primary keys, unique indexes, foreign
    /// keys, table sizes); its database name is replaced by each statement's database.
    pub schema_dsn: Option<String>,
    /// How often the catalog of each known database is re-read, in seconds.
    pub schema_refresh_secs: u64,
    /// Most statement shapes whose facts are cached.
    pub facts_cache_size: usize,
    /// The staging guard: every `observe` or `warn` rule of at least this severity blocks
    /// (`--block-on`). Unset in the shipped configuration, which never blocks.
    pub block_on: Option<Severity>,
    /// Per-rule action overrides by rule id (`[rules.actions]`, `--rule-action ID=ACTION`);
    /// they win over `block_on` and over the rule files.
    pub actions: std::collections::BTreeMap<String, Action>,
    /// Statements longer than this many bytes are relayed unanalysed (counted in
    /// `pgshape_analysis_skipped_total{reason="size"}`).
    pub analysis_max_bytes: usize,
    /// Statements with brackets nested deeper than this are relayed unanalysed
    /// (`reason="depth"`).
    pub analysis_max_depth: usize,
}

/// By hand, so the schema DSN (which may carry a password) never reaches a log or panic message.
impl fmt::Debug for RulesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RulesConfig")
            .field("dir", &self.dir)
            .field("mode", &self.mode)
            .field(
                "schema_dsn",
                &self.schema_dsn.as_ref().map(|_| format_args!("***")),
            )
            .field("schema_refresh_secs", &self.schema_refresh_secs)
            .field("facts_cache_size", &self.facts_cache_size)
            .field("analysis_max_bytes", &self.analysis_max_bytes)
            .field("analysis_max_depth", &self.analysis_max_depth)
            .field("block_on", &self.block_on)
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

impl RulesConfig {
    /// The limits within which statements are parsed for their facts.
    pub fn analysis_budget(&self) -> crate::sql::analysis::Budget {
        crate::sql::analysis::Budget {
            max_bytes: self.analysis_max_bytes,
            max_depth: self.analysis_max_depth,
        }
    }
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: None,
            mode: Mode::Enforce,
            schema_dsn: None,
            schema_refresh_secs: 300,
            facts_cache_size: 20_000,
            block_on: None,
            actions: std::collections::BTreeMap::new(),
            analysis_max_bytes: crate::sql::analysis::Budget::default().max_bytes,
            analysis_max_depth: crate::sql::analysis::Budget::default().max_depth,
        }
    }
}
