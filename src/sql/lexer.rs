//! A PostgreSQL lexer over raw bytes: the one pass every other part of [`crate::sql`] builds on.
//!
//! It follows the server's lexical rules (`src/backend/parser/scan.l`) closely enough that token
//! boundaries match the server's for valid SQL: quoted identifiers with `""` escapes, standard
//! strings with `''` escapes (`standard_conforming_strings = on`, the default since 9.1, so `\` is
//! an ordinary character in `'...'`), `E''` strings with backslash escapes, `B''`/`X''` bit strings,
//! `N''` and `U&''` strings, dollar quotes with tags, nested block comments, `--` comments, `$n`
//! parameters, numbers (`1.5e10`, `.5`, `0x1F`, `1_000`), `::` and multi-character operators with
//! the server's rule for trailing `+`/`-`.
//!
//! It never fails and never allocates: malformed input (an unterminated string, a stray byte)
//! still yields tokens that cover every byte, so a statement with a syntax error is still
//! fingerprinted (the server reports the error, pgshape counts it). It is not UTF-8 aware on
//! purpose: bytes >= 0x80 are identifier characters, as in the server's scanner.

use std::ops::Range;

/// What a token is. Literal kinds are kept apart so callers can tell them apart when they need to
/// (the fingerprint treats all of them as one placeholder class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Spaces, tabs, newlines (`[ \t\n\r\f\v]+`).
    Whitespace,
    /// `-- ...` up to, not including, the end of the line.
    LineComment,
    /// `/* ... */`, nested as in PostgreSQL; an unterminated one runs to the end.
    BlockComment,
    /// An unquoted identifier or keyword (`SELECT`, `shop_order`, `a$b`).
    Ident,
    /// A quoted identifier, `"Foo"` or `U&"d\0061t"`, including its quotes.
    QuotedIdent,
    /// A standard string `'it''s'` or national string `N'...'`, including its quotes.
    String,
    /// An escape string `E'it\'s'`.
    EscapeString,
    /// A Unicode-escape string `U&'d\0061t'`.
    UnicodeString,
    /// A bit or hex string `B'0101'`, `X'1F'`.
    BitString,
    /// A dollar-quoted string `$tag$ ... $tag$`, including both tags.
    DollarString,
    /// A numeric literal: `42`, `1.5e10`, `.5`, `0x1F`, `1_000`.
    Number,
    /// A positional parameter `$1`.
    Param,
    /// An operator: `=`, `<>`, `!=`, `->>`, `@>`, `||`, `+`, ...
    Operator,
    /// Punctuation: `(`, `)`, `[`, `]`, `,`, `;`, `.`, `:`, `::`, `:=`.
    Punct,
    /// A byte PostgreSQL would reject (`\`, `{`, a `$` that starts nothing).
    Other,
}

impl TokenKind {
    /// Whitespace and comments: tokens that never change what a statement means.
    pub fn is_trivia(self) -> bool {
        matches!(
            self,
            TokenKind::Whitespace | TokenKind::LineComment | TokenKind::BlockComment
        )
    }

    /// Literal constants and `$n` parameters: the placeholder class of the fingerprint.
    pub fn is_constant(self) -> bool {
        matches!(
            self,
            TokenKind::String
                | TokenKind::EscapeString
                | TokenKind::UnicodeString
                | TokenKind::BitString
                | TokenKind::DollarString
                | TokenKind::Number
                | TokenKind::Param
        )
    }

    /// Kinds of quoted string constant (not numbers, not parameters).
    pub fn is_string(self) -> bool {
        matches!(
            self,
            TokenKind::String
                | TokenKind::EscapeString
                | TokenKind::UnicodeString
                | TokenKind::BitString
                | TokenKind::DollarString
        )
    }
}

/// One token: its kind and byte range in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

impl Token {
    /// The token's bytes in `sql` (the same slice the lexer was given).
    pub fn text<'a>(&self, sql: &'a [u8]) -> &'a [u8] {
        sql.get(self.start..self.end).unwrap_or_default()
    }

    /// The token's byte range.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

const SPACE: u8 = 1;
const IDENT_START: u8 = 2;
const IDENT_CONT: u8 = 4;
const DIGIT: u8 = 8;
const OP_CHAR: u8 = 16;

/// Byte classes, one table lookup per byte in the hot loops.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            c |= SPACE;
        }
        if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            c |= IDENT_START | IDENT_CONT;
        }
        if b.is_ascii_digit() {
            c |= DIGIT | IDENT_CONT;
        }
        if b == b'$' {
            c |= IDENT_CONT;
        }
        if matches!(
            b,
            b'~' | b'!'
                | b'@'
                | b'#'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'<'
                | b'>'
                | b'='
        ) {
            c |= OP_CHAR;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[inline]
fn class(b: u8) -> u8 {
    CLASS[b as usize]
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = ONES * 0x80;

/// High bit set in each byte of `x` that is zero (exact for the lowest such byte, which is all
/// the callers use).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// First index `>= from` of a byte equal to `a` or `b`, eight bytes at a time: literals and
/// comments (a sqlcommenter tag is a few hundred bytes) are scanned for their end this way.
#[inline]
fn find2(s: &[u8], from: usize, a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (ONES * u64::from(a), ONES * u64::from(b));
    let mut i = from;
    while i + 8 <= s.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        let w = u64::from_le_bytes(w);
        let hits = zero_bytes(w ^ pa) | zero_bytes(w ^ pb);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s.get(i..)?
        .iter()
        .position(|&x| x == a || x == b)
        .map(|p| i + p)
}

/// First index `>= from` of a byte equal to `a`.
#[inline]
pub(crate) fn find1(s: &[u8], from: usize, a: u8) -> Option<usize> {
    let pa = ONES * u64::from(a);
    let mut i = from;
    while i + 8 <= s.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        let hits = zero_bytes(u64::from_le_bytes(w) ^ pa);
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s.get(i..)?.iter().position(|&x| x == a).map(|p| i + p)
}

/// Iterator over the tokens of `sql`, trivia included. Cheap to copy, so callers peek ahead by
/// copying it.
#[derive(Debug, Clone, Copy)]
pub struct Lexer<'a> {
    sql: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// Lexes all of `sql`.
    pub fn new(sql: &'a [u8]) -> Self {
        Lexer { sql, pos: 0 }
    }

    /// Lexes `range` of `sql`; token offsets stay relative to the whole of `sql`.
    pub fn with_range(sql: &'a [u8], range: Range<usize>) -> Self {
        let end = range.end.min(sql.len());
        Lexer {
            sql: &sql[..end],
            pos: range.start.min(end),
        }
    }

    /// Byte offset of the next token.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    fn at(&self, i: usize) -> u8 {
        self.sql.get(i).copied().unwrap_or(0)
    }

    /// First index `>= i` whose byte does not have class `c`.
    #[inline]
    fn skip_class(&self, mut i: usize, c: u8) -> usize {
        while i < self.sql.len() && class(self.sql[i]) & c != 0 {
            i += 1;
        }
        i
    }

    /// End of a quoted run opened at `i - 1` by `q`, where `qq` is an escaped quote; with
    /// `backslash`, `\x` escapes any byte (E'' strings). Unterminated: the end of input.
    fn quoted_end(&self, mut i: usize, q: u8, backslash: bool) -> usize {
        let s = self.sql;
        loop {
            let found = if backslash {
                find2(s, i, q, b'\\')
            } else {
                find1(s, i, q)
            };
            let Some(j) = found else { return s.len() };
            if s[j] == q {
                if self.at(j + 1) == q {
                    i = j + 2;
                    continue;
                }
                return j + 1;
            }
            i = j + 2;
        }
    }

    /// End of a block comment whose `/*` starts at `i`.
    fn block_comment_end(&self, mut i: usize) -> usize {
        let s = self.sql;
        let mut depth = 0usize;
        while let Some(j) = find2(s, i, b'/', b'*') {
            match (s[j], self.at(j + 1)) {
                (b'/', b'*') => {
                    depth += 1;
                    i = j + 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    i = j + 2;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => i = j + 1,
            }
        }
        s.len()
    }

    /// A dollar quote starting at `i` (`$tag$` or `$$`): its end, or `None` when `$` starts no tag.
    fn dollar_quote_end(&self, i: usize) -> Option<usize> {
        let s = self.sql;
        let mut j = i + 1;
        if j < s.len() && class(s[j]) & IDENT_START != 0 {
            j += 1;
            while j < s.len() && class(s[j]) & (IDENT_START | DIGIT) != 0 {
                j += 1;
            }
        }
        if self.at(j) != b'$' {
            return None;
        }
        let tag = &s[i..=j];
        let mut k = j + 1;
        while k < s.len() {
            if s[k] == b'$' && s[k..].starts_with(tag) {
                return Some(k + tag.len());
            }
            k += 1;
        }
        Some(s.len())
    }

    /// End of a numeric literal starting at `i` (a digit, or `.` followed by a digit).
    fn number_end(&self, i: usize) -> usize {
        let s = self.sql;
        if s[i] == b'0' && matches!(self.at(i + 1), b'x' | b'X' | b'o' | b'O' | b'b' | b'B') {
            let j = i + 2;
            let end = self.skip_radix_digits(j);
            if end > j {
                return end;
            }
        }
        let mut j = self.skip_decimal_digits(i);
        if self.at(j) == b'.' && self.at(j + 1) != b'.' {
            j = self.skip_decimal_digits(j + 1);
        }
        if matches!(self.at(j), b'e' | b'E') {
            let mut k = j + 1;
            if matches!(self.at(k), b'+' | b'-') {
                k += 1;
            }
            if self.at(k).is_ascii_digit() {
                j = self.skip_decimal_digits(k);
            }
        }
        j
    }

    fn skip_decimal_digits(&self, mut i: usize) -> usize {
        while i < self.sql.len()
            && (self.sql[i].is_ascii_digit()
                || (self.sql[i] == b'_' && self.at(i + 1).is_ascii_digit()))
        {
            i += 1;
        }
        i
    }

    fn skip_radix_digits(&self, mut i: usize) -> usize {
        while i < self.sql.len() && (self.sql[i].is_ascii_hexdigit() || self.sql[i] == b'_') {
            i += 1;
        }
        i
    }

    /// End of an operator starting at `i`, with scan.l's rules: `--` and `/*` end it, and a
    /// multi-character operator may end in `+`/`-` only if it contains one of ``~!@#^&|`?%``
    /// (so `=-1` is `=` then `-1`, while `@-` stays one operator).
    fn operator_end(&self, i: usize) -> usize {
        let s = self.sql;
        let mut j = i + 1;
        while j < s.len() && class(s[j]) & OP_CHAR != 0 {
            if (s[j] == b'-' && s[j - 1] == b'-') || (s[j] == b'*' && s[j - 1] == b'/') {
                j -= 1;
                break;
            }
            j += 1;
        }
        if j - i > 1 {
            let op = &s[i..j];
            let special = op.iter().any(|b| {
                matches!(
                    b,
                    b'~' | b'!' | b'@' | b'#' | b'^' | b'&' | b'|' | b'`' | b'?' | b'%'
                )
            });
            if !special {
                while j - i > 1 && matches!(s[j - 1], b'+' | b'-') {
                    j -= 1;
                }
            }
        }
        j
    }

    /// Kind and end of the token starting at `i` (which is in bounds).
    fn scan_at(&self, i: usize) -> (TokenKind, usize) {
        let s = self.sql;
        let b = s[i];
        let c = class(b);
        if c & SPACE != 0 {
            return (TokenKind::Whitespace, self.skip_class(i + 1, SPACE));
        }
        if c & IDENT_START != 0 {
            let next = self.at(i + 1);
            match b {
                b'e' | b'E' if next == b'\'' => {
                    return (TokenKind::EscapeString, self.quoted_end(i + 2, b'\'', true));
                }
                b'b' | b'B' | b'x' | b'X' if next == b'\'' => {
                    return (TokenKind::BitString, self.quoted_end(i + 2, b'\'', false));
                }
                b'n' | b'N' if next == b'\'' => {
                    return (TokenKind::String, self.quoted_end(i + 2, b'\'', false));
                }
                b'u' | b'U' if next == b'&' && self.at(i + 2) == b'\'' => {
                    return (
                        TokenKind::UnicodeString,
                        self.quoted_end(i + 3, b'\'', false),
                    );
                }
                b'u' | b'U' if next == b'&' && self.at(i + 2) == b'"' => {
                    return (TokenKind::QuotedIdent, self.quoted_end(i + 3, b'"', false));
                }
                _ => return (TokenKind::Ident, self.skip_class(i + 1, IDENT_CONT)),
            }
        }
        if c & DIGIT != 0 {
            return (TokenKind::Number, self.number_end(i));
        }
        match b {
            b'\'' => (TokenKind::String, self.quoted_end(i + 1, b'\'', false)),
            b'"' => (TokenKind::QuotedIdent, self.quoted_end(i + 1, b'"', false)),
            b'-' if self.at(i + 1) == b'-' => {
                let end = find2(s, i, b'\n', b'\r').unwrap_or(s.len());
                (TokenKind::LineComment, end)
            }
            b'/' if self.at(i + 1) == b'*' => (TokenKind::BlockComment, self.block_comment_end(i)),
            b'$' => {
                if self.at(i + 1).is_ascii_digit() {
                    (TokenKind::Param, self.skip_class(i + 1, DIGIT))
                } else {
                    match self.dollar_quote_end(i) {
                        Some(end) => (TokenKind::DollarString, end),
                        None => (TokenKind::Other, i + 1),
                    }
                }
            }
            b'.' if self.at(i + 1).is_ascii_digit() => (TokenKind::Number, self.number_end(i)),
            b':' if matches!(self.at(i + 1), b':' | b'=') => (TokenKind::Punct, i + 2),
            b'(' | b')' | b'[' | b']' | b',' | b';' | b'.' | b':' => (TokenKind::Punct, i + 1),
            _ if c & OP_CHAR != 0 => (TokenKind::Operator, self.operator_end(i)),
            _ => (TokenKind::Other, i + 1),
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    #[inline]
    fn next(&mut self) -> Option<Token> {
        let start = self.pos;
        if start >= self.sql.len() {
            return None;
        }
        let (kind, end) = self.scan_at(start);
        // Every token covers at least one byte, whatever the input, so lexing always ends.
        let end = end.clamp(start + 1, self.sql.len());
        self.pos = end;
        Some(Token { kind, start, end })
    }
}

/// The significant tokens of a range: the [`Lexer`] without whitespace and comments.
#[derive(Debug, Clone, Copy)]
pub struct SignificantTokens<'a> {
    lexer: Lexer<'a>,
}

impl<'a> SignificantTokens<'a> {
    /// Significant tokens of `range` of `sql`.
    pub fn with_range(sql: &'a [u8], range: Range<usize>) -> Self {
        SignificantTokens {
            lexer: Lexer::with_range(sql, range),
        }
    }

    /// Significant tokens of all of `sql`.
    pub fn new(sql: &'a [u8]) -> Self {
        SignificantTokens {
            lexer: Lexer::new(sql),
        }
    }

    /// The next significant token without consuming it.
    #[inline]
    pub fn peek(&self) -> Option<Token> {
        let mut ahead = *self;
        ahead.next()
    }
}

impl Iterator for SignificantTokens<'_> {
    type Item = Token;

    #[inline]
    fn next(&mut self) -> Option<Token> {
        loop {
            // Skip whitespace here rather than build a token for it: half of all tokens are
            // single spaces.
            let lx = &mut self.lexer;
            lx.pos = lx.skip_class(lx.pos, SPACE);
            let t = lx.next()?;
            if !t.kind.is_trivia() {
                return Some(t);
            }
        }
    }
}
