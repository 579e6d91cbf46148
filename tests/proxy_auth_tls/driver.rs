//! A real driver (tokio-postgres over rustls) against pgshape's client-side TLS: it shows the
//! SQLSTATEs psql does not print for start-up errors, and offers channel binding like libpq.

use std::time::Duration;

use super::support::{AuthUser, ConnParams, PgCluster, ProxyUnderTest};
use super::*;

/// tokio-postgres over TLS to the proxy: it offers channel binding (sends `y`) unless told
/// `channel_binding=disable`, and shows the SQLSTATE psql does not print for start-up errors.
pub(crate) async fn tls_driver_connect(
    conn: &ConnParams,
    ca: &std::path::Path,
    channel_binding: tokio_postgres::config::ChannelBinding,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    tls_driver_session(conn, ca, channel_binding)
        .await
        .map(|(client, _)| client)
}

type ConnectionTask = tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>;

/// As [`tls_driver_connect`], also returning the connection task, which ends with the error
/// that closed the session.
async fn tls_driver_session(
    conn: &ConnParams,
    ca: &std::path::Path,
    channel_binding: tokio_postgres::config::ChannelBinding,
) -> Result<(tokio_postgres::Client, ConnectionTask), tokio_postgres::Error> {
    let mut config = conn.tokio_config();
    config
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .channel_binding(channel_binding);
    let (client, connection) = config.connect(tls_client::RustlsConnect::new(ca)).await?;
    Ok((client, tokio::spawn(connection)))
}

#[test]
fn driver_over_tls_on_both_sides_gets_28000_then_works_without_channel_binding() {
    use tokio_postgres::config::ChannelBinding;
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = both_sides_tls(&certs);
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let ca = certs.ca_path();
    block_on(async {
        let error = tls_driver_connect(&conn, &ca, ChannelBinding::Prefer)
            .await
            .expect_err("`y` over a TLS upstream is refused");
        assert_eq!(
            error.code(),
            Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
            "{error:?}"
        );
        let db_error = error.as_db_error().expect("a server-style error");
        assert_eq!(db_error.severity(), "FATAL");
        assert!(
            db_error
                .hint()
                .is_some_and(|h| h.contains("channel_binding=disable")),
            "{db_error:?}"
        );

        let client = tls_driver_connect(&conn, &ca, ChannelBinding::Disable)
            .await
            .expect("channel_binding=disable logs in");
        let sql = upstream_ssl_sql("driver cb disable");
        let row = client.query_one(&sql, &[]).await.expect("query");
        assert_eq!(row.get::<_, String>(0), "scram_user");
        assert!(row.get::<_, bool>(1), "the upstream link is TLS");
    });
    assert_one_event(&proxy, &conn, &upstream_ssl_sql("driver cb disable"));
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn driver_over_client_tls_with_a_plain_upstream_binds_nothing_and_works() {
    use tokio_postgres::config::ChannelBinding;
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = ProxyUnderTest::start_with(cluster, |c| terminate_tls(c, &certs));
    let sql = upstream_ssl_sql("driver client tls");
    for user in [AuthUser::Scram, AuthUser::Md5] {
        let conn = proxy.route(&db.user(user));
        block_on(async {
            let client = tls_driver_connect(&conn, &certs.ca_path(), ChannelBinding::Prefer)
                .await
                .expect("log in over TLS");
            let row = client.query_one(&sql, &[]).await.expect("query");
            assert_eq!(row.get::<_, String>(0), user.name());
            assert!(!row.get::<_, bool>(1), "the upstream link is plain");
        });
    }
    // Same SQL twice: one event per execution, none for the extended protocol's Parse alone.
    proxy.events.wait_for_matching(&sql, 2, EVENT_WAIT);
    let events = proxy.events.settle(Duration::from_millis(100));
    let users: Vec<_> = events
        .iter()
        .filter(|e| e.sql == sql)
        .map(|e| e.user.as_str())
        .collect();
    assert_eq!(users, ["scram_user", "md5_user"], "{events:#?}");
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn limit_refusal_and_shutdown_notice_reach_tls_clients() {
    use tokio_postgres::config::ChannelBinding;
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let mut proxy = ProxyUnderTest::start_with(cluster, |c| {
        terminate_tls(c, &certs);
        c.max_client_connections = 1;
        c.shutdown_grace_ms = 10_000;
    });
    let conn = proxy.route(&db.user(AuthUser::Md5));
    let ca = certs.ca_path();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (client, task) = runtime.block_on(async {
        let (client, task) = tls_driver_session(&conn, &ca, ChannelBinding::Prefer)
            .await
            .expect("first client");
        let error = tls_driver_connect(&conn, &ca, ChannelBinding::Prefer)
            .await
            .expect_err("over the limit");
        assert_eq!(
            error.code(),
            Some(&SqlState::TOO_MANY_CONNECTIONS),
            "{error:?}"
        );
        client
            .simple_query("SELECT /*tls idle*/ 1")
            .await
            .expect("the admitted client works");
        (client, task)
    });

    let started = std::time::Instant::now();
    proxy.shutdown();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "idle TLS session held shutdown for {took:?}"
    );
    runtime.block_on(async {
        let error = task.await.expect("join").expect_err("closed by the proxy");
        assert_eq!(error.code(), Some(&SqlState::ADMIN_SHUTDOWN), "{error:?}");
        assert!(client.is_closed());
    });
    cluster.assert_no_backends(&db.dbname);
}
