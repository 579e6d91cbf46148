//! Large transfers with TLS on both sides: a 10 MB value out and a multi-megabyte COPY in, so
//! the streamed-frame paths of both pumps run through TLS writers, which buffer until flushed.

use std::fmt::Write as _;
use std::time::Duration;

use super::support::{AuthUser, psql};
use super::*;

#[test]
fn large_results_and_copy_cross_tls_on_both_sides() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = both_sides_tls(&certs);
    let conn = proxy.route(&db.user(AuthUser::Md5)).sslmode("require");

    let big = "SELECT /*big value*/ repeat('x', 10000000)";
    let out = psql_c(&conn, "", big);
    out.assert_success();
    assert_eq!(out.stdout.trim_end().len(), 10_000_000);
    assert!(out.stdout.trim_end().bytes().all(|b| b == b'x'));

    psql_c(&conn, "", "CREATE TABLE bulk (n int, pad text)").assert_success();
    let mut data = String::new();
    for n in 0..200_000 {
        let _ = writeln!(data, "{n}\tpadding-padding-padding");
    }
    let dsn = conn.dsn();
    let out = psql(
        &conn,
        &[
            "-Atq",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &dsn,
            "-c",
            "\\copy bulk from stdin",
        ],
        Some(&data),
    );
    out.assert_success();
    let check = "SELECT /*bulk check*/ count(*) || ' ' || sum(n) FROM bulk";
    assert_eq!(
        psql_c(&conn, "", check).stdout.trim_end(),
        "200000 19999900000"
    );

    let copied = proxy
        .events
        .wait_for_matching("bulk FROM STDIN", 1, Duration::from_secs(10));
    assert_eq!(copied.len(), 1, "{copied:#?}");
    // psql rewrites `\copy` into its own COPY statement.
    assert_eq!(copied[0].sql, "COPY  bulk FROM STDIN");
    assert_eq!(copied[0].command, "COPY");
    assert_eq!(copied[0].rows, 200_000);
    let selected = proxy
        .events
        .wait_for_matching("/*big value*/", 1, Duration::from_secs(10));
    assert_eq!(selected.len(), 1, "{selected:#?}");
    assert_eq!(selected[0].rows, 1);
    cluster.assert_no_backends(&db.dbname);
}
