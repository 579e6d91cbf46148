//! The normalized text shown for a fingerprint.

use crate::sql::normalize;

#[track_caller]
fn norm(sql: &str) -> String {
    normalize(sql.as_bytes(), 4096)
}

#[test]
fn constants_become_numbered_placeholders() {
    assert_eq!(
        norm(
            r#"SELECT "shop_order"."id" FROM "shop_order" WHERE "shop_order"."id" = 123 LIMIT 21"#
        ),
        r#"SELECT "shop_order"."id" FROM "shop_order" WHERE "shop_order"."id" = $1 LIMIT $2"#
    );
    assert_eq!(
        norm("select a from t where b = $7 and c = 'x'"),
        "select a from t where b = $1 and c = $2"
    );
}

#[test]
fn collapsed_lists_are_marked() {
    assert_eq!(
        norm("SELECT * FROM t WHERE a IN (1, 2, 3)"),
        "SELECT * FROM t WHERE a IN ($1 /*, ... */)"
    );
    assert_eq!(
        norm("SELECT * FROM t WHERE a IN (1)"),
        "SELECT * FROM t WHERE a IN ($1)"
    );
    assert_eq!(
        norm("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y')"),
        "INSERT INTO t (a, b) VALUES ($1, $2) /*, ... */"
    );
}

#[test]
fn whitespace_and_comments_collapse() {
    assert_eq!(
        norm("SELECT  count(*)\n  FROM t -- why\n WHERE x::text = 'a' /*app='x'*/;"),
        "SELECT count(*) FROM t WHERE x::text = $1"
    );
    assert_eq!(norm("SET search_path TO a, b"), "SET search_path = $1");
}

#[test]
fn capped_on_a_char_boundary() {
    let sql = "SELECT \"ééééé\" FROM t";
    for cap in 0..30 {
        let out = normalize(sql.as_bytes(), cap);
        assert!(out.len() <= cap, "{cap}: {out}");
        assert!(norm(sql).starts_with(&out));
    }
}
