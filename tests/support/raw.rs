//! A byte-level PostgreSQL client for tests that must send what no driver would: truncated or
//! oversized frames, garbage, a client that vanishes mid-COPY. It speaks just enough protocol
//! (trust login, framing of replies) to get a session going and read what comes back.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One backend message: tag byte and body (without the length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendMsg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl BackendMsg {
    /// Fields of an ErrorResponse/NoticeResponse, by their one-letter code (`C` = SQLSTATE,
    /// `M` = message, `S` = severity).
    pub fn field(&self, code: u8) -> Option<String> {
        if self.tag != b'E' && self.tag != b'N' {
            return None;
        }
        let mut rest = self.body.as_slice();
        while let Some((&field, tail)) = rest.split_first() {
            if field == 0 {
                break;
            }
            let end = tail.iter().position(|&b| b == 0)?;
            if field == code {
                return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
            }
            rest = &tail[end + 1..];
        }
        None
    }
}

/// Protocol 3.0 StartupMessage for `user` on `database`.
pub fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608_u32.to_be_bytes());
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// A regular frontend frame: tag, length (counting itself), body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A simple `Query` frame.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    frame(b'Q', &body)
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// One extended-protocol round trip of `sql`: Parse (unnamed, no declared types), Describe
/// statement, Bind (`params` as text values), Execute, Sync.
pub fn extended(sql: &str, params: &[&str]) -> Vec<u8> {
    let mut parse = Vec::new();
    cstr(&mut parse, "");
    cstr(&mut parse, sql);
    parse.extend_from_slice(&0i16.to_be_bytes());
    let mut describe = vec![b'S'];
    cstr(&mut describe, "");
    let mut bind = Vec::new();
    cstr(&mut bind, "");
    cstr(&mut bind, "");
    bind.extend_from_slice(&0i16.to_be_bytes());
    bind.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        bind.extend_from_slice(&(p.len() as i32).to_be_bytes());
        bind.extend_from_slice(p.as_bytes());
    }
    bind.extend_from_slice(&0i16.to_be_bytes());
    let mut execute = Vec::new();
    cstr(&mut execute, "");
    execute.extend_from_slice(&0i32.to_be_bytes());
    let mut out = frame(b'P', &parse);
    out.extend(frame(b'D', &describe));
    out.extend(frame(b'B', &bind));
    out.extend(frame(b'E', &execute));
    out.extend(frame(b'S', &[]));
    out
}

/// Sends `bytes` on `conn` and returns every reply up to and including ReadyForQuery (within
/// 30 s; a missing ReadyForQuery fails the test with what did arrive).
pub fn exchange(conn: &mut RawConn, bytes: &[u8]) -> Vec<BackendMsg> {
    assert!(conn.send(bytes));
    let msgs = conn.read_until(Duration::from_secs(30), |m| m.tag == b'Z');
    assert_eq!(msgs.last().map(|m| m.tag), Some(b'Z'), "{msgs:?}");
    msgs
}

/// A blocking TCP connection with a read buffer.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    closed: bool,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: Vec::new(),
            closed: false,
        }
    }

    /// Connects and logs in as a trust user; returns after the first ReadyForQuery.
    pub fn login(addr: SocketAddr, user: &str, database: &str) -> RawConn {
        let mut conn = RawConn::connect(addr);
        conn.send(&startup_packet(user, database));
        let msgs = conn.read_until(Duration::from_secs(10), |m| m.tag == b'Z' || m.tag == b'E');
        match msgs.last() {
            Some(m) if m.tag == b'Z' => conn,
            other => panic!("login as {user} failed: {other:?}"),
        }
    }

    /// Writes raw bytes; a peer that already closed is not an error here (tests check replies).
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Reads messages until `stop` matches one (included), the peer closes, or `timeout`.
    pub fn read_until(
        &mut self,
        timeout: Duration,
        stop: impl Fn(&BackendMsg) -> bool,
    ) -> Vec<BackendMsg> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        loop {
            while let Some(msg) = self.take_message() {
                let done = stop(&msg);
                out.push(msg);
                if done {
                    return out;
                }
            }
            if self.closed || !self.fill(deadline) {
                return out;
            }
        }
    }

    /// Reads everything until the peer closes the connection or `timeout` passes; returns the
    /// messages and whether it closed.
    pub fn read_to_close(&mut self, timeout: Duration) -> (Vec<BackendMsg>, bool) {
        let msgs = self.read_until(timeout, |_| false);
        (msgs, self.closed)
    }

    /// Whether the peer has closed (as far as reads so far know).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn take_message(&mut self) -> Option<BackendMsg> {
        if self.buf.len() < 5 {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        assert!(len >= 4, "backend sent a frame length below 4: {len}");
        if self.buf.len() < len + 1 {
            return None;
        }
        let tag = self.buf[0];
        let body = self.buf[5..len + 1].to_vec();
        self.buf.drain(..len + 1);
        Some(BackendMsg { tag, body })
    }

    /// Reads more bytes; false on timeout.
    fn fill(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        self.stream
            .set_read_timeout(Some(deadline - now))
            .expect("set read timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.closed = true;
                true
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                self.closed = true;
                true
            }
            Err(e) => panic!("read from proxy: {e}"),
        }
    }
}
