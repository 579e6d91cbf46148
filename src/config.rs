//! Settings, merged from (highest first) command-line flags, `PGSHAPE_*` environment variables,
//! the TOML file given with `--config`, and defaults. The CLI fills what it was given on top of
//! a [`Config`] read from the file; every part of pgshape reads only this struct.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Errors reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Everything pgshape can be told. Field names are the TOML keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address clients connect to.
    pub listen: String,
    /// PostgreSQL server: `host:port` or a `postgres://host:port/?sslmode=...` URL.
    pub upstream: String,
    /// Admin HTTP listener (metrics, JSON API); `None` disables it.
    pub admin: Option<String>,
    /// Bearer token required by the admin API's state-changing endpoints (POST: statistics
    /// reset, rule reload); `None` leaves them open to whoever reaches the admin address.
    pub admin_token: Option<Secret>,
    /// A second admin listener for the state-changing endpoints; when set, `admin` serves
    /// reads only (GET/HEAD: metrics, JSON API, page) and answers 405 to the rest.
    pub admin_write: Option<String>,
    /// Start even though the state-changing endpoints listen on a non-loopback address
    /// without `admin_token` (otherwise pgshape refuses to start).
    pub admin_insecure: bool,
    /// Worker threads, each a single-threaded runtime that owns its connections; 0 = one per
    /// core.
    pub workers: usize,
    /// Largest protocol message accepted from either side, in bytes (PostgreSQL's own cap is 1 GiB).
    pub max_frame_size: usize,
    /// Most client connections served at once; more are refused with SQLSTATE 53300.
    pub max_client_connections: usize,
    /// Most client connections per database at once (0 = no limit); more are refused with
    /// 53300, as pgbouncer's `max_db_connections` protects the server's own limit.
    pub max_connections_per_database: usize,
    /// Most client connections per user at once (0 = no limit).
    pub max_connections_per_user: usize,
    /// How long to wait for the upstream TCP (and TLS) connect before telling the client.
    pub connect_timeout_ms: u64,
    /// A client must finish its start-up (SSL negotiation and StartupMessage) within this, or it
    /// is closed: a silent or slowloris connection cannot hold a slot (pgbouncer's
    /// `client_login_timeout`); 0 = no deadline.
    pub client_login_timeout_ms: u64,
    /// A client idle outside a transaction for longer than this gets a FATAL 57P05 and is
    /// closed (pgbouncer's `client_idle_timeout`); 0 = off.
    pub idle_client_timeout_ms: u64,
    /// TCP keepalive on client and server sockets, so a peer that vanished without a FIN
    /// (power loss, a dropped NAT entry) is noticed and its session ends.
    pub tcp_keepalive: bool,
    /// Seconds of silence before the first keepalive probe.
    pub tcp_keepalive_idle_s: u64,
    /// Seconds between unanswered probes.
    pub tcp_keepalive_interval_s: u64,
    /// Unanswered probes before the connection is considered dead.
    pub tcp_keepalive_count: u32,
    /// On shutdown, how long running sessions may continue before they are closed.
    pub shutdown_grace_ms: u64,
    /// When a client disconnects while its statement runs, cancel the statement (as
    /// PostgreSQL's `client_connection_check_interval` would) instead of letting the server
    /// finish it, as it does for a direct connection. Either way the statement is timed.
    pub cancel_on_client_disconnect: bool,
    /// Statements slower than this are logged (tracing, target `pgshape::slow`); negative = off.
    pub log_min_duration_ms: i64,
    /// Log output format: `text` or `json`.
    pub log_format: String,
    /// Certificate chain (PEM) for TLS towards clients; with `tls_key`, enables SSLRequest.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// TLS towards the server: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    /// A `sslmode` in the upstream URL wins over this.
    pub upstream_sslmode: Option<String>,
    /// CA bundle (PEM) for verifying the server; system roots when unset.
    pub upstream_sslrootcert: Option<PathBuf>,
    /// Whether statements are looked at: fingerprints, statistics, slow log and rules. Off,
    /// pgshape is a plain relay — the baseline that shows what inspection costs (`bench/run`).
    pub inspect: bool,
    /// Keep a server connection its client left idle (reset with `DISCARD ALL`) for the next
    /// client with the same StartupMessage, where the server needs no password from pgshape
    /// (trust) or pgshape authenticates clients itself (`scram_proxy`); see `proxy::reuse`.
    pub reuse_server_connections: bool,
    /// A kept server connection unused this long is closed.
    pub server_idle_timeout_ms: u64,
    /// Most server connections kept idle, per worker thread.
    pub max_idle_server_connections: usize,
    /// Per-fingerprint statistics, slow log and export settings (`[stats]`).
    pub stats: crate::stats::StatsConfig,
    /// Query-shape rules: rules directory, enforce/shadow mode, schema DSN (`[rules]`).
    pub rules: crate::rules::RulesConfig,
    /// Client authentication: passthrough or scram_proxy (`[auth]`).
    pub auth: crate::proxy::auth::AuthConfig,
    /// Plans per fingerprint, explained on the `schema_dsn` connection (`[plans]`).
    pub plans: crate::plans::PlansConfig,
    /// Statements as spans, exported with OTLP (`[tracing]`).
    pub tracing: crate::otel::TracingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:6432".into(),
            upstream: "127.0.0.1:5432".into(),
            admin: Some("127.0.0.1:9187".into()),
            admin_token: None,
            admin_write: None,
            admin_insecure: false,
            workers: 0,
            max_frame_size: 1 << 30,
            max_client_connections: 10_000,
            max_connections_per_database: 0,
            max_connections_per_user: 0,
            connect_timeout_ms: 5_000,
            client_login_timeout_ms: 60_000,
            idle_client_timeout_ms: 0,
            tcp_keepalive: true,
            tcp_keepalive_idle_s: 60,
            tcp_keepalive_interval_s: 10,
            tcp_keepalive_count: 6,
            shutdown_grace_ms: 30_000,
            cancel_on_client_disconnect: false,
            log_min_duration_ms: 1_000,
            log_format: "text".into(),
            tls_cert: None,
            tls_key: None,
            upstream_sslmode: None,
            upstream_sslrootcert: None,
            inspect: true,
            reuse_server_connections: false,
            server_idle_timeout_ms: 600_000,
            max_idle_server_connections: 100,
            stats: crate::stats::StatsConfig::default(),
            rules: crate::rules::RulesConfig::default(),
            auth: crate::proxy::auth::AuthConfig::default(),
            plans: crate::plans::PlansConfig::default(),
            tracing: crate::otel::TracingConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file; keys it leaves out keep their defaults.
    ///
    /// # Errors
    /// When the file cannot be read, is not valid TOML, or names an unknown key.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn server_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.server_idle_timeout_ms)
    }

    /// `None` when clients may take as long as they like to start up.
    pub fn client_login_timeout(&self) -> Option<Duration> {
        (self.client_login_timeout_ms > 0)
            .then(|| Duration::from_millis(self.client_login_timeout_ms))
    }

    /// `None` when idle clients are never closed.
    pub fn idle_client_timeout(&self) -> Option<Duration> {
        (self.idle_client_timeout_ms > 0)
            .then(|| Duration::from_millis(self.idle_client_timeout_ms))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// `None` when slow-statement logging is off.
    pub fn log_min_duration(&self) -> Option<Duration> {
        u64::try_from(self.log_min_duration_ms)
            .ok()
            .map(Duration::from_millis)
    }

    /// Worker count with 0 resolved to one worker per core.
    ///
    /// Why not fewer: one worker on two cores spent less CPU per statement at 8 clients (one
    /// thread sees more events per wake-up) but relayed 0.75-0.79x the statements of two at 32
    /// clients, as every session waits whenever that one thread is preempted
    /// (bench/results/workers.md). Throughput under concurrency is what a user notices;
    /// `--workers 1` is there for a sidecar that should stay on one core.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// A setting that must not appear in logs or `Debug` output (the admin token).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value itself, for the one place that compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    #[test]
    fn timeouts_and_keepalive_default_like_pgbouncer_and_read_from_toml() {
        let defaults = Config::default();
        assert_eq!(
            defaults.client_login_timeout(),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(defaults.idle_client_timeout(), None, "off by default");
        assert!(defaults.tcp_keepalive);
        let config: Config = toml::from_str(
            "client_login_timeout_ms = 0\nidle_client_timeout_ms = 1500\n\
             tcp_keepalive = false\ntcp_keepalive_idle_s = 7\n",
        )
        .unwrap();
        assert_eq!(config.client_login_timeout(), None, "0 = no deadline");
        assert_eq!(
            config.idle_client_timeout(),
            Some(std::time::Duration::from_millis(1500))
        );
        assert!(!config.tcp_keepalive);
        assert_eq!(config.tcp_keepalive_idle_s, 7);
    }

    #[test]
    fn the_admin_token_is_read_from_toml_and_never_debug_printed() {
        let config: Config = toml::from_str("admin_token = \"tok-91c2\"\n").unwrap();
        assert_eq!(
            config.admin_token.as_ref().map(|t| t.expose()),
            Some("tok-91c2")
        );
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("tok-91c2") && printed.contains("Secret(***)"),
            "{printed}"
        );
    }
}
