//! Cost of one statistics update on the proxy's hot path (target: ≤ 200 ns), alone and with
//! 2, 4 and 8 threads updating at once.
//!
//! `same` has every thread update one entry (the worst case: one hot statement shape from
//! every session); `distinct` gives each thread its own fingerprint (only the map's shard
//! read-lock is shared). Contended runs report throughput: ns per update = 1 / elements per
//! second. On a machine with fewer cores than threads the threads time-share, so the
//! throughput, not the per-thread time, is the number to read.
//!
//! Measured 2026-11-26 on the 2-core CI VM under a load average of ~7 (other builds running),
//! so upper bounds: known shape 193 ns, with a Django sqlcommenter comment 261 ns; contended
//! throughput same/distinct entry: 2 threads 6.9/8.6 M updates/s, 4 threads 6.5/10.9 M/s,
//! 8 threads 4.2/12.2 M/s (145/116, 153/91, 238/82 ns per update).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgshape::event::{Protocol, SessionInfo, StatementEvent, StatementText};
use pgshape::sql::Fingerprint;
use pgshape::stats::{Stats, StatsConfig};

const SQL: &str = "SELECT \"orders_order\".\"id\", \"orders_order\".\"customer_id\" \
                   FROM \"orders_order\" WHERE \"orders_order\".\"id\" = 42";
const COMMENTED: &str = "SELECT \"orders_order\".\"id\" FROM \"orders_order\" WHERE \"id\" = 42 \
    /*controller='order',route='%5Eorders%2F%3Cint%3Apk%3E',\
    traceparent='00-5bd66ef5095369c7b0d1f8f4bd33716a-c532cb4098ac3dd2-01'*/";

fn session() -> SessionInfo {
    SessionInfo {
        database: "shop".into(),
        user: "web".into(),
        application_name: "django".into(),
        client_addr: None,
    }
}

fn text(sql: &'static str, fp: u64) -> Arc<StatementText> {
    Arc::new(StatementText {
        sql: Bytes::from_static(sql.as_bytes()),
        fingerprint: Some(Fingerprint(fp)),
        rewritten_by: None,
        shadow: None,
        bind: Default::default(),
    })
}

/// Records `n` statements of shape `fp`, with durations spread like real latencies.
fn run(stats: &Stats, session: &SessionInfo, text: &Arc<StatementText>, fp: u64, n: u64) {
    let now = Instant::now();
    for i in 0..n {
        let event = StatementEvent {
            session,
            statement: text,
            protocol: Protocol::Extended,
            duration: Duration::from_nanos(200_000 + (i * 7_919) % 3_000_000),
            finished_at: now,
            rows: 1,
            command: "SELECT",
            sqlstate: None,
            in_transaction: false,
        };
        stats.record(black_box(&event), Fingerprint(fp));
    }
}

fn single_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats_update");
    g.throughput(Throughput::Elements(1));
    let session = session();
    for (name, sql) in [("known", SQL), ("known_sqlcommenter", COMMENTED)] {
        let stats = Stats::new(StatsConfig::default());
        let text = text(sql, 0x1234);
        run(&stats, &session, &text, 0x1234, 1);
        // One clock read per batch: `Instant::now()` per update would cost as much as the update.
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                run(&stats, &session, &text, 0x1234, iters);
                start.elapsed()
            });
        });
    }
    g.finish();
}

fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("stats_update_contended");
    for threads in [2u64, 4, 8] {
        g.throughput(Throughput::Elements(threads));
        for same in [true, false] {
            let name = format!("{}/{threads}", if same { "same" } else { "distinct" });
            g.bench_function(name, |b| {
                let stats = Arc::new(Stats::new(StatsConfig::default()));
                b.iter_custom(|iters| {
                    let barrier = Barrier::new(threads as usize + 1);
                    std::thread::scope(|s| {
                        for t in 0..threads {
                            let (stats, barrier) = (&stats, &barrier);
                            s.spawn(move || {
                                let fp = if same { 1 } else { 100 + t };
                                let (session, text) = (session(), text(SQL, fp));
                                run(stats, &session, &text, fp, 1);
                                barrier.wait();
                                run(stats, &session, &text, fp, iters);
                            });
                        }
                        barrier.wait();
                        let start = Instant::now();
                        // Scope end joins every thread: the time covers all their updates.
                        start
                    })
                    .elapsed()
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, single_thread, contended);
criterion_main!(benches);
