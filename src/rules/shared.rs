//! Shape-only rule results shared by every connection.
//!
//! A connection remembers what the rules decided for the shapes it ran (see
//! [`super::state::ConnectionRuleState`]), but only its last 1,024: an application with more
//! shapes than that (10,000 is not rare for an ORM-heavy monolith) would otherwise have every
//! connection work each shape out again — facts lookup and full rule evaluation — whenever it
//! comes back. This table keeps the same results once for the whole proxy, keyed by fingerprint
//! and by the session's scope (database, user, application name: what rule scopes and the
//! catalog look at), and valid for one rule set and catalog state. Measured with bench/run's
//! `shapes` workload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::state::StaticMatch;
use crate::sql::{FastHasher, Fingerprint};

/// Distinct (database, user, application name) triples interned before the table restarts.
const MAX_SCOPES: usize = 10_000;

struct Remembered {
    rule_set: u64,
    catalog_changes: u64,
    matches: Arc<[StaticMatch]>,
}

/// See the module docs. Bounded: `max_entries` results, forgotten all at once when full.
pub(crate) struct SharedStatics {
    /// Scope ids are never reused (a restarted table hands out new ones), so a connection
    /// holding an id from before a restart can never read another scope's results.
    scopes: DashMap<(String, String, String), u64>,
    next_scope: AtomicU64,
    results: DashMap<(Fingerprint, u64), Remembered, FastHasher>,
    max_entries: usize,
}

impl std::fmt::Debug for SharedStatics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStatics")
            .field("scopes", &self.scopes.len())
            .field("results", &self.results.len())
            .finish()
    }
}

impl SharedStatics {
    pub(crate) fn new(max_entries: usize) -> Self {
        SharedStatics {
            scopes: DashMap::new(),
            next_scope: AtomicU64::new(1),
            results: DashMap::default(),
            max_entries,
        }
    }

    /// The id of a session scope; once per connection (and application name change).
    pub(crate) fn scope(&self, database: &str, user: &str, application_name: &str) -> u64 {
        let key = (
            database.to_owned(),
            user.to_owned(),
            application_name.to_owned(),
        );
        if let Some(id) = self.scopes.get(&key) {
            return *id;
        }
        if self.scopes.len() >= MAX_SCOPES {
            self.scopes.clear();
        }
        *self
            .scopes
            .entry(key)
            .or_insert_with(|| self.next_scope.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn get(
        &self,
        fingerprint: Fingerprint,
        scope: u64,
        rule_set: u64,
        catalog_changes: u64,
    ) -> Option<Arc<[StaticMatch]>> {
        let found = self.results.get(&(fingerprint, scope))?;
        (found.rule_set == rule_set && found.catalog_changes == catalog_changes)
            .then(|| found.matches.clone())
    }

    pub(crate) fn insert(
        &self,
        fingerprint: Fingerprint,
        scope: u64,
        rule_set: u64,
        catalog_changes: u64,
        matches: Arc<[StaticMatch]>,
    ) {
        if self.max_entries == 0 {
            return;
        }
        if self.results.len() >= self.max_entries {
            self.results.clear();
        }
        self.results.insert(
            (fingerprint, scope),
            Remembered {
                rule_set,
                catalog_changes,
                matches,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_per_scope_rule_set_and_catalog() {
        let shared = SharedStatics::new(10);
        let web = shared.scope("shop", "web", "django");
        let batch = shared.scope("shop", "batch", "django");
        assert_ne!(web, batch);
        assert_eq!(web, shared.scope("shop", "web", "django"));
        let fp = Fingerprint(7);
        shared.insert(fp, web, 1, 0, Arc::from([StaticMatch::No]));
        assert!(shared.get(fp, web, 1, 0).is_some());
        assert!(shared.get(fp, batch, 1, 0).is_none(), "another scope");
        assert!(shared.get(fp, web, 2, 0).is_none(), "another rule set");
        assert!(shared.get(fp, web, 1, 1).is_none(), "the catalog changed");
    }

    #[test]
    fn bounded_and_scope_ids_never_reused() {
        let shared = SharedStatics::new(2);
        let scope = shared.scope("db", "u", "");
        for i in 0..5 {
            shared.insert(Fingerprint(i), scope, 1, 0, Arc::from([StaticMatch::No]));
        }
        assert!(shared.results.len() <= 2);
        shared.scopes.clear();
        assert_ne!(shared.scope("db", "u", ""), scope);
    }
}
