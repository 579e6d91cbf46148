use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry::{Array, Key, Value};

use super::{
    InlineStr, RawParent, ShapeAttributes, SpanContextInfo, SpanRecord, Traceparent, operation,
    to_span_data,
};
use crate::event::StatementText;

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn record(sql: &str, command: &str, sqlstate: Option<[u8; 5]>) -> SpanRecord {
    SpanRecord {
        parent: RawParent::check(TP).unwrap().0,
        statement: Arc::new(StatementText {
            sql: Bytes::copy_from_slice(sql.as_bytes()),
            fingerprint: Some(crate::sql::fingerprint(sql.as_bytes())),
            rewritten_by: Some("semijoin".into()),
            shadow: None,
            bind: Default::default(),
        }),
        database: InlineStr::new("shop"),
        finished_at: Instant::now(),
        duration: Duration::from_millis(12),
        rows: 3,
        command: InlineStr::new(command),
        sqlstate,
    }
}

fn info() -> SpanContextInfo {
    SpanContextInfo::new(Some(("db.internal", 5433)))
}

/// `record`'s span as the export thread makes it, with `query` as the normalized text.
fn span_of(
    record: &SpanRecord,
    span_id: SpanId,
    query: &str,
    rules: &dyn Fn(crate::sql::Fingerprint) -> Vec<String>,
) -> opentelemetry_sdk::trace::SpanData {
    let shape = ShapeAttributes::new(query.into(), record.statement.fingerprint, rules);
    let end = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    to_span_data(
        record,
        record.parent.resolve().unwrap(),
        span_id,
        record.times((end, record.finished_at)),
        &shape,
        &info(),
    )
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
        // The hot path checks the layout only; the ids are checked when the span is made.
        assert_eq!(
            RawParent::check(bad).and_then(|(p, _)| p.resolve()),
            None,
            "{bad}"
        );
    }
    let (raw, sampled) = RawParent::check(TP).unwrap();
    assert!(sampled);
    assert_eq!(raw.resolve(), Some(tp));
    let (_, sampled) = RawParent::check(&TP.replace("-01", "-00")).unwrap();
    assert!(!sampled);
    assert_eq!(RawParent::check(&TP.replace("-01", "-0x")), None);
}

#[test]
fn inline_text_is_cut_at_a_character_boundary() {
    assert_eq!(InlineStr::<16>::new("SELECT").as_str(), "SELECT");
    assert_eq!(InlineStr::<4>::new("abcdef").as_str(), "abcd");
    // 'é' is two bytes: cut before it rather than through it.
    assert_eq!(InlineStr::<4>::new("abcé").as_str(), "abc");
    assert_eq!(InlineStr::<64>::new("").as_str(), "");
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
    let span = span_of(
        &record(&sql, "SELECT", None),
        SpanId::from(7),
        &crate::sql::normalize(sql.as_bytes(), 2048),
        &rules,
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
        attr(&span, "pgshape.rewrite_rule").unwrap().as_str(),
        "semijoin"
    );
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
    let span = span_of(
        &record("select 1/0", "", Some(*b"22012")),
        SpanId::from(9),
        "select $1/$2",
        &none,
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
    r.parent = RawParent::Root(TraceId::from(5));
    let span = span_of(&r, SpanId::from(1), "SELECT $1", &none);
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
