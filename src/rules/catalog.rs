//! The catalog oracle: primary keys, unique indexes, foreign keys and table sizes read from
//! `pg_catalog` through a monitoring connection, one snapshot per database.
//!
//! Why per database: catalogs are per database, and one pgshape fronts many. The DSN names any
//! database; each statement's database replaces it. Lookups never wait for the network: a
//! database seen for the first time is queued for loading and answered by the heuristic until
//! its snapshot arrives ([`CatalogOracle::spawn_refresher`] loads queued databases within a
//! second and re-reads every known one on the refresh interval; [`CatalogOracle::refresh`]
//! does it on demand).
//!
//! The connection uses no TLS (`NoTls`): point the DSN at a local socket or a network where
//! the monitoring role's traffic may travel in the clear.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::{DashMap, DashSet};
use serde::Serialize;
use tokio_postgres::NoTls;

use super::oracle::{HeuristicOracle, OracleKind, Uniqueness, UniquenessOracle};
use crate::sql::analysis::TableRef;

/// Errors loading a catalog snapshot.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid schema DSN: {0}")]
    Dsn(tokio_postgres::Error),
    #[error("catalog of database {database}: {source}")]
    Query {
        database: String,
        source: tokio_postgres::Error,
    },
    #[error("catalog of database {database}: connect timed out")]
    Timeout { database: String },
}

/// Why [`CatalogOracle::connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// Not connected within the DSN's `connect_timeout` (5 s when it sets none).
    Timeout,
    Failed(tokio_postgres::Error),
}

/// A foreign key, for reporting which relationship a join follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    pub columns: Vec<String>,
    pub references: TableRef,
    pub referenced_columns: Vec<String>,
}

/// What the catalog says about one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableInfo {
    /// Column sets of the primary key and of every valid, non-partial, non-expression unique
    /// index (INCLUDE columns left out: they are not part of the uniqueness).
    pub unique_keys: Vec<Vec<String>>,
    pub foreign_keys: Vec<ForeignKey>,
    /// `pg_class.reltuples`; `None` when never analysed (-1).
    pub estimated_rows: Option<u64>,
    /// Every user column in table order with its NOT NULL flag: a rewrite resolves unqualified
    /// names with them and drops a DISTINCT only over a key whose columns are NOT NULL.
    pub columns: Vec<Column>,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub not_null: bool,
}

impl TableInfo {
    /// The column named `name`, if the table has it.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Whether `columns` include every column of a unique key whose columns are all NOT NULL
    /// (the primary key, or a unique index over NOT NULL columns): rows that agree on such
    /// columns are the same row.
    pub fn has_not_null_key(&self, columns: &[&str]) -> bool {
        self.unique_keys.iter().any(|key| {
            key.iter().all(|k| {
                columns.contains(&k.as_str()) && self.column(k).is_some_and(|c| c.not_null)
            })
        })
    }

    /// Whether `columns` cover some unique key (NULLs allowed: an equality never matches them,
    /// so a join on a covered key finds at most one row).
    pub fn has_unique_key(&self, columns: &[&str]) -> bool {
        self.unique_keys
            .iter()
            .any(|key| key.iter().all(|k| columns.contains(&k.as_str())))
    }
}

/// One database's tables, keyed by (schema, name).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub tables: HashMap<(String, String), TableInfo>,
    /// Distinct for every snapshot loaded by one oracle (1, 2, …).
    pub generation: u64,
    /// Names of functions whose every overload is a plain, non-set-returning function that is
    /// immutable or stable: a rewrite may move or keep a call to them, never any other.
    pub safe_functions: std::collections::HashSet<String>,
}

impl Snapshot {
    /// Schemas that have a table named `name`.
    pub fn schemas_of(&self, name: &str) -> Vec<&str> {
        let mut schemas: Vec<&str> = self
            .tables
            .keys()
            .filter(|(_, n)| n == name)
            .map(|(s, _)| s.as_str())
            .collect();
        schemas.sort_unstable();
        schemas
    }

    /// Finds a table; an unqualified name prefers `public`, then a schema where it is unique.
    pub fn table(&self, table: &TableRef) -> Option<&TableInfo> {
        if let Some(schema) = &table.schema {
            return self.tables.get(&(schema.clone(), table.name.clone()));
        }
        if let Some(info) = self.tables.get(&("public".to_owned(), table.name.clone())) {
            return Some(info);
        }
        let mut found = self.tables.iter().filter(|((_, n), _)| *n == table.name);
        match (found.next(), found.next()) {
            (Some((_, info)), None) => Some(info),
            _ => None,
        }
    }
}

/// Catalog-backed [`UniquenessOracle`], falling back to the heuristic for unknown tables and
/// not-yet-loaded databases.
#[derive(Debug)]
pub struct CatalogOracle {
    base: tokio_postgres::Config,
    snapshots: DashMap<String, Arc<Snapshot>>,
    wanted: DashSet<String>,
    /// When a database's last load failed: it is not queued again before the refresh interval
    /// (a role without access would otherwise be retried, and logged, every second).
    failed: DashMap<String, Instant>,
    loads: AtomicU64,
    refresh_every: Duration,
}

const TABLES: &str = "SELECT c.oid, n.nspname::text, c.relname::text, c.reltuples::float8 \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p', 'm') \
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
      AND n.nspname NOT LIKE 'pg_toast%'";

const UNIQUE_KEYS: &str = "SELECT i.indrelid, array_agg(a.attname::text ORDER BY k.ord) \
    FROM pg_index i \
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
    WHERE i.indisunique AND i.indisvalid AND i.indpred IS NULL \
      AND NOT (0 = ANY (i.indkey::int2[])) AND k.ord <= i.indnkeyatts \
    GROUP BY i.indexrelid, i.indrelid";

const COLUMNS: &str = "SELECT a.attrelid, a.attname::text, a.attnotnull \
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
    JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped \
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
      AND n.nspname NOT LIKE 'pg_toast%' \
    ORDER BY a.attrelid, a.attnum";

const SAFE_FUNCTIONS: &str = "SELECT proname::text FROM pg_proc GROUP BY proname \
    HAVING bool_and(prokind = 'f' AND NOT proretset AND provolatile IN ('i', 's'))";

const FOREIGN_KEYS: &str = "SELECT c.conrelid, rn.nspname::text, r.relname::text, \
      ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) \
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), \
      ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) \
            JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o) \
    FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid \
    JOIN pg_namespace rn ON rn.oid = r.relnamespace WHERE c.contype = 'f'";

impl CatalogOracle {
    /// An oracle for `dsn` (libpq key/value or URL form), re-reading catalogs every
    /// `refresh_every`.
    ///
    /// # Errors
    /// When the DSN does not parse.
    pub fn new(dsn: &str, refresh_every: Duration) -> Result<CatalogOracle, CatalogError> {
        let mut base = tokio_postgres::Config::from_str(dsn).map_err(CatalogError::Dsn)?;
        if base.get_connect_timeout().is_none() {
            base.connect_timeout(Duration::from_secs(5));
        }
        if base.get_application_name().is_none() {
            base.application_name("pgshape-catalog");
        }
        Ok(CatalogOracle {
            base,
            snapshots: DashMap::new(),
            wanted: DashSet::new(),
            failed: DashMap::new(),
            loads: AtomicU64::new(0),
            refresh_every,
        })
    }

    /// Connection settings for `database`: the DSN's, with the database replaced (the side
    /// connection of rewrite proofs and shadow runs uses them too).
    pub fn connect_config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = self.base.clone();
        config.dbname(database);
        config
    }

    /// Connects to `database` with [`Self::connect_config`] (and `application_name`, when
    /// given) within the DSN's `connect_timeout`. The connection is driven by a spawned task,
    /// returned so a caller can wait for it to end after dropping the client.
    ///
    /// # Errors
    /// When connecting fails or times out.
    pub async fn connect(
        &self,
        database: &str,
        application_name: Option<&str>,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), ConnectError> {
        let mut config = self.connect_config(database);
        if let Some(name) = application_name {
            config.application_name(name);
        }
        let timeout = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(5));
        let (client, connection) = tokio::time::timeout(timeout, config.connect(NoTls))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(ConnectError::Failed)?;
        let (database, application_name) = (
            database.to_owned(),
            config.get_application_name().unwrap_or_default().to_owned(),
        );
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, database, application_name, "schema connection ended");
            }
        });
        Ok((client, driver))
    }

    /// The database the DSN names, used when a caller has no statement database (`check`).
    pub fn default_database(&self) -> Option<&str> {
        self.base.get_dbname()
    }

    /// Reads the catalog of `database` now and replaces its snapshot.
    ///
    /// # Errors
    /// When connecting or querying fails; the previous snapshot stays.
    pub async fn refresh(&self, database: &str) -> Result<(), CatalogError> {
        let mut snapshot = self.load(database).await?;
        // An unchanged catalog keeps its generation, so judgements and rewrite proofs made
        // under it stay valid; any change (a key, an index, a column) makes a new one.
        let unchanged = self.snapshots.get(database).filter(|old| {
            old.tables == snapshot.tables && old.safe_functions == snapshot.safe_functions
        });
        snapshot.generation = match unchanged {
            Some(old) => old.generation,
            None => self.loads.fetch_add(1, Ordering::Relaxed) + 1,
        };
        tracing::info!(database, tables = snapshot.tables.len(), "catalog loaded");
        self.snapshots
            .insert(database.to_owned(), Arc::new(snapshot));
        self.wanted.remove(database);
        Ok(())
    }

    /// Re-reads every database seen so far (the on-demand refresh of the admin API).
    pub async fn refresh_all(&self) {
        let mut databases: Vec<String> = self.snapshots.iter().map(|e| e.key().clone()).collect();
        databases.extend(self.wanted.iter().map(|d| d.clone()));
        databases.sort();
        databases.dedup();
        for database in databases {
            if let Err(error) = self.refresh(&database).await {
                tracing::warn!(%error, database, "catalog refresh failed; keeping the old one");
            }
        }
    }

    /// Runs the background loader on the current tokio runtime: queued databases within a
    /// second, every known database each refresh interval. Stops when the oracle is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut since_full = Duration::ZERO;
            loop {
                tick.tick().await;
                let Some(oracle) = weak.upgrade() else { return };
                since_full += Duration::from_secs(1);
                if since_full >= oracle.refresh_every {
                    since_full = Duration::ZERO;
                    oracle.refresh_all().await;
                    continue;
                }
                let queued: Vec<String> = oracle.wanted.iter().map(|d| d.clone()).collect();
                for database in queued {
                    if let Err(error) = oracle.refresh(&database).await {
                        // Drop it from the queue; the next full refresh tries again.
                        oracle.wanted.remove(&database);
                        oracle.failed.insert(database.clone(), Instant::now());
                        tracing::warn!(%error, database, "catalog load failed; using the heuristic");
                    }
                }
            }
        })
    }

    /// The snapshot of a database, if loaded (for the JSON API and tests).
    pub fn snapshot(&self, database: &str) -> Option<Arc<Snapshot>> {
        self.snapshots.get(database).map(|s| s.clone())
    }

    /// Databases with a loaded snapshot.
    pub fn databases(&self) -> Vec<String> {
        self.snapshots.iter().map(|e| e.key().clone()).collect()
    }

    fn lookup(&self, database: &str) -> Option<Arc<Snapshot>> {
        let found = self.snapshots.get(database).map(|s| s.clone());
        if found.is_none()
            && !self.wanted.contains(database)
            && self
                .failed
                .get(database)
                .is_none_or(|at| at.elapsed() >= self.refresh_every)
        {
            self.wanted.insert(database.to_owned());
        }
        found
    }

    async fn load(&self, database: &str) -> Result<Snapshot, CatalogError> {
        let query_err = |source| CatalogError::Query {
            database: database.to_owned(),
            source,
        };
        let (client, driver) = self
            .connect(database, None)
            .await
            .map_err(|error| match error {
                ConnectError::Timeout => CatalogError::Timeout {
                    database: database.to_owned(),
                },
                ConnectError::Failed(source) => query_err(source),
            })?;
        let result = Self::read(&client).await.map_err(query_err);
        drop(client);
        let _ = driver.await;
        result
    }

    async fn read(client: &tokio_postgres::Client) -> Result<Snapshot, tokio_postgres::Error> {
        let mut by_oid: HashMap<u32, (String, String)> = HashMap::new();
        let mut snapshot = Snapshot::default();
        for row in client.query(TABLES, &[]).await? {
            let oid: u32 = row.try_get(0)?;
            let key: (String, String) = (row.try_get(1)?, row.try_get(2)?);
            let rows: f64 = row.try_get(3)?;
            let info = TableInfo {
                // reltuples is -1 for never-analysed tables (PostgreSQL 14+).
                estimated_rows: (rows >= 0.0).then_some(rows as u64),
                ..TableInfo::default()
            };
            by_oid.insert(oid, key.clone());
            snapshot.tables.insert(key, info);
        }
        let table_of = |oid: u32| by_oid.get(&oid).cloned();
        for row in client.query(UNIQUE_KEYS, &[]).await? {
            let oid: u32 = row.try_get(0)?;
            let columns: Vec<String> = row.try_get(1)?;
            if let Some(info) = table_of(oid).and_then(|k| snapshot.tables.get_mut(&k)) {
                info.unique_keys.push(columns);
            }
        }
        for row in client.query(COLUMNS, &[]).await? {
            let oid: u32 = row.try_get(0)?;
            let column = Column {
                name: row.try_get(1)?,
                not_null: row.try_get(2)?,
            };
            if let Some(info) = table_of(oid).and_then(|k| snapshot.tables.get_mut(&k)) {
                info.columns.push(column);
            }
        }
        for row in client.query(SAFE_FUNCTIONS, &[]).await? {
            snapshot.safe_functions.insert(row.try_get(0)?);
        }
        for row in client.query(FOREIGN_KEYS, &[]).await? {
            let oid: u32 = row.try_get(0)?;
            let fk = ForeignKey {
                references: TableRef {
                    schema: Some(row.try_get(1)?),
                    name: row.try_get(2)?,
                },
                columns: row.try_get(3)?,
                referenced_columns: row.try_get(4)?,
            };
            if let Some(info) = table_of(oid).and_then(|k| snapshot.tables.get_mut(&k)) {
                info.foreign_keys.push(fk);
            }
        }
        Ok(snapshot)
    }
}

impl UniquenessOracle for CatalogOracle {
    fn uniqueness(&self, database: &str, table: Option<&TableRef>, columns: &[&str]) -> Uniqueness {
        let snapshot = table.and_then(|_| self.lookup(database));
        if let (Some(table), Some(snapshot)) = (table, snapshot.as_deref())
            && let Some(info) = snapshot.table(table)
        {
            let unique = info
                .unique_keys
                .iter()
                .any(|key| key.iter().all(|k| columns.contains(&k.as_str())));
            return Uniqueness {
                unique: Some(unique),
                decided_by: OracleKind::Catalog,
            };
        }
        HeuristicOracle.uniqueness(database, table, columns)
    }

    fn estimated_rows(&self, database: &str, table: &TableRef) -> Option<u64> {
        self.lookup(database)?.table(table)?.estimated_rows
    }

    fn generation(&self, database: &str) -> u64 {
        self.snapshots.get(database).map_or(0, |s| s.generation)
    }

    fn changes(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    fn as_catalog(self: Arc<Self>) -> Option<Arc<CatalogOracle>> {
        Some(self)
    }
}
