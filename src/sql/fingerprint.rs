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
/// many pgshape instances. It changes only with a major version of pgshape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
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
fn ascii_lower8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = x & (ONES * 0x7f);
    let ge_a = low7 + ONES * (0x80 - u64::from(b'A'));
    let gt_z = low7 + ONES * (0x80 - u64::from(b'Z') - 1);
    let upper = ge_a & !gt_z & !x & (ONES * 0x80);
    x | (upper >> 2)
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

    #[inline]
    fn write(&mut self, tag: u64, bytes: &[u8], fold: bool) {
        self.h = folded_mul(self.h ^ tag ^ ((bytes.len() as u64) << 8), K_TOKEN);
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut buf = [0u8; 8];
            buf.copy_from_slice(c);
            self.mix(u64::from_le_bytes(buf), fold);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(buf), fold);
        }
    }

    #[inline]
    fn mix(&mut self, v: u64, fold: bool) {
        let v = if fold { ascii_lower8(v) } else { v };
        self.h = folded_mul(self.h ^ v, K_DATA);
    }

    pub(crate) fn finish(&self) -> u64 {
        folded_mul(self.h ^ K_FINAL, K_TOKEN) ^ self.h.rotate_left(23)
    }
}

impl Sink for HashSink {
    #[inline]
    fn word(&mut self, sql: &[u8], tok: Token) {
        let text = tok.text(sql);
        if tok.kind == TokenKind::QuotedIdent {
            // "foo" names the same thing as foo: hash the inside, unfolded.
            let inner = match text {
                [b'"', inner @ .., b'"'] => inner,
                _ => text,
            };
            self.write(TAG_WORD, inner, false);
        } else {
            self.write(TAG_WORD, text, true);
        }
    }

    #[inline]
    fn placeholder(&mut self, _span: Range<usize>) {
        self.h = folded_mul(self.h ^ TAG_PLACEHOLDER, K_TOKEN);
    }

    #[inline]
    fn symbol(&mut self, text: &[u8], _span: Range<usize>) {
        self.write(TAG_SYMBOL, text, false);
    }
}

/// A fast fixed hash of raw bytes (no normalization), for keying caches by statement text.
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = HashSink::new();
    h.write(TAG_SYMBOL, bytes, false);
    h.finish()
}
