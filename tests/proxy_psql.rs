//! psql through pgshape: meta-commands, \copy both ways, multi-statement strings, errors inside
//! a transaction, LISTEN/NOTIFY, and one timing event per statement.

mod support;

use std::time::Duration;

use pgshape::event::Protocol;
use support::{PgCluster, ProxyUnderTest, psql};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn multi_statement_string_gives_one_event_per_statement() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    let out = psql(
        &via,
        &[
            "-c",
            "CREATE TABLE t(a int); BEGIN; INSERT INTO t SELECT generate_series(1, 7); \
             UPDATE t SET a = a + 1 WHERE a > 4; COMMIT",
        ],
        None,
    );
    out.assert_success();
    let events = proxy.events.wait_for(5, WAIT);
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.sql.trim().to_owned(), e.command.clone(), e.rows))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("CREATE TABLE t(a int)".into(), "CREATE TABLE".into(), 0),
            ("BEGIN".into(), "BEGIN".into(), 0),
            (
                "INSERT INTO t SELECT generate_series(1, 7)".into(),
                "INSERT".into(),
                7
            ),
            (
                "UPDATE t SET a = a + 1 WHERE a > 4".into(),
                "UPDATE".into(),
                3
            ),
            ("COMMIT".into(), "COMMIT".into(), 0),
        ]
    );
    assert!(events.iter().all(|e| e.protocol == Protocol::Simple));
    assert!(events[2].in_transaction && events[3].in_transaction);
    assert!(!events[0].in_transaction);
    assert!(events.iter().all(|e| e.database == db.dbname));
    assert_eq!(proxy.events.settle(Duration::from_millis(200)).len(), 5);
}

#[test]
fn describe_meta_commands_work_through_the_proxy() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    psql(
        &via,
        &["-c", "CREATE TABLE orders(id int primary key, note text)"],
        None,
    )
    .assert_success();
    let direct = psql(&db, &["-c", "\\d orders"], None);
    let proxied = psql(&via, &["-c", "\\d orders"], None);
    proxied.assert_success();
    assert_eq!(proxied.stdout, direct.stdout);
    assert!(proxied.stdout.contains("orders_pkey"), "{}", proxied.stdout);
}

#[test]
fn copy_both_ways_round_trips() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.csv");
    let rows: String = (1..=5000).map(|i| format!("{i},row {i}\n")).collect();
    std::fs::write(&file, &rows).unwrap();
    let path = file.display().to_string();
    psql(&via, &["-c", "CREATE TABLE c(id int, label text)"], None).assert_success();
    let copy_in = psql(
        &via,
        &["-c", &format!("\\copy c from '{path}' with (format csv)")],
        None,
    );
    copy_in.assert_success();
    assert!(copy_in.stdout.contains("COPY 5000"), "{}", copy_in.stdout);
    let out_file = dir.path().join("out.csv");
    let out_path = out_file.display().to_string();
    psql(
        &via,
        &[
            "-c",
            &format!("\\copy (select * from c order by id) to '{out_path}' with (format csv)"),
        ],
        None,
    )
    .assert_success();
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), rows);
    let copies = proxy.events.wait_for_matching("COPY", 2, WAIT);
    let rows: Vec<_> = copies
        .iter()
        .map(|e| (e.command.as_str(), e.rows))
        .collect();
    assert_eq!(rows, vec![("COPY", 5000), ("COPY", 5000)]);
}

#[test]
fn error_mid_transaction_then_rollback_keeps_the_session_consistent() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    let script = "CREATE TABLE e(a int);\n\
                  BEGIN;\n\
                  INSERT INTO e VALUES (1);\n\
                  SELECT * FROM missing_table;\n\
                  INSERT INTO e VALUES (2);\n\
                  ROLLBACK;\n\
                  SELECT count(*) AS n FROM e;\n";
    let out = psql(&via, &["-X", "-f", "-"], Some(script));
    assert!(
        out.stderr
            .contains("relation \"missing_table\" does not exist"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "current transaction is aborted, commands ignored until end of transaction block"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("ROLLBACK"), "{}", out.stdout);
    assert!(out.stdout.contains("\n 0\n"), "{}", out.stdout);
    let events = proxy.events.wait_for(7, WAIT);
    let states: Vec<_> = events.iter().map(|e| e.sqlstate.as_deref()).collect();
    assert_eq!(
        states,
        vec![None, None, None, Some("42P01"), Some("25P02"), None, None]
    );
}

#[test]
fn listen_notify_between_two_sessions() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    let listener_conn = via.clone();
    let listener = std::thread::spawn(move || {
        psql(
            &listener_conn,
            &["-X", "-f", "-"],
            Some("LISTEN jobs;\nSELECT pg_sleep(1.5);\nSELECT 1;\n"),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    psql(&via, &["-c", "NOTIFY jobs, 'hello'"], None).assert_success();
    let out = listener.join().unwrap();
    out.assert_success();
    assert!(
        out.stdout
            .contains("Asynchronous notification \"jobs\" with payload \"hello\" received"),
        "{}",
        out.stdout
    );
}

#[test]
fn notices_and_parameter_status_pass_through() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    let out = psql(
        &via,
        &[
            "-X",
            "-c",
            "DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$",
            "-c",
            "SET application_name = 'renamed'",
            "-c",
            "SELECT 1",
        ],
        None,
    );
    out.assert_success();
    assert!(
        out.stderr.contains("NOTICE:  hello from the server"),
        "{}",
        out.stderr
    );
    let events = proxy.events.wait_for(3, WAIT);
    assert_eq!(events[2].application_name, "renamed");
}

#[test]
fn empty_query_and_syntax_error_are_events_too() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    let out = psql(&via, &["-X", "-c", "SELEC 1"], None);
    assert!(out.stderr.contains("syntax error"), "{}", out.stderr);
    let events = proxy.events.wait_for(1, WAIT);
    assert_eq!(events[0].sqlstate.as_deref(), Some("42601"));
    assert_eq!(events[0].sql, "SELEC 1");
}
