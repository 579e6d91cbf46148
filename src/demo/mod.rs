//! `pgshape demo`: the incident, reproduced on this machine in one command.
//!
//! Starts a throw-away PostgreSQL with an orders/order-items shop, pgshape in front of it with
//! the incident rule set to `warn` and the schema catalog enabled, then runs the Django
//! queryset that caused the 8.5 s outage next to its fix — through the proxy, as an
//! application would — and prints what each audience sees: the NOTICE the app gets, the timings,
//! and the per-shape statistics the SRE reads. Then it fixes the incident live, the way an
//! operator would at 3 a.m.: the rule file's action becomes `rewrite`, the rules reload, and the
//! application's unchanged query is rewritten to EXISTS (proven from the catalog) and fast.
//! Everything stays up for exploring until Ctrl-C.

mod cluster;
pub mod pgbin;

use std::io::Write;
use std::time::{Duration, Instant};

use tokio_postgres::{AsyncMessage, NoTls};

use crate::app::{App, AppError};
use crate::config::Config;
use crate::rules::embedded::SHIPPED;
use crate::stats::SortKey;
pub use cluster::{Cluster, ClusterError};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    App(#[from] AppError),
    #[error("demo database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Preferred proxy address; a free port is used when it is taken.
    pub listen: String,
    /// Preferred admin address; a free port is used when it is taken.
    pub admin: String,
    /// Orders to generate (ten items each).
    pub orders: u32,
    /// Runs of each query.
    pub runs: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            listen: "127.0.0.1:6432".into(),
            admin: "127.0.0.1:9187".into(),
            orders: 50_000,
            runs: 5,
        }
    }
}

const USER: &str = "demo";
const DATABASE: &str = "shop";

const SCHEMA: &str = "
CREATE TABLE shop_order (
    id bigserial PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
    created_at timestamptz NOT NULL);
CREATE TABLE shop_orderitem (
    id bigserial PRIMARY KEY, order_id bigint NOT NULL REFERENCES shop_order(id),
    sku text NOT NULL, qty int NOT NULL, price numeric(10, 2) NOT NULL);";

/// What Django 5.2 sends for
/// `Order.objects.filter(items__sku__in=[...]).distinct().order_by('-created_at')[:25]`
/// with psycopg 3 server-side binding.
const INCIDENT: &str = r#"SELECT DISTINCT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = "shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ORDER BY "shop_order"."created_at" DESC LIMIT 25"#;
/// The fix from the postmortem: a semi-join instead of DISTINCT.
const FIXED: &str = r#"SELECT "shop_order"."id", "shop_order"."customer_id", "shop_order"."status", "shop_order"."created_at" FROM "shop_order" WHERE EXISTS(SELECT 1 AS "a" FROM "shop_orderitem" U0 WHERE (U0."order_id" = ("shop_order"."id") AND U0."sku" IN ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)) LIMIT 1) ORDER BY "shop_order"."created_at" DESC LIMIT 25"#;

/// Items with their order (many-to-one: no fan-out, no rule hit); also warms the catalog.
const MANY_TO_ONE: &str = r#"SELECT "shop_orderitem"."id", "shop_order"."status" FROM "shop_orderitem" INNER JOIN "shop_order" ON ("shop_orderitem"."order_id" = "shop_order"."id") WHERE "shop_order"."id" = 1"#;

/// A running demo: the server, pgshape in front of it.
pub struct Demo {
    app: App,
    cluster: Cluster,
}

impl Demo {
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Stops pgshape, then the server, and removes its files.
    pub fn shutdown(self) {
        self.app.shutdown();
        drop(self.cluster);
    }
}

fn available(preferred: &str) -> String {
    match std::net::TcpListener::bind(preferred) {
        Ok(_) => preferred.to_owned(),
        Err(_) => "127.0.0.1:0".to_owned(),
    }
}

/// Starts everything and runs the demo workload, writing the story to `out`.
///
/// # Errors
/// The server cannot be started (e.g. PostgreSQL not installed), pgshape cannot start, or a
/// demo query fails.
pub fn start(opts: &DemoOptions, out: &mut dyn Write) -> Result<Demo, DemoError> {
    writeln!(
        out,
        "pgshape demo: the 8.5 s DISTINCT-over-a-fan-out-join incident\n"
    )?;
    write!(out, "  starting a throw-away PostgreSQL ... ")?;
    out.flush()?;
    let cluster = Cluster::start(USER)?;
    writeln!(
        out,
        "{} on 127.0.0.1:{} (data in {})",
        cluster.version(),
        cluster.port(),
        cluster.dir().display()
    )?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let direct = format!("host=127.0.0.1 port={} user={USER}", cluster.port());
    let started = Instant::now();
    write!(
        out,
        "  loading {} orders with {} order items ... ",
        opts.orders,
        opts.orders * 10
    )?;
    out.flush()?;
    runtime.block_on(load(&direct, opts.orders))?;
    writeln!(out, "{:.1} s", started.elapsed().as_secs_f64())?;

    let rules = cluster.dir().join("rules");
    std::fs::create_dir_all(&rules)?;
    for (name, text) in SHIPPED {
        let text = if *name == "distinct-over-fanout-join.toml" {
            text.replace("action = \"observe\"", "action = \"warn\"")
        } else {
            (*text).to_owned()
        };
        std::fs::write(rules.join(name), text)?;
    }
    let mut config = Config {
        listen: available(&opts.listen),
        admin: Some(available(&opts.admin)),
        upstream: format!("127.0.0.1:{}", cluster.port()),
        shutdown_grace_ms: 2_000,
        ..Config::default()
    };
    let rules_dir = rules.clone();
    config.rules.dir = Some(rules);
    config.rules.schema_dsn = Some(format!("{direct} dbname={DATABASE}"));
    let app = App::start(config)?;
    let proxy = app.proxy_addr();
    let admin = app.admin_addr();
    writeln!(
        out,
        "  pgshape listening on {proxy} (PostgreSQL behind it on 127.0.0.1:{}), admin on http://{}/\n",
        cluster.port(),
        admin.map_or_else(|| "-".to_owned(), |a| a.to_string())
    )?;

    let via = format!(
        "host={} port={} user={USER} dbname={DATABASE} application_name=django-demo",
        proxy.ip(),
        proxy.port()
    );
    let report = runtime.block_on(workload(&via, opts.runs))?;
    print_report(out, &report, opts.runs)?;
    print_plan(out, &app, &runtime, &via)?;

    // The fix without a deploy: one word in the rule file, then a reload (SIGHUP does the same).
    let rule_file = rules_dir.join("distinct-over-fanout-join.toml");
    let text = std::fs::read_to_string(&rule_file)?;
    std::fs::write(
        &rule_file,
        text.replace("action = \"warn\"", "action = \"rewrite\""),
    )?;
    if let Err(error) = app.reload_rules() {
        writeln!(out, "   (reloading the rules failed: {error})")?;
    }
    let live = runtime.block_on(rewritten_workload(&via, opts.runs, &app))?;
    print_live_fix(out, &report, &live, opts.runs)?;

    if let Some(stats) = app.stats() {
        let mut rows: Vec<_> = stats
            .snapshot()
            .into_iter()
            .filter(|r| r.database == DATABASE)
            .collect();
        SortKey::TotalTime.sort(&mut rows);
        writeln!(
            out,
            "4. What the SRE sees (GET /api/queries?sort=total_time), per query shape:\n"
        )?;
        writeln!(
            out,
            "   {:<16}  {:>5}  {:>8}  {:>8}  {:<26}  query",
            "fingerprint", "calls", "p95 ms", "total ms", "rules"
        )?;
        for row in rows.iter().take(5) {
            let rules = app.rules().rules_for_fingerprint(crate::sql::Fingerprint(
                u64::from_str_radix(&row.fingerprint, 16).unwrap_or_default(),
            ));
            let query: String = row.query.chars().take(60).collect();
            writeln!(
                out,
                "   {:<16}  {:>5}  {:>8.1}  {:>8.1}  {:<26}  {query}…",
                row.fingerprint,
                row.calls,
                row.p95_ms,
                row.total_ms,
                rules.join(",")
            )?;
            if let Some(rewrite) = &row.rewrite {
                writeln!(
                    out,
                    "   {:<16}  rewritten by {}: p95 {:.1} ms as sent ({} calls) -> {:.1} ms rewritten ({} calls)",
                    "",
                    rewrite.rule,
                    rewrite.original.p95_ms,
                    rewrite.original.calls,
                    rewrite.rewritten.p95_ms,
                    rewrite.rewritten.calls
                )?;
            }
            if let (Some(route), Some(trace), Some(ms)) = (
                row.routes.iter().find(|r| r.tag == "route"),
                row.traceparent
                    .as_deref()
                    .and_then(crate::stats::trace_ids)
                    .map(|(trace, _)| trace),
                row.traceparent_ms,
            ) {
                writeln!(
                    out,
                    "   {:<16}  sent by route {}, slowest trace {trace} ({ms:.1} ms)",
                    "", route.value
                )?;
            }
        }
    }
    writeln!(
        out,
        "\nExplore while it runs:\n  psql \"{via}\"\n  curl -s http://{admin}/api/queries | head\n  \
         pgshape rewrite explain {fp} --admin http://{admin}\n  curl -s http://{admin}/metrics | grep pgshape_rewrites\n  curl -s http://{admin}/metrics | grep pgshape_query\n  \
         curl -s -H 'Accept: application/openmetrics-text' http://{admin}/metrics | grep ' # {{'   (trace exemplars)\n",
        admin = admin.map_or_else(|| "-".into(), |a| a.to_string()),
        fp = crate::sql::fingerprint(INCIDENT.as_bytes()),
    )?;
    Ok(Demo { app, cluster })
}

async fn connect(dsn: &str) -> Result<(tokio_postgres::Client, Notices), DemoError> {
    let (client, mut connection) = tokio_postgres::connect(dsn, NoTls).await?;
    let notices = Notices::default();
    let seen = notices.clone();
    tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notice(notice)) => seen.push(notice),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    Ok((client, notices))
}

#[derive(Clone, Default)]
struct Notices(std::sync::Arc<std::sync::Mutex<Vec<tokio_postgres::error::DbError>>>);

impl Notices {
    fn push(&self, notice: tokio_postgres::error::DbError) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(notice);
    }

    fn take(&self) -> Vec<tokio_postgres::error::DbError> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn load(direct: &str, orders: u32) -> Result<(), DemoError> {
    let (admin, _) = connect(&format!("{direct} dbname=postgres")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await?;
    let (shop, _) = connect(&format!("{direct} dbname={DATABASE}")).await?;
    shop.batch_execute(SCHEMA).await?;
    shop.batch_execute(&format!(
        "INSERT INTO shop_order(customer_id, status, created_at) \
         SELECT 1 + g % 5000, (ARRAY['new','paid','shipped'])[1 + g % 3], \
                now() - g * interval '1 minute' FROM generate_series(1, {orders}) g;
         INSERT INTO shop_orderitem(order_id, sku, qty, price) \
         SELECT 1 + g % {orders}, 'SKU-' || (g % 40), 1 + g % 4, (g % 100) + 0.99 \
         FROM generate_series(1, {items}) g;
         CREATE INDEX ON shop_orderitem(order_id);
         CREATE INDEX ON shop_orderitem(sku);
         CREATE INDEX ON shop_order(created_at);
         ANALYZE;",
        items = u64::from(orders) * 10
    ))
    .await?;
    Ok(())
}

struct Report {
    incident_ms: Vec<f64>,
    fixed_ms: Vec<f64>,
    incident_notices: Vec<tokio_postgres::error::DbError>,
    fixed_notices: usize,
    same_rows: bool,
}

async fn workload(via: &str, runs: usize) -> Result<Report, DemoError> {
    let (client, notices) = connect(via).await?;
    let skus: Vec<String> = (0..10).map(|i| format!("SKU-{i}")).collect();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = skus
        .iter()
        .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    // The first join in a database queues its catalog load; give it a moment so fan-out is
    // decided from the real keys rather than the naming heuristic.
    client.query(MANY_TO_ONE, &[]).await?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    notices.take();

    let mut incident_ms = Vec::new();
    let mut incident_rows = Vec::new();
    for run in 0..runs {
        let t = Instant::now();
        incident_rows = client
            .query(&with_sqlcommenter(INCIDENT, run), &params)
            .await?;
        incident_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let incident_notices = notices.take();
    let mut fixed_ms = Vec::new();
    let mut fixed_rows = Vec::new();
    for run in 0..runs {
        let t = Instant::now();
        fixed_rows = client
            .query(&with_sqlcommenter(FIXED, runs + run), &params)
            .await?;
        fixed_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ids =
        |rows: &[tokio_postgres::Row]| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>();
    Ok(Report {
        same_rows: ids(&incident_rows) == ids(&fixed_rows),
        incident_ms,
        fixed_ms,
        incident_notices,
        fixed_notices: notices.take().len(),
    })
}

/// The incident query after the rule switched to `rewrite`: what the application sees.
struct LiveFix {
    rewritten_ms: Vec<f64>,
    same_rows: bool,
    /// The statement the server ran instead, or why there is none.
    sent: Result<String, String>,
    applied: u64,
}

async fn rewritten_workload(via: &str, runs: usize, app: &App) -> Result<LiveFix, DemoError> {
    let (client, _notices) = connect(via).await?;
    let skus: Vec<String> = (0..10).map(|i| format!("SKU-{i}")).collect();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = skus
        .iter()
        .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    // The application is not touched: the same statement, the same parameters. Its first
    // execution asks for the proof (keys and NOT NULL from the catalog, then a Describe of both
    // statements); until the proof is in, statements run as sent.
    let fingerprint = crate::sql::fingerprint(INCIDENT.as_bytes());
    let before = client
        .query(&with_sqlcommenter(INCIDENT, 100), &params)
        .await?;
    let rule = "distinct-over-fanout-join";
    let deadline = Instant::now() + Duration::from_secs(10);
    let sent = loop {
        let plans = app.rules().rewriter().plans_for(fingerprint);
        match plans.iter().find(|p| &*p.rule == rule).map(|p| &p.state) {
            Some(crate::rewrite::PlanState::Ready { sample, .. }) => break Ok(sample.clone()),
            Some(crate::rewrite::PlanState::NotProvable { reason })
            | Some(crate::rewrite::PlanState::Refused { reason }) => break Err(reason.clone()),
            _ if Instant::now() > deadline => break Err("no decision within 10 s".into()),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut rewritten_ms = Vec::new();
    let mut rows = Vec::new();
    for run in 0..runs {
        let t = Instant::now();
        rows = client
            .query(&with_sqlcommenter(INCIDENT, 200 + run), &params)
            .await?;
        rewritten_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let ids =
        |rows: &[tokio_postgres::Row]| rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>();
    Ok(LiveFix {
        same_rows: ids(&before) == ids(&rows),
        rewritten_ms,
        sent,
        applied: app.rules().rewriter().counts().get(
            rule,
            fingerprint,
            crate::rewrite::Outcome::Applied,
        ),
    })
}

fn print_live_fix(
    out: &mut dyn Write,
    before: &Report,
    live: &LiveFix,
    runs: usize,
) -> std::io::Result<()> {
    writeln!(
        out,
        "3. The fix without a deploy: in rules/distinct-over-fanout-join.toml, action = \"rewrite\";\n   \
         reload (SIGHUP or POST /api/reload). The application still sends the same DISTINCT query."
    )?;
    match &live.sent {
        Ok(sql) => {
            let shown: String = sql.chars().take(300).collect();
            writeln!(
                out,
                "   proven from the catalog; the server now runs:\n     {shown}"
            )?;
        }
        Err(reason) => writeln!(out, "   not rewritten: {reason}")?,
    }
    let (was, now) = (median(&before.incident_ms), median(&live.rewritten_ms));
    writeln!(
        out,
        "   {runs} runs through pgshape, median {now:.1} ms (was {was:.1} ms: {:.0}x faster), \
         {} statements rewritten, same 25 orders: {}\n",
        if now > 0.0 { was / now } else { 0.0 },
        live.applied,
        if live.same_rows { "yes" } else { "no" }
    )
}

/// The statement as Django's sqlcommenter middleware sends it with OpenTelemetry on: the
/// endpoint and the request's trace appended (one trace per request).
/// The incident's plan, as `pgshape explain` shows it: captured on the monitoring connection
/// from a sampled execution, constants masked.
fn print_plan(
    out: &mut dyn Write,
    app: &App,
    runtime: &tokio::runtime::Runtime,
    via: &str,
) -> std::io::Result<()> {
    let Some(planner) = app.planner() else {
        return Ok(());
    };
    let fingerprint = crate::sql::fingerprint(INCIDENT.as_bytes());
    // psycopg2, the incident's driver, sends the values inline: one such execution gives
    // pgshape a sample it can explain (a `$n` one would need its parameter values).
    let literal = (1..=10).rev().fold(INCIDENT.to_owned(), |sql, i| {
        sql.replace(&format!("${i}"), &format!("'SKU-{}'", i - 1))
    });
    let explained = runtime.block_on(async {
        let (client, _notices) = connect(via).await?;
        client.simple_query(&literal).await?;
        Ok::<_, DemoError>(planner.explain(fingerprint).await)
    });
    let explained = match explained {
        Ok(explained) => explained,
        Err(error) => return writeln!(out, "   (no plan captured: {error})\n"),
    };
    match explained {
        Ok(explained) => {
            writeln!(
                out,
                "   Its plan, captured on the monitoring connection (`pgshape explain {fingerprint}`):\n"
            )?;
            for line in crate::plans::shape::render(&explained.plan).lines() {
                match line {
                    "" => writeln!(out)?,
                    line => writeln!(out, "     {line}")?,
                }
            }
            writeln!(out)
        }
        Err(error) => writeln!(out, "   (no plan captured: {error})\n"),
    }
}

fn with_sqlcommenter(sql: &str, request: usize) -> String {
    format!(
        "{sql} /*controller='OrderViewSet',route='order/api/v1/panel/orders/',\
         traceparent='00-{:032x}-{:016x}-01'*/",
        0x7d1e_0000_0000_0000_0000_0000_0000_0000u128 + request as u128 + 1,
        0x5a11_0000_0000_0000u64 + request as u64 + 1
    )
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn print_report(out: &mut dyn Write, r: &Report, runs: usize) -> std::io::Result<()> {
    writeln!(
        out,
        "1. The incident query: Order.objects.filter(items__sku__in=[...]).distinct()\
         .order_by('-created_at')[:25]\n   {runs} runs through pgshape, median {:.1} ms",
        median(&r.incident_ms)
    )?;
    match r.incident_notices.first() {
        Some(n) => {
            writeln!(
                out,
                "   the application received: {}: {}",
                n.severity(),
                n.message()
            )?;
            if let Some(hint) = n.hint() {
                writeln!(out, "   HINT: {hint}")?;
            }
        }
        None => writeln!(out, "   (no rule warning was received)")?,
    }
    writeln!(
        out,
        "\n2. The fix from the postmortem (EXISTS instead of DISTINCT over the join)\n   \
         {runs} runs, median {:.1} ms, {} rule warnings, same 25 orders: {}\n",
        median(&r.fixed_ms),
        r.fixed_notices,
        if r.same_rows { "yes" } else { "no" }
    )
}
