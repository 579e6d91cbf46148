//! The normalization rules, as one walk over the significant tokens that feeds a [`Sink`].
//!
//! The fingerprint (a hashing sink) and the normalized text (a text sink) are both produced by
//! this walk, so the text shown for a fingerprint can never disagree with what was hashed. The
//! walk only peeks ahead by copying the token iterator, so it allocates nothing; a list element
//! or `VALUES` row is re-walked into a hashing sink only when it has to be compared with its
//! neighbour. The rules themselves are documented on [`crate::sql::fingerprint()`].

use std::ops::Range;

mod command;
mod constant;
mod keyword;
mod list;

use self::keyword::Kw;
use super::lexer::{SignificantTokens, Token, TokenKind};

/// Receives the normalized token stream.
pub(crate) trait Sink {
    /// An identifier or keyword (`tok` is an `Ident` or `QuotedIdent`).
    fn word(&mut self, sql: &[u8], tok: Token);
    /// A constant or parameter (or a name normalized away) covering `span` of the input.
    fn placeholder(&mut self, span: Range<usize>);
    /// An operator or punctuation mark, already normalized (`!=` arrives as `<>`).
    fn symbol(&mut self, text: &[u8], span: Range<usize>);
    /// Elements of a list were dropped here because they repeat the previous one's shape.
    fn elided(&mut self) {}
}

/// Shape of a list element that is one constant, for comparing neighbours without hashing them.
const CONSTANT_SHAPE: u64 = 0;

/// Whether a `-`/`+` right here would be a sign (after an operator, `(`, `,`, a keyword below,
/// or at the start) rather than a binary operator (after an operand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    Operator,
    Operand,
}

/// The word just before, for `IS [NOT] NULL`, `IS [NOT] TRUE` and `NOT NULL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PrevWord {
    Other,
    Is,
    IsNot,
    Not,
}

/// Interval field words that may follow an interval literal: `INTERVAL '1' DAY TO SECOND`.
const INTERVAL_FIELDS: &[&[u8]] = &[
    b"year", b"month", b"day", b"hour", b"minute", b"second", b"to",
];

fn one_of(text: &[u8], words: &[&[u8]]) -> bool {
    words.iter().any(|w| text.eq_ignore_ascii_case(w))
}

/// Cheap pre-check for [`Walker::constant`], so most tokens skip the call.
#[inline]
fn may_start_constant(kind: TokenKind, kw: Kw, sign_ok: bool) -> bool {
    match kind {
        TokenKind::Ident => matches!(kw, Kw::Null | Kw::Bool | Kw::Array | Kw::LiteralType),
        TokenKind::Operator => sign_ok,
        k => k.is_constant(),
    }
}

/// Walks `range` of `sql` and feeds its normalized tokens to `sink`.
pub(crate) fn walk<S: Sink>(sql: &[u8], range: Range<usize>, sink: &mut S) {
    walk_in_lists(sql, range, sink, 0);
}

/// As [`walk`], for a range inside `depth` collapsed lists.
fn walk_in_lists<S: Sink>(sql: &[u8], range: Range<usize>, sink: &mut S, depth: usize) {
    let mut w = Walker::new(sql, sink);
    w.list_depth = depth;
    w.run(SignificantTokens::with_range(sql, range));
}

/// Lists (`IN (…)`, `ARRAY[…]`, `VALUES` rows) nested deeper than this are not collapsed but
/// walked as plain tokens. Collapsing compares neighbouring elements by walking each one
/// twice (once for its shape, once to emit it), so each level of nesting doubles the work on
/// what is inside it: unbounded, 150 bytes of `ARRAY[1, (ARRAY[1, (…` took minutes (found by
/// the `fingerprint` fuzz target). Real statements nest lists two or three deep.
const MAX_LIST_DEPTH: usize = 4;

struct Walker<'a, 's, S: Sink> {
    sql: &'a [u8],
    sink: &'s mut S,
    prev: Prev,
    prev_word: PrevWord,
    stmt_start: bool,
    /// A `;` seen but not yet emitted: emitted only if another token follows, so a trailing `;`
    /// (or `;;`) does not change the fingerprint.
    pending_semi: Option<Range<usize>>,
    /// Inside `FETCH`/`MOVE`: any identifier that is not a direction word is the cursor name.
    cursor_stmt: bool,
    /// Collapsed lists around the current token (see [`MAX_LIST_DEPTH`]).
    list_depth: usize,
}

impl<'a, 's, S: Sink> Walker<'a, 's, S> {
    fn new(sql: &'a [u8], sink: &'s mut S) -> Self {
        Walker {
            sql,
            sink,
            prev: Prev::Operator,
            prev_word: PrevWord::Other,
            stmt_start: true,
            pending_semi: None,
            cursor_stmt: false,
            list_depth: 0,
        }
    }

    fn text(&self, t: Token) -> &'a [u8] {
        t.text(self.sql)
    }

    fn is_punct(&self, t: Token, p: &[u8]) -> bool {
        t.kind == TokenKind::Punct && self.text(t) == p
    }

    fn is_word(&self, t: Token, w: &[u8]) -> bool {
        t.kind == TokenKind::Ident && self.text(t).eq_ignore_ascii_case(w)
    }

    fn run(&mut self, mut toks: SignificantTokens<'a>) {
        while let Some(t) = toks.next() {
            // Fast path for the most frequent tokens, which no rule looks at: quoted
            // identifiers and punctuation other than `;` (none of them starts a constant or a
            // statement command).
            if self.pending_semi.is_none() && !self.cursor_stmt {
                let text = self.text(t);
                let fast = match t.kind {
                    TokenKind::QuotedIdent => {
                        self.sink.word(self.sql, t);
                        Some(Prev::Operand)
                    }
                    TokenKind::Punct if text != b";" => {
                        self.sink.symbol(text, t.range());
                        Some(if text == b")" || text == b"]" {
                            Prev::Operand
                        } else {
                            Prev::Operator
                        })
                    }
                    _ => None,
                };
                if let Some(prev) = fast {
                    self.prev = prev;
                    self.stmt_start = false;
                    self.prev_word = PrevWord::Other;
                    continue;
                }
            }
            self.token(t, &mut toks);
        }
    }

    #[inline(never)]
    fn token(&mut self, t: Token, toks: &mut SignificantTokens<'a>) {
        if self.is_punct(t, b";") {
            self.pending_semi = Some(t.range());
            self.stmt_start = true;
            self.cursor_stmt = false;
            self.prev = Prev::Operator;
            self.prev_word = PrevWord::Other;
            return;
        }
        if let Some(semi) = self.pending_semi.take() {
            self.sink.symbol(b";", semi);
        }
        let at_start = std::mem::replace(&mut self.stmt_start, false);
        let prev_word = std::mem::replace(&mut self.prev_word, PrevWord::Other);
        let sign_ok = self.prev == Prev::Operator;
        let kw = self.kw(t);
        if may_start_constant(t.kind, kw, sign_ok)
            && let Some(end) = self.constant(t, kw, toks, sign_ok, prev_word)
        {
            self.sink.placeholder(t.start..end);
            self.prev = Prev::Operand;
            return;
        }
        let text = self.text(t);
        match t.kind {
            TokenKind::Ident => self.ident(t, kw, toks, at_start, prev_word),
            TokenKind::QuotedIdent if self.cursor_stmt => {
                self.sink.placeholder(t.range());
                self.prev = Prev::Operand;
            }
            TokenKind::QuotedIdent => {
                self.sink.word(self.sql, t);
                self.prev = Prev::Operand;
            }
            TokenKind::Operator => {
                let op: &[u8] = if text == b"!=" { b"<>" } else { text };
                self.sink.symbol(op, t.range());
                self.prev = Prev::Operator;
            }
            _ => {
                self.sink.symbol(text, t.range());
                self.prev = if text == b")" || text == b"]" {
                    Prev::Operand
                } else {
                    Prev::Operator
                };
            }
        }
    }

    /// The keyword class of `t` (`Other` unless it is an unquoted identifier).
    #[inline]
    fn kw(&self, t: Token) -> Kw {
        if t.kind == TokenKind::Ident {
            Kw::of(self.text(t))
        } else {
            Kw::Other
        }
    }

    fn ident(
        &mut self,
        t: Token,
        kw: Kw,
        toks: &mut SignificantTokens<'a>,
        at_start: bool,
        prev_word: PrevWord,
    ) {
        if at_start && self.statement_command(t, toks) {
            return;
        }
        if self.cursor_stmt {
            if kw.is_fetch() {
                self.sink.word(self.sql, t);
                self.prev = Prev::Operator;
            } else {
                self.sink.placeholder(t.range());
                self.prev = Prev::Operand;
            }
            return;
        }
        let opens = |p: &[u8]| toks.peek().is_some_and(|n| self.is_punct(n, p));
        let collapse = self.list_depth < MAX_LIST_DEPTH;
        match kw {
            Kw::In if collapse && opens(b"(") => {
                self.sink.word(self.sql, t);
                self.open_list(toks, b")");
                return;
            }
            Kw::Array if collapse && opens(b"[") => {
                self.sink.word(self.sql, t);
                self.open_list(toks, b"]");
                return;
            }
            Kw::Values if collapse && opens(b"(") => {
                self.sink.word(self.sql, t);
                self.rows(toks);
                return;
            }
            _ => {}
        }
        self.sink.word(self.sql, t);
        self.prev = if kw.is_sign() {
            Prev::Operator
        } else {
            Prev::Operand
        };
        self.prev_word = match kw {
            Kw::Is => PrevWord::Is,
            Kw::Not if prev_word == PrevWord::Is => PrevWord::IsNot,
            Kw::Not => PrevWord::Not,
            _ => PrevWord::Other,
        };
    }
}
