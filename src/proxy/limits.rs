//! Per-database and per-user client connection limits, like pgbouncer's `max_db_connections`
//! and `max_user_connections`: in session mode every client holds a server connection, so one
//! runaway application could otherwise take all of PostgreSQL's `max_connections` from the
//! others. Checked once per session at start-up (never on the statement path), under a mutex;
//! entries go away with their last connection, so memory follows the live sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Live sessions per database and per user.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    databases: HashMap<String, usize>,
    users: HashMap<String, usize>,
}

/// Which limit refused a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("too many connections for database \"{0}\"")]
    Database(String),
    #[error("too many connections for role \"{0}\"")]
    User(String),
}

impl LimitExceeded {
    /// The pgshape setting that was reached, for the client's hint.
    pub fn setting(&self) -> &'static str {
        match self {
            LimitExceeded::Database(_) => "max_connections_per_database",
            LimitExceeded::User(_) => "max_connections_per_user",
        }
    }
}

/// A counted session; counts down when dropped.
#[derive(Debug)]
pub struct Counted {
    counts: Arc<ConnectionCounts>,
    database: String,
    user: String,
}

impl ConnectionCounts {
    /// Counts a session of `user` on `database` unless that would exceed a limit (0 = none).
    ///
    /// # Errors
    /// The limit that is already reached; nothing is counted then.
    pub fn admit(
        self: &Arc<Self>,
        database: &str,
        user: &str,
        per_database: usize,
        per_user: usize,
    ) -> Result<Counted, LimitExceeded> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let at = |map: &HashMap<String, usize>, key: &str| map.get(key).copied().unwrap_or(0);
        if per_database > 0 && at(&c.databases, database) >= per_database {
            return Err(LimitExceeded::Database(database.to_owned()));
        }
        if per_user > 0 && at(&c.users, user) >= per_user {
            return Err(LimitExceeded::User(user.to_owned()));
        }
        *c.databases.entry(database.to_owned()).or_default() += 1;
        *c.users.entry(user.to_owned()).or_default() += 1;
        Ok(Counted {
            counts: self.clone(),
            database: database.to_owned(),
            user: user.to_owned(),
        })
    }

    /// Live sessions on `database`.
    pub fn database(&self, database: &str) -> usize {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.databases.get(database).copied().unwrap_or(0)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut c = self.counts.counts.lock().unwrap_or_else(|e| e.into_inner());
        let Counts { databases, users } = &mut *c;
        for (map, key) in [(databases, &self.database), (users, &self.user)] {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_database_and_user_and_release_on_drop() {
        let counts = Arc::new(ConnectionCounts::default());
        let a = counts.admit("shop", "web", 2, 0).unwrap();
        let b = counts.admit("shop", "cron", 2, 0).unwrap();
        assert_eq!(
            counts.admit("shop", "web", 2, 0).unwrap_err(),
            LimitExceeded::Database("shop".into())
        );
        // Another database is not affected.
        let other = counts.admit("reports", "web", 2, 0).unwrap();
        drop(a);
        let c = counts.admit("shop", "web", 2, 0).unwrap();
        assert_eq!(counts.database("shop"), 2);

        let users = Arc::new(ConnectionCounts::default());
        let u1 = users.admit("a", "web", 0, 1).unwrap();
        assert_eq!(
            users.admit("b", "web", 0, 1).unwrap_err(),
            LimitExceeded::User("web".into())
        );
        drop((b, c, other, u1));
        assert_eq!(counts.database("shop"), 0);
        assert!(
            counts.counts.lock().unwrap().databases.is_empty(),
            "no leftover entries"
        );
        assert!(users.counts.lock().unwrap().users.is_empty());
    }
}
