//! Faults under load, against the real `pgshape serve` binary (so its own file descriptors,
//! memory and signals are what is measured) and real PostgreSQL servers with pgbench running:
//! the upstream restarting, a backend terminated mid-transaction, SIGTERM and SIGHUP during a
//! run, and a client that stops reading a 200 MB result.
//!
//! Leak checks: after each fault the proxy's open fds return to their baseline, its
//! `client_connections_active` / `server_connections_active` gauges (decremented when a
//! session's task ends) return to 0, and no backend is left in `pg_stat_activity`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::client::Running;
use support::pgbin::PgBin;
use support::raw::{RawConn, query};
use support::serve::{Proxy, eventually, metric};
use support::{ConnParams, PgCluster, pgbench, psql_query};

/// pgbench in the background (time-based run), through the proxy.
fn spawn_pgbench(via: &ConnParams, args: &[&str]) -> Running {
    let mut cmd = Command::new(PgBin::get().tool("pgbench"));
    via.apply_env(&mut cmd);
    cmd.args(args);
    Running::spawn(cmd, None)
}

/// Waits until the proxy has relayed at least `n` more statements than `from`.
fn wait_statements(proxy: &Proxy, from: f64, n: f64) {
    eventually("pgbench's statements flow through the proxy", || {
        let now = proxy.metric("pgshape_statements_total");
        if now >= from + n {
            Ok(())
        } else {
            Err(format!("{now} statements, waiting for {}", from + n))
        }
    });
}

// ---------------------------------------------------------------- the upstream restarts

#[test]
fn upstream_restart_during_pgbench_ends_sessions_with_the_servers_error_and_leaks_nothing() {
    // Its own cluster: the restart would break every other test's connections.
    let cluster = PgCluster::builder().start();
    let db = cluster.fresh_database();
    pgbench(&db, &["-i", "-s", "1", "-q"]).assert_success();
    let proxy = Proxy::start(&cluster, &[]);
    let baseline = proxy.warm_baseline(&db);
    let via = db.via(proxy.listen);

    let run = spawn_pgbench(&via, &["-n", "-c", "4", "-j", "2", "-T", "60"]);
    wait_statements(&proxy, proxy.metric("pgshape_statements_total"), 200.0);
    cluster.restart_fast();
    // As soon as the server is back, a new connection through the proxy works, first time.
    assert_eq!(psql_query(&via, "SELECT 'back'"), "back");
    let out = run.wait(Duration::from_secs(120));
    // Every pgbench client lost its connection: each saw the server's own FATAL relayed (or
    // the close that follows it), never a proxy protocol error.
    let said = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        said.contains("terminating connection due to administrator command")
            || said.contains("server closed the connection unexpectedly"),
        "pgbench saw neither the server's error nor a close:\n{said}"
    );
    assert!(
        !said.contains("08P01") && !said.contains("pgshape"),
        "{said}"
    );
    assert_eq!(psql_query(&via, "SELECT 'still'"), "still");
    proxy.assert_no_leaks(baseline);
    cluster.assert_no_backends(&db.dbname);
    assert!(
        !proxy.serve.log().contains("panicked"),
        "{}",
        proxy.serve.log()
    );
}

#[test]
fn a_backend_terminated_mid_transaction_ends_only_its_session() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    pgbench(&db, &["-i", "-s", "1", "-q"]).assert_success();
    let proxy = Proxy::start(cluster, &[]);
    let baseline = proxy.warm_baseline(&db);
    let via = db.via(proxy.listen);

    let run = spawn_pgbench(&via, &["-n", "-c", "4", "-j", "2", "-T", "8"]);
    wait_statements(&proxy, proxy.metric("pgshape_statements_total"), 100.0);
    // One backend inside a transaction (pgbench's script is BEGIN ... END).
    let admin = cluster.conn(&db.dbname, support::AuthUser::Trust);
    let mut killed = String::new();
    eventually("a pgbench backend is inside a transaction", || {
        killed = psql_query(
            &admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'pgbench' AND backend_xid IS NOT NULL LIMIT 1",
        );
        if killed == "t" {
            Ok(())
        } else {
            Err(format!("pg_terminate_backend returned {killed:?}"))
        }
    });
    let at_kill = proxy.metric("pgshape_statements_total");
    // The other sessions go on.
    wait_statements(&proxy, at_kill, 200.0);
    let out = run.wait(Duration::from_secs(60));
    let said = format!("{}\n{}", out.stdout, out.stderr);
    assert!(
        said.contains("terminating connection due to administrator command"),
        "the killed client sees the server's own error:\n{said}"
    );
    assert_eq!(
        said.matches("aborted in command").count(),
        1,
        "exactly one client lost its session:\n{said}"
    );
    assert!(!said.contains("08P01"), "{said}");
    proxy.assert_no_leaks(baseline);
    cluster.assert_no_backends(&db.dbname);
}

// ---------------------------------------------------------------- signals during a run

#[test]
fn sigterm_during_pgbench_lets_running_statements_finish_and_closes_cleanly() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, "CREATE TABLE ledger (client int)");
    let proxy = Proxy::start(cluster, &["--shutdown-grace-ms", "20000"]);
    let via = db.via(proxy.listen);
    // One statement per transaction that is in flight most of the time: 0.3 s in the server,
    // then a row that proves the server completed it.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        "INSERT INTO ledger SELECT :client_id FROM pg_sleep(0.3);\n",
    )
    .unwrap();
    let run = spawn_pgbench(
        &via,
        &[
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            "60",
            "-f",
            script.path().to_str().unwrap(),
        ],
    );
    wait_statements(&proxy, 0.0, 8.0);
    let admin = cluster.conn(&db.dbname, support::AuthUser::Trust);
    eventually("statements are in flight", || {
        let n = psql_query(
            &admin,
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%pg_sleep(0.3)%' AND pid <> pg_backend_pid()",
        );
        if n != "0" {
            Ok(())
        } else {
            Err("none yet".into())
        }
    });
    proxy.serve.term();
    let mut serve = proxy;
    let status = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = serve.serve.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "pgshape did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(status.success(), "pgshape exits 0 after SIGTERM: {status}");
    let out = run.wait(Duration::from_secs(60));
    let said = format!("{}\n{}", out.stdout, out.stderr);
    let processed: u64 = said
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split(['/', ' ']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("pgbench's summary:\n{said}"));
    // Clean closes: every client got PostgreSQL's own shutdown error from the proxy, none a
    // dropped connection or a protocol error.
    assert_eq!(
        said.matches("terminating connection due to administrator command")
            .count(),
        4,
        "{said}"
    );
    assert!(
        !said.contains("server closed the connection unexpectedly") && !said.contains("08P01"),
        "{said}"
    );
    // Nothing half-relayed: every statement the server completed reached its client, and
    // none was cancelled (the grace period was not needed).
    let completed: u64 = psql_query(&db, "SELECT count(*) FROM ledger")
        .parse()
        .unwrap();
    assert_eq!(
        completed, processed,
        "server rows vs pgbench's transactions:\n{said}"
    );
    let log = serve.serve.log();
    assert!(!log.contains("grace period over"), "{log}");
    cluster.assert_no_backends(&db.dbname);
}

#[test]
fn sighup_reloads_during_pgbench_drop_nothing() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    pgbench(&db, &["-i", "-s", "1", "-q"]).assert_success();
    let proxy = Proxy::start(cluster, &[]);
    let via = db.via(proxy.listen);
    let (clients, transactions) = (4u64, 400u64);
    let run = spawn_pgbench(
        &via,
        &[
            "-n",
            "-M",
            "extended",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-t",
            &transactions.to_string(),
        ],
    );
    // Reload after reload while pgbench runs, each one applied before the next is sent
    // (signals coalesce), with the rule file really changing each time.
    let rule = proxy.rules_dir().join("distinct-over-fanout-join.toml");
    let original = std::fs::read_to_string(&rule).unwrap();
    let mut reloads = 0.0;
    while reloads < 10.0 || proxy.metric("pgshape_statements_total") < 100.0 {
        if reloads >= 200.0 {
            break;
        }
        reloads += 1.0;
        std::fs::write(&rule, format!("{original}\n# reload {reloads}\n")).unwrap();
        proxy.serve.hup();
        eventually("the reload is applied", || {
            let done = metric(proxy.admin, "pgshape_rule_reloads_total", "result=\"ok\"");
            if done >= reloads {
                Ok(())
            } else {
                Err(format!("{done} of {reloads} reloads applied"))
            }
        });
    }
    let out = run.wait(Duration::from_secs(120));
    out.assert_success();
    let total = clients * transactions;
    assert!(
        out.stdout.contains(&format!(
            "number of transactions actually processed: {total}/{total}"
        )) && out.stdout.contains("number of failed transactions: 0"),
        "{}",
        out.stdout
    );
    // 7 statements per TPC-B transaction, plus pgbench's two set-up queries.
    let expected = (total * 7 + 2) as f64;
    eventually("the proxy counted every statement", || {
        let n = proxy.metric("pgshape_statements_total");
        if n == expected {
            Ok(())
        } else {
            Err(format!("{n} statements counted, pgbench ran {expected}"))
        }
    });
    assert!(reloads >= 10.0);
}

// ---------------------------------------------------------------- a client that stops reading

#[test]
fn a_client_that_stops_reading_a_200_mb_result_holds_the_server_not_the_proxys_memory() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = Proxy::start(cluster, &[]);
    let baseline_fds = proxy.warm_baseline(&db);
    let before = proxy.serve.rss_kib();

    const ROWS: u64 = 200_000;
    const ROW_BYTES: u64 = 1_000;
    let mut conn = RawConn::login(proxy.listen, support::AuthUser::Trust.name(), &db.dbname);
    // 200 MB of DataRows, and this client reads none of them.
    assert!(conn.send(&query(&format!(
        "SELECT repeat('x', {ROW_BYTES}) AS stalled FROM generate_series(1, {ROWS})"
    ))));
    // Backpressure reaches the server: its backend waits to write to its client (pgshape).
    let admin = cluster.conn(&db.dbname, support::AuthUser::Trust);
    eventually("the backend blocks writing to the proxy", || {
        let wait = psql_query(
            &admin,
            "SELECT coalesce(wait_event, 'none') FROM pg_stat_activity \
             WHERE query LIKE '%AS stalled%' AND pid <> pg_backend_pid()",
        );
        if wait == "ClientWrite" {
            Ok(())
        } else {
            Err(format!("wait_event {wait:?}"))
        }
    });
    // Still blocked a moment later, and the proxy holds a bounded amount meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    let during = proxy.serve.rss_kib();
    let result_kib = ROWS * ROW_BYTES / 1024;
    assert!(
        during < before + 32 * 1024,
        "RSS grew from {before} KiB to {during} KiB while a {result_kib} KiB result waited"
    );
    // The client goes away: the server's backend ends (after the proxy drained and dropped the
    // rest of the result), and so does the session.
    drop(conn);
    eventually("the backend is gone", || {
        match cluster.backends_in(&db.dbname) {
            0 => Ok(()),
            n => Err(format!("{n} backends")),
        }
    });
    proxy.assert_no_leaks(baseline_fds);
}
