//! The rule engine as the proxy's gate, end to end with psql against a real PostgreSQL:
//! `warn` rules arrive as WARNING notices, `block` rules as the documented error, and the
//! n-plus-one count follows the transaction boundaries the proxy reports.

mod support;

use std::sync::Arc;

use pgshape::config::Config;
use pgshape::event::StatementGate;
use pgshape::proxy::Proxy;
use pgshape::rules::{RuleEngine, RulesConfig};
use support::{PgCluster, psql, psql_query};

const SCHEMA: &str = "
CREATE TABLE shop_order (id bigserial PRIMARY KEY, customer_id bigint, status text, created_at timestamptz);
CREATE TABLE shop_orderitem (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES shop_order (id), sku text);
INSERT INTO shop_order (customer_id, status) SELECT g, 'new' FROM generate_series(1, 50) g;
INSERT INTO shop_orderitem (order_id, sku) SELECT g, 'A' FROM generate_series(1, 50) g;
";

fn rule(id: &str, action: &str, matcher: &str) -> String {
    format!(
        "id = \"{id}\"\ndescription = \"d\"\nseverity = \"warning\"\naction = \"{action}\"\n\
         message = \"{id} says no\"\nhint = \"{id} hint\"\n[match]\n{matcher}\n"
    )
}

#[test]
fn warn_block_and_n_plus_one_through_the_proxy() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, SCHEMA);
    let rules = tempfile::tempdir().expect("tempdir");
    let files = [
        (
            "a.toml",
            rule(
                "distinct-fanout",
                "warn",
                "distinct_over_fanout_join = true",
            ),
        ),
        (
            "b.toml",
            rule(
                "no-bare-delete",
                "block",
                "statement = \"delete\"\nwhere_absent = true",
            ),
        ),
        (
            "c.toml",
            rule(
                "n-plus-one",
                "warn",
                // A 1 ms window: only the per-transaction count can fire here.
                "statement = \"select\"\nrepeats_gt = 10\nrepeat_window_ms = 1",
            ),
        ),
    ];
    for (name, text) in &files {
        std::fs::write(rules.path().join(name), text).expect("write rule");
    }
    let engine = Arc::new(
        RuleEngine::new(RulesConfig {
            dir: Some(rules.path().to_owned()),
            ..RulesConfig::default()
        })
        .expect("rules load"),
    );
    let gate: Arc<dyn StatementGate> = Arc::new(engine.clone());
    let config = Config {
        listen: "127.0.0.1:0".into(),
        upstream: cluster.addr().to_string(),
        admin: None,
        workers: 1,
        ..Config::default()
    };
    let proxy = Proxy::builder(config)
        .gate(gate)
        .start()
        .expect("proxy starts");
    let via = db.via(proxy.local_addr());

    let out = psql(
        &via,
        &[
            "-X",
            "-c",
            "SELECT DISTINCT o.id FROM shop_order o JOIN shop_orderitem i ON i.order_id = o.id",
        ],
        None,
    );
    out.assert_success();
    assert!(
        out.stderr
            .contains("WARNING:  pgshape rule distinct-fanout: distinct-fanout says no"),
        "{}",
        out.stderr
    );
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.trim().parse::<u64>().is_ok())
            .count(),
        50
    );

    let out = psql(
        &via,
        &[
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "DELETE FROM shop_orderitem",
        ],
        None,
    );
    assert!(!out.success());
    assert!(out.stderr.contains("no-bare-delete"), "{}", out.stderr);
    assert!(
        out.stderr.contains("HINT:  no-bare-delete hint"),
        "{}",
        out.stderr
    );
    assert_eq!(
        psql_query(&db, "SELECT count(*) FROM shop_orderitem"),
        "50",
        "not executed"
    );

    // 15 lookups in one transaction, then 5 more in the next: only the 11th..15th warn.
    let mut script = String::from("BEGIN;\n");
    for id in 1..=15 {
        script.push_str(&format!("SELECT status FROM shop_order WHERE id = {id};\n"));
    }
    script.push_str("COMMIT;\nBEGIN;\n");
    for id in 1..=5 {
        script.push_str(&format!("SELECT status FROM shop_order WHERE id = {id};\n"));
    }
    script.push_str("COMMIT;\n");
    let out = psql(&via, &["-X", "-q", "-f", "-"], Some(&script));
    out.assert_success();
    let warnings = out.stderr.matches("pgshape rule n-plus-one").count();
    assert_eq!(warnings, 5, "{}", out.stderr);
}
