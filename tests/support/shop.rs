//! The incident's shop (orders and their items, Django's table names and indexes) behind a
//! real pgshape with a rules directory of the test's choosing and the catalog connection on:
//! what the rewrite tests run against.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use pgshape::app::App;
use pgshape::config::Config;
use pgshape::sql::Fingerprint;

use super::client::{ConnParams, psql_query, tokio_connect};
use super::cluster::PgCluster;
use super::proxy::app_config;
use super::util::http;

/// Django's tables for `Order` and `OrderItem` (`related_name='items'`), with the indexes Django
/// creates (the primary keys and the foreign key's index), and deterministic data: 400 orders,
/// 0 to 5 items each, a few NULL SKUs, distinct `created_at` so `ORDER BY created_at` is total
/// in practice.
pub const SCHEMA: &str = "
CREATE TABLE shop_order (id bigserial PRIMARY KEY, customer_id integer NOT NULL, status varchar(20) NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE shop_orderitem (id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES shop_order (id) DEFERRABLE INITIALLY DEFERRED, sku varchar(32), qty integer NOT NULL, price numeric(10, 2) NOT NULL);
CREATE INDEX shop_orderitem_order_id ON shop_orderitem (order_id);
INSERT INTO shop_order (customer_id, status, created_at)
  SELECT 1 + g % 37, (ARRAY['paid', 'new', 'shipped', 'cancelled'])[1 + g % 4], timestamptz '2026-01-01' + g * interval '1 minute'
  FROM generate_series(1, 400) g;
INSERT INTO shop_orderitem (order_id, sku, qty, price)
  SELECT o.id, CASE WHEN (o.id * 7 + k) % 11 = 0 THEN NULL ELSE chr(65 + ((o.id * 3 + k * 5) % 6)::int) END, 1 + k % 3, (o.id % 50) + k
  FROM shop_order o, generate_series(1, 5) k WHERE k <= o.id % 6;
ANALYZE;
";

/// The exact SQL Django 5.2 sends for the incident's queryset (psycopg2, literals inlined).
pub const INCIDENT: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ('A', 'B') ORDER BY "shop_order"."created_at" DESC LIMIT 25"#;

/// The incident statement with other constants: `skus` quoted and joined, and the limit.
pub fn incident(skus: &[&str], limit: u32) -> String {
    let list: Vec<String> = skus.iter().map(|s| format!("'{s}'")).collect();
    INCIDENT
        .replace("('A', 'B')", &format!("({})", list.join(", ")))
        .replace("LIMIT 25", &format!("LIMIT {limit}"))
}

/// The incident statement as psycopg 3 / asyncpg send it: `$n` for every constant.
pub fn incident_params(skus: usize) -> String {
    let list: Vec<String> = (1..=skus).map(|i| format!("${i}")).collect();
    INCIDENT
        .replace("('A', 'B')", &format!("({})", list.join(", ")))
        .replace("LIMIT 25", &format!("LIMIT ${}", skus + 1))
}

/// Django's `.distinct().count()` of the incident's filter.
pub const COUNT: &str = r#"SELECT COUNT(*) FROM (SELECT DISTINCT "shop_order"."id" AS "col1", "shop_order"."customer_id" AS "col2", "shop_order"."status" AS "col3", "shop_order"."created_at" AS "col4" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ('A', 'B')) subquery"#;

/// pgshape in front of a fresh database holding [`SCHEMA`].
pub struct Shop {
    pub app: Option<App>,
    pub db: ConnParams,
    pub rules: tempfile::TempDir,
}

impl Shop {
    /// Starts pgshape with the shipped rules plus `extra` rule files (name, TOML), the incident
    /// rule's action set to `incident_action`, and `--schema-dsn` pointing at the database.
    pub fn start(incident_action: &str, extra: &[(&str, &str)]) -> Shop {
        Self::start_with(incident_action, extra, |_| {})
    }

    /// [`Shop::start`] with the config adjusted first (e.g. tracing to a test's receiver).
    pub fn start_with(
        incident_action: &str,
        extra: &[(&str, &str)],
        adjust: impl FnOnce(&mut Config),
    ) -> Shop {
        let cluster = PgCluster::shared();
        let db = cluster.fresh_database();
        psql_query(&db, SCHEMA);
        let rules = tempfile::tempdir().expect("tempdir");
        write_rules(rules.path(), incident_action, extra);
        let mut config = Config {
            workers: 2,
            shutdown_grace_ms: 1_000,
            ..app_config(cluster)
        };
        config.rules.dir = Some(rules.path().to_owned());
        config.rules.schema_dsn = Some(db.dsn());
        adjust(&mut config);
        let app = App::start(config).expect("pgshape starts");
        Shop {
            app: Some(app),
            db,
            rules,
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("running")
    }

    /// Connection parameters through pgshape.
    pub fn via(&self) -> ConnParams {
        self.db.via(self.app().proxy_addr())
    }

    pub fn admin(&self) -> SocketAddr {
        self.app().admin_addr().expect("admin listener")
    }

    /// Rewrites the rules directory (then reload to apply).
    pub fn set_rules(&self, incident_action: &str, extra: &[(&str, &str)]) {
        for entry in std::fs::read_dir(self.rules.path()).expect("rules dir") {
            std::fs::remove_file(entry.expect("entry").path()).expect("remove");
        }
        write_rules(self.rules.path(), incident_action, extra);
    }

    /// `POST /api/reload`: (status, body).
    pub fn reload(&self) -> (u16, String) {
        http(self.admin(), "POST", "/api/reload")
    }

    /// The admin API's JSON at `path` (asserting 200).
    pub fn json(&self, method: &str, path: &str) -> serde_json::Value {
        let (status, body) = http(self.admin(), method, path);
        assert_eq!(status, 200, "{method} {path}: {body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// The `/api/rules` entry of rule `id`, if it is loaded.
    pub fn rule(&self, id: &str) -> Option<serde_json::Value> {
        let rules = self.json("GET", "/api/rules");
        rules["rules"]
            .as_array()
            .expect("a list of rules")
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
    }

    /// Waits until the rewriter decided about `fingerprint` under `rule` (any state but
    /// proving) and returns its plan JSON.
    pub fn wait_plan(&self, rule: &str, fingerprint: Fingerprint) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let plans = self.app().rules().rewriter().plans_for(fingerprint);
            if let Some(plan) = plans.iter().find(|p| &*p.rule == rule)
                && !matches!(plan.state, pgshape::rewrite::PlanState::Proving)
            {
                return serde_json::to_value(plan).expect("plan JSON");
            }
            assert!(
                Instant::now() < deadline,
                "no rewrite decision for {fingerprint} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A tokio-postgres client through pgshape (or `direct`).
    pub async fn client(&self, direct: bool) -> tokio_postgres::Client {
        let params = if direct { self.db.clone() } else { self.via() };
        tokio_connect(&params).await
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }
}

fn write_rules(dir: &Path, incident_action: &str, extra: &[(&str, &str)]) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    for entry in std::fs::read_dir(shipped).expect("shipped rules") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let mut text = std::fs::read_to_string(&path).expect("read rule");
        if path.ends_with("distinct-over-fanout-join.toml") {
            text = text.replace(
                "action = \"observe\"",
                &format!("action = \"{incident_action}\""),
            );
        }
        std::fs::write(dir.join(path.file_name().expect("name")), text).expect("write rule");
    }
    for (name, text) in extra {
        std::fs::write(dir.join(name), text).expect("write extra rule");
    }
}

/// Rows of a simple-protocol query as text (NULL as `None`).
pub async fn simple_rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
