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
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SpanExporter as _};

use super::span::{SpanContextInfo, SpanRecord, to_span_data};
use super::{SpanObserver, TracingConfig};
use crate::sql::{Fingerprint, normalize};

/// Normalized texts kept by the export thread.
const TEXT_CACHE: usize = 4096;
/// How often a filling batch looks at the queue: at 100k statements/s, 1000 spans queue
/// meanwhile, well under the default `queue_size`.
const POLL: std::time::Duration = std::time::Duration::from_millis(10);

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
    delay: std::time::Duration,
) {
    let ids = RandomIdGenerator::default();
    let info = SpanContextInfo {
        server: context.server.as_ref().map(|(h, p)| (h.as_str(), *p)),
        rules_of: &*context.rules_of,
    };
    // Normalizing is the costly part of a span; shapes repeat, so their text is kept (bounded:
    // cleared when full, as a workload's shapes come back at once).
    let mut texts: HashMap<Fingerprint, Arc<str>> = HashMap::new();
    let mut span = |record: &SpanRecord| {
        let text = match record.statement.fingerprint {
            Some(fp) => {
                if texts.len() >= TEXT_CACHE && !texts.contains_key(&fp) {
                    texts.clear();
                }
                texts
                    .entry(fp)
                    .or_insert_with(|| {
                        normalize(&record.statement.sql, context.max_query_length).into()
                    })
                    .clone()
            }
            None => normalize(&record.statement.sql, context.max_query_length).into(),
        };
        to_span_data(record, ids.new_span_id(), &text, &info)
    };
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        // Idle, the thread sleeps until a span comes.
        let mut closed = false;
        match rx.recv() {
            Ok(Message::Span(record)) => batch.push(span(&record)),
            Ok(Message::Stop) | Err(_) => closed = true,
        }
        // Then it collects by polling, not by being woken per span: a wake-up per statement
        // was a context switch per statement on the workers' cores.
        let deadline = Instant::now() + delay;
        while !closed && batch.len() < batch_size {
            match rx.try_recv() {
                Ok(Message::Span(record)) => batch.push(span(&record)),
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
        if let Err(error) = block_on(exporter.export(std::mem::take(&mut batch))) {
            tracing::warn!(%error, spans, "span export failed; the batch is dropped");
        }
        if closed {
            return;
        }
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
