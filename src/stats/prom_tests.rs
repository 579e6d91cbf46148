//! The exposition as Prometheus reads it: top-K folding, the series bound, escaping, promtool.

use std::sync::Arc;

use crate::sql::Fingerprint;
use crate::stats::snapshot::OTHER;
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

/// The OpenMetrics exposition of `stats` alone, with its exemplars.
fn scrape_openmetrics(stats: &Arc<Stats>) -> String {
    let registry = prometheus::Registry::new();
    stats.register(&registry).expect("register");
    let families = registry.gather();
    let mut out = String::new();
    crate::openmetrics::encode(&families, &stats.exemplars(&families), &mut out);
    out
}

fn traced(trace: u64) -> String {
    format!("SELECT 1 /*route='r',traceparent='00-{trace:032x}-00f067aa0ba902b7-01'*/")
}

#[test]
fn each_series_carries_the_trace_of_its_slowest_statement() {
    let f = Fixture::new();
    let stats = Arc::new(Stats::new(config(5_000, 2)));
    // Shapes 1..=4; 3 and 4 have the most total time and keep their own series.
    for fp in 1..=4u64 {
        for i in 0..3u64 {
            // Trace id 10·fp + i; the slowest statement of shape fp is i = 1.
            let micros = fp * 100_000 + if i == 1 { 50_000 } else { i * 1_000 };
            f.run(&*stats, fp, &traced(10 * fp + i), micros, 1, None);
        }
    }
    // A shape without a traceparent gets no exemplar.
    let mut plain = Fixture::new();
    plain.session.database = "plain".into();
    plain.run(&*stats, 9, "SELECT 2", 900_000, 1, None);

    let text = scrape_openmetrics(&stats);
    let exemplar_lines: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
    // Shapes 3 and 4, and `other` of database app; `other` of database plain has no trace.
    assert_eq!(exemplar_lines.len(), 3, "{text}");
    let line_of = |fingerprint: &str| {
        exemplar_lines
            .iter()
            .find(|l| l.contains(&format!("fingerprint=\"{fingerprint}\"")))
            .unwrap_or_else(|| panic!("no exemplar for {fingerprint}:\n{text}"))
    };
    for fp in [3u64, 4] {
        let line = line_of(&Fingerprint(fp).to_string());
        assert!(
            line.contains(&format!("trace_id=\"{:032x}\"", 10 * fp + 1)),
            "{line}"
        );
        // Shape 3's slowest took 0.35 s, shape 4's 0.45 s: both in the (0.25, 0.5] bucket.
        assert!(line.contains("le=\"0.5\""), "{line}");
    }
    // `other` (shapes 1 and 2) carries the slower of the two: shape 2's, 0.25 s.
    let other = line_of(OTHER);
    assert!(
        other.contains(&format!("trace_id=\"{:032x}\"", 21)),
        "{other}"
    );
    assert!(
        other.contains("le=\"0.25\"") && other.contains("} 0.25 "),
        "{other}"
    );
    assert!(
        exemplar_lines
            .iter()
            .all(|l| !l.contains("database=\"plain\""))
    );
}

#[test]
fn a_traceparent_that_is_not_w3c_gives_no_exemplar() {
    let f = Fixture::new();
    let stats = Arc::new(Stats::new(StatsConfig::default()));
    f.run(
        &*stats,
        1,
        "SELECT 1 /*traceparent='00-bbb-01-01'*/",
        10,
        1,
        None,
    );
    let text = scrape_openmetrics(&stats);
    assert!(
        text.contains("pgshape_query_duration_seconds_count{"),
        "{text}"
    );
    assert!(!text.contains(" # {"), "{text}");
}
