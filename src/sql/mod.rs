//! SQL text handling: fingerprints, statement splitting and sqlcommenter tags.
//!
//! INTERIM: this file holds the API contract with placeholder bodies; the real lexer replaces it.

pub mod analysis;
use std::fmt;
use std::ops::Range;

/// Stable 64-bit shape id of a statement, printed as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Fingerprint of one statement.
pub fn fingerprint(sql: &[u8]) -> Fingerprint {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in sql {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    Fingerprint(h)
}

/// Byte ranges of the statements in a simple-protocol query string, in order, skipping empty ones.
pub fn split_statements(sql: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in sql.iter().enumerate() {
        if *b == b';' {
            if sql[start..i].iter().any(|c| !c.is_ascii_whitespace()) {
                out.push(start..i);
            }
            start = i + 1;
        }
    }
    if sql[start..].iter().any(|c| !c.is_ascii_whitespace()) {
        out.push(start..sql.len());
    }
    out
}
