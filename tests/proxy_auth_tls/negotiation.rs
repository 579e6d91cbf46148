//! The start-up negotiation at byte level (SSLRequest, GSSENCRequest, the SASL mechanism list),
//! certificate name checks towards the server (`verify-ca` against `verify-full`), and
//! cancellation in the TLS configurations, where the CancelRequest takes other paths.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::pgbin::PgBin;
use super::support::{AuthUser, PgCluster, ProxyUnderTest};
use super::*;
use crate::driver::tls_driver_connect;

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const GSSENC_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];

/// A protocol 3.0 StartupMessage.
fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = u32::try_from(body.len() + 4)
        .expect("small packet")
        .to_be_bytes()
        .to_vec();
    packet.extend_from_slice(&body);
    packet
}

fn query_message(sql: &str) -> Vec<u8> {
    let len = u32::try_from(sql.len() + 5).expect("small query");
    let mut out = vec![b'Q'];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(sql.as_bytes());
    out.push(0);
    out
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// One backend message: tag and body.
fn read_message(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).expect("message header");
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).expect("message body");
    (header[0], body)
}

/// The `C` (SQLSTATE) field of an ErrorResponse body.
fn sqlstate(body: &[u8]) -> String {
    body.split(|b| *b == 0)
        .find_map(|field| field.strip_prefix(b"C"))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
}

#[test]
fn gss_and_ssl_requests_are_declined_then_startup_proceeds() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let mut stream = connect(proxy.addr());
    for request in [GSSENC_REQUEST, SSL_REQUEST] {
        stream.write_all(&request).expect("write request");
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).expect("one-byte answer");
        assert_eq!(answer[0], b'N');
    }
    stream
        .write_all(&startup_message("pgshape", &db.dbname))
        .expect("startup");
    assert_eq!(read_message(&mut stream), (b'R', vec![0, 0, 0, 0]));
    while read_message(&mut stream).0 != b'Z' {}
    let sql = "SELECT /*raw after N*/ 1";
    stream.write_all(&query_message(sql)).expect("query");
    while read_message(&mut stream).0 != b'Z' {}
    stream.write_all(b"X\0\0\0\x04").expect("terminate");
    let mut conn = db.clone();
    conn.user = "pgshape".into();
    assert_one_event(&proxy, &conn, sql);
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn bytes_after_ssl_request_are_refused_before_the_handshake() {
    // CVE-2021-23214: bytes sent before the handshake must not be read as if they came
    // through TLS.
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = ProxyUnderTest::start_with(cluster, |c| terminate_tls(c, &certs));
    let mut stream = connect(proxy.addr());
    let mut packet = SSL_REQUEST.to_vec();
    packet.extend_from_slice(&startup_message("pgshape", &db.dbname));
    stream.write_all(&packet).expect("write");
    let (tag, body) = read_message(&mut stream);
    assert_eq!(tag, b'E', "{}", String::from_utf8_lossy(&body));
    assert_eq!(sqlstate(&body), "08P01");
    assert!(String::from_utf8_lossy(&body).contains("SSLRequest"));
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the connection is closed after the error");
    assert_eq!(proxy.proxy().metrics().server_connections_total.get(), 0);
}

#[test]
fn scram_plus_is_stripped_and_abandoned_logins_leave_no_backend() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream_sslmode = Some("require".into());
    });
    let mut stream = connect(proxy.addr());
    stream
        .write_all(&startup_message("scram_user", &db.dbname))
        .expect("startup");
    let (tag, body) = read_message(&mut stream);
    assert_eq!(tag, b'R');
    assert_eq!(body[..4], [0, 0, 0, 10], "AuthenticationSASL");
    // A TLS server offers SCRAM-SHA-256-PLUS first; pgshape must leave only the plain one.
    let mechanisms: Vec<_> = body[4..]
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(mechanisms, ["SCRAM-SHA-256"]);
    // The client gives up here (a password prompt closed): the backend must go too.
    drop(stream);
    cluster.assert_no_backends(&db.dbname);
}

/// A TCP forwarder on `127.0.0.2`, an address the cluster's certificate does not name.
fn forwarder(to: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            for (mut from, mut into) in [
                (client.try_clone(), server.try_clone()),
                (server.try_clone(), client.try_clone()),
            ]
            .into_iter()
            .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
            {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut into);
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    addr
}

#[test]
fn verify_full_checks_the_upstream_name_and_verify_ca_does_not() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let ca = cluster.tls().expect("ssl cluster").ca_path();
    let other_name = forwarder(cluster.addr());
    let start = |mode: &str| {
        let ca = ca.clone();
        let mode = mode.to_owned();
        ProxyUnderTest::start_with(cluster, move |c| {
            c.upstream = other_name.to_string();
            c.upstream_sslmode = Some(mode);
            c.upstream_sslrootcert = Some(ca);
        })
    };

    let proxy = start("verify-full");
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let out = psql_c(&conn, "", "SELECT /*wrong name*/ 1");
    assert!(!out.success());
    let expected = format!("TLS handshake with upstream {other_name} failed");
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert!(out.stderr.contains("not valid for name"), "{}", out.stderr);
    drop(proxy);

    let proxy = start("verify-ca");
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let sql = upstream_ssl_sql("verify-ca other name");
    assert_eq!(query_ok(&proxy, &conn, "", &sql), "scram_user|t");
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn unreachable_upstream_error_reaches_a_tls_client() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        terminate_tls(c, &certs);
        c.upstream = dead.to_string();
    });
    let conn = proxy.route(&db.user(AuthUser::Md5)).sslmode("require");
    let out = psql_c(&conn, "", "SELECT 1");
    assert!(!out.success());
    let expected = format!("FATAL:  pgshape: could not connect to upstream {dead}");
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
}

// ---------------------------------------------------------------- cancel with TLS

/// psql's Ctrl-C: libpq 15 sends the CancelRequest on a new, plain connection even when the
/// session itself is TLS; pgshape forwards it on a plain connection to the TLS server.
#[test]
fn psql_ctrl_c_cancels_with_tls_on_both_sides() {
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = both_sides_tls(&certs);
    let conn = proxy.route(&db.user(AuthUser::Md5)).sslmode("require");
    let sql = "SELECT /*tls ctrl-c*/ pg_sleep(30)";
    let mut child = Command::new(PgBin::get().tool("psql"))
        .env("PGPASSFILE", "/nonexistent/pgshape-tests/pgpass")
        .env_remove("PGSERVICE")
        .args(["-X", "-d", &conn.dsn(), "-c", sql])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start psql");
    cluster.wait_until_running(&db.dbname, "/*tls ctrl-c*/");
    let interrupted = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    while child.try_wait().expect("wait").is_none() {
        if interrupted.elapsed() > Duration::from_secs(2) {
            let _ = child.kill();
            panic!("psql still running 2 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = interrupted.elapsed();
    eprintln!("timing psql_ctrl_c_cancels_with_tls_on_both_sides: {took:?}");
    let output = child.wait_with_output().expect("psql output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    assert_eq!(proxy.proxy().metrics().cancel_requests.get(), 1);
    cluster.assert_no_backends(&db.dbname);
}

/// tokio-postgres with TLS sends its CancelRequest after an SSLRequest, inside TLS.
#[test]
fn driver_cancel_inside_tls() {
    use tokio_postgres::config::ChannelBinding;
    let cluster = PgCluster::shared_ssl();
    let db = cluster.fresh_database();
    let certs = ServerCert::throwaway();
    let proxy = both_sides_tls(&certs);
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let ca = certs.ca_path();
    let dbname = db.dbname.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let client = tls_driver_connect(&conn, &ca, ChannelBinding::Disable)
            .await
            .expect("connect over TLS");
        let token = client.cancel_token();
        let query = tokio::spawn(async move {
            client
                .simple_query("SELECT /*tls driver cancel*/ pg_sleep(30)")
                .await
                .map(|_| ())
        });
        let admin = cluster.conn(&dbname, AuthUser::Trust);
        tokio::task::spawn_blocking(move || {
            cluster.wait_until_running(&admin.dbname, "/*tls driver cancel*/")
        })
        .await
        .expect("join");
        let started = Instant::now();
        token
            .cancel_query(tls_client::RustlsConnect::new(&ca))
            .await
            .expect("send cancel over TLS");
        let error = query
            .await
            .expect("join")
            .expect_err("the statement was cancelled");
        assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
        assert!(started.elapsed() < Duration::from_secs(1));
    });
    assert_eq!(proxy.proxy().metrics().cancel_requests.get(), 1);
    cluster.assert_no_backends(&db.dbname);
}
