//! pgshape's grouping against PostgreSQL's own: `pg_stat_statements` on the throw-away server
//! sees the same workload (sent through pgshape), and for each query shape the two must agree
//! on the partition of statements and on calls — except where they differ by design, which is
//! named and asserted here (see [`ByDesign`]).
//!
//! Shapes run one at a time, with both sides reset before each, so each shape's statements map
//! to a set of fingerprints and a set of queryids without joining on normalized text. The
//! binary's shared cluster is started with `shared_preload_libraries = pg_stat_statements`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pgshape::app::App;
use pgshape::config::Config;
use serde_json::Value;
use support::workload::{self, Rendered, Wire, render};
use support::{PgCluster, Rng, psql_query};
use tokio_postgres::Client;

const SCHEMA: &str = "CREATE EXTENSION pg_stat_statements; \
     CREATE TABLE item(id int primary key, cat int not null, qty int not null, name text not null); \
     CREATE TABLE ord(id int primary key, item_id int not null, qty int not null); \
     CREATE TABLE uniq(k int primary key); \
     CREATE TABLE ev(id bigserial primary key, n int not null); \
     INSERT INTO item SELECT g, g % 10, g % 7, 'item' || g FROM generate_series(1, 300) g; \
     INSERT INTO ord SELECT g, 1 + g % 300, 1 + g % 5 FROM generate_series(1, 600) g";

/// Where pgshape and `pg_stat_statements` (PostgreSQL 15–17 jumbling) group differently, on
/// purpose.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ByDesign {
    /// The two agree: one fingerprint, one queryid, the same calls and rows.
    Agree,
    /// `IN (...)` / `ARRAY[...]` / `VALUES` lists of different lengths: one fingerprint;
    /// PostgreSQL before 18 jumbles every element, so one queryid per distinct length.
    ListLengthSplitsQueryid,
    /// Inline literals and `$n` parameters for the same statement: one fingerprint; the
    /// queryid jumbles a Const and a Param differently, so two queryids.
    LiteralVsParamSplitsQueryid,
    /// Failed executions: pgshape counts them in calls (and in errors by class);
    /// `pg_stat_statements` records only statements that completed.
    FailuresNotInQueryidCalls,
    /// Spellings PostgreSQL's parser turns into the same tree (`x IN (a, b)` is
    /// `x = ANY(ARRAY[a, b])`): one queryid; pgshape fingerprints tokens, not the analysed
    /// tree, so one fingerprint per spelling. (Quoted lower-case identifiers, `"id"` = `id`,
    /// agree on both sides.)
    SpellingSplitsFingerprint,
}

/// A shape: templates (`#` an int constant, `@` an IN list of 1..=30 ints) cycled over the
/// executions, each with the wire it is sent on.
struct Shape {
    runs: &'static [(&'static str, Wire)],
    expect: ByDesign,
    /// Constant range (narrow ranges provoke errors).
    range: (i32, i32),
}

use ByDesign::*;
use Wire::*;

const WIDE: (i32, i32) = (1, 300);

const SHAPES: &[Shape] = &[
    Shape {
        runs: &[("SELECT id, name FROM item WHERE id = #", Simple)],
        expect: Agree,
        range: WIDE,
    },
    Shape {
        runs: &[("SELECT id, name FROM item WHERE cat = #::int", Extended)],
        expect: Agree,
        range: WIDE,
    },
    Shape {
        runs: &[("SELECT name FROM item ORDER BY id DESC LIMIT #", Simple)],
        expect: Agree,
        range: WIDE,
    },
    Shape {
        runs: &[("UPDATE item SET qty = qty WHERE id = #::int", Extended)],
        expect: Agree,
        range: WIDE,
    },
    Shape {
        runs: &[("INSERT INTO ev(n) VALUES (#)", Simple)],
        expect: Agree,
        range: WIDE,
    },
    Shape {
        runs: &[("DELETE FROM ev WHERE n = #::int", Extended)],
        expect: Agree,
        range: WIDE,
    },
    Shape {
        runs: &[(
            "SELECT o.id, i.name FROM ord o JOIN item i ON i.id = o.item_id WHERE o.qty = # AND i.cat < #",
            Simple,
        )],
        expect: Agree,
        range: (1, 9),
    },
    Shape {
        runs: &[(
            "SELECT cat, sum(qty) FROM item WHERE id < #::int GROUP BY cat",
            Extended,
        )],
        expect: Agree,
        range: WIDE,
    },
    Shape {
        // Comments, whitespace and keyword case: ignored by both.
        runs: &[
            (
                "SELECT count(*) FROM ord WHERE qty = # /*route='api/orders/'*/",
                Simple,
            ),
            ("select  count(*)\n from ord where qty=#", Simple),
        ],
        expect: Agree,
        range: (1, 5),
    },
    Shape {
        runs: &[(
            "WITH c AS (SELECT item_id FROM ord WHERE qty = #::int) SELECT count(*) FROM c",
            Extended,
        )],
        expect: Agree,
        range: (1, 5),
    },
    Shape {
        runs: &[(
            "SELECT i.id FROM item i WHERE EXISTS (SELECT 1 FROM ord o WHERE o.item_id = i.id AND o.qty > #) AND i.id < #",
            Simple,
        )],
        expect: Agree,
        range: (1, 20),
    },
    Shape {
        runs: &[("SELECT id FROM item WHERE id IN (@)", Simple)],
        expect: ListLengthSplitsQueryid,
        range: WIDE,
    },
    Shape {
        runs: &[(
            "SELECT id FROM item WHERE cat IN (@) AND qty > #::int",
            Extended,
        )],
        expect: ListLengthSplitsQueryid,
        range: (1, 9),
    },
    Shape {
        runs: &[("SELECT id FROM item WHERE id = ANY(ARRAY[@])", Simple)],
        expect: ListLengthSplitsQueryid,
        range: WIDE,
    },
    Shape {
        runs: &[
            ("INSERT INTO ev(n) VALUES (#), (#)", Simple),
            ("INSERT INTO ev(n) VALUES (#), (#), (#)", Simple),
        ],
        expect: ListLengthSplitsQueryid,
        range: WIDE,
    },
    Shape {
        runs: &[
            ("SELECT count(*) FROM item WHERE cat = #::int", Simple),
            ("SELECT count(*) FROM item WHERE cat = #::int", Extended),
        ],
        expect: LiteralVsParamSplitsQueryid,
        range: (1, 9),
    },
    Shape {
        runs: &[
            ("UPDATE ev SET n = n WHERE n = #::int", Simple),
            ("UPDATE ev SET n = n WHERE n = #::int", Extended),
        ],
        expect: LiteralVsParamSplitsQueryid,
        range: WIDE,
    },
    Shape {
        runs: &[("SELECT 100 / (# - 3)", Simple)],
        expect: FailuresNotInQueryidCalls,
        range: (2, 4),
    },
    Shape {
        runs: &[("INSERT INTO uniq(k) VALUES (#::int)", Extended)],
        expect: FailuresNotInQueryidCalls,
        range: (1, 3),
    },
    Shape {
        runs: &[("SELECT k FROM uniq WHERE k >= #::int", Extended)],
        expect: Agree,
        range: (1, 3),
    },
    Shape {
        runs: &[
            ("SELECT name FROM item WHERE id IN (#, #, #)", Simple),
            (
                "SELECT name FROM item WHERE id = ANY(ARRAY[#, #, #])",
                Simple,
            ),
        ],
        expect: SpellingSplitsFingerprint,
        range: WIDE,
    },
    Shape {
        runs: &[
            ("SELECT qty FROM item WHERE id = #", Simple),
            ("SELECT \"qty\" FROM \"item\" WHERE \"id\" = #", Simple),
        ],
        expect: Agree,
        range: WIDE,
    },
];

/// Executions per shape.
const EXECUTIONS: usize = 6;

/// Runs one statement; `Some(rows)` on success.
async fn execute(client: &Client, sql: &str, params: &[i32], wire: Wire) -> Option<u64> {
    match workload::execute(client, sql, params, wire).await {
        Ok(n) => Some(n),
        Err(e) => {
            assert!(e.code().is_some(), "{sql}: {e}");
            None
        }
    }
}

fn http_json(addr: SocketAddr, method: &str, path: &str) -> Value {
    let (status, body) = support::http(addr, method, path);
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// One side's view of a shape: calls and rows per group id.
type Groups = BTreeMap<String, (u64, u64)>;

/// `pg_stat_statements` for `dbname`, without the statements this test sends it directly.
async fn pgss(direct: &Client, dbname: &str) -> Groups {
    direct
        .query(
            "SELECT s.queryid::text, s.calls, s.rows FROM pg_stat_statements s \
             JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = $1 AND s.query NOT LIKE '%pg_stat_statements%'",
            &[&dbname],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                (r.get::<_, i64>(1) as u64, r.get::<_, i64>(2) as u64),
            )
        })
        .collect()
}

/// pgshape's rows for `dbname`, once `calls` executions are recorded.
fn pgshape(admin: SocketAddr, dbname: &str, calls: u64) -> Groups {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = http_json(
            admin,
            "GET",
            &format!("/api/queries?limit=1000&database={dbname}"),
        );
        let groups: Groups = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["fingerprint"].as_str().unwrap().to_owned(),
                    (r["calls"].as_u64().unwrap(), r["rows"].as_u64().unwrap()),
                )
            })
            .collect();
        if groups.values().map(|g| g.0).sum::<u64>() >= calls || Instant::now() > deadline {
            return groups;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouping_agrees_with_pg_stat_statements_except_by_design() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    psql_query(&db, SCHEMA);
    let major = cluster.major_version();
    let app = App::start(Config {
        workers: 2,
        shutdown_grace_ms: 1_000,
        ..support::app_config(cluster)
    })
    .expect("pgshape starts");
    let admin = app.admin_addr().unwrap();
    let direct = support::client::tokio_connect(&db).await;
    let client = support::client::tokio_connect(&db.via(app.proxy_addr())).await;
    let mut rng = Rng(0x5EED);
    let mut report = Vec::new();

    for (index, shape) in SHAPES.iter().enumerate() {
        direct
            .simple_query("SELECT pg_stat_statements_reset()")
            .await
            .unwrap();
        http_json(admin, "POST", "/api/queries/reset");
        let mut ok_calls = 0u64;
        let mut ok_rows = 0u64;
        let mut lengths = BTreeSet::new();
        let mut wires = BTreeSet::new();
        for i in 0..EXECUTIONS {
            let (template, wire) = shape.runs[i % shape.runs.len()];
            let (lo, hi) = shape.range;
            let Rendered { sql, params, lists } = render(template, &mut rng, wire, lo, hi);
            lengths.insert((template, lists));
            wires.insert(format!("{wire:?}"));
            if let Some(rows) = execute(&client, &sql, &params, wire).await {
                ok_calls += 1;
                ok_rows += rows;
            }
        }
        let ours = pgshape(admin, &db.dbname, EXECUTIONS as u64);
        let theirs = pgss(&direct, &db.dbname).await;
        let what = format!(
            "shape {index} {:?} ({:?}): pgshape {ours:?}, pg_stat_statements {theirs:?}",
            shape.runs, shape.expect
        );
        report.push(what.clone());

        // pgshape: one fingerprint per spelling, holding every execution, failed ones included.
        let spellings = if shape.expect == SpellingSplitsFingerprint {
            shape.runs.len()
        } else {
            1
        };
        assert_eq!(ours.len(), spellings, "{what}");
        let fp_calls: u64 = ours.values().map(|g| g.0).sum();
        let fp_rows: u64 = ours.values().map(|g| g.1).sum();
        assert_eq!(fp_calls, EXECUTIONS as u64, "{what}");
        assert_eq!(fp_rows, ok_rows, "{what}");
        let qid_calls: u64 = theirs.values().map(|g| g.0).sum();
        let qid_rows: u64 = theirs.values().map(|g| g.1).sum();
        assert_eq!(qid_rows, ok_rows, "rows agree: {what}");

        match shape.expect {
            Agree => {
                assert_eq!(ok_calls, EXECUTIONS as u64, "{what}");
                assert_eq!(theirs.len(), 1, "{what}");
                assert_eq!(qid_calls, fp_calls, "{what}");
            }
            ListLengthSplitsQueryid => {
                assert!(
                    major < 18,
                    "PostgreSQL 18 squashes constant lists; revisit: {what}"
                );
                assert_eq!(qid_calls, fp_calls, "{what}");
                assert!(
                    lengths.len() > 1,
                    "the workload must vary list lengths: {what}"
                );
                assert_eq!(
                    theirs.len(),
                    lengths.len(),
                    "one queryid per distinct list length: {what}"
                );
            }
            LiteralVsParamSplitsQueryid => {
                assert_eq!(wires.len(), 2, "{what}");
                assert_eq!(qid_calls, fp_calls, "{what}");
                assert_eq!(
                    theirs.len(),
                    2,
                    "literal and $n forms are two queryids: {what}"
                );
            }
            FailuresNotInQueryidCalls => {
                assert!(
                    ok_calls < EXECUTIONS as u64,
                    "some executions must fail: {what}"
                );
                assert!(ok_calls > 0, "some executions must succeed: {what}");
                assert!(theirs.len() <= 1, "{what}");
                assert_eq!(qid_calls, ok_calls, "{what}");
                assert!(fp_calls > qid_calls, "{what}");
            }
            SpellingSplitsFingerprint => {
                assert_eq!(ok_calls, EXECUTIONS as u64, "{what}");
                assert_eq!(theirs.len(), 1, "one analysed tree, one queryid: {what}");
                assert_eq!(qid_calls, fp_calls, "{what}");
            }
        }
    }
    eprintln!("{}", report.join("\n"));
    drop(client);
    app.shutdown();
}
