//! The comparison on hand-built snapshots.

use super::*;
use crate::admin::rows::{Bucket, Row};

/// A row of `calls` executions all in the bucket starting at `ms`.
fn row(fp: &str, calls: u64, ms: f64, rows: u64) -> Row {
    Row {
        fingerprint: fp.into(),
        query: format!("SELECT * FROM t_{fp} WHERE id = $1"),
        database: "ci".into(),
        user: "app".into(),
        calls,
        rows,
        total_ms: calls as f64 * ms,
        mean_ms: ms,
        p95_ms: ms,
        histogram: vec![Bucket {
            lower_ms: ms,
            upper_ms: ms * 1.015625,
            count: calls,
        }],
        ..Row::default()
    }
}

fn snap(shapes: Vec<Row>) -> Snapshot {
    Snapshot {
        pgshape_snapshot: FORMAT_VERSION,
        taken_at: "2026-11-30T00:00:00.000Z".into(),
        admin: "http://127.0.0.1:9187".into(),
        shapes,
    }
}

fn status_of(r: &Report, fp: &str) -> Status {
    r.changes
        .iter()
        .find(|c| c.fingerprint == fp)
        .map(|c| c.status)
        .unwrap()
}

#[test]
fn same_run_passes() {
    let s = snap(vec![row("a", 100, 2.0, 100), row("b", 60, 10.0, 600)]);
    let r = diff(&s, &s, &Thresholds::default());
    assert!(!r.failed());
    assert_eq!(r.count(Status::Unchanged), 2);
    assert!(render_table(&r).starts_with("pgshape diff: 0 regressed"));
    assert!(render_markdown(&r).contains("✅ no query shape regressed"));
}

#[test]
fn slower_p95_more_rows_and_new_rule_hits_fail_with_reasons() {
    let before = snap(vec![
        row("a", 100, 2.0, 100),
        row("b", 100, 10.0, 100),
        row("c", 100, 1.0, 100),
        row("gone", 10, 1.0, 10),
    ]);
    let mut hit = row("c", 100, 1.0, 100);
    hit.rules = vec!["unbounded-select".into()];
    let mut fresh = row("fresh", 3, 1.0, 3);
    fresh.rules = vec!["n-plus-one".into()];
    let after = snap(vec![
        row("a", 100, 30.0, 100),
        row("b", 100, 10.0, 500),
        hit,
        fresh,
        row("quiet-new", 5, 1.0, 5),
    ]);
    let limits = Thresholds {
        mean: Some(0.2),
        ..Thresholds::default()
    };
    let r = diff(&before, &after, &limits);
    assert!(r.failed());
    assert_eq!(r.regressions, 4, "{r:#?}");
    let a = &r.changes.iter().find(|c| c.fingerprint == "a").unwrap();
    assert!(
        a.reasons
            .iter()
            .any(|w| w.starts_with("p95 2.02 ms -> 30.23 ms")),
        "{a:?}"
    );
    assert!(
        a.reasons
            .iter()
            .any(|w| w.starts_with("mean 2.00 ms -> 30.00 ms"))
    );
    let b = &r.changes.iter().find(|c| c.fingerprint == "b").unwrap();
    assert_eq!(b.reasons, ["rows per call 1.0 -> 5.0 (+400%, limit +20%)"]);
    let c = &r.changes.iter().find(|c| c.fingerprint == "c").unwrap();
    assert_eq!(c.new_rules, ["unbounded-select"]);
    // A new shape with a rule hit fails whatever its call count; one without is reported.
    assert_eq!(status_of(&r, "fresh"), Status::Regressed);
    assert_eq!(status_of(&r, "quiet-new"), Status::New);
    assert_eq!(status_of(&r, "gone"), Status::Vanished);
    assert_eq!(r.changes[0].status, Status::Regressed, "regressions first");

    let table = render_table(&r);
    assert!(
        table.contains("REGRESSED a SELECT * FROM t_a WHERE id = $1"),
        "{table}"
    );
    assert!(
        table.contains("  - newly hit by rule unbounded-select"),
        "{table}"
    );
    let md = render_markdown(&r);
    assert!(
        md.starts_with("### pgshape diff: ❌ 4 query shapes regressed"),
        "{md}"
    );
    assert!(md.contains("| **regressed** | `a` | 100 → 100 |"), "{md}");
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["regressions"], 4);
    assert_eq!(json["changes"][0]["status"], "regressed");
}

#[test]
fn few_calls_small_changes_and_switched_off_limits_do_not_fail() {
    let before = snap(vec![row("few", 10, 1.0, 10), row("tiny", 100, 0.05, 100)]);
    let after = snap(vec![row("few", 10, 50.0, 10), row("tiny", 100, 0.5, 100)]);
    let r = diff(&before, &after, &Thresholds::default());
    assert!(!r.failed(), "{r:#?}");
    // With the floors lowered, both count.
    let strict = Thresholds {
        min_calls: 1,
        min_increase_ms: 0.0,
        ..Thresholds::default()
    };
    assert_eq!(diff(&before, &after, &strict).regressions, 2);
    let off = Thresholds {
        p95: None,
        ..strict.clone()
    };
    assert!(!diff(&before, &after, &off).failed());
    // Faster by more than the limit reads as improved.
    assert_eq!(
        status_of(&diff(&after, &before, &strict), "few"),
        Status::Improved
    );
}

#[test]
fn calls_growth_fails_only_when_asked() {
    let before = snap(vec![row("n1", 10, 1.0, 10)]);
    let after = snap(vec![row("n1", 500, 1.0, 500)]);
    assert!(!diff(&before, &after, &Thresholds::default()).failed());
    let limits = Thresholds {
        calls: Some(1.0),
        ..Thresholds::default()
    };
    let r = diff(&before, &after, &limits);
    assert_eq!(
        r.changes[0].reasons,
        ["calls per run 10 -> 500 (+4900%, limit +100%)"]
    );
}

#[test]
fn entries_of_one_shape_are_summed_and_other_is_left_out() {
    let mut reports = row("a", 100, 100.0, 100);
    reports.database = "reports".into();
    let mut other = row("x", 1000, 1.0, 1);
    other.fingerprint = "other".into();
    let before = snap(vec![row("a", 100, 1.0, 100), other.clone()]);
    let after = snap(vec![row("a", 100, 1.0, 100), reports, other]);
    let r = diff(&before, &after, &Thresholds::default());
    assert_eq!(r.changes.len(), 1);
    let a = &r.changes[0];
    assert_eq!(a.after.as_ref().map(|f| f.calls), Some(200));
    // Half the calls at 100 ms: the summed histogram's p95 is there, not at 1 ms.
    assert!(a.after.as_ref().unwrap().p95_ms > 100.0);
    assert_eq!(a.databases.len(), 2);
    assert!(r.failed());
}

#[test]
fn snapshot_files_round_trip_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    let s = snap(vec![row("a", 1, 1.0, 1)]);
    s.write(&path).unwrap();
    assert_eq!(Snapshot::read(&path).unwrap().shapes, s.shapes);
    std::fs::write(&path, "[]").unwrap();
    let err = Snapshot::read(&path).unwrap_err().to_string();
    assert!(err.contains("not a pgshape snapshot"), "{err}");
    std::fs::write(&path, r#"{"pgshape_snapshot": 99}"#).unwrap();
    let err = Snapshot::read(&path).unwrap_err().to_string();
    assert!(err.contains("version 99"), "{err}");
}
