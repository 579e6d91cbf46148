//! Trace exemplars end to end: statements carrying a sqlcommenter `traceparent` go through the
//! full pgshape to a real PostgreSQL; `/metrics`, asked for OpenMetrics as Prometheus asks,
//! must put the slowest statement's trace on the histogram bucket that holds its duration.
//! Two independent readers judge the exposition: the official Python client's strict
//! OpenMetrics parser, and a real Prometheus server with exemplar storage, queried through its
//! exemplars API as Grafana would.

mod support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgshape::app::App;
use pgshape::config::Config;
use serde_json::Value;
use support::prometheus::PrometheusServer;
use support::{ConnParams, PgCluster, http_request, python};

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const SLOW_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SLOW_SPAN: &str = "00f067aa0ba902b7";
const FAST_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn comment(trace: &str, span: &str) -> String {
    format!("/*route='api/orders/',traceparent='00-{trace}-{span}-01'*/")
}

struct Running {
    app: Option<App>,
    db: ConnParams,
}

impl Running {
    fn start() -> Running {
        let cluster = PgCluster::shared();
        let db = cluster.fresh_database();
        let config = support::app_config(cluster);
        Running {
            app: Some(App::start(config).expect("pgshape starts")),
            db,
        }
    }

    fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    /// One fast and one slow run of the same shape, each with its own trace, over the
    /// extended protocol; then waits until both are counted.
    async fn traced_workload(&self) {
        let client = support::client::tokio_connect(&self.db.via(self.app().proxy_addr())).await;
        let sql = |trace: &str, span: &str| {
            format!(
                "SELECT pg_sleep($1::int / 1000.0), 1 AS one {}",
                comment(trace, span)
            )
        };
        client
            .query(&sql(FAST_TRACE, "b7ad6b7169203331"), &[&1i32])
            .await
            .unwrap();
        client
            .query(&sql(SLOW_TRACE, SLOW_SPAN), &[&120i32])
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = http_request(self.admin(), "GET", "/api/queries", &[]);
            let rows: Value = serde_json::from_str(&r.body).unwrap();
            if rows[0]["calls"] == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "statements not counted: {rows}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn admin(&self) -> std::net::SocketAddr {
        self.app().admin_addr().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }
}

/// Parses an OpenMetrics exposition with `prometheus_client`'s strict parser; prints every
/// sample with an exemplar as JSON. A malformed exposition makes the parser raise.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        if s.exemplar is not None:
            ts = s.exemplar.timestamp
            out.append({"family": family.name, "type": family.type, "unit": family.unit,
                        "name": s.name, "labels": s.labels,
                        "exemplar": s.exemplar.labels, "value": s.exemplar.value,
                        "timestamp": ts.sec + ts.nsec / 1e9 if ts is not None else None})
print(json.dumps(out))
"#;

fn strict_parse(text: &str) -> Value {
    let mut cmd = Command::new(python());
    cmd.args(["-c", PARSE]);
    let out = support::feed(cmd, text, "run .ci/run to make the test venv");
    assert!(
        out.status.success(),
        "the OpenMetrics parser rejects /metrics:\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_scrape_links_the_slow_bucket_to_its_trace() {
    let run = Running::start();
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    run.traced_workload().await;

    let r = http_request(
        run.admin(),
        "GET",
        "/metrics",
        &[("Accept", PROMETHEUS_ACCEPT)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(r.body.ends_with("# EOF\n"));
    let samples = strict_parse(&r.body);
    let samples = samples.as_array().unwrap();
    assert_eq!(samples.len(), 1, "one traced series: {samples:#?}");
    let s = &samples[0];
    assert_eq!(s["family"], "pgshape_query_duration_seconds");
    assert_eq!(s["type"], "histogram");
    assert_eq!(s["unit"], "seconds");
    assert_eq!(s["name"], "pgshape_query_duration_seconds_bucket");
    assert_eq!(s["labels"]["database"], run.db.dbname.as_str());
    assert_eq!(s["exemplar"]["trace_id"], SLOW_TRACE, "the slower trace");
    assert_eq!(s["exemplar"]["span_id"], SLOW_SPAN);
    let value = s["value"].as_f64().unwrap();
    assert!((0.12..5.0).contains(&value), "{value} s");
    // The bucket holds the value: le is the first configured bound at or above it.
    let le: f64 = s["labels"]["le"].as_str().unwrap().parse().unwrap();
    let bounds: Vec<f64> = Config::default()
        .stats
        .histogram_buckets_ms
        .iter()
        .map(|ms| ms / 1e3)
        .collect();
    let expected = bounds.iter().copied().find(|b| *b >= value).unwrap();
    assert_eq!(le, expected, "exemplar {value} on le={le}");
    let ts = s["timestamp"].as_f64().unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(
        (before.as_secs_f64() - 1.0..now.as_secs_f64() + 1.0).contains(&ts),
        "timestamp {ts} not within the test"
    );

    // Without asking, the scraper gets the 0.0.4 text format, which has no exemplars.
    let plain = http_request(run.admin(), "GET", "/metrics", &[]);
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    assert!(!plain.body.contains(" # {") && !plain.body.contains("# EOF"));
    assert!(
        plain
            .body
            .contains("pgshape_query_duration_seconds_bucket{")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stores_the_exemplar_of_the_slow_statement() {
    let run = Running::start();
    run.traced_workload().await;
    let prometheus = PrometheusServer::start(run.admin());

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = format!(
        "/api/v1/query_exemplars?query=pgshape_query_duration_seconds_bucket&start={}&end={}",
        now - 600,
        now + 600
    );
    let found = prometheus.wait_for(Duration::from_secs(60), "stored exemplar", |p| {
        let answer = p.get(&query)?;
        let traces: Vec<(String, f64)> = answer["data"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| {
                Some((
                    e["labels"]["trace_id"].as_str()?.to_owned(),
                    e["value"].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        (!traces.is_empty()).then_some(traces)
    });
    assert!(
        found
            .iter()
            .all(|(trace, value)| trace == SLOW_TRACE && *value >= 0.12),
        "{found:?}"
    );
}
