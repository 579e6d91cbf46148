//! The regression gate as CI runs it: a workload through a real pgshape in front of a real
//! PostgreSQL, `pgshape snapshot` after each run, `pgshape diff` between them. A second run
//! where one shape got slower and another is newly hit by a rule fails the gate naming both; a
//! run of the same workload passes.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::app::AppUnderTest;
use support::psql;

const SCHEMA: &str = "CREATE TABLE items(id int primary key, name text not null); \
     INSERT INTO items SELECT g, 'item' || g FROM generate_series(1, 1000) g";

/// Calls of each shape per run: above the default --min-calls so latency is judged.
const CALLS: usize = 60;

/// Same thresholds for every diff here. The noise floor is what a shared two-core CI machine
/// needs for `pg_sleep(0.005)` to time alike twice; the regression below is 20 times larger.
const LIMITS: [&str; 2] = ["--min-increase-ms", "25"];

/// The workload of one run: a point lookup and a sleep of `sleep_s`, `CALLS` times each, plus
/// `extra` statements.
fn workload(sleep_s: f64, extra: &str) -> String {
    let mut sql = String::new();
    for i in 0..CALLS {
        sql.push_str(&format!("SELECT name FROM items WHERE id = {};\n", i + 1));
        sql.push_str(&format!("SELECT pg_sleep({sleep_s});\n"));
    }
    sql.push_str(extra);
    sql
}

/// Runs `sql` through a fresh pgshape and writes its snapshot to `out`.
fn run(db: Option<&support::ConnParams>, sql: &str, out: &Path) -> support::ConnParams {
    let served = match db {
        Some(db) => AppUnderTest::start_on(db.clone()),
        None => AppUnderTest::start(SCHEMA),
    };
    psql(
        &served.via(),
        &["-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        Some(sql),
    )
    .assert_success();
    served.wait_calls(sql.lines().count() as u64);
    let snap = pgshape(&[
        "snapshot",
        "--admin",
        &served.admin_url(),
        "--database",
        &served.db.dbname,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(snap.status.success(), "{}", text(&snap.stderr));
    served.db.clone()
}

fn pgshape(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgshape"))
        .args(args)
        .output()
        .expect("run pgshape")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn diff(before: &Path, after: &Path, format: &str) -> Output {
    let mut args = vec![
        "diff",
        before.to_str().unwrap(),
        after.to_str().unwrap(),
        "--format",
        format,
    ];
    args.extend(LIMITS);
    pgshape(&args)
}

#[test]
fn a_slower_shape_and_a_new_rule_hit_fail_the_gate_and_a_rerun_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (before, same, worse) = (
        dir.path().join("before.json"),
        dir.path().join("same.json"),
        dir.path().join("worse.json"),
    );
    let db = run(None, &workload(0.005, ""), &before);
    run(Some(&db), &workload(0.005, ""), &same);
    run(
        Some(&db),
        &workload(
            0.1,
            "SELECT id FROM items ORDER BY random() LIMIT 1;\n\
             SELECT id FROM items ORDER BY random() LIMIT 1;\n",
        ),
        &worse,
    );

    // The snapshot holds what the comparison needs, per shape.
    let snap: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&before).unwrap()).unwrap();
    assert_eq!(snap["pgshape_snapshot"], 1);
    let shapes = snap["shapes"].as_array().unwrap();
    let sleep = shapes
        .iter()
        .find(|s| s["query"].as_str().unwrap_or("").contains("pg_sleep"))
        .unwrap_or_else(|| panic!("no pg_sleep shape in {snap}"));
    assert_eq!(sleep["calls"], CALLS as u64);
    for field in ["total_ms", "mean_ms", "p95_ms", "rows", "errors", "rules"] {
        assert!(sleep.get(field).is_some(), "no {field} in {sleep}");
    }
    let counted: u64 = sleep["histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, CALLS as u64);
    let sleep_fp = sleep["fingerprint"].as_str().unwrap();

    // The same workload again passes.
    let out = diff(&before, &same, "table");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("pgshape diff: 0 regressed"));

    // The slower sleep and the ORDER BY random() fail it, each with its reason.
    let out = diff(&before, &worse, "table");
    let report = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.starts_with("pgshape diff: 2 regressed, 0 new"),
        "{report}"
    );
    assert!(
        report.contains(&format!("REGRESSED {sleep_fp} SELECT pg_sleep($1)")),
        "{report}"
    );
    assert!(report.contains("  - p95 "), "{report}");
    assert!(
        report.contains("  - newly hit by rule order-by-random"),
        "{report}"
    );
    assert!(report.contains("ORDER BY random()"), "{report}");

    let out = diff(&before, &worse, "json");
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["regressions"], 2);
    let out = diff(&before, &worse, "markdown");
    let md = text(&out.stdout);
    assert!(
        md.starts_with("### pgshape diff: ❌ 2 query shapes regressed"),
        "{md}"
    );
    assert!(
        md.contains(&format!("| **regressed** | `{sleep_fp}` |")),
        "{md}"
    );

    // A file that is not a snapshot is an error (2), not a verdict.
    let out = pgshape(&["diff", before.to_str().unwrap(), "Cargo.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}
