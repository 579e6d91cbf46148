//! The authentication × TLS matrix through pgshape, with real `psql` against real PostgreSQL.
//!
//! pgshape never sees a password: trust, cleartext, md5 and SCRAM-SHA-256 pass between client
//! and server untouched, so each must log in through the proxy and a wrong password must reach
//! the client as the server's own error. TLS is terminated on each side separately (client ↔
//! pgshape with `tls_cert`/`tls_key`, pgshape ↔ server with `upstream_sslmode`), which is why
//! SCRAM channel binding cannot pass through: the `-PLUS` mechanisms are stripped, and a client
//! that then sends the `y` gs2 flag over a TLS upstream is told to use `channel_binding=disable`.
//! Every cell of the README's matrix has a test here.

#[path = "proxy_auth_tls/bulk.rs"]
mod bulk;
#[path = "proxy_auth_tls/driver.rs"]
mod driver;
#[path = "proxy_auth_tls/negotiation.rs"]
mod negotiation;
#[path = "proxy_auth_tls/settings.rs"]
mod settings;
mod support;
#[path = "proxy_auth_tls/tls_client.rs"]
mod tls_client;

use std::time::Duration;

use pgshape::config::Config;
use support::tls::ServerCert;
use support::{AuthUser, ConnParams, PgCluster, ProxyUnderTest, psql, psql_c};
use tokio_postgres::error::SqlState;

const EVENT_WAIT: Duration = Duration::from_secs(10);
const PASSWORD_USERS: [AuthUser; 3] = [AuthUser::Md5, AuthUser::Scram, AuthUser::Cleartext];
/// What the server's `pg_stat_ssl` says about the proxy's own upstream connection.
/// psql `-A` prints it as `user|t`.
const UPSTREAM_SSL: &str = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

fn terminate_tls(config: &mut Config, certs: &ServerCert) {
    config.tls_cert = Some(certs.cert_path());
    config.tls_key = Some(certs.key_path());
}

/// Runs `sql` (which must be unique to the test) through the proxy, asserts it succeeded and
/// produced exactly one successful event with exactly this SQL, and returns psql's output.
#[track_caller]
fn query_ok(proxy: &ProxyUnderTest, conn: &ConnParams, extra: &str, sql: &str) -> String {
    let out = psql_c(conn, extra, sql);
    out.assert_success();
    assert_one_event(proxy, conn, sql);
    out.stdout.trim_end().to_owned()
}

#[track_caller]
fn assert_one_event(proxy: &ProxyUnderTest, conn: &ConnParams, sql: &str) {
    proxy.events.wait_for_matching(sql, 1, EVENT_WAIT);
    // A duplicate would arrive right behind the first one.
    let events: Vec<_> = proxy
        .events
        .settle(Duration::from_millis(100))
        .into_iter()
        .filter(|e| e.sql == sql)
        .collect();
    assert_eq!(
        events.len(),
        1,
        "exactly one event for {sql:?}: {events:#?}"
    );
    let event = &events[0];
    assert_eq!(event.sqlstate, None, "{event:#?}");
    assert_eq!(event.command, "SELECT", "{event:#?}");
    assert_eq!(event.rows, 1, "{event:#?}");
    assert_eq!(event.user, conn.user, "{event:#?}");
    assert_eq!(event.database, conn.dbname, "{event:#?}");
}

/// `UPSTREAM_SSL` with a marker that makes the statement unique to one call site.
fn upstream_ssl_sql(marker: &str) -> String {
    UPSTREAM_SSL.replacen("SELECT ", &format!("SELECT /*{marker}*/ "), 1)
}

/// The error a plain tokio-postgres client gets when it connects through `proxy`.
async fn connect_error(conn: &ConnParams) -> tokio_postgres::Error {
    match conn.tokio_config().connect(tokio_postgres::NoTls).await {
        Ok(_) => panic!("connecting to {}:{} succeeded", conn.host, conn.port),
        Err(e) => e,
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(future)
}

// ---------------------------------------------------------------- authentication, plain TCP

#[test]
fn every_auth_method_logs_in_through_the_proxy() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    for user in AuthUser::ALL {
        let conn = proxy.route(&db.user(user));
        let sql = format!("SELECT /*plain {}*/ current_user", user.name());
        assert_eq!(query_ok(&proxy, &conn, "", &sql), user.name());
    }
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn wrong_password_gives_the_servers_own_error() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    for user in PASSWORD_USERS {
        let conn = proxy.route(&db.user(user).password(Some("wrong")));
        let out = psql_c(&conn, "", "SELECT 1");
        assert!(
            !out.success(),
            "{} logged in with a wrong password",
            user.name()
        );
        let expected = format!(
            "password authentication failed for user \"{}\"",
            user.name()
        );
        assert!(out.stderr.contains(&expected), "{}", out.stderr);
        assert!(!out.stderr.contains("pgshape"), "{}", out.stderr);
    }
    assert!(proxy.events.is_empty(), "{:#?}", proxy.events.events());
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn wrong_password_carries_sqlstate_28p01() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    for user in [AuthUser::Md5, AuthUser::Scram] {
        let conn = proxy.route(&db.user(user).password(Some("wrong")));
        let error = block_on(connect_error(&conn));
        assert_eq!(
            error.code(),
            Some(&SqlState::INVALID_PASSWORD),
            "{}: {error}",
            user.name()
        );
    }
    cluster.assert_no_backends(&db.dbname);
}

// ---------------------------------------------------------------- client ↔ pgshape TLS

#[test]
fn client_tls_is_terminated_and_the_upstream_stays_plain() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = ProxyUnderTest::start_with(cluster, |c| terminate_tls(c, &certs));
    for user in AuthUser::ALL {
        // `require` fails unless the proxy really did TLS; pg_stat_ssl shows the upstream link.
        let conn = proxy.route(&db.user(user)).sslmode("require");
        let sql = upstream_ssl_sql(&format!("client tls {}", user.name()));
        assert_eq!(
            query_ok(&proxy, &conn, "", &sql),
            format!("{}|f", user.name())
        );
    }
    let conn = proxy.route(&db.user(AuthUser::Scram)).sslmode("require");
    let out = psql(&conn, &["-c", "\\conninfo"], None);
    out.assert_success();
    assert!(
        out.stdout.contains("SSL connection (protocol: TLSv1."),
        "{}",
        out.stdout
    );
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn client_tls_verify_full_against_the_proxy_certificate() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = ProxyUnderTest::start_with(cluster, |c| terminate_tls(c, &certs));
    let conn = proxy
        .route(&db.user(AuthUser::Scram))
        .sslmode("verify-full")
        .sslrootcert(&certs.ca_path());
    let sql = upstream_ssl_sql("verify-full to proxy");
    assert_eq!(query_ok(&proxy, &conn, "", &sql), "scram_user|f");

    // A CA that did not sign the proxy's certificate must be refused by libpq.
    let other = ServerCert::throwaway();
    let out = psql_c(
        &conn.sslrootcert(&other.ca_path()),
        "",
        "SELECT /*wrong ca*/ 1",
    );
    assert!(!out.success());
    // OpenSSL reports a chain from a same-named but different CA as a signature failure
    // ("EVP lib") rather than "certificate verify failed"; either way it is an SSL error.
    assert!(out.stderr.contains("SSL error"), "{}", out.stderr);
    assert!(proxy.events.matching("/*wrong ca*/").is_empty());
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn without_tls_the_proxy_declines_ssl_requests() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    // `prefer` gets 'N' to its SSLRequest and carries on in plain text.
    let conn = proxy.route(&db.user(AuthUser::Scram)).sslmode("prefer");
    let sql = upstream_ssl_sql("prefer to plain proxy");
    assert_eq!(query_ok(&proxy, &conn, "", &sql), "scram_user|f");
    let out = psql(&conn, &["-c", "\\conninfo"], None);
    out.assert_success();
    assert!(!out.stdout.contains("SSL connection"), "{}", out.stdout);

    // `require` stops at the 'N' with libpq's own message, before any password is sent.
    let out = psql_c(&conn.sslmode("require"), "", "SELECT /*require*/ 1");
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("server does not support SSL, but SSL was required"),
        "{}",
        out.stderr
    );
    assert!(proxy.events.matching("/*require*/").is_empty());
    cluster.assert_no_backends(&db.dbname);
}

// ---------------------------------------------------------------- pgshape ↔ server TLS

#[test]
fn upstream_tls_require_encrypts_the_server_link() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream_sslmode = Some("require".into());
    });
    for user in AuthUser::ALL {
        // A plain client: libpq sends the `n` gs2 flag, which the TLS server accepts.
        let conn = proxy.route(&db.user(user));
        let sql = upstream_ssl_sql(&format!("upstream tls {}", user.name()));
        assert_eq!(
            query_ok(&proxy, &conn, "", &sql),
            format!("{}|t", user.name())
        );
    }
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn upstream_tls_verify_full_with_the_cluster_ca() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let ca = cluster.tls().expect("ssl cluster").ca_path();
    // Separate keys, host given as the IP literal the certificate names.
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream_sslmode = Some("verify-full".into());
        c.upstream_sslrootcert = Some(ca.clone());
    });
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let sql = upstream_ssl_sql("verify-full keys");
    assert_eq!(query_ok(&proxy, &conn, "", &sql), "scram_user|t");
    drop(proxy);

    // A URL, with the host name the certificate names.
    let url = format!(
        "postgres://localhost:{}/?sslmode=verify-full&sslrootcert={}",
        cluster.port(),
        ca.display()
    );
    let proxy = ProxyUnderTest::start_with(cluster, |c| c.upstream = url);
    let conn = proxy.route(&db.user(AuthUser::Md5));
    let sql = upstream_ssl_sql("verify-full url");
    assert_eq!(query_ok(&proxy, &conn, "", &sql), "md5_user|t");
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn upstream_tls_verify_full_with_a_wrong_ca_fails_naming_the_upstream() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let other = ServerCert::throwaway();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream_sslmode = Some("verify-full".into());
        c.upstream_sslrootcert = Some(other.ca_path());
    });
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let out = psql_c(&conn, "", "SELECT /*wrong upstream ca*/ 1");
    assert!(!out.success());
    let expected = format!("TLS handshake with upstream {} failed", cluster.addr());
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert!(out.stderr.contains("FATAL"), "{}", out.stderr);
    let error = block_on(connect_error(&conn));
    assert_eq!(error.code(), Some(&SqlState::CONNECTION_FAILURE), "{error}");
    assert!(proxy.events.is_empty());
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn upstream_tls_required_from_a_plain_server_fails_naming_the_upstream() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream_sslmode = Some("require".into());
    });
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let out = psql_c(&conn, "", "SELECT /*require plain server*/ 1");
    assert!(!out.success());
    let expected = format!(
        "upstream {} does not support SSL, but sslmode=require requires it",
        cluster.addr()
    );
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    let error = block_on(connect_error(&conn));
    assert_eq!(error.code(), Some(&SqlState::CONNECTION_FAILURE), "{error}");
    assert!(proxy.events.is_empty());
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn upstream_prefer_uses_tls_when_the_server_offers_it() {
    for (cluster, expected) in [(PgCluster::shared(), "f"), (PgCluster::shared_ssl(), "t")] {
        let db = cluster.fresh_database();
        let proxy = ProxyUnderTest::start_with(cluster, |c| {
            c.upstream_sslmode = Some("prefer".into());
        });
        let conn = proxy.route(&db.user(AuthUser::Scram));
        let sql = upstream_ssl_sql("upstream prefer");
        assert_eq!(
            query_ok(&proxy, &conn, "", &sql),
            format!("scram_user|{expected}")
        );
        cluster.assert_no_backends(&db.dbname);
    }
}

// ---------------------------------------------------------------- TLS on both sides

fn both_sides_tls(certs: &ServerCert) -> ProxyUnderTest {
    ProxyUnderTest::start_with(PgCluster::shared_ssl(), |c| {
        terminate_tls(c, certs);
        c.upstream_sslmode = Some("require".into());
    })
}

#[test]
fn tls_on_both_sides_works_for_non_scram_methods_and_passes_password_errors() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = both_sides_tls(&certs);
    for user in [AuthUser::Trust, AuthUser::Md5, AuthUser::Cleartext] {
        let conn = proxy.route(&db.user(user)).sslmode("require");
        let sql = upstream_ssl_sql(&format!("both tls {}", user.name()));
        assert_eq!(
            query_ok(&proxy, &conn, "", &sql),
            format!("{}|t", user.name())
        );
    }
    for user in PASSWORD_USERS {
        let conn = proxy
            .route(&db.user(user).password(Some("wrong")))
            .sslmode("require");
        let out = psql_c(&conn, "channel_binding=disable", "SELECT 1");
        let expected = format!(
            "password authentication failed for user \"{}\"",
            user.name()
        );
        assert!(out.stderr.contains(&expected), "{}", out.stderr);
    }
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn scram_over_tls_on_both_sides_asks_for_channel_binding_disable() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = both_sides_tls(&certs);
    let conn = proxy.route(&db.user(AuthUser::Scram)).sslmode("require");

    // libpq's default channel_binding=prefer: no -PLUS on offer, so it sends `y`, which the TLS
    // server would reject as a downgrade; pgshape stops it with an actionable message.
    let out = psql_c(&conn, "", "SELECT /*cb prefer*/ 1");
    assert!(!out.success());
    assert!(out.stderr.contains("FATAL"), "{}", out.stderr);
    assert!(
        out.stderr.contains("channel_binding=disable"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("password authentication failed"),
        "{}",
        out.stderr
    );

    // channel_binding=require: libpq itself refuses, as no -PLUS mechanism is offered.
    let out = psql_c(&conn, "channel_binding=require", "SELECT /*cb require*/ 1");
    assert!(!out.success());
    assert!(
        out.stderr.contains("channel binding is required"),
        "{}",
        out.stderr
    );

    let sql = upstream_ssl_sql("cb disable");
    assert_eq!(
        query_ok(&proxy, &conn, "channel_binding=disable", &sql),
        "scram_user|t"
    );
    assert!(proxy.events.matching("/*cb pre").is_empty());
    assert!(proxy.events.matching("/*cb req").is_empty());
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn scram_with_client_tls_and_plain_upstream_needs_no_setting() {
    // The `y` flag is harmless when the server link is plain: the server has no channel to bind.
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = ProxyUnderTest::start_with(cluster, |c| terminate_tls(c, &certs));
    let conn = proxy
        .route(&db.user(AuthUser::Scram))
        .sslmode("verify-full")
        .sslrootcert(&certs.ca_path());
    let sql = upstream_ssl_sql("scram client tls");
    assert_eq!(
        query_ok(&proxy, &conn, "channel_binding=prefer", &sql),
        "scram_user|f"
    );
    cluster.assert_no_backends(&db.dbname);
}
