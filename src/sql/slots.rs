//! The constant slots of a statement: where each of its constants (literals, `$n` parameters,
//! collapsed `IN` lists) sits in the text, numbered as the normalized text numbers them.
//!
//! A rewrite template refers to the original statement's slots (`$k` is the k-th); applying it
//! copies each slot's bytes out of the execution at hand, so rewriting costs one lexing pass and
//! a copy, never a parse. The slots come from the same walk as the fingerprint and the
//! normalized text, so slot k is always what the normalized text shows as `$k`.

use std::ops::Range;

use super::lexer::{SignificantTokens, Token, TokenKind};
use super::walker::{self, Sink};

/// One constant of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Its bytes in the statement (a whole run of list elements for a collapsed list).
    pub range: Range<usize>,
    /// Several list elements collapsed into this slot (`IN (1, 2, 3)`): it may only be used
    /// where a list may stand.
    pub list: bool,
}

/// Why a statement's constants cannot be lifted into slots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Whole rows or compound list elements were collapsed (`VALUES (1, 'a'), (2, 'b')`,
    /// `IN ((1, 2), (3, 4))`): the normalized text, and so any template, has only the first.
    #[error("the statement has collapsed rows or compound list elements a template cannot carry")]
    CollapsedCompound,
}

/// The slots of `sql`, in normalized-text order.
///
/// # Errors
/// [`SlotError::CollapsedCompound`] when a collapsed run holds more than lone constants.
pub fn slots(sql: &[u8]) -> Result<Vec<Slot>, SlotError> {
    let mut sink = SlotSink {
        sql,
        slots: Vec::new(),
        last_was_placeholder: false,
        open_run: None,
        compound: false,
    };
    walker::walk(sql, 0..sql.len(), &mut sink);
    if sink.compound {
        return Err(SlotError::CollapsedCompound);
    }
    if let Some(index) = sink.open_run.take() {
        // A list left open by malformed input ends at the end of the text.
        sink.close_run(index, sql.len());
    }
    Ok(sink.slots)
}

struct SlotSink<'a> {
    sql: &'a [u8],
    slots: Vec<Slot>,
    last_was_placeholder: bool,
    /// A slot whose elided run has not ended yet: the next emitted token ends it.
    open_run: Option<usize>,
    compound: bool,
}

impl SlotSink<'_> {
    /// Ends the collapsed run of slot `index` at the last significant token before `limit`
    /// (the walker reports no spans for elided elements, only for what follows them).
    fn close_run(&mut self, index: usize, limit: usize) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        let mut end = slot.range.end;
        for token in SignificantTokens::with_range(self.sql, slot.range.start..limit) {
            if !is_comma(self.sql, token) {
                end = token.end;
            }
        }
        slot.range.end = end;
    }

    fn before_token(&mut self, start: usize) {
        if let Some(index) = self.open_run.take() {
            self.close_run(index, start);
        }
    }
}

fn is_comma(sql: &[u8], token: Token) -> bool {
    token.kind == TokenKind::Punct && token.text(sql) == b","
}

impl Sink for SlotSink<'_> {
    fn word(&mut self, _sql: &[u8], tok: Token) {
        self.before_token(tok.start);
        self.last_was_placeholder = false;
    }

    fn placeholder(&mut self, span: Range<usize>) {
        self.before_token(span.start);
        self.slots.push(Slot {
            range: span,
            list: false,
        });
        self.last_was_placeholder = true;
    }

    fn symbol(&mut self, _text: &[u8], span: Range<usize>) {
        self.before_token(span.start);
        self.last_was_placeholder = false;
    }

    fn elided(&mut self) {
        if !self.last_was_placeholder {
            self.compound = true;
            return;
        }
        let index = self.slots.len() - 1;
        self.slots[index].list = true;
        self.open_run = Some(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<(String, bool)> {
        slots(sql.as_bytes())
            .expect("slots")
            .into_iter()
            .map(|s| (sql[s.range].to_owned(), s.list))
            .collect()
    }

    #[test]
    fn literals_params_and_lists_in_normalized_order() {
        let sql = "SELECT a FROM t WHERE b IN ('x', 'y' , 'z') AND c = $7 AND d > -5 LIMIT 25";
        assert_eq!(
            texts(sql),
            vec![
                ("'x', 'y' , 'z'".into(), true),
                ("$7".into(), false),
                ("-5".into(), false),
                ("25".into(), false),
            ]
        );
        // Same count as the normalized text shows.
        let normalized = crate::sql::normalize(sql.as_bytes(), usize::MAX);
        assert!(
            normalized.contains("$4") && !normalized.contains("$5"),
            "{normalized}"
        );
    }

    #[test]
    fn one_element_list_is_a_plain_slot() {
        assert_eq!(
            texts("SELECT 1 FROM t WHERE b IN ('x')"),
            vec![("1".into(), false), ("'x'".into(), false)]
        );
    }

    #[test]
    fn a_run_ends_before_a_different_element_and_skips_comments() {
        let sql = "SELECT a FROM t WHERE b IN (1, 2 /* two */, -- three\n 3, lower(x), 4)";
        assert_eq!(
            texts(sql),
            vec![
                ("1, 2 /* two */, -- three\n 3".into(), true),
                ("4".into(), false)
            ]
        );
    }

    #[test]
    fn casts_and_typed_literals_are_one_slot() {
        assert_eq!(
            texts("SELECT * FROM t WHERE d > DATE '2024-01-01' AND e = '5'::int"),
            vec![
                ("DATE '2024-01-01'".into(), false),
                ("'5'::int".into(), false)
            ]
        );
    }

    #[test]
    fn collapsed_rows_cannot_be_slotted() {
        assert_eq!(
            slots(b"INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')"),
            Err(SlotError::CollapsedCompound)
        );
    }
}
