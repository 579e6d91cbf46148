//! Statements as spans, end to end: real clients (psql, tokio-postgres, psycopg2, psycopg 3)
//! send statements with sqlcommenter traceparents through a real pgshape to a real PostgreSQL,
//! and a real OTLP/HTTP receiver decodes what pgshape exported.

mod support;

use std::process::Command;

use pgshape::app::App;
use pgshape::rewrite::Outcome;
use pgshape::sql::fingerprint;
use support::otlp::{OtlpReceiver, ReceivedSpan};
use support::raw::{self, RawConn};
use support::shop::{INCIDENT, Shop};
use support::{ConnParams, PgCluster, psql_c};

/// pgshape exporting to `receiver`; `sample_untraced` as given.
fn start(receiver: &OtlpReceiver, sample_untraced: f64) -> (App, ConnParams) {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let mut config = support::app_config(cluster);
    config.tracing.otlp_endpoint = Some(receiver.base_url());
    config.tracing.sample_untraced = sample_untraced;
    config.tracing.batch_delay_ms = 20;
    let app = App::start(config).expect("pgshape starts");
    let via = db.via(app.proxy_addr());
    (app, via)
}

fn tp(trace: &str, span: &str, flags: &str) -> String {
    format!("/*traceparent='00-{trace}-{span}-{flags}'*/")
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const UNSAMPLED: &str = "5bf92f3577b34da6a3ce929d0e0e4737";

fn by_parent<'a>(spans: &'a [ReceivedSpan], parent: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.parent_span_id_hex() == parent)
        .collect()
}

fn the_one<'a>(spans: &'a [ReceivedSpan], parent: &str) -> &'a ReceivedSpan {
    let found = by_parent(spans, parent);
    assert_eq!(found.len(), 1, "one span under {parent}: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_statements_become_children_of_the_applications_spans() {
    let receiver = OtlpReceiver::start();
    let (app, via) = start(&receiver, 0.0);
    let metrics_registry = app.registry().clone();

    // Simple protocol (psql): a traced SELECT with literals, a failing one, an unsampled one
    // and one without a traceparent.
    psql_c(
        &via,
        "",
        &format!(
            "SELECT 42 AS answer, 'secret-literal' AS s {}",
            tp(TRACE, "00f067aa0ba902b7", "01")
        ),
    )
    .assert_success();
    let failed = psql_c(
        &via,
        "",
        &format!("SELECT 1/0 {}", tp(TRACE, "00f067aa0ba902b8", "01")),
    );
    assert!(!failed.success());
    psql_c(
        &via,
        "",
        &format!("SELECT 7 {}", tp(UNSAMPLED, "00f067aa0ba902b9", "00")),
    )
    .assert_success();
    psql_c(&via, "", "SELECT 8").assert_success();

    // Extended protocol (tokio-postgres: Parse/Bind/Execute), twice: two executions, two spans.
    let client = support::client::tokio_connect(&via).await;
    let sql = format!(
        "SELECT $1::int + 1000 AS n {}",
        tp(TRACE, "00f067aa0ba902ba", "01")
    );
    for i in [1, 2] {
        let row = client.query_one(&sql, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), 1000 + i);
    }
    client
        .query_one(
            &format!("SELECT 9 {}", tp(UNSAMPLED, "00f067aa0ba902bb", "00")),
            &[],
        )
        .await
        .unwrap();
    drop(client);

    // Shutdown sends what is queued: no waiting on timers here.
    tokio::task::spawn_blocking(move || app.shutdown())
        .await
        .unwrap();
    let spans = receiver.spans();
    assert!(receiver.paths().iter().all(|p| p == "/v1/traces"));
    assert_eq!(spans.len(), 4, "{spans:#?}");
    for span in &spans {
        assert_eq!(span.trace_id_hex(), TRACE, "unsampled traces stay out");
        assert_eq!(span.service, "pgshape");
        assert_eq!(span.attr("db.system.name").as_deref(), Some("postgresql"));
        assert_eq!(
            span.attr("db.namespace").as_deref(),
            Some(via.dbname.as_str())
        );
        assert_eq!(
            span.attr("server.port"),
            Some(PgCluster::shared().addr().port().to_string())
        );
        assert!(span.attr("pgshape.fingerprint").is_some());
        assert_eq!(span.attr("pgshape.rewritten").as_deref(), Some("false"));
        assert!(span.span.end_time_unix_nano >= span.span.start_time_unix_nano);
        assert!(span.span.start_time_unix_nano > 0);
        // SPAN_KIND_CLIENT
        assert_eq!(span.span.kind, 3);
    }

    let select = the_one(&spans, "00f067aa0ba902b7");
    assert_eq!(select.span.name, format!("SELECT {}", via.dbname));
    let text = select.attr("db.query.text").unwrap();
    assert!(
        !text.contains("42") && !text.contains("secret-literal"),
        "literals leaked: {text}"
    );
    assert!(text.starts_with("SELECT $1 AS answer, $2 AS s"), "{text}");
    assert_eq!(select.attr("db.operation.name").as_deref(), Some("SELECT"));
    assert_eq!(
        select.attr("db.response.returned_rows").as_deref(),
        Some("1")
    );
    assert_eq!(select.attr("db.response.status_code"), None);
    assert_eq!(select.span.status.as_ref().map_or(0, |s| s.code), 0);

    let failed = the_one(&spans, "00f067aa0ba902b8");
    assert_eq!(
        failed.attr("db.response.status_code").as_deref(),
        Some("22012")
    );
    let status = failed.span.status.as_ref().expect("status");
    // STATUS_CODE_ERROR
    assert_eq!(status.code, 2);
    assert_eq!(status.message, "22012");

    let extended = by_parent(&spans, "00f067aa0ba902ba");
    assert_eq!(extended.len(), 2, "one span per execution: {spans:#?}");
    assert_ne!(extended[0].span.span_id, extended[1].span.span_id);
    for span in extended {
        let text = span.attr("db.query.text").unwrap();
        assert!(text.starts_with("SELECT $1 + $2 AS n"), "{text}");
        assert!(!text.contains("1000"), "{text}");
    }

    // Nothing was dropped; the metric exists for when something is.
    let dropped = metrics_registry
        .gather()
        .into_iter()
        .find(|f| f.name() == "pgshape_spans_dropped_total")
        .expect("the drop counter is registered");
    assert_eq!(dropped.get_metric()[0].get_counter().get_value(), 0.0);
}

#[test]
fn untraced_statements_are_root_spans_only_when_sampled() {
    let receiver = OtlpReceiver::start();
    let (app, via) = start(&receiver, 1.0);
    psql_c(&via, "", "SELECT 8 AS untraced").assert_success();
    psql_c(
        &via,
        "",
        &format!("SELECT 7 {}", tp(UNSAMPLED, "00f067aa0ba902b9", "00")),
    )
    .assert_success();
    app.shutdown();
    let spans = receiver.spans();
    assert_eq!(
        spans.len(),
        1,
        "the unsampled traceparent still wins: {spans:#?}"
    );
    let root = &spans[0];
    assert!(
        root.span.parent_span_id.is_empty(),
        "a root span: {root:#?}"
    );
    assert_ne!(root.trace_id_hex(), UNSAMPLED);
    assert_eq!(root.trace_id_hex().len(), 32);
    assert_eq!(
        root.attr("db.query.text").as_deref(),
        Some("SELECT $1 AS untraced")
    );
}

/// psycopg2 (client-side binding: simple protocol) and psycopg 3 (server-side binding:
/// extended protocol), as Django and SQLAlchemy apps with sqlcommenter send them.
#[test]
fn psycopg2_and_psycopg3_statements_carry_their_traceparents() {
    let receiver = OtlpReceiver::start();
    let (app, via) = start(&receiver, 0.0);
    let script = format!(
        r#"
import psycopg2, psycopg
c = psycopg2.connect("")
cur = c.cursor()
cur.execute("SELECT %s::int AS v " + "{p2}", (11,))
assert cur.fetchone() == (11,)
c.close()
with psycopg.connect("") as c3:
    r = c3.execute("SELECT %s::int AS v " + "{p3}", (12,)).fetchone()
    assert r == (12,)
"#,
        p2 = tp(TRACE, "1111111111111111", "01"),
        p3 = tp(TRACE, "3333333333333333", "01"),
    );
    let mut cmd = Command::new(support::python());
    cmd.arg("-c").arg(&script);
    via.apply_env(&mut cmd);
    let out = cmd.output().expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.shutdown();
    let spans = receiver.spans();
    let p2 = the_one(&spans, "1111111111111111");
    let p3 = the_one(&spans, "3333333333333333");
    for span in [p2, p3] {
        assert_eq!(span.trace_id_hex(), TRACE);
        let text = span.attr("db.query.text").unwrap();
        assert!(
            text.starts_with("SELECT $1") && text.contains("AS v"),
            "{text}"
        );
        assert!(!text.contains("11") && !text.contains("12"), "{text}");
    }
}

/// The binary: `--otlp-endpoint`, or only the standard `OTEL_EXPORTER_OTLP_ENDPOINT` and
/// `OTEL_SERVICE_NAME`; SIGTERM's graceful stop sends the queued spans.
#[test]
fn the_binary_exports_with_the_flag_or_the_standard_variables() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let dir = tempfile::tempdir().unwrap();
    for (name, via_env) in [("flag", false), ("env", true)] {
        let receiver = OtlpReceiver::start();
        let listen = support::serve::free_addr().to_string();
        let url = receiver.base_url();
        let mut args = vec!["--listen", listen.as_str(), "--admin", "off"];
        let mut env = vec![];
        if via_env {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()));
            env.push(("OTEL_SERVICE_NAME", "checkout-db"));
        } else {
            args.extend(["--otlp-endpoint", url.as_str()]);
        }
        let mut serve = support::serve::Serve::spawn(
            cluster,
            &rules,
            &args,
            &env,
            dir.path().join(format!("{name}.log")),
        );
        serve.wait_log("exporting statement spans");
        serve.wait_log("listening");
        let via = db.via(listen.parse().unwrap());
        psql_c(
            &via,
            "",
            &format!("SELECT 5 AS n {}", tp(TRACE, "00f067aa0ba902b7", "01")),
        )
        .assert_success();
        let status = Command::new("kill")
            .args(["-TERM", &serve.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(serve.child.wait().unwrap().success(), "{}", serve.log());
        let spans = receiver.spans();
        assert_eq!(spans.len(), 1, "{name}: {spans:#?}\n{}", serve.log());
        assert_eq!(spans[0].parent_span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(
            spans[0].service,
            if via_env { "checkout-db" } else { "pgshape" }
        );
        assert_eq!(receiver.paths(), vec!["/v1/traces".to_owned()]);
    }
}

/// The incident's shape: the span names the rule that hit it.
#[test]
fn a_span_names_the_rules_that_hit_its_shape() {
    let receiver = OtlpReceiver::start();
    let (app, via) = start(&receiver, 0.0);
    support::psql_query(&via, support::shop::SCHEMA);
    psql_c(
        &via,
        "",
        &format!(
            "{} {}",
            support::shop::INCIDENT,
            tp(TRACE, "00f067aa0ba902bc", "01")
        ),
    )
    .assert_success();
    app.shutdown();
    let spans = receiver.spans();
    let incident = the_one(&spans, "00f067aa0ba902bc");
    let hits = incident.attr("pgshape.rule_hits").unwrap_or_default();
    assert!(
        hits.split(',').any(|id| id == "distinct-over-fanout-join"),
        "{hits}"
    );
    let text = incident.attr("db.query.text").unwrap();
    assert!(!text.contains("'A'"), "{text}");
}

/// A statement a rewrite rule replaced says so on its span (`pgshape.rewritten`, and which rule
/// in `pgshape.rewrite_rule`); one that ran as written says it was not.
#[test]
fn a_rewritten_statements_span_says_so_and_names_the_rule() {
    const RULE: &str = "distinct-over-fanout-join";
    let receiver = OtlpReceiver::start();
    let mut shop = Shop::start_with("rewrite", &[], |config| {
        config.tracing.otlp_endpoint = Some(receiver.base_url());
        config.tracing.batch_delay_ms = 20;
    });
    let fp = fingerprint(INCIDENT.as_bytes());
    let traced = |sql: &str, span: &str| raw::query(&format!("{sql} {}", tp(TRACE, span, "01")));
    let mut conn = RawConn::login(shop.app().proxy_addr(), &shop.db.user, &shop.db.dbname);
    // The first execution starts the rewrite's proof; once proven, the next is rewritten.
    raw::exchange(&mut conn, &traced(INCIDENT, "00000000000000a1"));
    let plan = shop.wait_plan(RULE, fp);
    assert_eq!(plan["state"], "ready", "{plan:#}");
    let applied = || {
        shop.app()
            .rules()
            .rewriter()
            .counts()
            .get(RULE, fp, Outcome::Applied)
    };
    let before = applied();
    raw::exchange(&mut conn, &traced(INCIDENT, "00000000000000a2"));
    assert_eq!(applied(), before + 1, "the statement was rewritten");
    raw::exchange(
        &mut conn,
        &traced("SELECT count(*) FROM shop_order", "00000000000000a3"),
    );
    drop(conn);
    shop.app.take().expect("running").shutdown();

    let spans = receiver.spans();
    let rewritten = the_one(&spans, "00000000000000a2");
    assert_eq!(
        rewritten.attr("pgshape.rewritten").as_deref(),
        Some("true"),
        "{rewritten:#?}"
    );
    assert_eq!(
        rewritten.attr("pgshape.rewrite_rule").as_deref(),
        Some(RULE)
    );
    // Statistics and the span stay on the original's shape.
    assert_eq!(rewritten.attr("pgshape.fingerprint"), Some(fp.to_string()));
    let plain = the_one(&spans, "00000000000000a3");
    assert_eq!(
        plain.attr("pgshape.rewritten").as_deref(),
        Some("false"),
        "{plain:#?}"
    );
    assert_eq!(plain.attr("pgshape.rewrite_rule"), None);
}
