//! The statistics key (fingerprint, database, user) and its cheap hashing.
//!
//! The hot path looks entries up with the session's borrowed `&str`s; building an owned key
//! would allocate twice per statement. The map's key type therefore borrows as `dyn KeyView`,
//! which both the owned [`Key`] and the borrowed [`KeyRef`] implement with the same `Hash` and
//! `Eq`. The hasher is a fixed multiply-rotate one: the fingerprint is already a good hash, the
//! strings are short, and SipHash's DoS resistance buys nothing here (the map is bounded).

use std::borrow::Borrow;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// What lookups compare: owned and borrowed keys alike.
pub(crate) trait KeyView {
    fn fingerprint(&self) -> u64;
    fn database(&self) -> &str;
    fn user(&self) -> &str;
}

/// Owned key, stored in the map.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub fingerprint: u64,
    pub database: Box<str>,
    pub user: Box<str>,
}

/// Borrowed key, built per statement without allocating.
pub(crate) struct KeyRef<'a> {
    pub fingerprint: u64,
    pub database: &'a str,
    pub user: &'a str,
}

impl KeyView for Key {
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn database(&self) -> &str {
        &self.database
    }
    fn user(&self) -> &str {
        &self.user
    }
}

impl KeyView for KeyRef<'_> {
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn database(&self) -> &str {
        self.database
    }
    fn user(&self) -> &str {
        self.user
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.fingerprint());
        self.database().hash(state);
        self.user().hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint() == other.fingerprint()
            && self.database() == other.database()
            && self.user() == other.user()
    }
}

impl Eq for dyn KeyView + '_ {}

// `Key`'s own Hash/Eq must agree with the `dyn KeyView` ones, or borrowed lookups miss.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn KeyView).hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        (self as &dyn KeyView) == (other as &dyn KeyView)
    }
}

impl Eq for Key {}

impl<'a> Borrow<dyn KeyView + 'a> for Key {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

/// Multiply-rotate hasher (the FxHash scheme) with a final fold so that hashbrown's top-bit
/// control bytes and dashmap's shard bits are both well mixed.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

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

pub(crate) type BuildKeyHasher = BuildHasherDefault<KeyHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn owned_and_borrowed_keys_hash_and_compare_alike() {
        let owned = Key {
            fingerprint: 7,
            database: "app".into(),
            user: "web".into(),
        };
        let borrowed = KeyRef {
            fingerprint: 7,
            database: "app",
            user: "web",
        };
        let b = BuildKeyHasher::default();
        assert_eq!(b.hash_one(&owned), b.hash_one(&borrowed as &dyn KeyView));
        assert!(<Key as Borrow<dyn KeyView>>::borrow(&owned) == &borrowed as &dyn KeyView);
        // The string boundary is part of the hash: ("ab","c") differs from ("a","bc").
        let other = KeyRef {
            fingerprint: 7,
            database: "appw",
            user: "eb",
        };
        assert!(&other as &dyn KeyView != &borrowed as &dyn KeyView);
        assert_ne!(b.hash_one(&other as &dyn KeyView), b.hash_one(&owned));
    }
}
