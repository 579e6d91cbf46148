//! The semi-join rewrite against a hand-built catalog: exact output for each form, and the
//! reason given for each precondition that fails.

use super::{Form, Proposal, propose};
use crate::rules::catalog::{Column, Snapshot, TableInfo};

/// `name!` is NOT NULL, `name` nullable.
fn table(columns: &[&str], keys: &[&[&str]]) -> TableInfo {
    TableInfo {
        unique_keys: keys
            .iter()
            .map(|k| k.iter().map(|c| (*c).to_owned()).collect())
            .collect(),
        columns: columns
            .iter()
            .map(|c| Column {
                name: c.trim_end_matches('!').to_owned(),
                not_null: c.ends_with('!'),
            })
            .collect(),
        ..TableInfo::default()
    }
}

fn schema() -> Snapshot {
    let mut s = Snapshot::default();
    let mut add = |name: &str, info: TableInfo| {
        s.tables
            .insert(("public".to_owned(), name.to_owned()), info);
    };
    add(
        "orders",
        table(
            &[
                "id!",
                "user_id!",
                "status",
                "created_at!",
                "number",
                "total",
            ],
            &[&["id"], &["number"]],
        ),
    );
    add(
        "order_items",
        table(
            &["id!", "order_id!", "product_id", "sku", "price", "qty"],
            &[&["id"]],
        ),
    );
    add(
        "item_options",
        table(&["id!", "item_id!", "label"], &[&["id"]]),
    );
    add("products", table(&["id!", "name", "category"], &[&["id"]]));
    add(
        "users",
        table(
            &["id!", "email!", "name", "country"],
            &[&["id"], &["email"]],
        ),
    );
    add(
        "posts",
        table(&["id!", "author_id", "title", "published_at"], &[&["id"]]),
    );
    add(
        "post_tags",
        table(
            &["id!", "post_id!", "tag_id!"],
            &[&["id"], &["post_id", "tag_id"]],
        ),
    );
    add("tags", table(&["id!", "name!"], &[&["id"], &["name"]]));
    add("notes", table(&["id!", "order_id", "body"], &[&["id"]]));
    add(
        "shop_order",
        table(&["id!", "customer_id", "status", "created_at"], &[&["id"]]),
    );
    add(
        "shop_orderitem",
        table(&["id!", "order_id!", "sku", "qty", "price"], &[&["id"]]),
    );
    s.safe_functions = ["lower", "upper", "length", "now", "abs"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    s
}

#[track_caller]
fn rewrite(sql: &str) -> Proposal {
    match propose(sql, &schema()) {
        Ok(p) => p,
        Err(e) => panic!("expected a rewrite of\n  {sql}\nbut: {e}"),
    }
}

#[track_caller]
fn refused(sql: &str) -> String {
    match propose(sql, &schema()) {
        Ok(p) => panic!("expected NotProvable for\n  {sql}\nbut got\n  {}", p.sql),
        Err(e) => e.0,
    }
}

#[track_caller]
fn assert_refused(sql: &str, mentions: &[&str]) {
    let reason = refused(sql);
    for m in mentions {
        assert!(
            reason.contains(m),
            "reason for\n  {sql}\nshould mention {m:?}: {reason}"
        );
    }
}

#[track_caller]
fn assert_rewrite(sql: &str, form: Form, dropped: bool, moved: &[&str], expected: &str) {
    let p = rewrite(sql);
    assert_eq!(p.sql, expected, "rewrite of {sql}");
    assert_eq!(p.form, form, "form of {sql}");
    assert_eq!(p.distinct_dropped, dropped, "distinct_dropped of {sql}");
    assert_eq!(p.moved, moved, "moved of {sql}");
    // The output must itself parse, and rewriting it again must not find the same join.
    assert!(
        sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, &p.sql)
            .is_ok(),
        "output parses: {}",
        p.sql
    );
}

#[test]
fn incident_query_django_quoted() {
    assert_rewrite(
        r#"SELECT DISTINCT "shop_order"."id", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ($1 /*, ... */) ORDER BY "shop_order"."created_at" DESC LIMIT $2"#,
        Form::Distinct,
        true,
        &["shop_orderitem"],
        r#"SELECT "shop_order"."id", "shop_order"."created_at" FROM "shop_order" WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE ("shop_order"."id" = "shop_orderitem"."order_id") AND "shop_orderitem"."sku" IN ($1)) ORDER BY "shop_order"."created_at" DESC LIMIT $2"#,
    );
}

#[test]
fn incident_query_with_aliases() {
    assert_rewrite(
        "SELECT DISTINCT o.id, o.created_at FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.sku IN ($1, $2) AND o.status = $3 ORDER BY o.created_at DESC LIMIT $4",
        Form::Distinct,
        true,
        &["i"],
        "SELECT o.id, o.created_at FROM orders o WHERE o.status = $3 AND EXISTS (SELECT 1 FROM \
         order_items i WHERE i.order_id = o.id AND i.sku IN ($1, $2)) ORDER BY o.created_at DESC \
         LIMIT $4",
    );
}

#[test]
fn count_over_distinct_subquery_django() {
    assert_rewrite(
        r#"SELECT COUNT(*) FROM (SELECT DISTINCT "shop_order"."id" AS "col1", "shop_order"."status" AS "col2" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" = $1) subquery"#,
        Form::CountOverDistinct,
        true,
        &["shop_orderitem"],
        r#"SELECT COUNT(*) FROM (SELECT "shop_order"."id" AS "col1", "shop_order"."status" AS "col2" FROM "shop_order" WHERE EXISTS (SELECT 1 FROM "shop_orderitem" WHERE ("shop_order"."id" = "shop_orderitem"."order_id") AND "shop_orderitem"."sku" = $1)) subquery"#,
    );
    // Without the key the inner DISTINCT stays (still over parent rows only).
    assert_rewrite(
        "SELECT count(*) AS n FROM (SELECT DISTINCT o.status FROM orders o JOIN order_items i \
         ON i.order_id = o.id WHERE i.sku = $1) AS sub",
        Form::CountOverDistinct,
        false,
        &["i"],
        "SELECT count(*) AS n FROM (SELECT DISTINCT o.status FROM orders o WHERE EXISTS (SELECT 1 \
         FROM order_items i WHERE i.order_id = o.id AND i.sku = $1)) AS sub",
    );
}

#[test]
fn count_distinct_of_the_key_becomes_count() {
    assert_rewrite(
        "SELECT COUNT(DISTINCT o.id) FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.sku = $1",
        Form::CountDistinct,
        true,
        &["i"],
        "SELECT COUNT(o.id) FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE \
         i.order_id = o.id AND i.sku = $1)",
    );
    // A nullable unique column keeps its DISTINCT; MIN/MAX ride along unchanged.
    assert_rewrite(
        "SELECT count(DISTINCT o.number) AS c, max(o.created_at) FROM orders o JOIN order_items i \
         ON i.order_id = o.id WHERE i.qty > $1",
        Form::CountDistinct,
        false,
        &["i"],
        "SELECT count(DISTINCT o.number) AS c, max(o.created_at) FROM orders o WHERE EXISTS \
         (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.qty > $1)",
    );
    // A kept relation that is not to-one keeps the DISTINCT too.
    assert_rewrite(
        "SELECT COUNT(DISTINCT o.id), COUNT(DISTINCT n.body) FROM orders o JOIN notes n ON \
         n.order_id = o.id JOIN order_items i ON i.order_id = o.id WHERE i.sku = $1",
        Form::CountDistinct,
        false,
        &["i"],
        "SELECT COUNT(DISTINCT o.id), COUNT(DISTINCT n.body) FROM orders o JOIN notes n ON \
         n.order_id = o.id WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND \
         i.sku = $1)",
    );
}

#[test]
fn many_to_many_moves_both_link_and_target_into_one_exists() {
    assert_rewrite(
        "SELECT DISTINCT p.id, p.title FROM posts p JOIN post_tags pt ON pt.post_id = p.id \
         JOIN tags t ON t.id = pt.tag_id WHERE t.name IN ($1) ORDER BY p.id",
        Form::Distinct,
        true,
        &["pt", "t"],
        "SELECT p.id, p.title FROM posts p WHERE EXISTS (SELECT 1 FROM post_tags pt, tags t WHERE \
         pt.post_id = p.id AND t.id = pt.tag_id AND t.name IN ($1)) ORDER BY p.id",
    );
}

#[test]
fn three_level_chain() {
    assert_rewrite(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id \
         JOIN item_options x ON x.item_id = i.id WHERE x.label = $1 AND o.total > $2",
        Form::Distinct,
        true,
        &["i", "x"],
        "SELECT o.id FROM orders o WHERE o.total > $2 AND EXISTS (SELECT 1 FROM order_items i, \
         item_options x WHERE i.order_id = o.id AND x.item_id = i.id AND x.label = $1)",
    );
}

#[test]
fn to_one_join_stays_outside() {
    assert_rewrite(
        "SELECT DISTINCT o.id, o.created_at FROM orders o JOIN users u ON u.id = o.user_id \
         JOIN order_items i ON i.order_id = o.id WHERE u.country = $1 AND i.sku = $2",
        Form::Distinct,
        true,
        &["i"],
        "SELECT o.id, o.created_at FROM orders o JOIN users u ON u.id = o.user_id WHERE \
         u.country = $1 AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND \
         i.sku = $2)",
    );
    // A to-one LEFT JOIN in the select list stays verbatim and the key still drops DISTINCT.
    assert_rewrite(
        "SELECT DISTINCT o.id, u.name FROM orders o LEFT JOIN users u ON u.id = o.user_id \
         JOIN order_items i ON i.order_id = o.id WHERE i.sku = $1",
        Form::Distinct,
        true,
        &["i"],
        "SELECT o.id, u.name FROM orders o LEFT JOIN users u ON u.id = o.user_id WHERE EXISTS \
         (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.sku = $1)",
    );
}

#[test]
fn unused_left_join_is_dropped() {
    assert_rewrite(
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         LEFT JOIN item_options x ON x.item_id = i.id WHERE o.status = $1",
        Form::Distinct,
        true,
        &["i", "x"],
        "SELECT o.id FROM orders o WHERE o.status = $1",
    );
}

#[test]
fn null_rejected_left_join_is_treated_as_inner() {
    assert_rewrite(
        "SELECT DISTINCT o.id FROM orders o LEFT OUTER JOIN order_items i ON i.order_id = o.id \
         WHERE i.price::numeric > $1",
        Form::Distinct,
        true,
        &["i"],
        "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = \
         o.id AND i.price::NUMERIC > $1)",
    );
}

#[test]
fn unconnected_children_get_one_exists_each() {
    assert_rewrite(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id \
         JOIN notes n ON n.order_id = o.id WHERE i.sku = $1 AND n.body LIKE $2",
        Form::Distinct,
        true,
        &["i", "n"],
        "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = \
         o.id AND i.sku = $1) AND EXISTS (SELECT 1 FROM notes n WHERE n.order_id = o.id AND \
         n.body LIKE $2)",
    );
}

#[test]
fn distinct_kept_without_a_not_null_key() {
    assert_rewrite(
        "SELECT DISTINCT o.status FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.sku = $1",
        Form::Distinct,
        false,
        &["i"],
        "SELECT DISTINCT o.status FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE \
         i.order_id = o.id AND i.sku = $1)",
    );
    // `number` is unique but nullable: two orders without a number would collapse into one.
    let p = rewrite(
        "SELECT DISTINCT o.number, o.status FROM orders o JOIN order_items i ON i.order_id = o.id",
    );
    assert!(!p.distinct_dropped);
    assert!(p.sql.starts_with("SELECT DISTINCT o.number"), "{}", p.sql);
}

#[test]
fn distinct_on_the_key() {
    assert_rewrite(
        "SELECT DISTINCT ON (o.id) o.id, o.status FROM orders o JOIN order_items i ON \
         i.order_id = o.id WHERE i.qty > $1 ORDER BY o.id, o.created_at DESC",
        Form::DistinctOn,
        false,
        &["i"],
        "SELECT DISTINCT ON (o.id) o.id, o.status FROM orders o WHERE EXISTS (SELECT 1 FROM \
         order_items i WHERE i.order_id = o.id AND i.qty > $1) ORDER BY o.id, o.created_at DESC",
    );
    // An output name in DISTINCT ON means the output column.
    let p = rewrite(
        "SELECT DISTINCT ON (k) o.id AS k FROM orders o JOIN order_items i ON i.order_id = o.id",
    );
    assert_eq!(p.form, Form::DistinctOn);
}

#[test]
fn moved_base_relation() {
    assert_rewrite(
        "SELECT DISTINCT o.id FROM order_items i JOIN orders o ON o.id = i.order_id WHERE \
         i.sku = $1",
        Form::Distinct,
        true,
        &["i"],
        "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE o.id = \
         i.order_id AND i.sku = $1)",
    );
}

#[test]
fn unqualified_columns_resolve_through_the_catalog() {
    assert_rewrite(
        "SELECT DISTINCT o.id, created_at FROM orders o JOIN order_items i ON order_id = o.id \
         WHERE sku = $1 AND status = $2 ORDER BY created_at",
        Form::Distinct,
        true,
        &["i"],
        "SELECT o.id, created_at FROM orders o WHERE status = $2 AND EXISTS (SELECT 1 FROM \
         order_items i WHERE order_id = o.id AND sku = $1) ORDER BY created_at",
    );
}

#[test]
fn or_across_both_sides_goes_inside() {
    assert_rewrite(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON (i.order_id = o.id AND \
         i.qty > $1) WHERE (i.sku = $2 OR o.status = $3)",
        Form::Distinct,
        true,
        &["i"],
        "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = \
         o.id AND i.qty > $1 AND (i.sku = $2 OR o.status = $3))",
    );
    // A whole-WHERE OR gets parentheses when it joins an AND.
    let p = rewrite(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         i.sku = $1 OR o.status = $2",
    );
    assert!(
        p.sql
            .contains("i.order_id = o.id AND (i.sku = $1 OR o.status = $2)"),
        "{}",
        p.sql
    );
}

#[test]
fn subquery_in_where_moves_with_its_conjunct() {
    assert_rewrite(
        r#"SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE i.product_id IN (SELECT U0."id" FROM products U0 WHERE U0."category" = $1 AND U0.name <> o.status)"#,
        Form::Distinct,
        true,
        &["i"],
        r#"SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND i.product_id IN (SELECT U0."id" FROM products U0 WHERE U0."category" = $1 AND U0.name <> o.status))"#,
    );
}

#[test]
fn qualified_wildcard_and_schema_qualified_names() {
    let p = rewrite(
        "SELECT DISTINCT o.* FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         lower(i.sku) = $1",
    );
    assert!(p.distinct_dropped);
    assert_eq!(
        p.sql,
        "SELECT o.* FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = \
         o.id AND lower(i.sku) = $1)"
    );
    let p = rewrite(
        "SELECT DISTINCT public.orders.id FROM public.orders JOIN order_items ON \
         order_items.order_id = public.orders.id",
    );
    assert_eq!(
        p.sql,
        "SELECT public.orders.id FROM public.orders WHERE EXISTS (SELECT 1 FROM order_items \
         WHERE order_items.order_id = public.orders.id)"
    );
}

#[test]
fn order_by_output_alias_and_position() {
    let p = rewrite(
        "SELECT DISTINCT o.id, o.created_at AS c FROM orders o JOIN order_items i ON \
         i.order_id = o.id ORDER BY c DESC, 1",
    );
    assert!(p.distinct_dropped);
    assert!(p.sql.ends_with("ORDER BY c DESC, 1"), "{}", p.sql);
}

#[test]
fn refuses_order_by_a_child_column() {
    assert_refused(
        "SELECT DISTINCT ON (o.id) o.id FROM orders o JOIN order_items i ON i.order_id = o.id \
         ORDER BY o.id, i.price DESC",
        &["no join to move", "i: referenced by the ORDER BY"],
    );
}

#[test]
fn refuses_a_child_column_in_the_select_list() {
    assert_refused(
        "SELECT DISTINCT o.id, i.sku FROM orders o JOIN order_items i ON i.order_id = o.id",
        &["no join to move", "i: referenced by the select list"],
    );
    assert_refused(
        "SELECT DISTINCT o.id, p.name FROM orders o JOIN order_items i ON i.order_id = o.id \
         JOIN products p ON p.id = i.product_id",
        &["kept relation p is reached through moved relation i"],
    );
}

#[test]
fn refuses_star() {
    assert_refused(
        "SELECT DISTINCT * FROM orders o JOIN order_items i ON i.order_id = o.id",
        &["SELECT *"],
    );
}

#[test]
fn refuses_grouping_windows_and_set_operations() {
    assert_refused(
        "SELECT o.id FROM orders o JOIN order_items i ON i.order_id = o.id GROUP BY o.id",
        &["GROUP BY"],
    );
    assert_refused(
        "SELECT DISTINCT o.id, row_number() OVER (ORDER BY o.id) FROM orders o JOIN \
         order_items i ON i.order_id = o.id",
        &["window function row_number()"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id UNION \
         SELECT id FROM orders",
        &["UNION"],
    );
    assert_refused(
        "WITH x AS (SELECT 1) SELECT DISTINCT o.id FROM orders o JOIN order_items i ON \
         i.order_id = o.id",
        &["WITH"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id FOR UPDATE",
        &["FOR UPDATE"],
    );
    assert_refused(
        "SELECT COUNT(*) FROM orders o JOIN order_items i ON i.order_id = o.id",
        &["COUNT(*)"],
    );
    assert_refused(
        "SELECT o.id FROM orders o JOIN order_items i ON i.order_id = o.id",
        &["not a DISTINCT query"],
    );
}

#[test]
fn refuses_volatile_and_unknown_functions() {
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         i.price > random()",
        &["random()", "immutable or stable"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         i.qty IN (SELECT max(x.id) FROM item_options x)",
        &["aggregate max()"],
    );
}

#[test]
fn refuses_right_full_cross_and_comma_joins() {
    for (join, word) in [
        ("RIGHT JOIN", "RIGHT JOIN"),
        ("FULL JOIN", "FULL JOIN"),
        ("FULL OUTER JOIN", "FULL JOIN"),
    ] {
        assert_refused(
            &format!(
                "SELECT DISTINCT o.id FROM orders o {join} order_items i ON i.order_id = o.id"
            ),
            &[word],
        );
    }
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o CROSS JOIN order_items i",
        &["CROSS JOIN"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i USING (id)",
        &["USING"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o, order_items i WHERE i.order_id = o.id",
        &["comma"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN (SELECT * FROM order_items) i ON i.order_id = \
         o.id",
        &["derived table"],
    );
}

#[test]
fn refuses_left_join_that_is_not_null_rejected() {
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id WHERE \
         i.sku IS NULL",
        &["LEFT JOIN to i is not null-rejected"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id WHERE \
         (i.qty = $1 OR o.status = $2)",
        &["LEFT JOIN to i is not null-rejected"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id WHERE \
         COALESCE(i.qty, 0) = $1",
        &["LEFT JOIN to i is not null-rejected"],
    );
}

#[test]
fn refuses_unknown_tables_and_unresolvable_columns() {
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN shipments s ON s.order_id = o.id",
        &["shipments", "not in the catalog"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         id = $1",
        &["column id", "ambiguous"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         i.colour = $1",
        &["i.colour", "no such column"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items o ON o.order_id = o.id",
        &["bound twice"],
    );
}

#[test]
fn refuses_distinct_on_without_the_key() {
    assert_refused(
        "SELECT DISTINCT ON (o.status) o.status, o.id FROM orders o JOIN order_items i ON \
         i.order_id = o.id ORDER BY o.status, o.id",
        &["DISTINCT ON", "NOT NULL unique key of o"],
    );
    // A nullable unique key is not enough either.
    assert_refused(
        "SELECT DISTINCT ON (o.number) o.number FROM orders o JOIN order_items i ON \
         i.order_id = o.id",
        &["DISTINCT ON", "NOT NULL unique key"],
    );
}

#[test]
fn refuses_subqueries_that_shadow_or_leave_columns_unqualified() {
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         i.product_id IN (SELECT i.id FROM products i)",
        &["binds i", "shadows"],
    );
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         EXISTS (SELECT 1 FROM products p WHERE p.id = product_id)",
        &["unqualified column product_id inside a subquery"],
    );
    assert_refused(
        "SELECT DISTINCT o.id, (SELECT 1) FROM orders o JOIN order_items i ON i.order_id = o.id",
        &["subquery in the select list"],
    );
}

#[test]
fn refuses_what_has_no_join_to_move_or_no_parent() {
    assert_refused("SELECT DISTINCT o.id FROM orders o", &["no join to move"]);
    assert_refused(
        "SELECT DISTINCT o.id, u.email FROM orders o JOIN users u ON u.id = o.user_id",
        &["no join to move", "u: referenced by the select list"],
    );
    assert_refused(
        "SELECT DISTINCT 1 FROM orders o JOIN order_items i ON i.order_id = o.id",
        &["references no relation"],
    );
    assert_refused(
        "SELECT DISTINCT i.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id",
        &["kept relation i is LEFT JOINed"],
    );
    assert_refused("SELECT 1; SELECT 2", &["exactly one statement"]);
    assert_refused("DELETE FROM orders", &["not a SELECT"]);
}

#[test]
fn refuses_deeply_nested_expressions_without_overflowing() {
    let ors = (0..400)
        .map(|k| format!("i.qty = {k}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    assert_refused(
        &format!(
            "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE {ors}"
        ),
        &["nested too deeply"],
    );
}

#[test]
fn to_one_by_constant_and_composite_keys() {
    // `t.name = $1` on a unique column: at most one tag, so it stays outside.
    assert_rewrite(
        "SELECT DISTINCT p.id FROM posts p JOIN tags t ON t.name = $1 JOIN post_tags pt ON \
         pt.post_id = p.id",
        Form::Distinct,
        true,
        &["pt"],
        "SELECT p.id FROM posts p JOIN tags t ON t.name = $1 WHERE EXISTS (SELECT 1 FROM \
         post_tags pt WHERE pt.post_id = p.id)",
    );
    // The link table's (post_id, tag_id) key makes it to-one from p and t: nothing moves.
    assert_refused(
        "SELECT DISTINCT p.id FROM posts p JOIN tags t ON t.name = $1 JOIN post_tags pt ON \
         pt.post_id = p.id AND pt.tag_id = t.id",
        &["no join to move", "pt: joined to-one"],
    );
    // An expression (here with a COLLATE) on the other side proves nothing about the key.
    let p = rewrite(
        r#"SELECT DISTINCT o.id, u.name FROM orders o JOIN users u ON u.email = o.status COLLATE "C" JOIN order_items i ON i.order_id = o.id"#,
    );
    assert!(!p.distinct_dropped, "{}", p.sql);
    assert_eq!(p.moved, ["i"]);
}

#[test]
fn null_rejected_left_join_feeding_an_inner_join() {
    assert_rewrite(
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id JOIN \
         item_options x ON x.item_id = i.id WHERE i.qty > $1",
        Form::Distinct,
        true,
        &["i", "x"],
        "SELECT o.id FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i, item_options x \
         WHERE i.order_id = o.id AND x.item_id = i.id AND i.qty > $1)",
    );
    // Without the WHERE on i, the inner join to x still needs i: refused, not guessed.
    assert_refused(
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id JOIN \
         item_options x ON x.item_id = i.id",
        &["LEFT JOIN to i is not null-rejected"],
    );
}

#[test]
fn constant_conjuncts_and_uncorrelated_subqueries_stay_outside() {
    assert_rewrite(
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         $1 = $2 AND EXISTS (SELECT p.id FROM products p WHERE p.category = $3) AND i.sku = $4",
        Form::Distinct,
        true,
        &["i"],
        "SELECT o.id FROM orders o WHERE $1 = $2 AND EXISTS (SELECT p.id FROM products p WHERE \
         p.category = $3) AND EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id AND \
         i.sku = $4)",
    );
}

#[test]
fn refuses_very_long_conjunctions() {
    let ands = (0..300)
        .map(|k| format!("i.qty <> {k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    assert_refused(
        &format!(
            "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE {ands}"
        ),
        &["more than 200 conjuncts"],
    );
}

#[test]
fn an_unqualified_table_in_several_schemas_is_not_proven() {
    let mut s = schema();
    let orders = s
        .table(&crate::sql::analysis::TableRef {
            schema: None,
            name: "orders".into(),
        })
        .cloned()
        .expect("orders");
    // The same name in a tenant schema, without the primary key.
    s.tables.insert(
        ("tenant1".into(), "orders".into()),
        TableInfo {
            unique_keys: Vec::new(),
            ..orders
        },
    );
    let sql = "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id \
               WHERE i.sku = $1";
    let reason = propose(sql, &s).expect_err("search_path decides").0;
    assert!(
        reason.contains("exists in schemas public, tenant1") && reason.contains("search_path"),
        "{reason}"
    );
    // Qualified, it is proven against that table's keys.
    let qualified = sql.replace("FROM orders o", "FROM public.orders o");
    assert!(propose(&qualified, &s).is_ok());
}
