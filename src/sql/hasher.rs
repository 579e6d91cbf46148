//! The hasher of the maps keyed by fingerprints (and by short strings beside them).
//!
//! A fingerprint is already a good 64-bit hash, and those maps are bounded, so SipHash's
//! resistance to chosen collisions buys nothing while costing a few dozen instructions per
//! lookup on the hot path (callgrind showed SipHash among the top costs per statement).

use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hasher (the FxHash scheme) with a final fold so that hashbrown's top-bit
/// control bytes and dashmap's shard bits are both well mixed.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

const SEED: u64 = 0xf135_7aea_2e62_a9c5;

impl KeyHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let wide = u128::from(self.0) * u128::from(SEED);
        (wide as u64) ^ ((wide >> 64) as u64)
    }
}

/// Builds [`KeyHasher`]s: the hasher of every map keyed by fingerprints.
pub type FastHasher = BuildHasherDefault<KeyHasher>;
