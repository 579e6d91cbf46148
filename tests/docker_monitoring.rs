//! The monitoring of docker/ (Prometheus config and rules, the Grafana dashboard) run for real:
//! promtool's checks and the rules' unit tests, then the stack's own configuration natively end
//! to end: the init script in a real PostgreSQL, two pgshape instances in front of it (two
//! sidecars), the load generator's script through both, a real Prometheus with
//! docker/prometheus/prometheus.yml scraping both and evaluating the rules, and every dashboard
//! query answered with data, aggregated across the instances without double counting.
//!
//! tests/docker_stack.rs checks how the compose file, the image and the Kubernetes example
//! wire these together.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use pgshape::app::App;
use pgshape::config::Secret;
use serde_json::Value;
use serde_norway::Value as Yaml;
use support::client::{ConnParams, run_with_timeout};
use support::docker::{docker, read, words, yaml};
use support::prometheus::PrometheusServer;
use support::{PgCluster, http_request, psql, psql_query};

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
fn prometheus_config_and_rules_pass_promtool_and_their_unit_tests() {
    let dir = docker("prometheus");
    let checked = promtool(&["check", "config", "prometheus.yml"], &dir);
    assert!(checked.contains("1 rule files found"), "{checked}");
    let checked = promtool(&["check", "rules", "pgshape-rules.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "pgshape-rules.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every PromQL expression of the dashboard, with Grafana's variables given values.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read(&docker("grafana/pgshape-dashboard.json")))
        .expect("the dashboard is JSON");
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

/// docker/prometheus/prometheus.yml with only what differs outside the containers: the
/// targets (these pgshapes' admin addresses instead of `pgshape:9187`), one-second intervals,
/// and the rule files' absolute paths.
fn stack_prometheus_config(targets: &[std::net::SocketAddr]) -> String {
    let mut config = yaml(&read(&docker("prometheus/prometheus.yml")));
    for interval in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        config["global"][interval] = Yaml::from("1s");
    }
    let rules: Vec<Yaml> = words(&config["rule_files"])
        .into_iter()
        .map(|f| Yaml::from(docker("prometheus").join(f).to_str().unwrap()))
        .collect();
    config["rule_files"] = Yaml::Sequence(rules);
    let jobs = config["scrape_configs"].as_sequence_mut().unwrap();
    assert_eq!(jobs.len(), 1, "one job: pgshape");
    jobs[0]["static_configs"][0]["targets"] =
        Yaml::Sequence(targets.iter().map(|t| Yaml::from(t.to_string())).collect());
    serde_norway::to_string(&config).unwrap()
}

const TOKEN: &str = "test-admin-token";

/// The load generator's script, one short round through `via`.
fn loadgen_round(via: &ConnParams) {
    let mut cmd = Command::new(docker("loadgen/run.sh"));
    via.apply_env(&mut cmd);
    let bindir = &support::pgbin::PgBin::get().bindir;
    cmd.env(
        "PATH",
        format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap()),
    )
    .env("LOADGEN_ROUNDS", "1")
    .env("LOADGEN_SECONDS", "2")
    .env("LOADGEN_RATE", "25");
    let out = run_with_timeout(cmd, None, Duration::from_secs(120));
    out.assert_success();
    assert!(
        !out.stderr.contains("failed")
            && !out.stderr.contains("aborted")
            && out.stdout.contains("number of failed transactions: 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
    // The round's weighted random mix may not have drawn the incident's script; it must run.
    let incident = docker("loadgen/orders_panel.sql");
    let out = support::pgbench(
        via,
        &[
            "-n",
            "-M",
            "simple",
            "-t",
            "2",
            "-f",
            incident.to_str().unwrap(),
        ],
    );
    out.assert_success();
}

#[test]
fn the_stacks_configuration_runs_natively_with_two_pgshape_instances() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let init = docker("postgres/10-shop.sql");
    psql(
        &db,
        &["-q", "-v", "orders=2000", "-f", init.to_str().unwrap()],
        None,
    )
    .assert_success();

    // Two instances in front of the same database, as two sidecars: same rules, catalog
    // connection and token.
    let start = || {
        let mut config = support::app_config(cluster);
        config.rules.schema_dsn = Some(db.dsn());
        config.admin_token = Some(Secret::new(TOKEN.to_owned()));
        App::start(config).expect("pgshape starts")
    };
    let (a, b) = (start(), start());
    let admins = [a.admin_addr().unwrap(), b.admin_addr().unwrap()];
    let (via_a, via_b) = (db.via(a.proxy_addr()), db.via(b.proxy_addr()));
    let prometheus = PrometheusServer::start_with_config(&stack_prometheus_config(&admins));

    // Every shape and its series exist before what the rules look at: rate() and increase()
    // need a sample before the increase. The incident's DISTINCT goes through both instances
    // with IN lists of different lengths: one shape, possibly two sample texts.
    loadgen_round(&via_a);
    loadgen_round(&via_b);
    let distinct = |skus: &str| {
        format!(
            "SELECT DISTINCT o.id, o.status FROM shop_order o \
             JOIN shop_orderitem i ON i.order_id = o.id WHERE i.sku IN ({skus}) LIMIT 5"
        )
    };
    psql_query(&via_a, &distinct("'SKU-1'"));
    psql_query(&via_b, &distinct("'SKU-1', 'SKU-2', 'SKU-3'"));
    psql_query(&via_a, "SELECT pg_sleep(0) /*slo*/");
    let queries = |admin| -> Vec<Value> {
        let body = http_request(admin, "GET", "/api/queries?limit=500", &[]).body;
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let fingerprint = |needle: &str| {
        let rows = queries(admins[0]);
        rows.iter()
            .find(|r| r["query"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {rows:#?}"))["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let slow_fp = fingerprint("pg_sleep");
    let distinct_fp = fingerprint("o.status FROM shop_order o");
    let incident_fp = fingerprint("\"shop_orderitem\".\"sku\" IN");
    let both_up = "count(up{job=\"pgshape\"} == 1) == 2";
    let scraped = format!("pgshape_query_calls_total{{fingerprint=\"{slow_fp}\"}}");
    prometheus.wait_for(Duration::from_secs(60), "both targets scraped", |p| {
        let up = p.query(both_up)?;
        let calls = p.query(&scraped)?;
        (!up["data"]["result"].as_array()?.is_empty()
            && !calls["data"]["result"].as_array()?.is_empty())
        .then_some(())
    });

    // A counter's first sample is no increase: the workload runs again after the scrape, the
    // slow shape once over the 3 s SLO, and a rule reload for the reload panel.
    loadgen_round(&via_a);
    loadgen_round(&via_b);
    psql_query(&via_b, &distinct("'SKU-4', 'SKU-5'"));
    let slow_started = Instant::now();
    psql_query(&via_a, "SELECT pg_sleep(3.1) /*slo*/");
    assert!(slow_started.elapsed() >= Duration::from_secs(3));
    let bearer = format!("Bearer {TOKEN}");
    let reload = http_request(
        admins[1],
        "POST",
        "/api/reload",
        &[("Authorization", &bearer)],
    );
    assert_eq!(reload.status, 200, "{}", reload.body);

    // The recording rule over both instances: the increase in its window is the slow call
    // alone, in the (3 s, 5 s] bucket, so p95 interpolates to 3 + 2 * 0.95 = 4.9 s.
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

    // The alerts: the SLO one pending (for: 10m) with the shape's SQL, the DISTINCT one firing
    // once per shape however many instances saw it.
    let alerts = prometheus.wait_for(Duration::from_secs(30), "both alerts", |p| {
        let answer = p.get("/api/v1/alerts")?;
        let alerts = answer["data"]["alerts"].as_array()?.clone();
        let has = |name: &str| alerts.iter().any(|a| a["labels"]["alertname"] == name);
        (has("PgshapeQueryShapeSlow") && has("PgshapeDistinctOverFanoutJoin")).then_some(alerts)
    });
    let named = |name: &str| -> Vec<&Value> {
        alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    };
    let slow = named("PgshapeQueryShapeSlow");
    assert_eq!(slow.len(), 1, "{slow:#?}");
    assert_eq!(slow[0]["state"], "pending", "{:#}", slow[0]);
    assert_eq!(slow[0]["labels"]["fingerprint"], slow_fp.as_str());
    assert_eq!(slow[0]["labels"]["database"], db.dbname.as_str());
    assert!(
        slow[0]["labels"]["query"]
            .as_str()
            .is_some_and(|q| q.contains("pg_sleep")),
        "{:#}",
        slow[0]
    );
    let fanout = named("PgshapeDistinctOverFanoutJoin");
    let fanout_fps: Vec<&str> = fanout
        .iter()
        .map(|a| a["labels"]["fingerprint"].as_str().unwrap())
        .collect();
    assert!(
        fanout_fps.contains(&distinct_fp.as_str()) && fanout_fps.contains(&incident_fp.as_str()),
        "{fanout:#?}"
    );
    let mut unique = fanout_fps.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        fanout_fps.len(),
        "one alert per shape: {fanout:#?}"
    );
    assert!(fanout.iter().all(|a| a["state"] == "firing"), "{fanout:#?}");
    assert!(
        alerts.iter().all(|a| !matches!(
            a["labels"]["alertname"].as_str(),
            Some("PgshapeUpstreamUnreachable" | "PgshapeDown" | "PgshapeQueryShapeFailing")
        )),
        "{alerts:#?}"
    );

    // Every dashboard query answers with data, one series per shape (never one per instance).
    for (title, expr) in dashboard_queries() {
        let answer = prometheus.query(&expr).expect("Prometheus answers");
        assert_eq!(answer["status"], "success", "{title}: {expr}\n{answer:#}");
        let result = answer["data"]["result"].as_array().unwrap();
        assert!(!result.is_empty(), "{title}: no data for {expr}");
        let mut seen = std::collections::BTreeSet::new();
        for series in result {
            let mut labels = series["metric"].as_object().unwrap().clone();
            assert!(
                !labels.contains_key("instance"),
                "{title}: per instance: {series}"
            );
            labels.remove("query");
            assert!(
                seen.insert(format!("{labels:?}")),
                "{title}: twice {labels:?}\n{answer:#}"
            );
        }
        if title.starts_with("Busiest shapes") || title.starts_with("p95 latency") {
            let shown: Vec<&str> = result
                .iter()
                .filter_map(|s| s["metric"]["fingerprint"].as_str())
                .collect();
            for fp in [&slow_fp, &distinct_fp, &incident_fp] {
                assert!(
                    shown.contains(&fp.as_str()),
                    "{title}: no {fp} in {shown:?}"
                );
            }
        }
    }

    // Summed across the instances, the calls are the two instances' own counts: nothing double
    // counted, nothing lost. Prometheus scrapes once more first.
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for admin in admins {
        for row in queries(admin) {
            *expected
                .entry(row["fingerprint"].as_str().unwrap().to_owned())
                .or_default() += row["calls"].as_f64().unwrap();
        }
    }
    let sums = format!(
        "sum by (fingerprint) (pgshape_query_calls_total{{fingerprint=~\"{incident_fp}|{distinct_fp}\"}})"
    );
    prometheus.wait_for(
        Duration::from_secs(30),
        "the calls of both instances",
        |p| {
            let answer = p.query(&sums)?;
            let result = answer["data"]["result"].as_array()?;
            (result.len() == 2
                && result.iter().all(|s| {
                    let fp = s["metric"]["fingerprint"].as_str().unwrap();
                    s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok())
                        == expected.get(fp).copied()
                }))
            .then_some(())
        },
    );
    a.shutdown();
    b.shutdown();
}
