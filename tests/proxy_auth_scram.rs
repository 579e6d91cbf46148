//! `auth_mode = scram_proxy` against a real PostgreSQL with TLS on both legs: pgshape is the
//! SCRAM server for the client (channel binding to its own certificate) and logs in upstream
//! with the keys the client's proof revealed, from verifiers in an `auth_file` or found by an
//! `auth_query`. libpq's default `channel_binding=prefer` and `require`, psycopg 3 and asyncpg;
//! a wrong password, an unknown user, a user without a SCRAM verifier.

mod support;

use std::process::Command;
use std::time::Duration;

use pgshape::proxy::auth::AuthMode;
use support::tls::ServerCert;
use support::{AuthUser, ConnParams, PgCluster, ProxyUnderTest, psql_c, psql_query, python};

/// Who the server thinks it is talking to, and whether over TLS.
const WHO: &str = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

/// `"user" "verifier"` lines for the given roles, read from the server's pg_authid (exactly
/// what an operator exports for pgbouncer's userlist.txt).
fn auth_file(cluster: &PgCluster, dir: &std::path::Path, users: &[AuthUser]) -> std::path::PathBuf {
    let admin = cluster.conn("postgres", AuthUser::Trust);
    let mut text = String::from("; exported from pg_authid\n");
    for user in users {
        let secret = psql_query(
            &admin,
            &format!(
                "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
                user.name()
            ),
        );
        text.push_str(&format!("\"{}\" \"{secret}\"\n", user.name()));
    }
    let path = dir.join("userlist.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn scram_proxy(
    certs: &ServerCert,
    adjust: impl FnOnce(&mut pgshape::config::Config),
) -> ProxyUnderTest {
    ProxyUnderTest::start_with(PgCluster::shared_ssl(), |c| {
        c.tls_cert = Some(certs.cert_path());
        c.tls_key = Some(certs.key_path());
        c.upstream_sslmode = Some("require".into());
        c.auth.mode = AuthMode::ScramProxy;
        adjust(c);
    })
}

/// A fresh database on the TLS cluster and a scram_proxy pgshape in front of it, with an
/// auth_file exported for `users`; the temp dir lives as long as the returned guard.
fn with_auth_file(
    users: &[AuthUser],
    adjust: impl FnOnce(&mut pgshape::config::Config),
) -> (ConnParams, ServerCert, ProxyUnderTest, tempfile::TempDir) {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let dir = tempfile::tempdir().unwrap();
    let file = auth_file(cluster, dir.path(), users);
    let proxy = scram_proxy(&certs, |c| {
        c.auth.file = Some(file);
        adjust(c);
    });
    (db, certs, proxy, dir)
}

fn client(
    proxy: &ProxyUnderTest,
    db: &ConnParams,
    certs: &ServerCert,
    user: AuthUser,
) -> ConnParams {
    proxy
        .route(&db.user(user))
        .sslmode("verify-full")
        .sslrootcert(&certs.ca_path())
}

/// The login failed with `needle` in what psql printed.
#[track_caller]
fn refused_with(out: &support::CmdOutput, needle: &str) {
    assert!(!out.success(), "logged in: {}", out.stdout);
    assert!(out.stderr.contains(needle), "{}", out.stderr);
}

#[test]
fn channel_binding_works_end_to_end_with_tls_on_both_legs() {
    let cluster = PgCluster::shared_ssl();
    let (db, certs, proxy, _dir) = with_auth_file(&[AuthUser::Scram, AuthUser::Md5], |_| {});
    let conn = client(&proxy, &db, &certs, AuthUser::Scram);

    // libpq's default (prefer) takes -PLUS when offered; require fails unless the channel is
    // really bound — to pgshape's certificate, which is the one the client sees.
    for setting in ["", "channel_binding=prefer", "channel_binding=require"] {
        let out = psql_c(&conn, setting, WHO);
        out.assert_success();
        assert_eq!(
            out.stdout.trim(),
            "scram_user|t",
            "{setting}: upstream over TLS"
        );
    }

    // A wrong password: PostgreSQL's own message, and no server connection was made.
    let out = psql_c(&conn.password(Some("not the password")), "", "SELECT 1");
    refused_with(
        &out,
        "password authentication failed for user \"scram_user\"",
    );
    // An unknown role fails exactly like a wrong password (no user enumeration).
    let mut ghost = conn.clone();
    ghost.user = "ghost".into();
    let out = psql_c(&ghost, "", "SELECT 1");
    refused_with(&out, "password authentication failed for user \"ghost\"");
    // A role whose secret is an md5 hash: a clear error saying what to do.
    let md5 = client(&proxy, &db, &certs, AuthUser::Md5);
    let out = psql_c(&md5, "", "SELECT 1");
    refused_with(
        &out,
        "role \"md5_user\" has no SCRAM-SHA-256 password verifier (an md5 hash)",
    );
    refused_with(&out, "password_encryption");
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn python_drivers_log_in_through_scram_proxy() {
    let cluster = PgCluster::shared_ssl();
    let (db, certs, proxy, _dir) = with_auth_file(&[AuthUser::Scram], |_| {});
    let conn = client(&proxy, &db, &certs, AuthUser::Scram);

    let run = |code: &str, arg: String| {
        let out = Command::new(python())
            .args(["-c", code, &arg])
            .output()
            .expect("run python");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{code}\n{stderr}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let psycopg = "import sys, psycopg\n\
                   with psycopg.connect(sys.argv[1] + ' channel_binding=require') as c:\n\
                   \x20   print(c.execute('SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').fetchone())";
    assert_eq!(run(psycopg, conn.dsn()), "('scram_user', True)");

    let ca = certs.ca_path().display().to_string();
    let asyncpg = "import sys, ssl, asyncio, asyncpg\n\
                   async def main():\n\
                   \x20   ctx = ssl.create_default_context(cafile=sys.argv[2])\n\
                   \x20   c = await asyncpg.connect(sys.argv[1], ssl=ctx)\n\
                   \x20   print(await c.fetchval('SELECT current_user'))\n\
                   \x20   await c.close()\n\
                   asyncio.run(main())";
    let url = conn
        .sslmode("disable")
        .url()
        .replace("?sslmode=disable", "");
    let out = Command::new(python())
        .args(["-c", asyncpg, &url, &ca])
        .output()
        .expect("run python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "asyncpg: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "scram_user");
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn auth_query_finds_verifiers_on_the_server() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    // With a connect_timeout: tokio-postgres then sets a timer of its own, which a worker's
    // runtime (no time driver) cannot drive; the lookup runs where it can.
    let auth_dsn = cluster.conn("postgres", AuthUser::Trust).dsn() + " connect_timeout=5";
    let proxy = scram_proxy(&certs, |c| {
        c.auth.dsn = Some(pgshape::config::Secret::new(auth_dsn));
    });
    let conn = client(&proxy, &db, &certs, AuthUser::Scram);
    let out = psql_c(&conn, "channel_binding=require", WHO);
    out.assert_success();
    assert_eq!(out.stdout.trim(), "scram_user|t");
    let out = psql_c(&conn.password(Some("wrong")), "", "SELECT 1");
    refused_with(
        &out,
        "password authentication failed for user \"scram_user\"",
    );
    // A role with no password at all (the trust superuser).
    let trust = client(&proxy, &db, &certs, AuthUser::Trust);
    let out = psql_c(&trust, "", "SELECT 1");
    refused_with(&out, "has no SCRAM-SHA-256 password verifier");
    // Many logins in a burst are served from the cache: all succeed.
    for _ in 0..5 {
        psql_c(&conn, "", "SELECT 1").assert_success();
    }
    std::thread::sleep(Duration::from_millis(100));
    cluster.assert_no_backends(&db.dbname);
}

/// What the client proved to pgshape can still fail upstream: a server that asks for md5, or
/// a verifier that is no longer the server's (the password was set again: a new salt).
#[test]
fn upstream_login_failures_are_named() {
    use pgshape::protocol::scram::Verifier;
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("userlist.txt");
    let md5_password = AuthUser::Md5.password().unwrap();
    let scram_password = AuthUser::Scram.password().unwrap();
    std::fs::write(
        &path,
        format!(
            "\"md5_user\" \"{}\"\n\"scram_user\" \"{}\"\n",
            Verifier::from_password(md5_password, b"any salt", 4096).to_text(),
            Verifier::from_password(scram_password, b"an old salt", 4096).to_text(),
        ),
    )
    .unwrap();
    let proxy = scram_proxy(&certs, |c| c.auth.file = Some(path));

    let out = psql_c(&client(&proxy, &db, &certs, AuthUser::Md5), "", "SELECT 1");
    refused_with(
        &out,
        "the server asks for md5 authentication; scram_proxy logs in with SCRAM-SHA-256",
    );
    let out = psql_c(
        &client(&proxy, &db, &certs, AuthUser::Scram),
        "",
        "SELECT 1",
    );
    refused_with(&out, "salt or iteration count differs");
    cluster.assert_no_backends(&db.dbname);
}

/// With scram_proxy every client proves itself to pgshape, so kept server connections can
/// serve the next client of the same role; a wrong password is still refused.
#[test]
fn scram_proxy_reuses_server_connections() {
    let (db, certs, proxy, _dir) = with_auth_file(&[AuthUser::Scram], |c| {
        c.reuse_server_connections = true;
        c.workers = 1;
    });
    let conn = client(&proxy, &db, &certs, AuthUser::Scram);
    let pid = |conn: &ConnParams| {
        let out = psql_c(conn, "channel_binding=require", "SELECT pg_backend_pid()");
        out.assert_success();
        out.stdout.trim().to_owned()
    };
    let first = pid(&conn);
    let out = psql_c(&conn.password(Some("wrong")), "", "SELECT 1");
    refused_with(
        &out,
        "password authentication failed for user \"scram_user\"",
    );
    assert_eq!(
        pid(&conn),
        first,
        "the kept connection served the next login"
    );
    assert_eq!(proxy.proxy().metrics().server_connections_reused.get(), 1);
}

/// Channel binding follows a certificate rotated without a restart: the `-PLUS` data is the
/// hash of the certificate served now, not of the one pgshape started with.
#[test]
fn channel_binding_follows_a_rotated_certificate() {
    let (db, certs, proxy, _dir) = with_auth_file(&[AuthUser::Scram], |_| {});
    let bound = |conn: &ConnParams| psql_c(conn, "channel_binding=require", WHO);
    bound(&client(&proxy, &db, &certs, AuthUser::Scram)).assert_success();

    let rotated = ServerCert::throwaway();
    std::fs::copy(rotated.cert_path(), certs.cert_path()).unwrap();
    std::fs::copy(rotated.key_path(), certs.key_path()).unwrap();
    assert!(proxy.proxy().reload_tls().expect("the new pair loads"));
    let out = bound(&client(&proxy, &db, &certs, AuthUser::Scram).sslrootcert(&rotated.ca_path()));
    out.assert_success();
    assert_eq!(out.stdout.trim(), "scram_user|t");
}
