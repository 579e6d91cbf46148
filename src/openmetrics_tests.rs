use std::time::{Duration, UNIX_EPOCH};

use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

use super::{Exemplar, Exemplars, Format, encode, negotiate};

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

#[test]
fn negotiation_follows_quality_values() {
    assert_eq!(negotiate(Some(PROMETHEUS_ACCEPT)), Format::OpenMetrics);
    assert_eq!(
        negotiate(Some(
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        )),
        Format::OpenMetrics
    );
    assert_eq!(negotiate(None), Format::Prometheus);
    assert_eq!(negotiate(Some("*/*")), Format::Prometheus);
    assert_eq!(negotiate(Some("text/plain")), Format::Prometheus);
    assert_eq!(
        negotiate(Some(
            "text/plain;version=0.0.4,application/openmetrics-text;q=0.5"
        )),
        Format::Prometheus
    );
    assert_eq!(
        negotiate(Some("application/openmetrics-text;q=0")),
        Format::Prometheus
    );
    // A version whose syntax this writer does not produce is not accepted.
    assert_eq!(
        negotiate(Some(
            "application/openmetrics-text;version=2.0.0,text/plain;q=0.5"
        )),
        Format::Prometheus
    );
    assert_eq!(
        negotiate(Some("application/openmetrics-text;q=0.5,*/*;q=0.1")),
        Format::OpenMetrics
    );
}

fn gather() -> Vec<MetricFamily> {
    let registry = Registry::new();
    let calls = IntCounterVec::new(
        Opts::new(
            "demo_calls_total",
            "Calls with \"quotes\" and a \\ backslash\nand a newline.",
        ),
        &["query"],
    )
    .unwrap();
    calls
        .with_label_values(&["SELECT \"a\" FROM t WHERE s = '\\'\n"])
        .inc_by(3);
    let gauge = IntGauge::new("demo_connections", "Open connections.").unwrap();
    gauge.set(7);
    let latency = Histogram::with_opts(
        HistogramOpts::new("demo_duration_seconds", "Latency.").buckets(vec![0.001, 0.01, 1.0]),
    )
    .unwrap();
    for v in [0.0005, 0.005, 0.005, 0.5, 2.0] {
        latency.observe(v);
    }
    registry.register(Box::new(calls)).unwrap();
    registry.register(Box::new(gauge)).unwrap();
    registry.register(Box::new(latency)).unwrap();
    registry.gather()
}

fn trace(value: f64) -> Exemplar {
    Exemplar {
        labels: vec![
            ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736".into()),
            ("span_id", "00f067aa0ba902b7".into()),
        ],
        value,
        timestamp: Some(UNIX_EPOCH + Duration::from_millis(1_764_184_000_250)),
    }
}

fn encoded(exemplars: &Exemplars) -> String {
    let mut out = String::new();
    encode(&gather(), exemplars, &mut out);
    out
}

#[test]
fn families_follow_the_openmetrics_text_rules() {
    let text = encoded(&Exemplars::default());
    let expected = r#"# TYPE demo_calls counter
# HELP demo_calls Calls with \"quotes\" and a \\ backslash\nand a newline.
demo_calls_total{query="SELECT \"a\" FROM t WHERE s = '\\'\n"} 3
# TYPE demo_connections gauge
# HELP demo_connections Open connections.
demo_connections 7
# TYPE demo_duration_seconds histogram
# UNIT demo_duration_seconds seconds
# HELP demo_duration_seconds Latency.
demo_duration_seconds_bucket{le="0.001"} 1
demo_duration_seconds_bucket{le="0.01"} 3
demo_duration_seconds_bucket{le="1.0"} 4
demo_duration_seconds_bucket{le="+Inf"} 5
demo_duration_seconds_count 5
demo_duration_seconds_sum 2.5105
# EOF
"#;
    assert_eq!(text, expected);
}

#[test]
fn an_exemplar_sits_on_the_bucket_that_holds_its_value() {
    for (value, le) in [
        (0.0002, "0.001"),
        (0.001, "0.001"),
        (0.0011, "0.01"),
        (0.9, "1.0"),
        (30.0, "+Inf"),
    ] {
        let mut exemplars = Exemplars::default();
        exemplars.insert("demo_duration_seconds", 0, trace(value));
        let text = encoded(&exemplars);
        let with: Vec<&str> = text.lines().filter(|l| l.contains(" # {")).collect();
        assert_eq!(with.len(), 1, "{text}");
        assert!(
            with[0].starts_with(&format!("demo_duration_seconds_bucket{{le=\"{le}\"}} ")),
            "value {value} on {}",
            with[0]
        );
        assert!(
            with[0].ends_with(&format!(
                " # {{trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\"}} {value} 1764184000.250"
            )),
            "{}",
            with[0]
        );
    }
}

#[test]
fn exemplars_attach_only_to_their_series_and_within_the_label_limit() {
    let mut exemplars = Exemplars::default();
    // Index 1 of the histogram family does not exist; a counter family takes none.
    exemplars.insert("demo_duration_seconds", 1, trace(0.5));
    exemplars.insert("demo_calls_total", 0, trace(0.5));
    assert!(!encoded(&exemplars).contains(" # {"));

    let mut exemplars = Exemplars::default();
    let mut long = trace(0.5);
    long.labels.push(("note", "x".repeat(128 - 63 - 4 + 1)));
    exemplars.insert("demo_duration_seconds", 0, long.clone());
    assert!(!encoded(&exemplars).contains(" # {"), "129 characters");
    long.labels[2].1.pop();
    exemplars.insert("demo_duration_seconds", 0, long);
    assert!(encoded(&exemplars).contains(" # {"), "128 characters");
}

#[test]
fn canonical_numbers_and_special_values() {
    assert_eq!(super::canonical(60.0), "60.0");
    assert_eq!(super::canonical(0.0005), "0.0005");
    assert_eq!(super::canonical(1e-5), "0.00001");
    assert_eq!(super::canonical(f64::INFINITY), "+Inf");
    let mut out = String::new();
    for v in [f64::NAN, f64::NEG_INFINITY, 3.0, 0.25] {
        super::number(v, &mut out);
        out.push(' ');
    }
    assert_eq!(out, "NaN -Inf 3 0.25 ");
}
