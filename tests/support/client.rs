//! Connection parameters for the test users and helpers that run the real client programs
//! (`psql`, `pgbench`) against a cluster or a proxy, returning what they printed.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::pgbin::PgBin;

/// The cluster's login roles, one per authentication method pgshape must pass through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthUser {
    /// `pgshape`: the superuser, `trust`.
    Trust,
    /// `md5_user`: password stored as MD5, `md5` in pg_hba.conf.
    Md5,
    /// `scram_user`: password stored as SCRAM-SHA-256, `scram-sha-256` in pg_hba.conf.
    Scram,
    /// `plain_user`: `password` in pg_hba.conf (AuthenticationCleartextPassword).
    Cleartext,
}

impl AuthUser {
    pub const ALL: [AuthUser; 4] = [
        AuthUser::Trust,
        AuthUser::Md5,
        AuthUser::Scram,
        AuthUser::Cleartext,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AuthUser::Trust => "pgshape",
            AuthUser::Md5 => "md5_user",
            AuthUser::Scram => "scram_user",
            AuthUser::Cleartext => "plain_user",
        }
    }

    /// The right password; `None` for the trust user.
    pub fn password(self) -> Option<&'static str> {
        match self {
            AuthUser::Trust => None,
            AuthUser::Md5 => Some("md5 secret"),
            AuthUser::Scram => Some("scram secret"),
            AuthUser::Cleartext => Some("plain secret"),
        }
    }

    /// The pg_hba.conf method for this user.
    pub fn hba_method(self) -> &'static str {
        match self {
            AuthUser::Trust => "trust",
            AuthUser::Md5 => "md5",
            AuthUser::Scram => "scram-sha-256",
            AuthUser::Cleartext => "password",
        }
    }
}

/// Where and as whom to connect. Built by `PgCluster::conn`/`fresh_database` and re-pointed at a
/// proxy with [`ConnParams::via`].
#[derive(Debug, Clone)]
pub struct ConnParams {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: String,
    pub password: Option<String>,
    /// libpq `sslmode`; `disable` unless set, so tests are explicit about TLS.
    pub sslmode: String,
    /// CA to verify the server with (`verify-ca`/`verify-full`).
    pub sslrootcert: Option<PathBuf>,
    pub application_name: Option<String>,
}

impl ConnParams {
    pub fn new(addr: SocketAddr, dbname: &str, user: AuthUser) -> ConnParams {
        ConnParams {
            host: addr.ip().to_string(),
            port: addr.port(),
            dbname: dbname.to_owned(),
            user: user.name().to_owned(),
            password: user.password().map(str::to_owned),
            sslmode: "disable".to_owned(),
            sslrootcert: None,
            application_name: None,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        format!("{}:{}", self.host, self.port)
            .parse()
            .expect("test hosts are IP literals")
    }

    /// Same database and user, another address (a proxy in front of the cluster).
    pub fn via(&self, addr: SocketAddr) -> ConnParams {
        ConnParams {
            host: addr.ip().to_string(),
            port: addr.port(),
            ..self.clone()
        }
    }

    pub fn user(&self, user: AuthUser) -> ConnParams {
        ConnParams {
            user: user.name().to_owned(),
            password: user.password().map(str::to_owned),
            ..self.clone()
        }
    }

    pub fn password(&self, password: Option<&str>) -> ConnParams {
        ConnParams {
            password: password.map(str::to_owned),
            ..self.clone()
        }
    }

    pub fn sslmode(&self, sslmode: &str) -> ConnParams {
        ConnParams {
            sslmode: sslmode.to_owned(),
            ..self.clone()
        }
    }

    pub fn sslrootcert(&self, path: &Path) -> ConnParams {
        ConnParams {
            sslrootcert: Some(path.to_owned()),
            ..self.clone()
        }
    }

    pub fn application_name(&self, name: &str) -> ConnParams {
        ConnParams {
            application_name: Some(name.to_owned()),
            ..self.clone()
        }
    }

    /// libpq key/value string (psycopg2, psycopg 3, psql), values quoted as libpq wants.
    pub fn dsn(&self) -> String {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut dsn = format!(
            "host={} port={} dbname={} user={} sslmode={}",
            self.host,
            self.port,
            quote(&self.dbname),
            quote(&self.user),
            self.sslmode
        );
        if let Some(password) = &self.password {
            dsn.push_str(&format!(" password={}", quote(password)));
        }
        if let Some(root) = &self.sslrootcert {
            dsn.push_str(&format!(" sslrootcert={}", quote(&root.to_string_lossy())));
        }
        if let Some(name) = &self.application_name {
            dsn.push_str(&format!(" application_name={}", quote(name)));
        }
        dsn
    }

    /// `postgres://` URL (asyncpg), components percent-encoded.
    pub fn url(&self) -> String {
        let auth = match &self.password {
            Some(p) => format!(
                "{}:{}",
                super::util::percent_encode(&self.user),
                super::util::percent_encode(p)
            ),
            None => super::util::percent_encode(&self.user),
        };
        let mut url = format!(
            "postgres://{auth}@{}:{}/{}?sslmode={}",
            self.host,
            self.port,
            super::util::percent_encode(&self.dbname),
            self.sslmode
        );
        if let Some(name) = &self.application_name {
            url.push_str(&format!(
                "&application_name={}",
                super::util::percent_encode(name)
            ));
        }
        url
    }

    /// A tokio-postgres config (no TLS setting: callers pick the connector).
    pub fn tokio_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.dbname)
            .user(&self.user)
            .connect_timeout(Duration::from_secs(10));
        if let Some(password) = &self.password {
            config.password(password);
        }
        if let Some(name) = &self.application_name {
            config.application_name(name);
        }
        config
    }

    /// Environment for libpq programs; anything inherited that could redirect them is cleared.
    pub fn apply_env(&self, cmd: &mut Command) {
        for var in [
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGPASSFILE",
            "PGOPTIONS",
            "PGSSLROOTCERT",
            "PGCHANNELBINDING",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGDATABASE", &self.dbname)
            .env("PGUSER", &self.user)
            .env("PGSSLMODE", &self.sslmode)
            .env("PGCONNECT_TIMEOUT", "10")
            // No ~/.pgpass fallback: a wrong password must reach the server. (A path that does not
            // exist: libpq warns about /dev/null not being a plain file.)
            .env("PGPASSFILE", "/nonexistent/pgshape-tests/pgpass");
        match &self.password {
            Some(p) => cmd.env("PGPASSWORD", p),
            None => cmd.env_remove("PGPASSWORD"),
        };
        if let Some(root) = &self.sslrootcert {
            cmd.env("PGSSLROOTCERT", root);
        }
        if let Some(name) = &self.application_name {
            cmd.env("PGAPPNAME", name);
        }
    }
}

/// What a finished program printed.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panics with everything the program printed unless it exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &CmdOutput {
        assert!(
            self.status.success(),
            "command failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// How long a client program may run before the harness kills it and fails the test.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A client program running in the background with its output captured (e.g. psql running
/// `pg_sleep` while the test presses Ctrl-C).
pub struct Running {
    child: std::process::Child,
    description: String,
    writer: Option<std::thread::JoinHandle<()>>,
    out_reader: Option<std::thread::JoinHandle<Vec<u8>>>,
    err_reader: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Starts `cmd` with `stdin` fed in and stdout/stderr collected.
    pub fn spawn(mut cmd: Command, stdin: Option<&[u8]>) -> Running {
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let description = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
        let input = stdin.map(<[u8]>::to_vec);
        let mut pipe_in = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let (Some(pipe), Some(input)) = (pipe_in.as_mut(), input) {
                // The program may exit before reading everything (e.g. on an error).
                let _ = pipe.write_all(&input);
            }
        });
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let out_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        Running {
            child,
            description,
            writer: Some(writer),
            out_reader: Some(out_reader),
            err_reader: Some(err_reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT, as Ctrl-C in a terminal would (psql then sends a CancelRequest).
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {} failed", self.child.id());
    }

    /// Waits for the program to exit, killing it and panicking after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> CmdOutput {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not finish within {timeout:?}", self.description);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| {
            let bytes = reader
                .map(|r| r.join().unwrap_or_default())
                .unwrap_or_default();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        CmdOutput {
            status,
            stdout: collect(self.out_reader.take()),
            stderr: collect(self.err_reader.take()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panicked before wait() must not leave the program behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion with `stdin` fed in, killing it after `timeout` (a hung proxy must
/// fail the test, not hang the suite).
pub fn run_with_timeout(cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> CmdOutput {
    Running::spawn(cmd, stdin).wait(timeout)
}

/// Runs a client battery program (`name` in messages) like [`run_with_timeout`], checks that
/// it succeeded and parses the JSON it printed.
pub fn run_json(name: &str, cmd: Command, timeout: Duration) -> serde_json::Value {
    let out = run_with_timeout(cmd, None, timeout);
    out.assert_success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{name} printed no JSON ({e}):\n{}", out.stdout))
}

/// `psql -X` (no ~/.psqlrc) with `args`, connected by `conn`, fed `stdin`.
pub fn psql(conn: &ConnParams, args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let mut cmd = Command::new(PgBin::get().tool("psql"));
    conn.apply_env(&mut cmd);
    cmd.arg("-X").args(args);
    run_with_timeout(cmd, stdin.map(str::as_bytes), DEFAULT_TIMEOUT)
}

/// Runs `sql` with `psql -XAtq -v ON_ERROR_STOP=1 -c` and returns its trimmed output; panics on
/// failure with what psql printed.
#[track_caller]
pub fn psql_query(conn: &ConnParams, sql: &str) -> String {
    let out = psql(conn, &["-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql], None);
    out.assert_success();
    out.stdout.trim_end().to_owned()
}

/// `psql -X` with `args`, started in the background (see [`Running`]).
pub fn spawn_psql(conn: &ConnParams, args: &[&str]) -> Running {
    let mut cmd = Command::new(PgBin::get().tool("psql"));
    conn.apply_env(&mut cmd);
    cmd.arg("-X").args(args);
    Running::spawn(cmd, None)
}

/// Connects with tokio-postgres (no TLS) and drives the connection on a spawned task; call
/// from inside a tokio runtime.
pub async fn tokio_connect(conn: &ConnParams) -> tokio_postgres::Client {
    let (client, connection) = conn
        .tokio_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("tokio-postgres connect to {}:{}: {e}", conn.host, conn.port));
    tokio::spawn(async move {
        // The connection ends with an error when the test drops the client mid-flight.
        let _ = connection.await;
    });
    client
}

/// `pgbench` with `args`, connected by `conn`.
pub fn pgbench(conn: &ConnParams, args: &[&str]) -> CmdOutput {
    let mut cmd = Command::new(PgBin::get().tool("pgbench"));
    conn.apply_env(&mut cmd);
    cmd.args(args);
    run_with_timeout(cmd, None, DEFAULT_TIMEOUT)
}

/// `psql -Atq -v ON_ERROR_STOP=1 -c sql` with extra libpq settings (`sslmode=require ...`)
/// appended to the connection string.
pub fn psql_c(conn: &ConnParams, extra: &str, sql: &str) -> CmdOutput {
    let dsn = format!("{} {extra}", conn.dsn());
    psql(
        conn,
        &["-Atq", "-v", "ON_ERROR_STOP=1", "-d", &dsn, "-c", sql],
        None,
    )
}

/// A catalog oracle with `db` as its DSN, `db`'s catalog read, and that snapshot.
pub async fn loaded_catalog(
    db: &ConnParams,
) -> (
    std::sync::Arc<pgshape::rules::CatalogOracle>,
    std::sync::Arc<pgshape::rules::catalog::Snapshot>,
) {
    let oracle = std::sync::Arc::new(
        pgshape::rules::CatalogOracle::new(&db.dsn(), Duration::from_secs(3600)).expect("dsn"),
    );
    oracle.refresh(&db.dbname).await.expect("catalog loads");
    let snapshot = oracle.snapshot(&db.dbname).expect("snapshot");
    (oracle, snapshot)
}
