//! The catalog oracle against a real PostgreSQL: primary keys, single- and multi-column unique
//! indexes (partial and expression indexes do not count), table sizes, per-database snapshots,
//! background loading of a database seen for the first time, and refresh on demand.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgshape::rules::{
    CatalogOracle, ConnectionRuleState, Mode, OracleKind, RuleEngine, RuleSet, StatementInput,
    UniquenessOracle, Verdict,
};
use pgshape::sql::analysis::TableRef;
use pgshape::sql::fingerprint;
use support::{PgCluster, psql_query};

const SCHEMA: &str = "
CREATE TABLE shop_order (id bigserial PRIMARY KEY, customer_id bigint, status text, created_at timestamptz);
CREATE TABLE shop_orderitem (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES shop_order (id), sku text, qty int, price numeric);
CREATE INDEX ON shop_orderitem (order_id);
CREATE TABLE products (id bigserial PRIMARY KEY, name text);
CREATE TABLE product_prices (id bigserial PRIMARY KEY, product_id bigint REFERENCES products (id), currency text, amount numeric, UNIQUE (product_id, currency));
CREATE TABLE accounts (id bigserial PRIMARY KEY, email text UNIQUE, name text);
CREATE TABLE contacts (id bigserial PRIMARY KEY, email text, phone text);
CREATE UNIQUE INDEX contacts_phone_live ON contacts (phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX contacts_email_lower ON contacts (lower(email));
CREATE TABLE events (id bigserial PRIMARY KEY, kind text);
INSERT INTO events (kind) SELECT 'e' || g FROM generate_series(1, 150000) g;
ANALYZE;
";

const INCIDENT: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ('A', 'B') ORDER BY "shop_order"."created_at" DESC LIMIT 25"#;

fn eval(engine: &RuleEngine, database: &str, sql: &str) -> Verdict {
    let input = StatementInput {
        sql: sql.as_bytes(),
        fingerprint: fingerprint(sql.as_bytes()),
        database,
        user: "app",
        application_name: "test",
    };
    engine.evaluate(&input, &mut ConnectionRuleState::new(), Instant::now())
}

fn hit(v: &Verdict, rule: &str) -> Option<Option<OracleKind>> {
    v.hits.iter().find(|h| h.id() == rule).map(|h| h.decided_by)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_decides_fanout_and_table_size() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, SCHEMA);
    let (oracle, snapshot) = support::client::loaded_catalog(&db).await;
    let table = |name: &str| {
        snapshot
            .table(&TableRef {
                schema: None,
                name: name.into(),
            })
            .unwrap_or_else(|| panic!("{name} in catalog"))
            .clone()
    };
    assert_eq!(table("product_prices").unique_keys.len(), 2);
    assert!(
        table("product_prices")
            .unique_keys
            .contains(&vec!["product_id".to_owned(), "currency".to_owned()])
    );
    // Only the primary key: the partial and the expression index guarantee nothing here.
    assert_eq!(table("contacts").unique_keys, vec![vec!["id".to_owned()]]);
    let fk = &table("shop_orderitem").foreign_keys[0];
    assert_eq!(
        (fk.columns.as_slice(), fk.references.name.as_str()),
        (&["order_id".to_owned()][..], "shop_order")
    );
    assert!(table("events").estimated_rows.is_some_and(|n| n > 100_000));

    let engine = RuleEngine::from_rule_set(RuleSet::embedded(Mode::Enforce).expect("rules"))
        .with_oracle(oracle.clone());
    assert!(
        engine.catalog().is_some(),
        "a catalog oracle stays reachable for refreshes"
    );
    let d = db.dbname.as_str();
    let v = eval(&engine, d, INCIDENT);
    assert_eq!(
        hit(&v, "distinct-over-fanout-join"),
        Some(Some(OracleKind::Catalog))
    );
    // Many-to-one: the join lands on a primary key.
    let v = eval(
        &engine,
        d,
        r#"SELECT DISTINCT i.id, o.status FROM shop_orderitem i JOIN shop_order o ON i.order_id = o.id"#,
    );
    assert!(v.hits.is_empty(), "{:?}", v.hits);
    // A unique column the heuristic cannot know about: no fan-out...
    let v = eval(
        &engine,
        d,
        "SELECT DISTINCT c.id FROM contacts c JOIN accounts a ON a.email = c.email",
    );
    assert!(v.hits.is_empty(), "{:?}", v.hits);
    // ...and a non-unique one it would miss: fan-out, said by the catalog.
    let v = eval(
        &engine,
        d,
        "SELECT DISTINCT a.id FROM accounts a JOIN contacts c ON c.email = a.email",
    );
    assert_eq!(
        hit(&v, "distinct-over-fanout-join"),
        Some(Some(OracleKind::Catalog))
    );
    // Multi-column unique key: covered only with the constant in the ON clause.
    let v = eval(
        &engine,
        d,
        "SELECT DISTINCT p.id FROM products p JOIN product_prices pp ON pp.product_id = p.id AND pp.currency = 'EUR'",
    );
    assert!(v.hits.is_empty(), "{:?}", v.hits);
    let v = eval(
        &engine,
        d,
        "SELECT DISTINCT p.id FROM products p JOIN product_prices pp ON pp.product_id = p.id",
    );
    assert_eq!(
        hit(&v, "distinct-over-fanout-join"),
        Some(Some(OracleKind::Catalog))
    );
    // Table size from reltuples.
    assert!(
        hit(
            &eval(&engine, d, "SELECT * FROM events"),
            "unbounded-select"
        )
        .is_some()
    );
    assert!(eval(&engine, d, "SELECT * FROM products").hits.is_empty());
    assert!(
        eval(&engine, d, "SELECT * FROM events WHERE id = 5")
            .hits
            .is_empty()
    );

    // On-demand refresh picks up a schema change.
    psql_query(&db, "CREATE UNIQUE INDEX ON contacts (email)");
    let before = eval(
        &engine,
        d,
        "SELECT DISTINCT a.id FROM accounts a JOIN contacts c ON c.email = a.email",
    );
    assert!(!before.hits.is_empty(), "old snapshot until refreshed");
    oracle.refresh_all().await;
    let after = eval(
        &engine,
        d,
        "SELECT DISTINCT a.id FROM accounts a JOIN contacts c ON c.email = a.email",
    );
    assert!(after.hits.is_empty(), "{:?}", after.hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_falls_back_then_loads_in_the_background() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, SCHEMA);
    // The DSN names `postgres`; statements arrive for the fresh database.
    let dsn = cluster.conn("postgres", support::AuthUser::Trust).dsn();
    let oracle = Arc::new(CatalogOracle::new(&dsn, Duration::from_secs(3600)).expect("dsn"));
    let refresher = oracle.spawn_refresher();
    let table = TableRef {
        schema: None,
        name: "accounts".into(),
    };
    let first = oracle.uniqueness(&db.dbname, Some(&table), &["email"]);
    assert_eq!(first.decided_by, OracleKind::Heuristic, "not loaded yet");
    assert_eq!(first.unique, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = oracle.uniqueness(&db.dbname, Some(&table), &["email"]);
        if answer.decided_by == OracleKind::Catalog {
            assert_eq!(answer.unique, Some(true));
            break;
        }
        assert!(Instant::now() < deadline, "catalog never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Tables the catalog does not know (a view, another schema) still get the heuristic.
    let missing = TableRef {
        schema: None,
        name: "no_such_table".into(),
    };
    assert_eq!(
        oracle
            .uniqueness(&db.dbname, Some(&missing), &["x_id"])
            .decided_by,
        OracleKind::Heuristic
    );
    refresher.abort();

    // `pgshape check --schema-dsn` loads the DSN's own database up front.
    let checked = pgshape::rules::check::catalog_oracle(&db.dsn())
        .await
        .expect("check oracle");
    assert!(checked.snapshot(&db.dbname).is_some());
}
