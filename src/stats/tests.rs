//! Tests of the statistics as a whole: recording, eviction, folding, exports, slow log.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prometheus::{Encoder, Registry, TextEncoder};

use super::snapshot::rfc3339;
use super::*;
use crate::event::{Protocol, SessionInfo, StatementText};

pub(crate) struct Fixture {
    pub session: SessionInfo,
    pub start: Instant,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            session: SessionInfo {
                database: "app".into(),
                user: "web".into(),
                application_name: "django".into(),
                client_addr: "10.0.0.7:51000".parse().ok(),
            },
            start: Instant::now(),
        }
    }

    /// Feeds one statement of shape `fp` to `obs`, finishing `micros` after the start.
    pub fn run(
        &self,
        obs: &dyn StatementObserver,
        fp: u64,
        sql: &str,
        micros: u64,
        rows: u64,
        sqlstate: Option<&[u8; 5]>,
    ) {
        self.run_at(obs, fp, sql, micros, micros, rows, sqlstate);
    }

    /// As [`Fixture::run`], finishing `at_micros` after the start.
    #[allow(clippy::too_many_arguments)]
    pub fn run_at(
        &self,
        obs: &dyn StatementObserver,
        fp: u64,
        sql: &str,
        micros: u64,
        at_micros: u64,
        rows: u64,
        sqlstate: Option<&[u8; 5]>,
    ) {
        let text = Arc::new(StatementText {
            sql: Bytes::copy_from_slice(sql.as_bytes()),
            fingerprint: Some(Fingerprint(fp)),
            rewritten_by: None,
            shadow: None,
            bind: Default::default(),
        });
        let event = StatementEvent {
            session: &self.session,
            statement: &text,
            protocol: Protocol::Simple,
            duration: Duration::from_micros(micros),
            finished_at: self.start + Duration::from_micros(at_micros),
            rows,
            command: if sqlstate.is_some() { "" } else { "SELECT" },
            sqlstate: sqlstate.copied(),
            in_transaction: false,
        };
        obs.on_statement(&event);
    }
}

pub(crate) fn config(max: usize, top_k: usize) -> StatsConfig {
    StatsConfig {
        max_fingerprints: max,
        top_k,
        ..StatsConfig::default()
    }
}

fn row(stats: &Stats, fp: u64) -> QueryStats {
    let name = Fingerprint(fp).to_string();
    stats
        .snapshot()
        .into_iter()
        .find(|r| r.fingerprint == name)
        .unwrap_or_else(|| panic!("no row for {name}"))
}

pub(crate) fn scrape(stats: &Arc<Stats>) -> String {
    let registry = Registry::new();
    stats.register(&registry).expect("register");
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encode");
    String::from_utf8(out).expect("utf-8 exposition")
}

#[test]
fn moments_match_exact_values() {
    let f = Fixture::new();
    let stats = Stats::new(StatsConfig::default());
    let times = [120u64, 450, 80, 3_000, 999, 1_500, 42];
    for (i, t) in times.iter().enumerate() {
        f.run(
            &stats,
            1,
            "SELECT * FROM t WHERE id = 5",
            *t,
            i as u64,
            None,
        );
    }
    let r = row(&stats, 1);
    let n = times.len() as f64;
    let mean = times.iter().sum::<u64>() as f64 / n;
    let var = times
        .iter()
        .map(|t| (*t as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    assert_eq!(r.calls, 7);
    assert_eq!(r.rows, 21);
    assert!((r.mean_ms - mean / 1e3).abs() < 1e-9);
    assert!(
        (r.stddev_ms - var.sqrt() / 1e3).abs() < 1e-9,
        "{} vs {}",
        r.stddev_ms,
        var.sqrt() / 1e3
    );
    assert!((r.min_ms - 0.042).abs() < 1e-12 && (r.max_ms - 3.0).abs() < 1e-12);
    assert!((r.total_ms - 6.191).abs() < 1e-9);
    assert!((r.p50_ms - 0.450).abs() / 0.450 <= 0.01, "p50 {}", r.p50_ms);
    assert_eq!(r.command, "SELECT");
    assert_eq!(r.database, "app");
    assert_eq!(r.user, "web");
    // Normalized once, without the literal.
    assert!(!r.query.contains('5') && r.query.starts_with("SELECT * FROM t WHERE id ="));
}

#[test]
fn errors_are_counted_by_sqlstate_class() {
    let f = Fixture::new();
    let stats = Stats::new(StatsConfig::default());
    f.run(&stats, 9, "INSERT INTO t VALUES (1)", 10, 0, Some(b"23505"));
    f.run(&stats, 9, "INSERT INTO t VALUES (1)", 10, 0, Some(b"23503"));
    f.run(&stats, 9, "INSERT INTO t VALUES (1)", 10, 0, Some(b"40001"));
    f.run(&stats, 9, "INSERT INTO t VALUES (1)", 10, 1, None);
    let r = row(&stats, 9);
    assert_eq!(r.calls, 4);
    assert_eq!(r.errors.get("23"), Some(&2));
    assert_eq!(r.errors.get("40"), Some(&1));
    assert_eq!(r.error_count(), 3);
    let text = scrape(&Arc::new(stats));
    assert!(text.contains(r#"sqlstate_class="23"} 2"#), "{text}");
}

#[test]
fn django_route_and_slowest_traceparent() {
    let f = Fixture::new();
    let stats = Stats::new(StatsConfig::default());
    let sql = |route: &str, tp: &str| {
        format!("SELECT 1 /*controller='orders',route='{route}',traceparent='{tp}'*/")
    };
    f.run(
        &stats,
        3,
        &sql("%5Eorders%2F", "00-aaa-01-01"),
        100,
        1,
        None,
    );
    f.run(
        &stats,
        3,
        &sql("%5Eorders%2F", "00-bbb-01-01"),
        900,
        1,
        None,
    );
    f.run(&stats, 3, &sql("%5Eusers%2F", "00-ccc-01-01"), 200, 1, None);
    let r = row(&stats, 3);
    assert_eq!(r.routes[0].tag, "controller", "most frequent first");
    assert_eq!(r.routes[0].count, 3);
    let route = |v: &str| {
        r.routes
            .iter()
            .find(|x| x.tag == "route" && x.value == v)
            .map(|x| x.count)
    };
    assert_eq!(route("^orders/"), Some(2));
    assert_eq!(route("^users/"), Some(1));
    assert_eq!(r.traceparent.as_deref(), Some("00-bbb-01-01"));
    assert!((r.traceparent_ms.unwrap_or(0.0) - 0.9).abs() < 1e-9);
}

#[test]
fn routes_are_capped_and_keep_the_heavy_hitter() {
    let f = Fixture::new();
    let stats = Stats::new(StatsConfig {
        max_routes: 3,
        ..StatsConfig::default()
    });
    for _ in 0..50 {
        f.run(&stats, 4, "SELECT 1 /*route='hot'*/", 10, 0, None);
    }
    for i in 0..40 {
        f.run(
            &stats,
            4,
            &format!("SELECT 1 /*route='cold{i}'*/"),
            10,
            0,
            None,
        );
    }
    let r = row(&stats, 4);
    assert_eq!(r.routes.len(), 3);
    assert_eq!(r.routes[0].value, "hot");
    assert_eq!(r.routes[0].count, 50);
}

#[test]
fn exemplar_is_replaced_once_it_is_older_than_the_window() {
    let f = Fixture::new();
    let stats = Stats::new(StatsConfig {
        exemplar_window_s: 1,
        ..StatsConfig::default()
    });
    let sql = |tp: &str| format!("SELECT 1 /*traceparent='{tp}'*/");
    let ms = 1_000;
    f.run_at(
        &stats,
        12,
        &sql("00-slow-01-01"),
        900 * ms,
        1_000 * ms,
        0,
        None,
    );
    f.run_at(
        &stats,
        12,
        &sql("00-fast-01-01"),
        100 * ms,
        1_500 * ms,
        0,
        None,
    );
    assert_eq!(
        row(&stats, 12).traceparent.as_deref(),
        Some("00-slow-01-01"),
        "a faster one does not replace a recent slow one"
    );
    f.run_at(
        &stats,
        12,
        &sql("00-slower-01-01"),
        950 * ms,
        1_600 * ms,
        0,
        None,
    );
    assert_eq!(
        row(&stats, 12).traceparent.as_deref(),
        Some("00-slower-01-01")
    );
    // More than the 1 s window after the exemplar, even a fast statement replaces it.
    f.run_at(
        &stats,
        12,
        &sql("00-later-01-01"),
        100 * ms,
        2_700 * ms,
        0,
        None,
    );
    assert_eq!(
        row(&stats, 12).traceparent.as_deref(),
        Some("00-later-01-01")
    );
    assert_eq!(row(&stats, 12).traceparent_ms, Some(100.0));
}

#[test]
fn tag_values_are_capped() {
    let f = Fixture::new();
    let stats = Stats::new(StatsConfig::default());
    let long = "é".repeat(10_000);
    for _ in 0..2 {
        f.run(
            &stats,
            8,
            &format!("SELECT 1 /*route='{long}',traceparent='{long}'*/"),
            10,
            0,
            None,
        );
    }
    let r = row(&stats, 8);
    assert_eq!(r.routes.len(), 1, "capped values still compare equal");
    assert_eq!(r.routes[0].count, 2);
    assert!(r.routes[0].value.len() <= entry::MAX_TAG_VALUE);
    assert!(
        r.traceparent
            .is_some_and(|t| t.len() <= entry::MAX_TAG_VALUE)
    );
}

#[test]
fn eviction_bounds_entries_and_keeps_every_call() {
    let f = Fixture::new();
    let stats = Stats::new(config(100, 200));
    for _ in 0..50 {
        f.run(&stats, 0xbeef, "SELECT hot", 10, 1, None);
    }
    for fp in 0..1_000u64 {
        f.run(&stats, fp + 1_000_000, "SELECT x", 10, 1, None);
        assert!(stats.len() <= 100);
    }
    assert!(stats.evictions() >= 900, "evictions {}", stats.evictions());
    let rows = stats.snapshot();
    let calls: u64 = rows.iter().map(|r| r.calls).sum();
    assert_eq!(calls, 1_050, "no call is lost by eviction");
    let other = rows.iter().find(|r| r.fingerprint == "other");
    assert!(other.is_some_and(|o| o.calls >= 900));
    // The much-used entry is not the one evicted.
    assert_eq!(row(&stats, 0xbeef).calls, 50);
    let other = stats.detail_other();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].stats.fingerprint, "other");
    let folded: u64 = other[0].histogram.iter().map(|b| b.count).sum();
    assert_eq!(folded, other[0].stats.calls, "histograms are folded too");
    let text = scrape(&Arc::new(stats));
    assert!(text.contains("pgshape_stats_evictions_total "), "{text}");
}

/// Runs `promtool check metrics`; fails (not skips) when promtool is missing, so CI without
/// it cannot pass silently.
pub(crate) fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool not runnable ({e}); install it: `apt-get install -y prometheus` \
             (Debian/Ubuntu) or put promtool from a Prometheus release on PATH"
        ),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).expect("write to promtool");
    }
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn reset_forgets_everything_but_evictions() {
    let f = Fixture::new();
    let stats = Stats::new(config(2, 200));
    for fp in 0..5 {
        f.run(&stats, fp, "SELECT 1", 10, 0, None);
    }
    let evicted = stats.evictions();
    assert!(evicted > 0 && !stats.is_empty());
    stats.reset();
    assert!(stats.is_empty());
    assert!(stats.snapshot().is_empty());
    assert_eq!(stats.evictions(), evicted);
}

#[test]
fn detail_has_histogram_buckets() {
    let f = Fixture::new();
    let stats = Stats::new(StatsConfig::default());
    for t in [100, 100, 5_000] {
        f.run(&stats, 6, "SELECT 1", t, 0, None);
    }
    let d = stats.detail(Fingerprint(6));
    assert_eq!(d.len(), 1);
    let h = &d[0].histogram;
    assert_eq!(h.iter().map(|b| b.count).sum::<u64>(), 3);
    assert!(
        h.iter()
            .any(|b| b.count == 2 && b.lower_ms <= 0.1 && 0.1 < b.upper_ms)
    );
    assert!(stats.detail(Fingerprint(7)).is_empty());
}

#[test]
fn none_fingerprint_is_computed_not_dropped() {
    let f = Fixture::new();
    let stats = Stats::new(StatsConfig::default());
    let text = Arc::new(StatementText {
        sql: Bytes::from_static(b"SELECT 1"),
        fingerprint: None,
        rewritten_by: None,
        shadow: None,
        bind: Default::default(),
    });
    let event = StatementEvent {
        session: &f.session,
        statement: &text,
        protocol: Protocol::Extended,
        duration: Duration::from_micros(5),
        finished_at: f.start,
        rows: 1,
        command: "SELECT",
        sqlstate: None,
        in_transaction: false,
    };
    stats.on_statement(&event);
    let expected = crate::sql::fingerprint(b"SELECT 1").to_string();
    assert_eq!(stats.snapshot()[0].fingerprint, expected);
}

#[test]
fn rfc3339_formats_utc() {
    let t = UNIX_EPOCH + Duration::from_millis(1_795_713_270_123);
    assert_eq!(rfc3339(t), "2026-11-26T17:14:30.123Z");
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    let _ = SystemTime::now();
}

#[test]
fn concurrent_updates_inserts_and_evictions_lose_no_call() {
    let stats = Arc::new(Stats::new(config(100, 200)));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let stats = &stats;
            s.spawn(move || {
                let f = Fixture::new();
                for i in 0..5_000u64 {
                    // A few hot shapes shared by all threads, and a stream of new ones.
                    let fp = if i % 2 == 0 {
                        i % 8
                    } else {
                        1_000 + t * 10_000 + i
                    };
                    f.run(&**stats, fp, "SELECT 1", 10 + i % 100, 1, None);
                }
            });
        }
    });
    assert!(stats.len() <= 100);
    let rows = stats.snapshot();
    assert_eq!(rows.iter().map(|r| r.calls).sum::<u64>(), 20_000);
    assert_eq!(rows.iter().map(|r| r.rows).sum::<u64>(), 20_000);
}

#[test]
fn stats_section_reads_from_toml() {
    let config: crate::config::Config = toml::from_str(
        "[stats]\ntop_k = 10\nlog_parameters = true\nhistogram_buckets_ms = [1.0, 10.0]\n",
    )
    .expect("valid [stats]");
    assert_eq!(config.stats.top_k, 10);
    assert!(config.stats.log_parameters);
    assert_eq!(
        config.stats.max_fingerprints, 20_000,
        "unset keys keep defaults"
    );
    assert!(config.stats.validate().is_ok());
    assert!(toml::from_str::<crate::config::Config>("[stats]\ntopk = 1\n").is_err());
    let bad = StatsConfig {
        histogram_buckets_ms: vec![10.0, 1.0],
        ..StatsConfig::default()
    };
    assert!(bad.validate().is_err());
    assert!(StatsConfig::default().validate().is_ok());
}
