//! The `pgshape` command line. Only argument handling and process wiring live here; everything
//! else is in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pgshape::app::App;
use pgshape::config::Config;
use pgshape::rules::Mode;

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
    Serve(Box<ServeArgs>),
    /// Start a throw-away PostgreSQL with a demo shop, pgshape in front of it, and show the
    /// incident's slow query shape being caught; runs until Ctrl-C.
    Demo(DemoArgs),
    /// Check captured SQL against the rules (the staging guard for CI): SQL files, PostgreSQL
    /// logs or pgshape JSON statement logs; exits 1 on a hit at or above --fail-on.
    Check(CheckArgs),
    /// Inspect the rewrites of a running pgshape.
    #[command(subcommand)]
    Rewrite(RewriteCommand),
}

#[derive(Subcommand)]
enum RewriteCommand {
    /// Show what the rewrite rules of a running pgshape decided for one query shape.
    ///
    /// Reads `GET /api/queries/{fingerprint}` of the admin API and prints the normalized
    /// statement with its numbered slots (and which of them are lists), then per rule and
    /// database the state, the template and a sample rewritten statement (or why there is
    /// none), the outcome counts, and whether the rewrite is switched off. Exits 1 when the
    /// admin API is unreachable or knows no rewrite for the shape.
    Explain(ExplainArgs),
}

#[derive(Args)]
struct ExplainArgs {
    /// The shape's fingerprint (16 hex digits, as in /metrics, the admin page and the logs).
    fingerprint: String,
    /// Admin API of the running pgshape: http://host:port, or host:port as `serve --admin`
    /// takes it.
    #[arg(long, env = "PGSHAPE_ADMIN", default_value = "http://127.0.0.1:9187")]
    admin: String,
}

#[derive(Args)]
struct DemoArgs {
    /// Orders to generate (ten items each).
    #[arg(long, default_value_t = 50_000)]
    orders: u32,
    /// Exit after the demo instead of running until Ctrl-C.
    #[arg(long)]
    once: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Files to check; `-` reads standard input.
    #[arg(required_unless_present = "pg_stat_statements")]
    files: Vec<PathBuf>,
    /// Also check the busiest shapes a PostgreSQL recorded in pg_stat_statements (this DSN's
    /// server; the role needs pg_read_all_stats to see other roles' statements).
    #[arg(long, value_name = "DSN")]
    pg_stat_statements: Option<String>,
    /// How many pg_stat_statements shapes to check, by total execution time.
    #[arg(long, default_value_t = 500, requires = "pg_stat_statements")]
    limit: u32,
    /// Directory of *.toml rule files [default: the rules built into the binary].
    #[arg(long, env = "PGSHAPE_RULES")]
    rules: Option<PathBuf>,
    /// Monitoring connection string: decide fan-out from the schema's keys instead of names.
    #[arg(long, env = "PGSHAPE_SCHEMA_DSN")]
    schema_dsn: Option<String>,
    /// Report format.
    #[arg(long, default_value = "human", value_parser = ["human", "json", "github", "junit"])]
    format: String,
    /// Exit 1 when a hit has at least this severity.
    #[arg(long, default_value = "error", value_parser = ["info", "warning", "error"])]
    fail_on: String,
    /// Input form [default: detected per file].
    #[arg(long, value_parser = ["sql", "postgres-log", "json"])]
    input: Option<String>,
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
    /// Bearer token the admin API's POST endpoints require (prefer the environment variable:
    /// flags show in `ps`).
    #[arg(long, env = "PGSHAPE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Worker threads; 0 = one per core [default: 0].
    #[arg(long, env = "PGSHAPE_WORKERS")]
    workers: Option<usize>,
    /// Largest protocol message accepted, in bytes [default: 1073741824].
    #[arg(long, env = "PGSHAPE_MAX_FRAME_SIZE")]
    max_frame_size: Option<usize>,
    /// Most client connections at once [default: 10000].
    #[arg(long, env = "PGSHAPE_MAX_CLIENT_CONNECTIONS")]
    max_client_connections: Option<usize>,
    /// Most client connections per database at once; 0 = no limit [default: 0].
    #[arg(long, env = "PGSHAPE_MAX_CONNECTIONS_PER_DATABASE")]
    max_connections_per_database: Option<usize>,
    /// Most client connections per user at once; 0 = no limit [default: 0].
    #[arg(long, env = "PGSHAPE_MAX_CONNECTIONS_PER_USER")]
    max_connections_per_user: Option<usize>,
    /// Upstream connect timeout in milliseconds [default: 5000].
    #[arg(long, env = "PGSHAPE_CONNECT_TIMEOUT_MS")]
    connect_timeout_ms: Option<u64>,
    /// Start-up deadline for clients (SSL negotiation and StartupMessage), in ms; 0 = none
    /// [default: 60000].
    #[arg(long, env = "PGSHAPE_CLIENT_LOGIN_TIMEOUT_MS")]
    client_login_timeout_ms: Option<u64>,
    /// Close clients idle outside a transaction for this many ms (FATAL 57P05); 0 = off
    /// [default: 0].
    #[arg(long, env = "PGSHAPE_IDLE_CLIENT_TIMEOUT_MS")]
    idle_client_timeout_ms: Option<u64>,
    /// TCP keepalive on client and server sockets (true/false) [default: true].
    #[arg(long, env = "PGSHAPE_TCP_KEEPALIVE", value_name = "BOOL")]
    tcp_keepalive: Option<bool>,
    /// Seconds of silence before the first keepalive probe [default: 60].
    #[arg(long, env = "PGSHAPE_TCP_KEEPALIVE_IDLE_S")]
    tcp_keepalive_idle_s: Option<u64>,
    /// Seconds between keepalive probes [default: 10].
    #[arg(long, env = "PGSHAPE_TCP_KEEPALIVE_INTERVAL_S")]
    tcp_keepalive_interval_s: Option<u64>,
    /// Unanswered probes before a connection is dead [default: 6].
    #[arg(long, env = "PGSHAPE_TCP_KEEPALIVE_COUNT")]
    tcp_keepalive_count: Option<u32>,
    /// On Ctrl-C/SIGTERM, how long running statements may finish, in ms [default: 30000].
    #[arg(long, env = "PGSHAPE_SHUTDOWN_GRACE_MS")]
    shutdown_grace_ms: Option<u64>,
    /// Cancel a running statement when its client disconnects (true/false) [default: false].
    #[arg(long, env = "PGSHAPE_CANCEL_ON_CLIENT_DISCONNECT", value_name = "BOOL")]
    cancel_on_client_disconnect: Option<bool>,
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
    /// Directory of *.toml rule files, replacing the rules built into the binary.
    #[arg(long, env = "PGSHAPE_RULES")]
    rules: Option<PathBuf>,
    /// enforce (warn/block act) or shadow (they are only counted) [default: enforce].
    #[arg(long, env = "PGSHAPE_RULES_MODE", value_parser = ["enforce", "shadow"])]
    rules_mode: Option<String>,
    /// Relay only: no fingerprints, statistics, slow log or rules (a baseline for benchmarks).
    #[arg(long, env = "PGSHAPE_NO_INSPECT", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    no_inspect: Option<bool>,
    /// Monitoring connection string for schema lookups (keys, unique indexes, table sizes).
    #[arg(long, env = "PGSHAPE_SCHEMA_DSN")]
    schema_dsn: Option<String>,
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
            max_connections_per_database,
            max_connections_per_user,
            connect_timeout_ms,
            client_login_timeout_ms,
            idle_client_timeout_ms,
            tcp_keepalive,
            tcp_keepalive_idle_s,
            tcp_keepalive_interval_s,
            tcp_keepalive_count,
            shutdown_grace_ms,
            cancel_on_client_disconnect,
            log_format
        );
        if let Some(ms) = self.log_min_duration {
            config.log_min_duration_ms = ms;
        }
        if let Some(token) = self.admin_token {
            config.admin_token = Some(pgshape::config::Secret::new(token));
        }
        set_some!(tls_cert, tls_key, upstream_sslmode, upstream_sslrootcert);
        if let Some(admin) = self.admin {
            config.admin = (admin != "off").then_some(admin);
        }
        if let Some(dir) = self.rules {
            config.rules.dir = Some(dir);
        }
        if let Some(mode) = self.rules_mode {
            config.rules.mode = if mode == "shadow" {
                Mode::Shadow
            } else {
                Mode::Enforce
            };
        }
        if let Some(off) = self.no_inspect {
            config.inspect = !off;
        }
        if let Some(dsn) = self.schema_dsn {
            config.rules.schema_dsn = Some(dsn);
        }
        Ok(config)
    }
}

fn init_logging(format: &str, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Logs go to stderr: stdout belongs to command output (check reports, the demo).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            serve(args.into_config()?).map(|()| std::process::ExitCode::SUCCESS)
        }
        Command::Check(args) => check(args),
        Command::Demo(args) => demo(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Rewrite(RewriteCommand::Explain(args)) => {
            explain(args).map(|()| std::process::ExitCode::SUCCESS)
        }
    }
}

fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    use pgshape::rewrite::explain;
    let detail = explain::fetch(&args.admin, &args.fingerprint)?;
    print!("{}", explain::render(&detail)?);
    Ok(())
}

fn demo(args: DemoArgs) -> anyhow::Result<()> {
    init_logging("text", "warn");
    let opts = pgshape::demo::DemoOptions {
        orders: args.orders,
        ..Default::default()
    };
    let demo = pgshape::demo::start(&opts, &mut std::io::stdout().lock())?;
    if !args.once {
        println!("pgshape demo running; Ctrl-C stops it and removes the throw-away server.");
        wait_for_signals(demo.app())?;
    }
    demo.shutdown();
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<std::process::ExitCode> {
    use pgshape::rules::Severity;
    use pgshape::rules::check::{self, CheckOptions, Format, InputKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let oracle = match &args.schema_dsn {
        Some(dsn) => {
            let oracle = runtime
                .block_on(check::catalog_oracle(dsn))
                .context("reading the schema catalog")?;
            Some(oracle as std::sync::Arc<dyn pgshape::rules::UniquenessOracle>)
        }
        None => None,
    };
    let mut preloaded = Vec::new();
    if let Some(dsn) = &args.pg_stat_statements {
        let read = runtime
            .block_on(check::pgss::read(dsn, args.limit))
            .context("reading pg_stat_statements")?;
        if read.hidden > 0 {
            eprintln!(
                "pg_stat_statements: {} statements hidden from this role (grant it pg_read_all_stats)",
                read.hidden
            );
        }
        preloaded.push(("pg_stat_statements".to_owned(), read.statements));
    }
    let opts = CheckOptions {
        inputs: args.files,
        rules_dir: args.rules,
        format: match args.format.as_str() {
            "json" => Format::Json,
            "github" => Format::Github,
            "junit" => Format::Junit,
            _ => Format::Human,
        },
        fail_on: match args.fail_on.as_str() {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            _ => Severity::Error,
        },
        kind: args.input.as_deref().map(|kind| match kind {
            "postgres-log" => InputKind::PostgresLog,
            "json" => InputKind::JsonLines,
            _ => InputKind::Sql,
        }),
        oracle,
        preloaded,
        ..CheckOptions::default()
    };
    let outcome = check::run(&opts, &mut std::io::stdout().lock())?;
    Ok(if outcome.failed {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    })
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log_format, "info");
    let upstream = config.upstream.clone();
    let app = App::start(config).context("starting pgshape")?;
    tracing::info!(listen = %app.proxy_addr(), %upstream, admin = ?app.admin_addr(), "proxying");
    wait_for_signals(&app)?;
    tracing::info!("shutting down: no new connections, running statements may finish");
    app.shutdown();
    Ok(())
}

/// Blocks until Ctrl-C or SIGTERM; SIGHUP reloads the rules and the TLS certificate meanwhile.
fn wait_for_signals(app: &App) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => return r,
                _ = term.recv() => return Ok(()),
                _ = hup.recv() => {
                    if let Err(error) = app.reload_rules() {
                        tracing::error!(%error, "rule reload rejected; previous rules stay active");
                    }
                    if let Err(error) = app.reload_tls() {
                        tracing::error!(%error, "TLS reload rejected; the previous certificate stays in use");
                    }
                }
            }
        }
    })?;
    Ok(())
}
