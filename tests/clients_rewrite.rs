//! Real drivers through pgshape's built-in rewrite (`distinct-over-fanout-join` with
//! `action = "rewrite"`): the incident's list query and Django's `.distinct().count()` form,
//! each with the driver's natural protocol — psycopg2 with literals inlined, psycopg 3 with
//! server-side binding (unnamed and named statements, text and binary), asyncpg's prepared `$n`
//! statements, pgjdbc's PreparedStatements (unnamed, then named past prepareThreshold) and a
//! literal Statement.
//!
//! Each battery (tests/python/rewrite_*.py, tests/java/RewriteBattery.java; see
//! tests/python/rewrite_common.py) runs each shape once through pgshape so the proof starts,
//! polls the admin API until the rewrite is ready, then runs the measured executions directly
//! and through pgshape. Here: rows and the metadata the driver reports (column names and types,
//! parameter types) identical both ways; the server ran the EXISTS form through pgshape and the
//! original directly (`pg_stat_activity.query`), with `$n` exactly when the driver binds; and
//! pgshape counted every measured execution as rewritten (`/api/queries`, `/metrics`).
//!
//! Needs the drivers of tests/python/requirements.txt (see tests/clients_python.rs) and a JDK
//! with pgjdbc (see tests/clients_jdbc.rs).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use pgshape::sql::{Fingerprint, fingerprint};
use serde_json::Value;
use support::client::run_json;
use support::shop::{COUNT, INCIDENT, Shop};
use support::{java_with_jdbc, python};

const RULE: &str = "distinct-over-fanout-join";

fn fp_incident() -> Fingerprint {
    fingerprint(INCIDENT.as_bytes())
}

fn fp_count() -> Fingerprint {
    fingerprint(COUNT.as_bytes())
}

/// How the Python driver wants its connection string.
#[derive(Clone, Copy)]
enum Dsn {
    Libpq,
    Url,
}

fn python_battery(shop: &Shop, script: &str, dsn: Dsn) -> Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let conn = |c: &support::ConnParams| match dsn {
        Dsn::Libpq => c.dsn(),
        Dsn::Url => c.url(),
    };
    let mut cmd = Command::new(python());
    cmd.arg(dir.join(script))
        .arg(conn(&shop.db))
        .arg(conn(&shop.via()))
        .arg(shop.admin().to_string())
        .arg(fp_incident().to_string())
        .arg(fp_count().to_string())
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PGCONNECT_TIMEOUT", "10");
    run_json(script, cmd, Duration::from_secs(120))
}

fn jdbc_battery(shop: &Shop) -> Value {
    let mut cmd = java_with_jdbc("RewriteBattery.java");
    cmd.arg(&shop.db.dbname)
        .arg(&shop.db.user)
        .arg(shop.db.password.clone().unwrap_or_default())
        .arg(shop.db.addr().to_string())
        .arg(shop.app().proxy_addr().to_string())
        .arg(shop.admin().to_string())
        .arg(fp_incident().to_string())
        .arg(fp_count().to_string());
    run_json("RewriteBattery.java", cmd, Duration::from_secs(120))
}

/// The `/api/queries` row of `fp`.
fn query_row(shop: &Shop, fp: Fingerprint) -> Option<Value> {
    let rows = shop.json("GET", "/api/queries?limit=1000");
    rows.as_array()
        .expect("a list of rows")
        .iter()
        .find(|r| r["fingerprint"] == fp.to_string())
        .cloned()
}

/// `pgshape_rewrites_total{rule, fingerprint = fp, outcome = "applied"}`.
fn applied_metric(shop: &Shop, fp: Fingerprint) -> f64 {
    let (status, metrics) = support::http(shop.admin(), "GET", "/metrics");
    assert_eq!(status, 200, "{metrics}");
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("pgshape_rewrites_total{")
                && l.contains(&format!("rule=\"{RULE}\""))
                && l.contains(&format!("fingerprint=\"{fp}\""))
                && l.contains("outcome=\"applied\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Everything a battery's output must show (the tests add driver-specific checks).
fn check(shop: &Shop, doc: &Value) {
    let driver = doc["driver"].as_str().expect("driver");

    // The batteries sent the shapes pgshape was asked about.
    for (form, fp) in [("incident", fp_incident()), ("count", fp_count())] {
        let sent = doc["sent"][form].as_array().expect("sent texts");
        assert!(!sent.is_empty(), "{driver}: no {form} statements");
        for sql in sent {
            let sql = sql.as_str().unwrap();
            assert_eq!(fingerprint(sql.as_bytes()), fp, "{driver}: {sql}");
        }
        let plan = shop.wait_plan(RULE, fp);
        assert_eq!(plan["state"], "ready", "{driver}: {plan:#}");
        assert_eq!(plan["described"], true, "{driver}: {plan:#}");
    }

    // Identical results and metadata, and not vacuously: every case has rows.
    let direct = doc["direct"]["results"]
        .as_object()
        .expect("direct results");
    let proxied = doc["proxied"]["results"]
        .as_object()
        .expect("proxied results");
    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(direct), keys(proxied), "{driver}: result keys differ");
    let mut differ = Vec::new();
    for (key, want) in direct {
        let got = &proxied[key];
        if got != want {
            differ.push(format!("{key}:\n  direct  {want}\n  proxied {got}"));
        }
        if let Some(rows) = want.get("rows") {
            assert!(
                !rows.as_array().expect("rows").is_empty(),
                "{driver}: {key} returned no rows"
            );
        }
    }
    assert!(
        differ.is_empty(),
        "{driver}: results through pgshape differ from direct:\n{}",
        differ.join("\n")
    );
    assert!(direct.len() >= 8, "{driver}: only {} results", direct.len());

    // What the server ran: the original directly, the EXISTS form through pgshape; `$n` in the
    // text exactly when the driver bound parameters.
    for side in ["direct", "proxied"] {
        let ran = doc[side]["server_ran"].as_object().expect("server_ran");
        assert!(
            ran.keys().all(|k| direct.contains_key(k)),
            "{driver}: server_ran entries without a result"
        );
        assert!(
            ran.len() >= 8,
            "{driver}: only {} server_ran entries",
            ran.len()
        );
        for (key, entry) in ran {
            let text = entry["text"].as_str().expect("text");
            let bound = entry["params"].as_bool().expect("params");
            assert_eq!(
                text.contains("$1"),
                bound,
                "{driver} {side} {key}: parameters as sent? {text}"
            );
            if !bound {
                assert!(text.contains("IN ('"), "{driver} {side} {key}: {text}");
            }
            let rewritten = text.contains("EXISTS (SELECT 1 FROM \"shop_orderitem\"");
            assert_eq!(
                rewritten,
                side == "proxied",
                "{driver} {side} {key}: the server ran {text}"
            );
            assert_eq!(
                text.contains("INNER JOIN"),
                side == "direct",
                "{driver} {side} {key}: the server ran {text}"
            );
        }
    }

    // pgshape's own account: the warm-up ran as sent, every measured execution rewritten.
    for (form, fp) in [("incident", fp_incident()), ("count", fp_count())] {
        let warm = doc["executions"]["warm"][form].as_u64().unwrap();
        let measured = doc["executions"]["measured"][form].as_u64().unwrap();
        assert_eq!(warm, 1, "{driver}: one {form} execution starts the proof");
        assert!(measured >= 4, "{driver}: {measured} {form} executions");
        // Statistics are recorded as replies pass: wait for the last ones.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let row = query_row(shop, fp);
            let counted = row.as_ref().and_then(|r| {
                let rw = r.get("rewrite")?;
                Some((
                    rw["calls_rewritten"].as_u64()?,
                    rw["original"]["calls"].as_u64()?,
                    rw["rule"].as_str()? == RULE,
                ))
            });
            if counted == Some((measured, warm, true)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{driver} {form}: expected {measured} rewritten and {warm} original calls of \
                 {RULE}, row: {row:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let applied = applied_metric(shop, fp);
        assert!(
            applied >= 1.0,
            "{driver} {form}: pgshape_rewrites_total applied = {applied}"
        );
    }
}

#[test]
fn psycopg2_literals_incident_and_count_rewritten_results_identical() {
    let shop = Shop::start("rewrite", &[]);
    let doc = python_battery(&shop, "rewrite_psycopg2.py", Dsn::Libpq);
    check(&shop, &doc);
    // Simple protocol: one rewritten Query per execution.
    for (form, fp) in [("incident", fp_incident()), ("count", fp_count())] {
        assert_eq!(
            applied_metric(&shop, fp),
            doc["executions"]["measured"][form].as_f64().unwrap(),
            "{form}"
        );
    }
}

#[test]
fn psycopg3_server_side_binding_incident_and_count_rewritten_results_identical() {
    let shop = Shop::start("rewrite", &[]);
    let doc = python_battery(&shop, "rewrite_psycopg3.py", Dsn::Libpq);
    check(&shop, &doc);
    let results = &doc["direct"]["results"];
    assert_eq!(
        results["unnamed/prepared_statements"], 0,
        "prepare_threshold=None: unnamed statements only"
    );
    for mode in ["prepared", "prepared_binary"] {
        assert!(
            results[format!("{mode}/prepared_statements")].as_u64() > Some(0),
            "prepare_threshold=0: named statements ({mode})"
        );
    }
}

#[test]
fn asyncpg_prepared_incident_and_count_rewritten_results_identical() {
    let shop = Shop::start("rewrite", &[]);
    let doc = python_battery(&shop, "rewrite_asyncpg.py", Dsn::Url);
    check(&shop, &doc);
}

#[test]
fn pgjdbc_prepared_named_and_literal_incident_and_count_rewritten_results_identical() {
    let shop = Shop::start("rewrite", &[]);
    let doc = jdbc_battery(&shop);
    check(&shop, &doc);
    let results = &doc["direct"]["results"];
    // The 7-times statements crossed prepareThreshold (named statements); the rest stayed
    // unnamed.
    assert_eq!(results["prepared/incident/2/server_prepared"], true);
    assert_eq!(results["prepared/count/2/server_prepared"], true);
    assert_eq!(results["prepared/incident/1/server_prepared"], false);
}
