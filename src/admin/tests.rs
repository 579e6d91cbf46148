//! The admin server on a real socket (port 0), spoken to with raw HTTP/1.1: no client crate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use prometheus::{IntCounter, Registry};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::{AdminState, router, serve};
use crate::stats::tests::{Fixture, promtool_check};
use crate::stats::{Stats, StatsConfig};

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), super::AdminError>>,
}

impl Server {
    async fn start(app: Router) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn request(&self, method: &str, path: &str) -> (u16, String, String) {
        self.request_with(method, path, "").await
    }

    /// As [`Server::request`], with `headers` (each ending in CRLF) added.
    async fn request_with(&self, method: &str, path: &str, headers: &str) -> (u16, String, String) {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n{headers}\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("header end");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status code");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "bodies here have a known length"
        );
        (status, head.to_owned(), body.to_owned())
    }

    async fn json(&self, method: &str, path: &str) -> (u16, Value) {
        let (status, head, body) = self.request(method, path).await;
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        (status, serde_json::from_str(&body).expect("json body"))
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("join").expect("serve ok");
    }
}

/// Stats with three shapes in two databases, and a registry with one proxy-style metric.
fn state() -> AdminState {
    let f = Fixture::new();
    let stats = Arc::new(Stats::new(StatsConfig::default()));
    for _ in 0..10 {
        f.run(
            &*stats,
            0xa1,
            "SELECT * FROM orders WHERE id = 1 /*controller='orders',route='%5Eorders%2F%3Cint%3Apk%3E'*/",
            2_000,
            1,
            None,
        );
    }
    for _ in 0..3 {
        f.run(
            &*stats,
            0xb2,
            "UPDATE t SET a = 1",
            50_000,
            2,
            Some(b"40001"),
        );
    }
    let mut other = Fixture::new();
    other.session.database = "reports".into();
    other.run(&*stats, 0xc3, "SELECT count(*) FROM big", 900_000, 1, None);

    let registry = Registry::new();
    stats.register(&registry).expect("register stats");
    let connections = IntCounter::new(
        "pgshape_client_connections_total",
        "Client connections accepted.",
    )
    .expect("counter");
    connections.inc_by(7);
    registry
        .register(Box::new(connections))
        .expect("register counter");
    AdminState {
        stats: Some(stats),
        registry,
        rules_of: Some(Arc::new(|fp: crate::sql::Fingerprint| {
            // Pretend a rule hit every shape whose id is even, to see the field filled per row.
            if fp.0.is_multiple_of(2) {
                vec!["some-rule".to_owned()]
            } else {
                Vec::new()
            }
        })),
        rewrite_of: None,
    }
}

#[tokio::test]
async fn rows_carry_the_rules_that_hit_their_shape() {
    let server = Server::start(router(state())).await;
    let (status, _, body) = server.request("GET", "/api/queries?limit=1000").await;
    assert_eq!(status, 200);
    let rows: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty());
    for row in rows {
        let Ok(fp) = u64::from_str_radix(row["fingerprint"].as_str().unwrap(), 16) else {
            continue;
        };
        let want: Vec<&str> = if fp.is_multiple_of(2) {
            vec!["some-rule"]
        } else {
            vec![]
        };
        let got: Vec<&str> = row["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{row}");
    }
}

#[tokio::test]
async fn metrics_have_stats_and_proxy_families_and_pass_promtool() {
    let server = Server::start(router(state())).await;
    let (status, head, body) = server.request("GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(
        body.contains("pgshape_client_connections_total 7"),
        "{body}"
    );
    assert!(body.contains(
        r#"pgshape_query_calls_total{fingerprint="00000000000000a1",database="app",user="web"} 10"#
    ));
    assert!(body.contains(r#"sqlstate_class="40"} 3"#));
    assert!(body.contains("pgshape_query_duration_seconds_bucket"));
    promtool_check(&body);
    server.stop().await;
}

#[tokio::test]
async fn queries_are_listed_sorted_and_filtered() {
    let server = Server::start(router(state())).await;
    let (status, rows) = server.json("GET", "/api/queries").await;
    assert_eq!(status, 200);
    let rows = rows.as_array().expect("array").clone();
    assert_eq!(rows.len(), 3);
    // Default order: total time (0.9 s, then 0.15 s, then 0.02 s).
    let fps: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["fingerprint"].as_str())
        .collect();
    assert_eq!(
        fps,
        ["00000000000000c3", "00000000000000b2", "00000000000000a1"]
    );
    for field in [
        "query",
        "database",
        "user",
        "calls",
        "rows",
        "errors",
        "total_ms",
        "mean_ms",
        "stddev_ms",
        "min_ms",
        "max_ms",
        "p50_ms",
        "p90_ms",
        "p95_ms",
        "p99_ms",
        "routes",
        "traceparent",
        "first_seen",
        "last_seen",
    ] {
        assert!(rows[0].get(field).is_some(), "missing {field}");
    }
    let orders = &rows[2];
    assert_eq!(orders["calls"], 10);
    assert_eq!(orders["routes"][0]["tag"], "route");
    assert_eq!(orders["routes"][0]["value"], "^orders/<int:pk>");
    assert_eq!(orders["routes"][1]["value"], "orders");
    assert_eq!(rows[1]["errors"]["40"], 3);
    assert!((orders["p95_ms"].as_f64().unwrap_or(0.0) - 2.0).abs() < 0.02);

    let (_, by_calls) = server.json("GET", "/api/queries?sort=calls&limit=1").await;
    assert_eq!(by_calls[0]["fingerprint"], "00000000000000a1");
    assert_eq!(by_calls.as_array().map(Vec::len), Some(1));
    let (_, reports) = server.json("GET", "/api/queries?database=reports").await;
    assert_eq!(reports.as_array().map(Vec::len), Some(1));
    let (_, errors) = server
        .json("GET", "/api/queries?sort=errors&user=web")
        .await;
    assert_eq!(errors[0]["fingerprint"], "00000000000000b2");
    server.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_named_in_a_400() {
    let server = Server::start(router(state())).await;
    for (path, param) in [
        ("/api/queries?sort=fastest", "sort"),
        ("/api/queries?limit=0", "limit"),
        ("/api/queries?limit=ten", "limit"),
        ("/api/queries?colour=red", "colour"),
        ("/api/queries/xyz", "fingerprint"),
        ("/api/queries/00000000000000a1ff", "fingerprint"),
    ] {
        let (status, body) = server.json("GET", path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["parameter"], param, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (status, _) = server.json("GET", "/api/nope").await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn detail_reset_page_and_health() {
    let server = Server::start(router(state())).await;
    let (status, d) = server.json("GET", "/api/queries/00000000000000a1").await;
    assert_eq!(status, 200);
    let entry = &d["entries"][0];
    assert_eq!(entry["calls"], 10);
    let hist = entry["histogram"].as_array().expect("histogram");
    assert_eq!(
        hist.iter().filter_map(|b| b["count"].as_u64()).sum::<u64>(),
        10
    );
    let (status, _) = server.json("GET", "/api/queries/00000000000000ff").await;
    assert_eq!(status, 404);

    let (status, page, body) = server.request("GET", "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("text/html"));
    // Self-contained: nothing loaded from elsewhere (the browser test, tests/admin_page_browser.rs,
    // checks what it shows).
    for external in [
        "<script src",
        "<link",
        "@import",
        "url(",
        "fetch(\"http",
        "//cdn",
    ] {
        assert!(!body.contains(external), "the page loads {external}");
    }
    for endpoint in [
        "api/queries?",
        "/history",
        "api/rules",
        "api/status",
        "readyz",
    ] {
        assert!(body.contains(endpoint), "the page does not read {endpoint}");
    }
    let (status, _, body) = server.request("GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let (status, _) = server.json("POST", "/api/queries/reset").await;
    assert_eq!(status, 200);
    let (_, rows) = server.json("GET", "/api/queries").await;
    assert_eq!(rows.as_array().map(Vec::len), Some(0));
    server.stop().await;
}

#[tokio::test]
async fn history_of_a_shape_and_status() {
    let state = state();
    let stats = state.stats.clone().expect("stats");
    let server = Server::start(router(state)).await;
    let path = "/api/queries/00000000000000a1/history";
    let (status, h) = server.json("GET", path).await;
    assert_eq!(status, 200);
    assert_eq!(
        (h["followed"].as_bool(), h["interval_s"].as_u64()),
        (Some(false), Some(30))
    );
    assert_eq!(h["points"].as_array().map(Vec::len), Some(0));

    // Two ticks with 5 more calls in between: one point of 5 calls at 2 ms.
    stats.tick_history();
    let f = Fixture::new();
    for _ in 0..5 {
        f.run(
            &*stats,
            0xa1,
            "SELECT * FROM orders WHERE id = 1",
            2_000,
            1,
            None,
        );
    }
    stats.tick_history();
    let (_, h) = server.json("GET", path).await;
    assert_eq!(h["followed"], true);
    let points = h["points"].as_array().expect("points");
    assert_eq!(points.len(), 1, "{h}");
    assert_eq!(points[0]["calls"], 5);
    let p95 = points[0]["p95_ms"].as_f64().expect("p95");
    assert!((p95 - 2.0).abs() < 0.02, "{p95}");

    let (status, e) = server.json("GET", "/api/queries/xyz/history").await;
    assert_eq!(
        (status, e["parameter"].as_str()),
        (400, Some("fingerprint"))
    );

    let (status, s) = server.json("GET", "/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(s["connections"]["client_connections_total"], 7.0);
    assert_eq!(s["connections"]["server_connections_active"], Value::Null);
    assert_eq!(s["stats"]["entries"], 3);
    assert_eq!(s["stats"]["history_shapes"], 50);
    server.stop().await;
}

#[tokio::test]
async fn other_modules_merge_routes_and_stats_can_be_off() {
    let state = AdminState {
        stats: None,
        registry: Registry::new(),
        rules_of: None,
        rewrite_of: None,
    };
    let rules = Router::new().route("/api/rules", get(|| async { "[]" }));
    let server = Server::start(router(state).merge(rules)).await;
    let (status, _, body) = server.request("GET", "/api/rules").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let (status, body) = server.json("GET", "/api/queries").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("switched off"))
    );
    server.stop().await;
}

#[tokio::test]
async fn admin_token_guards_the_endpoints_that_change_state() {
    let state = state();
    let stats = state.stats.clone().unwrap();
    let app = super::protect_writes(router(state), Some("s3cret-token".into()));
    let server = Server::start(app).await;

    let (status, head, body) = server.request("POST", "/api/queries/reset").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, _, body) = server
        .request_with(
            "POST",
            "/api/queries/reset",
            "Authorization: Bearer s3cret-tokeN\r\n",
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("wrong bearer token"), "{body}");
    assert!(!stats.is_empty(), "a refused reset changed nothing");

    // Reads need no token.
    for path in ["/metrics", "/api/queries", "/healthz", "/"] {
        let (status, _, _) = server.request("GET", path).await;
        assert_eq!(status, 200, "{path}");
    }

    let (status, _, body) = server
        .request_with(
            "POST",
            "/api/queries/reset",
            "Authorization: Bearer s3cret-token\r\n",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(stats.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn histograms_in_the_listing_on_request_read_by_the_client() {
    let server = Server::start(router(state())).await;
    let (_, plain) = server.json("GET", "/api/queries").await;
    assert!(plain[0].get("histogram").is_none(), "only when asked");
    let (status, body) = server.json("GET", "/api/queries?histogram=maybe").await;
    assert_eq!(
        (status, body["parameter"].as_str()),
        (400, Some("histogram"))
    );

    // The CLI's blocking client, as `pgshape top` and `snapshot` read the listing.
    let admin = format!("http://{}", server.addr);
    let rows: Value = tokio::task::spawn_blocking(move || {
        super::client::AdminClient::new(&admin)
            .and_then(|c| c.get_json("/api/queries?histogram=true&sort=calls"))
    })
    .await
    .expect("join")
    .expect("listing");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["fingerprint"], "00000000000000a1",
        "sorted by calls"
    );
    for row in rows {
        let counted: u64 = row["histogram"]
            .as_array()
            .expect("histogram")
            .iter()
            .filter_map(|b| b["count"].as_u64())
            .sum();
        assert_eq!(Some(counted), row["calls"].as_u64(), "{row}");
    }
    server.stop().await;
}
