//! Statement-level rules: names of savepoints, prepared statements and cursors, and `SET`
//! values, which vary per call but not per shape.

use std::ops::Range;

use super::{Prev, Sink, Walker, one_of};
use crate::sql::lexer::{SignificantTokens, Token, TokenKind};

impl<'a, S: Sink> Walker<'a, '_, S> {
    /// Statement-level rules for the first word of a statement; `false` if none applies.
    pub(super) fn statement_command(&mut self, t: Token, toks: &mut SignificantTokens<'a>) -> bool {
        let w = self.text(t);
        let is = |k: &[u8]| w.eq_ignore_ascii_case(k);
        if !one_of(
            w,
            &[
                b"set",
                b"savepoint",
                b"release",
                b"rollback",
                b"abort",
                b"prepare",
                b"execute",
                b"deallocate",
                b"declare",
                b"close",
                b"fetch",
                b"move",
            ],
        ) {
            return false;
        }
        self.sink.word(self.sql, t);
        self.prev = Prev::Operand;
        if is(b"set") {
            self.set_statement(toks);
        } else if is(b"savepoint") || is(b"declare") || is(b"execute") {
            self.name_slot(toks);
        } else if is(b"release") {
            self.noise_word(toks, b"savepoint");
            self.name_slot(toks);
        } else if is(b"rollback") || is(b"abort") {
            self.opt_word(toks, &[b"work", b"transaction"]);
            if self.opt_word(toks, &[b"to"]) {
                self.noise_word(toks, b"savepoint");
                self.name_slot(toks);
            }
        } else if is(b"prepare") {
            if !toks.peek().is_some_and(|n| self.is_word(n, b"transaction")) {
                self.name_slot(toks);
            }
        } else if is(b"deallocate") {
            self.noise_word(toks, b"prepare");
            if !toks.peek().is_some_and(|n| self.is_word(n, b"all")) {
                self.name_slot(toks);
            }
        } else if is(b"close") {
            if !toks.peek().is_some_and(|n| self.is_word(n, b"all")) {
                self.name_slot(toks);
            }
        } else {
            // FETCH / MOVE
            self.cursor_stmt = true;
            self.prev = Prev::Operator;
        }
        true
    }

    /// `SET [SESSION|LOCAL] name {=|TO} value`: the value becomes one placeholder, `TO` becomes
    /// `=`. `SET TIME ZONE`, `SET ROLE`, `SET SESSION AUTHORIZATION`, `SET NAMES`, `SET SCHEMA`
    /// likewise; `SET TRANSACTION` and `SET CONSTRAINTS` keep their words.
    fn set_statement(&mut self, toks: &mut SignificantTokens<'a>) {
        self.opt_word(toks, &[b"session", b"local"]);
        let Some(n) = toks.peek() else { return };
        if n.kind == TokenKind::Ident {
            let w = self.text(n);
            if one_of(w, &[b"transaction", b"constraints", b"characteristics"]) {
                return;
            }
            if one_of(w, &[b"role", b"authorization", b"names", b"schema"]) {
                toks.next();
                self.sink.word(self.sql, n);
                self.rest_placeholder(toks);
                return;
            }
            let mut ahead = *toks;
            ahead.next();
            if w.eq_ignore_ascii_case(b"time")
                && ahead.peek().is_some_and(|z| self.is_word(z, b"zone"))
            {
                self.opt_word(toks, &[b"time"]);
                self.opt_word(toks, &[b"zone"]);
                self.rest_placeholder(toks);
                return;
            }
        }
        if !matches!(n.kind, TokenKind::Ident | TokenKind::QuotedIdent) {
            return;
        }
        toks.next();
        self.sink.word(self.sql, n);
        loop {
            let mut ahead = *toks;
            match (ahead.next(), ahead.next()) {
                (Some(dot), Some(w))
                    if self.is_punct(dot, b".")
                        && matches!(w.kind, TokenKind::Ident | TokenKind::QuotedIdent) =>
                {
                    self.sink.symbol(b".", dot.range());
                    self.sink.word(self.sql, w);
                    *toks = ahead;
                }
                _ => break,
            }
        }
        if let Some(eq) = toks.peek().filter(|e| {
            (e.kind == TokenKind::Operator && self.text(*e) == b"=") || self.is_word(*e, b"to")
        }) {
            toks.next();
            self.sink.symbol(b"=", eq.range());
            self.rest_placeholder(toks);
        }
    }

    /// The rest of the statement (up to `;`) as one placeholder.
    fn rest_placeholder(&mut self, toks: &mut SignificantTokens<'a>) {
        let mut span: Option<Range<usize>> = None;
        while let Some(t) = toks.peek() {
            if self.is_punct(t, b";") {
                break;
            }
            toks.next();
            span = Some(span.map_or(t.start, |s| s.start)..t.end);
        }
        if let Some(span) = span {
            self.sink.placeholder(span);
        }
        self.prev = Prev::Operand;
    }

    /// Consumes and emits the next word if it is one of `words`.
    fn opt_word(&mut self, toks: &mut SignificantTokens<'a>, words: &[&[u8]]) -> bool {
        match toks.peek() {
            Some(n) if n.kind == TokenKind::Ident && one_of(self.text(n), words) => {
                toks.next();
                self.sink.word(self.sql, n);
                true
            }
            _ => false,
        }
    }

    /// Skips an optional word that changes nothing (`RELEASE [SAVEPOINT] x`).
    fn noise_word(&mut self, toks: &mut SignificantTokens<'a>, word: &[u8]) {
        if toks.peek().is_some_and(|n| self.is_word(n, word)) {
            toks.next();
        }
    }

    /// A savepoint, prepared-statement or cursor name: normalized to a placeholder.
    fn name_slot(&mut self, toks: &mut SignificantTokens<'a>) {
        if let Some(n) = toks
            .peek()
            .filter(|n| matches!(n.kind, TokenKind::Ident | TokenKind::QuotedIdent))
        {
            toks.next();
            self.sink.placeholder(n.range());
        }
        self.prev = Prev::Operand;
    }
}
