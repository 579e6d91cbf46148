//! Fingerprinting cost per statement: pgshape's lexer against sqlparser's tokenizer and a full
//! sqlparser parse on a ~1 KB Django query, plus a fingerprint-cache hit.
//!
//! Run with `cargo bench --bench fingerprint`. Target: the lexer path at >= 500 MB/s
//! (<= 2 us for the 1 KB query).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgshape::sql::lexer::Lexer;
use pgshape::sql::{FingerprintCache, fingerprint, normalize, split_statements};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Tokenizer;

/// A Django 5.2 / psycopg2 query (inline literals) with its sqlcommenter tag: ~1 KB.
const ORM_QUERY: &str = concat!(
    r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "#,
    r#""shop_order"."created_at", "shop_order"."updated_at", "shop_order"."total_amount", "#,
    r#""shop_order"."currency", "shop_order"."shipping_address_id", "shop_order"."billing_address_id", "#,
    r#""shop_order"."notes" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "#,
    r#""shop_orderitem"."order_id") WHERE ("shop_orderitem"."sku" IN ('A-1001', 'B-2002', 'C-3003', "#,
    r#"'D-4004', 'E-5005', 'F-6006') AND "shop_order"."status" = 'paid' AND "shop_order"."created_at" "#,
    r#">= '2026-01-01T00:00:00+00:00'::timestamptz AND "shop_order"."total_amount" > 100.50 AND "#,
    r#"NOT ("shop_order"."customer_id" IN (17, 42, 99, 123, 4567))) ORDER BY "shop_order"."created_at" "#,
    r#"DESC, "shop_order"."id" ASC LIMIT 25 OFFSET 50 /*app_name='shop',controller='shop%3Aorder-list',"#,
    r#"db_driver='django.db.backends.postgresql',framework='django%3A5.2.19',route='api/orders/',"#,
    r#"traceparent='00-ffd5290c2624aa12a22cfeff40faf8a6-8eb8ee514190b7c4-03'*/"#
);

fn bench(c: &mut Criterion) {
    let sql = ORM_QUERY.as_bytes();
    let mut g = c.benchmark_group("fingerprint_1k_orm_query");
    g.throughput(Throughput::Bytes(sql.len() as u64));
    g.bench_function("pgshape_lexer_fingerprint", |b| {
        b.iter(|| fingerprint(black_box(sql)))
    });
    g.bench_function("pgshape_lexer_tokens_only", |b| {
        b.iter(|| Lexer::new(black_box(sql)).count())
    });
    g.bench_function("pgshape_split_and_fingerprint", |b| {
        b.iter(|| {
            let sql = black_box(sql);
            split_statements(sql)
                .map(|r| fingerprint(&sql[r]).0)
                .fold(0, |a, f| a ^ f)
        })
    });
    let cache = FingerprintCache::new(10_000);
    cache.fingerprint(sql);
    g.bench_function("pgshape_cache_hit", |b| {
        b.iter(|| cache.fingerprint(black_box(sql)))
    });
    let dialect = PostgreSqlDialect {};
    g.bench_function("sqlparser_tokenizer", |b| {
        b.iter(|| {
            Tokenizer::new(&dialect, black_box(ORM_QUERY))
                .tokenize()
                .map(|t| t.len())
        })
    });
    g.bench_function("sqlparser_full_parse", |b| {
        b.iter(|| Parser::parse_sql(&dialect, black_box(ORM_QUERY)).map(|s| s.len()))
    });
    g.bench_function("pgshape_normalize_text", |b| {
        b.iter(|| normalize(black_box(sql), 4096))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
