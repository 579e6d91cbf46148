//! A traced statement's span: what the observer records on the hot path ([`SpanRecord`]: a
//! fixed-size struct, nothing allocated, nothing parsed beyond the sampled flag) and its mapping
//! to an OTLP span per the OpenTelemetry database semantic conventions, done on the export
//! thread. The query text is the normalized SQL (constants replaced by `$n`): a span leaves
//! pgshape for a collector the application team shares, and must never carry literals.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// The span's parent as the hot path saw it: a traceparent's raw bytes (only its layout and
/// sampled flag checked there; the ids are parsed on the export thread), or a new root's trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawParent {
    Traceparent([u8; TRACEPARENT_LEN]),
    Root(TraceId),
}

impl RawParent {
    /// The raw parent and its sampled flag when `value` is laid out as a version-00
    /// traceparent; `None` otherwise.
    pub fn check(value: &str) -> Option<(RawParent, bool)> {
        let raw: [u8; TRACEPARENT_LEN] = value.as_bytes().try_into().ok()?;
        if &raw[..3] != b"00-" || raw[35] != b'-' || raw[52] != b'-' {
            return None;
        }
        let hex = |c: u8| char::from(c).to_digit(16);
        let flags = hex(raw[53])? << 4 | hex(raw[54])?;
        Some((RawParent::Traceparent(raw), flags & 1 == 1))
    }

    /// The parsed parent; `None` when the ids are invalid (not hex, all zero): no span then.
    pub fn resolve(&self) -> Option<Traceparent> {
        match self {
            RawParent::Traceparent(raw) => Traceparent::parse(std::str::from_utf8(raw).ok()?),
            RawParent::Root(trace_id) => Some(Traceparent::root(*trace_id)),
        }
    }
}

/// A short text held inline, so that queuing a span allocates nothing: the database name
/// (PostgreSQL's names are at most 63 bytes) and the command tag's first word. Longer text is
/// cut at a character boundary.
#[derive(Clone, Copy)]
pub struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    pub fn new(text: &str) -> Self {
        let mut end = text.len().min(N).min(usize::from(u8::MAX));
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0; N];
        bytes[..end].copy_from_slice(&text.as_bytes()[..end]);
        InlineStr {
            len: end as u8,
            bytes,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl<const N: usize> std::fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// One traced statement, as queued by the observer: fixed size, built without allocating or
/// reading a clock (the text is shared; times are the event's own).
#[derive(Debug)]
pub struct SpanRecord {
    pub parent: RawParent,
    pub statement: Arc<StatementText>,
    pub database: InlineStr<64>,
    /// When the statement ended, on the monotonic clock: wall-clock time is derived on the
    /// export thread, where reading the clocks costs the relay nothing.
    pub finished_at: Instant,
    pub duration: Duration,
    pub rows: u64,
    /// The CommandComplete tag's first word (`SELECT`, `CREATE`); empty on error.
    pub command: InlineStr<16>,
    pub sqlstate: Option<[u8; 5]>,
}

impl SpanRecord {
    /// The statement's start and end in wall-clock time, `now` being the clocks read together.
    pub fn times(&self, now: (SystemTime, Instant)) -> (SystemTime, SystemTime) {
        let end = now.0 - now.1.saturating_duration_since(self.finished_at);
        (end - self.duration, end)
    }
}

/// The attributes that depend only on a statement's shape, built once per fingerprint by the
/// export thread and shared by its spans (reference-counted strings: a span copies no text).
#[derive(Debug, Clone)]
pub struct ShapeAttributes {
    /// The normalized text.
    pub query: Arc<str>,
    pub fingerprint: Option<StringValue>,
    /// The ids of the rules that hit the shape.
    pub rule_hits: Vec<StringValue>,
}

impl ShapeAttributes {
    pub fn new(
        query: Arc<str>,
        fingerprint: Option<Fingerprint>,
        rules_of: &dyn Fn(Fingerprint) -> Vec<String>,
    ) -> ShapeAttributes {
        ShapeAttributes {
            query,
            fingerprint: fingerprint.map(|fp| StringValue::from(fp.to_string())),
            rule_hits: fingerprint.map_or_else(Vec::new, |fp| rule_hits(rules_of(fp))),
        }
    }
}

/// Rule ids as shared strings.
pub fn rule_hits(ids: Vec<String>) -> Vec<StringValue> {
    ids.into_iter()
        .map(|id| StringValue::from(Arc::<str>::from(id)))
        .collect()
}

/// What the export thread knows besides the records, built once.
pub struct SpanContextInfo {
    /// The upstream server (`server.address`, `server.port`).
    pub server: Option<(StringValue, i64)>,
    pub scope: InstrumentationScope,
}

impl SpanContextInfo {
    pub fn new(server: Option<(&str, u16)>) -> SpanContextInfo {
        SpanContextInfo {
            server: server
                .map(|(host, port)| (StringValue::from(Arc::<str>::from(host)), i64::from(port))),
            scope: InstrumentationScope::builder("pgshape")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        }
    }
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

/// The OTLP span of `record` under `parent` (its resolved [`RawParent`]); `span_id` is the
/// statement's own (new) span id, `times` its start and end ([`SpanRecord::times`]).
pub fn to_span_data(
    record: &SpanRecord,
    parent: Traceparent,
    span_id: SpanId,
    times: (SystemTime, SystemTime),
    shape: &ShapeAttributes,
    info: &SpanContextInfo,
) -> SpanData {
    let op = operation(record.command.as_str(), &shape.query);
    let database = record.database.as_str();
    let name = match (op.is_empty(), database.is_empty()) {
        (false, false) => format!("{op} {database}"),
        (false, true) => op.clone(),
        (true, false) => database.to_owned(),
        (true, true) => "postgresql".to_owned(),
    };
    let mut attributes = Vec::with_capacity(14);
    attributes.extend([
        KeyValue::new("db.system.name", "postgresql"),
        KeyValue::new("db.namespace", database.to_owned()),
        KeyValue::new("db.query.text", shape.query.clone()),
        KeyValue::new("db.response.returned_rows", record.rows as i64),
        KeyValue::new("pgshape.rewritten", record.statement.rewritten_by.is_some()),
    ]);
    if !op.is_empty() {
        attributes.push(KeyValue::new("db.operation.name", op));
    }
    if let Some((host, port)) = &info.server {
        attributes.push(KeyValue::new("server.address", host.clone()));
        attributes.push(KeyValue::new("server.port", *port));
    }
    if let Some(rule) = &record.statement.rewritten_by {
        attributes.push(KeyValue::new("pgshape.rewrite_rule", rule.clone()));
    }
    if let Some(fp) = &shape.fingerprint {
        attributes.push(KeyValue::new("pgshape.fingerprint", fp.clone()));
    }
    if !shape.rule_hits.is_empty() {
        attributes.push(KeyValue::new(
            "pgshape.rule_hits",
            Value::Array(Array::String(shape.rule_hits.clone())),
        ));
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
        start_time: times.0,
        end_time: times.1,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: info.scope.clone(),
    }
}

#[cfg(test)]
#[path = "span_tests.rs"]
mod tests;
