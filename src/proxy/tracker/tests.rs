use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Tracker;
use crate::event::{Protocol, SessionInfo, StatementEvent, StatementObserver};
use crate::protocol::backend::{BackendMessage, ErrorFields};
use crate::protocol::frontend::FrontendMessage;

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    sql: String,
    rows: u64,
    command: String,
    sqlstate: Option<String>,
    protocol: Protocol,
    in_transaction: bool,
    duration: Duration,
}

#[derive(Default)]
struct Collect(Mutex<Vec<Seen>>);

impl StatementObserver for Collect {
    fn on_statement(&self, e: &StatementEvent<'_>) {
        self.0.lock().unwrap().push(Seen {
            sql: String::from_utf8_lossy(&e.statement.sql).into_owned(),
            rows: e.rows,
            command: e.command.to_owned(),
            sqlstate: e.sqlstate_str().map(str::to_owned),
            protocol: e.protocol,
            in_transaction: e.in_transaction,
            duration: e.duration,
        });
    }
}

fn tracker() -> (Tracker, Arc<Collect>) {
    let collect = Arc::new(Collect::default());
    let observers: crate::event::Observers =
        Arc::new([collect.clone() as Arc<dyn StatementObserver>]);
    (
        Tracker::new(
            SessionInfo::default(),
            observers,
            Some(Arc::new(crate::sql::FingerprintCache::new(100))),
        ),
        collect,
    )
}

fn seen(c: &Collect) -> Vec<Seen> {
    c.0.lock().unwrap().clone()
}

fn error(code: &[u8; 5]) -> BackendMessage<'static> {
    let code = *code;
    BackendMessage::ErrorResponse(ErrorFields {
        severity: b"ERROR",
        code: Some(code),
        message: b"boom",
    })
}

fn cc(tag: &'static [u8]) -> BackendMessage<'static> {
    BackendMessage::CommandComplete { tag }
}

fn parse<'a>(name: &'a [u8], sql: &'a [u8]) -> FrontendMessage<'a> {
    FrontendMessage::Parse {
        name,
        sql,
        param_types: &[0, 0],
    }
}

fn bind<'a>(portal: &'a [u8], statement: &'a [u8]) -> FrontendMessage<'a> {
    FrontendMessage::Bind {
        portal,
        statement,
        params: &[0, 0, 0, 0, 0, 0],
    }
}

fn execute(portal: &[u8], max_rows: i32) -> FrontendMessage<'_> {
    FrontendMessage::Execute { portal, max_rows }
}

#[test]
fn multi_statement_query_gives_one_event_per_statement() {
    let (mut t, c) = tracker();
    let t0 = Instant::now();
    t.on_client_message(
        &FrontendMessage::Query {
            sql: b"BEGIN; UPDATE t SET a = 1; COMMIT",
        },
        t0,
    );
    let t1 = t0 + Duration::from_millis(1);
    let t2 = t0 + Duration::from_millis(5);
    let t3 = t0 + Duration::from_millis(6);
    t.on_server_message(&cc(b"BEGIN"), t1);
    t.on_server_message(&cc(b"UPDATE 3"), t2);
    t.on_server_message(&cc(b"COMMIT"), t3);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, t3);
    let s = seen(&c);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].sql.trim(), "BEGIN");
    assert_eq!(s[1].sql.trim(), "UPDATE t SET a = 1");
    assert_eq!((s[1].rows, s[1].command.as_str()), (3, "UPDATE"));
    assert_eq!(
        s[1].duration,
        Duration::from_millis(4),
        "starts when BEGIN finished"
    );
    assert!(!s[0].in_transaction);
    assert!(s[1].in_transaction);
    assert!(s[2].in_transaction);
    assert!(t.is_idle());
}

#[test]
fn error_in_query_string_skips_the_rest() {
    let (mut t, c) = tracker();
    let now = Instant::now();
    t.on_client_message(
        &FrontendMessage::Query {
            sql: b"SELECT 1; SELECT x; SELECT 3",
        },
        now,
    );
    t.on_server_message(&BackendMessage::RowDescription, now);
    t.on_server_message(&BackendMessage::DataRow, now);
    t.on_server_message(&cc(b"SELECT 1"), now);
    t.on_server_message(&error(b"42703"), now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    let s = seen(&c);
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].sqlstate.as_deref(), Some("42703"));
    assert_eq!(s[1].sql.trim(), "SELECT x");
    assert!(t.is_idle());
}

#[test]
fn empty_query_is_one_event() {
    let (mut t, c) = tracker();
    let now = Instant::now();
    t.on_client_message(&FrontendMessage::Query { sql: b"  " }, now);
    t.on_server_message(&BackendMessage::EmptyQueryResponse, now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    assert_eq!(seen(&c).len(), 1);
    assert!(t.is_idle());
}

#[test]
fn pipelined_extended_protocol_matches_in_order() {
    let (mut t, c) = tracker();
    let now = Instant::now();
    for (name, sql) in [(&b"a"[..], &b"SELECT 1"[..]), (b"b", b"SELECT 2")] {
        t.on_client_message(&parse(name, sql), now);
        t.on_client_message(&bind(b"", name), now);
        t.on_client_message(
            &FrontendMessage::Describe {
                kind: b'P',
                name: b"",
            },
            now,
        );
        t.on_client_message(&execute(b"", 0), now);
    }
    t.on_client_message(&FrontendMessage::Sync, now);
    for rows in [2u64, 1] {
        t.on_server_message(&BackendMessage::ParseComplete, now);
        t.on_server_message(&BackendMessage::BindComplete, now);
        t.on_server_message(&BackendMessage::RowDescription, now);
        for _ in 0..rows {
            t.on_server_message(&BackendMessage::DataRow, now);
        }
        t.on_server_message(&cc(if rows == 2 { b"SELECT 2" } else { b"SELECT 1" }), now);
    }
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    let s = seen(&c);
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].sql.as_str(), s[0].rows), ("SELECT 1", 2));
    assert_eq!((s[1].sql.as_str(), s[1].rows), ("SELECT 2", 1));
    assert!(s.iter().all(|e| e.protocol == Protocol::Extended));
    assert!(t.is_idle());
}

#[test]
fn error_in_pipeline_skips_until_sync() {
    let (mut t, c) = tracker();
    let now = Instant::now();
    let exec = FrontendMessage::Execute {
        portal: b"",
        max_rows: 0,
    };
    let bind = bind(b"", b"s");
    t.on_client_message(&parse(b"s", b"INSERT INTO t VALUES ($1)"), now);
    t.on_client_message(&FrontendMessage::Sync, now);
    for _ in 0..3 {
        t.on_client_message(&bind, now);
        t.on_client_message(&exec, now);
    }
    t.on_client_message(&FrontendMessage::Sync, now);
    t.on_client_message(&bind, now);
    t.on_client_message(&exec, now);
    t.on_client_message(&FrontendMessage::Sync, now);

    t.on_server_message(&BackendMessage::ParseComplete, now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    t.on_server_message(&BackendMessage::BindComplete, now);
    t.on_server_message(&cc(b"INSERT 0 1"), now);
    t.on_server_message(&BackendMessage::BindComplete, now);
    t.on_server_message(&error(b"23505"), now);
    // The third Bind/Execute are skipped by the server.
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    t.on_server_message(&BackendMessage::BindComplete, now);
    t.on_server_message(&cc(b"INSERT 0 1"), now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    let s = seen(&c);
    let states: Vec<_> = s.iter().map(|e| e.sqlstate.clone()).collect();
    assert_eq!(states, vec![None, Some("23505".into()), None]);
    assert!(t.is_idle());
}

#[test]
fn parse_error_is_reported_against_its_statement() {
    let (mut t, c) = tracker();
    let now = Instant::now();
    t.on_client_message(&parse(b"", b"SELEC 1"), now);
    t.on_client_message(&bind(b"", b""), now);
    t.on_client_message(&execute(b"", 0), now);
    t.on_client_message(&FrontendMessage::Sync, now);
    t.on_server_message(&error(b"42601"), now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    let s = seen(&c);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].sql, "SELEC 1");
    assert_eq!(s[0].sqlstate.as_deref(), Some("42601"));
}

#[test]
fn portal_suspended_counts_rows_per_execute() {
    let (mut t, c) = tracker();
    let now = Instant::now();
    t.on_client_message(&parse(b"", b"SELECT generate_series(1, 5)"), now);
    t.on_client_message(&bind(b"c", b""), now);
    for _ in 0..2 {
        t.on_client_message(&execute(b"c", 3), now);
    }
    t.on_client_message(&FrontendMessage::Sync, now);
    t.on_server_message(&BackendMessage::ParseComplete, now);
    t.on_server_message(&BackendMessage::BindComplete, now);
    for _ in 0..3 {
        t.on_server_message(&BackendMessage::DataRow, now);
    }
    t.on_server_message(&BackendMessage::PortalSuspended, now);
    for _ in 0..2 {
        t.on_server_message(&BackendMessage::DataRow, now);
    }
    t.on_server_message(&cc(b"SELECT 2"), now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'T' }, now);
    let rows: Vec<_> = seen(&c).iter().map(|e| e.rows).collect();
    assert_eq!(rows, vec![3, 2]);
    assert_eq!(t.transaction_status(), b'T');
}

#[test]
fn unknown_portal_still_yields_an_event() {
    let (mut t, c) = tracker();
    let now = Instant::now();
    t.on_client_message(&execute(b"nope", 0), now);
    t.on_client_message(&FrontendMessage::Sync, now);
    t.on_server_message(&error(b"34000"), now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    let s = seen(&c);
    assert_eq!(s.len(), 1);
    assert!(s[0].sql.contains("unknown portal nope"));
}

#[test]
fn a_binds_values_are_copied_only_when_a_sample_asked_for_them() {
    let (mut t, _) = tracker();
    let now = Instant::now();
    let types: &[u8] = &[0, 1, 0, 0, 0, 23];
    t.on_client_message(
        &FrontendMessage::Parse {
            name: b"s",
            sql: b"SELECT $1",
            param_types: types,
        },
        now,
    );
    let text = t.prepared[&b"s"[..]].clone();
    assert_eq!(&text.bind.param_types[..], types);
    let bind_7 = |t: &mut Tracker| {
        let params: &[u8] = &[0, 0, 0, 1, 0, 0, 0, 1, b'7', 0, 0];
        t.on_client_message(
            &FrontendMessage::Bind {
                portal: b"",
                statement: b"s",
                params,
            },
            now,
        );
        params
    };
    bind_7(&mut t);
    assert_eq!(text.bind.take(), None, "nothing asked, nothing kept");
    text.bind.request();
    let params = bind_7(&mut t);
    t.on_client_message(&bind(b"", b"s"), now);
    assert_eq!(
        text.bind.take().as_deref(),
        Some(params),
        "the first Bind after the request"
    );
    assert_eq!(text.bind.take(), None, "taken once");
    // A huge Bind is not copied; the request waits for a smaller one.
    text.bind.request();
    let mut huge = vec![0, 0, 0, 1];
    let len = crate::event::BindSample::MAX_BYTES;
    huge.extend_from_slice(&i32::try_from(len).unwrap().to_be_bytes());
    huge.resize(huge.len() + len + 2, b'x');
    t.on_client_message(
        &FrontendMessage::Bind {
            portal: b"",
            statement: b"s",
            params: &huge,
        },
        now,
    );
    assert_eq!(text.bind.take(), None);
    assert!(text.bind.wanted());
    // The same text Parsed with other declared types is another statement text.
    t.on_client_message(&parse(b"u", b"SELECT $1"), now);
    assert_eq!(&t.prepared[&b"u"[..]].bind.param_types[..], &[0, 0]);
}

#[test]
fn stray_server_messages_do_not_panic_or_misalign() {
    let (mut t, c) = tracker();
    let now = Instant::now();
    t.on_server_message(&cc(b"SELECT 1"), now);
    t.on_server_message(&BackendMessage::ParseComplete, now);
    t.on_server_message(&error(b"57P01"), now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    assert!(seen(&c).is_empty());
    t.on_client_message(&FrontendMessage::Query { sql: b"SELECT 1" }, now);
    t.on_server_message(&cc(b"SELECT 1"), now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    assert_eq!(seen(&c).len(), 1);
}

/// Blocks statements containing "DELETE", warns on "DISTINCT".
struct WordGate;

impl crate::event::SessionGate for WordGate {
    fn check(
        &mut self,
        statement: &crate::event::StatementText,
        _session: &SessionInfo,
        _in_transaction: bool,
        _now: Instant,
    ) -> crate::event::Verdict {
        let sql = String::from_utf8_lossy(&statement.sql);
        let notice = |rule: &str| crate::event::Notice {
            rule: rule.into(),
            message: "m".into(),
            hint: None,
        };
        let mut v = crate::event::Verdict::default();
        if sql.contains("DELETE") {
            v.block = Some(notice("no-delete"));
        }
        if sql.contains("DISTINCT") {
            v.warnings.push(notice("distinct"));
        }
        v
    }
}

fn gated() -> (Tracker, Arc<Collect>) {
    let collect = Arc::new(Collect::default());
    let observers: crate::event::Observers =
        Arc::new([collect.clone() as Arc<dyn StatementObserver>]);
    let t = Tracker::with_gate(
        SessionInfo::default(),
        observers,
        None,
        Some(Box::new(WordGate)),
    );
    (t, collect)
}

#[test]
fn blocked_statement_in_query_string_is_replaced_by_a_raise() {
    use super::ClientAction;
    let (mut t, c) = gated();
    let now = Instant::now();
    let action = t.on_client_message(
        &FrontendMessage::Query {
            sql: b"SELECT 1; DELETE FROM t; SELECT 3",
        },
        now,
    );
    let ClientAction::Replace(bytes) = action else {
        panic!("not replaced")
    };
    let FrontendMessage::Query { sql } = FrontendMessage::decode(&bytes).unwrap() else {
        panic!()
    };
    let sql = String::from_utf8_lossy(sql);
    assert!(sql.starts_with("SELECT 1;"), "{sql}");
    assert!(sql.trim_end().ends_with("END $pgshape$"), "{sql}");
    assert!(!sql.contains("SELECT 3"));
    t.on_server_message(&cc(b"SELECT 1"), now);
    t.on_server_message(&error(b"PGS01"), now);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
    let s = seen(&c);
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].sql.trim(), "DELETE FROM t");
    assert_eq!(s[1].sqlstate.as_deref(), Some("PGS01"));
    assert!(t.is_idle());
}

#[test]
fn blocked_execute_swallows_pgshape_replies() {
    use super::{ClientAction, ServerAction};
    let (mut t, c) = gated();
    let now = Instant::now();
    let parse = parse(b"", b"DELETE FROM t");
    assert_eq!(t.on_client_message(&parse, now), ClientAction::Forward);
    t.on_client_message(&bind(b"", b""), now);
    let action = t.on_client_message(&execute(b"", 0), now);
    assert!(matches!(action, ClientAction::Replace(_)));
    t.on_client_message(&FrontendMessage::Sync, now);
    let fwd = |t: &mut Tracker, m: BackendMessage<'_>| t.on_server_message(&m, now);
    assert_eq!(
        fwd(&mut t, BackendMessage::ParseComplete),
        ServerAction::Forward
    );
    assert_eq!(
        fwd(&mut t, BackendMessage::BindComplete),
        ServerAction::Forward
    );
    assert_eq!(
        fwd(&mut t, BackendMessage::CloseComplete),
        ServerAction::Drop
    );
    assert_eq!(
        fwd(&mut t, BackendMessage::ParseComplete),
        ServerAction::Drop
    );
    assert_eq!(
        fwd(&mut t, BackendMessage::BindComplete),
        ServerAction::Drop
    );
    assert_eq!(fwd(&mut t, error(b"PGS01")), ServerAction::Forward);
    fwd(&mut t, BackendMessage::ReadyForQuery { status: b'I' });
    let s = seen(&c);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].sql, "DELETE FROM t");
    assert!(t.is_idle());
}

#[test]
fn warnings_go_before_the_first_answer_only() {
    use super::ServerAction;
    let (mut t, _c) = gated();
    let now = Instant::now();
    t.on_client_message(
        &FrontendMessage::Query {
            sql: b"SELECT 1; SELECT DISTINCT a FROM t",
        },
        now,
    );
    assert_eq!(
        t.on_server_message(&BackendMessage::RowDescription, now),
        ServerAction::Forward
    );
    t.on_server_message(&cc(b"SELECT 1"), now);
    assert!(matches!(
        t.on_server_message(&BackendMessage::RowDescription, now),
        ServerAction::Prepend(_)
    ));
    assert_eq!(t.on_data_row(), None);
    assert_eq!(
        t.on_server_message(&cc(b"SELECT 1"), now),
        ServerAction::Forward
    );
}

#[test]
fn parse_and_bind_replies_do_not_shorten_the_execution() {
    let (mut t, c) = tracker();
    let t0 = Instant::now();
    t.on_client_message(&parse(b"", b"SELECT pg_sleep(1)"), t0);
    t.on_client_message(&bind(b"", b""), t0);
    t.on_client_message(&execute(b"", 0), t0);
    t.on_client_message(&FrontendMessage::Sync, t0);
    // The server flushes ParseComplete/BindComplete with the result; even if they arrive
    // early, the execution is timed from its forwarding.
    let t1 = t0 + Duration::from_millis(990);
    let t2 = t0 + Duration::from_millis(1000);
    t.on_server_message(&BackendMessage::ParseComplete, t1);
    t.on_server_message(&BackendMessage::BindComplete, t1);
    t.on_server_message(&BackendMessage::DataRow, t2);
    t.on_server_message(&cc(b"SELECT 1"), t2);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, t2);
    assert_eq!(seen(&c)[0].duration, Duration::from_millis(1000));
}

/// The server flushes at Sync, so ParseComplete/BindComplete, and the CloseComplete and
/// ReadyForQuery of a `Close`+`Sync` a driver sends ahead of its next statement, arrive in the
/// same read as the statement's result; they must not move the statement's start to that read.
#[test]
fn replies_arriving_with_the_result_do_not_shorten_the_statement() {
    let (mut t, c) = tracker();
    let t0 = Instant::now();
    t.on_client_message(
        &FrontendMessage::Close {
            kind: b'S',
            name: b"s0",
        },
        t0,
    );
    t.on_client_message(&FrontendMessage::Sync, t0);
    t.on_client_message(&parse(b"", b"SELECT 1"), t0);
    t.on_client_message(&bind(b"", b""), t0);
    t.on_client_message(&execute(b"", 0), t0);
    t.on_client_message(&FrontendMessage::Sync, t0);
    t.on_client_message(&FrontendMessage::Query { sql: b"SELECT 2" }, t0);
    let t1 = t0 + Duration::from_millis(3);
    for m in [
        BackendMessage::CloseComplete,
        BackendMessage::ReadyForQuery { status: b'I' },
        BackendMessage::ParseComplete,
        BackendMessage::BindComplete,
        cc(b"SELECT 1"),
        BackendMessage::ReadyForQuery { status: b'I' },
    ] {
        t.on_server_message(&m, t1);
    }
    let t2 = t1 + Duration::from_millis(2);
    t.on_server_message(&cc(b"SELECT 1"), t2);
    t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, t2);
    let s = seen(&c);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].duration, Duration::from_millis(3));
    // Pipelined behind the first statement: it started when that one finished.
    assert_eq!(s[1].duration, Duration::from_millis(2));
}

mod robustness {
    use proptest::prelude::*;

    use super::*;

    /// One step of a session: a client message (`Ok`) or a server message (`Err`), from an
    /// alphabet covering every message the tracker acts on, in any order a broken or hostile
    /// peer could produce.
    fn step() -> impl Strategy<Value = Result<u8, u8>> {
        prop_oneof![(0u8..9).prop_map(Ok), (0u8..14).prop_map(Err)]
    }

    fn client(k: u8) -> FrontendMessage<'static> {
        match k {
            0 => FrontendMessage::Query { sql: b"SELECT 1" },
            1 => FrontendMessage::Query {
                sql: b"SELECT 1; SELECT 2",
            },
            2 => parse(b"", b"SELECT $1"),
            3 => parse(b"s1", b"SELECT 2"),
            4 => bind(b"", b"s1"),
            5 => execute(b"", 0),
            6 => FrontendMessage::Describe {
                kind: b'S',
                name: b"s1",
            },
            7 => FrontendMessage::Close {
                kind: b'S',
                name: b"s1",
            },
            _ => FrontendMessage::Sync,
        }
    }

    fn server(k: u8) -> BackendMessage<'static> {
        match k {
            0 => BackendMessage::ParseComplete,
            1 => BackendMessage::BindComplete,
            2 => BackendMessage::CloseComplete,
            3 => cc(b"SELECT 1"),
            4 => BackendMessage::DataRow,
            5 => error(b"42601"),
            6 => BackendMessage::ReadyForQuery { status: b'I' },
            7 => BackendMessage::ReadyForQuery { status: b'E' },
            8 => BackendMessage::RowDescription,
            9 => BackendMessage::NoData,
            10 => BackendMessage::EmptyQueryResponse,
            11 => BackendMessage::PortalSuspended,
            12 => BackendMessage::CopyInResponse,
            _ => BackendMessage::ParameterDescription,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// Whatever order messages come in, the tracker never panics, never reports more
        /// statements than the client asked to run, and one ReadyForQuery per outstanding
        /// Sync/Query brings it back to idle.
        #[test]
        fn any_message_order_is_survived_and_nothing_is_invented(
            steps in prop::collection::vec(step(), 0..60)
        ) {
            let (mut t, c) = tracker();
            let now = Instant::now();
            let mut asked = 0usize;
            let mut readies = 0usize;
            for s in &steps {
                match *s {
                    Ok(k) => {
                        asked += match k { 0 => 1, 1 => 2, 2..=5 => 1, _ => 0 };
                        readies += usize::from(matches!(k, 0 | 1 | 8));
                        t.on_client_message(&client(k), now);
                    }
                    Err(k) => {
                        t.on_server_message(&server(k), now);
                    }
                }
            }
            prop_assert!(seen(&c).len() <= asked, "{} events for {asked} requests", seen(&c).len());
            for _ in 0..=readies {
                t.on_server_message(&BackendMessage::ReadyForQuery { status: b'I' }, now);
            }
            prop_assert!(t.is_idle());
        }
    }
}
