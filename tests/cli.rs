//! The `pgshape` binary as a user runs it: `--help`, and `check` as a CI step.

mod support;

use std::process::Command;

use support::serve::{Serve, free_addr};
use support::{PgCluster, psql_query};

fn pgshape(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgshape"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pgshape")
}

#[test]
fn help_describes_serve_and_check() {
    let out = pgshape(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve"), "{text}");
    assert!(text.contains("check"), "{text}");
    let out = pgshape(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--upstream",
        "--admin",
        "--config",
        "--rules",
        "--schema-dsn",
        "PGSHAPE_UPSTREAM",
        "--admin-token",
        "PGSHAPE_ADMIN_TOKEN",
        "--admin-write",
        "--admin-insecure",
        "PGSHAPE_ADMIN_INSECURE",
        "--cancel-on-client-disconnect",
        "--max-connections-per-database",
        "--max-connections-per-user",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}: {text}");
    }
    let out = pgshape(&["check", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--pg-stat-statements"), "{text}");
    let out = pgshape(&["rewrite", "explain", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--admin") && text.contains("FINGERPRINT"),
        "{text}"
    );
}

#[test]
fn check_fails_the_build_on_the_incident_shape() {
    let out = pgshape(&[
        "check",
        "--fail-on",
        "warning",
        "tests/corpus/django-orders.sql",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("tests/corpus/django-orders.sql:12: warning [distinct-over-fanout-join]"),
        "{text}"
    );
    assert!(text.contains("hint: use EXISTS"), "{text}");
    // Warnings only: the default --fail-on error lets the build pass.
    let out = pgshape(&["check", "tests/corpus/django-orders.sql"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_reads_stdin_and_speaks_github() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgshape"))
        .args(["check", "--format", "github", "--fail-on", "error", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 1;\nDELETE FROM accounts;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("::error"), "{text}");
    assert!(text.contains("update-or-delete-without-where"), "{text}");
}

#[test]
fn bad_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgshape.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\nno_such_key = 1\n").unwrap();
    // As on many developer machines: the error chain alone, never a stack backtrace.
    let out = Command::new(env!("CARGO_BIN_EXE_pgshape"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run pgshape");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("pgshape.toml"), "{err}");
    assert!(err.contains("no_such_key"), "{err}");
    assert_eq!(
        err.matches("TOML parse error").count(),
        1,
        "each cause once: {err}"
    );
    assert!(
        !err.contains("backtrace") && !err.contains("Stack") && !err.contains("main.rs"),
        "{err}"
    );
}

#[test]
fn demo_catches_the_incident_shape_and_cleans_up() {
    let out = pgshape(&["demo", "--once", "--orders", "3000"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    assert!(
        text.contains("WARNING: pgshape rule distinct-over-fanout-join"),
        "{text}"
    );
    assert!(text.contains("[fan-out judged by catalog]"), "{text}");
    assert!(
        text.contains("0 rule warnings, same 25 orders: yes"),
        "{text}"
    );
    // Its plan, captured on the monitoring connection, shows the incident's signature.
    assert!(
        text.contains("Its plan, captured on the monitoring connection (`pgshape explain "),
        "{text}"
    );
    assert!(text.contains(" Join  (rows="), "{text}");
    assert!(text.contains("the incident's signature"), "{text}");
    // Fixed live: the rule switched to rewrite, the unchanged query rewritten to EXISTS, and
    // the same orders come back.
    assert!(text.contains("3. The fix without a deploy"), "{text}");
    assert!(
        text.contains("proven from the catalog; the server now runs:")
            && text.contains(r#"WHERE EXISTS (SELECT 1 FROM "shop_orderitem""#),
        "{text}"
    );
    assert!(
        text.contains("5 statements rewritten, same 25 orders: yes"),
        "{text}"
    );
    assert!(
        text.contains("rewritten by distinct-over-fanout-join: p95"),
        "{text}"
    );
    // The SRE view links the slow shape to its endpoint and to the trace of its slowest run.
    assert!(
        text.contains("sent by route order/api/v1/panel/orders/, slowest trace 7d1e"),
        "{text}"
    );
    let dir = text
        .split("(data in ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("demo names its data directory: {text}"));
    assert!(
        !std::path::Path::new(dir).exists(),
        "throw-away server directory left behind: {dir}"
    );
}

#[test]
fn example_config_parses_and_matches_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pgshape.example.toml");
    let config = pgshape::config::Config::from_file(&path).expect("example config is valid");
    let defaults = pgshape::config::Config::default();
    assert_eq!(config.listen, defaults.listen);
    assert_eq!(config.max_frame_size, defaults.max_frame_size);
    assert_eq!(
        config.stats.max_fingerprints,
        defaults.stats.max_fingerprints
    );
    assert_eq!(
        config.stats.histogram_buckets_ms,
        defaults.stats.histogram_buckets_ms
    );
    assert_eq!(config.rules, defaults.rules);
    assert_eq!(config.auth, defaults.auth);
    config.stats.validate().expect("valid [stats]");
}

#[test]
fn check_reads_the_busiest_shapes_from_pg_stat_statements() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    // The shared cluster preloads the library; the view lives where the extension is created.
    psql_query(
        &db,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; \
         CREATE TABLE orders(id int primary key, created date not null); \
         CREATE TABLE order_items(id int primary key, order_id int not null references orders, sku text not null); \
         INSERT INTO orders SELECT g, date '2025-01-01' + g % 300 FROM generate_series(1, 500) g; \
         INSERT INTO order_items SELECT g, 1 + g % 500, 'sku' || g % 50 FROM generate_series(1, 5000) g",
    );
    for sku in ["sku1", "sku2", "sku3"] {
        psql_query(
            &db,
            &format!(
                "SELECT DISTINCT o.id, o.created FROM orders o JOIN order_items i ON i.order_id = o.id \
                 WHERE i.sku = '{sku}' ORDER BY o.created DESC LIMIT 25"
            ),
        );
    }
    let dsn = db.dsn();
    let out = pgshape(&["check", "--pg-stat-statements", &dsn, "--format", "json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "a warning is under --fail-on error: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("json report");
    let hits: Vec<&serde_json::Value> = report["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["note"].as_str().is_some_and(|n| n.contains(&db.dbname)))
        .collect();
    let fanout = hits
        .iter()
        .find(|h| h["rule"] == "distinct-over-fanout-join")
        .unwrap_or_else(|| panic!("no fan-out hit: {stdout}"));
    assert_eq!(fanout["file"], "pg_stat_statements");
    // The three runs are one normalized statement with three calls.
    assert!(
        fanout["note"].as_str().unwrap().starts_with("3 calls, "),
        "{fanout:#}"
    );
    assert!(
        fanout["statement"].as_str().unwrap().contains("$1"),
        "{fanout:#}"
    );

    let out = pgshape(&[
        "check",
        "--pg-stat-statements",
        &dsn,
        "--fail-on",
        "warning",
    ]);
    assert_eq!(out.status.code(), Some(1), "a warning now fails the check");
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("seen: 3 calls, "), "{human}");

    let missing = pgshape(&[
        "check",
        "--pg-stat-statements",
        "host=127.0.0.1 port=1 connect_timeout=2",
    ]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("reading pg_stat_statements") && err.contains("connect"),
        "{err}"
    );
}

/// Django's `.filter(items__sku='A').distinct().order_by('-items__price')`: the ordering column
/// is the child's, so it must be in the select list and the join cannot move.
const ORDER_BY_CHILD: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at", "shop_orderitem"."price" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" = 'A' ORDER BY "shop_orderitem"."price" DESC LIMIT 25"#;

/// The incident's list query, its `.distinct().count()` and the child-ordered variant, one per
/// line, in `dir/incident.sql`.
fn incident_file(dir: &std::path::Path) -> String {
    let path = dir.join("incident.sql");
    std::fs::write(
        &path,
        format!(
            "{};\n{};\n{};\n",
            support::shop::INCIDENT,
            support::shop::COUNT,
            ORDER_BY_CHILD
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn check_with_schema_dsn_prints_the_proven_rewrite() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, support::shop::SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let file = incident_file(dir.path());
    let dsn = db.dsn();

    let out = pgshape(&["check", "--schema-dsn", &dsn, &file]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "warnings only: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let under = |line: usize| -> Vec<&str> {
        let at = lines
            .iter()
            .position(|l| {
                l.starts_with(&format!(
                    "{file}:{line}: warning [distinct-over-fanout-join]"
                ))
            })
            .unwrap_or_else(|| panic!("no hit on line {line}: {text}"));
        lines[at + 1..]
            .iter()
            .take_while(|l| l.starts_with("    "))
            .copied()
            .collect()
    };
    // The list query: EXISTS in place of the join, the DISTINCT dropped (the select list holds
    // the primary key), the statement's own constants, and Describe agreeing on the columns.
    let list = under(1);
    // The statements name no database: they are judged in the DSN's, by its catalog.
    assert_eq!(
        text.matches("[fan-out judged by catalog]").count(),
        3,
        "{text}"
    );
    assert!(
        list.contains(
            &r#"    rewrite (semi-join, DISTINCT dropped, result shape checked): SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE ("shop_order"."id" = "shop_orderitem"."order_id") AND "shop_orderitem"."sku" IN ('A', 'B')) ORDER BY "shop_order"."created_at" DESC LIMIT 25"#
        ),
        "{text}"
    );
    // `.distinct().count()`: the inner DISTINCT becomes EXISTS under the COUNT(*).
    let count = under(2);
    let rewrite = count
        .iter()
        .find(|l| l.starts_with("    rewrite (semi-join under COUNT(*), DISTINCT dropped, result shape checked): SELECT COUNT(*) FROM (SELECT "))
        .unwrap_or_else(|| panic!("no COUNT(*) rewrite: {text}"));
    assert!(
        rewrite.contains(r#"WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE"#)
            && rewrite.contains(r#""shop_orderitem"."sku" IN ('A', 'B')"#)
            && !rewrite.contains("DISTINCT \""),
        "{rewrite}"
    );
    // Ordered by the child's price: nothing can move, and the reason says why.
    let child = under(3);
    assert!(
        child.iter().any(|l| l.starts_with("    not rewritable: ")
            && l.contains("shop_orderitem: referenced by the select list")),
        "{text}"
    );
    assert!(!text.contains("rewrite not proposed"), "{text}");

    // JSON: a `rewrite` object per hit.
    let out = pgshape(&["check", "--schema-dsn", &dsn, "--format", "json", &file]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let hits = report["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{report:#}");
    let first = &hits[0]["rewrite"];
    assert!(
        first["sql"]
            .as_str()
            .unwrap()
            .contains("WHERE EXISTS (SELECT 1"),
        "{first:#}"
    );
    assert_eq!(first["form"], "distinct");
    assert_eq!(first["kind"], "semi_join");
    assert_eq!(first["distinct_dropped"], true);
    assert_eq!(first["result_shape_checked"], true);
    assert_eq!(hits[1]["rewrite"]["form"], "count_over_distinct");
    assert!(
        hits[2]["rewrite"]["not_provable"]
            .as_str()
            .is_some_and(|r| r.contains("select list")),
        "{report:#}"
    );

    // GitHub: the rewrite rides in the annotation.
    let out = pgshape(&["check", "--schema-dsn", &dsn, "--format", "github", &file]);
    let gh = String::from_utf8_lossy(&out.stdout);
    assert!(
        gh.lines()
            .next()
            .unwrap()
            .contains(" Rewrite (semi-join, DISTINCT dropped, result shape checked): SELECT "),
        "{gh}"
    );

    // Without the catalog nothing is proven, and the report says what is missing.
    let out = pgshape(&["check", &file]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.matches(
            "\n    rewrite not proposed: needs --schema-dsn (a rewrite is proven from the catalog)\n"
        )
        .count(),
        3,
        "{text}"
    );
    assert!(!text.contains("EXISTS ("), "{text}");
}

#[test]
fn check_applies_an_operator_template_without_a_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let file = incident_file(dir.path());
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let fingerprint = pgshape::sql::fingerprint(support::shop::INCIDENT.as_bytes());
    let rule = |id: &str, template: &str| {
        format!(
            "id = \"{id}\"\ndescription = \"the orders panel, fixed without a deploy\"\n\
             severity = \"warning\"\naction = \"rewrite\"\nmessage = \"rewritten\"\n\n\
             [match]\nfingerprint = \"{fingerprint}\"\n\n[rewrite]\nsql = '''{template}'''\n"
        )
    };
    std::fs::write(
        rules.join("hotfix.toml"),
        rule(
            "orders-panel-hotfix",
            r#"SELECT o.id FROM shop_order o WHERE EXISTS (SELECT 1 FROM shop_orderitem i WHERE i.order_id = o.id AND i.sku IN ($1)) ORDER BY o.created_at DESC LIMIT $2"#,
        ),
    )
    .unwrap();
    std::fs::write(
        rules.join("misfit.toml"),
        rule("orders-panel-misfit", "SELECT 1 WHERE $1 = 1"),
    )
    .unwrap();
    let out = pgshape(&["check", "--rules", rules.to_str().unwrap(), &file]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "\n    rewrite (template): SELECT o.id FROM shop_order o WHERE EXISTS (SELECT 1 FROM shop_orderitem i WHERE i.order_id = o.id AND i.sku IN ('A', 'B')) ORDER BY o.created_at DESC LIMIT 25\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\n    not rewritable: slot $1 is a list of values in the original"),
        "{text}"
    );
}

/// `pgshape serve` as a child process (killed on drop) with its proxy and admin addresses.
struct Rewriting {
    serve: Serve,
    admin: std::net::SocketAddr,
    listen: std::net::SocketAddr,
}

impl Rewriting {
    /// The shipped rules with the incident rule set to `action = "rewrite"`, the catalog on.
    fn start(cluster: &PgCluster, dsn: &str, dir: &std::path::Path) -> Rewriting {
        let rules = dir.join("rules");
        std::fs::create_dir(&rules).unwrap();
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        for entry in std::fs::read_dir(shipped).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let mut text = std::fs::read_to_string(&path).unwrap();
                if path.ends_with("distinct-over-fanout-join.toml") {
                    text = text.replace("action = \"observe\"", "action = \"rewrite\"");
                }
                std::fs::write(rules.join(path.file_name().unwrap()), text).unwrap();
            }
        }
        let (listen, admin) = (free_addr(), free_addr());
        let serve = Serve::spawn(
            cluster,
            &rules,
            &[
                "--listen",
                &listen.to_string(),
                "--admin",
                &admin.to_string(),
                "--schema-dsn",
                dsn,
            ],
            &[],
            dir.join("pgshape.log"),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(admin).is_err()
            || std::net::TcpStream::connect(listen).is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "pgshape serve did not start:\n{}",
                serve.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Rewriting {
            serve,
            admin,
            listen,
        }
    }

    /// `GET /api/queries/{fp}` until `done` holds for its JSON (15 s at most).
    fn wait_detail(
        &self,
        fingerprint: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (status, body) =
                support::http(self.admin, "GET", &format!("/api/queries/{fingerprint}"));
            if status == 200 {
                let detail: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                if done(&detail) {
                    return detail;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no answer for {fingerprint} in time: {status} {body}\n{}",
                self.serve.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

#[test]
fn rewrite_explain_shows_a_running_proxys_decision() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, support::shop::SCHEMA);
    let dir = tempfile::tempdir().unwrap();
    let serve = Rewriting::start(cluster, &db.dsn(), dir.path());
    let via = db.via(serve.listen);
    for _ in 0..2 {
        psql_query(&via, support::shop::INCIDENT);
    }
    let fingerprint = pgshape::sql::fingerprint(support::shop::INCIDENT.as_bytes()).to_string();
    serve.wait_detail(&fingerprint, |d| {
        d["rewrite"]["plans"]
            .as_array()
            .is_some_and(|plans| plans.iter().any(|p| p["state"] == "ready"))
    });
    // Proven now: this one is rewritten, and counted.
    psql_query(&via, support::shop::INCIDENT);
    let admin = format!("http://{}", serve.admin);

    let out = pgshape(&["rewrite", "explain", &fingerprint, "--admin", &admin]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with(&format!("fingerprint {fingerprint}\n")),
        "{text}"
    );
    assert!(
        text.contains(r#"WHERE "shop_orderitem"."sku" IN ($1 /*, ... */) ORDER BY "shop_order"."created_at" DESC LIMIT $2"#),
        "{text}"
    );
    assert!(text.contains("\nslots:\n  $1  list: "), "{text}");
    assert!(text.contains("\n  $2  single value\n"), "{text}");
    assert!(text.contains("\nrewrite: enabled\n"), "{text}");
    assert!(
        text.contains(&format!(
            "\nrule distinct-over-fanout-join, database {}\n",
            db.dbname
        )),
        "{text}"
    );
    assert!(
        text.contains("\n  state:    ready (semi-join, DISTINCT dropped, result shape checked)\n"),
        "{text}"
    );
    assert!(
        text.contains(r#"  template: SELECT "shop_order"."id""#)
            && text.contains(r#"WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE ("shop_order"."id" = "shop_orderitem"."order_id") AND "shop_orderitem"."sku" IN ($1))"#),
        "{text}"
    );
    assert!(
        text.contains(r#"  sample:   SELECT "shop_order"."id""#)
            && text.contains(r#""shop_orderitem"."sku" IN ('A', 'B')) ORDER BY "shop_order"."created_at" DESC LIMIT 25"#),
        "{text}"
    );
    assert!(text.contains("\n  outcomes: applied "), "{text}");

    // A host:port address, as `serve --admin` takes it, works too.
    let bare = pgshape(&[
        "rewrite",
        "explain",
        &fingerprint,
        "--admin",
        &serve.admin.to_string(),
    ]);
    assert_eq!(String::from_utf8_lossy(&bare.stdout), text);

    let fails = |args: &[&str], needle: &str| {
        let out = pgshape(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    };
    // A shape this pgshape never saw.
    fails(
        &["rewrite", "explain", "0123456789abcdef", "--admin", &admin],
        "knows nothing of fingerprint 0123456789abcdef",
    );
    // A shape it saw, but no rewrite rule matched.
    psql_query(&via, "SELECT 42");
    let plain = pgshape::sql::fingerprint(b"SELECT 42").to_string();
    serve.wait_detail(&plain, |_| true);
    fails(
        &["rewrite", "explain", &plain, "--admin", &admin],
        &format!("fingerprint {plain} has statistics but no rewrite information"),
    );
    fails(
        &["rewrite", "explain", "not-a-fingerprint", "--admin", &admin],
        "a fingerprint is 16 hexadecimal digits",
    );
    drop(serve);
    fails(
        &["rewrite", "explain", &fingerprint, "--admin", &admin],
        "cannot reach the admin API at http://",
    );
}

/// The shipped rules observe; `--block-on` turns the staging guard on, `--rule-action` sets one
/// rule, and a rule id that does not exist stops pgshape before it listens.
#[test]
fn serve_block_on_and_rule_action_choose_what_acts() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, "CREATE TABLE t(a int); INSERT INTO t VALUES (1), (2)");
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let run = |name: &str, args: &[&str]| {
        let listen = free_addr();
        let mut all = vec![
            "--listen".to_owned(),
            listen.to_string(),
            "--admin".to_owned(),
            "off".to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let serve = Serve::spawn(cluster, &shipped, &all, &[], dir.path().join(name));
        serve.wait_log("listening");
        let out = support::psql(&db.via(listen), &["-c", "DELETE FROM t"], None);
        (serve, out)
    };

    let (_serve, out) = run("default.log", &[]);
    out.assert_success();
    assert!(!out.stderr.contains("WARNING"), "{}", out.stderr);
    psql_query(&db, "INSERT INTO t VALUES (1), (2)");

    let (_serve, out) = run("guard.log", &["--block-on", "error"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("PGS01")
            || out
                .stderr
                .contains("blocked by rule update-or-delete-without-where"),
        "{}",
        out.stderr
    );
    assert_eq!(
        psql_query(&db, "SELECT count(*) FROM t"),
        "2",
        "nothing deleted"
    );

    let (_serve, out) = run(
        "per-rule.log",
        &[
            "--block-on",
            "error",
            "--rule-action",
            "update-or-delete-without-where=warn",
        ],
    );
    out.assert_success();
    assert!(out.stderr.contains("WARNING"), "{}", out.stderr);
    assert_eq!(psql_query(&db, "SELECT count(*) FROM t"), "0");

    let out = pgshape(&[
        "serve",
        "--listen",
        &free_addr().to_string(),
        "--upstream",
        &cluster.addr().to_string(),
        "--admin",
        "off",
        "--rule-action",
        "update-without-where=block",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no rule has id `update-without-where`"),
        "{err}"
    );
    let out = pgshape(&["serve", "--rule-action", "n-plus-one=loud"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unknown action `loud`"), "{err}");
}
