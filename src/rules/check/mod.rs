//! `pgshape check`: the staging guard outside the proxy.
//!
//! Runs the rules over captured SQL (files, PostgreSQL logs, pgshape's JSON statement log) and
//! reports each hit with file:line, rule, severity and hint, so a CI job can fail on a bad
//! query shape before it reaches production. `main.rs` maps the flags onto [`CheckOptions`] and
//! the outcome onto the exit code ([`CheckOutcome::failed`] → 1).
//!
//! A hit whose rule rewrites (action `rewrite`, or the dry run of an observing rule) also shows
//! the rewrite it would get, proven as the proxy proves it, or why there is none ([`rewrite`]).
//!
//! Each statement is judged on its own (a file is not a connection), so rules that count
//! repetition on a connection (`repeats_gt`, i.e. `n-plus-one`) never hit here.

pub mod input;
pub mod pgss;
pub mod report;
pub mod rewrite;

#[cfg(test)]
mod tests;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use input::InputKind;
pub use report::Format;

use super::catalog::{CatalogError, CatalogOracle};
use super::oracle::UniquenessOracle;
use super::spec::{RuleLoadError, RuleSet};
use super::{ConnectionRuleState, Mode, RuleEngine, Severity, StatementInput};
use report::{Finding, Totals};

/// What to check and how to report it.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Files to read; `-` is standard input.
    pub inputs: Vec<PathBuf>,
    /// Rules directory; `None` uses the shipped rules.
    pub rules_dir: Option<PathBuf>,
    pub format: Format,
    /// Exit status 1 when a hit has at least this severity.
    pub fail_on: Severity,
    /// Input form; `None` detects it per input.
    pub kind: Option<InputKind>,
    /// Database name for catalog lookups when the input does not say (default: the DSN's).
    pub database: Option<String>,
    /// Uniqueness oracle; `None` is the heuristic. See [`catalog_oracle`].
    pub oracle: Option<Arc<dyn UniquenessOracle>>,
    /// Statements read beforehand (e.g. by [`pgss::read`]), checked after the files, under
    /// the given input name.
    pub preloaded: Vec<(String, Vec<input::Statement>)>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            inputs: Vec::new(),
            rules_dir: None,
            format: Format::Human,
            fail_on: Severity::Error,
            kind: None,
            database: None,
            oracle: None,
            preloaded: Vec::new(),
        }
    }
}

/// The result of a check run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOutcome {
    pub statements: usize,
    pub hits: usize,
    pub parse_failures: usize,
    /// A hit at or above `fail_on`: exit with status 1.
    pub failed: bool,
}

/// Why a check could not run at all (a rule hit is not an error).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Rules(#[from] RuleLoadError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
}

/// Loads the catalog of the DSN's database for `--schema-dsn` (call before [`run`]).
///
/// # Errors
/// When the DSN is invalid or the catalog cannot be read.
pub async fn catalog_oracle(dsn: &str) -> Result<Arc<CatalogOracle>, CatalogError> {
    let oracle = CatalogOracle::new(dsn, Duration::from_secs(3600))?;
    let database = oracle.default_database().unwrap_or("postgres").to_owned();
    oracle.refresh(&database).await?;
    Ok(Arc::new(oracle))
}

/// Checks every input, standard input for `-`.
///
/// # Errors
/// When the rules do not load, an input cannot be read, or the report cannot be written.
pub fn run(opts: &CheckOptions, out: &mut dyn Write) -> Result<CheckOutcome, CheckError> {
    run_with_stdin(opts, &mut std::io::stdin().lock(), out)
}

/// [`run`] with an explicit standard input (for tests).
///
/// # Errors
/// As [`run`].
pub fn run_with_stdin(
    opts: &CheckOptions,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<CheckOutcome, CheckError> {
    // Enforce mode: check reports what each rule is configured to do.
    let rules = match &opts.rules_dir {
        Some(dir) => RuleSet::load_dir(dir, Mode::Enforce)?,
        None => RuleSet::embedded(Mode::Enforce)?,
    };
    let mut engine = RuleEngine::from_rule_set(rules);
    if let Some(oracle) = &opts.oracle {
        engine = engine.with_oracle(oracle.clone());
    }
    // The catalog behind the oracle, when --schema-dsn gave one: rewrites are proven from it.
    let catalog = opts.oracle.clone().and_then(|o| o.as_catalog());
    // A statement without a database of its own is judged in the DSN's (the one
    // [`catalog_oracle`] loaded).
    let default_db = opts
        .database
        .clone()
        .or_else(|| {
            catalog
                .as_ref()
                .map(|c| c.default_database().unwrap_or("postgres").to_owned())
        })
        .unwrap_or_default();
    let mut pending: Vec<(usize, rewrite::Pending)> = Vec::new();
    let mut findings = Vec::new();
    let mut checked = Vec::new();
    let mut totals = Totals::default();
    let mut inputs = Vec::with_capacity(opts.inputs.len() + opts.preloaded.len());
    for path in &opts.inputs {
        let (name, text) = read_input(path, stdin)?;
        let kind = opts.kind.unwrap_or_else(|| input::detect(&text));
        inputs.push((name, input::statements(&text, kind)));
    }
    inputs.extend(opts.preloaded.iter().cloned());
    for (name, statements) in inputs {
        for stmt in statements {
            totals.statements += 1;
            checked.push((name.clone(), stmt.line));
            let sql = stmt.sql.as_bytes();
            if crate::sql::analysis::analyze(sql).is_err() {
                totals.parse_failures += 1;
            }
            let database = if stmt.database.is_empty() {
                &default_db
            } else {
                &stmt.database
            };
            let fingerprint = crate::sql::fingerprint(sql);
            let input = StatementInput {
                sql,
                fingerprint,
                database,
                user: &stmt.user,
                application_name: &stmt.application_name,
            };
            let verdict = engine.evaluate(&input, &mut ConnectionRuleState::new(), Instant::now());
            for hit in verdict.hits {
                // Whatever the action: an observing rule shows what it would send.
                if let Some(spec) = &hit.rule.rewrite {
                    pending.push((
                        findings.len(),
                        rewrite::Pending {
                            spec: spec.clone(),
                            sql: stmt.sql.clone(),
                            database: database.clone(),
                        },
                    ));
                }
                findings.push(Finding {
                    file: name.clone(),
                    line: stmt.line,
                    rule: hit.id().to_owned(),
                    severity: hit.severity(),
                    action: hit.action.as_str().to_owned(),
                    message: hit.message(),
                    hint: hit.hint().map(str::to_owned),
                    fingerprint: fingerprint.to_string(),
                    decided_by: hit.decided_by.map(|k| k.as_str().to_owned()),
                    statement: display_sql(&stmt.sql),
                    note: stmt.note.clone(),
                    rewrite: None,
                });
            }
        }
    }
    let (at, jobs): (Vec<usize>, Vec<rewrite::Pending>) = pending.into_iter().unzip();
    for (i, info) in at
        .into_iter()
        .zip(rewrite::resolve(&jobs, catalog.as_ref()))
    {
        findings[i].rewrite = Some(info);
    }
    totals.hits = findings.len();
    report::write(opts.format, &findings, &checked, totals, out)?;
    Ok(CheckOutcome {
        statements: totals.statements,
        hits: totals.hits,
        parse_failures: totals.parse_failures,
        failed: findings.iter().any(|f| f.severity >= opts.fail_on),
    })
}

fn read_input(path: &PathBuf, stdin: &mut dyn Read) -> Result<(String, String), CheckError> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        stdin
            .read_to_string(&mut text)
            .map_err(|source| CheckError::Read {
                path: "<stdin>".into(),
                source,
            })?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read_to_string(path).map_err(|source| CheckError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok((path.display().to_string(), text))
}

/// The statement on one line without its leading comments, cut at 160 characters.
fn display_sql(sql: &str) -> String {
    let body: Vec<&str> = sql
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .collect();
    let one_line = body.join(" ");
    match one_line.char_indices().nth(160) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}
