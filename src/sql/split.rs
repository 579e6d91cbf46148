//! Splitting a simple-protocol `Query` string into its statements, where the server splits it.
//!
//! The proxy times and fingerprints each statement of a multi-statement `Query` on its own, so
//! it must cut exactly where PostgreSQL does: at `;` outside quotes, dollar quotes, comments and
//! parentheses, and not inside the `BEGIN ATOMIC ... END` body of a SQL-standard function. The
//! body rule is psql's heuristic (`psqlscan.l`): in a statement that starts with
//! `CREATE [OR REPLACE] FUNCTION|PROCEDURE`, at parenthesis depth 0, `BEGIN` opens a block,
//! `CASE` opens one inside a block, and `END` closes one.

use std::ops::Range;

use super::bytes::find1;
use super::lexer::{Lexer, TokenKind};

/// The statements of `sql` in order, as byte ranges, for `for range in split_statements(sql)`.
///
/// Each range excludes the `;` that ends it and leading/trailing whitespace, but keeps comments
/// inside and around the statement (a trailing sqlcommenter tag stays with its statement).
/// Statements with nothing but whitespace and comments are skipped, as the server skips them.
/// Allocation-free. The common case, one statement with no `;` at all (ORMs send none), is
/// recognized with one byte search and no lexing.
pub fn split_statements(sql: &[u8]) -> StatementSplitter<'_> {
    StatementSplitter {
        sql,
        lexer: Lexer::new(sql),
        single: single_statement(sql),
    }
}

/// [`split_statements`] without the single-statement fast path, to test the two agree.
#[cfg(test)]
pub(crate) fn split_statements_by_lexing(sql: &[u8]) -> StatementSplitter<'_> {
    StatementSplitter {
        sql,
        lexer: Lexer::new(sql),
        single: None,
    }
}

/// The statement's range when `sql` is certainly one statement, not starting with a comment
/// (so its first token is significant): no `;` at all, or one `;` that ends the text and that
/// nothing before it can hide from the lexer (see [`ends_outside_everything`]). pgbench and
/// many drivers end their one statement with `;`; without this, every such text would be
/// lexed twice (here, then by the fingerprint walk).
fn single_statement(sql: &[u8]) -> Option<Range<usize>> {
    let whole = trim(sql, 0..sql.len());
    match sql.get(whole.start..whole.start + 2) {
        Some(b"--" | b"/*") | None => return None,
        _ => {}
    }
    match find1(sql, 0, b';') {
        None => Some(whole),
        Some(at) if at + 1 == whole.end && ends_outside_everything(&sql[whole.start..at]) => {
            let statement = trim(sql, whole.start..at);
            (!statement.is_empty()).then_some(statement)
        }
        Some(_) => None,
    }
}

/// Whether a `;` right after `text` is a statement boundary for the lexer: outside quotes and
/// parentheses, with nothing in `text` that this byte scan does not follow exactly — a
/// backslash (escape strings), `$` (dollar quotes, parameters), comments, or a `CREATE` (a
/// routine's `BEGIN ATOMIC` body) — in which case the caller lexes instead.
fn ends_outside_everything(text: &[u8]) -> bool {
    if find1(text, 0, b'\\').is_some()
        || text
            .get(..6)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"create"))
    {
        return false;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'$' => return false,
            b'-' if text.get(i + 1) == Some(&b'-') => return false,
            b'/' if text.get(i + 1) == Some(&b'*') => return false,
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            quote @ (b'\'' | b'"') => {
                // To the closing quote; a doubled quote is one quote of the content.
                i += 1;
                loop {
                    match text.get(i) {
                        None => return false,
                        Some(&c) if c == quote && text.get(i + 1) == Some(&quote) => i += 2,
                        Some(&c) if c == quote => break,
                        Some(_) => i += 1,
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    depth == 0
}

/// Iterator returned by [`split_statements`].
#[derive(Debug, Clone)]
pub struct StatementSplitter<'a> {
    sql: &'a [u8],
    lexer: Lexer<'a>,
    /// Set when the fast check found exactly one statement; yielded instead of lexing.
    single: Option<Range<usize>>,
}

impl Iterator for StatementSplitter<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if let Some(single) = self.single.take() {
            self.lexer = Lexer::with_range(self.sql, self.sql.len()..self.sql.len());
            return Some(single);
        }
        loop {
            let seg_start = self.lexer.position();
            if seg_start >= self.sql.len() {
                return None;
            }
            let mut significant = false;
            let mut paren_depth = 0usize;
            let mut begin_depth = 0usize;
            let mut words = 0usize;
            // First letters of CREATE / OR / REPLACE / FUNCTION / PROCEDURE among the first
            // four words, as psql keeps them.
            let mut lead = [0u8; 4];
            let mut seg_end = self.sql.len();
            for t in self.lexer.by_ref() {
                let text = t.text(self.sql);
                match t.kind {
                    k if k.is_trivia() => continue,
                    TokenKind::Punct if text == b";" && paren_depth == 0 && begin_depth == 0 => {
                        seg_end = t.start;
                        break;
                    }
                    TokenKind::Punct if text == b"(" => paren_depth += 1,
                    TokenKind::Punct if text == b")" => paren_depth = paren_depth.saturating_sub(1),
                    TokenKind::Ident => {
                        let lower = |w: &[u8]| text.eq_ignore_ascii_case(w);
                        if words < lead.len()
                            && (lower(b"create")
                                || lower(b"or")
                                || lower(b"replace")
                                || lower(b"function")
                                || lower(b"procedure"))
                        {
                            lead[words] = text[0].to_ascii_lowercase();
                        }
                        words += 1;
                        let routine = lead[0] == b'c'
                            && (matches!(lead[1], b'f' | b'p')
                                || (lead[1] == b'o'
                                    && lead[2] == b'r'
                                    && matches!(lead[3], b'f' | b'p')));
                        if routine && paren_depth == 0 {
                            if lower(b"begin") {
                                begin_depth += 1;
                            } else if lower(b"case") {
                                if begin_depth > 0 {
                                    begin_depth += 1;
                                }
                            } else if lower(b"end") {
                                begin_depth = begin_depth.saturating_sub(1);
                            }
                        }
                    }
                    _ => {}
                }
                significant = true;
            }
            if significant {
                return Some(trim(self.sql, seg_start..seg_end));
            }
        }
    }
}

/// `range` without leading and trailing ASCII whitespace.
fn trim(sql: &[u8], mut range: Range<usize>) -> Range<usize> {
    while range.start < range.end && sql[range.start].is_ascii_whitespace() {
        range.start += 1;
    }
    while range.end > range.start && sql[range.end - 1].is_ascii_whitespace() {
        range.end -= 1;
    }
    range
}
