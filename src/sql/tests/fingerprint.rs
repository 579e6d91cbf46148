//! Pairs of statements that must and must not share a fingerprint.

use crate::sql::{fingerprint, normalize, split_statements};

const DJANGO_ORDERS: &str = include_str!("../../../tests/corpus/django-orders.sql");

/// The sqlcommenter tag opentelemetry-instrumentation-django appends.
const DJANGO_TAG: &str = "/*app_name='shop',controller='shop%3Aorder-list',db_driver='django.db.backends.postgresql',framework='django%3A5.2.19',route='api/orders/',traceparent='00-ffd5290c2624aa12a22cfeff40faf8a6-8eb8ee514190b7c4-03'*/";

#[track_caller]
fn same(a: &str, b: &str) {
    assert_eq!(
        fingerprint(a.as_bytes()),
        fingerprint(b.as_bytes()),
        "expected one fingerprint:\n  {a}\n  {b}\nnormalized:\n  {}\n  {}",
        normalize(a.as_bytes(), 4096),
        normalize(b.as_bytes(), 4096)
    );
}

#[track_caller]
fn differ(a: &str, b: &str) {
    assert_ne!(
        fingerprint(a.as_bytes()),
        fingerprint(b.as_bytes()),
        "expected different fingerprints:\n  {a}\n  {b}\nnormalized:\n  {}",
        normalize(a.as_bytes(), 4096),
    );
}

fn corpus_statements() -> Vec<&'static str> {
    split_statements(DJANGO_ORDERS.as_bytes())
        .map(|r| DJANGO_ORDERS[r].trim())
        .collect()
}

/// Drops the leading `-- name:` comment block so tests can append things to the statement.
fn corpus_sql(name: &str) -> String {
    let stmt = corpus_statements()
        .into_iter()
        .find(|s| s.contains(&format!("-- name: {name}\n")))
        .unwrap_or_else(|| panic!("corpus has no statement {name}"));
    stmt.lines()
        .filter(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn display_is_sixteen_hex_digits() {
    assert_eq!(
        crate::sql::Fingerprint(0xab).to_string(),
        "00000000000000ab"
    );
    assert_eq!(
        crate::sql::Fingerprint(u64::MAX).to_string(),
        "ffffffffffffffff"
    );
}

#[test]
fn parses_what_it_prints() {
    use crate::sql::Fingerprint;
    let fp = fingerprint(b"SELECT 1");
    assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
    assert_eq!(
        "00000000000000AB".parse::<Fingerprint>(),
        Ok(Fingerprint(0xab))
    );
    for bad in [
        "",
        "ab",
        "000000000000000g",
        "+00000000000000a",
        "00000000000000000",
    ] {
        assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
    }
}

#[test]
fn fingerprint_is_a_fixed_function_of_the_text() {
    // Pinned values: if these change, every dashboard keyed by fingerprint breaks, so a change
    // must come with a major version.
    assert_eq!(
        fingerprint(b"SELECT 1").to_string(),
        fingerprint(b"select $1").to_string()
    );
    let pinned =
        fingerprint(b"SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2");
    assert_eq!(pinned.to_string(), PINNED_RAILS);
}

const PINNED_RAILS: &str = "be07fd03580838a0";

#[test]
fn corpus_statements_have_distinct_fingerprints() {
    let stmts = corpus_statements();
    assert_eq!(stmts.len(), 11, "the corpus has 11 statements");
    let mut fps: Vec<_> = stmts.iter().map(|s| fingerprint(s.as_bytes())).collect();
    fps.sort();
    fps.dedup();
    assert_eq!(fps.len(), 11);
}

#[test]
fn django_literal_form_matches_parameter_form() {
    same(
        &corpus_sql("list-distinct-fanout"),
        r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ($1, $2) ORDER BY "shop_order"."created_at" DESC LIMIT 25"#,
    );
    same(
        &corpus_sql("n-plus-one-lookup"),
        r#"SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE "shop_order"."id" = $1 LIMIT 21"#,
    );
    same(
        &corpus_sql("items-to-order-many-to-one"),
        r#"SELECT "shop_orderitem"."id", "shop_orderitem"."order_id", "shop_orderitem"."sku", "shop_orderitem"."qty", "shop_orderitem"."price", "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_orderitem" INNER JOIN "shop_order" ON ("shop_orderitem"."order_id" = "shop_order"."id") WHERE "shop_order"."status" = $1 LIMIT 50"#,
    );
    same(
        &corpus_sql("count-exists-fixed"),
        r#"SELECT COUNT(*) AS "__count" FROM "shop_order" WHERE EXISTS(SELECT $1 AS "a" FROM "shop_orderitem" U0 WHERE (U0."order_id" = ("shop_order"."id") AND U0."qty" > $2) LIMIT 1)"#,
    );
}

#[test]
fn django_in_lists_of_any_length_match() {
    let thirty: Vec<String> = (1..=30).map(|i| format!("${i}")).collect();
    let base = r#"SELECT "shop_orderitem"."id", "shop_orderitem"."order_id", "shop_orderitem"."sku", "shop_orderitem"."qty", "shop_orderitem"."price" FROM "shop_orderitem" WHERE "shop_orderitem"."order_id" IN "#;
    let corpus = corpus_sql("prefetch-items");
    same(&corpus, &format!("{base}(1)"));
    same(&corpus, &format!("{base}({})", thirty.join(", ")));
    same(&format!("{base}(1)"), &format!("{base}($1)"));
    let scoped = corpus_sql("scoped-prefetch");
    same(
        &scoped,
        r#"SELECT "shop_orderitem"."id", "shop_orderitem"."order_id", "shop_orderitem"."sku", "shop_orderitem"."qty", "shop_orderitem"."price" FROM "shop_orderitem" WHERE ("shop_orderitem"."sku" IN ('A', 'B', 'C', 'D') AND "shop_orderitem"."order_id" IN (7))"#,
    );
}

#[test]
fn sqlcommenter_tag_is_ignored() {
    for name in [
        "list-distinct-fanout",
        "n-plus-one-lookup",
        "prefetch-items",
    ] {
        let sql = corpus_sql(name);
        same(&sql, &format!("{sql} {DJANGO_TAG}"));
        same(&sql, &format!("{sql} {DJANGO_TAG};"));
    }
    // Rails puts its tags in front (query_log_tags_prepend_comment) in the `key:value` format.
    same(
        "/*application:Shop,controller:users,action:show*/ SELECT 1",
        "SELECT 2",
    );
}

#[test]
fn rails_activerecord() {
    let bound = r#"SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2"#;
    same(
        bound,
        r#"SELECT "users".* FROM "users" WHERE "users"."id" = 42 LIMIT 1"#,
    );
    same(
        bound,
        r#"SELECT "users".* FROM "users" WHERE "users"."id" = -7 LIMIT 1"#,
    );
    differ(
        bound,
        r#"SELECT "users".* FROM "users" WHERE "users"."email" = $1 LIMIT $2"#,
    );
    differ(
        bound,
        r#"SELECT "users".* FROM "users" WHERE "users"."id" = $1"#,
    );
    same(
        r#"INSERT INTO "users" ("name", "created_at") VALUES ($1, $2) RETURNING "id""#,
        r#"INSERT INTO "users" ("name", "created_at") VALUES ('bob', '2024-05-01 10:00:00.123456') RETURNING "id""#,
    );
}

#[test]
fn sqlalchemy_psycopg2_and_asyncpg() {
    let psycopg2 = "SELECT users.id AS users_id, users.name AS users_name \nFROM users \nWHERE users.name = 'ed' AND users.id IN (1, 2, 3)";
    let asyncpg = "SELECT users.id AS users_id, users.name AS users_name \nFROM users \nWHERE users.name = $1::VARCHAR AND users.id IN ($2::INTEGER, $3::INTEGER)";
    same(psycopg2, asyncpg);
    same(
        psycopg2,
        "SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.name = $1 AND users.id IN ($2)",
    );
    differ(
        psycopg2,
        "SELECT users.id AS users_id, users.name AS users_name FROM users WHERE users.name = $1 OR users.id IN ($2)",
    );
}

#[test]
fn constants_of_every_kind_are_one_class() {
    let forms = [
        "1",
        "-1",
        "- 1",
        "+2.5",
        "1.5e10",
        ".5",
        "0x1F",
        "1_000",
        "'a'",
        "'it''s'",
        "E'it\\'s'",
        "U&'d\\0061t'",
        "N'x'",
        "B'0101'",
        "X'1F'",
        "$$a$$",
        "$tag$a;'$$$tag$",
        "$1",
        "-$1",
        "NULL",
        "TRUE",
        "false",
        "'x'::text",
        "$1::text",
        "'2024-01-01'::date",
        "DATE '2024-01-01'",
        "interval '1 day'",
        "INTERVAL '1' DAY TO SECOND",
        "timestamp with time zone '2024-01-01 00:00+00'",
        "'2024-01-01'::timestamp with time zone",
        "'x'::character varying(10)[]",
        "'1.5'::double precision",
        "'a'\n'b'",
        "ARRAY[1, 2, 3]",
        "ARRAY['a']::text[]",
        "ARRAY[[1, 2], [3, 4]]",
        "ARRAY[]::int[]",
        "'{1,2}'::int[]",
    ];
    for f in forms {
        same(
            "SELECT a FROM t WHERE b = $1",
            &format!("SELECT a FROM t WHERE b = {f}"),
        );
    }
}

#[test]
fn casts_and_operators_on_columns_are_kept() {
    differ("SELECT a::text FROM t", "SELECT a::int FROM t");
    differ("SELECT a::text FROM t", "SELECT a FROM t");
    differ("SELECT a - 1 FROM t", "SELECT a + 1 FROM t");
    same("SELECT a - 1 FROM t", "SELECT a - $1 FROM t");
    differ("SELECT a - 1 FROM t", "SELECT a FROM t");
    same("SELECT * FROM t WHERE x=-1", "SELECT * FROM t WHERE x = $1");
    same(
        "SELECT * FROM t WHERE x != 1",
        "SELECT * FROM t WHERE x <> 1",
    );
    same("SELECT j->>'k' FROM t", "SELECT j->>$1 FROM t");
    differ("SELECT j->>'k' FROM t", "SELECT j->'k' FROM t");
    same(
        "SELECT * FROM t WHERE x AT TIME ZONE 'UTC' > $1",
        "SELECT * FROM t WHERE x AT TIME ZONE $2 > $1",
    );
    differ(
        "SELECT * FROM t WHERE x AT TIME ZONE 'UTC' > $1",
        "SELECT * FROM t WHERE x AT TIME $2 > $1",
    );
}

#[test]
fn identifiers_fold_like_postgres() {
    same("SELECT A FROM T", "select a from t");
    same(r#"SELECT "foo" FROM t"#, "SELECT foo FROM t");
    same(r#"SELECT "foo" FROM t"#, "SELECT FOO FROM t");
    differ(r#"SELECT "Foo" FROM t"#, "SELECT foo FROM t");
    differ(r#"SELECT "Foo" FROM t"#, r#"SELECT "foo" FROM t"#);
    differ("SELECT a.b FROM t", "SELECT ab FROM t");
    differ("SELECT ab, c FROM t", "SELECT a, bc FROM t");
}

#[test]
fn comments_and_whitespace_are_ignored() {
    same("SELECT a\n\tFROM t -- trailing", "SELECT a FROM t");
    same(
        "SELECT /* a /* nested */ comment */ a FROM t",
        "SELECT a FROM t",
    );
    same("SELECT a FROM t;", "SELECT a FROM t");
    same("SELECT a FROM t ;; ", "SELECT a FROM t");
    differ("SELECT a FROM t; SELECT b FROM t", "SELECT a FROM t");
}

#[test]
fn lists_and_rows_collapse() {
    same(
        "SELECT * FROM t WHERE a IN (1)",
        "SELECT * FROM t WHERE a IN (1, 2, 3, 'x', NULL)",
    );
    same(
        "SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))",
        "SELECT * FROM t WHERE (a, b) IN (($1, $2))",
    );
    same(
        "SELECT * FROM t WHERE a = ANY(ARRAY[1, 2])",
        "SELECT * FROM t WHERE a = ANY($1)",
    );
    same(
        "SELECT * FROM t WHERE a IN (b, 1, 2)",
        "SELECT * FROM t WHERE a IN (b, 3)",
    );
    differ(
        "SELECT * FROM t WHERE a IN (1)",
        "SELECT * FROM t WHERE a IN (b)",
    );
    differ(
        "SELECT * FROM t WHERE a IN (1, b)",
        "SELECT * FROM t WHERE a IN (1)",
    );
    differ(
        "SELECT * FROM t WHERE a IN (1)",
        "SELECT * FROM t WHERE a IN (SELECT b FROM u)",
    );
    differ("SELECT ARRAY[a, b] FROM t", "SELECT ARRAY[a] FROM t");
    same(
        "SELECT * FROM t WHERE a IN (lower('x'), lower('y'))",
        "SELECT * FROM t WHERE a IN (lower($1))",
    );
    let one = "INSERT INTO t (a, b) VALUES ($1, $2)";
    same(
        one,
        "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, NULL)",
    );
    same(one, "insert into t (a, b) values (1, 'x'), (-2, 'y')");
    differ(
        one,
        "INSERT INTO t (a, b) VALUES (1, 'x') ON CONFLICT DO NOTHING",
    );
    differ(one, "INSERT INTO t (a, b) VALUES (1, DEFAULT)");
    differ(one, "INSERT INTO t (a, b, c) VALUES (1, 2, 3)");
    differ(
        "INSERT INTO t VALUES (1, 2)",
        "INSERT INTO t VALUES (1, 2, 3)",
    );
    same(
        "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(id, name)",
        "SELECT * FROM (VALUES ($1, $2)) AS v(id, name)",
    );
}

#[test]
fn null_and_booleans_only_as_values() {
    same(
        "UPDATE t SET a = NULL, b = true WHERE id = 1",
        "UPDATE t SET a = $1, b = $2 WHERE id = $3",
    );
    differ(
        "SELECT * FROM t WHERE a IS NULL",
        "SELECT * FROM t WHERE a IS NOT NULL",
    );
    differ(
        "SELECT * FROM t WHERE a IS NULL",
        "SELECT * FROM t WHERE a = $1",
    );
    differ(
        "SELECT * FROM t WHERE a IS TRUE",
        "SELECT * FROM t WHERE a IS FALSE",
    );
    differ(
        "SELECT * FROM t WHERE a IS NOT TRUE",
        "SELECT * FROM t WHERE a IS NOT FALSE",
    );
    differ(
        "CREATE TABLE t (a int NOT NULL)",
        "CREATE TABLE t (a int NOT 1)",
    );
}

#[test]
fn limit_and_offset_are_constants() {
    same("SELECT * FROM t LIMIT 10", "SELECT * FROM t LIMIT 20");
    same(
        "SELECT * FROM t LIMIT 10 OFFSET 40",
        "SELECT * FROM t LIMIT $1 OFFSET $2",
    );
    differ("SELECT * FROM t LIMIT 10", "SELECT * FROM t");
    differ("SELECT * FROM t LIMIT 10", "SELECT * FROM t LIMIT ALL");
}

#[test]
fn transaction_and_cursor_names_are_normalized() {
    same(r#"SAVEPOINT "s140245_x1""#, r#"SAVEPOINT "s999_x42""#);
    same(r#"RELEASE SAVEPOINT "s140245_x1""#, "release savepoint sp2");
    same(r#"ROLLBACK TO SAVEPOINT "s140245_x1""#, "ROLLBACK TO sp2");
    differ("SAVEPOINT a", "RELEASE SAVEPOINT a");
    differ("ROLLBACK", "ROLLBACK TO SAVEPOINT a");
    same(
        "PREPARE p1 (int) AS SELECT $1",
        "PREPARE other (int) AS SELECT 5",
    );
    same("EXECUTE p1 (1, 'x')", "EXECUTE p2 (2, 'y')");
    same("DEALLOCATE p1", "DEALLOCATE PREPARE p2");
    differ("DEALLOCATE p1", "DEALLOCATE ALL");
    same(
        r#"DECLARE "_django_curs_140245_sync_1" NO SCROLL CURSOR WITH HOLD FOR SELECT a FROM t"#,
        r#"DECLARE "_django_curs_7_sync_2" NO SCROLL CURSOR WITH HOLD FOR SELECT a FROM t"#,
    );
    same(
        r#"FETCH FORWARD 2000 FROM "_django_curs_140245_sync_1""#,
        "FETCH FORWARD 100 FROM c2",
    );
    differ("FETCH FORWARD 2000 FROM c", "FETCH BACKWARD 2000 FROM c");
    same(r#"CLOSE "_django_curs_140245_sync_1""#, "CLOSE c");
    differ("CLOSE c", "CLOSE ALL");
    same("MOVE 5 IN c1", "MOVE 7 IN c9");
}

#[test]
fn set_values_are_normalized() {
    same("SET search_path TO a, b", "SET search_path = 'c'");
    same(
        "SET LOCAL statement_timeout = '5s'",
        "set local statement_timeout to 1000",
    );
    differ(
        "SET LOCAL statement_timeout = '5s'",
        "SET statement_timeout = '5s'",
    );
    differ("SET statement_timeout = 5", "SET lock_timeout = 5");
    same("SET TIME ZONE 'UTC'", "SET TIME ZONE 'Europe/Paris'");
    same("SET ROLE admin", "SET ROLE reader");
    same(
        "SET SESSION AUTHORIZATION alice",
        "SET SESSION AUTHORIZATION bob",
    );
    same("SET my.setting = 'a'", "SET my.setting TO b");
    differ(
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
    );
    // SET inside UPDATE is not a SET statement: the column names stay.
    differ("UPDATE t SET a = 1", "UPDATE t SET b = 1");
    same("UPDATE t SET a = 1", "UPDATE t SET a = 'x'");
}

#[test]
fn syntax_errors_still_get_a_fingerprint() {
    same("SELEC 1 FROM", "SELEC 2 FROM");
    differ("SELEC 1 FROM", "SELECT 1 FROM");
    same("SELECT 'unterminated", "SELECT 'other unterminated");
    same("SELECT (1, 2", "SELECT (3, 4");
    // Nothing here may panic.
    for junk in [
        "",
        ";",
        "$",
        "\"",
        "'",
        "/*",
        "--",
        "U&",
        "E'\\",
        "$a",
        "$a$",
        "::",
        "IN (",
        "ARRAY[",
        "VALUES (",
        "SET",
        "SET x",
        "FETCH",
        "a::",
        "1e",
        "0x",
        "\u{fffd}\u{0}",
    ] {
        let _ = fingerprint(junk.as_bytes());
        let _ = normalize(junk.as_bytes(), 100);
    }
}

/// Found by the `fingerprint` fuzz target: each level of nested lists walked its elements twice
/// (shape, then emit), so 150 bytes of unterminated nesting took minutes. Past
/// `MAX_LIST_DEPTH` lists are walked as plain tokens; this input now takes one pass per level
/// up to that depth. (Before the fix this test did not finish.)
#[test]
fn deeply_nested_lists_cost_a_bounded_number_of_walks() {
    for sql in [
        format!("SELECT ARRAY[1, (ARRAY[1, ({}1", "ARRAY[1, (".repeat(40)),
        format!(
            "SELECT ARRAY[1, {}1{}]",
            "ARRAY[1, ".repeat(40),
            "]".repeat(40)
        ),
        format!("SELECT 1 IN (1, {}1{})", "(1, ".repeat(40), ")".repeat(40)),
        format!(
            "VALUES (1, {}1{})",
            "(VALUES (1, ".repeat(40),
            "))".repeat(40)
        ),
    ] {
        let _ = fingerprint(sql.as_bytes());
        let _ = normalize(sql.as_bytes(), 4096);
        let _ = crate::sql::slots(sql.as_bytes());
    }
}

#[test]
fn lists_nested_a_few_deep_still_collapse() {
    same(
        "SELECT * FROM t WHERE (a, b) IN ((1, ARRAY[1, 2]), (2, ARRAY[3]))",
        "SELECT * FROM t WHERE (a, b) IN ((7, ARRAY[9]))",
    );
    same(
        "INSERT INTO t VALUES (1, ARRAY[ARRAY[1, 2], ARRAY[3, 4]]), (2, ARRAY[ARRAY[5]])",
        "INSERT INTO t VALUES (3, ARRAY[ARRAY[6]])",
    );
}
