//! Rules acting on live traffic through the full pgshape (App): the incident's DISTINCT over a
//! fan-out join is flagged in simple and extended protocol, `warn` reaches psql as a NOTICE,
//! and `block` refuses a statement while leaving client and server agreeing on the
//! transaction state — outside and inside BEGIN, simple, extended and pipelined.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use pgshape::app::App;
use pgshape::config::Config;
use pgshape::protocol::encode;
use support::{ConnParams, PgCluster, psql, psql_query};
use tokio_postgres::error::SqlState;

const SCHEMA: &str = "CREATE TABLE shop_order(id bigserial primary key, customer_id int, \
                      status text, created_at timestamptz default now()); \
                      CREATE TABLE shop_orderitem(id bigserial primary key, \
                      order_id bigint references shop_order(id), sku text, qty int, price numeric); \
                      CREATE INDEX ON shop_orderitem(order_id); \
                      INSERT INTO shop_order(customer_id, status) SELECT g, 'paid' FROM generate_series(1, 20) g; \
                      INSERT INTO shop_orderitem(order_id, sku, qty, price) \
                      SELECT 1 + g % 20, CASE WHEN g % 2 = 0 THEN 'A' ELSE 'B' END, 1 + g % 3, g FROM generate_series(1, 100) g; \
                      CREATE TABLE t(a int); INSERT INTO t VALUES (1), (2), (3)";

/// The exact SQL Django 5.2 sends for the incident's queryset (psycopg2, literals inlined).
const INCIDENT: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ('A', 'B') ORDER BY "shop_order"."created_at" DESC LIMIT 25"#;
/// The same statement as psycopg 3 sends it with server-side binding.
const INCIDENT_PARAMS: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ($1, $2) ORDER BY "shop_order"."created_at" DESC LIMIT 25"#;
/// Many-to-one (items → their order): no fan-out, must not be flagged.
const MANY_TO_ONE: &str = r#"SELECT DISTINCT "shop_orderitem"."id", "shop_order"."status" FROM "shop_orderitem" INNER JOIN "shop_order" ON ("shop_orderitem"."order_id" = "shop_order"."id") WHERE "shop_order"."status" = 'paid' LIMIT 50"#;

/// The shipped rules with the incident rule switched to `warn`.
fn rules_dir(action: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        if path.ends_with("distinct-over-fanout-join.toml") {
            text = text.replace("action = \"observe\"", &format!("action = \"{action}\""));
        }
        std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
    }
    dir
}

/// `serve --block-on error`: the staging guard, under which the shipped
/// update-or-delete-without-where rule blocks.
fn staging_guard(config: &mut Config, _: &ConnParams) {
    config.rules.block_on = Some(pgshape::rules::Severity::Error);
}

struct Running {
    app: Option<App>,
    db: ConnParams,
    _rules: tempfile::TempDir,
}

impl Running {
    fn start(action: &str, adjust: impl FnOnce(&mut Config, &ConnParams)) -> Running {
        let cluster = PgCluster::shared();
        let db = cluster.fresh_database();
        psql_query(&db, SCHEMA);
        let rules = rules_dir(action);
        let mut config = Config {
            workers: 2,
            shutdown_grace_ms: 1_000,
            ..support::app_config(cluster)
        };
        config.rules.dir = Some(rules.path().to_owned());
        adjust(&mut config, &db);
        let app = App::start(config).expect("pgshape starts");
        Running {
            app: Some(app),
            db,
            _rules: rules,
        }
    }

    fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    fn via(&self) -> ConnParams {
        self.db.via(self.app().proxy_addr())
    }

    fn http(&self, method: &str, path: &str) -> String {
        let (status, body) = support::http(self.app().admin_addr().unwrap(), method, path);
        assert_eq!(status, 200, "{method} {path}: {body}");
        body
    }

    fn hits(&self, rule: &str) -> u64 {
        let body = self.http("GET", "/api/rules");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == rule)
            .map(|r| r["hits"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("rule {rule} not listed: {json}"))
    }

    async fn tokio_client(&self) -> tokio_postgres::Client {
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

#[test]
fn incident_shape_warns_in_psql_and_still_returns_rows() {
    let run = Running::start("warn", |_, _| {});
    let out = psql(&run.via(), &["-X", "-A", "-t", "-c", INCIDENT], None);
    out.assert_success();
    assert!(
        out.stderr
            .contains("WARNING:  pgshape rule distinct-over-fanout-join"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("HINT:  use EXISTS"), "{}", out.stderr);
    assert_eq!(
        out.stdout.lines().count(),
        20,
        "all 20 orders still returned"
    );
    assert_eq!(run.hits("distinct-over-fanout-join"), 1);

    let clean = psql(&run.via(), &["-X", "-A", "-t", "-c", MANY_TO_ONE], None);
    clean.assert_success();
    assert!(
        !clean.stderr.contains("WARNING"),
        "false positive: {}",
        clean.stderr
    );
    assert_eq!(run.hits("distinct-over-fanout-join"), 1);
}

#[tokio::test]
async fn incident_shape_is_flagged_in_extended_protocol_with_parameters() {
    let run = Running::start("observe", |_, _| {});
    let client = run.tokio_client().await;
    let rows = client.query(INCIDENT_PARAMS, &[&"A", &"B"]).await.unwrap();
    assert_eq!(rows.len(), 20);
    assert_eq!(run.hits("distinct-over-fanout-join"), 1);
    // Literal and parameter forms are one fingerprint, so the metric has one series.
    psql(&run.via(), &["-c", INCIDENT], None).assert_success();
    assert_eq!(run.hits("distinct-over-fanout-join"), 2);
    let metrics = run.http("GET", "/metrics");
    let series: Vec<_> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("pgshape_rule_hits_total") && l.contains("distinct-over-fanout-join")
        })
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(series[0].ends_with(" 2"), "{series:?}");
}

#[tokio::test]
async fn incident_shape_is_flagged_with_the_schema_catalog() {
    let run = Running::start("observe", |config, db| {
        config.rules.schema_dsn = Some(db.dsn());
    });
    let client = run.tokio_client().await;
    // Give the catalog loader its first pass over this database.
    client.query(MANY_TO_ONE, &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    client.query(INCIDENT_PARAMS, &[&"A", &"B"]).await.unwrap();
    client.query(MANY_TO_ONE, &[]).await.unwrap();
    assert_eq!(run.hits("distinct-over-fanout-join"), 1);
}

/// Join columns whose names say nothing (`invoice_code`): the naming heuristic cannot tell, so
/// only the catalog (no unique index on `invoice_line.invoice_code`) finds the fan-out.
#[tokio::test]
async fn only_the_catalog_sees_fan_out_behind_uninformative_names() {
    const INVOICES: &str = "CREATE TABLE invoice(code text primary key); \
        CREATE TABLE invoice_line(invoice_code text references invoice(code), amount int); \
        INSERT INTO invoice VALUES ('a'), ('b'); \
        INSERT INTO invoice_line VALUES ('a', 1), ('a', 2), ('b', 3)";
    const QUERY: &str = "SELECT DISTINCT invoice.code FROM invoice \
        JOIN invoice_line ON invoice_line.invoice_code = invoice.code";
    for (with_catalog, expected_hits) in [(false, 0), (true, 1)] {
        let run = Running::start("observe", |config, db| {
            psql_query(db, INVOICES);
            if with_catalog {
                config.rules.schema_dsn = Some(db.dsn());
            }
        });
        let client = run.tokio_client().await;
        // The first join seen in a database queues its catalog load; until it is loaded the
        // heuristic decides (and cannot see this fan-out).
        client.query(QUERY, &[]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let rows = client.query(QUERY, &[]).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            run.hits("distinct-over-fanout-join"),
            expected_hits,
            "with catalog: {with_catalog}"
        );
    }
}

#[test]
fn block_outside_and_inside_a_transaction_in_simple_protocol() {
    let run = Running::start("observe", staging_guard);
    let out = psql(&run.via(), &["-X", "-c", "DELETE FROM t"], None);
    assert!(!out.success());
    assert!(
        out.stderr
            .contains("ERROR:  pgshape: statement blocked by rule update-or-delete-without-where"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("HINT:  add a WHERE clause"),
        "{}",
        out.stderr
    );
    // pgshape's DO block raised it; its PL/pgSQL context is pgshape's business, not the user's.
    assert!(!out.stderr.contains("CONTEXT"), "{}", out.stderr);
    assert_eq!(psql_query(&run.via(), "SELECT count(*) FROM t"), "3");

    let script = "\\set VERBOSITY verbose\n\
                  BEGIN;\n\
                  INSERT INTO t VALUES (4);\n\
                  DELETE FROM t;\n\
                  SELECT 1;\n\
                  ROLLBACK;\n\
                  SELECT count(*) FROM t;\n";
    let out = psql(&run.via(), &["-X", "-A", "-t", "-f", "-"], Some(script));
    assert!(
        out.stderr.contains("ERROR:  PGS01:"),
        "documented SQLSTATE: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("CONTEXT") && !out.stderr.contains("inline_code_block"),
        "verbose, still no PL/pgSQL context: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("25P02: current transaction is aborted"),
        "server's transaction is aborted too: {}",
        out.stderr
    );
    assert_eq!(
        out.stdout.trim().lines().last(),
        Some("3"),
        "insert rolled back with the transaction"
    );
}

#[tokio::test]
async fn block_in_extended_protocol_keeps_transaction_state_consistent() {
    let run = Running::start("observe", staging_guard);
    let blocked = SqlState::from_code("PGS01");
    let mut client = run.tokio_client().await;
    let err = client.execute("DELETE FROM t", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&blocked));
    let db_error = err.as_db_error().expect("a server error");
    assert_eq!(db_error.where_(), None, "no PL/pgSQL context: {db_error:?}");
    assert!(
        db_error
            .hint()
            .is_some_and(|h| h.starts_with("add a WHERE clause")),
        "{db_error:?}"
    );
    // The connection is fine afterwards.
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES ($1)", &[&4i32])
        .await
        .unwrap();
    let err = tx
        .execute("UPDATE t SET a = $1", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&blocked));
    let err = tx.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    tx.rollback().await.unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
}

/// Reads backend messages until ReadyForQuery; returns their tags and the ReadyForQuery status.
fn read_until_ready(s: &mut TcpStream) -> (Vec<u8>, u8, String) {
    let mut tags = Vec::new();
    let mut errors = String::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).unwrap();
        if head[0] == b'E' {
            errors.push_str(&String::from_utf8_lossy(&body));
        }
        if head[0] == b'Z' {
            return (tags, body[0], errors);
        }
        tags.push(head[0]);
    }
}

#[test]
fn block_in_a_pipeline_skips_to_sync_like_a_server_error() {
    let run = Running::start("observe", staging_guard);
    let mut s = TcpStream::connect(run.app().proxy_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&encode::startup(&[
        ("user", &run.db.user),
        ("database", &run.db.dbname),
    ]))
    .unwrap();
    let (_, status, errors) = read_until_ready(&mut s);
    assert_eq!((status, errors.as_str()), (b'I', ""));

    let mut pipeline = Vec::new();
    for sql in [
        "INSERT INTO t VALUES (10)",
        "DELETE FROM t",
        "INSERT INTO t VALUES (11)",
    ] {
        pipeline.extend_from_slice(&encode::parse("", sql));
        pipeline.extend_from_slice(&encode::bind("", ""));
        pipeline.extend_from_slice(&encode::execute("", 0));
    }
    pipeline.extend_from_slice(&encode::sync());
    s.write_all(&pipeline).unwrap();
    let (tags, status, errors) = read_until_ready(&mut s);
    // Exactly what the server sends when the second statement fails: pgshape's own
    // Close/Parse/Bind replies are not visible.
    assert_eq!(String::from_utf8_lossy(&tags), "12C12E");
    assert!(errors.contains("PGS01"), "{errors}");
    assert_eq!(status, b'I');

    // Inside an explicit transaction the block leaves it failed ('E'), as a server error would.
    s.write_all(&encode::query("BEGIN")).unwrap();
    let (_, status, _) = read_until_ready(&mut s);
    assert_eq!(status, b'T');
    let mut pipeline = Vec::new();
    pipeline.extend_from_slice(&encode::parse("", "DELETE FROM t"));
    pipeline.extend_from_slice(&encode::bind("", ""));
    pipeline.extend_from_slice(&encode::execute("", 0));
    pipeline.extend_from_slice(&encode::sync());
    s.write_all(&pipeline).unwrap();
    let (tags, status, errors) = read_until_ready(&mut s);
    assert_eq!(String::from_utf8_lossy(&tags), "12E");
    assert!(errors.contains("PGS01"));
    assert_eq!(status, b'E');
    s.write_all(&encode::query("ROLLBACK")).unwrap();
    let (_, status, _) = read_until_ready(&mut s);
    assert_eq!(status, b'I');
    drop(s);
    assert_eq!(psql_query(&run.via(), "SELECT count(*) FROM t"), "3");
}

#[test]
fn shadow_mode_only_observes() {
    let run = Running::start("warn", |config, db| {
        staging_guard(config, db);
        config.rules.mode = pgshape::rules::Mode::Shadow;
    });
    let out = psql(&run.via(), &["-X", "-c", "DELETE FROM t"], None);
    out.assert_success();
    assert!(!out.stderr.contains("WARNING"), "{}", out.stderr);
    assert_eq!(psql_query(&run.via(), "SELECT count(*) FROM t"), "0");
    assert_eq!(run.hits("update-or-delete-without-where"), 1);
}

/// Transparent by default: with the shipped configuration (embedded rules, no flags), a
/// workload that trips every shipped rule that needs no catalog — destructive statements
/// included — prints exactly what it prints directly, while each rule still counts its hit.
#[test]
fn shipped_defaults_change_nothing_a_client_sees() {
    let cluster = PgCluster::shared();
    let direct = cluster.fresh_database();
    let proxied = cluster.fresh_database();
    for db in [&direct, &proxied] {
        psql_query(db, SCHEMA);
        // The same rows both ways, down to the timestamps the incident's query prints.
        psql_query(
            db,
            "UPDATE shop_order SET created_at = '2026-01-01' WHERE true",
        );
    }
    let app = App::start(support::app_config(cluster)).expect("pgshape starts");

    let in_list: Vec<String> = (1..=1001).map(|i| i.to_string()).collect();
    let repeated = "SELECT status FROM shop_order WHERE id = 1;\n".repeat(12);
    let script = format!(
        "{INCIDENT};\n\
         SELECT count(DISTINCT o.id) FROM shop_order o JOIN shop_orderitem i ON i.order_id = o.id;\n\
         SELECT count(*) FROM shop_order, shop_orderitem;\n\
         SELECT count(*) FROM shop_order WHERE id IN ({});\n\
         SELECT count(*) FROM shop_order WHERE status LIKE '%aid';\n\
         SELECT count(*) FROM shop_order WHERE id NOT IN (SELECT order_id FROM shop_orderitem);\n\
         SELECT id FROM shop_order ORDER BY id OFFSET 1500;\n\
         SELECT count(*) FROM (SELECT id FROM shop_order ORDER BY random()) r;\n\
         BEGIN;\n{repeated}COMMIT;\n\
         UPDATE t SET a = a * 2;\n\
         SELECT a FROM t ORDER BY a;\n\
         DELETE FROM shop_orderitem;\n\
         DELETE FROM t;\n\
         SELECT 1/0;\n\
         SELECT count(*) FROM t;\n\
         TRUNCATE shop_order CASCADE;\n\
         SELECT count(*) FROM shop_order;\n",
        in_list.join(", ")
    );
    let run = |conn: &ConnParams| psql(conn, &["-a"], Some(&script));
    let want = run(&direct);
    let got = run(&proxied.via(app.proxy_addr()));
    assert!(want.stderr.contains("division by zero"), "{}", want.stderr);
    assert_eq!(got.stdout, want.stdout, "stdout through pgshape differs");
    assert_eq!(got.stderr, want.stderr, "stderr (errors, notices) differs");
    assert_eq!(got.status.code(), want.status.code());

    let (status, body) = support::http(app.admin_addr().unwrap(), "GET", "/api/rules");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    for id in [
        "distinct-over-fanout-join",
        "count-distinct-fanout",
        "cartesian-join",
        "huge-in-list",
        "leading-wildcard-like",
        "not-in-subquery",
        "offset-pagination-deep",
        "order-by-random",
        "n-plus-one",
        "update-or-delete-without-where",
    ] {
        let rule = json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("rule {id} not listed: {json}"));
        assert_eq!(rule["action"], "observe", "{id} ships observing");
        assert!(
            rule["hits"].as_u64().unwrap() >= 1,
            "{id} saw its statement: {rule}"
        );
    }
    app.shutdown();
}
