//! pgbench through pgshape in all three query modes, 8 clients: zero errors, and the proxy's
//! statement count equals what pgbench ran.

mod support;

use std::time::Duration;

use pgshape::event::Protocol;
use support::{PgCluster, ProxyUnderTest, pgbench};

const CLIENTS: usize = 8;
const TRANSACTIONS: usize = 150;

fn run_mode(mode: &str, protocol: Protocol) {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let via = proxy.route(&db);
    pgbench(&via, &["-i", "-s", "1", "-q"]).assert_success();
    proxy.events.clear();

    let out = pgbench(
        &via,
        &[
            "-n",
            "-M",
            mode,
            "-c",
            &CLIENTS.to_string(),
            "-j",
            "2",
            "-t",
            &TRANSACTIONS.to_string(),
        ],
    );
    out.assert_success();
    let total = CLIENTS * TRANSACTIONS;
    assert!(
        out.stdout.contains(&format!(
            "number of transactions actually processed: {total}/{total}"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("number of failed transactions: 0"),
        "{}",
        out.stdout
    );
    // The default TPC-B-like script runs 7 statements per transaction.
    let expected = total * 7;
    proxy.events.wait_until(
        Duration::from_secs(20),
        "one event per pgbench statement",
        |e| e.len() >= expected,
    );
    let all = proxy.events.settle(Duration::from_millis(300));
    // Before its clients start, pgbench itself asks the scale and the partitioning of
    // pgbench_accounts with two PQexec calls; those are not part of the script.
    let (setup, events): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| {
        e.sql.contains("from pgbench_branches") || e.sql.contains("pg_catalog.pg_class")
    });
    assert_eq!(setup.len(), 2, "pgbench's own set-up queries: {setup:#?}");
    assert!(setup.iter().all(|e| e.protocol == Protocol::Simple));
    assert_eq!(events.len(), expected, "events beyond pgbench's statements");
    assert!(events.iter().all(|e| e.sqlstate.is_none()));
    assert!(events.iter().all(|e| e.protocol == protocol));
    let updates = events
        .iter()
        .filter(|e| e.sql.starts_with("UPDATE pgbench_accounts"))
        .count();
    assert_eq!(updates, total);
    let selects: Vec<_> = events
        .iter()
        .filter(|e| e.sql.starts_with("SELECT abalance"))
        .collect();
    assert_eq!(selects.len(), total);
    assert!(selects.iter().all(|e| e.rows == 1 && e.command == "SELECT"));
    let inserts = events.iter().filter(|e| e.command == "INSERT").count();
    assert_eq!(inserts, total);
    assert!(
        events
            .iter()
            .filter(|e| e.command == "UPDATE")
            .all(|e| e.in_transaction && e.rows == 1)
    );
}

#[test]
fn pgbench_simple() {
    run_mode("simple", Protocol::Simple);
}

#[test]
fn pgbench_extended() {
    run_mode("extended", Protocol::Extended);
}

#[test]
fn pgbench_prepared() {
    run_mode("prepared", Protocol::Extended);
}
