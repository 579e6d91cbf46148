//! Statements as spans in the application's traces (OpenTelemetry, OTLP over HTTP/protobuf).
//!
//! Django, Rails, Spring and the OpenTelemetry instrumentations append a sqlcommenter
//! `traceparent` to each statement; pgshape turns such a statement into a client span, child of
//! the application's span, so a trace of a slow request shows the statement inside it without
//! the application's database driver being instrumented.
//!
//! Why the pieces are where they are:
//! - The observer ([`SpanObserver`]) runs on the proxy's worker threads, on the hot path: it
//!   only finds the raw `traceparent` tag, checks its layout and sampled flag, copies its 55
//!   bytes, the database name and the command word into a fixed-size record (no allocation, no
//!   clock read, no id parsing) and hands it to a bounded queue with `try_send`. A full queue
//!   drops the span and counts it (`pgshape_spans_dropped_total`); the relay never waits.
//! - The export thread ([`export`]) batches records, parses the ids, turns wall-clock times and
//!   attributes into spans ([`span`]: the normalized text, never literals; what depends only on
//!   the shape is built once per fingerprint) and sends them with the SDK's OTLP exporter. Its
//!   queue is the only one, so every drop is counted.
//! - Sampling is parent-based: the traceparent's sampled flag decides; a statement without one is
//!   traced only with `sample_untraced` (the SDK's trace-id-ratio sampler, a root span).

pub mod export;
pub mod span;

use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use serde::Deserialize;

use crate::event::{StatementEvent, StatementObserver};
use crate::stats::text::RawTags;

pub use span::{InlineStr, RawParent, SpanRecord, Traceparent};

/// `[tracing]`: where spans go and which statements become spans.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/HTTP collector's base URL (`http://collector:4318`); `/v1/traces` is appended,
    /// as for `OTEL_EXPORTER_OTLP_ENDPOINT`. Unset, spans are exported only when one of the
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables is set.
    pub otlp_endpoint: Option<String>,
    /// Fraction (0..=1) of statements without a traceparent traced as root spans; 0 = none.
    pub sample_untraced: f64,
    /// Spans waiting for export at most; more are dropped and counted.
    pub queue_size: usize,
    /// Spans per OTLP request at most.
    pub batch_size: usize,
    /// Longest a span waits for its batch to fill before the batch is sent.
    pub batch_delay_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            sample_untraced: 0.0,
            queue_size: 2048,
            batch_size: 512,
            batch_delay_ms: 1000,
        }
    }
}

impl TracingConfig {
    /// Whether spans are exported at all: an endpoint in the config or the standard variables.
    pub fn enabled(&self) -> bool {
        self.otlp_endpoint.as_deref().is_some_and(|e| !e.is_empty())
            || [
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ]
            .iter()
            .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()))
    }

    /// The traces URL: the base with `/v1/traces` appended (`None`: the SDK reads the variables).
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .filter(|e| !e.is_empty())
            .map(|base| format!("{}/v1/traces", base.trim_end_matches('/')))
    }

    pub fn batch_delay(&self) -> Duration {
        Duration::from_millis(self.batch_delay_ms.max(1))
    }

    /// # Errors
    /// A ratio outside 0..=1 or a zero-sized queue or batch.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_untraced) {
            return Err(crate::config::ConfigError::Invalid {
                key: "tracing.sample_untraced",
                reason: format!("{} is not a ratio between 0 and 1", self.sample_untraced),
            });
        }
        if self.queue_size == 0 || self.batch_size == 0 {
            return Err(crate::config::ConfigError::Invalid {
                key: "tracing.queue_size",
                reason: "queue_size and batch_size must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// The hot-path half: decides which statements become spans and queues them for export.
pub struct SpanObserver {
    queue: SyncSender<export::Message>,
    dropped: prometheus::IntCounter,
    /// `None` when untraced statements are never traced.
    untraced: Option<Sampler>,
}

impl SpanObserver {
    pub(crate) fn new(
        queue: SyncSender<export::Message>,
        dropped: prometheus::IntCounter,
        sample_untraced: f64,
    ) -> SpanObserver {
        SpanObserver {
            queue,
            dropped,
            untraced: (sample_untraced > 0.0).then(|| Sampler::TraceIdRatioBased(sample_untraced)),
        }
    }

    /// The parent of the statement's span (a root for a sampled untraced statement), or
    /// `None` when the statement is not traced.
    fn parent(&self, sql: &[u8]) -> Option<RawParent> {
        let tags = RawTags::of(sql);
        if let Some((raw, sampled)) = tags.get("traceparent").and_then(RawParent::check) {
            // Parent-based: the application's sampling decision is the trace's.
            return sampled.then_some(raw);
        }
        let sampler = self.untraced.as_ref()?;
        let trace_id = RandomIdGenerator::default().new_trace_id();
        let result = sampler.should_sample(None, trace_id, "", &SpanKind::Client, &[], &[]);
        (result.decision == SamplingDecision::RecordAndSample).then_some(RawParent::Root(trace_id))
    }
}

impl StatementObserver for SpanObserver {
    fn on_statement(&self, event: &StatementEvent<'_>) {
        let Some(parent) = self.parent(&event.statement.sql) else {
            return;
        };
        // `db.operation.name` needs only the tag's first word, which always fits inline.
        let command = event.command.split(' ').next().unwrap_or_default();
        let record = SpanRecord {
            parent,
            statement: event.statement.clone(),
            database: InlineStr::new(&event.session.database),
            finished_at: event.finished_at,
            duration: event.duration,
            rows: event.rows,
            command: InlineStr::new(command),
            sqlstate: event.sqlstate,
        };
        match self.queue.try_send(export::Message::Span(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc::sync_channel;
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::export::Message;
    use super::*;
    use crate::event::{Protocol, SessionInfo, StatementText};

    const SAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

    fn observe(observer: &SpanObserver, sql: &str) {
        let statement = Arc::new(StatementText {
            sql: Bytes::copy_from_slice(sql.as_bytes()),
            fingerprint: None,
            rewritten_by: None,
            shadow: None,
            bind: Default::default(),
        });
        let session = SessionInfo {
            database: "shop".into(),
            ..SessionInfo::default()
        };
        observer.on_statement(&StatementEvent {
            session: &session,
            statement: &statement,
            protocol: Protocol::Simple,
            duration: Duration::from_millis(5),
            finished_at: Instant::now(),
            rows: 1,
            command: "SELECT",
            sqlstate: None,
            in_transaction: false,
        });
    }

    fn spans(rx: &std::sync::mpsc::Receiver<Message>) -> Vec<SpanRecord> {
        rx.try_iter()
            .filter_map(|m| match m {
                Message::Span(r) => Some(r),
                Message::Stop => None,
            })
            .collect()
    }

    #[test]
    fn the_traceparents_sampled_flag_decides() {
        let (tx, rx) = sync_channel(16);
        let observer = SpanObserver::new(tx, prometheus::IntCounter::new("d", "d").unwrap(), 0.0);
        observe(&observer, &format!("SELECT 1 /*traceparent='{SAMPLED}'*/"));
        observe(
            &observer,
            &format!("SELECT 1 /*traceparent='{UNSAMPLED}'*/"),
        );
        observe(&observer, "SELECT 1");
        observe(&observer, "SELECT 1 /*traceparent='00-bad-01-01'*/");
        let got = spans(&rx);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].parent.resolve(), Traceparent::parse(SAMPLED));
        assert_eq!(got[0].duration, Duration::from_millis(5));
        assert_eq!(got[0].command.as_str(), "SELECT");
        assert_eq!(got[0].database.as_str(), "shop");
    }

    #[test]
    fn untraced_statements_are_sampled_roots_at_the_configured_ratio() {
        let (tx, rx) = sync_channel(4096);
        let observer = SpanObserver::new(tx, prometheus::IntCounter::new("d", "d").unwrap(), 0.25);
        for _ in 0..4000 {
            observe(&observer, "SELECT 1");
        }
        // The unsampled parent still wins over the ratio.
        observe(
            &observer,
            &format!("SELECT 1 /*traceparent='{UNSAMPLED}'*/"),
        );
        let got: Vec<Traceparent> = spans(&rx)
            .iter()
            .map(|r| r.parent.resolve().expect("a root"))
            .collect();
        assert!(got.iter().all(|p| p.span_id.is_none()));
        // 1000 expected; 6 standard deviations (27) either way.
        assert!((840..1160).contains(&got.len()), "{}", got.len());
        let first = got[0].trace_id;
        assert!(got.iter().skip(1).any(|p| p.trace_id != first));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, rx) = sync_channel(2);
        let dropped = prometheus::IntCounter::new("d", "d").unwrap();
        let observer = SpanObserver::new(tx, dropped.clone(), 0.0);
        for _ in 0..5 {
            observe(&observer, &format!("SELECT 1 /*traceparent='{SAMPLED}'*/"));
        }
        assert_eq!(spans(&rx).len(), 2);
        assert_eq!(dropped.get(), 3);
    }

    #[test]
    fn the_tracing_table_is_read_and_checked() {
        let config: crate::config::Config = toml::from_str(
            "[tracing]\notlp_endpoint = \"http://collector:4318/\"\nsample_untraced = 0.1\n",
        )
        .unwrap();
        assert_eq!(
            config.tracing.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert!(config.tracing.enabled());
        config.tracing.validate().unwrap();
        let bad = TracingConfig {
            sample_untraced: 1.5,
            ..TracingConfig::default()
        };
        assert!(bad.validate().is_err());
        assert_eq!(TracingConfig::default().traces_url(), None);
    }
}
