//! The `pgshape` binary as a user runs it: `--help`, and `check` as a CI step.

mod support;

use std::process::Command;

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
        "--cancel-on-client-disconnect",
        "--max-connections-per-database",
        "--max-connections-per-user",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}: {text}");
    }
    let out = pgshape(&["check", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--pg-stat-statements"), "{text}");
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
    let out = pgshape(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pgshape.toml"), "{err}");
    assert!(err.contains("no_such_key"), "{err}");
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
