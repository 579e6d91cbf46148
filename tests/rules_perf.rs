//! Rough cost of rule evaluation, for the report (run with
//! `cargo test --release --test rules_perf -- --ignored --nocapture`). Not a regression gate:
//! timings on a shared CI machine are too noisy to assert on.

use std::hint::black_box;
use std::time::Instant;

use pgshape::rules::{ConnectionRuleState, RuleEngine, RuleSet, StatementInput};
use pgshape::sql::analysis::analyze;
use pgshape::sql::fingerprint;

const INCIDENT: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ('A', 'B') ORDER BY "shop_order"."created_at" DESC LIMIT 25"#;
const LOOKUP: &str = r#"SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE "shop_order"."id" = 123 LIMIT 21"#;

fn per_op(name: &str, n: u32, mut f: impl FnMut()) {
    f();
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = start.elapsed().as_nanos() / u128::from(n);
    println!("{name}: {ns} ns/op");
}

#[test]
#[ignore = "timing report, run by hand in release mode"]
fn evaluation_cost() {
    let engine = RuleEngine::from_rule_set(RuleSet::embedded(Default::default()).expect("rules"));
    let mut conn = ConnectionRuleState::new();
    for (name, sql) in [
        ("incident (IN list: value scan)", INCIDENT),
        ("pk lookup", LOOKUP),
    ] {
        let input = StatementInput {
            sql: sql.as_bytes(),
            fingerprint: fingerprint(sql.as_bytes()),
            database: "shop",
            user: "app",
            application_name: "django",
        };
        per_op(&format!("evaluate, cached facts, {name}"), 20_000, || {
            black_box(engine.evaluate(&input, &mut conn, Instant::now()));
        });
        per_op(&format!("analyze (first sight), {name}"), 2_000, || {
            black_box(analyze(sql.as_bytes()).ok());
        });
    }
}
