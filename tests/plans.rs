//! Plans per fingerprint against a real PostgreSQL: the incident's DISTINCT query through
//! pgshape, explained on the `--schema-dsn` connection via the admin API and `pgshape explain`,
//! masked, hashed, a plan change after `CREATE INDEX`, and the refusals.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use pgshape::app::App;
use pgshape::config::Secret;
use serde_json::Value;
use support::shop::{INCIDENT, SCHEMA, incident};
use support::{ConnParams, PgCluster, app_config, http_request, psql_query};

const TOKEN: &str = "plan-s3cret";

struct Running {
    app: Option<App>,
    db: ConnParams,
}

impl Running {
    fn start(schema_dsn: bool) -> Running {
        Self::start_with(schema_dsn, |_| {})
    }

    fn start_with(schema_dsn: bool, adjust: impl FnOnce(&mut pgshape::config::Config)) -> Running {
        let cluster = PgCluster::shared();
        let db = cluster.fresh_database();
        psql_query(&db, SCHEMA);
        let mut config = app_config(cluster);
        adjust(&mut config);
        config.admin_token = Some(Secret::new(TOKEN.to_owned()));
        if schema_dsn {
            config.rules.schema_dsn = Some(db.dsn());
        }
        let app = App::start(config).expect("pgshape starts");
        Running { app: Some(app), db }
    }

    fn app(&self) -> &App {
        self.app.as_ref().expect("running")
    }

    fn via(&self) -> ConnParams {
        self.db.via(self.app().proxy_addr())
    }

    fn admin_url(&self) -> String {
        format!("http://{}", self.app().admin_addr().expect("admin"))
    }

    /// `method path` with the admin token: (status, JSON body).
    fn call(&self, method: &str, path: &str) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        let r = http_request(
            self.app().admin_addr().expect("admin"),
            method,
            path,
            &[("Authorization", &auth)],
        );
        let body = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.body));
        (r.status, body)
    }

    /// Explains `sql`'s shape after running it through pgshape; waits until the execution
    /// was sampled (the event is recorded as the reply passes the proxy).
    fn explain(&self, sql: &str) -> (u16, Value) {
        psql_query(&self.via(), sql);
        self.explain_fp(pgshape::sql::fingerprint(sql.as_bytes()))
    }

    /// POST explain of `fp` until it is no longer 404 (20 s at most).
    fn explain_fp(&self, fp: pgshape::sql::Fingerprint) -> (u16, Value) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.call("POST", &format!("/api/queries/{fp}/explain"));
            if status != 404 || Instant::now() > deadline {
                return (status, body);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }
}

fn nodes<'a>(plan: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(plan);
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

fn node_types(plan: &Value) -> Vec<String> {
    let mut all = Vec::new();
    nodes(plan, &mut all);
    all.iter()
        .map(|n| n["Node Type"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn pgshape_explain(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgshape"))
        .arg("explain")
        .args(args)
        .env_remove("PGSHAPE_ADMIN_TOKEN")
        .output()
        .expect("run pgshape explain")
}

#[test]
fn the_incident_plan_is_captured_masked_and_a_new_index_is_a_plan_change() {
    let pg = Running::start(true);
    // The panel's query with a page of 10 over three SKUs: a few hundred joined rows for 10.
    let sql = incident(&["A", "B", "C"], 10);
    let fp = pgshape::sql::fingerprint(sql.as_bytes()).to_string();
    assert_eq!(
        fp,
        pgshape::sql::fingerprint(INCIDENT.as_bytes()).to_string()
    );

    let (status, first) = pg.explain(&sql);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["fingerprint"], fp.as_str());
    assert_eq!(first["database"], pg.db.dbname.as_str());
    let plan = &first["plan"];
    assert_eq!(plan["Node Type"], "Limit");
    let types = node_types(plan);
    // DISTINCT: a Unique over a sort, or a HashAggregate, depending on the estimates.
    assert!(
        types.iter().any(|t| t == "Unique" || t == "Aggregate"),
        "{types:?}"
    );
    let text = plan.to_string();
    for relation in ["shop_order", "shop_orderitem"] {
        assert!(
            text.contains(&format!("\"Relation Name\":\"{relation}\"")),
            "{text}"
        );
    }
    // The IN list's constants are masked wherever the plan shows the filter.
    assert!(text.contains("sku"), "{text}");
    assert!(!text.contains("{A,B") && !text.contains("'A'"), "{text}");
    assert!(text.contains("ANY (?::text[])"), "{text}");
    assert!(
        first["signature"]
            .as_str()
            .is_some_and(|s| s.contains("Join: about") && s.contains("collapsed to the 10")),
        "{first}"
    );
    assert_eq!(first["plan_change"], false);

    // The shape hash is stable across explains.
    let (status, second) = pg.explain(&sql);
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["shape_hash"], first["shape_hash"]);
    assert_eq!(second["plan_change"], false);

    // An index the planner prefers for the LIMIT: the next explain is a plan change.
    psql_query(
        &pg.db,
        "CREATE INDEX shop_order_recent ON shop_order (created_at DESC, id, customer_id, status); ANALYZE shop_order;",
    );
    let (status, third) = pg.explain(&sql);
    assert_eq!(status, 200, "{third}");
    eprintln!("{}", serde_json::to_string_pretty(&third).unwrap());
    assert_ne!(third["shape_hash"], first["shape_hash"], "{third}");
    assert_eq!(third["plan_change"], true);
    assert!(
        third["plan"].to_string().contains("shop_order_recent"),
        "{third}"
    );

    let metrics = http_request(pg.app().admin_addr().unwrap(), "GET", "/metrics", &[]).body;
    assert!(
        metrics.contains(&format!(
            "pgshape_plan_changes_total{{fingerprint=\"{fp}\"}} 1"
        )),
        "{metrics}"
    );

    // Both plans are kept, the newest first; reads need no token.
    let r = http_request(
        pg.app().admin_addr().unwrap(),
        "GET",
        &format!("/api/queries/{fp}/plans"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let plans: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(plans["current"], third["shape_hash"]);
    let list = plans["plans"].as_array().expect("plans");
    assert_eq!(list.len(), 2, "{plans}");
    assert_eq!(list[0]["shape_hash"], third["shape_hash"]);
    assert_eq!(list[1]["shape_hash"], first["shape_hash"]);
    assert_eq!(list[1]["seen"], 2);
    assert_eq!(list[1]["p95_ms"], Value::Null, "explained on request only");
    assert!(list[1]["first_seen"].as_str().unwrap() <= list[1]["last_seen"].as_str().unwrap());
    assert!(!r.body.contains("{A,B"), "{}", r.body);

    // The CLI: without the token the POST is refused; with it, the tree.
    let out = pgshape_explain(&[&fp, "--admin", &pg.admin_url()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    let out = pgshape_explain(&[&fp, "--admin", &pg.admin_url(), "--admin-token", TOKEN]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    assert!(
        stdout.starts_with(&format!("fingerprint {fp}  database ")),
        "{stdout}"
    );
    assert!(stdout.contains("\nLimit  (rows="), "{stdout}");
    assert!(
        stdout.contains("\nwarning: ") && stdout.contains("the incident's signature"),
        "{stdout}"
    );
    assert!(stdout.contains("shop_order_recent"), "{stdout}");
    assert_eq!(stdout.matches("<== most expensive").count(), 1, "{stdout}");
}

#[test]
fn statements_that_could_write_are_never_explained() {
    let pg = Running::start(true);
    let count = |db: &ConnParams| {
        psql_query(db, "SELECT count(*) FROM shop_orderitem")
            .trim()
            .to_owned()
    };
    let before = count(&pg.db);

    // A data-modifying WITH ends with a SELECT tag, so it is sampled, and then refused.
    let cte = "WITH gone AS (DELETE FROM shop_orderitem WHERE sku = 'Z' RETURNING id) SELECT count(*) FROM gone";
    let (status, body) = pg.explain(cte);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("modifies data"),
        "{body}"
    );

    let locking = "SELECT id FROM shop_order WHERE id = 1 FOR UPDATE";
    let (status, body) = pg.explain(locking);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("row locks"),
        "{body}"
    );

    // Plain DML is never sampled: there is nothing to explain. A SELECT after it in the same
    // session is sampled once the DELETE's event was seen (events arrive in order).
    let dml = "DELETE FROM shop_orderitem WHERE sku = 'Z'";
    let sentinel = "SELECT 42 AS after_the_delete";
    psql_query(&pg.via(), &format!("{dml}; {sentinel}"));
    let (status, body) = pg.explain_fp(pgshape::sql::fingerprint(sentinel.as_bytes()));
    assert_eq!(status, 200, "{body}");
    let fp = pgshape::sql::fingerprint(dml.as_bytes());
    let (status, body) = pg.call("POST", &format!("/api/queries/{fp}/explain"));
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no recent successful execution"),
        "{body}"
    );
    assert_eq!(count(&pg.db), before);

    // `$n` statements from an extended-protocol client: DML is never sampled, a data-modifying
    // WITH is sampled (its tag is SELECT) and refused; the tables are untouched.
    let orders = |db: &ConnParams| {
        psql_query(
            db,
            "SELECT md5(string_agg(id || status || customer_id, ',' ORDER BY id)) FROM shop_order",
        )
    };
    let orders_before = orders(&pg.db);
    let via = pg.via();
    let writes = [
        "UPDATE shop_order SET status = $1 WHERE id = $2",
        "DELETE FROM shop_order WHERE status = $1 AND id = $2",
        "INSERT INTO shop_order (customer_id, status, created_at) SELECT 1, $1, now() WHERE $2::int8 > 0",
    ];
    let cte = "WITH gone AS (DELETE FROM shop_order WHERE status = $1 AND id = $2 RETURNING id) \
               SELECT count(*) FROM gone";
    runtime().block_on(async {
        let client = support::client::tokio_connect(&via).await;
        for sql in writes.iter().chain([&cte]) {
            for _ in 0..3 {
                client
                    .query(*sql, &[&"PLANTED-w", &-1i64])
                    .await
                    .expect(sql);
            }
        }
    });
    let (status, body) = pg.explain_fp(pgshape::sql::fingerprint(cte.as_bytes()));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("modifies data"),
        "{body}"
    );
    for sql in writes {
        let fp = pgshape::sql::fingerprint(sql.as_bytes());
        let (status, body) = pg.call("POST", &format!("/api/queries/{fp}/explain"));
        assert_eq!(status, 404, "{sql}: {body}");
    }
    assert_eq!(orders(&pg.db), orders_before);
    assert_eq!(count(&pg.db), before);

    // Nothing was captured for any of them.
    let fp = pgshape::sql::fingerprint(cte.as_bytes());
    let (status, _) = pg.call("GET", &format!("/api/queries/{fp}/plans"));
    assert_eq!(status, 404);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Explains `fp` until it has a plan: a `$n` shape answers 422 until a Bind's values were
/// captured (the execution after the first).
fn explain_with_values(pg: &Running, fp: pgshape::sql::Fingerprint) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = pg.explain_fp(fp);
        if status == 200 {
            return body;
        }
        assert!(
            status == 422 && Instant::now() < deadline,
            "{status}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_parameterized_select_from_tokio_postgres_is_explained_with_its_sampled_values() {
    let pg = Running::start(true);
    // tokio-postgres declares no types and sends binary values (int8, varchar here).
    let sql = "SELECT o.id FROM shop_order o WHERE o.id = $1 AND o.status <> $2";
    let fp = pgshape::sql::fingerprint(sql.as_bytes());
    let via = pg.via();
    runtime().block_on(async {
        let client = support::client::tokio_connect(&via).await;
        for _ in 0..3 {
            let rows = client.query(sql, &[&7i64, &"PLANTED-t0k10"]).await.unwrap();
            assert_eq!(rows.len(), 1);
        }
    });
    let body = explain_with_values(&pg, fp);
    let text = body.to_string();
    assert!(text.contains("\"Relation Name\":\"shop_order\""), "{text}");
    assert!(
        text.contains("\"Index Name\":\"shop_order_pkey\""),
        "{text}"
    );
    assert!(!text.contains("PLANTED"), "{text}");
    let (status, plans) = pg.call("GET", &format!("/api/queries/{fp}/plans"));
    assert_eq!(status, 200, "{plans}");
    assert!(!plans.to_string().contains("PLANTED"), "{plans}");

    // Declared types (as pgjdbc sends them) are the PREPARE's: the binary int8 value is read
    // as int8 although the column is int4 (inferred, it would be int4 and not decodable).
    let typed = "SELECT o.id FROM shop_order o WHERE o.customer_id = $1 AND o.status <> $2";
    runtime().block_on(async {
        use tokio_postgres::types::Type;
        let client = support::client::tokio_connect(&via).await;
        let statement = client
            .prepare_typed(typed, &[Type::INT8, Type::TEXT])
            .await
            .unwrap();
        for _ in 0..3 {
            client
                .query(&statement, &[&3i64, &"PLANTED-typed"])
                .await
                .unwrap();
        }
    });
    let body = explain_with_values(&pg, pgshape::sql::fingerprint(typed.as_bytes()));
    let text = body.to_string();
    assert!(text.contains("\"Relation Name\":\"shop_order\""), "{text}");
    assert!(!text.contains("PLANTED"), "{text}");
}

#[test]
fn without_a_schema_dsn_explain_says_what_is_missing() {
    let pg = Running::start(false);
    let (status, body) = pg.explain(INCIDENT);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("--schema-dsn"),
        "{body}"
    );
    let fp = pgshape::sql::fingerprint(INCIDENT.as_bytes()).to_string();
    let out = pgshape_explain(&[&fp, "--admin", &pg.admin_url(), "--admin-token", TOKEN]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--schema-dsn"));
}

#[test]
fn a_shape_slow_over_the_interval_is_explained_automatically() {
    let pg = Running::start_with(true, |config| {
        config.stats.history_interval_s = 1;
        config.plans.slow_ms = Some(200);
    });
    // Slow by construction (pg_sleep), and a fast shape beside it.
    let slow = "SELECT count(*) FROM shop_order, pg_sleep(0.3)";
    let fast = "SELECT id FROM shop_order WHERE id = 7";
    let slow_fp = pgshape::sql::fingerprint(slow.as_bytes());
    let fast_fp = pgshape::sql::fingerprint(fast.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(30);
    let plans = loop {
        psql_query(&pg.via(), &format!("{slow}; {fast}"));
        let (status, body) = pg.call("GET", &format!("/api/queries/{slow_fp}/plans"));
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no automatic plan of the slow shape within 30 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let plan = &plans["plans"][0]["plan"];
    assert!(
        plan.to_string()
            .contains("\"Relation Name\":\"shop_order\""),
        "{plans}"
    );
    assert!(plan.to_string().contains("pg_sleep"), "{plans}");
    // Kept with the p95 that made it slow.
    assert!(
        plans["plans"][0]["p95_ms"]
            .as_f64()
            .is_some_and(|p| p >= 200.0),
        "{plans}"
    );
    // Rate-limited: further intervals over the threshold do not explain it again.
    psql_query(&pg.via(), slow);
    std::thread::sleep(Duration::from_millis(2_500));
    let (_, again) = pg.call("GET", &format!("/api/queries/{slow_fp}/plans"));
    assert_eq!(again["plans"][0]["seen"], 1, "{again}");
    let (status, body) = pg.call("GET", &format!("/api/queries/{fast_fp}/plans"));
    assert_eq!(status, 404, "the fast shape was explained: {body}");
}

/// `pgshape serve` logging at debug level, with the monitoring connection, in front of a fresh
/// shop database.
fn serve_debug(
    db: &ConnParams,
    dir: &std::path::Path,
) -> (
    support::serve::Serve,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let (listen, admin) = (support::serve::free_addr(), support::serve::free_addr());
    let rules = dir.join("rules");
    std::fs::create_dir(&rules).unwrap();
    let serve = support::serve::Serve::spawn(
        PgCluster::shared(),
        &rules,
        &[
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
            "--admin-token",
            TOKEN,
            "--schema-dsn",
            &db.dsn(),
        ],
        &[("RUST_LOG", "debug")],
        dir.join("pgshape.log"),
    );
    serve.wait_log("pgshape listening");
    (serve, listen, admin)
}

#[test]
fn asyncpg_and_psycopg3_values_give_the_plan_and_dropping_its_index_is_a_plan_change_never_showing_them()
 {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, SCHEMA);
    psql_query(
        &db,
        "CREATE INDEX shop_orderitem_sku ON shop_orderitem (sku); ANALYZE shop_orderitem",
    );
    let dir = tempfile::tempdir().unwrap();
    let (serve, listen, admin) = serve_debug(&db, dir.path());
    let planted = "PLANTED-5e11a7";
    let sql = "SELECT id, qty FROM shop_orderitem WHERE sku = $1 AND qty >= $2";
    let fp = pgshape::sql::fingerprint(sql.as_bytes());
    let run_client = |driver: &str, sql: &str| {
        let mut cmd = Command::new(support::python());
        cmd.arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/plans_clients.py"),
        )
        .args([driver, &db.via(listen).url(), sql, planted, "1", "3"])
        .env("PYTHONDONTWRITEBYTECODE", "1");
        let out = support::client::run_json("plans_clients.py", cmd, Duration::from_secs(60));
        assert_eq!(out["rows"], 0, "{driver}");
    };
    run_client("asyncpg", sql);
    // psycopg 3: text values with declared types (int2 for the 1).
    let psycopg_sql = "SELECT id FROM shop_orderitem WHERE sku = $1 AND order_id >= $2";
    run_client("psycopg3", psycopg_sql);

    let auth = format!("Bearer {TOKEN}");
    let call = |method: &str, path: &str| {
        let r = http_request(admin, method, path, &[("Authorization", &auth)]);
        assert!(!r.body.contains(planted), "{method} {path}: {}", r.body);
        (
            r.status,
            serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null),
        )
    };
    let explain = |fp: pgshape::sql::Fingerprint| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = call("POST", &format!("/api/queries/{fp}/explain"));
            if status == 200 {
                return body;
            }
            assert!(Instant::now() < deadline, "{status}: {body}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = explain(fp);
    assert!(
        first["plan"].to_string().contains("shop_orderitem_sku"),
        "{first}"
    );
    assert_eq!(first["plan_change"], false);
    let psycopg = explain(pgshape::sql::fingerprint(psycopg_sql.as_bytes()));
    assert!(
        psycopg["plan"].to_string().contains("shop_orderitem_sku"),
        "{psycopg}"
    );

    // The index goes: the next capture (the same sampled values) is a plan change.
    psql_query(&db, "DROP INDEX shop_orderitem_sku");
    let second = explain(fp);
    assert_eq!(second["plan_change"], true, "{second}");
    assert_ne!(second["shape_hash"], first["shape_hash"]);
    let plan = second["plan"].to_string();
    assert!(
        !plan.contains("shop_orderitem_sku") && plan.contains("Seq Scan"),
        "{plan}"
    );
    let log = serve.wait_log("plan change");
    let line = log.lines().find(|l| l.contains("plan change")).unwrap();
    assert!(
        line.contains(&fp.to_string()) && line.contains("Seq Scan"),
        "{line}"
    );
    assert_eq!(
        support::serve::metric(admin, "pgshape_plan_changes_total", &fp.to_string()),
        1.0
    );

    // The planted value shows nowhere: admin API reads, metrics, the debug log.
    call("GET", &format!("/api/queries/{fp}/plans"));
    call("GET", "/api/queries");
    call("GET", &format!("/api/queries/{fp}"));
    let metrics = http_request(admin, "GET", "/metrics", &[]).body;
    assert!(!metrics.contains(planted));
    // (At debug level pgshape itself logs little here; tokio-postgres, which would log the
    // EXPLAIN EXECUTE text, is held at info whatever RUST_LOG says.)
    let log = serve.log();
    assert!(!log.contains(planted), "{log}");
}

#[test]
fn analyze_shows_actual_rows_keeps_the_shape_hash_and_refuses_volatile_functions() {
    let pg = Running::start_with(true, |config| config.plans.analyze = true);
    psql_query(
        &pg.db,
        "CREATE TABLE audit (x int); CREATE SEQUENCE tick; \
         CREATE FUNCTION audit_touch() RETURNS int VOLATILE LANGUAGE sql \
           AS $$ INSERT INTO audit VALUES (1) RETURNING x $$; \
         CREATE VIEW touching AS SELECT audit_touch() AS x; \
         CREATE VIEW over_touching AS SELECT x FROM touching",
    );
    let sql = "SELECT id FROM shop_order WHERE customer_id = 3";
    let (status, body) = pg.explain(sql);
    assert_eq!(status, 200, "{body}");
    let plan = &body["plan"];
    assert!(
        plan["Actual Rows"].as_u64().is_some_and(|r| r > 0),
        "{plan}"
    );
    assert!(plan.get("Shared Hit Blocks").is_some(), "BUFFERS: {plan}");
    // The same plan without ANALYZE has the same shape hash.
    let plain = psql_query(&pg.db, &format!("EXPLAIN (FORMAT JSON) {sql}"));
    let mut plain: Value = serde_json::from_str(&plain).unwrap();
    let mut plain = plain[0]["Plan"].take();
    assert!(plain.get("Actual Rows").is_none());
    pgshape::plans::shape::mask(&mut plain);
    assert_eq!(
        body["shape_hash"],
        pgshape::plans::shape::shape_hash(&plain)
    );

    // A `$n` statement too, with its sampled values.
    let param_sql = "SELECT id FROM shop_order WHERE customer_id = $1";
    let via = pg.via();
    runtime().block_on(async {
        let client = support::client::tokio_connect(&via).await;
        for _ in 0..3 {
            client.query(param_sql, &[&3i32]).await.unwrap();
        }
    });
    let body = explain_with_values(&pg, pgshape::sql::fingerprint(param_sql.as_bytes()));
    assert!(
        body["plan"]["Actual Rows"].as_u64().is_some_and(|r| r > 0),
        "{body}"
    );

    // Volatile functions, called directly or through views, are refused; nothing ran.
    let audit = || psql_query(&pg.db, "SELECT count(*) FROM audit");
    let tick = || psql_query(&pg.db, "SELECT last_value FROM tick");
    for (sql, function) in [
        ("SELECT audit_touch()", "audit_touch"),
        ("SELECT nextval('tick')", "nextval"),
        ("SELECT x FROM over_touching", "audit_touch"),
    ] {
        psql_query(&pg.via(), sql);
        let (audit_before, tick_before) = (audit(), tick());
        let (status, body) = pg.explain_fp(pgshape::sql::fingerprint(sql.as_bytes()));
        assert_eq!(status, 422, "{sql}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("VOLATILE") && error.contains(function),
            "{error}"
        );
        assert_eq!((audit(), tick()), (audit_before, tick_before), "{sql}");
    }
}
