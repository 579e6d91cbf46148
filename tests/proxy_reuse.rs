//! `reuse_server_connections`: a server connection its client left idle is reset and serves
//! the next client with the same start-up parameters — only where the server would have let
//! that client in without a password (trust) or pgshape authenticated it (`scram_proxy`) —
//! and never one left inside a transaction.

mod support;

use std::time::Duration;

use support::{AuthUser, ConnParams, PgCluster, ProxyUnderTest, pgbench, psql_c, psql_query};

fn reusing(cluster: &PgCluster) -> ProxyUnderTest {
    ProxyUnderTest::start_with(cluster, |c| {
        c.reuse_server_connections = true;
        // One worker: kept connections are per worker, and the test wants to see reuse.
        c.workers = 1;
    })
}

/// Waits until this many server connections are kept (a session's reset is a round trip after
/// its client left).
fn wait_kept(proxy: &ProxyUnderTest, n: i64) {
    let idle = &proxy.proxy().metrics().server_connections_idle;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while idle.get() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} kept, not {n}",
            idle.get()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn backend_pid(conn: &ConnParams) -> String {
    psql_query(conn, "SELECT pg_backend_pid()")
}

#[test]
fn an_idle_connection_is_reset_and_reused_by_the_next_client() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = reusing(cluster);
    let conn = proxy.route(&db);

    // Session state that must not leak to the next client.
    let first = psql_query(
        &conn,
        "CREATE TEMP TABLE mine(a int); SET statement_timeout = '1234s'; \
         PREPARE p AS SELECT 1; SELECT pg_advisory_lock(42); SELECT pg_backend_pid()",
    );
    let first_pid = first.lines().last().unwrap().to_owned();
    wait_kept(&proxy, 1);
    let second = psql_query(
        &conn,
        "SELECT current_setting('statement_timeout'), \
         (SELECT count(*) FROM pg_prepared_statements), \
         (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'), \
         to_regclass('pg_temp.mine') IS NULL, pg_backend_pid()",
    );
    assert_eq!(second, format!("0|0|0|t|{first_pid}"), "reset and reused");
    let metrics = proxy.proxy().metrics();
    assert_eq!(metrics.server_connections_reused.get(), 1);
    assert_eq!(metrics.server_connections_total.get(), 1);
    assert_eq!(metrics.server_connections_idle.get(), 1);

    // Other start-up parameters (another application_name) get their own connection.
    let other = backend_pid(&conn.application_name("other"));
    assert_ne!(other, first_pid);
}

#[test]
fn a_connection_left_in_a_transaction_is_not_reused() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = reusing(cluster);
    let conn = proxy.route(&db);
    psql_query(&conn, "CREATE TABLE t(a int)");
    let kept = backend_pid(&conn);
    wait_kept(&proxy, 1);
    // psql ends the session with BEGIN still open: the server rolls it back only if the
    // connection really closes.
    let out = psql_c(
        &conn,
        "",
        "BEGIN; INSERT INTO t VALUES (1); SELECT pg_backend_pid()",
    );
    out.assert_success();
    let in_tx = out.stdout.trim().lines().last().unwrap().to_owned();
    assert_eq!(in_tx, kept, "the idle one was taken");
    assert_eq!(
        psql_query(&db, "SELECT count(*) FROM t"),
        "0",
        "rolled back"
    );
    assert_ne!(backend_pid(&conn), in_tx, "not handed on");
}

#[test]
fn a_server_that_asks_for_a_password_is_never_reused() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database().user(AuthUser::Scram);
    let proxy = reusing(cluster);
    let conn = proxy.route(&db);
    let first = backend_pid(&conn);
    // Nothing is kept: the server asked for a password.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(proxy.proxy().metrics().server_connections_idle.get(), 0);
    // A wrong password must still be refused by the server, not served a kept connection.
    let out = psql_c(&conn.password(Some("wrong")), "", "SELECT 1");
    assert!(!out.success());
    assert!(
        out.stderr.contains("password authentication failed"),
        "{}",
        out.stderr
    );
    assert_ne!(backend_pid(&conn), first);
    let metrics = proxy.proxy().metrics();
    assert_eq!(metrics.server_connections_reused.get(), 0);
}

#[test]
fn pgbench_connect_per_transaction_reuses_and_cancel_reaches_the_backend() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = reusing(cluster);
    let conn = proxy.route(&db);
    pgbench(&db, &["-i", "-s", "1", "-q"]).assert_success();
    let out = pgbench(&conn, &["-C", "-S", "-c", "2", "-t", "50", "-n"]);
    out.assert_success();
    assert!(
        out.stdout.contains("number of failed transactions: 0"),
        "{}",
        out.stdout
    );
    let metrics = proxy.proxy().metrics();
    // A client may connect again before its previous server connection is reset and kept,
    // so a few more are opened than pgbench's two at a time; most sessions must reuse.
    assert!(
        metrics.server_connections_total.get() <= 50,
        "100 client connections, {} server connections",
        metrics.server_connections_total.get()
    );
    let reused = metrics.server_connections_reused.get();
    assert!(reused >= 50, "{reused} reused");

    // A reused connection's BackendKeyData is the real backend's: a cancel stops its statement.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // tokio-postgres sends other start-up parameters than pgbench: one session to leave a
        // connection for the next.
        let first = support::client::tokio_connect(&conn).await;
        first.simple_query("SELECT 1").await.unwrap();
        let idle = metrics.server_connections_idle.get();
        drop(first);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while metrics.server_connections_idle.get() <= idle {
            assert!(
                std::time::Instant::now() < deadline,
                "the connection was not kept"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let client = support::client::tokio_connect(&conn).await;
        let token = client.cancel_token();
        let sleeper = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        token
            .cancel_query(tokio_postgres::NoTls)
            .await
            .expect("cancel sent");
        let result = tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("cancelled in time")
            .unwrap();
        let error = result.expect_err("cancelled");
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
        );
    });
    assert!(
        metrics.server_connections_reused.get() > reused,
        "the cancel test reused one"
    );
}
