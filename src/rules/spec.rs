//! Rule files: one rule per `*.toml`, loaded into an immutable [`RuleSet`].
//!
//! ```toml
//! id = "distinct-over-fanout-join"
//! description = "SELECT DISTINCT over a join that repeats rows"
//! rationale = "why the shape is slow"          # optional
//! severity = "warning"                         # info | warning | error
//! action = "warn"                              # off | observe | warn | block (default observe)
//! message = "DISTINCT de-duplicates rows that a one-to-many join multiplied"
//! hint = "use EXISTS / a semi-join instead"    # optional
//!
//! [scope]                                      # optional; every key is a glob list
//! databases = ["shop*"]
//! users = ["app"]
//! application_name = "django*"                 # a single glob
//!
//! [match]                                      # see `super::matcher` for the vocabulary
//! distinct_over_fanout_join = true
//! ```
//!
//! Unknown keys are errors, and every error names file, line and field, because a rule file
//! that silently does nothing is worse than one that fails to load.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::glob::glob_match;
use super::matcher::{CompiledMatch, MatchSpec, Needs};
use super::{Action, Mode, Severity};

/// Why a rule set could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuleLoadError {
    #[error("{file}:{line}:{column}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        field: Option<String>,
        message: String,
    },
    #[error("cannot read rules from {path}: {message}")]
    Io { path: String, message: String },
    #[error("[rules.actions] / --rule-action: {message}")]
    Override { message: String },
}

/// `[scope]`: where a rule applies; an empty list means everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeSpec {
    pub databases: Vec<String>,
    pub users: Vec<String>,
    pub application_name: Option<String>,
}

impl ScopeSpec {
    /// Whether a session is in scope.
    pub fn applies(&self, database: &str, user: &str, application_name: &str) -> bool {
        (self.databases.is_empty() || self.databases.iter().any(|p| glob_match(p, database)))
            && (self.users.is_empty() || self.users.iter().any(|p| glob_match(p, user)))
            && self
                .application_name
                .as_ref()
                .is_none_or(|p| glob_match(p, application_name))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: Spanned<String>,
    description: String,
    #[serde(default)]
    rationale: Option<String>,
    severity: Severity,
    #[serde(default)]
    action: Action,
    #[serde(default)]
    scope: ScopeSpec,
    message: String,
    #[serde(default)]
    hint: Option<String>,
    #[serde(rename = "match")]
    matcher: Spanned<MatchSpec>,
    #[serde(default)]
    rewrite: Option<Spanned<RewriteFile>>,
}

/// `[rewrite]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteFile {
    #[serde(default)]
    sql: Option<Spanned<String>>,
    #[serde(default)]
    verify: Verify,
    #[serde(default)]
    sample_rate: Option<Spanned<f64>>,
}

/// How a rewrite is checked against the original on live traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verify {
    /// Applied once proven; no comparison of results.
    #[default]
    None,
    /// Clients keep getting the original; a sample of read-only executions outside transaction
    /// blocks runs both statements on a side connection and compares their results.
    Shadow,
}

/// The `[rewrite]` table of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteSpec {
    /// The operator's hot-patch; `None` for the built-in semi-join rewrite.
    pub template: Option<Arc<crate::rewrite::template::Template>>,
    pub verify: Verify,
    /// Share of executions shadow-verified (0 < rate <= 1).
    pub sample_rate: f64,
    /// Line of `sql =` in the rule file, for errors found later (at a reload).
    pub sql_line: usize,
}

/// Default share of executions shadow-verified.
pub const DEFAULT_SAMPLE_RATE: f64 = 0.01;

/// A loaded rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: Arc<str>,
    pub description: String,
    pub rationale: Option<String>,
    pub severity: Severity,
    pub action: Action,
    pub scope: ScopeSpec,
    pub message: String,
    pub hint: Option<String>,
    pub matcher: MatchSpec,
    /// How the statement is rewritten (action `rewrite`, or the dry run of observe/warn).
    pub rewrite: Option<RewriteSpec>,
    /// The file it came from (`embedded:NAME` for the shipped rules).
    pub file: String,
    pub(crate) compiled: CompiledMatch,
}

/// An immutable set of rules plus the global mode; swapped whole on reload.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Arc<Rule>>,
    pub mode: Mode,
    /// Where the rules came from: a directory or `embedded`.
    pub source: String,
    pub(crate) needs: Needs,
    /// Some rule rewrites: the proxy asks [`super::RuleEngine::rewrite`] for each statement.
    pub rewrites: bool,
    /// Distinct for every set built in this process (an address could be reused after a
    /// reload; this cannot).
    pub(crate) id: u64,
}

static NEXT_SET_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl RuleSet {
    /// Builds a set from `(file name, TOML text)` pairs.
    ///
    /// # Errors
    /// On the first invalid file, naming file, line and field; or on a duplicate rule id.
    pub fn from_sources(
        source: &str,
        files: &[(String, String)],
        mode: Mode,
    ) -> Result<RuleSet, RuleLoadError> {
        let mut rules: Vec<Arc<Rule>> = Vec::with_capacity(files.len());
        for (file, text) in files {
            let rule = parse_rule(file, text)?;
            if let Some(first) = rules.iter().find(|r| r.id == rule.id) {
                let (line, column) = line_col(text, 0);
                return Err(RuleLoadError::Invalid {
                    file: file.clone(),
                    line,
                    column,
                    field: Some("id".into()),
                    message: format!("duplicate rule id `{}` (also in {})", rule.id, first.file),
                });
            }
            rules.push(Arc::new(rule));
        }
        let needs = rules
            .iter()
            .filter(|r| r.action != Action::Off)
            .fold(Needs::default(), |n, r| n.union(r.compiled.needs));
        let rewrites = rules.iter().any(|r| r.action == Action::Rewrite);
        Ok(RuleSet {
            rules,
            mode,
            source: source.to_owned(),
            needs,
            rewrites,
            id: NEXT_SET_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Loads every `*.toml` in `dir` (sorted by name, not recursive).
    ///
    /// # Errors
    /// When the directory cannot be read or a file is invalid.
    pub fn load_dir(dir: &Path, mode: Mode) -> Result<RuleSet, RuleLoadError> {
        let io = |e: std::io::Error| RuleLoadError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|e| RuleLoadError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            files.push((path.display().to_string(), text));
        }
        if files.is_empty() {
            tracing::warn!(dir = %dir.display(), "no *.toml rule files; no rules are active");
        }
        RuleSet::from_sources(&dir.display().to_string(), &files, mode)
    }

    /// The rules shipped in the binary.
    ///
    /// # Errors
    /// Only if a shipped rule is broken (a test guards against it).
    pub fn embedded(mode: Mode) -> Result<RuleSet, RuleLoadError> {
        let files: Vec<(String, String)> = super::embedded::SHIPPED
            .iter()
            .map(|(name, text)| (format!("embedded:{name}"), (*text).to_owned()))
            .collect();
        RuleSet::from_sources("embedded", &files, mode)
    }

    /// Applies the deployment's action policy (`[rules] block_on` and `[rules.actions]`) over
    /// the actions written in the rule files, so that the same files serve production
    /// (observe) and a staging guard (block) without being edited.
    ///
    /// # Errors
    /// An override naming a rule that no file defines (a typo would otherwise silently guard
    /// nothing), or `rewrite` for a rule that has no rewrite.
    pub fn with_policy(
        mut self,
        block_on: Option<Severity>,
        actions: &std::collections::BTreeMap<String, Action>,
    ) -> Result<RuleSet, RuleLoadError> {
        for id in actions.keys() {
            if self.get(id).is_none() {
                let known: Vec<&str> = self.rules.iter().map(|r| &*r.id).collect();
                return Err(RuleLoadError::Override {
                    message: format!(
                        "no rule has id `{id}` in {} (rules: {})",
                        self.source,
                        known.join(", ")
                    ),
                });
            }
        }
        for rule in &mut self.rules {
            let action = match actions.get(&*rule.id) {
                Some(&Action::Rewrite) if rule.rewrite.is_none() => {
                    return Err(RuleLoadError::Override {
                        message: format!(
                            "rule `{}` has no rewrite (action `rewrite` needs a [rewrite] sql \
                             template or the built-in semi-join shape)",
                            rule.id
                        ),
                    });
                }
                Some(&action) => action,
                None if block_on.is_some_and(|level| rule.severity >= level)
                    && matches!(rule.action, Action::Observe | Action::Warn) =>
                {
                    Action::Block
                }
                None => continue,
            };
            if action != rule.action {
                Arc::make_mut(rule).action = action;
            }
        }
        self.needs = self
            .rules
            .iter()
            .filter(|r| r.action != Action::Off)
            .fold(Needs::default(), |n, r| n.union(r.compiled.needs));
        self.rewrites = self.rules.iter().any(|r| r.action == Action::Rewrite);
        Ok(self)
    }

    /// A rule by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| &*r.id == id)
    }
}

fn parse_rule(file: &str, text: &str) -> Result<Rule, RuleLoadError> {
    let parsed: RuleFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        let message = e.message().trim().to_owned();
        RuleLoadError::Invalid {
            file: file.to_owned(),
            line,
            column,
            field: field_named(&message).or_else(|| key_at(text, offset)),
            message,
        }
    })?;
    let invalid = |offset: usize, field: &str, message: String| {
        let (line, column) = line_col(text, offset);
        RuleLoadError::Invalid {
            file: file.to_owned(),
            line,
            column,
            field: Some(field.to_owned()),
            message,
        }
    };
    let id = parsed.id.get_ref().trim();
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            parsed.id.span().start,
            "id",
            format!("rule id `{id}` must be non-empty letters, digits, `-` or `_`"),
        ));
    }
    let match_span = parsed.matcher.span();
    let spec = parsed.matcher.into_inner();
    if spec.is_empty() {
        return Err(invalid(
            match_span.start,
            "match",
            "the [match] table is empty; a rule must say what it matches".into(),
        ));
    }
    if spec.repeat_window_ms.is_some() && spec.repeats_gt.is_none() {
        return Err(invalid(
            match_span.start,
            "match.repeat_window_ms",
            "repeat_window_ms needs repeats_gt".into(),
        ));
    }
    let line_of = |offset: usize| line_col(text, offset).0;
    let rewrite = rewrite_spec(
        parsed.rewrite,
        parsed.action,
        &spec,
        &invalid,
        &line_of,
        match_span.start,
    )?;
    Ok(Rule {
        id: Arc::from(id),
        description: parsed.description,
        rationale: parsed.rationale,
        severity: parsed.severity,
        action: parsed.action,
        scope: parsed.scope,
        message: parsed.message,
        hint: parsed.hint,
        compiled: CompiledMatch::new(spec.clone()),
        matcher: spec,
        rewrite,
        file: file.to_owned(),
    })
}

/// Whether a match selects the shapes the built-in semi-join rewrite is for.
pub fn matches_fanout_shape(spec: &MatchSpec) -> bool {
    spec.distinct_over_fanout_join == Some(true)
        || spec.count_distinct_over_fanout_join == Some(true)
}

/// Validates `[rewrite]` against the action and the match.
fn rewrite_spec(
    file: Option<Spanned<RewriteFile>>,
    action: Action,
    spec: &MatchSpec,
    invalid: &dyn Fn(usize, &str, String) -> RuleLoadError,
    line_of: &dyn Fn(usize) -> usize,
    match_start: usize,
) -> Result<Option<RewriteSpec>, RuleLoadError> {
    let builtin = matches_fanout_shape(spec);
    let Some(file) = file else {
        if action == Action::Rewrite && !builtin {
            return Err(invalid(
                match_start,
                "action",
                "action `rewrite` needs a [rewrite] sql template (with [match] fingerprint), or a \
                 match on distinct_over_fanout_join / count_distinct_over_fanout_join for the \
                 built-in semi-join rewrite"
                    .into(),
            ));
        }
        return Ok(builtin.then_some(RewriteSpec {
            template: None,
            verify: Verify::None,
            sample_rate: DEFAULT_SAMPLE_RATE,
            sql_line: 0,
        }));
    };
    let table_start = file.span().start;
    let file = file.into_inner();
    let sample_rate = match file.sample_rate {
        Some(rate) if !(*rate.get_ref() > 0.0 && *rate.get_ref() <= 1.0) => {
            return Err(invalid(
                rate.span().start,
                "rewrite.sample_rate",
                format!("sample_rate must be in (0, 1], got {}", rate.get_ref()),
            ));
        }
        Some(rate) => *rate.get_ref(),
        None => DEFAULT_SAMPLE_RATE,
    };
    let mut sql_line = 0;
    let template = match file.sql {
        None if !builtin => {
            return Err(invalid(
                table_start,
                "rewrite.sql",
                "[rewrite] needs sql = \"...\" unless the rule matches \
                 distinct_over_fanout_join / count_distinct_over_fanout_join"
                    .into(),
            ));
        }
        None => None,
        Some(sql) => {
            let at = sql.span().start;
            sql_line = line_of(at);
            let one_fingerprint = spec
                .fingerprint
                .as_ref()
                .is_some_and(|f| f.as_slice().len() == 1);
            if !one_fingerprint {
                return Err(invalid(
                    at,
                    "rewrite.sql",
                    "a [rewrite] sql template is written for one statement shape: [match] needs \
                     fingerprint = \"<16 hex digits>\""
                        .into(),
                ));
            }
            let text = sql.into_inner();
            if let Err(error) = crate::sql::analysis::parse_one(&text) {
                return Err(invalid(
                    at,
                    "rewrite.sql",
                    format!("the template does not parse: {error}"),
                ));
            }
            let template = crate::rewrite::template::Template::parse(&text)
                .map_err(|e| invalid(at, "rewrite.sql", e.to_string()))?;
            Some(Arc::new(template))
        }
    };
    Ok(Some(RewriteSpec {
        template,
        verify: file.verify,
        sample_rate,
        sql_line,
    }))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, column)
}

/// The field a serde message names (`unknown field `x``, `missing field `x``).
fn field_named(message: &str) -> Option<String> {
    for prefix in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = message.split(prefix).nth(1) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    None
}

/// The key on the line holding `offset` (`key = value`), or the table of a `[header]` line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?.trim();
    if let Some(header) = line.strip_prefix('[') {
        return header.split(']').next().map(|h| h.trim().to_owned());
    }
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_owned())
}
