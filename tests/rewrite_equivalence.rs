//! The semi-join rewrite against a real PostgreSQL, differentially (in the style of SQLancer's
//! oracles): for every query variant, pgshape's proposal from the real catalog must be made or
//! refused as expected, and a proposal must return exactly the rows, column names and column
//! types of the original statement, for many constant values.
//!
//! The data is built to break wrong rewrites: parents without children, children with NULL
//! keys and values, duplicate child values, a nullable unique column, to-one relations with
//! NULL foreign keys, and a many-to-many link table.
//!
//! Constants are filled into the `$k` slots as SQL text, the way pgshape fills a rewrite with
//! each execution's constants (a slot that stood alone in `IN (…)` gets a whole list).

mod support;

use pgshape::rewrite::semijoin::{Form, propose};
use support::{PgCluster, Rng, psql_query};
use tokio_postgres::{Client, SimpleQueryMessage};

const SCHEMA: &str = r#"
CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text, country text);
CREATE TABLE orders (
    id bigint PRIMARY KEY, customer_id bigint REFERENCES customers (id), status text,
    created_at timestamptz NOT NULL, number text UNIQUE, total numeric);
CREATE TABLE products (id bigint PRIMARY KEY, name text, category text);
CREATE TABLE order_items (
    id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders (id),
    product_id bigint REFERENCES products (id), sku text, price numeric, qty int);
CREATE TABLE item_options (
    id bigint PRIMARY KEY, item_id bigint NOT NULL REFERENCES order_items (id), label text);
CREATE TABLE notes (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id), body text);
CREATE TABLE posts (id bigint PRIMARY KEY, author_id bigint REFERENCES customers (id), title text);
CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE post_tags (
    id bigserial PRIMARY KEY, post_id bigint NOT NULL REFERENCES posts (id),
    tag_id bigint NOT NULL REFERENCES tags (id), UNIQUE (post_id, tag_id));
CREATE TABLE shop_order (id bigint PRIMARY KEY, customer_id bigint, status text, created_at timestamptz);
CREATE TABLE shop_orderitem (
    id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES shop_order (id),
    sku text, qty int, price numeric);

INSERT INTO customers
SELECT g, 'c' || g || '@example.com', CASE WHEN g % 6 = 0 THEN NULL ELSE 'name' || (g % 17) END,
       (ARRAY['DE', 'FR', 'US', 'NL', NULL])[1 + g % 5]
FROM generate_series(1, 60) g;

INSERT INTO orders
SELECT g, CASE WHEN g % 23 = 0 THEN NULL ELSE 1 + (g * 7) % 60 END,
       (ARRAY['paid', 'new', 'cancelled', NULL])[1 + g % 4],
       timestamptz '2024-01-01 00:00:00+00' + ((g * 13) % 97) * interval '1 hour',
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'N' || g END,
       CASE WHEN g % 9 = 0 THEN NULL ELSE (g * 37) % 500 END
FROM generate_series(1, 300) g;

INSERT INTO products
SELECT g, 'product ' || g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'c' || (g % 5) END
FROM generate_series(1, 40) g;

-- 0..5 items per order; NULL skus, prices and products; duplicate skus within an order.
INSERT INTO order_items
SELECT row_number() OVER (ORDER BY o.id, k), o.id,
       CASE WHEN (o.id * k) % 11 = 0 THEN NULL ELSE 1 + (o.id * k * 3) % 40 END,
       CASE WHEN (o.id + k) % 7 = 0 THEN NULL ELSE 'S' || ((o.id * k) % 9) END,
       CASE WHEN (o.id + 2 * k) % 8 = 0 THEN NULL ELSE (o.id * k * 31) % 100 END,
       1 + (o.id + k) % 4
FROM orders o, generate_series(1, (o.id * 13) % 6) k;

INSERT INTO item_options
SELECT row_number() OVER (ORDER BY i.id, k), i.id,
       (ARRAY['gift', 'express', 'fragile', NULL])[1 + (i.id + k) % 4]
FROM order_items i, generate_series(1, (i.id * 5) % 4) k;

INSERT INTO notes
SELECT row_number() OVER (ORDER BY o.id, k), CASE WHEN (o.id + k) % 10 = 0 THEN NULL ELSE o.id END,
       'note ' || ((o.id * k) % 6)
FROM orders o, generate_series(1, o.id % 3) k;

INSERT INTO posts
SELECT g, CASE WHEN g % 8 = 0 THEN NULL ELSE 1 + (g * 11) % 60 END, 'post ' || (g % 40)
FROM generate_series(1, 150) g;

INSERT INTO tags SELECT g, 't' || g FROM generate_series(1, 12) g;

INSERT INTO post_tags (post_id, tag_id)
SELECT p.id, 1 + (p.id + k * 5) % 12 FROM posts p, generate_series(1, p.id % 5) k;

INSERT INTO shop_order SELECT id, customer_id, status, created_at FROM orders;
INSERT INTO shop_orderitem SELECT id, order_id, sku, qty, price FROM order_items;
ANALYZE;
"#;

/// What kind of constant a slot takes (as SQL text).
#[derive(Debug, Clone, Copy)]
enum Slot {
    Sku,
    /// A whole `IN (…)` list of skus.
    Skus,
    Status,
    Statuses,
    Int(i32, i32),
    Country,
    Label,
    Category,
    Tag,
    Tags,
    Like,
    Limit,
}

impl Slot {
    fn value(self, rng: &mut Rng) -> String {
        let pick = |rng: &mut Rng, options: &[&str]| {
            options[rng.range(0, options.len() as i32 - 1) as usize].to_owned()
        };
        let list = |rng: &mut Rng, one: &dyn Fn(&mut Rng) -> String| {
            let n = rng.range(1, 3);
            (0..n).map(|_| one(rng)).collect::<Vec<_>>().join(", ")
        };
        match self {
            // S9 never occurs: empty results must agree too.
            Slot::Sku => format!("'S{}'", rng.range(0, 9)),
            Slot::Skus => list(rng, &|r| format!("'S{}'", r.range(0, 9))),
            Slot::Status => pick(rng, &["'paid'", "'new'", "'cancelled'", "'gone'"]),
            Slot::Statuses => list(rng, &|r| {
                pick(r, &["'paid'", "'new'", "'cancelled'", "'gone'"])
            }),
            Slot::Int(lo, hi) => rng.range(lo, hi).to_string(),
            Slot::Country => pick(rng, &["'DE'", "'FR'", "'US'", "'NL'", "'XX'"]),
            Slot::Label => pick(rng, &["'gift'", "'express'", "'fragile'", "'none'"]),
            Slot::Category => format!("'c{}'", rng.range(0, 5)),
            Slot::Tag => format!("'t{}'", rng.range(1, 13)),
            Slot::Tags => list(rng, &|r| format!("'t{}'", r.range(1, 13))),
            Slot::Like => pick(rng, &["'note 1%'", "'%2'", "'%'", "'x%'"]),
            Slot::Limit => pick(rng, &["3", "10", "40", "1000"]),
        }
    }
}

/// How two result sets must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// The ORDER BY ends in a unique key: the same rows in the same order.
    Ordered,
    /// No total order: the same multiset of rows.
    Multiset,
    /// LIMIT under an order with ties: which tied rows come back is arbitrary, so only the
    /// number of rows must agree.
    RowCount,
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Rewrite {
        form: Form,
        dropped: bool,
    },
    /// Refused with a reason containing the text.
    Refuse(&'static str),
    /// Refused, and PostgreSQL rejects the statement too.
    RefuseInvalid(&'static str),
}

struct Variant {
    name: &'static str,
    sql: &'static str,
    slots: &'static [Slot],
    expect: Expect,
    compare: Compare,
}

const fn rewrite(
    name: &'static str,
    form: Form,
    dropped: bool,
    compare: Compare,
    slots: &'static [Slot],
    sql: &'static str,
) -> Variant {
    Variant {
        name,
        sql,
        slots,
        expect: Expect::Rewrite { form, dropped },
        compare,
    }
}

const fn refuse(
    name: &'static str,
    reason: &'static str,
    slots: &'static [Slot],
    sql: &'static str,
) -> Variant {
    Variant {
        name,
        sql,
        slots,
        expect: Expect::Refuse(reason),
        compare: Compare::Multiset,
    }
}

use Compare::{Multiset, Ordered, RowCount};
use Form::{CountDistinct, CountOverDistinct, Distinct, DistinctOn};
use Slot::*;

const VARIANTS: &[Variant] = &[
    rewrite(
        "incident, aliased, total order",
        Distinct,
        true,
        Ordered,
        &[Skus, Status, Limit],
        "SELECT DISTINCT o.id, o.created_at FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.sku IN ($1) AND o.status = $2 ORDER BY o.created_at DESC, o.id LIMIT $3",
    ),
    rewrite(
        "incident, Django-quoted, LIMIT under ties",
        Distinct,
        true,
        RowCount,
        &[Skus, Limit],
        r#"SELECT DISTINCT "shop_order"."id", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ($1) ORDER BY "shop_order"."created_at" DESC LIMIT $2"#,
    ),
    rewrite(
        "incident, Django-quoted, total order",
        Distinct,
        true,
        Ordered,
        &[Skus, Limit],
        r#"SELECT DISTINCT "shop_order"."id", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ($1) ORDER BY "shop_order"."created_at" DESC, "shop_order"."id" ASC LIMIT $2"#,
    ),
    rewrite(
        "select list without the key keeps DISTINCT",
        Distinct,
        false,
        Multiset,
        &[Int(1, 4)],
        "SELECT DISTINCT o.status FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.qty >= $1",
    ),
    rewrite(
        "nullable unique column only keeps DISTINCT",
        Distinct,
        false,
        Multiset,
        &[Int(0, 99)],
        "SELECT DISTINCT o.number FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.price > $1",
    ),
    rewrite(
        "nullable unique column with another column keeps DISTINCT",
        Distinct,
        false,
        Multiset,
        &[Int(0, 99)],
        "SELECT DISTINCT o.number, o.status FROM orders o JOIN order_items i ON \
         i.order_id = o.id WHERE i.price < $1",
    ),
    rewrite(
        "parent.* holds the key",
        Distinct,
        true,
        Multiset,
        &[Sku],
        "SELECT DISTINCT o.* FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         i.sku = $1",
    ),
    rewrite(
        "unused LEFT JOIN dropped",
        Distinct,
        true,
        Multiset,
        &[Status],
        "SELECT DISTINCT o.id, o.status FROM orders o LEFT JOIN order_items i ON \
         i.order_id = o.id WHERE o.status = $1",
    ),
    rewrite(
        "unused LEFT JOIN chain dropped",
        Distinct,
        true,
        Multiset,
        &[Int(0, 500)],
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         LEFT JOIN item_options x ON x.item_id = i.id WHERE o.total > $1",
    ),
    rewrite(
        "unused LEFT JOIN dropped, DISTINCT kept",
        Distinct,
        false,
        Multiset,
        &[],
        "SELECT DISTINCT o.customer_id FROM orders o LEFT OUTER JOIN notes n ON \
         n.order_id = o.id",
    ),
    rewrite(
        "LEFT JOIN null-rejected by a comparison",
        Distinct,
        true,
        Multiset,
        &[Int(0, 99)],
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         WHERE i.price > $1",
    ),
    rewrite(
        "LEFT JOIN null-rejected by IS NOT NULL, ON filter moves too",
        Distinct,
        true,
        Multiset,
        &[Int(1, 4)],
        "SELECT DISTINCT o.id, o.total FROM orders o LEFT JOIN order_items i ON \
         i.order_id = o.id AND i.qty > $1 WHERE i.sku IS NOT NULL",
    ),
    rewrite(
        "LEFT JOIN null-rejected by IN, ON filter on the parent",
        Distinct,
        true,
        Multiset,
        &[Status, Skus],
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         AND o.status = $1 WHERE i.sku IN ($2)",
    ),
    rewrite(
        "OR across parent and child",
        Distinct,
        true,
        Multiset,
        &[Sku, Status],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         (i.sku = $1 OR o.status = $2)",
    ),
    rewrite(
        "whole-WHERE OR across parent and child",
        Distinct,
        true,
        Multiset,
        &[Sku, Statuses],
        "SELECT DISTINCT o.id, o.status FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.sku = $1 OR o.status IN ($2)",
    ),
    rewrite(
        "many-to-many through a link table",
        Distinct,
        true,
        Ordered,
        &[Tags],
        "SELECT DISTINCT p.id, p.title FROM posts p JOIN post_tags pt ON pt.post_id = p.id \
         JOIN tags t ON t.id = pt.tag_id WHERE t.name IN ($1) ORDER BY p.id",
    ),
    rewrite(
        "link table joined twice: two EXISTS",
        Distinct,
        true,
        Multiset,
        &[Int(1, 12), Int(1, 12)],
        "SELECT DISTINCT p.id FROM posts p JOIN post_tags a ON a.post_id = p.id JOIN \
         post_tags b ON b.post_id = p.id WHERE a.tag_id = $1 AND b.tag_id = $2",
    ),
    rewrite(
        "three-level chain",
        Distinct,
        true,
        Multiset,
        &[Label, Int(0, 3)],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id JOIN \
         item_options x ON x.item_id = i.id WHERE x.label = $1 AND i.qty > $2",
    ),
    rewrite(
        "three-level chain, DISTINCT kept",
        Distinct,
        false,
        Multiset,
        &[Label],
        "SELECT DISTINCT o.status, o.customer_id FROM orders o JOIN order_items i ON \
         i.order_id = o.id JOIN item_options x ON x.item_id = i.id WHERE x.label <> $1",
    ),
    rewrite(
        "to-one join filtered on stays outside",
        Distinct,
        true,
        Ordered,
        &[Country, Sku],
        "SELECT DISTINCT o.id, o.created_at FROM orders o JOIN customers c ON c.id = \
         o.customer_id JOIN order_items i ON i.order_id = o.id WHERE c.country = $1 AND \
         i.sku = $2 ORDER BY o.created_at, o.id",
    ),
    rewrite(
        "to-one join in the select list",
        Distinct,
        true,
        Multiset,
        &[Int(1, 4)],
        "SELECT DISTINCT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id \
         JOIN order_items i ON i.order_id = o.id WHERE i.qty = $1",
    ),
    rewrite(
        "to-one LEFT JOIN in the select list",
        Distinct,
        true,
        Multiset,
        &[Sku],
        "SELECT DISTINCT o.id, c.name FROM orders o LEFT JOIN customers c ON c.id = \
         o.customer_id JOIN order_items i ON i.order_id = o.id WHERE i.sku = $1",
    ),
    rewrite(
        "to-one from the child moves with it",
        Distinct,
        true,
        Multiset,
        &[Category],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id JOIN \
         products p ON p.id = i.product_id WHERE p.category = $1",
    ),
    rewrite(
        "two unrelated children: two EXISTS",
        Distinct,
        true,
        Multiset,
        &[Sku, Like],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id JOIN \
         notes n ON n.order_id = o.id WHERE i.sku = $1 AND n.body LIKE $2",
    ),
    rewrite(
        "child first in FROM",
        Distinct,
        true,
        Multiset,
        &[Sku],
        "SELECT DISTINCT o.id, o.status FROM order_items i JOIN orders o ON o.id = i.order_id \
         WHERE i.sku = $1",
    ),
    rewrite(
        "unqualified columns",
        Distinct,
        true,
        Multiset,
        &[Sku, Status],
        "SELECT DISTINCT o.id, created_at FROM orders o JOIN order_items i ON order_id = o.id \
         WHERE sku = $1 AND status = $2",
    ),
    rewrite(
        "IN subquery in WHERE",
        Distinct,
        true,
        Multiset,
        &[Category],
        r#"SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE i.product_id IN (SELECT U0."id" FROM products U0 WHERE U0."category" = $1)"#,
    ),
    rewrite(
        "correlated EXISTS in WHERE",
        Distinct,
        true,
        Multiset,
        &[Label],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         EXISTS (SELECT x.id FROM item_options x WHERE x.item_id = i.id AND x.label = $1)",
    ),
    rewrite(
        "DISTINCT ON the key",
        DistinctOn,
        false,
        Ordered,
        &[Int(0, 4)],
        "SELECT DISTINCT ON (o.id) o.id, o.status FROM orders o JOIN order_items i ON \
         i.order_id = o.id WHERE i.qty > $1 ORDER BY o.id, o.created_at DESC",
    ),
    rewrite(
        "DISTINCT ON the key with a to-one join",
        DistinctOn,
        false,
        Ordered,
        &[Sku],
        "SELECT DISTINCT ON (o.id) o.id, c.email FROM orders o JOIN customers c ON c.id = \
         o.customer_id JOIN order_items i ON i.order_id = o.id WHERE i.sku <> $1 ORDER BY o.id",
    ),
    rewrite(
        "Django .distinct().count()",
        CountOverDistinct,
        true,
        Ordered,
        &[Skus],
        r#"SELECT COUNT(*) FROM (SELECT DISTINCT "shop_order"."id" AS "col1" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ($1)) subquery"#,
    ),
    rewrite(
        "count over DISTINCT without the key",
        CountOverDistinct,
        false,
        Ordered,
        &[Int(0, 99)],
        "SELECT COUNT(*) AS n FROM (SELECT DISTINCT o.status, o.customer_id FROM orders o \
         JOIN order_items i ON i.order_id = o.id WHERE i.price < $1) AS sub",
    ),
    rewrite(
        "COUNT(DISTINCT key)",
        CountDistinct,
        true,
        Ordered,
        &[Skus],
        "SELECT COUNT(DISTINCT o.id) FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.sku IN ($1)",
    ),
    rewrite(
        "COUNT(DISTINCT nullable unique) with MIN/MAX",
        CountDistinct,
        false,
        Ordered,
        &[Int(0, 4)],
        "SELECT COUNT(DISTINCT o.number), MAX(o.total), MIN(o.created_at) FROM orders o JOIN \
         order_items i ON i.order_id = o.id WHERE i.qty > $1",
    ),
    rewrite(
        "COUNT(DISTINCT key) with SUM(DISTINCT)",
        CountDistinct,
        true,
        Ordered,
        &[Label],
        "SELECT COUNT(DISTINCT o.id) AS n, SUM(DISTINCT o.total) AS s FROM orders o JOIN \
         order_items i ON i.order_id = o.id JOIN item_options x ON x.item_id = i.id WHERE \
         x.label = $1",
    ),
    rewrite(
        "COUNT(DISTINCT key) over many-to-many",
        CountDistinct,
        true,
        Ordered,
        &[Tag],
        "SELECT COUNT(DISTINCT p.id) FROM posts p JOIN post_tags pt ON pt.post_id = p.id JOIN \
         tags t ON t.id = pt.tag_id WHERE t.name = $1",
    ),
    rewrite(
        "ORDER BY output aliases",
        Distinct,
        true,
        Ordered,
        &[Sku, Limit],
        "SELECT DISTINCT o.id AS k, o.created_at AS c FROM orders o JOIN order_items i ON \
         i.order_id = o.id WHERE i.sku = $1 ORDER BY c DESC, k LIMIT $2",
    ),
    rewrite(
        "safe functions, COALESCE and CASE in moved conjuncts",
        Distinct,
        true,
        Multiset,
        &[Sku, Int(0, 3), Int(1, 4), Int(0, 50)],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         lower(i.sku) = lower($1) OR COALESCE(i.qty, $2) > $3 AND CASE WHEN i.price IS NULL \
         THEN o.total ELSE i.price END > $4",
    ),
    rewrite(
        "BETWEEN on the parent stays outside",
        Distinct,
        true,
        Ordered,
        &[Int(0, 200), Int(200, 500), Limit, Int(0, 5)],
        "SELECT DISTINCT o.id, o.total FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE o.total BETWEEN $1 AND $2 AND i.sku IS NOT NULL ORDER BY o.id LIMIT $3 OFFSET $4",
    ),
    rewrite(
        "Django chained filters: the child joined twice",
        Distinct,
        true,
        Multiset,
        &[Sku, Int(1, 4)],
        r#"SELECT DISTINCT "shop_order"."id" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") INNER JOIN "shop_orderitem" T3 ON ("shop_order"."id" = T3."order_id") WHERE ("shop_orderitem"."sku" = $1 AND T3."qty" >= $2)"#,
    ),
    rewrite(
        "to-one LEFT JOIN over a nullable foreign key, link table moved",
        Distinct,
        true,
        Multiset,
        &[Int(1, 12)],
        "SELECT DISTINCT p.id, c.name FROM posts p LEFT JOIN customers c ON c.id = \
         p.author_id JOIN post_tags pt ON pt.post_id = p.id WHERE pt.tag_id >= $1",
    ),
    rewrite(
        "to-one by a constant on a unique column",
        Distinct,
        true,
        Multiset,
        &[Tag],
        "SELECT DISTINCT p.id FROM posts p JOIN tags t ON t.name = $1 JOIN post_tags pt ON \
         pt.post_id = p.id",
    ),
    refuse(
        "link table to-one through its composite unique key",
        "pt: joined to-one",
        &[Tag],
        "SELECT DISTINCT p.id FROM posts p JOIN tags t ON t.name = $1 JOIN post_tags pt ON \
         pt.post_id = p.id AND pt.tag_id = t.id",
    ),
    rewrite(
        "kept to-one LEFT JOIN filtered with IS NULL",
        Distinct,
        true,
        Multiset,
        &[Sku],
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN customers c ON c.id = o.customer_id \
         JOIN order_items i ON i.order_id = o.id WHERE c.id IS NULL AND i.sku <> $1",
    ),
    rewrite(
        "null-rejected LEFT JOIN feeding an inner join",
        Distinct,
        true,
        Multiset,
        &[Int(0, 3)],
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         JOIN item_options x ON x.item_id = i.id WHERE i.qty > $1",
    ),
    rewrite(
        "uncorrelated EXISTS stays outside",
        Distinct,
        false,
        Multiset,
        &[Sku, Category],
        "SELECT DISTINCT o.customer_id FROM orders o JOIN order_items i ON i.order_id = o.id \
         WHERE i.sku = $1 AND EXISTS (SELECT p.id FROM products p WHERE p.category = $2)",
    ),
    rewrite(
        "DISTINCT ON an output name",
        DistinctOn,
        false,
        Ordered,
        &[Sku],
        "SELECT DISTINCT ON (id) o.id, o.status FROM orders o JOIN order_items i ON \
         i.order_id = o.id WHERE i.sku = $1 ORDER BY id",
    ),
    rewrite(
        "COUNT(DISTINCT key) with a to-one join kept",
        CountDistinct,
        true,
        Ordered,
        &[Country, Int(0, 99)],
        "SELECT count(DISTINCT o.id) FROM orders o JOIN customers c ON c.id = o.customer_id \
         JOIN order_items i ON i.order_id = o.id WHERE c.country = $1 AND i.price >= $2",
    ),
    refuse(
        "child column in the select list",
        "no join to move",
        &[],
        "SELECT DISTINCT o.id, i.sku FROM orders o JOIN order_items i ON i.order_id = o.id",
    ),
    refuse(
        "ORDER BY a child column under DISTINCT ON",
        "ORDER BY",
        &[],
        "SELECT DISTINCT ON (o.id) o.id FROM orders o JOIN order_items i ON i.order_id = o.id \
         ORDER BY o.id, i.price DESC",
    ),
    refuse(
        "DISTINCT ON without the key",
        "DISTINCT ON",
        &[],
        "SELECT DISTINCT ON (o.status) o.status, o.id FROM orders o JOIN order_items i ON \
         i.order_id = o.id ORDER BY o.status, o.id",
    ),
    refuse(
        "DISTINCT ON a nullable unique column",
        "NOT NULL unique key",
        &[],
        "SELECT DISTINCT ON (o.number) o.number, o.id FROM orders o JOIN order_items i ON \
         i.order_id = o.id ORDER BY o.number, o.id",
    ),
    refuse(
        "LEFT JOIN with IS NULL (anti-join)",
        "not null-rejected",
        &[],
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         WHERE i.sku IS NULL",
    ),
    refuse(
        "LEFT JOIN under OR",
        "not null-rejected",
        &[Int(1, 4), Status],
        "SELECT DISTINCT o.id FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
         WHERE (i.qty = $1 OR o.status = $2)",
    ),
    refuse(
        "volatile function",
        "random()",
        &[Int(0, 99)],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         i.price > random() * $1",
    ),
    refuse(
        "GROUP BY",
        "GROUP BY",
        &[],
        "SELECT o.id FROM orders o JOIN order_items i ON i.order_id = o.id GROUP BY o.id",
    ),
    refuse(
        "SELECT *",
        "SELECT *",
        &[],
        "SELECT DISTINCT * FROM orders o JOIN order_items i ON i.order_id = o.id",
    ),
    refuse(
        "comma-separated FROM",
        "comma",
        &[],
        "SELECT DISTINCT o.id FROM orders o, order_items i WHERE i.order_id = o.id",
    ),
    refuse(
        "RIGHT JOIN",
        "RIGHT JOIN",
        &[],
        "SELECT DISTINCT o.id FROM orders o RIGHT JOIN order_items i ON i.order_id = o.id",
    ),
    refuse(
        "kept relation reached through the child",
        "reached through moved relation i",
        &[],
        "SELECT DISTINCT o.id, p.name FROM orders o JOIN order_items i ON i.order_id = o.id \
         JOIN products p ON p.id = i.product_id",
    ),
    Variant {
        name: "ambiguous unqualified column",
        sql: "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
              id = $1",
        slots: &[Int(1, 50)],
        expect: Expect::RefuseInvalid("ambiguous"),
        compare: Multiset,
    },
    refuse(
        "subquery shadowing an outer alias",
        "shadows",
        &[],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id WHERE \
         i.product_id IN (SELECT i.id FROM products i)",
    ),
    refuse(
        "COUNT(*) over the join",
        "COUNT(*)",
        &[],
        "SELECT COUNT(*) FROM orders o JOIN order_items i ON i.order_id = o.id",
    ),
    refuse(
        "UNION",
        "UNION",
        &[],
        "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id UNION \
         SELECT o.id FROM orders o",
    ),
];

/// `sql` with each `$k` replaced by `values[k - 1]`.
fn fill(sql: &str, values: &[String]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            let mut end = i + 1;
            while let Some(&(j, d)) = chars.peek() {
                if !d.is_ascii_digit() {
                    break;
                }
                end = j + 1;
                chars.next();
            }
            let k: usize = sql[i + 1..end].parse().expect("slot number");
            out.push_str(&values[k - 1]);
        } else {
            out.push(c);
        }
    }
    out
}

fn db_error(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |db| db.message().to_owned())
}

fn without_spaces(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Column names and type OIDs, and the rows as text (NULL as `None`).
async fn run(
    client: &Client,
    sql: &str,
) -> Result<(Vec<(String, u32)>, Vec<Vec<Option<String>>>), tokio_postgres::Error> {
    let statement = client.prepare(sql).await?;
    let columns = statement
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().oid()))
        .collect();
    let mut rows = Vec::new();
    for message in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = message {
            rows.push(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            );
        }
    }
    Ok((columns, rows))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semijoin_rewrites_return_the_same_rows() {
    assert!(VARIANTS.len() >= 40, "{} variants", VARIANTS.len());
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, SCHEMA);
    let (_oracle, snapshot) = support::client::loaded_catalog(&db).await;
    let client = support::client::tokio_connect(&db).await;

    // The data must have what the variants are meant to trip over.
    let facts = psql_query(
        &db,
        "SELECT (SELECT count(*) FROM orders o WHERE NOT EXISTS \
                 (SELECT 1 FROM order_items i WHERE i.order_id = o.id)) > 0, \
                (SELECT count(*) FROM order_items WHERE sku IS NULL) > 0, \
                (SELECT count(*) FROM order_items WHERE price IS NULL) > 0, \
                (SELECT count(*) FROM orders WHERE number IS NULL) > 1, \
                (SELECT max(n) FROM (SELECT count(*) n FROM order_items GROUP BY order_id) c) = 5",
    );
    assert_eq!(facts, "t|t|t|t|t", "test data lacks duplicates or NULLs");

    let mut failures = Vec::new();
    let mut rewritten = 0;
    let mut comparisons = 0;
    for (n, v) in VARIANTS.iter().enumerate() {
        let normalized = pgshape::sql::normalize(v.sql.as_bytes(), usize::MAX);
        assert_eq!(
            without_spaces(&normalized),
            without_spaces(v.sql),
            "variant {:?} must be written in normalized form (every constant a $k, one per IN list)",
            v.name
        );
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (n as u64 + 1));
        let value_sets: Vec<Vec<String>> = (0..6)
            .map(|_| v.slots.iter().map(|s| s.value(&mut rng)).collect())
            .collect();
        let proposal = propose(&normalized, &snapshot);
        let proposal = match (v.expect, proposal) {
            (Expect::Refuse(reason) | Expect::RefuseInvalid(reason), Err(e)) => {
                if !e.0.contains(reason) {
                    failures.push(format!(
                        "{}: refused for the wrong reason (expected {reason:?}): {e}",
                        v.name
                    ));
                }
                // The variant itself must be valid SQL, or the refusal proves nothing.
                let valid = matches!(v.expect, Expect::Refuse(_));
                match run(&client, &fill(v.sql, &value_sets[0])).await {
                    Err(e) if valid => {
                        failures.push(format!("{}: the original fails: {}", v.name, db_error(&e)))
                    }
                    Ok(_) if !valid => {
                        failures.push(format!("{}: PostgreSQL accepts the original", v.name))
                    }
                    _ => {}
                }
                continue;
            }
            (Expect::Refuse(_) | Expect::RefuseInvalid(_), Ok(p)) => {
                failures.push(format!("{}: must not be rewritten, got {}", v.name, p.sql));
                continue;
            }
            (Expect::Rewrite { .. }, Err(e)) => {
                failures.push(format!("{}: must be rewritten, but: {e}", v.name));
                continue;
            }
            (Expect::Rewrite { form, dropped }, Ok(p)) => {
                if p.form != form || p.distinct_dropped != dropped {
                    failures.push(format!(
                        "{}: expected {form:?} with distinct_dropped={dropped}, got {:?} with \
                         distinct_dropped={}: {}",
                        v.name, p.form, p.distinct_dropped, p.sql
                    ));
                }
                p
            }
        };
        rewritten += 1;
        for values in &value_sets {
            let original = fill(v.sql, values);
            let candidate = fill(&proposal.sql, values);
            let (want, got) = match (
                run(&client, &original).await,
                run(&client, &candidate).await,
            ) {
                (Ok(want), Ok(got)) => (want, got),
                (want, got) => {
                    failures.push(format!(
                        "{}: execution failed\n  original: {original}\n    -> {:?}\n  rewrite: \
                         {candidate}\n    -> {:?}",
                        v.name,
                        want.err().map(|e| db_error(&e)),
                        got.err().map(|e| db_error(&e))
                    ));
                    continue;
                }
            };
            comparisons += 1;
            let (want_columns, mut want_rows) = want;
            let (got_columns, mut got_rows) = got;
            if want_columns != got_columns {
                failures.push(format!(
                    "{}: columns differ: {want_columns:?} vs {got_columns:?}\n  rewrite: {candidate}",
                    v.name
                ));
            }
            let same = match v.compare {
                Compare::Ordered => want_rows == got_rows,
                Compare::Multiset => {
                    want_rows.sort();
                    got_rows.sort();
                    want_rows == got_rows
                }
                Compare::RowCount => want_rows.len() == got_rows.len(),
            };
            if !same {
                failures.push(format!(
                    "{}: results differ ({:?}, {} vs {} rows)\n  original: {original}\n  \
                     rewrite: {candidate}",
                    v.name,
                    v.compare,
                    want_rows.len(),
                    got_rows.len()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(rewritten >= 40, "only {rewritten} variants rewritten");
    assert!(comparisons >= 5 * rewritten, "{comparisons} comparisons");
}

/// A reply as the comparison allows: every message in order, or with the DataRows sorted
/// (multisets), or with DataRows only counted (a LIMIT under ties).
fn comparable(
    msgs: Vec<support::raw::BackendMsg>,
    compare: Compare,
) -> Vec<support::raw::BackendMsg> {
    match compare {
        Compare::Ordered => msgs,
        Compare::Multiset | Compare::RowCount => {
            let (mut rows, mut rest): (Vec<_>, Vec<_>) =
                msgs.into_iter().partition(|m| m.tag == b'D');
            if compare == Compare::Multiset {
                rows.sort_by(|a, b| a.body.cmp(&b.body));
                rest.extend(rows);
            } else {
                rest.push(support::raw::BackendMsg {
                    tag: b'#',
                    body: rows.len().to_string().into_bytes(),
                });
            }
            rest
        }
    }
}

/// Variants the semi-join can rewrite but no shipped rule flags, so nothing asks for the
/// rewrite on live traffic: the fan-out facts see no fan-out when the child comes first in FROM
/// (the parent is then joined to-one) or when a join's columns are unqualified.
const NOT_FLAGGED: &[&str] = &["child first in FROM", "unqualified columns"];

/// The same variants through a running pgshape with both fan-out rules set to `rewrite`: each
/// rewritten variant is rewritten on the wire, and in the simple and the extended protocol the
/// client receives byte for byte what PostgreSQL sends for the original — RowDescription,
/// ParameterDescription, rows (sorted where the order is not total), command tag — while the
/// refused variants pass through untouched.
#[test]
fn every_variant_through_pgshape_in_both_protocols() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, SCHEMA);
    let rules = tempfile::tempdir().expect("tempdir");
    for (name, text) in pgshape::rules::embedded::SHIPPED {
        let text = if name.contains("fanout") {
            text.replace("action = \"observe\"", "action = \"rewrite\"")
        } else {
            (*text).to_owned()
        };
        std::fs::write(rules.path().join(name), text).expect("rule");
    }
    let mut config = support::proxy::app_config(cluster);
    config.rules.dir = Some(rules.path().to_owned());
    config.rules.schema_dsn = Some(db.dsn());
    let app = pgshape::app::App::start(config).expect("pgshape starts");
    let mut via = support::raw::RawConn::login(app.proxy_addr(), &db.user, &db.dbname);
    let mut direct = support::raw::RawConn::login(db.addr(), &db.user, &db.dbname);
    let rewriter = app.rules().rewriter().clone();
    let applied = |fp| {
        ["distinct-over-fanout-join", "count-distinct-fanout"]
            .iter()
            .map(|rule| {
                rewriter
                    .counts()
                    .get(rule, fp, pgshape::rewrite::Outcome::Applied)
            })
            .sum::<u64>()
    };

    let mut failures = Vec::new();
    let mut checked = 0;
    for (n, v) in VARIANTS.iter().enumerate() {
        if matches!(v.expect, Expect::RefuseInvalid(_)) {
            continue;
        }
        let mut rng = Rng(0x5EED ^ (n as u64 + 1));
        let values: Vec<String> = v.slots.iter().map(|s| s.value(&mut rng)).collect();
        let sql = fill(v.sql, &values);
        let fp = pgshape::sql::fingerprint(sql.as_bytes());
        // The first execution asks for the proof; wait for every rule's decision.
        support::raw::exchange(&mut via, &support::raw::query(&sql));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while rewriter
            .plans_for(fp)
            .iter()
            .any(|p| matches!(p.state, pgshape::rewrite::PlanState::Proving))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: no decision",
                v.name
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let before = applied(fp);
        // random() differs between any two runs of the original itself.
        let deterministic = !v.sql.contains("random()");
        for (protocol, bytes) in [
            ("simple", support::raw::query(&sql)),
            ("extended", support::raw::extended(&sql, &[])),
        ] {
            let got = comparable(support::raw::exchange(&mut via, &bytes), v.compare);
            let want = comparable(support::raw::exchange(&mut direct, &bytes), v.compare);
            if deterministic && got != want {
                failures.push(format!("{} ({protocol}): replies differ\n  {sql}", v.name));
            }
            checked += 1;
        }
        let rewritten = applied(fp) - before;
        let flagged = !NOT_FLAGGED.contains(&v.name);
        let expected = if flagged && matches!(v.expect, Expect::Rewrite { .. }) {
            2
        } else {
            0
        };
        if rewritten != expected {
            let plans: Vec<_> = rewriter
                .plans_for(fp)
                .iter()
                .map(|p| serde_json::to_string(p).unwrap_or_default())
                .collect();
            failures.push(format!(
                "{}: {rewritten} of 2 executions rewritten, expected {expected}; plans: {plans:?}",
                v.name
            ));
        }
    }
    app.shutdown();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 2 * 55, "{checked} exchanges");
}
