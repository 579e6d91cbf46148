//! The exposition as Prometheus reads it: top-K folding, the series bound, escaping, promtool.

use std::sync::Arc;

use crate::sql::Fingerprint;
use crate::stats::tests::{Fixture, config, promtool_check, scrape};
use crate::stats::{Stats, StatsConfig};

#[test]
fn top_k_folds_the_rest_into_other() {
    let f = Fixture::new();
    let stats = Arc::new(Stats::new(config(5_000, 5)));
    for fp in 1..=20u64 {
        // Shape n has n calls of n ms: total time grows with n, so 16..=20 are the top 5.
        for _ in 0..fp {
            f.run(&*stats, fp, "SELECT 1", fp * 1_000, 2, None);
        }
    }
    let text = scrape(&stats);
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pgshape_query_duration_seconds_count"))
        .collect();
    assert_eq!(counts.len(), 6, "{counts:?}");
    for fp in 16..=20u64 {
        let name = Fingerprint(fp).to_string();
        assert!(counts.iter().any(|l| l.contains(&name)), "{name} missing");
    }
    // The other series carries shapes 1..=15: 120 calls.
    assert!(
        counts
            .iter()
            .any(|l| l.contains(r#"fingerprint="other""#) && l.ends_with(" 120")),
        "{counts:?}"
    );
    assert_eq!(text.matches("pgshape_query_info{").count(), 5);
}

#[test]
fn series_stay_bounded_with_ten_thousand_fingerprints() {
    let f = Fixture::new();
    let (max, k) = (5_000, 200);
    let stats = Arc::new(Stats::new(config(max, k)));
    for fp in 0..10_000u64 {
        f.run(
            &*stats,
            fp,
            "SELECT 1 FROM t WHERE a = 1",
            100 + fp,
            1,
            Some(b"57014"),
        );
    }
    assert!(stats.len() <= max);
    let text = scrape(&stats);
    let series = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    let buckets = stats.config().histogram_buckets_ms.len() + 1;
    // K own series plus one `other` for the single (database, user).
    assert_eq!(series("pgshape_query_duration_seconds_count"), k + 1);
    assert_eq!(
        series("pgshape_query_duration_seconds_bucket"),
        (k + 1) * buckets
    );
    assert_eq!(series("pgshape_query_calls_total"), k + 1);
    assert_eq!(series("pgshape_query_errors_total"), k + 1);
    assert_eq!(series("pgshape_query_info"), k);
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    let bound = (k + 1) * (buckets + 2 + 3) + k + 2;
    assert!(samples <= bound, "{samples} samples > bound {bound}");
}

#[test]
fn exposition_escapes_query_text() {
    let f = Fixture::new();
    let stats = Arc::new(Stats::new(StatsConfig::default()));
    f.run(&*stats, 5, "SELECT \"we\\ird\"\nFROM t", 10, 0, None);
    let text = scrape(&stats);
    // Quotes and backslashes escaped (the normalizer already folded the newline).
    assert!(
        text.contains(r#"query="SELECT \"we\\ird\" FROM t""#),
        "{text}"
    ); // A newline inside a quoted identifier survives normalization and must be escaped.
    f.run(&*stats, 6, "SELECT \"line\nbreak\"", 10, 0, None);
    let text = scrape(&stats);
    assert!(text.contains(r#"query="SELECT \"line\nbreak\"""#), "{text}");
}

#[test]
fn promtool_accepts_the_exposition() {
    let f = Fixture::new();
    let stats = Arc::new(Stats::new(config(50, 10)));
    for fp in 0..100u64 {
        let sql = format!("SELECT \"c\" FROM t WHERE x = '{fp}'\n /*route='%2Fa%22b'*/");
        f.run(
            &*stats,
            fp,
            &sql,
            100 * fp + 7,
            fp,
            (fp % 7 == 0).then_some(b"23505"),
        );
    }
    let text = scrape(&stats);
    promtool_check(&text);
}

#[test]
fn one_info_series_per_fingerprint_across_databases() {
    let stats = Arc::new(Stats::new(StatsConfig::default()));
    let mut f = Fixture::new();
    for db in ["app", "reports", "archive"] {
        f.session.database = db.into();
        f.run(&*stats, 77, "SELECT 1", 100, 1, None);
    }
    let text = scrape(&stats);
    assert_eq!(text.matches("pgshape_query_info{").count(), 1, "{text}");
    assert_eq!(text.matches("pgshape_query_calls_total{").count(), 3);
    promtool_check(&text);
}
