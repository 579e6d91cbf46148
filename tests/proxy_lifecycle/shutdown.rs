//! Graceful shutdown: running statements finish, idle and half-open connections close at once,
//! the listener stops accepting, and the grace period bounds everything.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use super::support::{AuthUser, PgCluster, ProxyUnderTest};
use super::*;

/// Shuts the proxy down on a blocking thread; resolves with how long `shutdown` took.
fn shutdown_in_background(
    mut proxy: ProxyUnderTest,
) -> tokio::task::JoinHandle<(Duration, ProxyUnderTest)> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        proxy.shutdown();
        (started.elapsed(), proxy)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_the_running_statement_finish() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| c.shutdown_grace_ms = 10_000);
    let addr = proxy.addr();
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let (client, task) = connect(&conn).await;
    let query = tokio::spawn(async move {
        let result = client
            .query_one("SELECT /*graceful*/ 42 FROM pg_sleep(1)", &[])
            .await;
        (result, client)
    });
    let dbname = db.dbname.clone();
    blocking(move || cluster.wait_until_running(&dbname, "/*graceful*/")).await;

    let events = proxy.events.clone();
    let shutdown = shutdown_in_background(proxy);
    // New clients are refused as soon as shutdown began, while the statement still runs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    assert!(
        refused.is_err(),
        "the listener still accepts during shutdown"
    );

    let (result, client) = query.await.expect("join");
    let row = result.expect("the running statement completes");
    assert_eq!(row.get::<_, i32>(0), 42);
    // Then the session is closed with the server's own "administrator command" code.
    let ended = task.await.expect("join");
    let error = ended.expect_err("the session ends with an error");
    assert_eq!(error.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{error}");
    assert!(client.is_closed());
    let (took, _proxy) = shutdown.await.expect("join");
    eprintln!("timing graceful_shutdown_lets_the_running_statement_finish: {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "shutdown waited {took:?}, not just for the statement"
    );

    let recorded = events.wait_for_matching("/*graceful*/", 1, EVENT_WAIT);
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0].sqlstate, None);
    assert_eq!(recorded[0].rows, 1);
    let dbname = db.dbname.clone();
    blocking(move || cluster.assert_no_backends(&dbname)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_sessions_promptly() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| c.shutdown_grace_ms = 10_000);
    let conn = proxy.route(&db.user(AuthUser::Md5));
    let (idle, idle_task) = connect(&conn).await;
    // One in an open transaction too: idle between statements is idle.
    let (in_tx, in_tx_task) = connect(&conn).await;
    in_tx.batch_execute("BEGIN; SELECT 1").await.expect("begin");
    idle.simple_query("SELECT 1").await.expect("warm up");

    let (took, _proxy) = shutdown_in_background(proxy).await.expect("join");
    eprintln!("timing shutdown_closes_idle_sessions_promptly: {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "idle sessions held shutdown for {took:?}"
    );
    for task in [idle_task, in_tx_task] {
        let error = task.await.expect("join").expect_err("closed by the proxy");
        assert_eq!(error.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{error}");
    }
    assert!(idle.simple_query("SELECT 1").await.is_err());
    let dbname = db.dbname.clone();
    blocking(move || cluster.assert_no_backends(&dbname)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_period_bounds_a_long_statement_and_cancels_it() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| c.shutdown_grace_ms = 500);
    let conn = proxy.route(&db.user(AuthUser::Md5));
    let (client, task) = connect(&conn).await;
    let query = tokio::spawn(async move {
        client
            .simple_query("SELECT /*too long*/ pg_sleep(30)")
            .await
            .map(|_| ())
    });
    let dbname = db.dbname.clone();
    blocking(move || cluster.wait_until_running(&dbname, "/*too long*/")).await;

    let (took, _proxy) = shutdown_in_background(proxy).await.expect("join");
    eprintln!("timing shutdown_grace_period_bounds_a_long_statement: {took:?}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1_500),
        "shutdown took {took:?} with a 500 ms grace period"
    );
    let err = query
        .await
        .expect("join")
        .expect_err("the statement was cut off");
    let db_error = err.as_db_error().expect("the client is told why");
    assert_eq!(db_error.code(), &SqlState::ADMIN_SHUTDOWN);
    assert!(
        db_error.hint().unwrap_or_default().contains("cancelled"),
        "{db_error:?}"
    );
    let _ = task.await;
    // pgshape cancelled the statement, so the backend is gone long before pg_sleep(30) ends.
    let dbname = db.dbname.clone();
    blocking(move || cluster.assert_no_backends(&dbname)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_clients_that_never_sent_a_startup_packet() {
    let cluster = PgCluster::shared();
    let proxy = ProxyUnderTest::start_with(cluster, |c| c.shutdown_grace_ms = 10_000);
    // Connected, then silent: a port scanner, a health check, a client stuck before start-up.
    let mut silent = tokio::net::TcpStream::connect(proxy.addr())
        .await
        .expect("connect");
    // Let the acceptor hand it to a worker.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (took, _proxy) = shutdown_in_background(proxy).await.expect("join");
    eprintln!(
        "timing shutdown_does_not_wait_for_clients_that_never_sent_a_startup_packet: {took:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "a silent connection held shutdown for {took:?}"
    );
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .expect("the proxy closed the connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
