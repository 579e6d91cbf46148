//! Per-execution facts that depend on the statement's constants, which the fingerprint (and
//! so the [`super::Facts`] cache) deliberately forgets: OFFSET values, IN-list lengths and
//! LIKE patterns with a leading wildcard.
//!
//! A token scan, not a parse: it runs on pgshape's own allocation-free lexer
//! ([`crate::sql::lexer`]), a small fraction of a parse, and the constructs it reads are
//! lexically unambiguous once strings and comments are tokens.

use crate::sql::lexer::{SignificantTokens, Token, TokenKind};

/// Constants of one execution. With `$n` parameters the values are not in the text, so
/// `offset` is `None` and a parameter pattern is not a leading wildcard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ValueFacts {
    /// Largest literal OFFSET anywhere in the statement.
    pub offset: Option<u64>,
    /// Longest `IN (…)` constant list or `ARRAY[…]` (parameters count as elements).
    pub max_in_list_len: usize,
    /// `LIKE '%…'` / `ILIKE '_…'`, also through `UPPER('%…')` as Django writes it.
    pub leading_wildcard_like: bool,
}

/// Scans one statement's tokens. Never fails: what it cannot read it leaves at the default.
pub fn scan_values(sql: &[u8]) -> ValueFacts {
    let mut facts = ValueFacts::default();
    let mut tokens = SignificantTokens::new(sql);
    while let Some(token) = tokens.next() {
        let text = token.text(sql);
        let is = |word: &[u8]| token.kind == TokenKind::Ident && text.eq_ignore_ascii_case(word);
        if is(b"offset") {
            if let Some(next) = tokens.peek()
                && next.kind == TokenKind::Number
                && let Some(n) = std::str::from_utf8(next.text(sql))
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
            {
                facts.offset = Some(facts.offset.map_or(n, |o| o.max(n)));
            }
        } else if is(b"like") || is(b"ilike") {
            // Skip `UPPER(` / `lower(` wrappers to the pattern itself.
            let mut ahead = tokens;
            let pattern = ahead.find(|t| !(t.kind == TokenKind::Ident || punct(sql, *t, b"(")));
            if pattern.is_some_and(|p| string_starts_with_wildcard(p.kind, p.text(sql))) {
                facts.leading_wildcard_like = true;
            }
        } else if is(b"in") && tokens.peek().is_some_and(|t| punct(sql, t, b"(")) {
            let mut ahead = tokens;
            ahead.next();
            let subquery = ahead.peek().is_some_and(|t| {
                let w = t.text(sql);
                t.kind == TokenKind::Ident
                    && (w.eq_ignore_ascii_case(b"select")
                        || w.eq_ignore_ascii_case(b"with")
                        || w.eq_ignore_ascii_case(b"values"))
            });
            if !subquery {
                facts.max_in_list_len = facts.max_in_list_len.max(list_len(sql, ahead));
            }
        } else if is(b"array") && tokens.peek().is_some_and(|t| punct(sql, t, b"[")) {
            let mut ahead = tokens;
            ahead.next();
            facts.max_in_list_len = facts.max_in_list_len.max(list_len(sql, ahead));
        }
    }
    facts
}

fn punct(sql: &[u8], token: Token, text: &[u8]) -> bool {
    token.kind == TokenKind::Punct && token.text(sql) == text
}

/// Elements of a list whose opening bracket was just consumed: top-level commas + 1.
fn list_len(sql: &[u8], tokens: SignificantTokens<'_>) -> usize {
    let mut depth = 0usize;
    let mut commas = 0usize;
    for (i, token) in tokens.enumerate() {
        if token.kind != TokenKind::Punct {
            continue;
        }
        match token.text(sql) {
            b"(" | b"[" => depth += 1,
            b")" | b"]" => {
                if depth == 0 {
                    return if i == 0 { 0 } else { commas + 1 };
                }
                depth -= 1;
            }
            b"," if depth == 0 => commas += 1,
            _ => {}
        }
    }
    commas + 1
}

/// Whether a string literal token's content starts with `%` or `_`.
fn string_starts_with_wildcard(kind: TokenKind, text: &[u8]) -> bool {
    let content = match kind {
        // `'…'`, `N'…'`, `E'…'`, `U&'…'`: the content follows the first quote.
        TokenKind::String | TokenKind::EscapeString | TokenKind::UnicodeString => text
            .iter()
            .position(|b| *b == b'\'')
            .and_then(|i| text.get(i + 1)),
        // `$tag$…$tag$`: the content follows the second `$`.
        TokenKind::DollarString => text
            .iter()
            .skip(1)
            .position(|b| *b == b'$')
            .and_then(|i| text.get(i + 2)),
        _ => None,
    };
    matches!(content, Some(b'%' | b'_'))
}
