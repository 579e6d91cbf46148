//! Client batteries (Python drivers, JDBC): a program runs a fixed script once directly and
//! once through pgshape and prints `{"results": ..., "expect": [...]}`. The results must be
//! identical both ways, and every statement in `expect` (found by a marker comment inside its
//! SQL) must have produced exactly one event with the server's command tag, row count and
//! SQLSTATE — or none, for `{"match": m, "absent": true}`. The proxied run has the shipped
//! rules in their shipped configuration: pgshape's defaults must change nothing a driver sees.

use std::collections::BTreeMap;
use std::time::Duration;

use pgshape::event::Protocol;
use serde_json::Value;

use super::{AuthUser, ConnParams, PgCluster, ProxyUnderTest, RecordedEvent};

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
pub fn check_events(expect: &[Value], events: &[RecordedEvent]) {
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

pub fn direct_and_proxied(name: &str, user: AuthUser, run: impl Fn(&ConnParams) -> Value) {
    let cluster = PgCluster::shared();
    let direct_db = cluster.fresh_database().user(user);
    let proxied_db = cluster.fresh_database().user(user);
    let direct = run(&direct_db);

    let proxy = ProxyUnderTest::start_with_shipped_rules(cluster);
    let proxied = run(&proxy.route(&proxied_db));
    if direct != proxied {
        panic!(
            "{name}: results through pgshape differ from direct\n--- direct\n{:#}\n--- proxied\n{:#}",
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
    assert!(!expect.is_empty(), "{name} declared no statements");
    check_events(expect, &events);
}
