//! Collapsing `IN (...)` lists, `ARRAY[...]` and `VALUES` rows: neighbouring elements of one
//! normalized shape are kept once, so the list length does not change the fingerprint.

use std::ops::Range;

use super::{CONSTANT_SHAPE, Prev, PrevWord, Sink, Walker, walk_in_lists};
use crate::sql::fingerprint::HashSink;
use crate::sql::lexer::{SignificantTokens, TokenKind};

impl<'a, S: Sink> Walker<'a, '_, S> {
    /// Hash of the normalized form of `range`, to compare list elements and rows.
    fn shape(&self, range: Range<usize>) -> u64 {
        let mut h = HashSink::new();
        walk_in_lists(self.sql, range, &mut h, self.list_depth + 1);
        h.finish()
    }

    /// Walks a sub-range (a list element, a row) through this walker's sink.
    fn walk_nested(&mut self, range: Range<usize>) {
        let cursor = self.cursor_stmt;
        self.prev = Prev::Operator;
        self.prev_word = PrevWord::Other;
        self.stmt_start = false;
        self.list_depth += 1;
        self.run(SignificantTokens::with_range(self.sql, range));
        self.list_depth -= 1;
        self.cursor_stmt = cursor;
        self.prev_word = PrevWord::Other;
        self.prev = Prev::Operand;
    }

    /// Emits the opening bracket at `toks` and the list up to `close`, with runs of
    /// neighbouring elements of one shape (`1, 2, 3` or `(1, 'a'), (2, 'b')`) collapsed to one.
    pub(super) fn open_list(&mut self, toks: &mut SignificantTokens<'a>, close: &[u8]) {
        if let Some(open) = toks.next() {
            self.sink.symbol(self.text(open), open.range());
        }
        let mut first = true;
        let mut prev_shape: Option<u64> = None;
        let mut elided = false;
        loop {
            let mut probe = *toks;
            let Some(t) = probe.next() else { break };
            if t.kind == TokenKind::Punct && matches!(self.text(t), b")" | b"]") {
                if self.text(t) == close {
                    *toks = probe;
                    self.sink.symbol(close, t.range());
                }
                break;
            }
            if self.is_punct(t, b",") {
                // Only reached on malformed input (`IN (,1)`); keep the comma and go on.
                *toks = probe;
                self.sink.symbol(b",", t.range());
                continue;
            }
            // Fast path, one lexing pass: the element is a lone constant followed by `,` or the
            // closing bracket. `next` is then where the following element starts.
            let mut lone = None;
            let mut next = probe;
            if let Some(end) = self.constant(t, self.kw(t), &mut probe, true, PrevWord::Other) {
                let mut past_sep = probe;
                match past_sep.next() {
                    Some(n) if self.is_punct(n, b",") => {
                        lone = Some(end);
                        next = past_sep;
                    }
                    Some(n) if self.is_punct(n, close) => {
                        lone = Some(end);
                        next = probe;
                    }
                    _ => {}
                }
            }
            let (shape, element) = match lone {
                Some(end) => (Some(CONSTANT_SHAPE), t.start..end),
                None => {
                    let (range, mut after) = self.scan_element(*toks);
                    let more = after.peek().is_some_and(|n| self.is_punct(n, b","));
                    let shape = (!first || more).then(|| self.shape(range.clone()));
                    if more {
                        after.next();
                    }
                    next = after;
                    (shape.map(|s| s | 1), range)
                }
            };
            if !first && shape.is_some() && shape == prev_shape {
                if !elided {
                    self.sink.elided();
                    elided = true;
                }
            } else {
                if !first {
                    self.sink.symbol(b",", element.start..element.start);
                }
                if lone.is_some() {
                    self.sink.placeholder(element);
                } else {
                    self.walk_nested(element);
                }
                prev_shape = shape;
                elided = false;
            }
            first = false;
            *toks = next;
        }
        self.prev = Prev::Operand;
    }

    /// One list element from `toks`: its range and the tokens after it (at `,`, the closing
    /// bracket, or the end).
    fn scan_element(
        &self,
        mut toks: SignificantTokens<'a>,
    ) -> (Range<usize>, SignificantTokens<'a>) {
        let mut depth = 0usize;
        let mut range: Option<Range<usize>> = None;
        loop {
            let mut ahead = toks;
            let Some(t) = ahead.next() else { break };
            if t.kind == TokenKind::Punct {
                match self.text(t) {
                    b"," if depth == 0 => break,
                    b"(" | b"[" => depth += 1,
                    b")" | b"]" => {
                        if depth == 0 {
                            break;
                        }
                        depth -= 1;
                    }
                    _ => {}
                }
            }
            range = Some(range.map_or(t.start, |r| r.start)..t.end);
            toks = ahead;
        }
        (range.unwrap_or(0..0), toks)
    }

    /// `VALUES (...), (...), ...`: neighbouring rows of the same shape collapse to one.
    pub(super) fn rows(&mut self, toks: &mut SignificantTokens<'a>) {
        let mut first = true;
        let mut prev_shape: Option<u64> = None;
        let mut elided = false;
        loop {
            let mut ahead = *toks;
            let Some(open) = ahead.peek().filter(|o| self.is_punct(*o, b"(")) else {
                break;
            };
            let end = self.skip_group(&mut ahead).unwrap_or(open.end);
            let range = open.start..end;
            let mut next = ahead;
            let more = matches!((next.next(), next.next()), (Some(c), Some(o))
                if self.is_punct(c, b",") && self.is_punct(o, b"("));
            let shape = (!first || more).then(|| self.shape(range.clone()));
            if !first && shape.is_some() && shape == prev_shape {
                if !elided {
                    self.sink.elided();
                    elided = true;
                }
            } else {
                if !first {
                    self.sink.symbol(b",", range.start..range.start);
                }
                self.walk_nested(range);
                prev_shape = shape;
                elided = false;
            }
            first = false;
            *toks = ahead;
            if !more {
                break;
            }
            toks.next();
        }
        self.prev = Prev::Operand;
    }
}
