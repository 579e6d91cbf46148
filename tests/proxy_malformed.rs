//! Hostile and broken clients: garbage, impossible lengths, huge startup packets, random frames,
//! and clients that vanish mid-COPY or mid-pipeline. The proxy must answer with a clear error or
//! close, never hang or panic, keep serving others, and leave no server connection behind.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use pgshape::protocol::encode;
use support::{ConnParams, PgCluster, ProxyUnderTest, Rng, psql_query};

const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn connect_raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s
}

/// Reads one backend message; `None` at EOF.
fn read_message(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

/// Reads until EOF (or a timeout, which fails the test: the proxy must not hang).
fn read_all(s: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let started = Instant::now();
    loop {
        let mut head = [0u8; 5];
        match s.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return out,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "proxy neither answered nor closed within {:?}: {e}",
                started.elapsed()
            ),
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        if s.read_exact(&mut body).is_err() {
            return out;
        }
        out.push((head[0], body));
    }
}

fn error_text(messages: &[(u8, Vec<u8>)]) -> String {
    messages
        .iter()
        .filter(|(tag, _)| *tag == b'E')
        .map(|(_, body)| String::from_utf8_lossy(body).replace('\0', "|"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Logs in as the trust superuser and waits for ReadyForQuery.
fn login(addr: SocketAddr, db: &ConnParams) -> TcpStream {
    let mut s = connect_raw(addr);
    s.write_all(&encode::startup(&[
        ("user", &db.user),
        ("database", &db.dbname),
    ]))
    .unwrap();
    loop {
        let (tag, body) = read_message(&mut s).expect("login answered");
        assert_ne!(
            tag,
            b'E',
            "login failed: {}",
            String::from_utf8_lossy(&body)
        );
        if tag == b'Z' {
            return s;
        }
    }
}

#[track_caller]
fn assert_still_serving(proxy: &ProxyUnderTest, db: &ConnParams) {
    assert_eq!(psql_query(&proxy.route(db), "SELECT 40 + 2"), "42");
}

#[test]
fn impossible_frame_length_gets_a_fatal_protocol_error() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    for len in [0x8000_0000u32, 3, 0] {
        let mut s = login(proxy.addr(), &db);
        let mut frame = vec![b'Q'];
        frame.extend_from_slice(&len.to_be_bytes());
        s.write_all(&frame).unwrap();
        let answer = read_all(&mut s);
        let text = error_text(&answer);
        assert!(text.contains("08P01"), "length {len}: {text}");
        assert!(text.contains("FATAL"), "length {len}: {text}");
        assert!(text.contains("'Q'"), "names the message type: {text}");
    }
    cluster.assert_no_backends(&db.dbname);
    assert_still_serving(&proxy, &db);
}

#[test]
fn oversized_frame_is_refused_before_it_is_buffered() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start_with(cluster, |c| c.max_frame_size = 1024 * 1024);
    let mut s = login(proxy.addr(), &db);
    let mut frame = vec![b'Q'];
    frame.extend_from_slice(&(64u32 * 1024 * 1024).to_be_bytes());
    s.write_all(&frame).unwrap();
    let text = error_text(&read_all(&mut s));
    assert!(text.contains("over the limit of 1048576"), "{text}");
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn ten_megabyte_startup_packet_is_rejected() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let mut s = connect_raw(proxy.addr());
    let len: u32 = 10 * 1024 * 1024;
    let mut packet = len.to_be_bytes().to_vec();
    packet.extend_from_slice(&(3u32 << 16).to_be_bytes());
    // The proxy must answer from the length alone; it may close before reading the rest.
    let _ = s.write_all(&packet);
    let _ = s.write_all(&vec![b'a'; 64 * 1024]);
    let text = error_text(&read_all(&mut s));
    assert!(text.contains("startup packet length 10485760"), "{text}");
    cluster.assert_no_backends(&db.dbname);
    assert_still_serving(&proxy, &db);
}

#[test]
fn garbage_before_startup_is_answered_or_closed() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..50 {
        let mut s = connect_raw(proxy.addr());
        let len = (rng.next() % 200) as usize + 1;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        // Either an error or a close; a hang panics inside read_all.
        let answer = read_all(&mut s);
        assert!(
            answer.iter().all(|(tag, _)| *tag == b'E'),
            "round {round}: unexpected answer {answer:?}"
        );
    }
    cluster.assert_no_backends(&db.dbname);
    assert_still_serving(&proxy, &db);
}

#[test]
fn random_and_truncated_frames_after_login_never_hang_or_leak() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let tags = b"QPBEDCSHFdcfXpz\x00\xff";
    for _ in 0..60 {
        let mut s = login(proxy.addr(), &db);
        let mut bytes = Vec::new();
        for _ in 0..(rng.next() % 4 + 1) {
            let tag = tags[(rng.next() % tags.len() as u64) as usize];
            let body_len = (rng.next() % 40) as usize;
            let claimed = match rng.next() % 4 {
                0 => (rng.next() % 100) as u32, // often wrong
                _ => body_len as u32 + 4,
            };
            bytes.push(tag);
            bytes.extend_from_slice(&claimed.to_be_bytes());
            bytes.extend((0..body_len).map(|_| rng.next() as u8));
        }
        // Sometimes cut the stream in the middle of a frame.
        if rng.next().is_multiple_of(3) {
            bytes.truncate((rng.next() as usize) % bytes.len().max(1));
        }
        let _ = s.write_all(&bytes);
        let _ = s.write_all(&encode::terminate());
        let _ = s.shutdown(std::net::Shutdown::Write);
        read_all(&mut s);
    }
    cluster.assert_no_backends(&db.dbname);
    assert_still_serving(&proxy, &db);
}

#[test]
fn client_vanishing_mid_copy_or_mid_pipeline_leaks_nothing_and_is_still_timed() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    psql_query(&proxy.route(&db), "CREATE TABLE c(a int)");
    {
        let mut s = login(proxy.addr(), &db);
        s.write_all(&encode::query("COPY c FROM STDIN")).unwrap();
        let (tag, _) = read_message(&mut s).unwrap();
        assert_eq!(tag, b'G', "CopyInResponse");
        let mut data = vec![b'd'];
        data.extend_from_slice(&(4u32 + 4).to_be_bytes());
        data.extend_from_slice(b"1\n2\n");
        s.write_all(&data).unwrap();
        // Dropped here: no CopyDone, no Terminate.
    }
    {
        let mut s = login(proxy.addr(), &db);
        let mut pipeline = Vec::new();
        for _ in 0..10 {
            pipeline.extend_from_slice(&encode::parse("", "SELECT pg_sleep(0.01)"));
            pipeline.extend_from_slice(&encode::bind("", ""));
            pipeline.extend_from_slice(&encode::execute("", 0));
        }
        s.write_all(&pipeline).unwrap();
        // Dropped before Sync.
    }
    {
        let mut s = login(proxy.addr(), &db);
        let mut bye = encode::query("SELECT pg_sleep(0.2) /*bye*/").to_vec();
        bye.extend_from_slice(&encode::terminate());
        s.write_all(&bye).unwrap();
        // Dropped without reading the answer.
    }
    cluster.assert_no_backends(&db.dbname);
    assert_eq!(psql_query(&proxy.route(&db), "SELECT count(*) FROM c"), "0");
    // Both were still timed: pgshape ended the COPY with a CopyFail (the server's error is
    // query_canceled, as for any aborted COPY) and flushed the unsynced pipeline's results.
    let copy = proxy
        .events
        .wait_for_matching("COPY c FROM STDIN", 1, Duration::from_secs(10));
    assert_eq!(copy[0].sqlstate.as_deref(), Some("57014"), "{copy:#?}");
    let sleeps = proxy
        .events
        .wait_for_matching("pg_sleep(0.01)", 10, Duration::from_secs(10));
    assert!(
        sleeps.iter().all(|e| e.sqlstate.is_none() && e.rows == 1),
        "{sleeps:#?}"
    );
    // A Terminate right behind a statement: the server answers it, then closes.
    let bye = proxy
        .events
        .wait_for_matching("/*bye*/", 1, Duration::from_secs(10));
    assert!(
        bye[0].sqlstate.is_none() && bye[0].duration >= Duration::from_millis(150),
        "{bye:#?}"
    );
    assert_eq!(
        proxy
            .proxy()
            .metrics()
            .client_disconnects_mid_statement
            .get(),
        2
    );
}

#[test]
fn a_client_that_half_closes_still_gets_its_results() {
    // shutdown(SHUT_WR) after the query: the server answers a direct connection in full, and so
    // must the proxy, even though it sees the client's end of stream mid-statement.
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let mut s = login(proxy.addr(), &db);
    s.write_all(&encode::query(
        "SELECT 42 AS answer FROM pg_sleep(0.3) /*half*/",
    ))
    .unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let tags: Vec<u8> = read_all(&mut s).into_iter().map(|(tag, _)| tag).collect();
    assert_eq!(
        tags, b"TDCZ",
        "RowDescription, DataRow, CommandComplete, ReadyForQuery"
    );
    let events = proxy
        .events
        .wait_for_matching("/*half*/", 1, Duration::from_secs(10));
    assert_eq!((events[0].rows, events[0].sqlstate.as_deref()), (1, None));
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn a_client_that_vanishes_inside_a_copy_data_frame_leaves_no_backend() {
    // The proxy streams CopyData as it arrives, so the server already has part of the frame
    // when the client disappears: nothing may be sent after it (it would be read as the rest
    // of the frame and the server would wait for more); the connection must just close.
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    psql_query(&proxy.route(&db), "CREATE TABLE c(a int)");
    {
        let mut s = login(proxy.addr(), &db);
        s.write_all(&encode::query("COPY c FROM STDIN /*torn*/"))
            .unwrap();
        let (tag, _) = read_message(&mut s).unwrap();
        assert_eq!(tag, b'G', "CopyInResponse");
        let mut data = vec![b'd'];
        data.extend_from_slice(&(4u32 + 1000).to_be_bytes());
        data.extend_from_slice(b"1\n2\n3\n");
        s.write_all(&data).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // Dropped 993 bytes short of the frame's end.
    }
    cluster.assert_no_backends(&db.dbname);
    assert_eq!(psql_query(&proxy.route(&db), "SELECT count(*) FROM c"), "0");
}

#[test]
fn a_replication_client_that_vanishes_is_closed_not_waited_for() {
    // Streaming replication (CopyBoth) never finishes by itself: when its client leaves, the
    // session must close so the walsender ends, rather than wait for a statement end that
    // never comes.
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let walsenders = || {
        psql_query(
            &cluster.conn("postgres", support::AuthUser::Trust),
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' \
             AND application_name = 'pgshape-repl-test'",
        )
    };
    {
        let mut conn = support::raw::RawConn::connect(proxy.addr());
        conn.send(&encode::startup(&[
            ("user", &db.user),
            ("database", &db.dbname),
            ("replication", "true"),
            ("application_name", "pgshape-repl-test"),
        ]));
        let login = conn.read_until(Duration::from_secs(10), |m| m.tag == b'Z' || m.tag == b'E');
        assert_eq!(login.last().map(|m| m.tag), Some(b'Z'), "{login:?}");
        conn.send(&encode::query("IDENTIFY_SYSTEM"));
        let identify = conn.read_until(Duration::from_secs(10), |m| m.tag == b'Z' || m.tag == b'E');
        let row = identify
            .iter()
            .find(|m| m.tag == b'D')
            .unwrap_or_else(|| panic!("IDENTIFY_SYSTEM: {identify:?}"));
        // DataRow: field count, then (length, bytes) per field; xlogpos is the third field.
        let mut fields = Vec::new();
        let mut at = 2;
        for _ in 0..3 {
            let len = i32::from_be_bytes(row.body[at..at + 4].try_into().unwrap()) as usize;
            fields.push(String::from_utf8_lossy(&row.body[at + 4..at + 4 + len]).into_owned());
            at += 4 + len;
        }
        conn.send(&encode::query(&format!(
            "START_REPLICATION PHYSICAL {}",
            fields[2]
        )));
        let started = conn.read_until(Duration::from_secs(10), |m| m.tag == b'W' || m.tag == b'E');
        assert_eq!(
            started.last().map(|m| m.tag),
            Some(b'W'),
            "CopyBothResponse: {started:?}"
        );
        assert_eq!(walsenders(), "1");
        // Dropped here, in the middle of streaming.
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while walsenders() != "0" {
        assert!(
            Instant::now() < deadline,
            "the walsender outlived its client"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
