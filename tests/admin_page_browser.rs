//! The admin page as an on-call engineer sees it: Debian's headless Chromium (through
//! chromedriver) against `pgshape serve` in front of a real PostgreSQL, with a workload of
//! known statements. What the page shows is checked against the workload's own counts and the
//! JSON API; a screenshot lands in `target/admin-page.png` for people to look at. A second test
//! captures the incident's plans through the real explain endpoint and checks the plan tree the
//! page draws (`target/admin-page-plan.png`).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::serve::{Serve, free_addr};
use support::webdriver::Browser;
use support::{ConnParams, PgCluster, http, psql, psql_query};

/// A route tag as a Django app with sqlcommenter sends it.
const ROUTE: &str = "/*route='%5Eorders%2F%3Cint%3Apk%3E'*/";

/// The workload: (a word that identifies the shape in its normalized SQL, the statement,
/// how often it runs). `medium` has the most total time (50 × 10 ms), `heavy` the highest
/// p95 (2 × 100 ms): sorting by p95 must put another shape first. The long one checks that a
/// statement stays on one line.
fn workload() -> Vec<(&'static str, String, u64)> {
    let long = format!(
        "SELECT id, name, qty, cat, qty * 2 AS double_qty, qty * 3 AS triple_qty, \
         upper(name) AS shouting_name, lower(name) AS quiet_name, length(name) AS name_length \
         FROM item WHERE id = 7 {ROUTE}"
    );
    vec![
        ("heavy", "SELECT pg_sleep(0.1) AS heavy".into(), 2),
        (
            "medium",
            format!("SELECT pg_sleep(0.01) AS medium {ROUTE}"),
            40,
        ),
        ("shouting_name", long, 25),
        (
            "UPDATE item",
            "UPDATE item SET qty = qty WHERE id = 3".into(),
            7,
        ),
        ("broken", "SELECT 1 / 0 AS broken".into(), 3),
    ]
}

fn run(via: &ConnParams, statements: &[(String, u64)]) {
    let mut script = String::new();
    for (sql, n) in statements {
        for _ in 0..*n {
            script.push_str(sql);
            script.push_str(";\n");
        }
    }
    // No ON_ERROR_STOP: the failing statement is part of the workload.
    let out = psql(via, &["-Atq"], Some(&script));
    assert!(out.success(), "psql: {}", out.stderr);
}

fn api(admin: std::net::SocketAddr, path: &str) -> Value {
    let (status, body) = http(admin, "GET", path);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn api_order(admin: std::net::SocketAddr, sort: &str) -> Vec<String> {
    api(admin, &format!("/api/queries?limit=50&sort={sort}"))
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["fingerprint"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The table as shown: one entry per row, in page order.
fn table(browser: &Browser) -> Vec<Value> {
    let rows = browser.js(
        "return Array.from(document.querySelectorAll('#rows tr')).map((tr) => ({
           fp: tr.dataset.fp,
           query: tr.querySelector('td.q').textContent,
           title: tr.querySelector('td.q').title,
           calls: tr.querySelector('td.calls').textContent,
           errors: tr.querySelector('td.errors').textContent,
           route: tr.querySelector('td.route').textContent,
           rules: tr.querySelector('td.rules').textContent,
           height: tr.getBoundingClientRect().height,
           clipped: tr.querySelector('td.q').scrollWidth > tr.querySelector('td.q').clientWidth,
         }));",
        &[],
    );
    rows.as_array().expect("rows").clone()
}

fn order(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["fp"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until the page has refreshed with `sort` and shows the API's order for it.
fn wait_sorted(browser: &Browser, admin: std::net::SocketAddr, sort: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown = browser.js("return document.body.dataset.sort", &[]);
        let rows = table(browser);
        let want = api_order(admin, sort);
        if shown == json!(sort) && order(&rows) == want {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "the page's order for {sort} ({shown}) is not the API's:\npage {:?}\napi  {want:?}",
            order(&rows)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `target/` of this build (the test binary is `target/<profile>/deps/<name>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

#[test]
fn the_page_lists_sorts_and_charts_the_workload() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(
        &db,
        "CREATE TABLE item(id int primary key, cat int not null, qty int not null, name text not null); \
         INSERT INTO item SELECT g, g % 10, g % 7, 'item' || g FROM generate_series(1, 100) g",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    // One history point per second instead of 30, so the chart fills while the test waits.
    let config = dir.path().join("pgshape.toml");
    std::fs::write(&config, "[stats]\nhistory_interval_s = 1\n").expect("config");
    let (listen, admin) = (free_addr(), free_addr());
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let serve = Serve::spawn(
        cluster,
        &rules,
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ],
        &[],
        dir.path().join("pgshape.log"),
    );
    serve.wait_log("admin listener ready");
    let via = db.via(listen);

    let shapes = workload();
    let all: Vec<(String, u64)> = shapes.iter().map(|(_, s, n)| (s.clone(), *n)).collect();
    run(&via, &all);
    // The chart needs two ticks with the shape among the busiest, and calls in between: wait
    // until `medium` is followed, then run 10 more of it.
    let rows = api(admin, "/api/queries?limit=50");
    let fp_of = |word: &str| -> String {
        rows.as_array()
            .expect("rows")
            .iter()
            .find(|r| r["query"].as_str().is_some_and(|q| q.contains(word)))
            .and_then(|r| r["fingerprint"].as_str())
            .unwrap_or_else(|| panic!("no shape with {word:?} in {rows}"))
            .to_owned()
    };
    let medium = fp_of("medium");
    let deadline = Instant::now() + Duration::from_secs(20);
    while api(admin, &format!("/api/queries/{medium}/history"))["followed"] != json!(true) {
        assert!(Instant::now() < deadline, "medium never followed");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Three bursts of `medium`, each in an interval of its own: points on the chart.
    let mut points = 0;
    for burst in 0..3 {
        run(&via, &[(shapes[1].1.clone(), 10)]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let h = api(admin, &format!("/api/queries/{medium}/history"));
            let with_calls = h["points"].as_array().map_or(0, |p| {
                p.iter().filter(|p| p["calls"].as_u64() > Some(0)).count()
            });
            if with_calls > points {
                points = with_calls;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "burst {burst}: no new point: {h}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let expected: BTreeMap<String, u64> = shapes
        .iter()
        .map(|(word, _, n)| (fp_of(word), if *word == "medium" { n + 30 } else { *n }))
        .collect();

    let browser = Browser::start(1400, 1000);
    browser.goto(&format!("http://{admin}/"));

    // The workload's shapes, with the right call counts, one line each.
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = table(&browser);
        let calls: BTreeMap<String, u64> = rows
            .iter()
            .map(|r| {
                let n = r["calls"].as_str().unwrap_or_default().replace(',', "");
                (
                    r["fp"].as_str().unwrap_or_default().to_owned(),
                    n.parse().unwrap_or(0),
                )
            })
            .collect();
        if calls == expected {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the table shows {calls:?}, the workload ran {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let heights: Vec<f64> = rows.iter().filter_map(|r| r["height"].as_f64()).collect();
    assert!(
        heights.iter().all(|h| *h < 30.0),
        "a row wraps: heights {heights:?}"
    );
    let long = rows
        .iter()
        .find(|r| r["fp"] == json!(fp_of("shouting_name")))
        .expect("the long statement's row");
    assert_eq!(
        long["clipped"], true,
        "the long statement is cut on one line"
    );
    assert!(
        long["title"]
            .as_str()
            .is_some_and(|t| t.contains("name_length FROM item WHERE id = $3")),
        "its full text is the cell's hover title: {long}"
    );
    assert!(
        long["route"] == json!("^orders/<int:pk>"),
        "top route: {long}"
    );
    let broken = rows
        .iter()
        .find(|r| r["fp"] == json!(fp_of("broken")))
        .expect("the failing statement's row");
    assert_eq!(broken["errors"], "3");

    // The default order is the API's by total time; p95 (key 2) reorders the table.
    let by_total = wait_sorted(&browser, admin, "total_time");
    assert_eq!(by_total[0]["fp"], json!(medium), "most total time first");
    browser.keys(&["2"]);
    let by_p95 = wait_sorted(&browser, admin, "p95");
    assert_eq!(by_p95[0]["fp"], json!(fp_of("heavy")), "highest p95 first");
    assert_ne!(order(&by_total), order(&by_p95));
    // A click on a header sorts too.
    browser.click(&browser.find("th[data-sort='calls']"));
    let by_calls = wait_sorted(&browser, admin, "calls");
    assert_eq!(by_calls[0]["fp"], json!(medium));

    // Keyboard: first row, down to `medium`, Enter opens it with its charts.
    let index = order(&by_calls)
        .iter()
        .position(|fp| *fp == medium)
        .expect("medium listed");
    let mut keys = vec!["g"];
    keys.extend(std::iter::repeat_n("j", index));
    keys.push("\u{E007}");
    browser.keys(&keys);
    let detail = browser.wait_js(
        "the detail of medium with a p95 chart and a histogram",
        "const d = document.getElementById('detail-content');
         if (!d) return null;
         return {
           fp: d.dataset.fp,
           sql: d.querySelector('pre.sql').textContent,
           points: d.querySelectorAll('#p95-chart circle.pt').length,
           bars: d.querySelectorAll('#hist-chart rect.hbar').length,
         };",
    );
    assert_eq!(detail["fp"], json!(medium), "{detail}");
    assert!(
        detail["sql"]
            .as_str()
            .is_some_and(|s| s.contains("pg_sleep($1) AS medium")),
        "{detail}"
    );
    // One point per interval with calls, as the history API has them; a histogram bar or more.
    let with_p95 = api(admin, &format!("/api/queries/{medium}/history"))["points"]
        .as_array()
        .map_or(0, |p| p.iter().filter(|p| !p["p95_ms"].is_null()).count());
    assert!(with_p95 >= 3, "three bursts, three intervals with calls");
    browser.wait_js(
        &format!("{with_p95} points on the p95 chart"),
        &format!(
            "const d = document.getElementById('detail-content');
             return d && d.querySelectorAll('#p95-chart circle.pt').length === {with_p95}
               && d.querySelectorAll('#p95-chart path.line').length === 1
               && d.querySelectorAll('#hist-chart rect.hbar').length > 0;"
        ),
    );

    // A refresh keeps the selection and the open shape.
    let refreshes = browser.js("return Number(document.body.dataset.refreshes)", &[]);
    browser.wait_js(
        "a refresh",
        &format!("return Number(document.body.dataset.refreshes) > {refreshes};"),
    );
    let kept = browser.js(
        "return [document.querySelector('#rows tr.selected').dataset.fp,
                 document.getElementById('detail-content').dataset.fp];",
        &[],
    );
    assert_eq!(kept, json!([medium, medium]));

    // Header: the upstream answers, and the rules panel lists the shipped rules.
    browser.wait_js(
        "upstream health in the header",
        "return document.getElementById('upstream').classList.contains('ok');",
    );
    let rules = browser.js(
        "return Array.from(document.querySelectorAll('#rules-rows tr td:first-child')).map((td) => td.textContent);",
        &[],
    );
    assert!(
        rules
            .as_array()
            .is_some_and(|r| r.contains(&json!("n-plus-one"))),
        "{rules}"
    );

    let png = browser.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    assert_eq!(width, 1400, "the screenshot is of the 1400 px wide window");
    let out = target_dir().join("admin-page.png");
    std::fs::write(&out, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", out.display());

    // `/` focuses the filter; typing narrows the table to matching shapes.
    browser.keys(&["/", "b", "r", "o", "k", "e", "n"]);
    let broken_fp = fp_of("broken");
    browser.wait_js(
        "the filter to leave the failing statement alone",
        &format!(
            "const trs = document.querySelectorAll('#rows tr');
             return trs.length === 1 && trs[0].dataset.fp === '{broken_fp}';"
        ),
    );

    // Dark mode: the page follows prefers-color-scheme.
    browser.cdp(
        "Emulation.setEmulatedMedia",
        json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] }),
    );
    let bg = browser.js(
        "const m = getComputedStyle(document.body).backgroundColor.match(/\\d+/g).map(Number);
         return m[0] + m[1] + m[2];",
        &[],
    );
    assert!(
        bg.as_u64().is_some_and(|v| v < 150),
        "dark background: {bg}"
    );
    std::fs::write(
        target_dir().join("admin-page-dark.png"),
        browser.screenshot(),
    )
    .expect("write the dark screenshot");
    drop(browser);
    drop(serve);
}

/// Explains `fp` through the admin API until its sample is there (the event is recorded as the
/// reply passes the proxy); the answer's JSON.
fn explain(admin: std::net::SocketAddr, fp: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http(admin, "POST", &format!("/api/queries/{fp}/explain"));
        if status == 200 {
            return serde_json::from_str(&body).expect("explain JSON");
        }
        assert!(
            status == 404 && Instant::now() < deadline,
            "explain {fp}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The label of the node the API marks as the most expensive, depth first.
fn most_expensive(node: &Value) -> Option<String> {
    if node["most_expensive"] == json!(true) {
        return node["label"].as_str().map(str::to_owned);
    }
    node["children"].as_array()?.iter().find_map(most_expensive)
}

#[test]
fn the_page_draws_the_incidents_plan_with_its_signature_and_history() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, support::shop::SCHEMA);
    let dir = tempfile::tempdir().expect("temp dir");
    let (listen, admin) = (free_addr(), free_addr());
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let dsn = db.dsn();
    let serve = Serve::spawn(
        cluster,
        &rules,
        &[
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
            "--schema-dsn",
            &dsn,
        ],
        &[],
        dir.path().join("pgshape.log"),
    );
    serve.wait_log("admin listener ready");
    let via = db.via(listen);

    // The panel's query (three SKUs, a page of 10: hundreds of joined rows for 10), explained
    // through the real endpoint; then an index the planner prefers makes the next explain a
    // plan change, so the page has a history to show. A second shape is never explained.
    let incident = support::shop::incident(&["A", "B", "C"], 10);
    let fp = pgshape::sql::fingerprint(incident.as_bytes()).to_string();
    let unexplained = "SELECT count(*) AS never_explained FROM shop_order";
    run(&via, &[(incident.clone(), 3), (unexplained.to_owned(), 2)]);
    let first = explain(admin, &fp);
    psql_query(
        &db,
        "CREATE INDEX shop_order_recent ON shop_order (created_at DESC, id, customer_id, status); ANALYZE shop_order;",
    );
    run(&via, &[(incident.clone(), 2)]);
    let second = explain(admin, &fp);
    assert_eq!(second["plan_change"], true, "{second}");
    let plans = api(admin, &format!("/api/queries/{fp}/plans"));
    let current = &plans["plans"][0];
    assert_eq!(current["shape_hash"], second["shape_hash"]);
    assert_eq!(plans["plans"][1]["shape_hash"], first["shape_hash"]);
    let marked = most_expensive(&current["tree"]).expect("the API marks a node");
    assert!(
        current["signature"]
            .as_str()
            .is_some_and(|s| s.contains("incident's signature")),
        "{current}"
    );

    let browser = Browser::start(1400, 1400);
    browser.goto(&format!("http://{admin}/"));
    browser.wait_js(
        "the incident's row",
        &format!("return !!document.querySelector(\"#rows tr[data-fp='{fp}']\");"),
    );
    browser.click(&browser.find(&format!("#rows tr[data-fp='{fp}']")));
    let shown = browser.wait_js(
        "the incident's plan tree",
        &format!(
            "const d = document.getElementById('detail-content');
             const tree = d && d.dataset.fp === '{fp}' && document.getElementById('plan-tree');
             if (!tree) return null;
             const nodes = Array.from(tree.querySelectorAll('.pnode'));
             const text = (n) => n.querySelector('.lbl').textContent.replace(/^→ /, '');
             const sig = document.getElementById('plan-signature');
             return {{
               nodes: nodes.map(text),
               texts: nodes.map((n) => n.textContent),
               expensive: nodes.filter((n) => n.classList.contains('expensive')).map(text),
               expensive_tag: tree.querySelectorAll('.pnode.expensive .tag.bad').length,
               expensive_color: nodes.filter((n) => n.classList.contains('expensive'))
                 .map((n) => getComputedStyle(n).borderLeftColor !== getComputedStyle(nodes.find((o) => !o.classList.contains('expensive'))).borderLeftColor),
               sig_nodes: nodes.filter((n) => n.classList.contains('sig')).map(text),
               signature: sig && sig.textContent,
               changed: (document.getElementById('plan-changed') || {{}}).textContent || null,
               history: Array.from(document.querySelectorAll('#plan-history tbody tr'))
                 .map((tr) => [tr.children[0].textContent, tr.classList.contains('current')]),
             }};"
        ),
    );
    let labels: Vec<&str> = shown["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(labels.first(), Some(&"Limit"), "{shown}");
    let mut api_nodes = 0;
    fn count(node: &Value, n: &mut usize) {
        *n += 1;
        for child in node["children"].as_array().into_iter().flatten() {
            count(child, n);
        }
    }
    count(&current["tree"], &mut api_nodes);
    assert_eq!(labels.len(), api_nodes, "one row per plan node: {shown}");
    assert!(
        shown["texts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().contains("using shop_order_recent")),
        "the new index is drawn: {shown}"
    );
    // The most expensive node: the one the API (and `pgshape explain`) marks, only it, tagged
    // and coloured.
    assert_eq!(shown["expensive"], json!([marked]), "{shown}");
    assert_eq!(shown["expensive_tag"], 1, "{shown}");
    assert_eq!(shown["expensive_color"], json!([true]), "{shown}");
    // The signature: flagged under the tree and on the deduplicating node.
    assert!(
        shown["signature"].as_str().is_some_and(
            |s| s.contains("incident's signature") && s.contains("collapsed to the 10")
        ),
        "{shown}"
    );
    let sig_nodes = shown["sig_nodes"].as_array().unwrap();
    assert!(
        sig_nodes.len() == 1
            && sig_nodes[0]
                .as_str()
                .is_some_and(|l| l == "Unique" || l.ends_with("Aggregate")),
        "{shown}"
    );
    // The history: both plans, the current first, and when it changed.
    assert_eq!(
        shown["history"],
        json!([[second["shape_hash"], true], [first["shape_hash"], false]]),
        "{shown}"
    );
    assert!(
        shown["changed"]
            .as_str()
            .is_some_and(|c| c.starts_with("Plan changed") && c.contains("2 distinct plans")),
        "{shown}"
    );

    browser.js(
        "document.getElementById('plan').scrollIntoView({ block: 'end' });",
        &[],
    );
    let png = browser.screenshot();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let out = target_dir().join("admin-page-plan.png");
    std::fs::write(&out, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", out.display());

    // A shape never explained says how to get a plan.
    let rows = api(admin, "/api/queries?limit=50");
    let other = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["query"]
                .as_str()
                .is_some_and(|q| q.contains("never_explained"))
        })
        .and_then(|r| r["fingerprint"].as_str())
        .expect("the unexplained shape")
        .to_owned();
    browser.click(&browser.find(&format!("#rows tr[data-fp='{other}']")));
    let hint = browser.wait_js(
        "the how-to-get-a-plan line",
        &format!(
            "const d = document.getElementById('detail-content');
             const p = d && d.dataset.fp === '{other}' && document.getElementById('plan');
             return p ? {{ text: p.textContent, tree: !!document.getElementById('plan-tree') }} : null;"
        ),
    );
    let text = hint["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!("pgshape explain {other}")) && text.contains("[plans] slow_ms"),
        "{hint}"
    );
    assert_eq!(hint["tree"], false, "{hint}");
    drop(browser);
    drop(serve);
}
