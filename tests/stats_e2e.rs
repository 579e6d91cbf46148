//! Statistics end to end: real clients (tokio-postgres in simple and extended protocol, psql)
//! through the full pgshape (`App`) in front of a real PostgreSQL, read back through the admin
//! HTTP API and `/metrics` exactly as an SRE would. The workload's own bookkeeping (calls,
//! rows, errors per shape) is the oracle.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgshape::app::App;
use pgshape::config::Config;
use serde_json::Value;
use support::workload::{self, Rendered, Wire, render};
use support::{ConnParams, PgCluster, Rng, http, psql, psql_query};
use tokio_postgres::Client;

const SCHEMA: &str = "CREATE TABLE item(id int primary key, cat int not null, qty int not null, name text not null); \
     CREATE TABLE ord(id int primary key, item_id int not null, qty int not null); \
     CREATE TABLE uniq(k int primary key); \
     CREATE TABLE ev(id bigserial primary key, n int not null); \
     INSERT INTO item SELECT g, g % 10, g % 7, 'item' || g FROM generate_series(1, 300) g; \
     INSERT INTO ord SELECT g, 1 + g % 300, 1 + g % 5 FROM generate_series(1, 600) g";

/// pgshape in front of the shared cluster, on a fresh database set up directly (not through
/// the proxy, so setup statements are not in the statistics).
struct Running {
    app: Option<App>,
    db: ConnParams,
}

impl Running {
    fn start(adjust: impl FnOnce(&mut Config)) -> Running {
        let cluster = PgCluster::shared();
        let db = cluster.fresh_database();
        psql_query(&db, SCHEMA);
        let mut config = Config {
            workers: 2,
            shutdown_grace_ms: 1_000,
            ..support::app_config(cluster)
        };
        adjust(&mut config);
        let app = App::start(config).expect("pgshape starts");
        Running { app: Some(app), db }
    }

    fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    fn via(&self) -> ConnParams {
        self.db.via(self.app().proxy_addr())
    }

    fn dbname(&self) -> &str {
        &self.db.dbname
    }

    fn http(&self, method: &str, path: &str) -> (u16, String) {
        http(self.app().admin_addr().unwrap(), method, path)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.http("GET", path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Rows of this test's database, keyed by fingerprint.
    fn queries(&self) -> BTreeMap<String, Value> {
        let rows = self.json(&format!(
            "/api/queries?limit=1000&database={}",
            self.dbname()
        ));
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["fingerprint"].as_str().unwrap().to_owned(), r.clone()))
            .collect()
    }

    /// Waits until the statistics hold `calls` executions for this database: events are
    /// recorded when the server's reply passes the proxy, which may be just after the client
    /// saw it.
    fn queries_settled(&self, calls: u64) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let q = self.queries();
            let seen: u64 = q.values().map(|r| r["calls"].as_u64().unwrap()).sum();
            if seen >= calls || Instant::now() > deadline {
                return q;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metrics(&self) -> String {
        let (status, body) = self.http("GET", "/metrics");
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn client(&self) -> Client {
        support::client::tokio_connect(&self.via()).await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }
}

/// What one execution returned: rows (from the command tag) or a SQLSTATE.
#[derive(Debug)]
enum Outcome {
    Rows(u64),
    Error(String),
}

async fn execute(client: &Client, sql: &str, params: &[i32], wire: Wire) -> Outcome {
    match workload::execute(client, sql, params, wire).await {
        Ok(n) => Outcome::Rows(n),
        Err(e) => Outcome::Error(
            e.code()
                .unwrap_or_else(|| panic!("{sql}: {e}"))
                .code()
                .to_owned(),
        ),
    }
}

/// The 50 shapes. Every one differs structurally from the others; constants and IN-list
/// lengths vary per execution.
const SHAPES: [&str; 50] = [
    "SELECT id, name FROM item WHERE id = #::int",
    "SELECT id, name FROM item WHERE id IN (@)",
    "SELECT id FROM item WHERE cat = #::int",
    "SELECT id FROM item WHERE cat IN (@) AND qty > #::int",
    "SELECT count(*) FROM item WHERE cat = #::int",
    "SELECT cat, count(*) FROM item GROUP BY cat HAVING count(*) > #::int",
    "SELECT cat, sum(qty) FROM item WHERE id < #::int GROUP BY cat",
    "SELECT max(qty), min(qty) FROM item WHERE cat IN (@)",
    "SELECT avg(qty)::float8 FROM ord WHERE item_id = #::int",
    "SELECT name FROM item ORDER BY id DESC LIMIT #::int",
    "SELECT name FROM item ORDER BY id LIMIT #::int OFFSET #::int",
    "SELECT o.id, i.name FROM ord o JOIN item i ON i.id = o.item_id WHERE o.id = #::int",
    "SELECT o.id, i.name FROM ord o JOIN item i ON i.id = o.item_id WHERE i.cat IN (@)",
    "SELECT i.cat, count(o.id) FROM item i LEFT JOIN ord o ON o.item_id = i.id WHERE i.id < #::int GROUP BY i.cat",
    "SELECT DISTINCT i.cat FROM item i JOIN ord o ON o.item_id = i.id WHERE o.qty = #::int",
    "SELECT i.id FROM item i WHERE EXISTS (SELECT 1 FROM ord o WHERE o.item_id = i.id AND o.qty > #::int) AND i.id < #::int",
    "SELECT id FROM item WHERE id NOT IN (@) AND cat = #::int",
    "SELECT id FROM item WHERE name = 'item' || #::int",
    "SELECT id, qty * #::int FROM item WHERE id BETWEEN #::int AND #::int",
    "SELECT coalesce(sum(qty), 0)::int FROM ord WHERE item_id IN (@)",
    "SELECT id FROM ord WHERE qty = #::int AND item_id < #::int",
    "SELECT count(DISTINCT item_id) FROM ord WHERE qty IN (@)",
    "SELECT item_id, sum(qty) FROM ord GROUP BY item_id ORDER BY 2 DESC LIMIT #::int",
    "SELECT id FROM item WHERE cat = #::int UNION SELECT item_id FROM ord WHERE qty = #::int",
    "SELECT * FROM (SELECT id, cat FROM item WHERE qty = #::int) s WHERE s.cat < #::int",
    "WITH c AS (SELECT item_id FROM ord WHERE qty = #::int) SELECT count(*) FROM c",
    "SELECT id, CASE WHEN qty > #::int THEN 'big' ELSE 'small' END FROM item WHERE id < #::int",
    "SELECT id FROM item WHERE id = ANY(ARRAY[@])",
    "SELECT k FROM uniq WHERE k > #::int",
    "SELECT count(*) FROM ev WHERE n IN (@)",
    "INSERT INTO ev(n) VALUES (#::int)",
    "INSERT INTO ev(n) SELECT #::int + g FROM generate_series(1, 3) g",
    "INSERT INTO ev(n) SELECT id FROM item WHERE cat = #::int",
    "INSERT INTO ev(n) VALUES (#::int) RETURNING id",
    "INSERT INTO uniq(k) VALUES (#::int)",
    "INSERT INTO ord(id, item_id, qty) VALUES (#::int, 1, 1) ON CONFLICT (id) DO NOTHING",
    "UPDATE item SET qty = qty + 1 WHERE id = #::int",
    "UPDATE item SET qty = #::int WHERE id IN (@)",
    "UPDATE ord SET qty = qty WHERE item_id = #::int AND qty < #::int",
    "UPDATE ev SET n = n + 1 WHERE n = #::int",
    "UPDATE item SET name = name WHERE cat = #::int RETURNING id",
    "UPDATE ord o SET qty = o.qty FROM item i WHERE i.id = o.item_id AND i.cat = #::int",
    "DELETE FROM ev WHERE n = #::int",
    "DELETE FROM ev WHERE n IN (@)",
    "DELETE FROM uniq WHERE k = #::int",
    "DELETE FROM ev WHERE id IN (SELECT id FROM ev WHERE n > #::int LIMIT 5)",
    "DELETE FROM ord WHERE id > 100000 AND qty = #::int",
    "SELECT #::int / (#::int - 5)",
    "SELECT id FROM item WHERE qty = #::int FOR UPDATE",
    "SELECT i.name, o.qty FROM item i JOIN ord o ON o.item_id = i.id JOIN item j ON j.cat = i.cat WHERE j.id = #::int AND o.qty IN (@) LIMIT 50",
];

/// Which wire each execution uses: a third of the shapes only simple, a third only extended,
/// a third alternating (those must still be one fingerprint each).
fn wire_for(shape: usize, execution: usize) -> Wire {
    match shape % 3 {
        0 => Wire::Simple,
        1 => Wire::Extended,
        _ if execution.is_multiple_of(2) => Wire::Simple,
        _ => Wire::Extended,
    }
}

#[derive(Debug, Default)]
struct Expected {
    calls: u64,
    rows: u64,
    errors: BTreeMap<String, u64>,
    wires: Vec<Wire>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_shapes_are_fifty_fingerprints_with_exact_calls_rows_and_errors() {
    let run = Running::start(|_| {});
    let client = run.client().await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut expected: Vec<Expected> = (0..SHAPES.len()).map(|_| Expected::default()).collect();
    let mut total = 0;
    for round in 0..6 {
        for (i, template) in SHAPES.iter().enumerate() {
            let wire = wire_for(i, round);
            // Narrow constants for `uniq` so that some inserts collide (23505), and a division
            // by (x - 5) that sometimes divides by zero (22012).
            let (lo, hi) = if template.contains("uniq") {
                (1, 3)
            } else if template.starts_with("SELECT #") {
                (4, 6)
            } else {
                (1, 300)
            };
            let Rendered { sql, params, .. } = render(template, &mut rng, wire, lo, hi);
            let e = &mut expected[i];
            e.calls += 1;
            e.wires.push(wire);
            total += 1;
            match execute(&client, &sql, &params, wire).await {
                Outcome::Rows(n) => e.rows += n,
                Outcome::Error(code) => *e.errors.entry(code[..2].to_owned()).or_default() += 1,
            }
        }
    }
    // A few through psql too (simple protocol, its own session), counted with shape 0.
    for id in [3, 17, 250] {
        let out = psql(
            &run.via(),
            &[
                "-Atq",
                "-c",
                &format!("SELECT id, name FROM item WHERE id = {id}::int"),
            ],
            None,
        );
        out.assert_success();
        expected[0].calls += 1;
        expected[0].rows += 1;
        total += 1;
    }

    let got = run.queries_settled(total);
    assert_eq!(
        got.len(),
        SHAPES.len(),
        "fingerprints: {:#?}",
        got.values().map(|r| &r["query"]).collect::<Vec<_>>()
    );
    assert!(
        expected.iter().any(|e| e.errors.contains_key("23")),
        "the workload produced no unique violation; pick other constants"
    );
    assert!(expected.iter().any(|e| e.errors.contains_key("22")));
    // Match each shape to its row by its first execution's fingerprint: render it once more in
    // simple protocol and find the row whose calls/rows/errors agree.
    let mut unmatched: Vec<&Value> = got.values().collect();
    for (i, e) in expected.iter().enumerate() {
        let errors: BTreeMap<String, u64> = e.errors.clone();
        let pos = unmatched.iter().position(|r| {
            r["calls"].as_u64() == Some(e.calls)
                && r["rows"].as_u64() == Some(e.rows)
                && serde_json::from_value::<BTreeMap<String, u64>>(r["errors"].clone()).unwrap()
                    == errors
                && normalized_matches(r["query"].as_str().unwrap(), SHAPES[i])
        });
        let Some(pos) = pos else {
            panic!(
                "shape {i} {:?} ({:?}): expected calls {} rows {} errors {:?}; rows: {:#?}",
                SHAPES[i], e.wires, e.calls, e.rows, e.errors, unmatched
            );
        };
        unmatched.remove(pos);
    }
    // Each execution is a round trip to the server: never zero time, whatever the protocol
    // (Parse/BindComplete arriving with the result once made extended statements last 0 ns).
    for r in got.values() {
        assert!(r["min_ms"].as_f64().unwrap() > 0.0, "zero duration: {r:#}");
    }
}

/// Whether pgshape's normalized text is the template's: the same words once constants,
/// placeholders and casts are stripped (IN lists collapse to one element).
fn normalized_matches(normalized: &str, template: &str) -> bool {
    fn words(s: &str) -> Vec<String> {
        // String literals become placeholders, so their words are not compared.
        let unquoted: String = s.split('\'').step_by(2).collect::<Vec<_>>().join(" ");
        unquoted
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty() && !w.chars().all(|c| c.is_ascii_digit()))
            .map(|w| w.to_ascii_lowercase())
            .collect()
    }
    let mut a = words(normalized);
    // Casts of constants are dropped from the normalized text, and an ARRAY of constants is
    // one placeholder.
    let mut b = words(&template.replace("#::int", "#").replace("ARRAY[@]", "#"));
    a.dedup();
    b.dedup();
    a == b
}

const COMMENT: &str = "/*controller='shop%3Aorder-list',route='api/orders/',\
     traceparent='00-ffd5290c2624aa12a22cfeff40faf8a6-8eb8ee514190b7c4-03'*/";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlcommenter_route_and_traceparent_reach_the_json_api() {
    let run = Running::start(|_| {});
    let client = run.client().await;
    let plain = "SELECT id, name FROM item WHERE cat = 3 ORDER BY id LIMIT 5";
    client.simple_query(plain).await.unwrap();
    client
        .simple_query(&format!(
            "SELECT id, name FROM item WHERE cat = 4 ORDER BY id LIMIT 7 {COMMENT}"
        ))
        .await
        .unwrap();
    client
        .execute(
            &format!("SELECT id, name FROM item WHERE cat = $1 ORDER BY id LIMIT 9 {COMMENT}"),
            &[&5i32],
        )
        .await
        .unwrap();
    let got = run.queries_settled(3);
    assert_eq!(
        got.len(),
        1,
        "with and without the comment is one shape: {got:#?}"
    );
    let row = got.values().next().unwrap();
    assert_eq!(row["calls"], 3);
    let routes = row["routes"].as_array().unwrap();
    let find = |tag: &str| {
        routes
            .iter()
            .find(|r| r["tag"] == tag)
            .unwrap_or_else(|| panic!("no {tag} in {routes:?}"))
    };
    assert_eq!(find("route")["value"], "api/orders/");
    assert_eq!(
        find("controller")["value"],
        "shop:order-list",
        "URL-decoded"
    );
    assert_eq!(find("route")["count"], 2, "only the commented statements");
    assert_eq!(
        row["traceparent"],
        "00-ffd5290c2624aa12a22cfeff40faf8a6-8eb8ee514190b7c4-03"
    );
    assert!(row["traceparent_ms"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_histogram_percentiles_reset_and_bad_parameters() {
    let run = Running::start(|_| {});
    let client = run.client().await;
    let mut rng = Rng(7);
    for _ in 0..40 {
        let id = rng.range(1, 300);
        client
            .query("SELECT id, name FROM item WHERE id = $1", &[&id])
            .await
            .unwrap();
    }
    for i in 0..3 {
        // Literal and parameter forms of one sleeping shape.
        if i % 2 == 0 {
            client.simple_query("SELECT pg_sleep(0.2)").await.unwrap();
        } else {
            client
                .query("SELECT pg_sleep($1)", &[&0.2f64])
                .await
                .unwrap();
        }
    }
    let got = run.queries_settled(43);
    assert_eq!(got.len(), 2, "{got:#?}");
    for (fp, row) in &got {
        let detail = run.json(&format!("/api/queries/{fp}"));
        let entries = detail["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{detail:#}");
        let e = &entries[0];
        let buckets = e["histogram"].as_array().unwrap();
        let sum: u64 = buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum();
        assert_eq!(sum, row["calls"].as_u64().unwrap(), "{detail:#}");
        for b in buckets {
            assert!(b["lower_ms"].as_f64() <= b["upper_ms"].as_f64(), "{b}");
        }
        let p = |k: &str| e[k].as_f64().unwrap();
        assert!(p("min_ms") <= p("p50_ms"), "{e:#}");
        assert!(p("p50_ms") <= p("p95_ms"), "{e:#}");
        assert!(p("p95_ms") <= p("p99_ms"), "{e:#}");
        assert!(p("p99_ms") <= p("max_ms"), "{e:#}");
        if row["query"].as_str().unwrap().contains("pg_sleep") {
            assert_eq!(row["calls"], 3);
            assert!(p("p50_ms") >= 200.0, "{e:#}");
            assert!(p("min_ms") >= 200.0, "{e:#}");
        } else {
            assert_eq!(row["calls"], 40);
            assert!(p("p50_ms") < 200.0, "{e:#}");
        }
    }
    let sorted = run.json(&format!("/api/queries?sort=p95&database={}", run.dbname()));
    assert!(
        sorted[0]["query"].as_str().unwrap().contains("pg_sleep"),
        "{sorted:#}"
    );

    for (path, parameter) in [
        ("/api/queries?sort=bogus", "sort"),
        ("/api/queries?limit=abc", "limit"),
        ("/api/queries?limit=0", "limit"),
        ("/api/queries/nothex", "fingerprint"),
    ] {
        let (status, body) = run.http("GET", path);
        assert_eq!(status, 400, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["parameter"], parameter, "{path}: {body}");
    }
    let (status, _) = run.http("GET", "/api/queries/0123456789abcdef");
    assert_eq!(status, 404);

    let (status, body) = run.http("POST", "/api/queries/reset");
    assert_eq!(status, 200, "{body}");
    assert!(run.queries().is_empty());
    assert_eq!(
        run.json("/api/queries?limit=1000")
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

/// `promtool check metrics` on `text`; a missing promtool fails the test.
fn promtool_check(text: &str) {
    let mut cmd = std::process::Command::new("promtool");
    cmd.args(["check", "metrics"]);
    let out = support::feed(
        cmd,
        text,
        "install it: apt-get install -y prometheus (.ci/run does this)",
    );
    assert!(
        out.status.success(),
        "promtool rejects /metrics:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Value of the first sample whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in:\n{metrics}"))
}

/// The unescaped value of label `name` in a sample line (exposition format escapes `\\`, `"`
/// and newline).
fn label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_series_stay_within_top_k() {
    let run = Running::start(|c| c.stats.top_k = 5);
    let client = run.client().await;
    let mut rng = Rng(99);
    let mut calls = 0;
    for (i, template) in SHAPES.iter().take(20).enumerate() {
        for round in 0..2 {
            let Rendered { sql, params, .. } =
                render(template, &mut rng, wire_for(i, round), 1, 300);
            execute(&client, &sql, &params, wire_for(i, round)).await;
            calls += 1;
        }
    }
    // A quote, a backslash and a newline in the normalized text must be escaped in the label;
    // the sleep puts this shape in the top 5 by total time.
    client
        .simple_query("SELECT 'it''s' AS \"a\\b\nc\", pg_sleep(0.05) FROM item WHERE id = 1")
        .await
        .unwrap();
    calls += 1;
    let rows = run.queries_settled(calls);
    assert_eq!(rows.len(), 21);

    let metrics = run.metrics();
    promtool_check(&metrics);

    let duration: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("pgshape_query_duration_seconds_bucket{"))
        .collect();
    assert!(!duration.is_empty(), "{metrics}");
    let mut fingerprints = std::collections::BTreeSet::new();
    for line in &duration {
        fingerprints.insert(label(line, "fingerprint").unwrap());
        assert_eq!(
            label(line, "database").as_deref(),
            Some(run.dbname()),
            "{line}"
        );
        assert_eq!(label(line, "user").as_deref(), Some("pgshape"), "{line}");
    }
    assert!(fingerprints.contains("other"), "{fingerprints:?}");
    assert!(fingerprints.len() <= 6, "top 5 + other: {fingerprints:?}");
    let count: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("pgshape_query_duration_seconds_count{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(count as u64, calls, "folding into other loses no call");

    // One info series per exported fingerprint, carrying the JSON API's normalized text.
    let info: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("pgshape_query_info{"))
        .collect();
    assert!(!info.is_empty() && info.len() <= 5, "{info:#?}");
    for line in &info {
        let fp = label(line, "fingerprint").unwrap();
        assert!(fingerprints.contains(&fp), "{line} not on the histogram");
        let row = &rows[&fp];
        assert_eq!(
            label(line, "query").as_deref(),
            row["query"].as_str(),
            "{line}"
        );
        assert_eq!(
            label(line, "command").as_deref(),
            row["command"].as_str(),
            "{line}"
        );
    }
    assert!(
        info.iter()
            .any(|l| label(l, "query").is_some_and(|q| q.contains("\"a\\b\nc\""))),
        "{info:#?}"
    );

    assert_eq!(
        sample(
            &metrics,
            &format!(
                "pgshape_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    for name in [
        "pgshape_client_connections_total",
        "pgshape_proxy_bytes_total{direction=\"client_to_server\"}",
        "pgshape_proxy_bytes_total{direction=\"server_to_client\"}",
        "pgshape_statements_total",
    ] {
        assert!(sample(&metrics, name) > 0.0, "{name} is zero:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_statistics_answer_404_and_the_proxy_still_relays() {
    let run = Running::start(|c| c.stats.enabled = false);
    let client = run.client().await;
    let rows = client
        .query("SELECT name FROM item WHERE id = $1", &[&7i32])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "item7");
    let out = psql_query(&run.via(), "SELECT count(*) FROM item");
    assert_eq!(out, "300");
    for (method, path) in [
        ("GET", "/api/queries"),
        ("GET", "/api/queries/0123456789abcdef"),
        ("POST", "/api/queries/reset"),
    ] {
        let (status, body) = run.http(method, path);
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(body.contains("enabled = false"), "{body}");
    }
    let metrics = run.metrics();
    assert!(
        !metrics.contains("pgshape_query_duration_seconds"),
        "{metrics}"
    );
    promtool_check(&metrics);
}
