//! TLS settings: which sslmode wins, where verification roots come from, protocol versions,
//! and refusing a half or broken TLS configuration at start rather than per connection.

use super::support::{AuthUser, PgCluster, ProxyUnderTest, psql};
use super::*;

#[test]
fn url_sslmode_wins_over_upstream_sslmode() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream = format!("postgres://127.0.0.1:{}/?sslmode=disable", cluster.port());
        c.upstream_sslmode = Some("require".into());
    });
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let sql = upstream_ssl_sql("url disable wins");
    assert_eq!(query_ok(&proxy, &conn, "", &sql), "scram_user|f");
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn verify_full_without_a_root_certificate_uses_the_system_roots() {
    // The test CA is in no system store, so the server's certificate must be refused.
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream_sslmode = Some("verify-full".into());
    });
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let out = psql_c(&conn, "", "SELECT 1");
    assert!(!out.success());
    let expected = format!("TLS handshake with upstream {} failed", cluster.addr());
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert!(out.stderr.contains("UnknownIssuer"), "{}", out.stderr);
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn client_tls_1_2_is_served_too() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = ProxyUnderTest::start_with(cluster, |c| terminate_tls(c, &certs));
    let conn = proxy.route(&db.user(AuthUser::Md5)).sslmode("require");
    let dsn = format!("{} ssl_max_protocol_version=TLSv1.2", conn.dsn());
    let out = psql(&conn, &["-d", &dsn, "-c", "\\conninfo"], None);
    out.assert_success();
    assert!(
        out.stdout.contains("SSL connection (protocol: TLSv1.2"),
        "{}",
        out.stdout
    );
    let sql = upstream_ssl_sql("tls 1.2");
    assert_eq!(
        query_ok(&proxy, &conn, "ssl_max_protocol_version=TLSv1.2", &sql),
        "md5_user|f"
    );
}

type Adjust<'a> = Box<dyn Fn(&mut Config) + 'a>;

#[test]
fn misconfigured_tls_is_refused_at_start_naming_the_problem() {
    let certs = ServerCert::throwaway();
    let missing = certs.ca_path().with_file_name("missing.pem");
    let base = Config {
        listen: "127.0.0.1:0".into(),
        admin: None,
        workers: 1,
        ..Config::default()
    };
    // What is wrong, how to make it so, what the error must mention.
    let cases: [(&str, Adjust<'_>, String); 4] = [
        (
            "cert without key",
            Box::new(|c| c.tls_cert = Some(certs.cert_path())),
            "tls_cert and tls_key must be given together".into(),
        ),
        (
            "missing certificate file",
            Box::new(|c| {
                c.tls_cert = Some(missing.clone());
                c.tls_key = Some(certs.key_path());
            }),
            missing.display().to_string(),
        ),
        (
            "unknown sslmode",
            Box::new(|c| c.upstream_sslmode = Some("sometimes".into())),
            "sometimes".into(),
        ),
        (
            "missing root certificate",
            Box::new(|c| {
                c.upstream_sslmode = Some("verify-full".into());
                c.upstream_sslrootcert = Some(missing.clone());
            }),
            missing.display().to_string(),
        ),
    ];
    for (what, adjust, expected) in cases {
        let mut config = base.clone();
        adjust(&mut config);
        match pgshape::proxy::Proxy::start(config, std::sync::Arc::from(Vec::new())) {
            Ok(proxy) => {
                proxy.shutdown();
                panic!("{what}: the proxy started");
            }
            Err(error) => assert!(
                error.to_string().contains(&expected),
                "{what}: {error} does not mention {expected}"
            ),
        }
    }
}
