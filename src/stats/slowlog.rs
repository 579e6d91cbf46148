//! The slow statement log: one structured `tracing` event per statement slower than
//! `log_min_duration`, at target `pgshape::slow`, so it can be routed and filtered on its own
//! (`RUST_LOG=pgshape::slow=info`) and rendered as JSON by the subscriber.
//!
//! Literal values are personal data (emails, tokens, addresses): the event carries the
//! normalized text unless `log_parameters = true`. The sqlcommenter tags are logged either way;
//! they are what the application chose to attach (route, controller, traceparent).

use std::fmt;
use std::time::Duration;

use super::StatsConfig;
use crate::event::{StatementEvent, StatementObserver};

#[cfg(test)]
#[path = "slowlog_tests.rs"]
mod tests;
use crate::sql::analysis::Budget;
use crate::sql::commenter::{self, SqlComment};

/// Logs slow statements; a separate observer so it works with statistics switched off.
#[derive(Debug, Clone)]
pub struct SlowLog {
    threshold: Duration,
    log_parameters: bool,
    max_query_length: usize,
    budget: Budget,
}

impl SlowLog {
    /// A slow log for statements taking at least `threshold` (`Config::log_min_duration()`);
    /// `None` when it is off.
    pub fn new(threshold: Option<Duration>, config: &StatsConfig) -> Option<Self> {
        threshold.map(|threshold| SlowLog {
            threshold,
            log_parameters: config.log_parameters,
            max_query_length: config.max_query_length,
            budget: Budget::default(),
        })
    }

    /// Names the statements over `budget` (relayed unanalysed) in the `analysis` field.
    pub fn with_analysis_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// The statement text as it may be logged.
    fn text(&self, sql: &[u8]) -> String {
        if self.log_parameters {
            let mut cut = sql.len().min(self.max_query_length);
            // Cut on a character boundary of the (possibly not UTF-8) text.
            while cut > 0 && cut < sql.len() && (sql[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            String::from_utf8_lossy(&sql[..cut]).into_owned()
        } else {
            crate::sql::normalize(sql, self.max_query_length)
        }
    }
}

/// `key=value` pairs of the sqlcommenter comment, for one log field.
struct TagList<'a>(&'a SqlComment);

impl fmt::Display for TagList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.pairs().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl StatementObserver for SlowLog {
    fn on_statement(&self, event: &StatementEvent<'_>) {
        if event.duration < self.threshold {
            return;
        }
        let sql = &event.statement.sql[..];
        let fingerprint = event
            .statement
            .fingerprint
            .unwrap_or_else(|| crate::sql::fingerprint(sql));
        let tags = commenter::parse(sql).unwrap_or_default();
        let client_addr = event.session.client_addr.map(|a| a.to_string());
        tracing::info!(
            target: "pgshape::slow",
            fingerprint = %fingerprint,
            query = %self.text(sql),
            duration_ms = event.duration.as_secs_f64() * 1e3,
            rows = event.rows,
            command = event.command,
            database = %event.session.database,
            user = %event.session.user,
            application_name = %event.session.application_name,
            client_addr = client_addr.as_deref().unwrap_or(""),
            sqlstate = event.sqlstate_str().unwrap_or(""),
            route = tags.get("route").unwrap_or(""),
            controller = tags.get("controller").unwrap_or(""),
            action = tags.get("action").unwrap_or(""),
            traceparent = tags.get("traceparent").unwrap_or(""),
            // The bare trace id, what log-to-trace links (Loki derived fields) match on.
            trace_id = tags
                .get("traceparent")
                .and_then(super::trace_ids)
                .map_or("", |(trace, _)| trace),
            tags = %TagList(&tags),
            // Which analysis limit the statement is over (`size`, `depth`): the rules judged
            // it without its structural facts.
            analysis = self.budget.check(sql).err().map_or("", |over| over.as_str()),
            "slow statement"
        );
    }
}
