//! Statement fingerprints: a stable 64-bit hash of the normalized token stream.
//!
//! This is on the hot path of every statement, and with inline literals (psycopg2) nearly every
//! statement text is new, so it is one allocation-free pass of the [`lexer`](super::lexer) feeding
//! the [`walker`](super::walker) rules into a word-at-a-time hash.

use std::fmt;
use std::ops::Range;

use super::lexer::{Token, TokenKind};
use super::walker::{self, Sink};

/// Stable 64-bit shape id of a statement, printed as 16 lowercase hex digits.
///
/// Statements that differ only in constants, parameter style, list lengths, comments,
/// whitespace or keyword case share one fingerprint (the rules are on [`fingerprint()`]).
///
/// The value is a fixed function of the statement text (no random seed), so it is the same in
/// every process, on every machine and after restarts: Prometheus can sum one fingerprint across
/// many pgshape instances. It changes only with a major version of pgshape. The hash is a
/// wyhash/foldhash-style folded 128-bit multiply over the normalized token stream with the
/// fixed constants below; it is not cryptographic (statements come from the application, and a
/// collision only merges two shapes' statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Error parsing a [`Fingerprint`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 16 hexadecimal digits, got {0:?}")]
pub struct ParseFingerprintError(String);

impl std::str::FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    /// Parses the 16-hex-digit form that [`Display`](fmt::Display) prints (as found in URLs
    /// and metric labels); either letter case is accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseFingerprintError(s.chars().take(40).collect()));
        }
        u64::from_str_radix(s, 16)
            .map(Fingerprint)
            .map_err(|_| ParseFingerprintError(s.to_owned()))
    }
}

/// Fingerprint of one statement (or of a whole multi-statement string; see
/// [`split_statements`](super::split_statements) to get one per statement).
///
/// Single pass over the bytes, PostgreSQL lexical rules, no allocation. Never fails: a
/// statement with a syntax error still gets a fingerprint. The normalization:
/// - Constants are one placeholder class: numbers, strings (`''`, `E''`, `U&''`, `N''`),
///   dollar-quoted strings, bit/hex strings, `$n` parameters, typed literals (`DATE '...'`,
///   `INTERVAL '1' DAY`, `timestamp with time zone '...'`), `ARRAY[...]` of constants (psycopg2
///   renders a Python list so; psycopg 3 binds it as one `$n`), signed numbers where a sign is
///   unary (`= -1` is `= $1`; `x - 1` stays a subtraction), `NULL` except in `IS [NOT] NULL` and
///   `NOT NULL`, and `TRUE`/`FALSE` except in `IS [NOT] TRUE`.
/// - `::type` casts on a constant are dropped with it (`'x'::text`, `'2024-01-01'::date` and
///   `$1` are one shape): the cast only restates the type the `$n` form sends out of band.
///   Casts on anything else are kept.
/// - In `IN (...)` lists and `ARRAY[...]`, and between `VALUES` rows, neighbouring elements of
///   one normalized shape collapse to one: `IN (1)` and `IN (1, 2, ..., 30)` are one shape,
///   as are 1 and 500 rows of `VALUES (1, 'a')`. A row's width is kept.
/// - Comments (including a trailing sqlcommenter tag) and whitespace are ignored; unquoted
///   identifiers and keywords fold to lower case; quoted identifiers keep their case, so
///   `"Foo"` differs from `foo` while `"foo"` equals `foo`, as in PostgreSQL. (A quoted keyword
///   such as `"user"` hence equals the keyword `user`; a deliberate simplification.)
/// - `!=` is `<>` (PostgreSQL itself rewrites it).
/// - Savepoint, prepared-statement and cursor names (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`,
///   `PREPARE`, `EXECUTE`, `DEALLOCATE`, `DECLARE`, `CLOSE`, `FETCH`, `MOVE`) and the value of
///   `SET x = ...` / `SET x TO ...` (and `SET TIME ZONE`, `ROLE`, `SESSION AUTHORIZATION`,
///   `NAMES`, `SCHEMA`) are placeholders; `TO` in `SET` is `=`.
/// - `LIMIT 10`, `LIMIT $2` and `OFFSET n` follow from the constant rule.
/// - A trailing `;` (or several) does not count.
pub fn fingerprint(sql: &[u8]) -> Fingerprint {
    let mut h = HashSink::new();
    walker::walk(sql, 0..sql.len(), &mut h);
    Fingerprint(h.finish())
}

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const K_TOKEN: u64 = 0x9e37_79b9_7f4a_7c15;
const K_DATA: u64 = 0xa076_1d64_78bd_642f;
const K_FINAL: u64 = 0xe703_7ed1_a0b4_28db;

const TAG_WORD: u64 = 1;
const TAG_PLACEHOLDER: u64 = 2;
const TAG_SYMBOL: u64 = 3;

/// The 128-bit product of `a` and `b`, folded to 64 bits: the mixing step of foldhash/wyhash.
#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// ASCII `A-Z` to `a-z` in all eight bytes at once; other bytes unchanged.
#[inline]
pub(crate) fn ascii_lower8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = x & (ONES * 0x7f);
    let ge_a = low7 + ONES * (0x80 - u64::from(b'A'));
    let gt_z = low7 + ONES * (0x80 - u64::from(b'Z') - 1);
    let upper = ge_a & !gt_z & !x & (ONES * 0x80);
    x | (upper >> 2)
}

/// Little-endian 8 bytes at `i` (in bounds).
#[inline]
fn read8(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline]
fn read4(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u64::from(u32::from_le_bytes(w))
}

/// Two words covering all of `b` (at most 16 bytes), every byte in its own byte lane so ASCII
/// folding still works on them.
#[inline]
fn small_words(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    if n >= 8 {
        (read8(b, 0), read8(b, n - 8))
    } else if n >= 4 {
        (read4(b, 0), read4(b, n - 4))
    } else if n > 0 {
        (
            u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16),
            0,
        )
    } else {
        (0, 0)
    }
}

/// The fixed hash of the normalized token stream. Each token is hashed with a tag and its
/// length, so token boundaries are part of the hash (`a.b` is not `ab.`). Little-endian loads
/// keep it the same on every machine.
#[derive(Debug, Clone)]
pub(crate) struct HashSink {
    h: u64,
}

impl HashSink {
    pub(crate) fn new() -> Self {
        HashSink { h: SEED }
    }

    /// Hashes one token: one 128-bit multiply per 16 bytes, so a typical token (a keyword, a
    /// column name, a punctuation mark) costs one multiply. Short inputs are read with
    /// overlapping loads as in wyhash; the length is mixed in, so that is unambiguous.
    #[inline(always)]
    fn write<const FOLD: bool>(&mut self, tag: u64, bytes: &[u8]) {
        let meta = tag | ((bytes.len() as u64) << 8);
        let lower = |x: u64| if FOLD { ascii_lower8(x) } else { x };
        let n = bytes.len();
        let (a, b) = if n <= 16 {
            small_words(bytes)
        } else {
            let mut i = 0;
            while i + 16 < n {
                let (a, b) = (read8(bytes, i), read8(bytes, i + 8));
                self.h = folded_mul(self.h ^ lower(a) ^ K_DATA, lower(b) ^ K_TOKEN);
                i += 16;
            }
            (read8(bytes, n - 16), read8(bytes, n - 8))
        };
        self.h = folded_mul(self.h ^ lower(a) ^ K_DATA, lower(b) ^ meta ^ K_TOKEN);
    }

    pub(crate) fn finish(&self) -> u64 {
        folded_mul(self.h ^ K_FINAL, K_TOKEN) ^ self.h.rotate_left(23)
    }
}

impl Sink for HashSink {
    #[inline(always)]
    fn word(&mut self, sql: &[u8], tok: Token) {
        let text = tok.text(sql);
        if tok.kind == TokenKind::QuotedIdent {
            // "foo" names the same thing as foo: hash the inside, unfolded.
            let inner = match text {
                [b'"', inner @ .., b'"'] => inner,
                _ => text,
            };
            self.write::<false>(TAG_WORD, inner);
        } else {
            self.write::<true>(TAG_WORD, text);
        }
    }

    #[inline]
    fn placeholder(&mut self, _span: Range<usize>) {
        self.h = folded_mul(self.h ^ TAG_PLACEHOLDER, K_TOKEN);
    }

    #[inline]
    fn symbol(&mut self, text: &[u8], _span: Range<usize>) {
        self.write::<false>(TAG_SYMBOL, text);
    }
}

/// A fast fixed hash of raw bytes (no normalization), for keying caches by statement text.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = HashSink::new();
    h.write::<false>(TAG_SYMBOL, bytes);
    h.finish()
}
