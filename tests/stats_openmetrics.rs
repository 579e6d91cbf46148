//! Trace exemplars end to end: statements carrying a sqlcommenter `traceparent` go through the
//! full pgshape to a real PostgreSQL; `/metrics`, asked for OpenMetrics as Prometheus asks,
//! must put the slowest statement's trace on the histogram bucket that holds its duration.
//! Two independent readers judge the exposition: the official Python client's strict
//! OpenMetrics parser, and a real Prometheus server with exemplar storage, queried through its
//! exemplars API as Grafana would.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pgshape::app::App;
use pgshape::config::Config;
use serde_json::Value;
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
        let config = Config {
            listen: "127.0.0.1:0".into(),
            upstream: cluster.addr().to_string(),
            admin: Some("127.0.0.1:0".into()),
            workers: 1,
            ..Config::default()
        };
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

/// A real Prometheus, scraping pgshape every second, with exemplar storage on.
struct PrometheusServer {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl PrometheusServer {
    fn start(target: std::net::SocketAddr) -> PrometheusServer {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: pgshape\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free port for its web listener (a tiny race with other processes, as with any).
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run prometheus ({e}): install it with \
                     `apt-get install -y prometheus` (.ci/run does)"
                )
            });
        PrometheusServer {
            child,
            addr,
            _dir: dir,
        }
    }

    fn get(&self, path: &str) -> Option<Value> {
        let stream = std::net::TcpStream::connect(self.addr).ok()?;
        drop(stream);
        let r = http_request(self.addr, "GET", path, &[]);
        serde_json::from_str(&r.body).ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        if let Some(answer) = prometheus.get(&query) {
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
            if !traces.is_empty() {
                break traces;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no exemplar stored by Prometheus in 60 s; targets: {:?}\nlog:\n{}",
            prometheus.get("/api/v1/targets"),
            prometheus.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        found
            .iter()
            .all(|(trace, value)| trace == SLOW_TRACE && *value >= 0.12),
        "{found:?}"
    );
}
