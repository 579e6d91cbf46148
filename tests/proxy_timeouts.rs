//! Slowloris, idle and half-open clients, and client TLS, against the `pgshape serve` binary:
//! `client_login_timeout` closes a client that never finishes its start-up,
//! `idle_client_timeout` closes one idle outside a transaction with FATAL 57P05 (never one in a
//! transaction or running a statement), TCP keepalive is on both legs with the configured
//! timing (read back from the kernel with `ss`), the TLS certificate is re-read on SIGHUP while
//! open TLS sessions continue, and only TLS 1.2 and 1.3 are accepted.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::AuthUser;
use support::PgCluster;
use support::client::{psql_c, spawn_psql};
use support::raw::{RawConn, query, startup_packet};
use support::serve::{Proxy, eventually, metric};
use support::tls::ServerCert;

const INSTALL_SS: &str = "apt-get install -y iproute2";
const INSTALL_OPENSSL: &str = "apt-get install -y openssl";

// ---------------------------------------------------------------- client_login_timeout

#[test]
fn client_login_timeout_closes_silent_and_half_started_clients() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    // Far below the 60 s default, so a proxy ignoring the setting fails the 30 s reads below.
    let proxy = Proxy::start(cluster, &["--client-login-timeout-ms", "1000"]);

    // Connects and says nothing.
    let mut silent = RawConn::connect(proxy.listen);
    // Half a StartupMessage: the length promises more than ever comes.
    let mut half = RawConn::connect(proxy.listen);
    let packet = startup_packet(AuthUser::Trust.name(), &db.dbname);
    assert!(half.send(&packet[..packet.len() / 2]));
    for (what, conn) in [
        ("silent", &mut silent),
        ("half a startup packet", &mut half),
    ] {
        let (msgs, closed) = conn.read_to_close(Duration::from_secs(30));
        assert!(closed, "{what}: still open");
        assert!(msgs.is_empty(), "{what}: closed without a word: {msgs:?}");
    }
    // The socket closes as the deadline fires, the counter right after: wait for both counts.
    let counted = || {
        metric(
            proxy.admin,
            "pgshape_client_timeouts_total",
            "reason=\"login\"",
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counted() < 2.0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(counted(), 2.0);
    // A client that does log in is not affected, and stays longer than the deadline.
    let mut ok = RawConn::login(proxy.listen, AuthUser::Trust.name(), &db.dbname);
    std::thread::sleep(Duration::from_millis(1500));
    let replies = support::raw::exchange(&mut ok, &query("SELECT 1"));
    assert!(replies.iter().any(|m| m.tag == b'D'), "{replies:?}");
}

// ---------------------------------------------------------------- idle_client_timeout

#[test]
fn idle_client_timeout_closes_idle_clients_with_57p05_but_not_busy_ones() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = Proxy::start(cluster, &["--idle-client-timeout-ms", "1000"]);
    let user = AuthUser::Trust.name();

    let mut idle = RawConn::login(proxy.listen, user, &db.dbname);
    let mut in_tx = RawConn::login(proxy.listen, user, &db.dbname);
    support::raw::exchange(&mut in_tx, &query("BEGIN"));
    let mut busy = RawConn::login(proxy.listen, user, &db.dbname);
    // Runs for three timeouts: a statement in flight is not idleness.
    assert!(busy.send(&query("SELECT pg_sleep(3)")));

    let (msgs, closed) = idle.read_to_close(Duration::from_secs(30));
    assert!(closed, "the idle client is closed");
    let fatal = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("a FATAL before the close: {msgs:?}"));
    assert_eq!(fatal.field(b'S').as_deref(), Some("FATAL"));
    assert_eq!(fatal.field(b'C').as_deref(), Some("57P05"));
    assert!(
        fatal
            .field(b'H')
            .unwrap_or_default()
            .contains("idle_client_timeout"),
        "{fatal:?}"
    );

    let done = busy.read_until(Duration::from_secs(30), |m| m.tag == b'Z');
    assert!(
        done.iter().all(|m| m.tag != b'E') && done.iter().any(|m| m.tag == b'C'),
        "the running statement completes: {done:?}"
    );
    // Inside a transaction the session is kept however long it idles.
    let replies = support::raw::exchange(&mut in_tx, &query("SELECT 1; COMMIT"));
    assert!(replies.iter().all(|m| m.tag != b'E'), "{replies:?}");
    assert_eq!(
        metric(
            proxy.admin,
            "pgshape_client_timeouts_total",
            "reason=\"idle\""
        ),
        1.0
    );
    // The closed client's backend is gone; the two others are still there.
    eventually("the idle client's backend ends", || {
        match cluster.backends_in(&db.dbname) {
            2 => Ok(()),
            n => Err(format!("{n} backends")),
        }
    });
}

#[test]
fn idle_client_timeout_is_off_by_default() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = Proxy::start(cluster, &[]);
    let mut conn = RawConn::login(proxy.listen, AuthUser::Trust.name(), &db.dbname);
    let (msgs, closed) = conn.read_to_close(Duration::from_secs(3));
    assert!(!closed && msgs.is_empty(), "{msgs:?}");
    let replies = support::raw::exchange(&mut conn, &query("SELECT 1"));
    assert!(replies.iter().any(|m| m.tag == b'D'));
}

// ---------------------------------------------------------------- TCP keepalive

/// pgshape's established TCP sockets as `ss` reports them: (local, peer, timer column).
fn sockets_of(pid: u32) -> Vec<(String, String, String)> {
    let out = Command::new("ss")
        .args(["-tnopH", "state", "established"])
        .output()
        .unwrap_or_else(|e| panic!("ss not runnable ({e}): {INSTALL_SS}"));
    assert!(out.status.success(), "ss failed: {INSTALL_SS}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let timer = fields
                .iter()
                .find(|f| f.starts_with("timer:"))
                .copied()
                .unwrap_or("")
                .to_owned();
            (fields[2].to_owned(), fields[3].to_owned(), timer)
        })
        .collect()
}

/// The keepalive timer's remaining time from `timer:(keepalive,6.9sec,0)` or
/// `timer:(keepalive,119min,0)`, as an upper bound in seconds. Some `ss` builds print seconds
/// with an `ms` suffix; read either way, a number below 60 without minutes is under a minute.
fn keepalive_secs(timer: &str) -> Option<f64> {
    let rest = timer.strip_prefix("timer:(keepalive,")?;
    let value = rest.split(',').next()?;
    let (minutes, rest) = match value.split_once("min") {
        Some((m, rest)) => (m.parse::<f64>().ok()?, rest),
        None => (0.0, value),
    };
    let seconds = match rest.trim_end_matches("sec").trim_end_matches("ms") {
        "" => 0.0,
        number => number.parse::<f64>().ok()?,
    };
    Some(minutes * 60.0 + seconds)
}

/// Both of a session's sockets (client leg on the listen port, server leg to the cluster).
fn session_legs(proxy: &Proxy, upstream: SocketAddr) -> (String, String) {
    let mut legs = (None, None);
    eventually("both legs of the session are established", || {
        let socks = sockets_of(proxy.serve.pid());
        legs.0 = socks
            .iter()
            .find(|(local, _, _)| *local == proxy.listen.to_string())
            .map(|s| s.2.clone());
        legs.1 = socks
            .iter()
            .find(|(_, peer, _)| *peer == upstream.to_string())
            .map(|s| s.2.clone());
        if legs.0.is_some() && legs.1.is_some() {
            Ok(())
        } else {
            Err(format!("{socks:?}"))
        }
    });
    (legs.0.unwrap(), legs.1.unwrap())
}

#[test]
fn tcp_keepalive_is_set_on_both_legs_with_the_configured_idle_time() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = Proxy::start(
        cluster,
        &[
            "--tcp-keepalive-idle-s",
            "7",
            "--tcp-keepalive-interval-s",
            "3",
            "--tcp-keepalive-count",
            "4",
        ],
    );
    let _conn = RawConn::login(proxy.listen, AuthUser::Trust.name(), &db.dbname);
    let (client_leg, server_leg) = session_legs(&proxy, cluster.addr());
    for (leg, timer) in [("client", &client_leg), ("server", &server_leg)] {
        let secs = keepalive_secs(timer)
            .unwrap_or_else(|| panic!("{leg} leg has no keepalive timer: {timer:?}"));
        // The timer counts down from the idle time (7 s), not the kernel's 7200 s.
        assert!(secs <= 7.0, "{leg} leg: {timer}");
    }

    let off = Proxy::start(cluster, &["--tcp-keepalive", "false"]);
    let _conn = RawConn::login(off.listen, AuthUser::Trust.name(), &db.dbname);
    let (client_leg, server_leg) = session_legs(&off, cluster.addr());
    assert!(
        !client_leg.contains("keepalive") && !server_leg.contains("keepalive"),
        "switched off: {client_leg:?} {server_leg:?}"
    );
}

// ---------------------------------------------------------------- TLS

/// Copies a certificate pair to where pgshape reads it (`dir/proxy.crt`, `dir/proxy.key`).
fn install_pair(pair: &ServerCert, dir: &std::path::Path) {
    std::fs::copy(pair.cert_path(), dir.join("proxy.crt")).unwrap();
    std::fs::copy(pair.key_path(), dir.join("proxy.key")).unwrap();
}

fn tls_proxy(dir: &std::path::Path) -> Proxy {
    let cluster = PgCluster::shared();
    let (cert, key) = (dir.join("proxy.crt"), dir.join("proxy.key"));
    Proxy::start(
        cluster,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
}

#[test]
fn sighup_rotates_the_tls_certificate_while_open_tls_sessions_continue() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (ServerCert::throwaway(), ServerCert::throwaway());
    install_pair(&old, dir.path());
    let proxy = tls_proxy(dir.path());
    let via = db.via(proxy.listen);
    // Each pair has its own CA: verify-full against a CA tells which certificate was served.
    let verified_by = |ca: &ServerCert| {
        let extra = format!("sslmode=verify-full sslrootcert={}", ca.ca_path().display());
        psql_c(&via, &extra, "SELECT 'tls ok'")
    };
    verified_by(&old).assert_success();
    assert!(
        !verified_by(&new).success(),
        "the new CA does not vouch yet"
    );

    // A TLS session open across the rotation: it sleeps while the files change.
    let dsn = format!(
        "{} sslmode=verify-full sslrootcert={}",
        via.dsn(),
        old.ca_path().display()
    );
    let open = spawn_psql(
        &via,
        &[
            "-Atq",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &dsn,
            "-c",
            "SELECT pg_sleep(2) AS rotating",
            "-c",
            "SELECT 'same session after the rotation'",
        ],
    );
    cluster.wait_until_running(&db.dbname, "AS rotating");

    install_pair(&new, dir.path());
    proxy.serve.hup();
    proxy.serve.wait_log("TLS certificate reloaded");
    let out = verified_by(&new);
    out.assert_success();
    assert!(out.stdout.contains("tls ok"));
    assert!(
        !verified_by(&old).success(),
        "the old certificate is no longer served"
    );
    let open = open.wait(Duration::from_secs(60));
    open.assert_success();
    assert!(
        open.stdout.contains("same session after the rotation"),
        "{}",
        open.stdout
    );

    // A broken pair (new certificate, a key that does not match it) is refused; the pair in
    // use stays.
    std::fs::copy(old.key_path(), dir.path().join("proxy.key")).unwrap();
    proxy.serve.hup();
    let log = proxy.serve.wait_log("TLS reload rejected");
    assert!(
        !log.contains("BEGIN PRIVATE KEY"),
        "no key material in the log"
    );
    verified_by(&new).assert_success();
}

/// `openssl s_client -starttls postgres` with one protocol version forced; whether the
/// handshake succeeded, and what it printed.
fn handshake_with(addr: SocketAddr, version_flag: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-starttls",
            "postgres",
            "-connect",
            &addr.to_string(),
            version_flag,
            // Let the client offer old versions at all (OpenSSL 3 refuses them by default), so
            // a refusal is the proxy's.
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl not runnable ({e}): {INSTALL_OPENSSL}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let negotiated = text.contains("Cipher is") && !text.contains("Cipher is (NONE)");
    (negotiated, text)
}

#[test]
fn client_tls_accepts_only_tls_1_2_and_1_3() {
    let dir = tempfile::tempdir().unwrap();
    install_pair(&ServerCert::throwaway(), dir.path());
    let proxy = tls_proxy(dir.path());
    for (flag, accepted) in [
        ("-tls1", false),
        ("-tls1_1", false),
        ("-tls1_2", true),
        ("-tls1_3", true),
    ] {
        let (negotiated, text) = handshake_with(proxy.listen, flag);
        assert_eq!(negotiated, accepted, "{flag}:\n{text}");
    }
}
