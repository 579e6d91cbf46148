//! Where `scram_proxy` finds a role's SCRAM verifier: an `auth_file` in pgbouncer's
//! `userlist.txt` format, or an `auth_query` run on a dedicated connection, cached briefly.
//!
//! The file is re-read when its modification time changes (checked at each login: a `stat`),
//! so rotating a password needs no signal. Query results, found or not, are cached for
//! `cache_secs` so that a burst of connections costs one query; the cache is bounded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::super::timer;
use crate::config::Secret;
use crate::protocol::scram::{ScramError, Verifier};

/// Entries kept by the auth_query cache before it is emptied.
const CACHE_ENTRIES: usize = 10_000;
/// How long one auth_query (connect included) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What is known about a role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Verifier),
    /// No such role (or no line for it): the login fails like a wrong password.
    Unknown,
    /// The role exists but its secret cannot be used for SCRAM (an md5 hash, none at all).
    NotScram(&'static str),
}

/// Why a verifier could not be looked up at all.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("cannot read auth_file {path}: {message}")]
    File { path: String, message: String },
    #[error("auth_file {path} line {line}: expected \"user\" \"verifier\"")]
    FileSyntax { path: String, line: usize },
    #[error("auth_query failed: {0}")]
    Query(String),
}

pub(crate) struct AuthFile {
    path: PathBuf,
    loaded: Mutex<(Option<SystemTime>, HashMap<String, String>)>,
}

impl AuthFile {
    /// Reads the file now, so that a broken one stops pgshape at start.
    pub(crate) fn open(path: &Path) -> Result<AuthFile, LookupError> {
        let file = AuthFile {
            path: path.to_owned(),
            loaded: Mutex::new((None, HashMap::new())),
        };
        file.refresh()?;
        Ok(file)
    }

    fn refresh(&self) -> Result<(), LookupError> {
        let err = |e: std::io::Error| LookupError::File {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(err)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 == Some(modified) {
            return Ok(());
        }
        let text = std::fs::read_to_string(&self.path).map_err(err)?;
        let entries = parse_userlist(&text).map_err(|line| LookupError::FileSyntax {
            path: self.path.display().to_string(),
            line,
        })?;
        *loaded = (Some(modified), entries);
        Ok(())
    }

    pub(crate) fn lookup(&self, user: &str) -> Lookup {
        if let Err(error) = self.refresh() {
            // The previous contents stay in force: a half-written file must not lock everyone out.
            tracing::warn!(%error, "auth_file not reloaded; keeping the previous contents");
        }
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        match loaded.1.get(user) {
            None => Lookup::Unknown,
            Some(secret) => classify(secret),
        }
    }
}

/// `"user" "secret"` per line; `""` is a quote inside a field; `;` and `#` start comments.
/// Returns the 1-based number of the first malformed line.
fn parse_userlist(text: &str) -> Result<HashMap<String, String>, usize> {
    let mut entries = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        let (user, rest) = quoted(line).ok_or(index + 1)?;
        let (secret, rest) = quoted(rest.trim_start()).ok_or(index + 1)?;
        if !rest.trim().is_empty() && !rest.trim_start().starts_with(['#', ';']) {
            return Err(index + 1);
        }
        entries.insert(user, secret);
    }
    Ok(entries)
}

/// A leading `"..."` field and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut rest = text.strip_prefix('"')?;
    let mut value = String::new();
    loop {
        let end = rest.find('"')?;
        value.push_str(&rest[..end]);
        let after = &rest[end + 1..];
        match after.strip_prefix('"') {
            Some(next) => {
                value.push('"');
                rest = next;
            }
            None => return Some((value, after)),
        }
    }
}

fn classify(secret: &str) -> Lookup {
    match Verifier::parse(secret) {
        Ok(verifier) => Lookup::Found(verifier),
        Err(ScramError::NotScram(what)) => Lookup::NotScram(what),
        Err(_) => Lookup::NotScram("not a SCRAM-SHA-256$... verifier"),
    }
}

pub(crate) struct AuthQuery {
    dsn: Secret,
    query: String,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Lookup)>>,
}

impl AuthQuery {
    pub(crate) fn new(dsn: Secret, query: String, ttl: Duration) -> Result<AuthQuery, LookupError> {
        dsn.expose()
            .parse::<tokio_postgres::Config>()
            // The parser's message never repeats the DSN (and so no password).
            .map_err(|e| LookupError::Query(format!("invalid auth_dsn: {e}")))?;
        Ok(AuthQuery {
            dsn,
            query,
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) async fn lookup(&self, user: &str) -> Result<Lookup, LookupError> {
        let now = Instant::now();
        if let Some((at, lookup)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            && now.duration_since(*at) < self.ttl
        {
            return Ok(lookup.clone());
        }
        // On the timer thread: tokio-postgres sets timers of its own (a DSN's
        // `connect_timeout`), which a worker's runtime does not drive.
        let (dsn, query, name) = (self.dsn.clone(), self.query.clone(), user.to_owned());
        let lookup = timer::spawn(async move {
            timer::timeout(QUERY_TIMEOUT, lookup_secret(&dsn, &query, &name)).await
        })
        .await
        .map_err(|e| LookupError::Query(format!("the lookup failed: {e}")))?
        .map_err(|_| LookupError::Query(format!("no answer within {QUERY_TIMEOUT:?}")))??;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(user.to_owned(), (now, lookup.clone()));
        Ok(lookup)
    }
}

/// `auth_query`'s answer for `user`, on a connection of its own.
async fn lookup_secret(dsn: &Secret, query: &str, user: &str) -> Result<Lookup, LookupError> {
    let config: tokio_postgres::Config = dsn
        .expose()
        .parse()
        .map_err(|e| LookupError::Query(format!("invalid auth_dsn: {e}")))?;
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| LookupError::Query(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let rows = client.query(query, &[&user]).await;
    drop(client);
    let _ = driver.await;
    let rows = rows.map_err(|e| LookupError::Query(e.to_string()))?;
    let Some(row) = rows.first() else {
        return Ok(Lookup::Unknown);
    };
    let secret: Option<String> = row
        .try_get(1)
        .map_err(|e| LookupError::Query(format!("the second column: {e}")))?;
    Ok(match secret {
        None => Lookup::NotScram("the role has no password"),
        Some(secret) => classify(&secret),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userlist_lines_quotes_and_comments() {
        let text = "; pgbouncer style\n\"app\" \"SCRAM-SHA-256$4096:c2FsdA==$a:b\"\n\n\
                    # another comment\n\"we\"\"ird\" \"md5abc\"  ; trailing\n";
        let entries = parse_userlist(text).unwrap();
        assert_eq!(entries["app"], "SCRAM-SHA-256$4096:c2FsdA==$a:b");
        assert_eq!(entries["we\"ird"], "md5abc");
        assert_eq!(parse_userlist("\"app\" \"x\"\napp x\n"), Err(2));
        assert_eq!(parse_userlist("\"app\" \"unterminated\n"), Err(1));
        assert_eq!(parse_userlist("\"app\" \"x\" junk\n"), Err(1));
    }

    #[test]
    fn the_file_is_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("userlist.txt");
        let v = Verifier::from_password("secret", b"salt", 4096);
        std::fs::write(&path, format!("\"app\" \"{}\"\n", v.to_text())).unwrap();
        let file = AuthFile::open(&path).unwrap();
        assert_eq!(file.lookup("app"), Lookup::Found(v.clone()));
        assert_eq!(file.lookup("nobody"), Lookup::Unknown);

        std::fs::write(&path, "\"app\" \"md5a3556571e93b0d20722ba62be61e8c2d\"\n").unwrap();
        // Make sure the modification time moves even on coarse file systems.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(file.lookup("app"), Lookup::NotScram("an md5 hash"));

        // A broken rewrite keeps what was there.
        std::fs::write(&path, "broken\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(5))
            .unwrap();
        assert_eq!(file.lookup("app"), Lookup::NotScram("an md5 hash"));
        assert!(matches!(
            AuthFile::open(&path),
            Err(LookupError::FileSyntax { line: 1, .. })
        ));
    }
}
