//! A traced statement's span: what the observer records on the hot path ([`SpanRecord`]) and
//! its mapping to an OTLP span per the OpenTelemetry database semantic conventions, done on the
//! export thread. The query text is the normalized SQL (constants replaced by `$n`): a span
//! leaves pgshape for a collector the application team shares, and must never carry literals.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::event::StatementText;
use crate::sql::Fingerprint;

/// A W3C `traceparent` (`00-<trace id>-<parent span id>-<flags>`), or a root to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traceparent {
    pub trace_id: TraceId,
    /// The application's span; `None` for a root span (sampled untraced statement).
    pub span_id: Option<SpanId>,
    pub sampled: bool,
}

impl Traceparent {
    /// Parses the tag's value; `None` for anything that is not a valid version-00 traceparent
    /// (all-zero ids are invalid per the W3C spec).
    pub fn parse(value: &str) -> Option<Traceparent> {
        let b = value.as_bytes();
        if b.len() != 55 || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let trace = u128::from_str_radix(value.get(3..35)?, 16).ok()?;
        let span = u64::from_str_radix(value.get(36..52)?, 16).ok()?;
        let flags = u8::from_str_radix(value.get(53..55)?, 16).ok()?;
        if trace == 0
            || span == 0
            || !value[3..52]
                .bytes()
                .all(|c| c == b'-' || c.is_ascii_hexdigit())
        {
            return None;
        }
        Some(Traceparent {
            trace_id: TraceId::from(trace),
            span_id: Some(SpanId::from(span)),
            sampled: flags & 1 == 1,
        })
    }

    /// A new trace whose first span is the statement's.
    pub fn root(trace_id: TraceId) -> Traceparent {
        Traceparent {
            trace_id,
            span_id: None,
            sampled: true,
        }
    }
}

/// One traced statement, as queued by the observer (cheap to build: the text is shared).
#[derive(Debug)]
pub struct SpanRecord {
    pub parent: Traceparent,
    pub statement: Arc<StatementText>,
    pub database: String,
    pub start: SystemTime,
    pub end: SystemTime,
    pub rows: u64,
    /// The CommandComplete tag's command (`SELECT`, `CREATE TABLE`); empty on error.
    pub command: Box<str>,
    pub sqlstate: Option<[u8; 5]>,
}

/// What the export thread knows besides the record.
pub struct SpanContextInfo<'a> {
    /// The upstream server (`server.address`, `server.port`).
    pub server: Option<(&'a str, u16)>,
    /// The ids of the rules that hit a fingerprint.
    pub rules_of: &'a dyn Fn(Fingerprint) -> Vec<String>,
}

/// `db.operation.name`: the command tag's first word, or the statement's first keyword when it
/// failed (no tag then).
pub fn operation(command: &str, normalized: &str) -> String {
    let word = |s: &str| {
        s.split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| !w.is_empty())
            .unwrap_or_default()
            .to_ascii_uppercase()
    };
    match word(command) {
        w if !w.is_empty() => w,
        _ => word(normalized),
    }
}

/// The OTLP span of `record`; `span_id` is the statement's own (new) span id, `query` its
/// normalized text.
pub fn to_span_data(
    record: &SpanRecord,
    span_id: SpanId,
    query: &str,
    info: &SpanContextInfo<'_>,
) -> SpanData {
    let op = operation(&record.command, query);
    let name = match (op.is_empty(), record.database.is_empty()) {
        (false, false) => format!("{op} {}", record.database),
        (false, true) => op.clone(),
        (true, false) => record.database.clone(),
        (true, true) => "postgresql".to_owned(),
    };
    let mut attributes = vec![
        KeyValue::new("db.system.name", "postgresql"),
        KeyValue::new("db.namespace", record.database.clone()),
        KeyValue::new("db.query.text", query.to_owned()),
        KeyValue::new("db.response.returned_rows", record.rows as i64),
        KeyValue::new("pgshape.rewritten", record.statement.rewritten_by.is_some()),
    ];
    if !op.is_empty() {
        attributes.push(KeyValue::new("db.operation.name", op));
    }
    if let Some((host, port)) = info.server {
        attributes.push(KeyValue::new("server.address", host.to_owned()));
        attributes.push(KeyValue::new("server.port", i64::from(port)));
    }
    if let Some(rule) = &record.statement.rewritten_by {
        attributes.push(KeyValue::new("pgshape.rewrite_rule", rule.to_string()));
    }
    if let Some(fp) = record.statement.fingerprint {
        attributes.push(KeyValue::new("pgshape.fingerprint", fp.to_string()));
        let hits = (info.rules_of)(fp);
        if !hits.is_empty() {
            let hits: Vec<StringValue> = hits.into_iter().map(StringValue::from).collect();
            attributes.push(KeyValue::new(
                "pgshape.rule_hits",
                Value::Array(Array::String(hits)),
            ));
        }
    }
    let status = match record
        .sqlstate
        .as_ref()
        .and_then(|c| std::str::from_utf8(c).ok())
    {
        Some(code) => {
            attributes.push(KeyValue::new("db.response.status_code", code.to_owned()));
            attributes.push(KeyValue::new("error.type", code.to_owned()));
            Status::error(code.to_owned())
        }
        None => Status::Unset,
    };
    let parent = record.parent;
    SpanData {
        span_context: SpanContext::new(
            parent.trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: parent.span_id.unwrap_or(SpanId::INVALID),
        parent_span_is_remote: parent.span_id.is_some(),
        span_kind: SpanKind::Client,
        name: Cow::Owned(name),
        start_time: record.start,
        end_time: record.end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: InstrumentationScope::builder("pgshape")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
