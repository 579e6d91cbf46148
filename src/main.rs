//! The `pgshape` command line. Only argument handling and process wiring live here; everything
//! else is in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pgshape::app::App;
use pgshape::config::Config;

/// PostgreSQL wire-protocol proxy that times every statement, groups statements by shape
/// (fingerprint), exports per-query metrics and flags, warns about or blocks bad query shapes.
///
/// Point your application's connection string at pgshape's port instead of PostgreSQL's;
/// nothing else changes.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy in front of a PostgreSQL server.
    Serve(ServeArgs),
}

/// Every flag can also be set by its environment variable or in the `--config` TOML file
/// (key = flag name with `_` for `-`); a flag wins over the environment, which wins over the file.
#[derive(Args)]
struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "PGSHAPE_CONFIG")]
    config: Option<PathBuf>,
    /// Address clients connect to [default: 127.0.0.1:6432].
    #[arg(long, env = "PGSHAPE_LISTEN")]
    listen: Option<String>,
    /// PostgreSQL server: host:port or postgres://host:port/?sslmode=... [default: 127.0.0.1:5432].
    #[arg(long, env = "PGSHAPE_UPSTREAM")]
    upstream: Option<String>,
    /// Admin HTTP address for /metrics and the JSON API, or "off" [default: 127.0.0.1:9187].
    #[arg(long, env = "PGSHAPE_ADMIN")]
    admin: Option<String>,
    /// Worker threads; 0 = one per core [default: 0].
    #[arg(long, env = "PGSHAPE_WORKERS")]
    workers: Option<usize>,
    /// Largest protocol message accepted, in bytes [default: 1073741824].
    #[arg(long, env = "PGSHAPE_MAX_FRAME_SIZE")]
    max_frame_size: Option<usize>,
    /// Most client connections at once [default: 10000].
    #[arg(long, env = "PGSHAPE_MAX_CLIENT_CONNECTIONS")]
    max_client_connections: Option<usize>,
    /// Upstream connect timeout in milliseconds [default: 5000].
    #[arg(long, env = "PGSHAPE_CONNECT_TIMEOUT_MS")]
    connect_timeout_ms: Option<u64>,
    /// On Ctrl-C/SIGTERM, how long running statements may finish, in ms [default: 30000].
    #[arg(long, env = "PGSHAPE_SHUTDOWN_GRACE_MS")]
    shutdown_grace_ms: Option<u64>,
    /// Log statements slower than this many ms; -1 disables [default: 1000].
    #[arg(long, env = "PGSHAPE_LOG_MIN_DURATION", allow_negative_numbers = true)]
    log_min_duration: Option<i64>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "PGSHAPE_LOG_FORMAT")]
    log_format: Option<String>,
    /// PEM certificate chain for TLS towards clients (with --tls-key).
    #[arg(long, env = "PGSHAPE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "PGSHAPE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// TLS to the server: disable, prefer, require, verify-ca, verify-full [default: disable].
    #[arg(long, env = "PGSHAPE_UPSTREAM_SSLMODE")]
    upstream_sslmode: Option<String>,
    /// CA bundle (PEM) to verify the server with; system roots when unset.
    #[arg(long, env = "PGSHAPE_UPSTREAM_SSLROOTCERT")]
    upstream_sslrootcert: Option<PathBuf>,
}

impl ServeArgs {
    /// Defaults, then the file, then environment and flags (clap already merged those two).
    fn into_config(self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = self.$field { config.$field = value; }
            )*};
        }
        macro_rules! set_some {
            ($($field:ident),*) => {$(
                if let Some(value) = self.$field { config.$field = Some(value); }
            )*};
        }
        set!(
            listen,
            upstream,
            workers,
            max_frame_size,
            max_client_connections,
            connect_timeout_ms,
            shutdown_grace_ms,
            log_format
        );
        if let Some(ms) = self.log_min_duration {
            config.log_min_duration_ms = ms;
        }
        set_some!(tls_cert, tls_key, upstream_sslmode, upstream_sslrootcert);
        if let Some(admin) = self.admin {
            config.admin = (admin != "off").then_some(admin);
        }
        Ok(config)
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args.into_config()?),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log_format);
    let upstream = config.upstream.clone();
    let app = App::start(config).context("starting pgshape")?;
    tracing::info!(listen = %app.proxy_addr(), %upstream, admin = ?app.admin_addr(), "proxying");
    wait_for_signal()?;
    tracing::info!("shutting down: no new connections, running statements may finish");
    app.shutdown();
    Ok(())
}

/// Blocks until Ctrl-C or SIGTERM.
fn wait_for_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}
