//! The built-in semi-join rewrite on live traffic, through a real pgshape and PostgreSQL: the
//! incident's list query and Django's count form are rewritten in the simple and the extended
//! protocol, and what the client receives — RowDescription, ParameterDescription, every row,
//! the command tag — is byte for byte what PostgreSQL sends for the original. Shapes that cannot
//! be proven pass unchanged with the reason on record; `observe` shows the rewrite it would
//! apply; a schema change makes the proof start over.

mod support;

use std::time::Duration;

use pgshape::rewrite::Outcome;
use pgshape::sql::{Fingerprint, fingerprint};
use support::raw::{RawConn, exchange, extended};
use support::shop::{COUNT, INCIDENT, Shop, incident, incident_params};

const RULE: &str = "distinct-over-fanout-join";

/// Django's `.distinct().order_by('-items__price')`: ordered by (and so selecting) a child
/// column, so the join cannot become EXISTS.
const ORDER_BY_CHILD: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at", "shop_orderitem"."price" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" = 'A' ORDER BY "shop_orderitem"."price" DESC LIMIT 25"#;

fn login(shop: &Shop, direct: bool) -> RawConn {
    let addr = if direct {
        shop.db.addr()
    } else {
        shop.app().proxy_addr()
    };
    RawConn::login(addr, &shop.db.user, &shop.db.dbname)
}

/// pgshape in front of the shop with the incident rule's `action`, and raw connections through
/// it and straight to the server.
fn start(action: &str) -> (Shop, RawConn, RawConn) {
    let shop = Shop::start(action, &[]);
    let via = login(&shop, false);
    let direct = login(&shop, true);
    (shop, via, direct)
}

fn applied(shop: &Shop, fp: Fingerprint) -> u64 {
    shop.app()
        .rules()
        .rewriter()
        .counts()
        .get(RULE, fp, Outcome::Applied)
}

/// Runs `sql` once through pgshape so the proof starts, and waits for its decision.
fn prove(shop: &Shop, conn: &mut RawConn, sql: &str) -> serde_json::Value {
    exchange(conn, &support::raw::query(sql));
    shop.wait_plan(RULE, fingerprint(sql.as_bytes()))
}

#[test]
fn incident_and_count_are_rewritten_and_the_client_sees_the_same_bytes() {
    let (shop, mut via, mut direct) = start("rewrite");

    let plan = prove(&shop, &mut via, INCIDENT);
    assert_eq!(plan["state"], "ready", "{plan:#}");
    assert_eq!(plan["form"], "distinct");
    assert_eq!(
        plan["distinct_dropped"], true,
        "the select list holds the primary key"
    );
    assert_eq!(plan["described"], true);
    let template = plan["template_sql"].as_str().unwrap();
    assert!(
        template.starts_with(r#"SELECT "shop_order"."id""#)
            && template.contains("WHERE EXISTS (SELECT 1 FROM \"shop_orderitem\""),
        "{template}"
    );

    let count_plan = prove(&shop, &mut via, COUNT);
    assert_eq!(count_plan["state"], "ready", "{count_plan:#}");
    assert_eq!(count_plan["form"], "count_over_distinct");

    let incident_fp = fingerprint(INCIDENT.as_bytes());
    let count_fp = fingerprint(COUNT.as_bytes());
    let before = (applied(&shop, incident_fp), applied(&shop, count_fp));

    // Simple protocol: whole replies compared byte for byte, for many constant values.
    let cases: &[(&[&str], u32)] = &[
        (&["A", "B"], 25),
        (&["C"], 5),
        (&["A", "C", "D", "E"], 200),
        (&["Z"], 10),
        (&["F", "B"], 1),
    ];
    let mut statements = 0;
    for (skus, limit) in cases {
        let list = incident(skus, *limit);
        let skus_sql: Vec<String> = skus.iter().map(|s| format!("'{s}'")).collect();
        let count = COUNT.replace("('A', 'B')", &format!("({})", skus_sql.join(", ")));
        for sql in [list, count] {
            let q = support::raw::query(&sql);
            assert_eq!(exchange(&mut via, &q), exchange(&mut direct, &q), "{sql}");
            statements += 1;
        }
        // Two statements in one Query: both rewritten, each in place.
        let two = format!("{}; {}", incident(skus, *limit), INCIDENT);
        let q = support::raw::query(&two);
        assert_eq!(exchange(&mut via, &q), exchange(&mut direct, &q), "{two}");
    }
    let after = (applied(&shop, incident_fp), applied(&shop, count_fp));
    assert_eq!(
        after.0 - before.0,
        (statements / 2 + 2 * cases.len()) as u64
    );
    assert_eq!(after.1 - before.1, (statements / 2) as u64);

    // Extended protocol with `$n`: ParseComplete, ParameterDescription, RowDescription, rows
    // and tag identical; the statement is rewritten at Parse.
    for (skus, limit) in [
        (&["A", "B"][..], "25"),
        (&["C", "D", "E"], "3"),
        (&["B"], "400"),
    ] {
        let sql = incident_params(skus.len());
        let mut params: Vec<&str> = skus.to_vec();
        params.push(limit);
        let bytes = extended(&sql, &params);
        let got = exchange(&mut via, &bytes);
        let want = exchange(&mut direct, &bytes);
        assert!(
            got.iter().any(|m| m.tag == b't'),
            "ParameterDescription: {got:?}"
        );
        assert!(got.iter().any(|m| m.tag == b'T'), "RowDescription: {got:?}");
        assert_eq!(got, want, "{sql} with {params:?}");
    }
    assert_eq!(applied(&shop, incident_fp) - after.0, 3);

    // Statistics stay on the original's fingerprint, split by variant.
    let detail = shop.json("GET", &format!("/api/queries/{incident_fp}"));
    let row = &detail["entries"][0];
    assert_eq!(row["rewrite"]["rule"], RULE, "{detail:#}");
    assert!(row["rewrite"]["calls_rewritten"].as_u64().unwrap() >= 13);
    assert_eq!(
        row["rewrite"]["original"]["calls"], 1,
        "only the one that asked for the proof"
    );
}

#[test]
fn unprovable_shapes_pass_unchanged_with_the_reason_on_record() {
    let (shop, mut via, mut direct) = start("rewrite");
    let plan = prove(&shop, &mut via, ORDER_BY_CHILD);
    assert_eq!(plan["state"], "not_provable", "{plan:#}");
    let reason = plan["reason"].as_str().unwrap();
    // Django selects the ordering column too, so the child is needed in the output.
    assert!(
        reason.contains("no join to move")
            && reason.contains("shop_orderitem: referenced by the select list"),
        "{reason}"
    );
    let q = support::raw::query(ORDER_BY_CHILD);
    assert_eq!(exchange(&mut via, &q), exchange(&mut direct, &q));
    let fp = fingerprint(ORDER_BY_CHILD.as_bytes());
    assert_eq!(applied(&shop, fp), 0);
    assert_eq!(
        shop.app()
            .rules()
            .rewriter()
            .counts()
            .get(RULE, fp, Outcome::NotProvable),
        1,
        "the execution after the decision is counted as not provable"
    );
    // The reason is shown where operators look.
    let rule = shop.rule(RULE).unwrap();
    let shapes = rule["rewrite"]["shapes"].as_array().unwrap();
    assert!(
        shapes
            .iter()
            .any(|s| s["state"] == "not_provable" && s["reason"] == reason),
        "{rule:#}"
    );
}

#[test]
fn observe_is_a_dry_run_that_shows_the_rewrite() {
    let (shop, mut via, mut direct) = start("observe");
    let plan = prove(&shop, &mut via, INCIDENT);
    assert_eq!(plan["state"], "ready", "{plan:#}");
    let q = support::raw::query(&incident(&["A"], 7));
    assert_eq!(exchange(&mut via, &q), exchange(&mut direct, &q));
    let fp = fingerprint(INCIDENT.as_bytes());
    assert_eq!(applied(&shop, fp), 0, "observe never rewrites");
    let rule = shop.rule(RULE).unwrap();
    assert_eq!(rule["rewrite"]["applied"], false);
    let shape = &rule["rewrite"]["shapes"][0];
    assert!(
        shape["sample"].as_str().unwrap().contains("EXISTS"),
        "{rule:#}"
    );
    let detail = shop.json("GET", &format!("/api/queries/{fp}"));
    assert!(
        detail["entries"][0].get("rewrite").is_none(),
        "no call was rewritten"
    );
}

#[test]
fn a_schema_change_makes_the_proof_start_over() {
    let (shop, mut via, mut direct) = start("rewrite");
    let plan = prove(&shop, &mut via, INCIDENT);
    assert_eq!(plan["distinct_dropped"], true, "{plan:#}");
    // Without the primary key nothing proves the selected rows distinct: the DISTINCT must
    // stay (the join still becomes EXISTS).
    support::psql_query(
        &shop.db,
        "ALTER TABLE shop_orderitem DROP CONSTRAINT shop_orderitem_order_id_fkey; \
         ALTER TABLE shop_order DROP CONSTRAINT shop_order_pkey",
    );
    shop.json("POST", "/api/rules/refresh-schema");
    let fp = fingerprint(INCIDENT.as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        exchange(&mut via, &support::raw::query(INCIDENT));
        let plans = shop.app().rules().rewriter().plans_for(fp);
        let plan = serde_json::to_value(plans.iter().find(|p| &*p.rule == RULE).unwrap()).unwrap();
        if plan["state"] == "ready" && plan["distinct_dropped"] == false {
            assert!(
                plan["template_sql"]
                    .as_str()
                    .unwrap()
                    .starts_with("SELECT DISTINCT")
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not re-proved: {plan:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let q = support::raw::query(&incident(&["A", "E"], 50));
    assert_eq!(exchange(&mut via, &q), exchange(&mut direct, &q));
}
