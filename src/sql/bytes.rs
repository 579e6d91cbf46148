//! Byte searches eight bytes at a time (SWAR), for the ends of literals, quoted identifiers
//! and comments and for `;` in a query (a sqlcommenter tag alone is a few hundred bytes).
//! Tokens are short, so this plain-Rust search is enough; no dependency needed.

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
pub(crate) fn find2(s: &[u8], from: usize, a: u8, b: u8) -> Option<usize> {
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
