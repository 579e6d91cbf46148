//! tokio-postgres (extended protocol, binary parameters) through pgshape: pipelining, COPY,
//! large values and results, errors inside a pipeline, and one event per execution.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt, future};
use pgshape::event::Protocol;
use support::{PgCluster, ProxyUnderTest};
use tokio_postgres::{Client, NoTls};

const WAIT: Duration = Duration::from_secs(20);

async fn connect(proxy: &ProxyUnderTest, db: &support::ConnParams) -> Client {
    let (client, connection) = proxy
        .route(db)
        .tokio_config()
        .connect(NoTls)
        .await
        .expect("connect through pgshape");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

#[tokio::test]
async fn binary_parameters_and_typed_results() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let client = connect(&proxy, &db).await;
    client
        .batch_execute("CREATE TABLE p(id int8 primary key, name text, score float8, at timestamptz default now())")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO p(id, name, score) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    for i in 0..20i64 {
        let name = format!("name-{i}");
        client
            .execute(&insert, &[&i, &name, &(i as f64 / 2.0)])
            .await
            .unwrap();
    }
    let rows = client
        .query(
            "SELECT id, name, score FROM p WHERE id >= $1 ORDER BY id",
            &[&15i64],
        )
        .await
        .unwrap();
    let got: Vec<(i64, String, f64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0], (15, "name-15".into(), 7.5));

    let events = proxy.events.wait_until(WAIT, "inserts and select", |e| {
        e.iter()
            .filter(|e| e.protocol == Protocol::Extended)
            .count()
            >= 21
    });
    let inserts: Vec<_> = events
        .iter()
        .filter(|e| e.sql.starts_with("INSERT INTO p"))
        .collect();
    assert_eq!(inserts.len(), 20);
    assert!(
        inserts
            .iter()
            .all(|e| e.rows == 1 && e.command == "INSERT" && e.protocol == Protocol::Extended)
    );
    let select: Vec<_> = events
        .iter()
        .filter(|e| e.sql.starts_with("SELECT id, name"))
        .collect();
    assert_eq!(select.len(), 1);
    assert_eq!(select[0].rows, 5);
}

#[tokio::test]
async fn pipelined_queries_are_matched_in_order() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let client = connect(&proxy, &db).await;
    let statement = client
        .prepare("SELECT g FROM generate_series(1, $1::int) g")
        .await
        .unwrap();
    // tokio-postgres pipelines concurrent requests on one connection.
    let (client, statement) = (&client, &statement);
    let queries = (1..=40i32).map(|n| async move { client.query(statement, &[&n]).await });
    let results = future::try_join_all(queries).await.unwrap();
    for (i, rows) in results.iter().enumerate() {
        assert_eq!(rows.len(), i + 1);
    }
    let events = proxy
        .events
        .wait_for_matching("generate_series(1, $1::int)", 40, WAIT);
    let rows: Vec<u64> = events.iter().map(|e| e.rows).collect();
    assert_eq!(
        rows,
        (1..=40).collect::<Vec<u64>>(),
        "each response matched to its request"
    );
}

#[tokio::test]
async fn error_inside_a_pipeline_affects_only_its_statement() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let client = connect(&proxy, &db).await;
    client
        .batch_execute("CREATE TABLE u(id int primary key)")
        .await
        .unwrap();
    let insert = client.prepare("INSERT INTO u VALUES ($1)").await.unwrap();
    let ids = [1, 2, 2, 3];
    let (c, ins) = (&client, &insert);
    let results = future::join_all(
        ids.iter()
            .map(|id| async move { c.execute(ins, &[id]).await }),
    )
    .await;
    let outcome: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(outcome, vec![true, true, false, true]);
    let code = results[2].as_ref().unwrap_err().code().cloned();
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    let count: i64 = client
        .query_one("SELECT count(*) FROM u", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
    let events = proxy.events.wait_for_matching("INSERT INTO u", 4, WAIT);
    let states: Vec<_> = events.iter().map(|e| e.sqlstate.as_deref()).collect();
    assert_eq!(states, vec![None, None, Some("23505"), None]);
}

#[tokio::test]
async fn copy_in_and_out() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let client = connect(&proxy, &db).await;
    client
        .batch_execute("CREATE TABLE c(id int, label text)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY c FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..20_000 {
        data.push_str(&format!("{i}\tlabel {i}\n"));
    }
    for chunk in data.as_bytes().chunks(7_000) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    let copied = sink.finish().await.unwrap();
    assert_eq!(copied, 20_000);
    let stream = client
        .copy_out("COPY (SELECT * FROM c ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    let out: Vec<u8> = chunks.concat();
    assert_eq!(out, data.as_bytes());
    let events = proxy.events.wait_for_matching("COPY", 2, WAIT);
    let copies: Vec<_> = events
        .iter()
        .map(|e| (e.command.as_str(), e.rows))
        .collect();
    assert_eq!(copies, vec![("COPY", 20_000), ("COPY", 20_000)]);
}

#[tokio::test]
async fn ten_megabyte_bytea_round_trip() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let client = connect(&proxy, &db).await;
    let blob: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let back: Vec<u8> = client
        .query_one("SELECT $1::bytea", &[&blob])
        .await
        .unwrap()
        .get(0);
    assert!(back == blob, "10 MB bytea came back different");
    let events = proxy.events.wait_for_matching("SELECT $1::bytea", 1, WAIT);
    assert_eq!(events[0].rows, 1);
}

#[tokio::test]
async fn hundred_thousand_rows() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let proxy = ProxyUnderTest::start(cluster);
    let client = connect(&proxy, &db).await;
    let rows = client
        .query(
            "SELECT g, md5(g::text) FROM generate_series(1, 100000) g",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 100_000);
    let last: i32 = rows[99_999].get(0);
    assert_eq!(last, 100_000);
    let events = proxy
        .events
        .wait_for_matching("generate_series(1, 100000)", 1, WAIT);
    assert_eq!(events[0].rows, 100_000);
    assert_eq!(events[0].command, "SELECT");
}
