//! The `pgshape` command line. Only argument handling and process wiring live here; everything
//! else is in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pgshape::app::App;
use pgshape::config::Config;
use pgshape::rules::{Mode, Severity};

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
    /// EXPLAIN a query shape now on a running pgshape's monitoring connection (--schema-dsn)
    /// and print its plan tree: estimated rows and cost per node, the most expensive node
    /// marked, the incident's signature flagged. Exits 1 when it cannot (no sample, a
    /// statement that could write, no --schema-dsn).
    Explain(PlanArgs),
    /// Inspect the rewrites of a running pgshape.
    #[command(subcommand)]
    Rewrite(RewriteCommand),
    /// Live view of a running pgshape's query shapes, like `top`: calls/s, mean and p95 over
    /// the last interval, errors/s, rows/s; keys sort (t p m c e r), filter (d database,
    /// u user, i idle), select (arrows) and quit (q).
    Top(TopArgs),
    /// Save a running pgshape's per-shape statistics (calls, times, p95, histograms, rows,
    /// errors, rule hits, SQL) to a JSON file, for `pgshape diff`.
    Snapshot(SnapshotArgs),
    /// Compare two snapshots of the same workload shape by shape: new and vanished shapes,
    /// calls, p95/mean/rows-per-call regressions, new rule hits. Exits 1 on a regression, 2 when
    /// a file cannot be read.
    Diff(DiffArgs),
}

#[derive(Args)]
struct SnapshotArgs {
    /// Admin API of the running pgshape.
    #[arg(long, env = "PGSHAPE_ADMIN", default_value = "http://127.0.0.1:9187")]
    admin: String,
    /// Where to write it; `-` for standard output.
    #[arg(short, long, default_value = "-")]
    output: PathBuf,
    /// Keep only this database's shapes.
    #[arg(long)]
    database: Option<String>,
}

#[derive(Args)]
struct DiffArgs {
    /// The baseline (e.g. the main branch's run).
    before: PathBuf,
    /// The run to judge.
    after: PathBuf,
    /// Fail when a shape's p95 grows by more than this ("20%", or "off").
    #[arg(long, default_value = "20%", value_parser = limit, value_name = "PCT")]
    fail_if_p95_regresses: Limit,
    /// Fail when a shape's mean grows by more than this (off by default: a few stalls of a
    /// busy CI machine move a fast shape's mean while its p95 stays put).
    #[arg(long, default_value = "off", value_parser = limit, value_name = "PCT")]
    fail_if_mean_regresses: Limit,
    /// Fail when a shape's rows per call grow by more than this.
    #[arg(long, default_value = "20%", value_parser = limit, value_name = "PCT")]
    fail_if_rows_per_call_grows: Limit,
    /// Fail when a shape's calls per run grow by more than this (an N+1 multiplies them).
    #[arg(long, default_value = "off", value_parser = limit, value_name = "PCT")]
    fail_if_calls_grow: Limit,
    /// Judge latency and rows only for shapes with at least this many calls in both runs.
    #[arg(long, default_value_t = 50)]
    min_calls: u64,
    /// Ignore p95/mean changes smaller than this many milliseconds.
    #[arg(long, default_value_t = 1.0)]
    min_increase_ms: f64,
    /// Report format (markdown fits a pull-request comment).
    #[arg(long, default_value = "table", value_parser = ["table", "json", "markdown"])]
    format: String,
}

/// A growth limit as a fraction; `None` is off.
type Limit = Option<f64>;

fn limit(text: &str) -> Result<Limit, String> {
    if text == "off" {
        return Ok(None);
    }
    text.trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && *p >= 0.0)
        .map(|p| Some(p / 100.0))
        .ok_or_else(|| format!("expected a percentage such as 20% or off, got {text:?}"))
}

#[derive(Args)]
struct TopArgs {
    /// Admin API of the running pgshape: http://host:port, or host:port as `serve --admin`
    /// takes it.
    #[arg(long, env = "PGSHAPE_ADMIN", default_value = "http://127.0.0.1:9187")]
    admin: String,
    /// Seconds between polls; the figures are per second over the last one.
    #[arg(long, default_value_t = 2.0)]
    interval: f64,
    /// Initial order.
    #[arg(long, default_value = "total", value_parser = ["total", "p95", "mean", "calls", "errors", "rows"])]
    sort: String,
    /// Show only this database.
    #[arg(long)]
    database: Option<String>,
    /// Show only this user.
    #[arg(long)]
    user: Option<String>,
    /// Print one table and exit (for pipes and scripts): polls twice, --interval apart, and
    /// prints the figures of that interval.
    #[arg(long)]
    once: bool,
    /// Output of --once; json implies --once.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    /// Most rows --once prints.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

#[derive(Args)]
struct PlanArgs {
    /// The shape's fingerprint (16 hex digits, as in /metrics, the admin page and the logs).
    fingerprint: String,
    /// Admin API of the running pgshape.
    #[arg(long, env = "PGSHAPE_ADMIN", default_value = "http://127.0.0.1:9187")]
    admin: String,
    /// The admin API's bearer token, when it has one (explaining is a POST).
    #[arg(long, env = "PGSHAPE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// `text`: the plan tree; `json`: the admin API's answer.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
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
    #[arg(long, env = "PGSHAPE_SCHEMA_DSN", hide_env_values = true)]
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
    /// Separate admin address for the POST endpoints (reset, reload); --admin then serves
    /// GET/HEAD only [default: none, --admin serves both].
    #[arg(long, env = "PGSHAPE_ADMIN_WRITE")]
    admin_write: Option<String>,
    /// Start even with the POST endpoints on a non-loopback address and no --admin-token.
    #[arg(long, env = "PGSHAPE_ADMIN_INSECURE", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    admin_insecure: Option<bool>,
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
    /// Keep server connections their clients leave idle (reset with DISCARD ALL) for the next
    /// client with the same start-up parameters, where the server asks no password (trust) or
    /// with --auth-mode scram_proxy [default: false].
    #[arg(long, env = "PGSHAPE_REUSE_SERVER_CONNECTIONS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    reuse_server_connections: Option<bool>,
    /// Close a kept server connection unused this many ms [default: 600000].
    #[arg(long, env = "PGSHAPE_SERVER_IDLE_TIMEOUT_MS")]
    server_idle_timeout_ms: Option<u64>,
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
    /// Staging guard: every observe/warn rule of at least this severity blocks (the shipped
    /// rules never block unless asked to).
    #[arg(long, env = "PGSHAPE_BLOCK_ON", value_parser = ["info", "warning", "error"])]
    block_on: Option<String>,
    /// Override one rule's action: ID=off|observe|warn|block|rewrite (repeatable; wins over
    /// --block-on and the rule file).
    #[arg(long = "rule-action", value_name = "ID=ACTION", value_parser = parse_rule_action)]
    rule_actions: Vec<(String, pgshape::rules::Action)>,
    /// Relay only: no fingerprints, statistics, slow log or rules (a baseline for benchmarks).
    #[arg(long, env = "PGSHAPE_NO_INSPECT", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    no_inspect: Option<bool>,
    /// Monitoring connection string for schema lookups (keys, unique indexes, table sizes).
    #[arg(long, env = "PGSHAPE_SCHEMA_DSN", hide_env_values = true)]
    schema_dsn: Option<String>,
    /// OTLP/HTTP collector base URL (`/v1/traces` appended): statements carrying a
    /// sqlcommenter traceparent become spans of the application's traces.
    #[arg(long, env = "PGSHAPE_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// passthrough (the server authenticates) or scram_proxy (pgshape authenticates with
    /// SCRAM-SHA-256, channel binding included, and logs in upstream) [default: passthrough].
    #[arg(long, env = "PGSHAPE_AUTH_MODE", value_parser = ["passthrough", "scram_proxy"])]
    auth_mode: Option<String>,
    /// scram_proxy: "user" "SCRAM-SHA-256$..." lines (pgbouncer's userlist.txt format).
    #[arg(long, env = "PGSHAPE_AUTH_FILE")]
    auth_file: Option<PathBuf>,
    /// scram_proxy: connection string for auth_query (verifiers of users not in auth_file).
    #[arg(long, env = "PGSHAPE_AUTH_DSN")]
    auth_dsn: Option<String>,
    /// scram_proxy: query returning (name, verifier) for $1.
    #[arg(long, env = "PGSHAPE_AUTH_QUERY")]
    auth_query: Option<String>,
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
            reuse_server_connections,
            server_idle_timeout_ms,
            log_format,
            admin_insecure
        );
        if let Some(ms) = self.log_min_duration {
            config.log_min_duration_ms = ms;
        }
        if let Some(token) = self.admin_token {
            config.admin_token = Some(pgshape::config::Secret::new(token));
        }
        set_some!(
            tls_cert,
            tls_key,
            upstream_sslmode,
            upstream_sslrootcert,
            admin_write
        );
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
        if let Some(level) = self.block_on {
            config.rules.block_on = Some(match level.as_str() {
                "info" => Severity::Info,
                "warning" => Severity::Warning,
                _ => Severity::Error,
            });
        }
        config.rules.actions.extend(self.rule_actions);
        if let Some(off) = self.no_inspect {
            config.inspect = !off;
        }
        if let Some(dsn) = self.schema_dsn {
            config.rules.schema_dsn = Some(dsn);
        }
        if let Some(url) = self.otlp_endpoint {
            config.tracing.otlp_endpoint = Some(url);
        }
        if let Some(mode) = self.auth_mode {
            config.auth.mode = if mode == "scram_proxy" {
                pgshape::proxy::auth::AuthMode::ScramProxy
            } else {
                pgshape::proxy::auth::AuthMode::Passthrough
            };
        }
        if let Some(file) = self.auth_file {
            config.auth.file = Some(file);
        }
        if let Some(dsn) = self.auth_dsn {
            config.auth.dsn = Some(pgshape::config::Secret::new(dsn));
        }
        if let Some(query) = self.auth_query {
            config.auth.query = query;
        }
        Ok(config)
    }
}

fn parse_rule_action(text: &str) -> Result<(String, pgshape::rules::Action), String> {
    let (id, action) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not ID=ACTION"))?;
    let action = action.trim().parse()?;
    Ok((id.trim().to_owned(), action))
}

fn init_logging(format: &str, default_filter: &str) {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Whatever RUST_LOG says: these libraries log statement texts, literal values included, at
    // debug level (sqlparser each statement pgshape analyses, tokio-postgres each statement a
    // proof or shadow run prepares), and literals stay out of pgshape's logs.
    for quiet in ["sqlparser=info", "tokio_postgres=info"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
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

/// Prints the error chain alone: a `main` returning `anyhow::Result` prints it with `{:?}`,
/// which adds a stack backtrace whenever RUST_BACKTRACE is set (common on developer machines),
/// burying a configuration mistake under frames of pgshape's internals.
fn main() -> std::process::ExitCode {
    run().unwrap_or_else(|e| {
        eprintln!("error: {}", error_chain(&e));
        std::process::ExitCode::FAILURE
    })
}

/// The error and its causes, each once: the library's errors often name their source in their
/// own message already.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1).map(ToString::to_string) {
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

fn run() -> anyhow::Result<std::process::ExitCode> {
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
        Command::Top(args) => top(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Explain(args) => plan(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Snapshot(args) => snapshot(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Diff(args) => Ok(diff(args)),
    }
}

fn snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
    use pgshape::gate::Snapshot;
    let client = pgshape::admin::client::AdminClient::new(&args.admin)?;
    let snap = Snapshot::take(&client, &args.admin, args.database.as_deref())?;
    if args.output == std::path::Path::new("-") {
        print!("{}", snap.to_json());
    } else {
        snap.write(&args.output)?;
        eprintln!(
            "{} shapes written to {}",
            snap.shapes.len(),
            args.output.display()
        );
    }
    Ok(())
}

/// Exit 1 is the gate failing; an unreadable input is 2 so CI can tell the two apart.
fn diff(args: DiffArgs) -> std::process::ExitCode {
    use pgshape::gate::{self, Snapshot, Thresholds};
    let read = |p: &PathBuf| Snapshot::read(p);
    let (before, after) = match (read(&args.before), read(&args.after)) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let limits = Thresholds {
        p95: args.fail_if_p95_regresses,
        mean: args.fail_if_mean_regresses,
        rows_per_call: args.fail_if_rows_per_call_grows,
        calls: args.fail_if_calls_grow,
        min_calls: args.min_calls,
        min_increase_ms: args.min_increase_ms,
    };
    let report = gate::diff(&before, &after, &limits);
    match args.format.as_str() {
        "json" => println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        ),
        "markdown" => print!("{}", gate::render_markdown(&report)),
        _ => print!("{}", gate::render_table(&report)),
    }
    if report.failed() {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

fn top(args: TopArgs) -> anyhow::Result<()> {
    use pgshape::top::{self, Sort, View};
    let client = pgshape::admin::client::AdminClient::new(&args.admin)?;
    let interval = std::time::Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--interval must be a positive number of seconds")?;
    let mut view = View::new(&args.admin, Sort::parse(&args.sort).unwrap_or(Sort::Total));
    view.database = args.database;
    view.user = args.user;
    if !args.once && args.format == "table" {
        return Ok(top::run(&client, view, interval)?);
    }
    let (lines, secs) = top::poll_interval(&client, interval)?;
    view.update(lines, secs);
    if args.format == "json" {
        println!("{}", top::render_json(&view, args.limit));
    } else {
        print!("{}", top::render_text(&view, args.limit));
    }
    Ok(())
}

fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    use pgshape::rewrite::explain;
    let detail = explain::fetch(&args.admin, &args.fingerprint)?;
    print!("{}", explain::render(&detail)?);
    Ok(())
}

fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let client = pgshape::admin::client::AdminClient::new(&args.admin)?;
    let answer: serde_json::Value = client.post_json(
        &format!("/api/queries/{}/explain", args.fingerprint),
        args.admin_token.as_deref(),
    )?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{}", pgshape::plans::shape::render_answer(&answer));
    }
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
