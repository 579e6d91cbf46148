//! The slow log as a JSON subscriber renders it: fields present, literals hidden.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::SlowLog;
use crate::sql::analysis::Budget;
use crate::stats::StatsConfig;
use crate::stats::tests::Fixture;

/// Captures JSON log lines.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON lines `run` logs at INFO and above.
fn json_lines(run: impl FnOnce()) -> Vec<serde_json::Value> {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, run);
    let bytes = capture.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn slow_log_lines(log_parameters: bool) -> Vec<serde_json::Value> {
    let f = Fixture::new();
    let cfg = StatsConfig {
        log_parameters,
        ..StatsConfig::default()
    };
    let slow = SlowLog::new(Some(Duration::from_millis(100)), &cfg).expect("slow log on");
    json_lines(|| {
        let sql = "SELECT * FROM users WHERE email = 'alice@example.com' \
                   /*route='%2Fusers',traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/";
        f.run(&slow, 11, sql, 99_000, 1, None);
        f.run(&slow, 11, sql, 250_000, 3, Some(b"57014"));
    })
}

#[test]
fn slow_log_names_statements_over_the_analysis_budget() {
    let f = Fixture::new();
    let slow = SlowLog::new(Some(Duration::ZERO), &StatsConfig::default())
        .expect("slow log on")
        .with_analysis_budget(Budget {
            max_bytes: 40,
            max_depth: 3,
        });
    let lines = json_lines(|| {
        f.run(&slow, 1, "SELECT 1", 1_000, 1, None);
        f.run(&slow, 2, "SELECT ((((1))))", 1_000, 1, None);
        f.run(
            &slow,
            3,
            &format!("SELECT '{}'", "x".repeat(40)),
            1_000,
            1,
            None,
        );
    });
    let analysis: Vec<_> = lines
        .iter()
        .map(|l| l["fields"]["analysis"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(analysis, ["", "depth", "size"]);
}

#[test]
fn slow_log_hides_literals_and_carries_context() {
    let lines = slow_log_lines(false);
    assert_eq!(lines.len(), 1, "only the statement above the threshold");
    let e = &lines[0];
    assert_eq!(e["target"], "pgshape::slow");
    let fields = &e["fields"];
    assert_eq!(fields["fingerprint"], "000000000000000b");
    assert_eq!(fields["duration_ms"], 250.0);
    assert_eq!(fields["rows"], 3);
    assert_eq!(fields["database"], "app");
    assert_eq!(fields["user"], "web");
    assert_eq!(fields["application_name"], "django");
    assert_eq!(fields["client_addr"], "10.0.0.7:51000");
    assert_eq!(fields["sqlstate"], "57014");
    assert_eq!(fields["route"], "/users");
    assert_eq!(fields["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let query = fields["query"].as_str().unwrap_or("");
    assert!(
        query.starts_with("SELECT * FROM users WHERE email ="),
        "{query}"
    );
    assert!(!e.to_string().contains("alice@example.com"));
}

#[test]
fn slow_log_shows_literals_only_when_asked() {
    let lines = slow_log_lines(true);
    let query = lines[0]["fields"]["query"].as_str().unwrap_or("");
    assert!(query.contains("alice@example.com"), "{query}");
}
