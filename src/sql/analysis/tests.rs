use super::*;

fn facts(sql: &str) -> Facts {
    analyze(sql.as_bytes()).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn t(name: &str) -> TableRef {
    TableRef {
        schema: None,
        name: name.into(),
    }
}

#[test]
fn django_distinct_join_resolves_join_columns() {
    let f = facts(
        r#"SELECT DISTINCT "shop_order"."id" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ('A', 'B') ORDER BY "shop_order"."created_at" DESC LIMIT 25"#,
    );
    assert_eq!(f.statement, StatementKind::Select);
    assert!(f.distinct() && f.limit && f.order_by && f.where_present && f.has_in_list);
    assert_eq!(f.tables_read, vec![t("shop_order"), t("shop_orderitem")]);
    let join = &f.scopes[0].joins[0];
    assert_eq!(join.kind, JoinKind::Inner);
    assert_eq!(join.table, Some(t("shop_orderitem")));
    let (outer, joined) = &join.pairs[0];
    assert_eq!(
        (outer.column.as_str(), outer.table.clone()),
        ("id", Some(t("shop_order")))
    );
    assert_eq!(joined.column, "order_id");
    assert_eq!(joined.table, Some(t("shop_orderitem")));
}

#[test]
fn aliases_and_right_joins_put_the_repeated_side_second() {
    let f = facts("SELECT o.id FROM items i RIGHT JOIN orders o ON o.id = i.order_id");
    let (outer, joined) = &f.scopes[0].joins[0].pairs[0];
    assert_eq!(outer.table, Some(t("orders")));
    assert_eq!(
        (joined.table.clone(), joined.column.as_str()),
        (Some(t("items")), "order_id")
    );
}

#[test]
fn distinct_inside_derived_table_is_its_own_scope() {
    let f = facts(
        r#"SELECT COUNT(*) FROM (SELECT DISTINCT "a"."id" AS "col1" FROM "a" INNER JOIN "b" ON ("a"."id" = "b"."a_id")) subquery"#,
    );
    assert!(f.scopes[0].aggregate && !f.scopes[0].distinct);
    assert_eq!(f.scopes[0].derived, vec![1]);
    assert!(f.scopes[1].distinct);
    assert_eq!(f.scopes[1].joins.len(), 1);
}

#[test]
fn literal_and_parameter_forms_have_equal_facts() {
    let literal = facts("SELECT * FROM t WHERE a = 5 AND b IN (1, 2, 3) AND c LIKE '%x' OFFSET 10");
    let params =
        facts("SELECT * FROM t WHERE a = $1 AND b IN ($2, $3, $4) AND c LIKE $5 OFFSET $6");
    assert_eq!(literal, params);
}

#[test]
fn predicates_and_shapes() {
    let f = facts(
        "SELECT a FROM t WHERE lower(email) = 'x' AND id NOT IN (SELECT t_id FROM u) ORDER BY random()",
    );
    assert!(f.function_on_column_in_where && f.not_in_subquery && f.order_by_random);
    assert_eq!(f.tables_read, vec![t("t"), t("u")]);
    let f = facts("SELECT count(DISTINCT b.id) FROM a JOIN b USING (a_id) GROUP BY a.x");
    assert!(f.scopes[0].aggregate_distinct && f.scopes[0].group_by);
    assert_eq!(f.scopes[0].joins[0].pairs[0].1.column, "a_id");
}

#[test]
fn cartesian_products() {
    assert!(facts("SELECT * FROM a, b").cartesian_join);
    assert!(facts("SELECT * FROM a, b WHERE a.x = 1").cartesian_join);
    assert!(facts("SELECT * FROM a CROSS JOIN b").cartesian_join);
    assert!(!facts("SELECT * FROM a, b WHERE a.id = b.a_id").cartesian_join);
    assert!(!facts("SELECT * FROM a JOIN b ON a.id = b.a_id").cartesian_join);
    assert!(!facts("SELECT * FROM a CROSS JOIN LATERAL (SELECT 1) x").cartesian_join);
    assert!(!facts("SELECT * FROM a, generate_series(1, 3) g").cartesian_join);
    let f = facts("SELECT DISTINCT a.* FROM a, b WHERE a.id = b.a_id");
    assert_eq!(f.scopes[0].joins[0].kind, JoinKind::Implicit);
    assert_eq!(f.scopes[0].joins[0].pairs[0].1.column, "a_id");
}

#[test]
fn dml_facts() {
    let f = facts("UPDATE t SET a = 1");
    assert_eq!(
        (f.statement, f.where_present),
        (StatementKind::Update, false)
    );
    assert_eq!(f.tables_written, vec![t("t")]);
    let f = facts("DELETE FROM t WHERE id = $1");
    assert_eq!(
        (f.statement, f.where_present),
        (StatementKind::Delete, true)
    );
    let f = facts("INSERT INTO t (a) SELECT a FROM u");
    assert_eq!(f.tables_written, vec![t("t")]);
    assert_eq!(f.tables_read, vec![t("u")]);
}

#[test]
fn ctes_are_not_tables() {
    let f = facts("WITH x AS (SELECT id FROM t) SELECT * FROM x JOIN u ON u.x_id = x.id");
    assert_eq!(f.tables_read, vec![t("t"), t("u")]);
}

#[test]
fn unparsable_statements_have_no_facts() {
    assert!(analyze(b"SELEC nonsense FROM").is_err());
    assert!(analyze(&[0xff, 0xfe]).is_err());
    let cache = FactsCache::new(10);
    let fp = crate::sql::Fingerprint(1);
    assert!(cache.get_or_analyze(fp, b"SELEC x").is_none());
    assert!(cache.get_or_analyze(fp, b"SELEC x").is_none());
    assert_eq!(cache.parse_failures(), 1);
}

#[test]
fn cache_stays_bounded() {
    let cache = FactsCache::new(8);
    for i in 0..100 {
        cache.get_or_analyze(crate::sql::Fingerprint(i), b"SELECT 1");
    }
    assert!(cache.len() <= 8);
}

#[test]
fn value_scan() {
    let v = scan_values(
        b"SELECT * FROM t WHERE a IN (1, 2, (3)) AND b = ANY(ARRAY[1,2,3,4]) OFFSET 5000",
    );
    assert_eq!(v.max_in_list_len, 4);
    assert_eq!(v.offset, Some(5000));
    assert!(!v.leading_wildcard_like);
    assert!(
        scan_values(br#"SELECT 1 FROM t WHERE UPPER("t"."n"::text) LIKE UPPER('%ab%')"#)
            .leading_wildcard_like
    );
    assert!(!scan_values(b"SELECT 1 FROM t WHERE n LIKE 'ab%'").leading_wildcard_like);
    assert!(!scan_values(b"SELECT 1 FROM t WHERE n LIKE $1").leading_wildcard_like);
    assert_eq!(
        scan_values(b"SELECT 1 FROM t WHERE id IN (SELECT 1, 2)").max_in_list_len,
        0
    );
    assert_eq!(scan_values(b"SELECT 1 FROM t OFFSET $1").offset, None);
}

#[test]
fn very_long_or_chains_do_not_exhaust_a_worker_stack() {
    // ORMs build `a = 1 OR a = 2 OR …` left-deep; the walk must not recurse once per term.
    let terms: Vec<String> = (0..20_000).map(|i| format!("a = {i}")).collect();
    let sql = format!("SELECT * FROM t WHERE {} LIMIT 1", terms.join(" OR "));
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || analyze(sql.as_bytes()).map(|f| f.where_present))
        .expect("thread");
    let result = handle.join().expect("no stack overflow");
    assert!(matches!(result, Ok(true) | Err(_)));
}

use proptest::prelude::*;

const WORDS: &[&str] = &[
    "SELECT", "DISTINCT", "FROM", "JOIN", "ON", "WHERE", "IN", "NOT", "LIKE", "OFFSET", "LIMIT",
    "(", ")", ",", "=", "'%x'", "$1", "1", "ARRAY[", "]", "AND", "OR", ".", "*", "EXISTS", "UNION",
    ";", "--", "/*", "\"q\"",
];

proptest! {
    /// Fail open: whatever bytes arrive, analysis and the value scan return, never panic.
    #[test]
    fn arbitrary_input_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                "[a-z_]{1,8}",
                prop::sample::select(WORDS).prop_map(str::to_owned),
            ],
            0..40,
        ),
        raw in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let sql = parts.join(" ");
        let _ = analyze(sql.as_bytes());
        let _ = scan_values(sql.as_bytes());
        let _ = analyze(&raw);
        let _ = scan_values(&raw);
    }
}
