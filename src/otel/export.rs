//! The export thread: batches queued [`SpanRecord`]s and sends them with the SDK's OTLP/HTTP
//! exporter (protobuf, blocking client), off the proxy's workers.
//!
//! The SDK's own batch processor is not used: it would put a second queue, with its own silent
//! drops, behind ours, and the hot path must not build SDK spans (they allocate and lock). Here
//! the one bounded queue feeds one thread that converts and sends; an export error is logged
//! and the batch is dropped (a collector outage must not grow memory).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanExporter as _};

use super::span::{ShapeAttributes, SpanContextInfo, SpanRecord, rule_hits, to_span_data};
use super::{SpanObserver, TracingConfig};
use crate::sql::{Fingerprint, normalize};

/// Shapes whose attributes the export thread keeps.
const SHAPE_CACHE: usize = 4096;
/// How long a shape's rule hits are reused before they are asked for again (a rule can hit a
/// shape after its first spans: n+1 counts repetitions).
const RULES_REFRESH: Duration = Duration::from_secs(1);
/// How often a filling batch looks at the queue: at 100k statements/s, 1000 spans queue
/// meanwhile, well under the default `queue_size`.
const POLL: Duration = Duration::from_millis(10);

/// Errors starting the exporter.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the span export thread: {0}")]
    Thread(std::io::Error),
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Where the statements' server is and what the rules say, for the spans' attributes.
pub struct ExportContext {
    pub server: Option<(String, u16)>,
    pub max_query_length: usize,
    pub rules_of: Box<dyn Fn(Fingerprint) -> Vec<String> + Send>,
}

/// What the queue carries.
// The record travels by value: boxing it would put an allocation per traced statement back on
// the worker's hot path, and the queue's slots are few (`queue_size`).
#[allow(clippy::large_enum_variant)]
pub enum Message {
    Span(SpanRecord),
    /// Send what is queued, then stop.
    Stop,
}

/// The running export thread.
pub struct SpanExport {
    queue: SyncSender<Message>,
    thread: JoinHandle<()>,
}

impl SpanExport {
    /// Sends what is queued and stops the thread (after the proxy stopped: spans of the last
    /// statements are not lost).
    pub fn shutdown(self) {
        let _ = self.queue.send(Message::Stop);
        let _ = self.thread.join();
    }
}

/// Starts the exporter: the observer for the proxy and the thread behind it.
///
/// # Errors
/// An invalid endpoint, or the thread or metric cannot be created.
pub fn start(
    config: &TracingConfig,
    context: ExportContext,
    registry: &prometheus::Registry,
) -> Result<(SpanObserver, SpanExport), ExportError> {
    let dropped = prometheus::IntCounter::new(
        "pgshape_spans_dropped_total",
        "Statement spans dropped because the export queue was full.",
    )?;
    registry.register(Box::new(dropped.clone()))?;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary);
    if let Some(url) = config.traces_url() {
        builder = builder.with_endpoint(url);
    }
    let mut exporter = builder.build()?;
    // OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over the default name, as in any SDK.
    let service = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "pgshape".to_owned());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    exporter.set_resource(&resource);

    tracing::info!(
        endpoint = config
            .traces_url()
            .as_deref()
            .unwrap_or("from OTEL_EXPORTER_OTLP_*"),
        sample_untraced = config.sample_untraced,
        "exporting statement spans (OTLP/HTTP)"
    );
    let (tx, rx) = sync_channel(config.queue_size);
    let batch_size = config.batch_size;
    let delay = config.batch_delay();
    let thread = std::thread::Builder::new()
        .name("pgshape-otlp".into())
        .spawn(move || run(&rx, &exporter, &context, batch_size, delay))
        .map_err(ExportError::Thread)?;
    Ok((
        SpanObserver::new(tx.clone(), dropped, config.sample_untraced),
        SpanExport { queue: tx, thread },
    ))
}

fn run(
    rx: &Receiver<Message>,
    exporter: &opentelemetry_otlp::SpanExporter,
    context: &ExportContext,
    batch_size: usize,
    delay: Duration,
) {
    let mut spans = Spans::new(context);
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        // Idle, the thread sleeps until a span comes.
        let mut closed = false;
        match rx.recv() {
            Ok(Message::Span(record)) => batch.extend(spans.make(&record)),
            Ok(Message::Stop) | Err(_) => closed = true,
        }
        // Then it collects by polling, not by being woken per span: a wake-up per statement
        // was a context switch per statement on the workers' cores.
        let deadline = Instant::now() + delay;
        while !closed && batch.len() < batch_size {
            match rx.try_recv() {
                Ok(Message::Span(record)) => batch.extend(spans.make(&record)),
                Ok(Message::Stop) | Err(TryRecvError::Disconnected) => closed = true,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    std::thread::sleep(POLL.min(deadline - now));
                }
            }
        }
        if batch.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        let spans = batch.len();
        // A full-sized batch for the next round: growing one span by span moved every span
        // again at each doubling.
        let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
        if let Err(error) = block_on(exporter.export(full)) {
            tracing::warn!(%error, spans, "span export failed; the batch is dropped");
        }
        if closed {
            return;
        }
    }
}

/// Turns queued records into spans, on the export thread.
struct Spans<'a> {
    context: &'a ExportContext,
    info: SpanContextInfo,
    ids: RandomIdGenerator,
    shapes: ShapeCache,
}

impl<'a> Spans<'a> {
    fn new(context: &'a ExportContext) -> Spans<'a> {
        Spans {
            context,
            info: SpanContextInfo::new(context.server.as_ref().map(|(h, p)| (h.as_str(), *p))),
            ids: RandomIdGenerator::default(),
            shapes: ShapeCache::default(),
        }
    }

    /// `None` for a traceparent whose ids are invalid: the hot path checked only its layout.
    fn make(&mut self, record: &SpanRecord) -> Option<opentelemetry_sdk::trace::SpanData> {
        let parent = record.parent.resolve()?;
        let now = (SystemTime::now(), Instant::now());
        let shape = self.shapes.get(record, self.context, now.1);
        Some(to_span_data(
            record,
            parent,
            self.ids.new_span_id(),
            record.times(now),
            &shape,
            &self.info,
        ))
    }
}

/// Per fingerprint, the attributes of its spans that depend only on the shape. Normalizing is
/// the costly part of a span and shapes repeat, so it is done once per shape (bounded: cleared
/// when full, as a workload's shapes come back at once).
#[derive(Default)]
struct ShapeCache {
    shapes: HashMap<Fingerprint, (ShapeAttributes, Instant)>,
}

impl ShapeCache {
    fn get(
        &mut self,
        record: &SpanRecord,
        context: &ExportContext,
        now: Instant,
    ) -> std::borrow::Cow<'_, ShapeAttributes> {
        let statement = &record.statement;
        let text = || -> Arc<str> { normalize(&statement.sql, context.max_query_length).into() };
        let Some(fp) = statement.fingerprint else {
            return std::borrow::Cow::Owned(ShapeAttributes::new(text(), None, &*context.rules_of));
        };
        if self.shapes.len() >= SHAPE_CACHE && !self.shapes.contains_key(&fp) {
            self.shapes.clear();
        }
        let (shape, rules_at) = self.shapes.entry(fp).or_insert_with(|| {
            (
                ShapeAttributes::new(text(), Some(fp), &*context.rules_of),
                now,
            )
        });
        if now.saturating_duration_since(*rules_at) >= RULES_REFRESH {
            shape.rule_hits = rule_hits((context.rules_of)(fp));
            *rules_at = now;
        }
        std::borrow::Cow::Borrowed(shape)
    }
}

/// Runs the export future on this thread. The blocking HTTP client does its I/O inside the
/// first poll, so this rarely parks; no async runtime is needed (and a tokio one would refuse
/// the blocking client).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::{ExportContext, RULES_REFRESH, ShapeCache, Spans};
    use crate::event::StatementText;
    use crate::otel::span::{InlineStr, RawParent, SpanRecord};
    use crate::sql::fingerprint;

    fn record(sql: &str) -> SpanRecord {
        SpanRecord {
            parent: RawParent::Root(opentelemetry::trace::TraceId::from(1)),
            statement: Arc::new(StatementText {
                sql: Bytes::copy_from_slice(sql.as_bytes()),
                fingerprint: Some(fingerprint(sql.as_bytes())),
                rewritten_by: None,
                shadow: None,
                bind: Default::default(),
            }),
            database: InlineStr::new("shop"),
            finished_at: Instant::now(),
            duration: Duration::from_millis(1),
            rows: 1,
            command: InlineStr::new("SELECT"),
            sqlstate: None,
        }
    }

    #[test]
    fn a_shape_is_normalized_once_and_its_rule_hits_refreshed() {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let context = ExportContext {
            server: None,
            max_query_length: 2048,
            // No hit at first; one once the shape has run a while (as n+1 hits).
            rules_of: Box::new(move |_| {
                if counter.fetch_add(1, Ordering::Relaxed) == 0 {
                    vec![]
                } else {
                    vec!["n-plus-one".to_owned()]
                }
            }),
        };
        let mut cache = ShapeCache::default();
        let now = Instant::now();
        let first = cache
            .get(&record("SELECT 1 AS a"), &context, now)
            .into_owned();
        assert_eq!(&*first.query, "SELECT $1 AS a");
        assert!(first.rule_hits.is_empty());
        // Another execution with other constants: the same shape, nothing asked again.
        let again = cache
            .get(&record("SELECT 2 AS a"), &context, now)
            .into_owned();
        assert!(Arc::ptr_eq(&first.query, &again.query), "normalized once");
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        let later = cache.get(&record("SELECT 3 AS a"), &context, now + RULES_REFRESH);
        assert_eq!(later.rule_hits.len(), 1);
        assert_eq!(later.rule_hits[0].as_str(), "n-plus-one");
        assert_eq!(asked.load(Ordering::Relaxed), 2);
    }

    /// The hot path queues any traceparent laid out right; the export side must make no span of
    /// one whose ids are invalid, and the parent's and the clock's of a valid one.
    #[test]
    fn records_become_spans_only_under_valid_ids() {
        let context = ExportContext {
            server: None,
            max_query_length: 2048,
            rules_of: Box::new(|_| vec![]),
        };
        let mut spans = Spans::new(&context);
        let traced = |tp: &str| {
            let (parent, sampled) = RawParent::check(tp).expect("laid out right");
            assert!(sampled);
            SpanRecord {
                parent,
                ..record("SELECT 1")
            }
        };
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319x-b7ad6b7169203331-01",
        ] {
            assert!(spans.make(&traced(bad)).is_none(), "{bad}");
        }
        let ok = traced("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let before = std::time::SystemTime::now();
        let span = spans.make(&ok).expect("a span");
        assert_eq!(
            span.parent_span_id,
            opentelemetry::trace::SpanId::from(0xb7ad6b7169203331)
        );
        assert_eq!(
            span.span_context.trace_id(),
            opentelemetry::trace::TraceId::from(0x0af7651916cd43dd8448eb211c80319c)
        );
        assert_eq!(
            span.end_time.duration_since(span.start_time).unwrap(),
            Duration::from_millis(1)
        );
        // The record's monotonic end, in wall-clock time: just now, not in the future.
        assert!(span.end_time <= std::time::SystemTime::now());
        assert!(span.end_time + Duration::from_secs(1) > before);
    }
}
