//! A rewrite template: SQL text whose `$k` markers stand for the original statement's k-th
//! constant slot ([`crate::sql::slots`]).
//!
//! Both kinds of rewrite end up here: the built-in semi-join prints its proposal over the
//! normalized text's `$1..$n`, and an operator writes a hot-patch in the same terms. Markers are
//! found with the SQL lexer, so a `$1` inside a string, a quoted identifier or a comment is
//! text, not a slot. Applying a template to one execution copies each slot's bytes out of that
//! execution (a literal stays a literal, a `$3` parameter stays `$3`, so a Bind still fits).

use crate::sql::lexer::{Lexer, TokenKind};
use crate::sql::{Slot, SlotError, slots};

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    pieces: Vec<Piece>,
    /// Highest slot the template refers to.
    max_slot: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(std::ops::Range<usize>),
    /// Slot number (1-based) and whether it stands where a list may stand (`IN ($k)`,
    /// `ARRAY[$k]`, `ANY (ARRAY[$k])`).
    Slot {
        number: usize,
        list_ok: bool,
    },
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("`${0}` is not a valid slot marker (slots are numbered from $1)")]
    BadMarker(String),
    #[error("the template uses slot ${slot} but the statement has only {available} constant(s)")]
    MissingSlot { slot: usize, available: usize },
    #[error(
        "slot ${slot} is a list of values in the original (IN (...)), but the template uses it \
         where only a single value fits"
    )]
    ListMisplaced { slot: usize },
    #[error(
        "slot ${slot} holds a parameter ({text}) of the original, but the template leaves it \
         out: the server could not type the parameter the client binds"
    )]
    DroppedParameter { slot: usize, text: String },
    #[error("{0}")]
    Slots(#[from] SlotError),
}

impl Template {
    /// Parses `text`, finding its `$k` markers.
    ///
    /// # Errors
    /// A `$0` marker.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let bytes = text.as_bytes();
        let tokens: Vec<_> = Lexer::new(bytes).collect();
        let significant: Vec<usize> = (0..tokens.len())
            .filter(|&i| !tokens[i].kind.is_trivia())
            .collect();
        let punct = |pos: Option<&usize>, want: &[&[u8]]| {
            pos.map(|&i| tokens[i])
                .is_some_and(|t| t.kind == TokenKind::Punct && want.contains(&t.text(bytes)))
        };
        let mut pieces = Vec::new();
        let mut max_slot = 0;
        let mut text_start = 0;
        for (n, &i) in significant.iter().enumerate() {
            let token = tokens[i];
            if token.kind != TokenKind::Param {
                continue;
            }
            let digits = &text[token.start + 1..token.end];
            let number: usize = digits
                .parse()
                .ok()
                .filter(|&k| k > 0)
                .ok_or_else(|| TemplateError::BadMarker(digits.to_owned()))?;
            let before = n.checked_sub(1).and_then(|p| significant.get(p));
            let after = significant.get(n + 1);
            let list_ok = (punct(before, &[b"("]) && punct(after, &[b")"]))
                || (punct(before, &[b"["]) && punct(after, &[b"]"]));
            if text_start < token.start {
                pieces.push(Piece::Text(text_start..token.start));
            }
            pieces.push(Piece::Slot { number, list_ok });
            max_slot = max_slot.max(number);
            text_start = token.end;
        }
        if text_start < text.len() {
            pieces.push(Piece::Text(text_start..text.len()));
        }
        Ok(Template {
            text: text.to_owned(),
            pieces,
            max_slot,
        })
    }

    /// The template as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Highest slot number used (0 when the template has no markers).
    pub fn max_slot(&self) -> usize {
        self.max_slot
    }

    /// Whether the template puts slot `number` where only a single value fits.
    pub fn uses_as_scalar(&self, number: usize) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(*p, Piece::Slot { number: n, list_ok: false } if n == number))
    }

    /// Checks the template against a statement's slots (their count, list kinds, and that no
    /// parameter is left out) without building anything.
    ///
    /// # Errors
    /// The first misfit found.
    pub fn check(&self, sql: &[u8], slots: &[Slot]) -> Result<(), TemplateError> {
        if self.max_slot > slots.len() {
            return Err(TemplateError::MissingSlot {
                slot: self.max_slot,
                available: slots.len(),
            });
        }
        for piece in &self.pieces {
            if let Piece::Slot { number, list_ok } = *piece
                && !list_ok
                && slots[number - 1].list
            {
                return Err(TemplateError::ListMisplaced { slot: number });
            }
        }
        for (index, slot) in slots.iter().enumerate() {
            let number = index + 1;
            let used = self
                .pieces
                .iter()
                .any(|p| matches!(p, Piece::Slot { number: n, .. } if *n == number));
            let text = &sql[slot.range.clone()];
            if !used && text.contains(&b'$') && has_param(text) {
                return Err(TemplateError::DroppedParameter {
                    slot: number,
                    text: String::from_utf8_lossy(text).into_owned(),
                });
            }
        }
        Ok(())
    }

    /// The rewritten text of one execution whose slots are `slots`.
    ///
    /// # Errors
    /// When the template does not fit these slots ([`Template::check`]).
    pub fn apply_slots(&self, sql: &[u8], slots: &[Slot]) -> Result<Vec<u8>, TemplateError> {
        self.check(sql, slots)?;
        let mut out = Vec::with_capacity(self.text.len() + sql.len() / 2);
        for piece in &self.pieces {
            match piece {
                Piece::Text(range) => out.extend_from_slice(&self.text.as_bytes()[range.clone()]),
                Piece::Slot { number, .. } => {
                    out.extend_from_slice(&sql[slots[number - 1].range.clone()]);
                }
            }
        }
        Ok(out)
    }

    /// The rewritten text of `sql` (lexes it for its slots first).
    ///
    /// # Errors
    /// When `sql` cannot be slotted or the template does not fit it.
    pub fn apply(&self, sql: &[u8]) -> Result<Vec<u8>, TemplateError> {
        let slots = slots(sql)?;
        self.apply_slots(sql, &slots)
    }
}

fn has_param(text: &[u8]) -> bool {
    Lexer::new(text).any(|t| t.kind == TokenKind::Param)
}

/// Which slots of a normalized text (`$1..$n` in order) stand alone in a list position, so
/// that a list of values may arrive there: the kinds a hot-patch template must respect even
/// when the executions seen so far had one-element lists.
pub fn list_slots(normalized: &str) -> Vec<usize> {
    match Template::parse(normalized) {
        Ok(template) => template
            .pieces
            .iter()
            .filter_map(|p| match *p {
                Piece::Slot {
                    number,
                    list_ok: true,
                } => Some(number),
                _ => None,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Number of slots a normalized text has.
pub fn slot_count(normalized: &str) -> usize {
    Template::parse(normalized).map_or(0, |t| t.max_slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(template: &str, sql: &str) -> Result<String, TemplateError> {
        Template::parse(template)?
            .apply(sql.as_bytes())
            .map(|b| String::from_utf8(b).expect("utf8"))
    }

    #[test]
    fn literals_and_params_fill_their_slots() {
        let template = "SELECT o.id FROM orders o WHERE o.status = $2 AND EXISTS \
                        (SELECT 1 FROM items i WHERE i.order_id = o.id AND i.sku IN ($1)) LIMIT $3";
        let literal = "SELECT DISTINCT o.id FROM orders o JOIN items i ON i.order_id = o.id \
                       WHERE i.sku IN ('A', 'B') AND o.status = 'paid' LIMIT 25";
        assert_eq!(
            rewrite(template, literal).unwrap(),
            "SELECT o.id FROM orders o WHERE o.status = 'paid' AND EXISTS \
             (SELECT 1 FROM items i WHERE i.order_id = o.id AND i.sku IN ('A', 'B')) LIMIT 25"
        );
        let params = "SELECT DISTINCT o.id FROM orders o JOIN items i ON i.order_id = o.id \
                      WHERE i.sku IN ($1, $2) AND o.status = $3 LIMIT 25";
        assert_eq!(
            rewrite(template, params).unwrap(),
            "SELECT o.id FROM orders o WHERE o.status = $3 AND EXISTS \
             (SELECT 1 FROM items i WHERE i.order_id = o.id AND i.sku IN ($1, $2)) LIMIT 25"
        );
    }

    #[test]
    fn markers_in_strings_and_comments_are_text() {
        let t = Template::parse("SELECT '$1', \"$2\" /* $3 */, $1").unwrap();
        assert_eq!(t.max_slot(), 1);
        assert_eq!(
            rewrite("SELECT '$1' /* $2 */, $1", "SELECT 7").unwrap(),
            "SELECT '$1' /* $2 */, 7"
        );
    }

    #[test]
    fn misfits_are_named() {
        assert_eq!(
            rewrite("SELECT $3", "SELECT 1, 2"),
            Err(TemplateError::MissingSlot {
                slot: 3,
                available: 2
            })
        );
        assert_eq!(
            rewrite(
                "SELECT a FROM t WHERE b = $1",
                "SELECT a FROM t WHERE b IN (1, 2)"
            ),
            Err(TemplateError::ListMisplaced { slot: 1 })
        );
        assert!(matches!(
            rewrite(
                "SELECT a FROM t WHERE b = $1",
                "SELECT a FROM t WHERE b = $1 AND c = $2"
            ),
            Err(TemplateError::DroppedParameter { slot: 2, .. })
        ));
        // A literal may be left out.
        assert_eq!(
            rewrite(
                "SELECT a FROM t WHERE b = $1",
                "SELECT a FROM t WHERE b = 1 AND c = 2"
            )
            .unwrap(),
            "SELECT a FROM t WHERE b = 1"
        );
        assert!(matches!(
            Template::parse("SELECT $0"),
            Err(TemplateError::BadMarker(_))
        ));
    }

    #[test]
    fn list_positions_of_a_normalized_text() {
        let normalized =
            "SELECT a FROM t WHERE b IN ($1 /*, ... */) AND c = ANY(ARRAY[$2]) AND d = $3";
        assert_eq!(list_slots(normalized), vec![1, 2]);
        assert_eq!(slot_count(normalized), 3);
    }
}
