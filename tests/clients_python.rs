//! Real Python drivers through pgshape: each battery in tests/python runs once against the
//! server directly and once through the proxy; the two outputs must be identical, and every
//! statement the battery knows it ran must have produced exactly one event with the server's
//! command tag, row count and SQLSTATE.
//!
//! Needs the drivers of tests/python/requirements.txt in a venv: `.ci/run` makes `.venv`, or
//! point `PGSHAPE_PYTHON` at an interpreter that has them.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use pgshape::event::Protocol;
use serde_json::Value;
use support::client::run_with_timeout;
use support::{AuthUser, ConnParams, PgCluster, ProxyUnderTest, RecordedEvent, python};

/// How the battery wants its connection string.
#[derive(Clone, Copy)]
enum Dsn {
    Libpq,
    Url,
}

fn run_battery(script: &str, conn: &ConnParams, dsn: Dsn) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let mut cmd = Command::new(python());
    cmd.arg(dir.join(script))
        .arg(match dsn {
            Dsn::Libpq => conn.dsn(),
            Dsn::Url => conn.url(),
        })
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PGCONNECT_TIMEOUT", "10");
    let out = run_with_timeout(cmd, None, Duration::from_secs(180));
    out.assert_success();
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{}", out.stdout))
}

/// (command, rows, sqlstate, protocol) of one execution; protocol only when the battery knows it.
type Outcome = (String, u64, Option<String>, Option<String>);

fn outcome_of_event(event: &RecordedEvent, with_protocol: bool) -> Outcome {
    let protocol = with_protocol.then(|| {
        match event.protocol {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
        }
        .to_owned()
    });
    (
        event.command.clone(),
        event.rows,
        event.sqlstate.clone(),
        protocol,
    )
}

/// Checks the battery's `expect` list against the proxy's events of that database.
fn check_events(expect: &[Value], events: &[RecordedEvent]) {
    let mut wanted: BTreeMap<String, (Vec<Outcome>, bool)> = BTreeMap::new();
    for item in expect {
        let marker = item["match"]
            .as_str()
            .expect("match is a string")
            .to_owned();
        let entry = wanted.entry(marker).or_default();
        if item.get("absent").is_some() {
            entry.1 = true;
            continue;
        }
        let protocol = item
            .get("protocol")
            .and_then(Value::as_str)
            .map(str::to_owned);
        entry.0.push((
            item["command"].as_str().unwrap_or_default().to_owned(),
            item["rows"].as_u64().unwrap_or_default(),
            item["sqlstate"].as_str().map(str::to_owned),
            protocol,
        ));
    }
    let mut failures = Vec::new();
    for (marker, (mut outcomes, absent)) in wanted {
        let with_protocol = outcomes.iter().any(|o| o.3.is_some());
        let mut seen: Vec<Outcome> = events
            .iter()
            .filter(|e| e.sql.contains(&marker))
            .map(|e| outcome_of_event(e, with_protocol))
            .collect();
        if absent {
            assert!(outcomes.is_empty(), "{marker} both ran and was skipped");
        }
        outcomes.sort();
        seen.sort();
        if outcomes != seen {
            failures.push(format!(
                "{marker}: expected {outcomes:?}\n{:width$}   got      {seen:?}",
                "",
                width = marker.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "statement events differ from what the driver saw:\n{}",
        failures.join("\n")
    );
}

fn direct_and_proxied(script: &str, user: AuthUser, dsn: Dsn) {
    let cluster = PgCluster::shared();
    let direct_db = cluster.fresh_database().user(user);
    let proxied_db = cluster.fresh_database().user(user);
    let direct = run_battery(script, &direct_db, dsn);

    let proxy = ProxyUnderTest::start(cluster);
    let proxied = run_battery(script, &proxy.route(&proxied_db), dsn);
    if direct != proxied {
        panic!(
            "{script}: results through pgshape differ from direct\n--- direct\n{:#}\n--- proxied\n{:#}",
            direct, proxied
        );
    }
    // Events are published as replies pass; let the last ones land before counting.
    let events: Vec<RecordedEvent> = proxy
        .events
        .settle(Duration::from_millis(300))
        .into_iter()
        .filter(|e| e.database == proxied_db.dbname)
        .collect();
    assert!(
        events.iter().all(|e| e.user == user.name()),
        "events carry the session's user"
    );
    let expect = proxied["expect"].as_array().expect("expect is a list");
    assert!(!expect.is_empty(), "{script} declared no statements");
    check_events(expect, &events);
}

#[test]
fn psycopg2_simple_protocol_battery() {
    direct_and_proxied("battery_psycopg2.py", AuthUser::Md5, Dsn::Libpq);
}

#[test]
fn psycopg3_pipeline_and_server_side_binding_battery() {
    direct_and_proxied("battery_psycopg3.py", AuthUser::Scram, Dsn::Libpq);
}

#[test]
fn asyncpg_prepared_binary_copy_and_cancel_battery() {
    direct_and_proxied("battery_asyncpg.py", AuthUser::Cleartext, Dsn::Url);
}
