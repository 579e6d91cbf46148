//! Proves the test harness itself: the throw-away cluster starts, every authentication role
//! logs in with the method it claims, databases are isolated, the client tools work, and the
//! cluster is gone after the test process exits. Proxy tests trust all of this.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{AuthUser, PgCluster, pgbench, psql, psql_query};

#[test]
fn every_auth_user_logs_in_with_its_own_method() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    for user in AuthUser::ALL {
        let who = psql_query(&db.user(user), "SELECT current_user");
        assert_eq!(who, user.name());
    }
    // The stored verifier decides what the server asks for: md5_user must really be MD5 (a
    // SCRAM verifier would silently turn `md5` into SCRAM) and scram_user must be SCRAM.
    let stored = psql_query(
        &db,
        "SELECT rolname || '=' || CASE WHEN rolpassword LIKE 'md5%' THEN 'md5' \
         WHEN rolpassword LIKE 'SCRAM-SHA-256$%' THEN 'scram' ELSE rolpassword END \
         FROM pg_authid WHERE rolname IN ('md5_user', 'scram_user', 'plain_user') \
         ORDER BY rolname",
    );
    assert_eq!(stored, "md5_user=md5\nplain_user=scram\nscram_user=scram");
    // Password users really need their password.
    for user in [AuthUser::Md5, AuthUser::Scram, AuthUser::Cleartext] {
        let out = psql(&db.user(user).password(None), &["-c", "SELECT 1"], None);
        assert!(
            !out.success(),
            "{} logged in without a password",
            user.name()
        );
        assert!(
            out.stderr.contains("no password supplied"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn wrong_password_fails_with_the_servers_message() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    for user in [AuthUser::Md5, AuthUser::Scram, AuthUser::Cleartext] {
        let out = psql(
            &db.user(user).password(Some("wrong")),
            &["-c", "SELECT 1"],
            None,
        );
        assert!(!out.success());
        let expected = format!(
            "password authentication failed for user \"{}\"",
            user.name()
        );
        assert!(out.stderr.contains(&expected), "{}", out.stderr);
    }
}

#[test]
fn unknown_users_are_rejected() {
    let cluster = PgCluster::shared();
    let mut conn = cluster.conn("postgres", AuthUser::Trust);
    conn.user = "nobody".into();
    let out = psql(&conn, &["-c", "SELECT 1"], None);
    assert!(!out.success());
    assert!(
        out.stderr.contains("pg_hba.conf rejects connection"),
        "{}",
        out.stderr
    );
}

#[test]
fn fresh_databases_are_isolated() {
    let cluster = PgCluster::shared();
    let a = cluster.fresh_database();
    let b = cluster.fresh_database();
    assert_ne!(a.dbname, b.dbname);
    psql_query(&a.user(AuthUser::Md5), "CREATE TABLE only_in_a (x int)");
    assert_eq!(
        psql_query(
            &a,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"
        ),
        "1"
    );
    assert_eq!(
        psql_query(
            &b,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"
        ),
        "0"
    );
}

#[test]
fn pgbench_initializes_and_runs_as_a_password_user() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database().user(AuthUser::Scram);
    pgbench(&db, &["-i", "-q", "-s", "1"]).assert_success();
    assert_eq!(
        psql_query(&db, "SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );
    let out = pgbench(&db, &["-S", "-t", "50", "-c", "2", "-M", "extended"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("number of transactions actually processed: 100/100"),
        "{}",
        out.stdout
    );
}

#[test]
fn pg_stat_statements_is_preloaded_and_loadable() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    assert_eq!(
        psql_query(&db, "SHOW shared_preload_libraries"),
        "pg_stat_statements"
    );
    psql_query(&db, "CREATE EXTENSION pg_stat_statements");
    psql_query(&db, "SELECT 42 AS harness_marker");
    let seen = psql_query(
        &db,
        "SELECT count(*) > 0 FROM pg_stat_statements WHERE query LIKE '%harness_marker%'",
    );
    assert_eq!(seen, "t");
}

#[test]
fn shared_ssl_cluster_requires_no_setup_from_tests() {
    let cluster = PgCluster::shared_ssl();
    let tls = cluster.tls().expect("certificates");
    let conn = cluster
        .fresh_database()
        .user(AuthUser::Md5)
        .sslmode("verify-full")
        .sslrootcert(&tls.ca_path());
    assert_eq!(
        psql_query(
            &conn,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ),
        "t"
    );
    assert!(
        std::ptr::eq(cluster, PgCluster::shared_ssl()),
        "started once"
    );
}

#[test]
fn ssl_cluster_serves_verified_tls() {
    let cluster = PgCluster::builder().ssl(true).start();
    let tls = cluster.tls().expect("ssl cluster has certificates").clone();
    let conn = cluster
        .conn("postgres", AuthUser::Scram)
        .sslmode("verify-full")
        .sslrootcert(&tls.ca_path());
    assert_eq!(
        psql_query(
            &conn,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ),
        "t"
    );
    // And plain connections still work (proxies may use either).
    let plain = cluster.conn("postgres", AuthUser::Scram);
    assert_eq!(
        psql_query(
            &plain,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ),
        "f"
    );
    let dir = cluster.dir().to_owned();
    drop(cluster);
    assert!(!dir.exists(), "Drop removes the cluster directory");
}

/// Run by [`cluster_is_stopped_and_removed_when_the_test_process_exits`] in a child process:
/// starts the static shared cluster and reports where it lives, then exits without any cleanup
/// of its own (statics are never dropped).
#[test]
fn child_process_starting_a_cluster() {
    if std::env::var_os("PGSHAPE_SELFTEST_CHILD").is_none() {
        return;
    }
    let cluster = PgCluster::shared();
    println!(
        "CLUSTER pid={} dir={}",
        cluster.postmaster_pid(),
        cluster.dir().display()
    );
}

#[test]
fn cluster_is_stopped_and_removed_when_the_test_process_exits() {
    let out = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", "child_process_starting_a_cluster", "--nocapture"])
        .env("PGSHAPE_SELFTEST_CHILD", "1")
        .output()
        .expect("run child test process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CLUSTER "))
        .unwrap_or_else(|| panic!("child printed no cluster line:\n{stdout}"));
    let (pid, dir) = line
        .strip_prefix("pid=")
        .and_then(|rest| rest.split_once(" dir="))
        .expect("pid=<n> dir=<path>");
    let alive = || {
        Command::new("kill")
            .args(["-0", pid])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while (alive() || std::path::Path::new(dir).exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(), "postmaster {pid} outlived its test process");
    assert!(
        !std::path::Path::new(dir).exists(),
        "cluster dir {dir} outlived its test process"
    );
}

#[test]
fn proxy_under_test_relays_and_records_events() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database().user(AuthUser::Md5);
    let proxy = support::ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    assert_eq!(psql_query(&via, "SELECT /*selftest*/ 7"), "7");
    let events = proxy
        .events
        .wait_for_matching("/*selftest*/", 1, Duration::from_secs(5));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].sql, "SELECT /*selftest*/ 7");
    assert_eq!(events[0].rows, 1);
    assert_eq!(events[0].command, "SELECT");
    assert_eq!(events[0].database, db.dbname);
    assert_eq!(events[0].user, "md5_user");
}

#[test]
fn background_psql_can_be_interrupted_like_ctrl_c() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let running = support::client::spawn_psql(&db, &["-c", "SELECT pg_sleep(30)"]);
    // Wait until the statement is really running on the server before pressing Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(10);
    while cluster.backends_in(&db.dbname) == 0 {
        assert!(Instant::now() < deadline, "psql never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let pressed = Instant::now();
    running.interrupt();
    let out = running.wait(Duration::from_secs(10));
    assert!(pressed.elapsed() < Duration::from_secs(2));
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("canceling statement due to user request"),
        "{}",
        out.stderr
    );
}

#[test]
fn raw_client_logs_in_and_reads_replies() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let mut conn = support::raw::RawConn::login(cluster.addr(), "pgshape", &db.dbname);
    conn.send(&support::raw::query("SELECT 1/0"));
    let msgs = conn.read_until(Duration::from_secs(5), |m| m.tag == b'Z');
    let error = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .expect("an ErrorResponse");
    assert_eq!(error.field(b'C').as_deref(), Some("22012"));
    // A length below 4 is a protocol violation the server answers with FATAL 08P01 and a close.
    conn.send(&[b'Q', 0, 0, 0, 1]);
    let (msgs, closed) = conn.read_to_close(Duration::from_secs(5));
    assert!(closed, "server closed after the malformed frame: {msgs:?}");
}

#[tokio::test]
async fn tokio_postgres_connects_with_scram() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database().user(AuthUser::Scram);
    let client = support::client::tokio_connect(&db).await;
    let row = client
        .query_one("SELECT $1::int + 1", &[&41])
        .await
        .expect("query");
    assert_eq!(row.get::<_, i32>(0), 42);
}

#[test]
fn throwaway_certificates_are_valid_pem_and_cleaned_up() {
    let cert = support::tls::ServerCert::throwaway();
    let chain = std::fs::read_to_string(cert.cert_path()).expect("read chain");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "leaf + CA");
    let key = std::fs::read_to_string(cert.key_path()).expect("read key");
    assert!(key.contains("BEGIN PRIVATE KEY"));
    let dir = cert.ca_path().parent().expect("dir").to_owned();
    let clone = cert.clone();
    drop(cert);
    assert!(dir.exists(), "a clone keeps the directory");
    drop(clone);
    assert!(!dir.exists());
}
