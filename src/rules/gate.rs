//! The rule engine behind the proxy's [`StatementGate`] contract: one [`RuleSessionGate`] per
//! client session carries that session's [`ConnectionRuleState`].

use std::sync::Arc;
use std::time::Instant;

use super::engine::{RuleEngine, StatementInput, VerdictAction};
use super::state::ConnectionRuleState;
use crate::event::{self, SessionGate, SessionInfo, StatementGate, StatementText};

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
        let fingerprint = statement
            .fingerprint
            .unwrap_or_else(|| crate::sql::fingerprint(&statement.sql));
        let input = StatementInput {
            sql: &statement.sql,
            fingerprint,
            database: &session.database,
            user: &session.user,
            application_name: &session.application_name,
        };
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
        let fingerprint = statement
            .fingerprint
            .unwrap_or_else(|| crate::sql::fingerprint(&statement.sql));
        let input = StatementInput {
            sql: &statement.sql,
            fingerprint,
            database: &session.database,
            user: &session.user,
            application_name: &session.application_name,
        };
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
        let fingerprint = statement
            .fingerprint
            .unwrap_or_else(|| crate::sql::fingerprint(&statement.sql));
        self.engine.shadow_bind(
            fingerprint,
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
