//! A whole pgshape (`App`: proxy, statistics, rules, admin API) in front of a fresh database
//! of the shared cluster, for tests of the commands that read a running pgshape (`top`,
//! `snapshot`, `diff`) through its admin API.

use std::time::{Duration, Instant};

use pgshape::app::App;

use super::{ConnParams, PgCluster, http, psql_query};

/// Shut down on drop.
pub struct AppUnderTest {
    app: Option<App>,
    /// The database, direct (setup here is not counted in the statistics).
    pub db: ConnParams,
}

impl AppUnderTest {
    /// pgshape with the built-in rules in front of a fresh database set up with `schema`.
    pub fn start(schema: &str) -> AppUnderTest {
        let cluster = PgCluster::shared();
        let db = cluster.fresh_database();
        psql_query(&db, schema);
        Self::start_on(db)
    }

    /// pgshape in front of an existing database (a second run of the same workload).
    pub fn start_on(db: ConnParams) -> AppUnderTest {
        let app = App::start(super::app_config(PgCluster::shared())).expect("pgshape starts");
        AppUnderTest { app: Some(app), db }
    }

    fn app(&self) -> &App {
        self.app.as_ref().expect("running until dropped")
    }

    /// The database through pgshape.
    pub fn via(&self) -> ConnParams {
        self.db.via(self.app().proxy_addr())
    }

    /// `http://127.0.0.1:port` of the admin API, as `--admin` takes it.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.app().admin_addr().expect("admin on"))
    }

    /// Waits until the statistics hold at least `calls` executions (they are recorded when the
    /// reply passes the proxy, which may be just after the client saw it).
    pub fn wait_calls(&self, calls: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let addr = self.app().admin_addr().expect("admin on");
            let (status, body) = http(addr, "GET", "/api/queries?limit=10000");
            assert_eq!(status, 200, "{body}");
            let rows: serde_json::Value = serde_json::from_str(&body).expect("json");
            let seen: u64 = rows
                .as_array()
                .expect("array")
                .iter()
                .filter_map(|r| r["calls"].as_u64())
                .sum();
            if seen >= calls {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {seen} of {calls} calls in the statistics"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AppUnderTest {
    fn drop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown();
        }
    }
}
