//! The monitoring that ships in deploy/: the Prometheus rules (promtool's own checks and unit
//! tests, then a real Prometheus evaluating them on a real pgshape in front of a real
//! PostgreSQL) and every PromQL expression of the Grafana dashboard, run against that same
//! Prometheus. The workload is the incident in small: a shape slower than the 3 s SLO, and a
//! SELECT DISTINCT over a one-to-many join.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgshape::app::App;
use serde_json::Value;
use support::prometheus::PrometheusServer;
use support::{PgCluster, http_request, psql_query};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}): apt-get install -y prometheus (.ci/run does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy("prometheus");
    let checked = promtool(&["check", "rules", "pgshape-rules.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "pgshape-rules.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every PromQL expression of the dashboard, with Grafana's variables given values.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/pgshape-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$database", ".*");
            assert!(!expr.contains('$'), "unknown variable in {expr}");
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    assert!(out.len() >= 10, "{out:?}");
    out
}

const SCHEMA: &str = "CREATE TABLE orders(id int primary key, status text not null); \
     CREATE TABLE order_items(id int primary key, order_id int not null references orders, sku text not null); \
     INSERT INTO orders SELECT g, 'open' FROM generate_series(1, 200) g; \
     INSERT INTO order_items SELECT g, 1 + g % 200, 'sku' || g FROM generate_series(1, 1000) g";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_evaluates_the_rules_and_the_dashboard_on_a_real_pgshape() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, SCHEMA);
    let config = support::app_config(cluster);
    let app = App::start(config).expect("pgshape starts");
    let admin = app.admin_addr().unwrap();
    let prometheus =
        PrometheusServer::start_with_rules(admin, &[deploy("prometheus/pgshape-rules.yml")]);
    let client = support::client::tokio_connect(&db.via(app.proxy_addr())).await;

    // The fan-out DISTINCT (the shipped rule observes it) and a fast run of the slow shape, so
    // their series exist before what the rules look at: rate() and increase() need a sample
    // before the increase.
    let distinct = "SELECT DISTINCT o.id, o.status FROM orders o \
                    JOIN order_items i ON i.order_id = o.id WHERE i.sku LIKE 'sku1%'";
    client.simple_query(distinct).await.unwrap();
    client
        .simple_query("SELECT pg_sleep(0) /*slo*/")
        .await
        .unwrap();
    let rows: Value =
        serde_json::from_str(&http_request(admin, "GET", "/api/queries?limit=100", &[]).body)
            .unwrap();
    let fingerprint = |needle: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["query"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {rows:#}"))["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let slow_fp = fingerprint("pg_sleep");
    let distinct_fp = fingerprint("DISTINCT");
    let scraped = format!("pgshape_query_calls_total{{fingerprint=\"{slow_fp}\"}}");
    prometheus.wait_for(Duration::from_secs(60), "first scrape", |p| {
        let answer = p.query(&scraped)?;
        (!answer["data"]["result"].as_array()?.is_empty()).then_some(())
    });

    // A counter's first sample is no increase: the DISTINCT runs again after the scrape.
    client.simple_query(distinct).await.unwrap();
    let slow_started = Instant::now();
    client
        .simple_query("SELECT pg_sleep(3.1) /*slo*/")
        .await
        .unwrap();
    assert!(slow_started.elapsed() >= Duration::from_secs(3));

    // The recording rule: the increase in its window is the slow call alone, in the
    // (3 s, 5 s] bucket, so p95 interpolates to 3 + 2 * 0.95 = 4.9 s: over the SLO, under 5 s.
    let p95_query = format!("pgshape:query_duration_seconds:p95_5m{{fingerprint=\"{slow_fp}\"}}");
    let p95 = prometheus.wait_for(Duration::from_secs(30), "p95 above 3 s", |p| {
        let answer = p.query(&p95_query)?;
        let v: f64 = answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()?;
        (v > 3.0).then_some(v)
    });
    assert!(p95 <= 5.0, "p95 {p95}");

    // The alerts: the SLO one pending (for: 10m) with the shape's SQL, the DISTINCT one firing.
    let alerts = prometheus.wait_for(Duration::from_secs(30), "both alerts", |p| {
        let answer = p.get("/api/v1/alerts")?;
        let alerts = answer["data"]["alerts"].as_array()?.clone();
        let has = |name: &str| alerts.iter().any(|a| a["labels"]["alertname"] == name);
        (has("PgshapeQueryShapeSlow") && has("PgshapeDistinctOverFanoutJoin")).then_some(alerts)
    });
    let find = |name: &str| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == name)
            .unwrap()
    };
    let slow = find("PgshapeQueryShapeSlow");
    assert_eq!(slow["state"], "pending", "{slow:#}");
    assert_eq!(slow["labels"]["fingerprint"], slow_fp.as_str());
    assert_eq!(slow["labels"]["database"], db.dbname.as_str());
    assert!(
        slow["labels"]["query"]
            .as_str()
            .is_some_and(|q| q.contains("pg_sleep")),
        "{slow:#}"
    );
    let fanout = find("PgshapeDistinctOverFanoutJoin");
    assert_eq!(fanout["state"], "firing", "{fanout:#}");
    assert_eq!(fanout["labels"]["fingerprint"], distinct_fp.as_str());
    assert!(
        alerts
            .iter()
            .all(|a| a["labels"]["alertname"] != "PgshapeUpstreamUnreachable"
                && a["labels"]["alertname"] != "PgshapeDown"),
        "{alerts:#?}"
    );

    // Every dashboard query is valid PromQL over pgshape's real series; the per-shape panels
    // show both shapes.
    for (title, expr) in dashboard_queries() {
        let answer = prometheus.query(&expr).expect("Prometheus answers");
        assert_eq!(answer["status"], "success", "{title}: {expr}\n{answer:#}");
        let result = answer["data"]["result"].as_array().unwrap();
        if title.starts_with("Busiest shapes") || title.starts_with("p95 latency") {
            let shown: Vec<&str> = result
                .iter()
                .filter_map(|s| s["metric"]["fingerprint"].as_str())
                .collect();
            assert!(
                shown.contains(&slow_fp.as_str()) && shown.contains(&distinct_fp.as_str()),
                "{title}: {shown:?}\n{answer:#}"
            );
        }
    }
    drop(client);
    app.shutdown();
}
