//! The rule engine's rewrite side: which `rewrite` rule applies to a statement and what the
//! [`crate::rewrite::Rewriter`] decided for it, shadow samples at Bind, and the reload-time check
//! of hot-patch templates against the shapes seen so far.

use std::time::Instant;

use super::{KnownStatements, RewriteAction, RuleEngine, StatementInput, effective};
use crate::rewrite::Decision;
use crate::rules::matcher::Subject;
use crate::rules::spec::RuleSet;
use crate::rules::{Action, RuleLoadError};
use crate::sql::Fingerprint;

impl RuleEngine {
    /// Tells the engine how to find the normalized text of a shape seen before (the query
    /// statistics): a reload then checks each hot-patch template against its shape's slots.
    pub fn set_known_statements(&self, known: KnownStatements) {
        match self.known.0.write() {
            Ok(mut guard) => *guard = Some(known),
            Err(poisoned) => *poisoned.into_inner() = Some(known),
        }
    }

    /// Refuses a rule set whose hot-patch template cannot fit its shape: a slot the statement
    /// does not have, or a single-value use of a slot that is a list of values. (The result
    /// shape is checked by a Describe before the template is ever applied.)
    pub(super) fn check_templates(&self, set: RuleSet) -> Result<RuleSet, RuleLoadError> {
        let known = match self.known.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Some(known) = known else { return Ok(set) };
        for rule in &set.rules {
            let Some(spec) = &rule.rewrite else { continue };
            let (Some(template), Some(fingerprints)) = (&spec.template, &rule.matcher.fingerprint)
            else {
                continue;
            };
            for fp in fingerprints.as_slice() {
                let Some(normalized) = known(fp.0) else {
                    continue;
                };
                let slots = crate::rewrite::template::slot_count(&normalized);
                let invalid = |message: String| RuleLoadError::Invalid {
                    file: rule.file.clone(),
                    line: spec.sql_line,
                    column: 1,
                    field: Some("rewrite.sql".into()),
                    message,
                };
                if template.max_slot() > slots {
                    return Err(invalid(format!(
                        "the template uses slot ${} but statement {} has only {slots} constant \
                         slot(s): {normalized}",
                        template.max_slot(),
                        fp.0
                    )));
                }
                for list in crate::rewrite::template::list_slots(&normalized) {
                    if template.uses_as_scalar(list) {
                        return Err(invalid(format!(
                            "slot ${list} is a list of values in statement {} (IN (...)) but the \
                             template uses it where only one value fits",
                            fp.0
                        )));
                    }
                }
            }
        }
        Ok(set)
    }

    /// The rewrite to send in place of `stmt`, if a `rewrite` rule matches it and its rewrite
    /// is proven for this shape and database (see [`crate::rewrite`]). Call it where the
    /// statement's text goes to the server: each simple-protocol statement, each Parse.
    pub fn rewrite(
        &self,
        stmt: &StatementInput<'_>,
        in_transaction: bool,
        now: Instant,
    ) -> Option<RewriteAction> {
        if !self.rewrites.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let set = self.rules();
        if !set.rewrites {
            return None;
        }
        let facts = self.facts.get_or_analyze(stmt.fingerprint, stmt.sql);
        let subject = Subject::new(
            stmt,
            facts.as_deref(),
            self.oracle.as_ref(),
            &self.fanout,
            None,
            now,
        );
        for rule in &set.rules {
            let Some(spec) = &rule.rewrite else { continue };
            if effective(rule.action, set.mode) != Action::Rewrite
                || !rule
                    .scope
                    .applies(stmt.database, stmt.user, stmt.application_name)
                || rule.compiled.evaluate(&subject).is_none()
            {
                continue;
            }
            return match self.rewriter.decide(
                rule,
                spec,
                stmt.fingerprint,
                stmt.database,
                stmt.sql,
                in_transaction,
            ) {
                Decision::Apply(sql) => Some(RewriteAction {
                    rule: rule.id.clone(),
                    sql,
                    shadow: false,
                }),
                Decision::Shadow {
                    rewritten,
                    at_bind: true,
                } => Some(RewriteAction {
                    rule: rule.id.clone(),
                    sql: rewritten,
                    shadow: true,
                }),
                Decision::Shadow { at_bind: false, .. } | Decision::Keep => None,
            };
        }
        None
    }

    /// A Bind of a prepared statement under shadow verification: sampled at the rule's rate,
    /// its parameters go with both statements to the side connection.
    pub fn shadow_bind(
        &self,
        fingerprint: Fingerprint,
        database: &str,
        original: &[u8],
        target: &crate::event::ShadowTarget,
        params: &[u8],
    ) {
        let set = self.rules();
        let Some(spec) = set.get(&target.rule).and_then(|rule| rule.rewrite.as_ref()) else {
            return;
        };
        self.rewriter.shadow_bind(
            fingerprint,
            database,
            original,
            target,
            spec.sample_rate,
            params,
        );
    }
}
