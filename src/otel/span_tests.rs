use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry::{Array, Key, Value};

use super::{SpanContextInfo, SpanRecord, Traceparent, operation, to_span_data};
use crate::event::StatementText;

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn record(sql: &str, command: &str, sqlstate: Option<[u8; 5]>) -> SpanRecord {
    let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    SpanRecord {
        parent: Traceparent::parse(TP).unwrap(),
        statement: Arc::new(StatementText {
            sql: Bytes::copy_from_slice(sql.as_bytes()),
            fingerprint: Some(crate::sql::fingerprint(sql.as_bytes())),
            rewritten_by: Some("semijoin".into()),
            shadow: None,
            bind: Default::default(),
        }),
        database: "shop".into(),
        start: end - Duration::from_millis(12),
        end,
        rows: 3,
        command: command.into(),
        sqlstate,
    }
}

fn info(rules: &dyn Fn(crate::sql::Fingerprint) -> Vec<String>) -> SpanContextInfo<'_> {
    SpanContextInfo {
        server: Some(("db.internal", 5433)),
        rules_of: rules,
    }
}

fn attr<'a>(span: &'a opentelemetry_sdk::trace::SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| &kv.value)
}

#[test]
fn traceparent_is_parsed_strictly() {
    let tp = Traceparent::parse(TP).unwrap();
    assert_eq!(
        tp.trace_id,
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
    );
    assert_eq!(
        tp.span_id,
        Some(SpanId::from_hex("b7ad6b7169203331").unwrap())
    );
    assert!(tp.sampled);
    assert!(
        !Traceparent::parse(&TP.replace("-01", "-00"))
            .unwrap()
            .sampled
    );
    for bad in [
        "00-bbb-01-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033+1-01",
        "00-0af7651916cd43dd8448eb211c80319cXb7ad6b7169203331-01",
    ] {
        assert_eq!(Traceparent::parse(bad), None, "{bad}");
    }
}

#[test]
fn a_statement_maps_to_a_client_span_per_the_database_conventions() {
    let sql =
        format!("SELECT * FROM orders WHERE id = 42 AND note = 'secret' /*traceparent='{TP}'*/");
    let fp = crate::sql::fingerprint(sql.as_bytes());
    let rules = move |f| {
        if f == fp {
            vec!["PGS01".to_owned()]
        } else {
            vec![]
        }
    };
    let span = to_span_data(
        &record(&sql, "SELECT", None),
        SpanId::from(7),
        &crate::sql::normalize(sql.as_bytes(), 2048),
        &info(&rules),
    );
    assert_eq!(span.name, "SELECT shop");
    assert_eq!(span.span_kind, opentelemetry::trace::SpanKind::Client);
    assert_eq!(
        span.parent_span_id,
        SpanId::from_hex("b7ad6b7169203331").unwrap()
    );
    assert!(span.parent_span_is_remote);
    assert_eq!(
        span.span_context.trace_id(),
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
    );
    assert_eq!(span.span_context.span_id(), SpanId::from(7));
    assert_eq!(
        span.end_time.duration_since(span.start_time).unwrap(),
        Duration::from_millis(12)
    );
    assert_eq!(span.status, Status::Unset);
    let text = attr(&span, "db.query.text").unwrap().as_str();
    assert!(!text.contains("42") && !text.contains("secret"), "{text}");
    assert!(text.contains("id = $1"), "{text}");
    assert_eq!(
        attr(&span, "db.system.name").unwrap().as_str(),
        "postgresql"
    );
    assert_eq!(attr(&span, "db.namespace").unwrap().as_str(), "shop");
    assert_eq!(attr(&span, "db.operation.name").unwrap().as_str(), "SELECT");
    assert_eq!(
        attr(&span, "db.response.returned_rows"),
        Some(&Value::I64(3))
    );
    assert_eq!(
        attr(&span, "server.address").unwrap().as_str(),
        "db.internal"
    );
    assert_eq!(attr(&span, "server.port"), Some(&Value::I64(5433)));
    assert_eq!(attr(&span, "pgshape.rewritten"), Some(&Value::Bool(true)));
    assert_eq!(
        attr(&span, "pgshape.fingerprint").unwrap().as_str(),
        fp.to_string()
    );
    assert_eq!(
        attr(&span, "pgshape.rule_hits"),
        Some(&Value::Array(Array::String(vec!["PGS01".into()])))
    );
    assert_eq!(attr(&span, "db.response.status_code"), None);
}

#[test]
fn a_failed_statement_has_error_status_and_its_sqlstate() {
    let none = |_| Vec::new();
    let span = to_span_data(
        &record("select 1/0", "", Some(*b"22012")),
        SpanId::from(9),
        "select $1/$2",
        &info(&none),
    );
    assert_eq!(span.status, Status::error("22012"));
    assert_eq!(
        attr(&span, "db.response.status_code").unwrap().as_str(),
        "22012"
    );
    // No command tag on error: the operation is the statement's first keyword.
    assert_eq!(span.name, "SELECT shop");
    assert_eq!(attr(&span, "pgshape.rule_hits"), None);
}

#[test]
fn a_root_span_has_no_parent() {
    let none = |_| Vec::new();
    let mut r = record("SELECT 1", "SELECT", None);
    r.parent = Traceparent::root(TraceId::from(5));
    let span = to_span_data(&r, SpanId::from(1), "SELECT $1", &info(&none));
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!(!span.parent_span_is_remote);
    assert_eq!(span.span_context.trace_id(), TraceId::from(5));
}

#[test]
fn operation_comes_from_the_tag_or_the_text() {
    assert_eq!(operation("CREATE TABLE", "create table t"), "CREATE");
    assert_eq!(operation("", "update t set a = $1"), "UPDATE");
    assert_eq!(operation("", ""), "");
}
