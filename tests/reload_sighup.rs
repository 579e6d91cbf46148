//! Hot reload of the `pgshape serve` binary: SIGHUP re-reads the rule files and changes what
//! happens to new statements on connections that stay open; a broken file is rejected with
//! its name and the previous rules stay active.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use support::serve::{Serve, free_addr};
use support::{PgCluster, psql_query};
use tokio_postgres::{AsyncMessage, NoTls};

const QUERY: &str = "SELECT DISTINCT o.id FROM orders o JOIN order_items i ON i.order_id = o.id";

fn write_rule(dir: &Path, action: &str) {
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/distinct-over-fanout-join.toml");
    let text = std::fs::read_to_string(shipped)
        .unwrap()
        .replace("action = \"observe\"", &format!("action = \"{action}\""));
    std::fs::write(dir.join("distinct-over-fanout-join.toml"), text).unwrap();
}

#[tokio::test]
async fn sighup_reloads_rules_without_dropping_connections() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(
        &db,
        "CREATE TABLE orders(id int primary key); \
         CREATE TABLE order_items(id int primary key, order_id int references orders(id)); \
         INSERT INTO orders VALUES (1), (2); INSERT INTO order_items VALUES (1, 1), (2, 1), (3, 2)",
    );
    let rules = tempfile::tempdir().unwrap();
    write_rule(rules.path(), "observe");
    let listen = free_addr();
    let serve = Serve::spawn(
        cluster,
        rules.path(),
        &["--admin", "off", "--listen", &listen.to_string()],
        &[],
        rules.path().join("pgshape.log"),
    );
    serve.wait_log("pgshape listening");

    let via = db.via(listen);
    let (client, mut connection) = via.tokio_config().connect(NoTls).await.unwrap();
    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = notices.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notice(n) = message {
                seen.lock().unwrap().push(n.message().to_owned());
            }
        }
    });
    let warned = || {
        notices
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains("distinct-over-fanout-join"))
            .count()
    };

    client.simple_query(QUERY).await.unwrap();
    assert_eq!(warned(), 0, "observe sends no notice");

    write_rule(rules.path(), "warn");
    serve.hup();
    serve.wait_log("rules reloaded");
    client.simple_query(QUERY).await.unwrap();
    assert_eq!(warned(), 1, "the same connection now gets the warning");

    std::fs::write(
        rules.path().join("broken.toml"),
        "id = \"broken\"\nseverity = \"warning\"\naction = \"explode\"\n",
    )
    .unwrap();
    serve.hup();
    let log = serve.wait_log("rule reload rejected");
    assert!(log.contains("broken.toml"), "names the file: {log}");
    client.simple_query(QUERY).await.unwrap();
    assert_eq!(warned(), 2, "the previous rules stay active");
}

#[test]
fn http_reload_needs_the_admin_token_given_in_the_environment() {
    let cluster = PgCluster::shared();
    let rules = tempfile::tempdir().unwrap();
    write_rule(rules.path(), "observe");
    let (listen, admin) = (free_addr(), free_addr());
    let serve = Serve::spawn(
        cluster,
        rules.path(),
        &[
            "--listen",
            &listen.to_string(),
            "--admin",
            &admin.to_string(),
        ],
        &[("PGSHAPE_ADMIN_TOKEN", "tok-7f3a")],
        rules.path().join("pgshape.log"),
    );
    serve.wait_log("admin listener ready");

    for (authorization, status) in [
        (None, 401),
        (Some("Bearer tok-7f3b"), 401),
        (Some("Bearer tok-7f3a"), 200),
    ] {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        let r = support::http_request(admin, "POST", "/api/reload", &headers);
        assert_eq!(r.status, status, "{authorization:?}: {}", r.body);
    }
    let metrics = support::http_request(admin, "GET", "/metrics", &[]);
    assert_eq!(metrics.status, 200, "scrapes need no token");
    assert!(
        !serve.log().contains("tok-7f3"),
        "the token is never logged"
    );
}
