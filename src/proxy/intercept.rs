//! How a rule's verdict reaches the wire.
//!
//! A blocked statement is not forwarded: in its place the server runs a `DO` block that raises
//! the rule's error with SQLSTATE [`BLOCKED_SQLSTATE`]. The error thus comes from the server
//! itself, so everything the client and server must agree on follows by construction: an open
//! transaction is aborted, the rest of a query string is skipped, an extended-protocol pipeline
//! is skipped up to Sync, and ReadyForQuery reports the server's real status.
//! Warnings become NoticeResponses (severity WARNING, SQLSTATE 01000) injected before the
//! statement's first result message.

use bytes::{Bytes, BytesMut};

use crate::event::Notice;
use crate::protocol::encode;

/// SQLSTATE of a statement refused by a `block` rule (class `PG` is not used by PostgreSQL).
pub const BLOCKED_SQLSTATE: &str = "PGS01";
/// SQLSTATE of rule warnings (PostgreSQL's generic `warning`).
pub const WARNING_SQLSTATE: &str = "01000";

/// Name of the statement and portal pgshape uses to raise a block in the extended protocol.
const BLOCK_NAME: &str = "pgshape_block";

/// An `E''` literal: correct whatever `standard_conforming_strings` is.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn block_message(notice: &Notice) -> String {
    format!(
        "pgshape: statement blocked by rule {}: {}",
        notice.rule, notice.message
    )
}

/// The SQL that raises `notice` as an error on the server.
pub fn block_sql(notice: &Notice) -> String {
    let mut sql = format!(
        "DO $pgshape$ BEGIN RAISE EXCEPTION USING ERRCODE = '{BLOCKED_SQLSTATE}', MESSAGE = {}",
        literal(&block_message(notice))
    );
    if let Some(hint) = &notice.hint {
        sql.push_str(", HINT = ");
        sql.push_str(&literal(hint));
    }
    sql.push_str("; END $pgshape$");
    sql
}

/// Extended-protocol messages that run [`block_sql`] in place of one Execute. The Close first
/// makes the fixed statement name reusable; Close of a missing statement is not an error.
/// The server answers CloseComplete, ParseComplete, BindComplete (which the proxy swallows) and
/// then the error, which stands in for the Execute's result.
pub fn extended_block(notice: &Notice) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(&encode::close(b'S', BLOCK_NAME));
    out.extend_from_slice(&encode::parse(BLOCK_NAME, &block_sql(notice)));
    out.extend_from_slice(&encode::bind(BLOCK_NAME, BLOCK_NAME));
    out.extend_from_slice(&encode::execute(BLOCK_NAME, 0));
    out.to_vec()
}

/// NoticeResponses for rule warnings, concatenated.
pub fn warnings(notices: &[Notice]) -> Option<Bytes> {
    if notices.is_empty() {
        return None;
    }
    let mut out = BytesMut::new();
    for n in notices {
        out.extend_from_slice(&encode::notice_response(
            "WARNING",
            WARNING_SQLSTATE,
            &format!("pgshape rule {}: {}", n.rule, n.message),
            n.hint.as_deref(),
        ));
    }
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_survive_quotes_and_backslashes() {
        assert_eq!(literal(r"it's a \ test"), r"E'it''s a \\ test'");
    }

    #[test]
    fn block_sql_names_rule_and_code() {
        let sql = block_sql(&Notice {
            rule: "no-distinct".into(),
            message: "DISTINCT over a fan-out join".into(),
            hint: Some("use EXISTS".into()),
        });
        assert!(sql.starts_with("DO $pgshape$"));
        assert!(sql.contains("ERRCODE = 'PGS01'"));
        assert!(sql.contains("no-distinct"));
        assert!(sql.contains("HINT = E'use EXISTS'"));
    }
}
