//! A throw-away PostgreSQL cluster: `initdb` into a temp dir, `pg_ctl start` on a free port,
//! one login role per authentication method, and a fresh database per test.
//!
//! Cleanup. The shared cluster lives in a `static`, and Rust never drops statics, so a `Drop`
//! impl alone would leak a postmaster after every `cargo test`. Each cluster therefore gets a
//! watchdog: a tiny `sh` loop (spawned detached from our stdio, ignoring SIGINT/SIGTERM/SIGHUP)
//! that polls the test process with `kill -0` and, once it is gone — normal exit, panic, Ctrl-C
//! or SIGKILL alike — runs `pg_ctl stop -m immediate` and removes the temp dir. Clusters that are
//! not in a static are also stopped eagerly by [`Drop`].
//!
//! Root. `initdb` and `postgres` refuse to run as root, and CI runs as root: then the temp dir
//! is chowned to the `postgres` system user and every server program runs under
//! `runuser -u postgres --` (see [`super::pgbin`]).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use super::client::{AuthUser, ConnParams, psql_query};
use super::pgbin::{PgBin, chown_to_postgres, running_as_root, server_command};
use super::tls::ServerCert;

/// Options for a cluster; [`PgClusterBuilder::start`] makes it.
#[derive(Debug, Default, Clone)]
pub struct PgClusterBuilder {
    ssl: bool,
    preload: Vec<String>,
    extra_conf: Vec<String>,
}

impl PgClusterBuilder {
    /// `ssl = on` with a certificate for `localhost`/`127.0.0.1` issued by a test CA generated here.
    pub fn ssl(mut self, on: bool) -> Self {
        self.ssl = on;
        self
    }

    /// Adds a library to `shared_preload_libraries` (e.g. `pg_stat_statements`).
    pub fn shared_preload_libraries(mut self, library: &str) -> Self {
        self.preload.push(library.to_owned());
        self
    }

    /// Appends a raw `postgresql.conf` line.
    pub fn conf(mut self, line: &str) -> Self {
        self.extra_conf.push(line.to_owned());
        self
    }

    /// Creates and starts the cluster; panics with the server log on failure.
    pub fn start(self) -> PgCluster {
        PgCluster::create(self)
    }
}

/// A running throw-away cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    tls: Option<ServerCert>,
    major_version: u32,
}

/// Makes database names unique within this test binary (the pid covers separate binaries).
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

impl PgCluster {
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// The cluster shared by every test of this binary, started on first use, with
    /// `pg_stat_statements` preloaded. Tests isolate themselves with [`PgCluster::fresh_database`].
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| {
            PgCluster::builder()
                .shared_preload_libraries("pg_stat_statements")
                .start()
        })
    }

    /// A second shared cluster with `ssl = on` (see [`PgClusterBuilder::ssl`]), started on first
    /// use, for upstream-TLS tests; it accepts plain connections too.
    pub fn shared_ssl() -> &'static PgCluster {
        static SHARED_SSL: OnceLock<PgCluster> = OnceLock::new();
        SHARED_SSL.get_or_init(|| PgCluster::builder().ssl(true).start())
    }

    fn create(options: PgClusterBuilder) -> PgCluster {
        let bin = PgBin::get();
        let dir = tempfile::Builder::new()
            .prefix("pgshape-pg-")
            .tempdir()
            .expect("create temp dir")
            // Removal is the watchdog's job (see the module doc), not TempDir's.
            .keep();
        let data = dir.join("data");
        let socket_dir = dir.join("sock");
        std::fs::create_dir(&socket_dir).expect("create socket dir");
        chown_to_postgres(&dir);

        let out = super::client::run_with_timeout(
            {
                let mut cmd = server_command(&bin.tool("initdb"));
                cmd.arg("-D")
                    .arg(&data)
                    .args(["-U", AuthUser::Trust.name()])
                    .args(["--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
                cmd
            },
            None,
            std::time::Duration::from_secs(120),
        );
        assert!(
            out.success(),
            "initdb failed:\n{}\n{}",
            out.stdout,
            out.stderr
        );

        let tls = options.ssl.then(|| ServerCert::generate(&data));
        write_config(&data, &socket_dir, &options, tls.is_some());
        chown_to_postgres(&dir);

        let mut cluster = PgCluster {
            dir,
            port: 0,
            tls,
            major_version: bin.major_version(),
        };
        cluster.start_on_free_port();
        spawn_watchdog(&cluster.dir, &bin.tool("pg_ctl"), &cluster.data_dir());
        cluster.create_roles();
        cluster
    }

    /// Binds port 0 to learn a free port, then starts the server there; another process can
    /// take the port in between, so a bind failure is retried on a new port.
    fn start_on_free_port(&mut self) {
        let log = self.log_path();
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind a free port")
                .port();
            let mut cmd = server_command(&PgBin::get().tool("pg_ctl"));
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &format!("-p {port}"), "start"]);
            let out =
                super::client::run_with_timeout(cmd, None, std::time::Duration::from_secs(90));
            if out.success() {
                self.port = port;
                return;
            }
            let server_log = std::fs::read_to_string(&log).unwrap_or_default();
            if !server_log.contains("could not bind") && !server_log.contains("already in use") {
                panic!(
                    "pg_ctl start failed:\n{}\n{}\n--- server log\n{server_log}",
                    out.stdout, out.stderr
                );
            }
        }
        panic!("could not find a free port for PostgreSQL after 5 attempts");
    }

    fn create_roles(&self) {
        let admin = self.conn("postgres", AuthUser::Trust);
        let mut sql = String::new();
        for user in [AuthUser::Md5, AuthUser::Scram, AuthUser::Cleartext] {
            // The stored form decides what `md5` in pg_hba.conf does: with a SCRAM verifier the
            // server silently upgrades md5 to SCRAM, so md5_user must be stored as MD5.
            let encryption = if user == AuthUser::Md5 {
                "md5"
            } else {
                "scram-sha-256"
            };
            let password = user.password().expect("password users have a password");
            let _ = write!(
                sql,
                "SET password_encryption = '{encryption}'; \
                 CREATE ROLE {} LOGIN CREATEDB PASSWORD '{password}'; ",
                user.name()
            );
        }
        // Lets the password users watch and cancel their own sessions' peers in tests.
        sql.push_str(
            "GRANT pg_read_all_stats, pg_signal_backend TO md5_user, scram_user, plain_user;",
        );
        psql_query(&admin, &sql);
        // Since PostgreSQL 15 only the database owner may create in `public`; the test users
        // must be able to (pgbench -i, client batteries) in every database made from template1.
        psql_query(
            &self.conn("template1", AuthUser::Trust),
            "GRANT ALL ON SCHEMA public TO PUBLIC",
        );
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Directory of the server's unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The server log so far (attach it to assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn major_version(&self) -> u32 {
        self.major_version
    }

    /// The postmaster's process id (first line of `postmaster.pid`).
    pub fn postmaster_pid(&self) -> u32 {
        std::fs::read_to_string(self.data_dir().join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()))
            .expect("a running cluster has postmaster.pid")
    }

    /// The temp dir holding data, socket, log and certificates.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificate material when started with `.ssl(true)`.
    pub fn tls(&self) -> Option<&ServerCert> {
        self.tls.as_ref()
    }

    /// Parameters for `user` on database `dbname`, TCP to this cluster.
    pub fn conn(&self, dbname: &str, user: AuthUser) -> ConnParams {
        ConnParams::new(self.addr(), dbname, user)
    }

    /// Creates a database no other test uses and returns superuser parameters for it
    /// (switch user with [`ConnParams::user`]).
    pub fn fresh_database(&self) -> ConnParams {
        let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
        let name = format!("t_{}_{n}", std::process::id());
        psql_query(
            &self.conn("postgres", AuthUser::Trust),
            &format!("CREATE DATABASE {name}"),
        );
        self.conn(&name, AuthUser::Trust)
    }

    /// Connections to this cluster other than the caller's own, per database
    /// (leak checks: a proxy must close its upstream connection when the client goes).
    pub fn backends_in(&self, dbname: &str) -> u64 {
        psql_query(
            &self.conn("postgres", AuthUser::Trust),
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}' \
                 AND pid <> pg_backend_pid()"
            ),
        )
        .parse()
        .expect("count(*) is a number")
    }

    /// Waits (up to 5 s) for the server to drop every backend of `dbname`: whatever happened to
    /// a client, pgshape must not leave its upstream connection open.
    #[track_caller]
    pub fn assert_no_backends(&self, dbname: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let n = self.backends_in(dbname);
            if n == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{n} backends still open in {dbname}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Waits (up to 10 s) until a statement containing `marker` runs in `dbname`, so a test
    /// acts while it is really in flight rather than after a guessed sleep.
    #[track_caller]
    pub fn wait_until_running(&self, dbname: &str, marker: &str) {
        let admin = self.conn(dbname, AuthUser::Trust);
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND pid <> pg_backend_pid() AND query LIKE '%{marker}%'"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while psql_query(&admin, &sql) != "1" {
            assert!(
                std::time::Instant::now() < deadline,
                "{marker} never started running"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `pg_ctl restart -m fast` on the same port: every backend is terminated (its client gets
    /// FATAL 57P01), and the server accepts connections again when this returns.
    pub fn restart_fast(&self) {
        let mut cmd = server_command(&PgBin::get().tool("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-m", "fast", "-w", "-t", "60", "restart"]);
        let out = super::client::run_with_timeout(cmd, None, std::time::Duration::from_secs(90));
        assert!(
            out.success(),
            "pg_ctl restart failed:\n{}\n{}\n--- server log\n{}",
            out.stdout,
            out.stderr,
            self.log()
        );
    }

    /// Stops the server now (`-m immediate`: nothing here is worth a checkpoint).
    pub fn stop(&self) {
        let mut cmd = server_command(&PgBin::get().tool("pg_ctl"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_config(data: &Path, socket_dir: &Path, options: &PgClusterBuilder, ssl: bool) {
    let mut conf = String::from("\n# pgshape test harness\n");
    for line in [
        "listen_addresses = '127.0.0.1'",
        "max_connections = 200",
        "shared_buffers = 32MB",
        "fsync = off",
        "synchronous_commit = off",
        "full_page_writes = off",
        "max_wal_size = 1GB",
        "log_min_messages = warning",
        "log_connections = off",
        "lc_messages = 'C'",
    ] {
        conf.push_str(line);
        conf.push('\n');
    }
    let _ = writeln!(conf, "unix_socket_directories = '{}'", socket_dir.display());
    if !options.preload.is_empty() {
        let _ = writeln!(
            conf,
            "shared_preload_libraries = '{}'",
            options.preload.join(",")
        );
    }
    if ssl {
        conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    }
    for line in &options.extra_conf {
        conf.push_str(line);
        conf.push('\n');
    }
    append(&data.join("postgresql.conf"), &conf);

    // First match wins: the unix socket is trusted (harness administration), each TCP user gets
    // its own method, and anything else is rejected so a mistaken user name fails loudly.
    let mut hba = String::from("local all all trust\n");
    for user in AuthUser::ALL {
        for net in ["127.0.0.1/32", "::1/128"] {
            let _ = writeln!(hba, "host all {} {net} {}", user.name(), user.hba_method());
            // Streaming replication connections match only `replication` lines.
            let _ = writeln!(
                hba,
                "host replication {} {net} {}",
                user.name(),
                user.hba_method()
            );
        }
    }
    hba.push_str("host all all 127.0.0.1/32 reject\n");
    std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(text.as_bytes()).expect("append config");
}

/// Starts the process that stops the cluster and removes `dir` once this test process is gone
/// (see the module doc for why).
fn spawn_watchdog(dir: &Path, pg_ctl: &Path, data: &Path) {
    // The outer shell backgrounds the loop and exits at once, so the loop is re-parented to init
    // and never becomes our zombie.
    const SCRIPT: &str = r#"
(
trap '' INT TERM HUP
pid=$1; dir=$2; pg_ctl=$3; data=$4; as_user=$5
while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
if [ -n "$as_user" ]; then
  runuser -u "$as_user" -- "$pg_ctl" -D "$data" -m immediate -w stop
else
  "$pg_ctl" -D "$data" -m immediate -w stop
fi
rm -rf "$dir"
) &
"#;
    let as_user = if running_as_root() {
        super::pgbin::POSTGRES_OS_USER
    } else {
        ""
    };
    Command::new("sh")
        .args(["-c", SCRIPT, "pgshape-pg-watchdog"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(pg_ctl)
        .arg(data)
        .arg(as_user)
        // Detached from our stdio: `cargo test | tee` must not wait for the watchdog.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn the cluster watchdog");
}
