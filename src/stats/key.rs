//! The statistics key (fingerprint, database, user) and its cheap hashing.
//!
//! The hot path looks entries up with the session's borrowed `&str`s; building an owned key
//! would allocate twice per statement. The map's key type therefore borrows as `dyn KeyView`,
//! which both the owned [`Key`] and the borrowed [`KeyRef`] implement with the same `Hash` and
//! `Eq`. The hasher is a fixed multiply-rotate one: the fingerprint is already a good hash, the
//! strings are short, and SipHash's DoS resistance buys nothing here (the map is bounded).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

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

pub(crate) use crate::sql::FastHasher as BuildKeyHasher;

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
