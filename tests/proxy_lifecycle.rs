//! A session's life around the statements: an upstream that is down or silent, the client
//! limit, graceful shutdown, and query cancellation (driver cancel and psql's Ctrl-C), all
//! through pgshape against a real PostgreSQL. After each test no backend may be left behind.

#[path = "proxy_lifecycle/shutdown.rs"]
mod shutdown;
mod support;
#[path = "proxy_lifecycle/upstream_down.rs"]
mod upstream_down;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pgbin::PgBin;
use support::{AuthUser, ConnParams, PgCluster, ProxyUnderTest, psql_c};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

const EVENT_WAIT: Duration = Duration::from_secs(10);

/// Asserts that exactly `n` events carry exactly this SQL, none of them failed.
#[track_caller]
fn assert_events(proxy: &ProxyUnderTest, sql: &str, n: usize) {
    proxy.events.wait_for_matching(sql, n, EVENT_WAIT);
    let events: Vec<_> = proxy
        .events
        .settle(Duration::from_millis(100))
        .into_iter()
        .filter(|e| e.sql == sql)
        .collect();
    assert_eq!(events.len(), n, "{sql:?}: {events:#?}");
    assert!(
        events.iter().all(|e| e.sqlstate.is_none() && e.rows == 1),
        "{events:#?}"
    );
}

async fn connect(
    conn: &ConnParams,
) -> (
    Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, connection) = conn
        .tokio_config()
        .connect(NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect through {}:{}: {e}", conn.host, conn.port));
    (client, tokio::spawn(connection))
}

async fn connect_error(conn: &ConnParams) -> tokio_postgres::Error {
    match conn.tokio_config().connect(NoTls).await {
        Ok(_) => panic!("connecting to {}:{} succeeded", conn.host, conn.port),
        Err(e) => e,
    }
}

/// Runs blocking harness calls (psql, pg_stat_activity polls) off the async test's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

// ---------------------------------------------------------------- client limit

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_connections_refuses_the_next_client_with_53300() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| c.max_client_connections = 2);
    let conn = proxy.route(&db.user(AuthUser::Md5));
    let (first, first_task) = connect(&conn).await;
    let (second, _second_task) = connect(&conn).await;

    let third = conn.clone();
    let out = blocking(move || psql_c(&third, "", "SELECT 1")).await;
    assert!(!out.success());
    assert!(
        out.stderr.contains("sorry, too many clients already"),
        "{}",
        out.stderr
    );
    let error = connect_error(&conn).await;
    assert_eq!(
        error.code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{error}"
    );
    assert_eq!(proxy.proxy().metrics().client_connections_refused.get(), 2);

    // The two admitted sessions are untouched.
    for (client, n) in [(&first, 1i32), (&second, 2)] {
        let row = client
            .query_one("SELECT $1::int4 AS n", &[&n])
            .await
            .expect("admitted client still works");
        assert_eq!(row.get::<_, i32>(0), n);
    }

    // A slot comes back when a client leaves.
    drop(first);
    first_task.await.expect("join").expect("clean close");
    let deadline = Instant::now() + Duration::from_secs(3);
    let back = loop {
        match conn.tokio_config().connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                break client;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no slot freed after a client left: {e}"),
        }
    };
    back.simple_query("SELECT /*slot back*/ 1")
        .await
        .expect("query on the freed slot");
    assert_events(&proxy, "SELECT $1::int4 AS n", 2);
    assert_events(&proxy, "SELECT /*slot back*/ 1", 1);
    drop(back);
    drop(second);
    let dbname = db.dbname.clone();
    blocking(move || cluster.assert_no_backends(&dbname)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_database_and_per_user_limits_refuse_with_53300_naming_what_is_full() {
    let cluster = PgCluster::shared();
    let (shop, reports) = (cluster.fresh_database(), cluster.fresh_database());
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.max_connections_per_database = 2;
        c.max_connections_per_user = 3;
    });
    let md5 = |db: &ConnParams| proxy.route(&db.user(AuthUser::Md5));
    let (a, _ta) = connect(&md5(&shop)).await;
    let (b, _tb) = connect(&md5(&shop)).await;
    // The third on the same database is refused, like PostgreSQL's own per-database limit.
    let error = connect_error(&md5(&shop)).await;
    assert_eq!(
        error.code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{error}"
    );
    let text = |e: &tokio_postgres::Error| {
        let db = e.as_db_error().expect("a server-style error");
        format!("{} ({})", db.message(), db.hint().unwrap_or_default())
    };
    assert_eq!(
        text(&error),
        format!(
            "too many connections for database \"{}\" (pgshape's max_connections_per_database is reached)",
            shop.dbname
        )
    );
    // Another database still has room; the user reaches its own limit of 3 there.
    let (c, _tc) = connect(&md5(&reports)).await;
    let error = connect_error(&md5(&reports)).await;
    assert_eq!(
        text(&error),
        "too many connections for role \"md5_user\" (pgshape's max_connections_per_user is reached)"
    );
    // Another user on that database is admitted.
    let (d, _td) = connect(&proxy.route(&reports.user(AuthUser::Scram))).await;
    assert_eq!(proxy.proxy().metrics().client_connections_refused.get(), 2);
    for client in [&a, &b, &c, &d] {
        client.simple_query("SELECT 1").await.expect("admitted");
    }
    // A session that ends gives its place back.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match md5(&shop).tokio_config().connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
                    .simple_query("SELECT 1")
                    .await
                    .expect("admitted again");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no place freed after a session ended: {e}"),
        }
    }
    drop((b, c, d));
}

// ---------------------------------------------------------------- cancel

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_cancel_travels_through_the_proxy() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let (client, _task) = connect(&conn).await;
    // The token keeps the address the client connected to: the proxy, not the server.
    let token = client.cancel_token();
    let query = tokio::spawn(async move {
        let result = client
            .simple_query("SELECT /*cancel me*/ pg_sleep(30)")
            .await;
        (result.map(|_| ()), client)
    });
    let dbname = db.dbname.clone();
    blocking(move || cluster.wait_until_running(&dbname, "/*cancel me*/")).await;

    let started = Instant::now();
    token.cancel_query(NoTls).await.expect("send cancel");
    let (result, client) = query.await.expect("join");
    let took = started.elapsed();
    eprintln!("timing driver_cancel_travels_through_the_proxy: {took:?}");
    let error = result.expect_err("the statement was cancelled");
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    assert_eq!(proxy.proxy().metrics().cancel_requests.get(), 1);

    // The session goes on, and the cancelled statement was reported with its SQLSTATE.
    let rows = client.simple_query("SELECT /*after cancel*/ 1").await;
    assert!(rows.is_ok(), "{rows:?}");
    assert_events(&proxy, "SELECT /*after cancel*/ 1", 1);
    let events = proxy
        .events
        .wait_for_matching("/*cancel me*/", 1, EVENT_WAIT);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].sqlstate.as_deref(), Some("57014"));
    drop(client);
    let dbname = db.dbname.clone();
    blocking(move || cluster.assert_no_backends(&dbname)).await;
}

#[test]
fn psql_ctrl_c_cancels_through_the_proxy() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let conn = proxy.route(&db.user(AuthUser::Md5));
    let mut cmd = Command::new(PgBin::get().tool("psql"));
    for var in [
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGCHANNELBINDING",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .env("PGPASSFILE", "/nonexistent/pgshape-tests/pgpass")
        .args([
            "-X",
            "-d",
            &conn.dsn(),
            "-c",
            "SELECT /*ctrl-c*/ pg_sleep(30)",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start psql");
    cluster.wait_until_running(&db.dbname, "/*ctrl-c*/");

    let interrupted = Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = interrupted + Duration::from_secs(2);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait for psql") {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("psql still running 2 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = interrupted.elapsed();
    eprintln!("timing psql_ctrl_c_cancels_through_the_proxy: {took:?}");
    let output = child.wait_with_output().expect("psql output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!exit.success());
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    assert_eq!(proxy.proxy().metrics().cancel_requests.get(), 1);
    let events = proxy.events.wait_for_matching("/*ctrl-c*/", 1, EVENT_WAIT);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].sqlstate.as_deref(), Some("57014"));
    cluster.assert_no_backends(&db.dbname);
}

// ---------------------------------------------------------------- the server ends a session

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_backend_ends_the_client_session_with_the_servers_error() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let (client, task) = connect(&conn).await;
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("backend pid");
    let pid: i32 = row.get(0);
    assert_events(&proxy, "SELECT pg_backend_pid()", 1);
    let admin = db.clone();
    blocking(move || support::psql_query(&admin, &format!("SELECT pg_terminate_backend({pid})")))
        .await;

    // The server's FATAL reaches the client untouched, then the proxy closes the session.
    let error = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the session ends")
        .expect("join")
        .expect_err("closed with the server's error");
    assert_eq!(error.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{error}");
    assert!(client.is_closed());
    let metrics = proxy.proxy().metrics().clone();
    let deadline = Instant::now() + Duration::from_secs(2);
    while metrics.client_connections_active.get() != 0
        || metrics.server_connections_active.get() != 0
    {
        assert!(Instant::now() < deadline, "the proxy kept the session open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dbname = db.dbname.clone();
    blocking(move || cluster.assert_no_backends(&dbname)).await;
}

// ---------------------------------------------------------------- the client vanishes

/// Starts psql running `sql` over `conn` (a route through the proxy), waits until the server
/// runs it (`marker` is in its text), then kills psql with SIGKILL: no Terminate, the socket
/// just closes.
fn kill_psql_mid_statement(
    cluster: &PgCluster,
    dbname: &str,
    conn: &ConnParams,
    sql: &str,
    marker: &str,
) {
    let mut child = Command::new(PgBin::get().tool("psql"))
        .env("PGPASSFILE", "/nonexistent/pgshape-tests/pgpass")
        .env_remove("PGSERVICE")
        .args(["-X", "-d", &conn.dsn(), "-c", sql])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start psql");
    cluster.wait_until_running(dbname, marker);
    child.kill().expect("SIGKILL psql");
    let _ = child.wait();
}

#[test]
fn a_client_killed_mid_statement_leaves_no_backend_and_the_statement_is_still_timed() {
    // As with a direct connection: the server finishes what it was sent (fire-and-forget
    // writes stay written), then sees the Terminate pgshape forwarded and exits. pgshape keeps
    // reading the server's answer meanwhile, so the statement — often the slowest of all, the
    // reason its client gave up — is timed and counted.
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    support::psql_query(&db.user(AuthUser::Md5), "CREATE TABLE landed (n int)");
    let proxy = ProxyUnderTest::start(cluster);
    let sql = "INSERT INTO landed SELECT /*vanish*/ 7 FROM pg_sleep(1)";
    let killed_at = Instant::now();
    let conn = proxy.route(&db.user(AuthUser::Md5));
    kill_psql_mid_statement(cluster, &db.dbname, &conn, sql, "/*vanish*/");

    let events = proxy.events.wait_for_matching("/*vanish*/", 1, EVENT_WAIT);
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(
        (e.command.as_str(), e.rows, e.sqlstate.as_deref()),
        ("INSERT", 1, None),
        "{e:#?}"
    );
    assert!(e.duration >= Duration::from_millis(900), "{e:#?}");
    cluster.assert_no_backends(&db.dbname);
    assert!(killed_at.elapsed() < Duration::from_secs(5));
    assert_eq!(support::psql_query(&db, "SELECT n FROM landed"), "7");
    let metrics = proxy.proxy().metrics();
    assert_eq!(metrics.client_disconnects_mid_statement.get(), 1);
    assert_eq!(metrics.cancel_requests.get(), 0);
    assert_eq!(metrics.server_connections_active.get(), 0);
    assert_eq!(metrics.client_connections_active.get(), 0);
}

#[test]
fn cancel_on_client_disconnect_stops_the_statement_of_a_killed_client() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    support::psql_query(&db.user(AuthUser::Md5), "CREATE TABLE landed (n int)");
    let proxy = ProxyUnderTest::start_with(cluster, |c| c.cancel_on_client_disconnect = true);
    let started = Instant::now();
    let conn = proxy.route(&db.user(AuthUser::Md5));
    kill_psql_mid_statement(
        cluster,
        &db.dbname,
        &conn,
        "INSERT INTO landed SELECT /*cancelled*/ 7 FROM pg_sleep(60)",
        "/*cancelled*/",
    );
    let events = proxy
        .events
        .wait_for_matching("/*cancelled*/", 1, EVENT_WAIT);
    assert_eq!(events[0].sqlstate.as_deref(), Some("57014"), "{events:#?}");
    cluster.assert_no_backends(&db.dbname);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "not cancelled: {:?}",
        started.elapsed()
    );
    assert_eq!(support::psql_query(&db, "SELECT count(*) FROM landed"), "0");
    let metrics = proxy.proxy().metrics();
    assert_eq!(metrics.client_disconnects_mid_statement.get(), 1);
    assert_eq!(metrics.cancel_requests.get(), 1);
}

#[test]
fn a_tls_client_killed_mid_statement_is_timed_too() {
    // Over TLS the relay writes through a TLS session whose socket is gone; the replies must
    // still be read and dropped the same way.
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = support::tls::ServerCert::throwaway();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.tls_cert = Some(certs.cert_path());
        c.tls_key = Some(certs.key_path());
    });
    let conn = proxy.route(&db.user(AuthUser::Md5)).sslmode("require");
    let sql =
        "SELECT /*tls-vanish*/ pg_sleep(0.05), repeat('x', 100000) FROM generate_series(1, 20)";
    kill_psql_mid_statement(cluster, &db.dbname, &conn, sql, "/*tls-vanish*/");
    let events = proxy
        .events
        .wait_for_matching("/*tls-vanish*/", 1, EVENT_WAIT);
    assert_eq!(
        (events[0].sqlstate.as_deref(), events[0].rows),
        (None, 20),
        "{events:#?}"
    );
    cluster.assert_no_backends(&db.dbname);
    assert_eq!(
        proxy
            .proxy()
            .metrics()
            .client_disconnects_mid_statement
            .get(),
        1
    );
}

// ---------------------------------------------------------------- readiness

#[test]
fn readyz_answers_whether_the_upstream_accepts_connections() {
    let cluster = PgCluster::shared();
    let up = pgshape::app::App::start(support::app_config(cluster)).expect("pgshape starts");
    let r = support::http_request(up.admin_addr().unwrap(), "GET", "/readyz", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["upstream"], cluster.addr().to_string());
    assert!(body["connect_ms"].as_f64().unwrap() >= 0.0);

    // Once shutdown begins, not ready, while the running statement may still finish.
    let db = cluster.fresh_database();
    let conn = db.via(up.proxy_addr());
    let running = std::thread::spawn(move || psql_c(&conn, "", "SELECT /*draining*/ pg_sleep(2)"));
    cluster.wait_until_running(&db.dbname, "/*draining*/");
    let admin = up.admin_addr().unwrap();
    let stopping = std::thread::spawn(move || up.shutdown());
    let deadline = Instant::now() + Duration::from_secs(1);
    let draining = loop {
        let r = support::http_request(admin, "GET", "/readyz", &[]);
        if r.status == 503 {
            break r.body;
        }
        assert!(
            Instant::now() < deadline,
            "still ready during shutdown: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(draining.contains("shutting down"), "{draining}");
    running.join().unwrap().assert_success();
    stopping.join().unwrap();

    // Nothing listens on the port of a listener that was just closed.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = support::app_config(cluster);
    config.upstream = dead.to_string();
    config.connect_timeout_ms = 1_000;
    let down = pgshape::app::App::start(config).expect("pgshape starts with its upstream down");
    let r = support::http_request(down.admin_addr().unwrap(), "GET", "/readyz", &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["ready"], false);
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(&dead.to_string()),
        "names the upstream: {error}"
    );
    // Liveness is another question: the process answers.
    let r = support::http_request(down.admin_addr().unwrap(), "GET", "/healthz", &[]);
    assert_eq!(r.status, 200);
    down.shutdown();
}
