//! The security model as the `pgshape serve` binary enforces it:
//! - the state-changing admin endpoints never listen beyond loopback without a token, unless
//!   `--admin-insecure` says so; reads and writes can listen apart (`--admin-write`);
//! - secrets (the schema DSN's password, the admin token, TLS key material) appear in no log
//!   line at debug level, no admin answer and no error message;
//! - literal values of statements appear in no fingerprint, metric, JSON answer, page or log.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::client::{AuthUser, run_with_timeout};
use support::raw::{self, RawConn};
use support::serve::{Serve, free_addr};
use support::tls::ServerCert;
use support::{PgCluster, psql_query};

/// `pgshape serve` with `args`, waited for until both listeners accept.
struct Running {
    serve: Serve,
    listen: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(cluster: &PgCluster, args: &[&str], env: &[(&str, &str)]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin) = (free_addr(), free_addr());
        let mut all = vec![
            "--listen".to_owned(),
            listen.to_string(),
            "--admin".to_owned(),
            admin.to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let serve = Serve::spawn(cluster, &rules, &all, env, dir.path().join("pgshape.log"));
        wait_accepting(&serve, &[listen, admin]);
        Running {
            serve,
            listen,
            admin,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> String {
        let (status, body) = support::http(self.admin, "GET", path);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Every read the admin listener offers, concatenated: metrics in both formats, the JSON
    /// API (list, each shape's detail, rules), the page, health and readiness.
    fn every_read(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.get("/metrics"));
        let open = support::http_request(
            self.admin,
            "GET",
            "/metrics",
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
        );
        out.push_str(&open.body);
        let list = self.get("/api/queries?limit=1000");
        let rows: serde_json::Value = serde_json::from_str(&list).unwrap();
        for row in rows.as_array().unwrap() {
            let fp = row["fingerprint"].as_str().unwrap();
            out.push_str(&self.get(&format!("/api/queries/{fp}")));
        }
        out.push_str(&list);
        out.push_str(&self.get("/api/rules"));
        out.push_str(&self.get("/"));
        out.push_str(&self.get("/healthz"));
        out.push_str(&support::http(self.admin, "GET", "/readyz").1);
        out
    }
}

fn wait_accepting(serve: &Serve, addrs: &[SocketAddr]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while addrs
        .iter()
        .any(|a| std::net::TcpStream::connect(a).is_err())
    {
        assert!(
            Instant::now() < deadline,
            "pgshape serve did not start:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `pgshape serve` that must exit at once; returns its stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgshape"));
    cmd.arg("serve")
        .args(["--listen", &free_addr().to_string()])
        .args(args)
        .env_remove("PGSHAPE_ADMIN_TOKEN")
        .env_remove("PGSHAPE_ADMIN_INSECURE")
        .envs(env.iter().copied());
    let out = run_with_timeout(cmd, None, Duration::from_secs(30));
    assert!(!out.success(), "pgshape started: {}", out.stderr);
    out.stderr
}

#[test]
fn admin_writes_beyond_loopback_need_a_token_or_admin_insecure() {
    let cluster = PgCluster::shared();
    let open = format!("0.0.0.0:{}", free_addr().port());
    let stderr = refused(&["--admin", &open], &[]);
    assert!(
        stderr.contains("without admin_token") && stderr.contains("--admin-insecure"),
        "{stderr}"
    );
    // Writes on their own non-loopback listener: same refusal.
    let stderr = refused(
        &[
            "--admin",
            &free_addr().to_string(),
            "--admin-write",
            &format!("0.0.0.0:{}", free_addr().port()),
        ],
        &[],
    );
    assert!(stderr.contains("without admin_token"), "{stderr}");

    // Each way out starts it: the flag, the environment, a token.
    for (args, env) in [
        (vec!["--admin-insecure"], vec![]),
        (vec![], vec![("PGSHAPE_ADMIN_INSECURE", "true")]),
        (vec![], vec![("PGSHAPE_ADMIN_TOKEN", "tok-ok")]),
    ] {
        let admin = free_addr();
        let mut all = vec!["--admin".to_owned(), format!("0.0.0.0:{}", admin.port())];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let dir = tempfile::tempdir().unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let serve = Serve::spawn(cluster, &rules, &all, &env, dir.path().join("log"));
        wait_accepting(&serve, &[admin]);
        let (status, _) = support::http(admin, "GET", "/healthz");
        assert_eq!(status, 200);
        if env.is_empty() || env[0].0 == "PGSHAPE_ADMIN_INSECURE" {
            serve.wait_log("admin_insecure");
        }
    }
}

#[test]
fn reads_and_writes_listen_apart_with_admin_write() {
    let cluster = PgCluster::shared();
    let writes = free_addr();
    // Reads on all interfaces need no token when the writes stay on loopback.
    let reads = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let serve = Serve::spawn(
        cluster,
        &rules,
        &[
            "--listen",
            &free_addr().to_string(),
            "--admin",
            &format!("0.0.0.0:{}", reads.port()),
            "--admin-write",
            &writes.to_string(),
        ],
        &[],
        dir.path().join("log"),
    );
    let reads = SocketAddr::from(([127, 0, 0, 1], reads.port()));
    wait_accepting(&serve, &[reads, writes]);
    for path in ["/metrics", "/api/queries", "/api/rules", "/"] {
        assert_eq!(support::http(reads, "GET", path).0, 200, "{path}");
    }
    for path in ["/api/queries/reset", "/api/reload", "/api/rules/reload"] {
        let (status, body) = support::http(reads, "POST", path);
        assert_eq!(status, 405, "POST {path} on the reads listener: {body}");
        assert!(body.contains("admin_write"), "{body}");
        let (status, body) = support::http(writes, "POST", path);
        assert_eq!(status, 200, "POST {path} on the writes listener: {body}");
    }
}

/// Secrets planted in every place pgshape is given one; none may come out anywhere.
#[test]
fn secrets_stay_out_of_logs_answers_and_errors() {
    const DSN_PASSWORD: &str = "pw-PLANTED-dsn-51c3";
    const TOKEN: &str = "tok-PLANTED-admin-8d2e";
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, "CREATE TABLE t(id int primary key, name text)");
    // This test binary's own cluster: the SCRAM role takes the planted password.
    psql_query(
        &cluster.conn("postgres", AuthUser::Trust),
        &format!("ALTER ROLE scram_user PASSWORD '{DSN_PASSWORD}'"),
    );
    let cert = ServerCert::throwaway();
    let key = std::fs::read_to_string(cert.key_path()).unwrap();
    // A line of the key's base64 body: what would show if the key leaked in any form.
    let key_material = key
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() >= 32)
        .expect("a PEM body line")
        .to_owned();
    let dsn = format!(
        "host={} port={} user=scram_user password={DSN_PASSWORD} dbname=postgres",
        cluster.addr().ip(),
        cluster.port()
    );
    let cert_path = cert.cert_path();
    let key_path = cert.key_path();
    let run = Running::start(
        cluster,
        &[
            "--schema-dsn",
            &dsn,
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--log-min-duration",
            "0",
        ],
        &[("PGSHAPE_ADMIN_TOKEN", TOKEN), ("RUST_LOG", "debug")],
    );
    // Traffic that makes the catalog connection log in (a join) and the admin API answer.
    let mut conn = RawConn::login(run.listen, &db.user, &db.dbname);
    raw::exchange(
        &mut conn,
        &raw::query("SELECT DISTINCT a.id FROM t a JOIN t b ON b.id = a.id"),
    );
    run.serve.wait_log("catalog loaded");
    let wrong = support::http_request(
        run.admin,
        "POST",
        "/api/queries/reset",
        &[("Authorization", "Bearer tok-PLANTED-admin-8d2x")],
    );
    assert_eq!(wrong.status, 401);
    let right = support::http_request(
        run.admin,
        "POST",
        "/api/queries/reset",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
    );
    assert_eq!(right.status, 200, "{}", right.body);
    let mut everything = run.every_read();
    everything.push_str(&wrong.head);
    everything.push_str(&wrong.body);
    everything.push_str(&right.body);
    everything.push_str(&run.serve.log());

    // The same DSN against a server that is not there, and a DSN that does not parse: the
    // errors name the problem, never the password.
    let dead = format!("host=127.0.0.1 port=1 user=scram_user password={DSN_PASSWORD}");
    let unreachable = Running::start(cluster, &["--schema-dsn", &dead], &[("RUST_LOG", "debug")]);
    let mut conn = RawConn::login(unreachable.listen, &db.user, &db.dbname);
    raw::exchange(
        &mut conn,
        &raw::query("SELECT DISTINCT a.id FROM t a JOIN t b ON b.id = a.id"),
    );
    everything.push_str(&unreachable.serve.wait_log("catalog load failed"));
    everything.push_str(&unreachable.every_read());
    let bad = format!("host=127.0.0.1 port=notaport password={DSN_PASSWORD}");
    let stderr = refused(
        &["--admin", "off", "--schema-dsn", &bad],
        &[("RUST_LOG", "debug")],
    );
    assert!(stderr.contains("schema_dsn"), "{stderr}");
    everything.push_str(&stderr);
    // A key file that is not a key: the error names the file, not what is in it.
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, format!("{DSN_PASSWORD}\n{key_material}\n")).unwrap();
    let stderr = refused(
        &[
            "--admin",
            "off",
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            not_a_key.to_str().unwrap(),
        ],
        &[("RUST_LOG", "debug")],
    );
    assert!(stderr.contains("not-a-key.pem"), "{stderr}");
    everything.push_str(&stderr);

    assert!(everything.contains("scram_user") || everything.contains("catalog"));
    for secret in [DSN_PASSWORD, TOKEN, "8d2x", key_material.as_str()] {
        assert!(
            !everything.contains(secret),
            "{secret:?} leaked:\n{}",
            context(&everything, secret)
        );
    }
}

/// Distinctive literals in WHERE clauses, simple and extended, failing and slow: every output
/// shows the statements' shapes and none of their values.
#[test]
fn literal_values_stay_out_of_every_output() {
    const TEXT: &str = "lit-PLANTED-7c1e9";
    const NUMBER: &str = "918273645";
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(
        &db,
        "CREATE TABLE t(id int primary key, name text); INSERT INTO t VALUES (1, 'a')",
    );
    let run = Running::start(
        cluster,
        &["--log-min-duration", "0"],
        &[("RUST_LOG", "debug")],
    );
    let mut conn = RawConn::login(run.listen, &db.user, &db.dbname);
    let ok = format!("SELECT * FROM t WHERE name = '{TEXT}' AND id = {NUMBER}");
    let failing = format!("SELECT * FROM t WHERE name = '{TEXT}' AND nope = {NUMBER}");
    let slow = format!("SELECT pg_sleep(0.2) FROM t WHERE name <> '{TEXT}' AND id <> {NUMBER}");
    for sql in [&ok, &failing, &slow] {
        raw::exchange(&mut conn, &raw::query(sql));
        raw::exchange(&mut conn, &raw::extended(sql, &[]));
    }
    // Values as parameters: in the Bind, never in any text.
    raw::exchange(
        &mut conn,
        &raw::extended(
            "SELECT * FROM t WHERE name = $1 AND id = $2",
            &[TEXT, NUMBER],
        ),
    );
    let log = run.serve.wait_log("pg_sleep");
    let reads = run.every_read();
    // The statements were seen, as shapes.
    assert!(
        reads.contains("WHERE name = $1 AND id = $2"),
        "no shape in /api/queries: {reads}"
    );
    assert!(reads.contains("nope = $2"), "the failing shape: {reads}");
    assert!(log.contains("slow statement"), "{log}");
    let everything = format!("{reads}\n{log}");
    for literal in [TEXT, NUMBER] {
        assert!(
            !everything.contains(literal),
            "{literal} leaked:\n{}",
            context(&everything, literal)
        );
    }
}

/// The lines around each occurrence of `needle`, for a failure message.
fn context(haystack: &str, needle: &str) -> String {
    haystack
        .lines()
        .filter(|l| l.contains(needle))
        .take(5)
        .collect::<Vec<_>>()
        .join("\n")
}
