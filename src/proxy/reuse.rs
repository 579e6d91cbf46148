//! Server connection reuse (`reuse_server_connections`): when a client leaves a server
//! connection idle and outside a transaction, the connection is reset with `DISCARD ALL` and
//! kept for the next client with the same StartupMessage, which then skips the TCP/TLS connect,
//! the backend fork and the login — pgbouncer's session pooling, and what makes short-lived
//! connections (`pgbench -C`, PHP, serverless) cheap.
//!
//! Only where the next client could not have been refused by the server either: the server
//! let the first one in without a challenge (`trust` for pgshape's address), or pgshape
//! authenticated every client itself (`auth_mode = scram_proxy`). The key is the whole
//! StartupMessage (user, database, application_name, options ...), so a reused connection was
//! opened with exactly the parameters the new client asked for; the client receives the
//! original greeting (AuthenticationOk, ParameterStatus, BackendKeyData — a cancel reaches the
//! right backend — and ReadyForQuery).
//!
//! Idle connections live per worker thread (a socket belongs to its worker's reactor), are
//! bounded in number, closed after `server_idle_timeout_ms`, and checked for anything the
//! server sent while parked (a terminated backend, a shutdown) before reuse.

use std::cell::RefCell;
use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use prometheus::IntGauge;
use tokio::io::{AsyncRead, ReadBuf};

use super::stream::ServerStream;
use super::timer;
use crate::protocol::encode;
use crate::protocol::frame::parse_header;

/// What a parked connection brings to its next client.
pub(super) struct Parked {
    pub(super) server: ServerStream,
    /// AuthenticationOk, ParameterStatus*, BackendKeyData and ReadyForQuery('I'), as first sent.
    pub(super) greeting: Vec<u8>,
    /// The BackendKeyData body (cancel key).
    pub(super) cancel_key: Option<Vec<u8>>,
    parked_at: Instant,
}

impl Parked {
    pub(super) fn new(
        server: ServerStream,
        greeting: Vec<u8>,
        cancel_key: Option<Vec<u8>>,
    ) -> Self {
        Parked {
            server,
            greeting,
            cancel_key,
            parked_at: Instant::now(),
        }
    }
}

impl Parked {
    /// Ends the backend cleanly (no room to keep it).
    pub(super) async fn close(mut self) {
        let _ = self.server.write_all_flush(&encode::terminate()).await;
        self.server.shutdown().await;
    }
}

thread_local! {
    static IDLE: RefCell<HashMap<Box<[u8]>, Vec<Parked>>> = RefCell::new(HashMap::new());
}

/// A kept connection for `startup` (the StartupMessage's bytes) whose reset succeeded and on
/// which the server said nothing else while it was kept.
pub(super) async fn take_ready(
    startup: &[u8],
    idle_timeout: Duration,
    reset_timeout: Duration,
    gauge: &IntGauge,
) -> Option<Parked> {
    while let Some(mut parked) = take(startup, idle_timeout, gauge) {
        let reset = timer::timeout(reset_timeout, finish_reset(&mut parked.server)).await;
        if reset == Ok(true) && is_quiet(&mut parked.server) {
            return Some(parked);
        }
        // Failed reset, or spoken to while kept (terminated, shutting down): dropped, closed.
    }
    None
}

/// The newest kept connection for `startup` that has not been idle too long.
fn take(startup: &[u8], idle_timeout: Duration, gauge: &IntGauge) -> Option<Parked> {
    IDLE.with_borrow_mut(|idle| {
        let parked = idle.get_mut(startup)?;
        let now = Instant::now();
        let mut found = None;
        // Newest first: the most recently used backend has the warmest caches.
        while let Some(candidate) = parked.pop() {
            gauge.dec();
            if now.duration_since(candidate.parked_at) < idle_timeout {
                found = Some(candidate);
                break;
            }
        }
        if parked.is_empty() {
            idle.remove(startup);
        }
        found
    })
}

/// Keeps `parked` for the next client with this StartupMessage; gives it back when this worker
/// already holds `max_idle` connections.
pub(super) fn park(
    startup: &[u8],
    parked: Parked,
    max_idle: usize,
    gauge: &IntGauge,
) -> Result<(), Parked> {
    IDLE.with_borrow_mut(|idle| {
        if idle.values().map(Vec::len).sum::<usize>() >= max_idle {
            return Err(parked);
        }
        gauge.inc();
        idle.entry(startup.into()).or_default().push(parked);
        Ok(())
    })
}

/// Closes this worker's connections idle for `idle_timeout` or more; returns how many stay.
pub(super) fn sweep(idle_timeout: Duration, gauge: &IntGauge) -> usize {
    let now = Instant::now();
    IDLE.with_borrow_mut(|idle| {
        idle.retain(|_, parked| {
            let before = parked.len();
            parked.retain(|p| now.duration_since(p.parked_at) < idle_timeout);
            gauge.sub((before - parked.len()) as i64);
            !parked.is_empty()
        });
        idle.values().map(Vec::len).sum()
    })
}

/// Closes every parked connection of this worker (shutdown).
pub(super) fn clear(gauge: &IntGauge) {
    IDLE.with_borrow_mut(|idle| {
        gauge.sub(idle.values().map(Vec::len).sum::<usize>() as i64);
        idle.clear();
    });
}

/// Nothing arrived from the server while the connection was parked.
fn is_quiet(server: &mut ServerStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    matches!(Pin::new(server).poll_read(&mut cx, &mut buf), Poll::Pending)
}

/// Starts resetting a connection its client left idle: `DISCARD ALL` (temporary tables,
/// prepared statements, settings, advisory locks, LISTEN). The answer is read when the
/// connection is taken ([`take_ready`]): a client that reconnects at once (`pgbench -C`) finds
/// the connection kept instead of opening another one while the reset is under way.
pub(super) async fn start_reset(server: &mut ServerStream) -> bool {
    server
        .write_all_flush(&encode::query("DISCARD ALL"))
        .await
        .is_ok()
}

/// Reads the answer to [`start_reset`]: success, then ReadyForQuery `I`, and nothing after it.
async fn finish_reset(server: &mut ServerStream) -> bool {
    let mut buf = BytesMut::with_capacity(256);
    let mut completed = false;
    loop {
        match parse_header(&buf, 64 * 1024) {
            Ok(Some(header)) if buf.len() >= header.frame_len => {
                let frame = buf.split_to(header.frame_len);
                match frame[0] {
                    b'C' => completed = true,
                    b'Z' => return completed && frame.get(5) == Some(&b'I') && buf.is_empty(),
                    // ParameterStatus for the settings RESET ALL put back, notices.
                    b'S' | b'N' => {}
                    _ => return false,
                }
            }
            Ok(_) => match server.read_buf(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return false,
            },
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("idle", "idle").unwrap()
    }

    async fn connected() -> (ServerStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        (ServerStream::Plain(client), peer)
    }

    /// What PostgreSQL answers to DISCARD ALL.
    fn discarded() -> Vec<u8> {
        let mut reply = b"C\0\0\0\x10DISCARD ALL\0".to_vec();
        reply.extend_from_slice(b"Z\0\0\0\x05I");
        reply
    }

    #[tokio::test]
    async fn kept_connections_are_taken_by_exact_startup_once_reset() {
        use tokio::io::AsyncWriteExt;
        clear(&gauge());
        let (a, mut peer_a) = connected().await;
        let (b, mut peer_b) = connected().await;
        let (c, mut peer_c) = connected().await;
        let hour = Duration::from_secs(3600);
        let idle = gauge();
        let take = |key: &'static [u8]| take_ready(key, hour, hour, &idle);
        for server in [a, b, c] {
            park(
                b"startup-1",
                Parked::new(server, b"hello".to_vec(), None),
                10,
                &gauge(),
            )
            .ok()
            .unwrap();
        }
        assert!(take(b"startup-2").await.is_none(), "another StartupMessage");
        peer_a.write_all(&discarded()).await.unwrap();
        // b's reset failed; c's server said something more after it (a terminated backend).
        peer_b.write_all(b"E\0\0\0\x04").await.unwrap();
        let mut spoke = discarded();
        spoke.extend_from_slice(b"E\0\0\0\x04");
        peer_c.write_all(&spoke).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = take(b"startup-1").await.expect("a was reset");
        assert_eq!(taken.greeting, b"hello");
        assert!(take(b"startup-1").await.is_none());
    }

    #[tokio::test]
    async fn the_pool_is_bounded_and_swept() {
        clear(&gauge());
        let (a, _pa) = connected().await;
        let (b, _pb) = connected().await;
        park(b"s", Parked::new(a, Vec::new(), None), 1, &gauge())
            .ok()
            .unwrap();
        assert!(
            park(b"s", Parked::new(b, Vec::new(), None), 1, &gauge()).is_err(),
            "full"
        );
        assert_eq!(sweep(Duration::from_secs(3600), &gauge()), 1);
        assert_eq!(sweep(Duration::ZERO, &gauge()), 0);
        assert!(take(b"s", Duration::from_secs(3600), &gauge()).is_none());
    }
}
