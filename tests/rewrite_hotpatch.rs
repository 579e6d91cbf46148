//! Operator hot-patches through a real pgshape and PostgreSQL: a fingerprint replaced by a
//! template over its constant slots, for literal and `$n` statements alike; templates that do
//! not fit refused (at reload, or before they are ever applied); a wrong template caught by
//! shadow verification and switched off; the kill switch; and reloads during traffic.

mod support;

use std::time::Duration;

use pgshape::sql::{Fingerprint, fingerprint};
use support::shop::{INCIDENT, Shop, incident, incident_params, simple_rows};

/// The incident fixed by hand: EXISTS instead of DISTINCT over the join. `$1` is the SKU list,
/// `$2` the limit (the normalized incident's slots).
const GOOD: &str = r#"SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE "shop_orderitem"."order_id" = "shop_order"."id" AND "shop_orderitem"."sku" IN ($1)) ORDER BY "shop_order"."created_at" DESC LIMIT $2"#;
/// Same columns, wrong rows: the oldest orders instead of the newest.
const WRONG: &str = r#"SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE "shop_orderitem"."order_id" = "shop_order"."id" AND "shop_orderitem"."sku" IN ($1)) ORDER BY "shop_order"."created_at" ASC LIMIT $2"#;
/// Same columns, wrong rows: orders *without* those SKUs.
const WRONG_SET: &str = r#"SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE "shop_orderitem"."order_id" = "shop_order"."id" AND "shop_orderitem"."sku" NOT IN ($1)) ORDER BY "shop_order"."created_at" DESC LIMIT $2"#;
/// Columns in another order: the client would read `status` where it expects `customer_id`.
const SWAPPED: &str = r#"SELECT "shop_order"."id", "shop_order"."status", "shop_order"."customer_id", "shop_order"."created_at" FROM "shop_order" WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE "shop_orderitem"."order_id" = "shop_order"."id" AND "shop_orderitem"."sku" IN ($1)) ORDER BY "shop_order"."created_at" DESC LIMIT $2"#;

const HOTFIX: &str = "orders-panel-hotfix";

fn fp() -> Fingerprint {
    fingerprint(INCIDENT.as_bytes())
}

fn hotfix(template: &str, extra: &str) -> String {
    format!(
        "id = \"orders-panel-hotfix\"\n\
         description = \"the orders panel, fixed without a deploy\"\n\
         severity = \"warning\"\n\
         action = \"rewrite\"\n\
         message = \"rewritten to EXISTS\"\n\
         \n\
         [match]\n\
         fingerprint = \"{}\"\n\
         \n\
         [rewrite]\n\
         sql = '''{template}'''\n\
         {extra}\n",
        fp()
    )
}

/// Constant sets the tests cycle through: SKU lists of several lengths, and limits.
const CASES: &[(&[&str], u32)] = &[
    (&["A", "B"], 25),
    (&["C"], 10),
    (&["A", "D", "E", "F"], 100),
    (&["B", "Z"], 3),
    (&["F"], 400),
];

async fn direct_rows(shop: &Shop, sql: &str) -> Vec<Vec<Option<String>>> {
    simple_rows(&shop.client(true).await, sql).await
}

fn outcome(shop: &Shop, rule: &str, outcome: pgshape::rewrite::Outcome) -> u64 {
    shop.app()
        .rules()
        .rewriter()
        .counts()
        .get(rule, fp(), outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_patch_rewrites_literals_and_params_with_their_own_constants() {
    let shop = Shop::start("observe", &[("hotfix.toml", &hotfix(GOOD, ""))]);
    let proxied = shop.client(false).await;
    // The first execution asks for the proof; it runs as sent meanwhile.
    simple_rows(&proxied, INCIDENT).await;
    let plan = shop.wait_plan(HOTFIX, fp());
    assert_eq!(plan["state"], "ready", "{plan:#}");
    assert_eq!(plan["described"], true, "{plan:#}");
    assert!(
        plan["original"]
            .as_str()
            .unwrap()
            .contains(r#"IN ($1 /*, ... */) ORDER BY "shop_order"."created_at" DESC LIMIT $2"#),
        "{plan:#}"
    );

    for (skus, limit) in CASES {
        let sql = incident(skus, *limit);
        let want = direct_rows(&shop, &sql).await;
        assert!(!want.is_empty() || *limit == 0);
        assert_eq!(simple_rows(&proxied, &sql).await, want, "{sql}");
    }
    let applied = outcome(
        &shop,
        "orders-panel-hotfix",
        pgshape::rewrite::Outcome::Applied,
    );
    assert_eq!(
        applied,
        CASES.len() as u64,
        "every literal execution rewritten"
    );

    // Extended protocol with `$n`: the same fingerprint, the Parse rewritten, `$n` kept.
    let direct = shop.client(true).await;
    for skus in [1usize, 2, 4] {
        let sql = incident_params(skus);
        assert_eq!(fingerprint(sql.as_bytes()), fp(), "{sql}");
        let via = proxied
            .prepare(&sql)
            .await
            .expect("prepare through pgshape");
        let base = direct.prepare(&sql).await.expect("prepare direct");
        // What Describe tells the client must not change.
        assert_eq!(via.params(), base.params());
        let columns = |s: &tokio_postgres::Statement| {
            s.columns()
                .iter()
                .map(|c| (c.name().to_owned(), c.type_().clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(columns(&via), columns(&base));
        for (case, limit) in [
            (&["A", "B", "C", "D"][..], 25i64),
            (&["E", "F", "A", "B"], 7),
        ] {
            let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
            for sku in &case[..skus] {
                params.push(sku);
            }
            params.push(&limit);
            let got = proxied
                .query(&via, &params)
                .await
                .expect("query through pgshape");
            let want = direct.query(&base, &params).await.expect("query direct");
            let ids = |rows: &[tokio_postgres::Row]| {
                rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>()
            };
            assert_eq!(ids(&got), ids(&want), "{sql} with {case:?} / {limit}");
        }
    }
    let after = outcome(
        &shop,
        "orders-panel-hotfix",
        pgshape::rewrite::Outcome::Applied,
    );
    assert_eq!(
        after,
        applied + 3,
        "one rewritten Parse per prepared statement"
    );

    // Statistics stay on the original fingerprint, split by variant.
    let rows = shop.json("GET", "/api/queries?limit=1000");
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["fingerprint"] == fp().to_string())
        .expect("incident row");
    assert_eq!(row["rewrite"]["rule"], "orders-panel-hotfix", "{row:#}");
    assert_eq!(
        row["rewrite"]["calls_rewritten"],
        CASES.len() as u64 + 6,
        "{row:#}"
    );
    assert_eq!(row["rewrite"]["original"]["calls"], 1, "{row:#}");
    assert!(row["rewrite"]["rewritten"]["p95_ms"].as_f64().unwrap() > 0.0);

    // `GET /api/queries/{fp}` explains it: slots, template, a sample.
    let detail = shop.json("GET", &format!("/api/queries/{}", fp()));
    let plan = detail["rewrite"]["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["rule"] == HOTFIX)
        .expect("the hot-patch's plan");
    assert_eq!(plan["template_sql"], GOOD, "{detail:#}");
    assert!(
        plan["sample"].as_str().unwrap().contains("IN ('A', 'B')"),
        "{detail:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_catches_a_wrong_template_and_the_kill_switch_stops_a_live_one() {
    let shadow = hotfix(WRONG_SET, "verify = \"shadow\"\nsample_rate = 1.0");
    let shop = Shop::start("observe", &[("hotfix.toml", &shadow)]);
    let proxied = shop.client(false).await;
    simple_rows(&proxied, INCIDENT).await;
    assert_eq!(shop.wait_plan(HOTFIX, fp())["state"], "ready");
    // Shadow: clients keep getting the original while samples are compared.
    for (skus, limit) in CASES {
        let sql = incident(skus, *limit);
        assert_eq!(
            simple_rows(&proxied, &sql).await,
            direct_rows(&shop, &sql).await
        );
    }
    let rewriter = shop.app().rules().rewriter().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rewriter.disabled(fp()).is_none() {
        assert!(std::time::Instant::now() < deadline, "mismatch never found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        outcome(
            &shop,
            "orders-panel-hotfix",
            pgshape::rewrite::Outcome::VerifyMismatch
        ) >= 1
    );
    assert_eq!(
        outcome(
            &shop,
            "orders-panel-hotfix",
            pgshape::rewrite::Outcome::Applied
        ),
        0
    );
    let metrics = support::util::http(shop.admin(), "GET", "/metrics").1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pgshape_rewrites_total")
                && l.contains("outcome=\"verify_mismatch\"")
                && l.contains(&fp().to_string())),
        "{metrics}"
    );

    // The same wrong template applied live: the client sees what the server ran (which is how
    // this test knows rewrites reach the server), until the kill switch.
    shop.set_rules("observe", &[("hotfix.toml", &hotfix(WRONG, ""))]);
    assert_eq!(shop.reload().0, 200);
    let sql = incident(&["A", "B"], 5);
    let want = direct_rows(&shop, &sql).await;
    simple_rows(&proxied, &sql).await;
    assert_eq!(shop.wait_plan(HOTFIX, fp())["state"], "ready");
    let got = simple_rows(&proxied, &sql).await;
    assert_ne!(got, want, "the wrong template is applied");
    let body = shop.json("POST", &format!("/api/rewrites/{}/disable", fp()));
    assert_eq!(body["disabled"], true);
    assert_eq!(
        simple_rows(&proxied, &sql).await,
        want,
        "after the kill switch"
    );
    assert!(
        outcome(
            &shop,
            "orders-panel-hotfix",
            pgshape::rewrite::Outcome::Disabled
        ) >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_that_do_not_fit_are_refused_with_their_reason() {
    let shop = Shop::start("observe", &[("hotfix.toml", &hotfix(SWAPPED, ""))]);
    let proxied = shop.client(false).await;
    simple_rows(&proxied, INCIDENT).await;
    let plan = shop.wait_plan(HOTFIX, fp());
    assert_eq!(plan["state"], "refused", "{plan:#}");
    let reason = plan["reason"].as_str().unwrap();
    assert!(reason.contains("result columns differ"), "{reason}");
    assert!(
        reason.contains("customer_id int4, status varchar"),
        "{reason}"
    );
    // Never applied: results are the original's.
    let sql = incident(&["C", "D"], 30);
    assert_eq!(
        simple_rows(&proxied, &sql).await,
        direct_rows(&shop, &sql).await
    );
    assert_eq!(
        outcome(
            &shop,
            "orders-panel-hotfix",
            pgshape::rewrite::Outcome::Applied
        ),
        0
    );

    // Once the shape is known, a template using a slot it does not have is refused at load,
    // with file and line, and the previous rules stay.
    let missing = GOOD.replace("LIMIT $2", "LIMIT $3");
    shop.set_rules("observe", &[("hotfix.toml", &hotfix(&missing, ""))]);
    let (status, body) = shop.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("hotfix.toml:11:"), "{body}");
    assert!(
        body.contains("slot $3") && body.contains("only 2"),
        "{body}"
    );
    // A slot that holds a list, used where one value fits.
    let scalar = GOOD.replace("IN ($1)", "= $1");
    shop.set_rules("observe", &[("hotfix.toml", &hotfix(&scalar, ""))]);
    let (status, body) = shop.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("slot $1 is a list"), "{body}");
    // Not SQL at all.
    shop.set_rules(
        "observe",
        &[("hotfix.toml", &hotfix("SELEC nothing FROM", ""))],
    );
    let (status, body) = shop.reload();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("the template does not parse"), "{body}");
    let hotfix_rule = shop
        .rule("orders-panel-hotfix")
        .expect("previous rules still loaded");
    assert_eq!(hotfix_rule["rewrite"]["sql"], SWAPPED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_during_traffic_drop_nothing() {
    let shop = std::sync::Arc::new(Shop::start(
        "observe",
        &[("hotfix.toml", &hotfix(GOOD, ""))],
    ));
    let expected: Vec<_> = {
        let mut out = Vec::new();
        for (skus, limit) in CASES {
            let sql = incident(skus, *limit);
            out.push((sql.clone(), direct_rows(&shop, &sql).await));
        }
        out
    };
    let expected = std::sync::Arc::new(expected);
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (shop, expected) = (shop.clone(), expected.clone());
        workers.push(tokio::spawn(async move {
            let client = shop.client(false).await;
            let mut done = 0;
            for round in 0..60 {
                let (sql, want) = &expected[(worker + round) % expected.len()];
                assert_eq!(&simple_rows(&client, sql).await, want, "{sql}");
                done += 1;
            }
            done
        }));
    }
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Alternately without and with the hot-patch.
        let text = hotfix(GOOD, "");
        let with: &[(&str, &str)] = &[("hotfix.toml", &text)];
        shop.set_rules("observe", if i % 2 == 0 { &[] } else { with });
        let (status, body) = shop.reload();
        assert_eq!(status, 200, "{body}");
    }
    let mut total = 0;
    for w in workers {
        total += w.await.expect("worker");
    }
    assert_eq!(total, 240, "every statement answered");
}

/// Waits until `outcome` was counted at least once for the hot-patch.
async fn wait_outcome(shop: &Shop, wanted: pgshape::rewrite::Outcome) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = outcome(shop, HOTFIX, wanted);
        if n > 0 {
            return n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {wanted:?} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_compares_prepared_statements_with_their_bound_values() {
    // A correct template: samples of `$n` executions (taken at Bind, with the values the client
    // bound, text and binary alike) match.
    let good = hotfix(GOOD, "verify = \"shadow\"\nsample_rate = 1.0");
    let shop = Shop::start("observe", &[("hotfix.toml", &good)]);
    let proxied = shop.client(false).await;
    let direct = shop.client(true).await;
    let sql = incident_params(2);
    proxied.prepare(&sql).await.expect("prepare");
    assert_eq!(shop.wait_plan(HOTFIX, fp())["state"], "ready");
    // Prepared after the proof: its Binds are sampled.
    let statement = proxied.prepare(&sql).await.expect("prepare");
    let base = direct.prepare(&sql).await.expect("prepare direct");
    let ids =
        |rows: &[tokio_postgres::Row]| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>();
    for (a, b, limit) in [("A", "B", 25i64), ("C", "Z", 3), ("F", "E", 400)] {
        let got = proxied
            .query(&statement, &[&a, &b, &limit])
            .await
            .expect("query");
        let want = direct.query(&base, &[&a, &b, &limit]).await.expect("query");
        assert_eq!(ids(&got), ids(&want), "clients get the original");
    }
    assert!(wait_outcome(&shop, pgshape::rewrite::Outcome::VerifyMatch).await >= 1);
    assert_eq!(
        outcome(&shop, HOTFIX, pgshape::rewrite::Outcome::VerifyMismatch),
        0
    );

    // A wrong one is caught from the bound values and switched off.
    shop.set_rules(
        "observe",
        &[(
            "hotfix.toml",
            &hotfix(WRONG_SET, "verify = \"shadow\"\nsample_rate = 1.0"),
        )],
    );
    assert_eq!(shop.reload().0, 200);
    let fresh = shop.client(false).await;
    fresh.prepare(&sql).await.expect("prepare");
    assert_eq!(shop.wait_plan(HOTFIX, fp())["state"], "ready");
    let statement = fresh.prepare(&sql).await.expect("prepare");
    for (a, b, limit) in [("F", "E", 400i64), ("A", "B", 400)] {
        let got = fresh
            .query(&statement, &[&a, &b, &limit])
            .await
            .expect("query");
        let want = direct.query(&base, &[&a, &b, &limit]).await.expect("query");
        assert_eq!(ids(&got), ids(&want), "clients get the original");
    }
    wait_outcome(&shop, pgshape::rewrite::Outcome::VerifyMismatch).await;
    let reason = shop
        .app()
        .rules()
        .rewriter()
        .disabled(fp())
        .expect("switched off");
    assert!(reason.contains("shadow verification mismatch"), "{reason}");
}
