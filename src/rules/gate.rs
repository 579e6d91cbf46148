//! The rule engine behind the proxy's [`StatementGate`] contract: one [`RuleSessionGate`] per
//! client session carries that session's [`ConnectionRuleState`].

use std::sync::Arc;
use std::time::Instant;

use super::engine::{RuleEngine, StatementInput, VerdictAction};
use super::state::ConnectionRuleState;
use crate::event::{self, SessionGate, SessionInfo, StatementGate, StatementText};
use crate::sql::Fingerprint;

impl StatementGate for Arc<RuleEngine> {
    fn open_session(&self) -> Box<dyn SessionGate> {
        Box::new(RuleSessionGate {
            engine: self.clone(),
            state: ConnectionRuleState::new(),
        })
    }
}

/// One session's view of the rules.
#[derive(Debug)]
pub struct RuleSessionGate {
    engine: Arc<RuleEngine>,
    state: ConnectionRuleState,
}

impl SessionGate for RuleSessionGate {
    fn check(
        &mut self,
        statement: &StatementText,
        session: &SessionInfo,
        in_transaction: bool,
        now: Instant,
    ) -> event::Verdict {
        self.state.observe_transaction(in_transaction);
        let input = statement_input(statement, session);
        let verdict = self.engine.evaluate(&input, &mut self.state, now);
        match verdict.action {
            VerdictAction::Allow => event::Verdict::default(),
            VerdictAction::Warn { notices } => event::Verdict {
                warnings: notices
                    .into_iter()
                    .map(|n| event::Notice {
                        rule: n.rule,
                        message: n.message,
                        hint: n.hint,
                    })
                    .collect(),
                block: None,
            },
            VerdictAction::Block {
                rule,
                message,
                hint,
            } => event::Verdict {
                warnings: Vec::new(),
                block: Some(event::Notice {
                    rule,
                    message,
                    hint,
                }),
            },
        }
    }

    fn rewrite(
        &mut self,
        statement: &StatementText,
        session: &SessionInfo,
        in_transaction: bool,
        now: Instant,
    ) -> Option<event::Rewrite> {
        let input = statement_input(statement, session);
        self.engine
            .rewrite(&input, in_transaction, now)
            .map(|r| event::Rewrite {
                rule: r.rule,
                sql: r.sql,
                shadow: r.shadow,
            })
    }

    fn shadow_bind(
        &mut self,
        statement: &StatementText,
        target: &event::ShadowTarget,
        session: &SessionInfo,
        params: &[u8],
    ) {
        self.engine.shadow_bind(
            fingerprint_of(statement),
            &session.database,
            &statement.sql,
            target,
            params,
        );
    }

    fn on_ready_for_query(&mut self, status: u8) {
        self.state.on_ready_for_query(status);
    }
}

/// The statement's fingerprint: the proxy's, or computed here when it has none.
fn fingerprint_of(statement: &StatementText) -> Fingerprint {
    statement
        .fingerprint
        .unwrap_or_else(|| crate::sql::fingerprint(&statement.sql))
}

/// What the engine judges: the statement with its session's database, user and application.
fn statement_input<'a>(
    statement: &'a StatementText,
    session: &'a SessionInfo,
) -> StatementInput<'a> {
    StatementInput {
        sql: &statement.sql,
        fingerprint: fingerprint_of(statement),
        database: &session.database,
        user: &session.user,
        application_name: &session.application_name,
    }
}
