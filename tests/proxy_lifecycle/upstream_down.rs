//! An upstream that is down (closed port), blackholed (SYNs dropped) or silent (accepts and
//! never speaks): the client gets FATAL 08006 naming the upstream within the connect timeout,
//! never a bare close or a hang until its own timeout.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::support::{AuthUser, PgCluster, ProxyUnderTest};
use super::*;

/// A port nothing listens on (bound, then released).
fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
}

#[test]
fn unreachable_upstream_is_reported_with_08006_naming_it() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let dead = closed_port();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream = dead.to_string();
        c.connect_timeout_ms = 2_000;
    });
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let started = Instant::now();
    let out = psql_c(&conn, "", "SELECT 1");
    assert!(!out.success());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let expected = format!("could not connect to upstream {dead}");
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert!(out.stderr.contains("FATAL"), "{}", out.stderr);

    let error = tokio_runtime().block_on(connect_error(&conn));
    assert_eq!(error.code(), Some(&SqlState::CONNECTION_FAILURE), "{error}");
    let message = error.as_db_error().map(|e| e.message()).unwrap_or_default();
    assert!(message.contains(&expected), "{message}");
    assert_eq!(proxy.proxy().metrics().upstream_connect_errors.get(), 2);
    assert!(proxy.events.is_empty());
}

/// An upstream that accepts TCP connections and never says a word (a hung server, a wrong
/// port that belongs to some other service). Counts what it accepted and sees when they close.
struct SilentServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Duration>>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind silent server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            // For each accepted connection: how long until the proxy closed it.
            let mut open: Vec<(Instant, TcpStream)> = Vec::new();
            let mut closed = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(true).expect("nonblocking");
                    open.push((Instant::now(), stream));
                }
                open.retain_mut(|(since, stream)| {
                    let mut buf = [0u8; 1024];
                    match std::io::Read::read(stream, &mut buf) {
                        Ok(0) => {
                            closed.push(since.elapsed());
                            false
                        }
                        Ok(_) => true,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                        Err(_) => {
                            closed.push(since.elapsed());
                            false
                        }
                    }
                });
                std::thread::sleep(Duration::from_millis(10));
            }
            closed
        });
        SilentServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening and returns, per accepted connection the proxy closed, after how long.
    fn finish(mut self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("silent server thread"))
            .unwrap_or_default()
    }
}

#[test]
fn silent_upstream_is_given_up_after_the_connect_timeout() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let silent = SilentServer::start();
    let target = silent.addr;
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream = target.to_string();
        c.connect_timeout_ms = 1_000;
    });
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let started = Instant::now();
    let out = psql_c(&conn, "connect_timeout=20", "SELECT 1");
    let elapsed = started.elapsed();
    eprintln!("timing silent_upstream_is_given_up_after_the_connect_timeout: {elapsed:?}");
    assert!(!out.success());
    assert!(
        elapsed < Duration::from_secs(3),
        "client waited {elapsed:?}: {}",
        out.stderr
    );
    let expected = format!("upstream {target} accepted the connection but did not answer");
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    let error = tokio_runtime().block_on(connect_error(&conn));
    assert_eq!(error.code(), Some(&SqlState::CONNECTION_FAILURE), "{error}");
    assert_eq!(proxy.proxy().metrics().upstream_connect_errors.get(), 2);
    // The proxy closed its connections to the silent server rather than leaving them open.
    std::thread::sleep(Duration::from_millis(200));
    let closed = silent.finish();
    assert_eq!(closed.len(), 2, "{closed:?}");
    assert!(
        closed.iter().all(|d| *d < Duration::from_secs(2)),
        "{closed:?}"
    );
}

#[test]
fn silent_upstream_is_given_up_during_ssl_negotiation() {
    // With upstream TLS the silence starts at the SSLRequest, which is under the same deadline.
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let silent = SilentServer::start();
    let target = silent.addr;
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream = target.to_string();
        c.upstream_sslmode = Some("require".into());
        c.connect_timeout_ms = 1_000;
    });
    let conn = proxy.route(&db.user(AuthUser::Scram));
    let started = Instant::now();
    let out = psql_c(&conn, "connect_timeout=20", "SELECT 1");
    let elapsed = started.elapsed();
    eprintln!("timing silent_upstream_is_given_up_during_ssl_negotiation: {elapsed:?}");
    assert!(!out.success());
    assert!(
        elapsed < Duration::from_secs(3),
        "client waited {elapsed:?}"
    );
    let expected = format!("could not connect to upstream {target}: timed out after 1s");
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(silent.finish().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_upstream_times_out_within_the_connect_timeout() {
    // A listener whose accept queue is full drops further SYNs, so a connect to it hangs like
    // one to a firewalled host: a loopback blackhole.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let target = listener.local_addr().expect("local addr");
    let mut fillers = Vec::new();
    while let Ok(Ok(stream)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(target),
    )
    .await
    {
        fillers.push(stream);
        assert!(fillers.len() < 64, "the accept queue never filled");
    }

    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| {
        c.upstream = target.to_string();
        c.connect_timeout_ms = 500;
    });
    let conn = proxy.route(&db.user(AuthUser::Md5));
    let started = Instant::now();
    let out = blocking(move || psql_c(&conn, "", "SELECT 1")).await;
    let elapsed = started.elapsed();
    eprintln!("timing blackholed_upstream_times_out_within_the_connect_timeout: {elapsed:?}");
    assert!(!out.success());
    let expected = format!("could not connect to upstream {target}: timed out after 500ms");
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    drop(fillers);
    drop(listener);
}
