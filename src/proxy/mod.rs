//! The proxy: listener, per-core workers, sessions and the statement tracker.
//!
//! Threading: one acceptor thread hands each new connection, round-robin, to one of N worker
//! threads; each worker runs a single-threaded tokio runtime and owns its sessions for their
//! whole life. A session's two directions therefore share state through a `RefCell` with no lock,
//! and no connection ever migrates between cores (measured before writing this: a relay on
//! tokio's work-stealing runtime reached ~0.9× pgbouncer, a current-thread one ~1.0×). The
//! workers' runtimes drive sockets only; every timer of the proxy lives on one more thread
//! (see `proxy/timer.rs`).

pub mod auth;
mod establish;
mod frames;
pub mod intercept;
pub mod keepalive;
pub mod limits;
pub mod metrics;
pub mod pump;
mod relay;
mod reuse;
mod session;
mod startup;
pub mod stream;
mod timer;
pub mod tls;
pub mod tracker;
pub mod upstream;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::config::Config;
use crate::event::{Observers, StatementGate};
use crate::sql::FingerprintCache;
pub use metrics::ProxyMetrics;
use session::Shared;

/// Errors starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start worker threads: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("tls_cert and tls_key must be given together")]
    TlsHalfConfigured,
    #[error(transparent)]
    Auth(#[from] auth::AuthSetupError),
}

/// Statement texts whose fingerprint is remembered (at most ~2 KiB each, so ≤ 20 MiB).
const FINGERPRINT_CACHE_ENTRIES: usize = 10_000;

/// How often each worker closes the server connections kept idle too long.
const REUSE_SWEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// How long after the grace period a worker still waits for its sessions to close themselves.
const BACKSTOP: std::time::Duration = std::time::Duration::from_secs(2);

type Handoff = (
    std::net::TcpStream,
    SocketAddr,
    Option<OwnedSemaphorePermit>,
);

/// A running proxy. Dropping it without [`Proxy::shutdown`] leaves its threads running until the
/// process exits.
pub struct Proxy {
    local_addr: SocketAddr,
    client_cert: Option<Arc<tls::ClientCert>>,
    upstream: upstream::Upstream,
    metrics: ProxyMetrics,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

/// Everything a proxy is started with besides its [`Config`].
pub struct ProxyBuilder {
    config: Config,
    observers: Observers,
    gate: Option<Arc<dyn StatementGate>>,
    metrics: ProxyMetrics,
    fingerprinting: bool,
}

impl ProxyBuilder {
    /// Observers that receive every finished statement.
    pub fn observers(mut self, observers: Observers) -> Self {
        self.observers = observers;
        self
    }

    /// Rules consulted before every statement execution.
    pub fn gate(mut self, gate: Arc<dyn StatementGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Metrics to update (the caller registers them with its registry).
    pub fn metrics(mut self, metrics: ProxyMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Whether statements are fingerprinted (off when statistics and rules are off).
    pub fn fingerprinting(mut self, on: bool) -> Self {
        self.fingerprinting = on;
        self
    }

    /// Binds the listener and starts the acceptor and worker threads.
    ///
    /// # Errors
    /// The listen address cannot be bound, the upstream or TLS settings are invalid.
    pub fn start(self) -> Result<Proxy, ProxyError> {
        let ProxyBuilder {
            config,
            observers,
            gate,
            metrics,
            fingerprinting,
        } = self;
        let upstream = upstream::Upstream::from_config(&config)?;
        let (tls, client_cert) = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let (acceptor, pair) = tls::acceptor(cert, key)?;
                (Some(acceptor), Some(pair))
            }
            (None, None) => (None, None),
            _ => return Err(ProxyError::TlsHalfConfigured),
        };
        let auth = match config.auth.mode {
            auth::AuthMode::Passthrough => None,
            auth::AuthMode::ScramProxy => Some(Arc::new(auth::ScramProxy::new(
                &config.auth,
                client_cert.clone(),
            )?)),
        };
        let listener =
            std::net::TcpListener::bind(&config.listen).map_err(|source| ProxyError::Bind {
                addr: config.listen.clone(),
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(ProxyError::Runtime)?;
        let local_addr = listener.local_addr().map_err(ProxyError::Runtime)?;
        timer::start().map_err(ProxyError::Runtime)?;
        let workers = config.worker_count();
        let limit = Arc::new(Semaphore::new(config.max_client_connections));
        let shared = Arc::new(Shared {
            connections: Arc::default(),
            upstream,
            tls,
            auth,
            observers,
            gate,
            metrics: metrics.clone(),
            fingerprints: fingerprinting
                .then(|| Arc::new(FingerprintCache::new(FINGERPRINT_CACHE_ENTRIES))),
            config,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(workers + 1);
        let mut senders = Vec::with_capacity(workers);
        for index in 0..workers {
            let (tx, rx) = mpsc::unbounded_channel::<Handoff>();
            senders.push(tx);
            let shared = shared.clone();
            let shutdown_rx = shutdown_rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("pgshape-worker-{index}"))
                .spawn(move || worker(rx, shared, shutdown_rx))
                .map_err(ProxyError::Runtime)?;
            threads.push(thread);
        }
        let accept_shutdown = shutdown_rx.clone();
        let thread = std::thread::Builder::new()
            .name("pgshape-accept".into())
            .spawn(move || acceptor(listener, senders, limit, accept_shutdown))
            .map_err(ProxyError::Runtime)?;
        threads.push(thread);
        tracing::info!(listen = %local_addr, workers, "pgshape listening");
        Ok(Proxy {
            local_addr,
            client_cert,
            upstream: shared.upstream.clone(),
            metrics,
            shutdown,
            threads,
        })
    }
}

impl Proxy {
    /// A builder for a proxy with observers, rules and metrics.
    pub fn builder(config: Config) -> ProxyBuilder {
        ProxyBuilder {
            config,
            observers: Arc::new([]),
            gate: None,
            metrics: ProxyMetrics::new(),
            fingerprinting: true,
        }
    }

    /// Starts a proxy reporting to `observers`, with no rules.
    ///
    /// # Errors
    /// See [`ProxyBuilder::start`].
    pub fn start(config: Config, observers: Observers) -> Result<Proxy, ProxyError> {
        Self::builder(config).observers(observers).start()
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where sessions connect to, as resolved from the config.
    pub fn upstream(&self) -> &upstream::Upstream {
        &self.upstream
    }

    pub fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// Re-reads `tls_cert` and `tls_key` (SIGHUP): new client handshakes get the new pair,
    /// sessions already open keep theirs. `Ok(false)` when client TLS is off.
    ///
    /// # Errors
    /// The files cannot be read or do not match; the pair in use stays.
    pub fn reload_tls(&self) -> Result<bool, tls::TlsError> {
        match &self.client_cert {
            Some(pair) => pair.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Stops accepting, lets sessions finish their running statements for up to the grace
    /// period, then closes what is left. Blocks until every thread has ended.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

fn acceptor(
    listener: std::net::TcpListener,
    workers: Vec<mpsc::UnboundedSender<Handoff>>,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the acceptor runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(error) => {
                tracing::error!(%error, "cannot register the listener");
                return;
            }
        };
        let mut next = 0usize;
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    timer::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let permit = limit.clone().try_acquire_owned().ok();
            let Ok(stream) = stream.into_std() else {
                continue;
            };
            if workers[next % workers.len()]
                .send((stream, peer, permit))
                .is_err()
            {
                break;
            }
            next = next.wrapping_add(1);
        }
        // Dropping the senders tells the workers no more sessions will come.
    });
}

fn worker(
    mut handoff: mpsc::UnboundedReceiver<Handoff>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    // Sockets only: the signal and process drivers would be polled at every park (a wake-up
    // per statement) for nothing, and so would the time driver (the proxy's timers run on
    // their own thread, see `timer`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start a worker runtime");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    // The LocalSet polls the future it is blocked on at every wake-up of any session: that
    // future only reads a flag, so the worker's own loop is polled only when a handoff,
    // a finished session or shutdown wakes it (polled inline, it was ~15% of the relay's
    // instructions; a join handle's poll was still ~200 per statement).
    let finished = Rc::new(Finished::default());
    let done = FinishOnDrop(finished.clone());
    local.spawn_local(async move {
        let _done = done;
        let mut sessions = tokio::task::JoinSet::new();
        let mut stop = shutdown.clone();
        let mut stopping = false;
        let reuse = shared.config.reuse_server_connections;
        let mut sweep = timer::interval(REUSE_SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sweep.tick(), if reuse => {
                    let idle = &shared.metrics.server_connections_idle;
                    reuse::sweep(shared.config.server_idle_timeout(), idle);
                }
                // Relaying sessions learn of shutdown from this worker, not from a watch each.
                true = async { stop.wait_for(|stopping| *stopping).await.is_ok() }, if !stopping => {
                    stopping = true;
                    relay::begin_shutdown();
                }
                next = handoff.recv() => {
                    let Some((stream, peer, permit)) = next else { break };
                    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { continue };
                    sessions.spawn_local(session::serve(
                        stream,
                        peer,
                        shared.clone(),
                        permit,
                        shutdown.clone(),
                    ));
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        reuse::clear(&shared.metrics.server_connections_idle);
        // The acceptor closing the handoff channel (it does so at shutdown) may end the loop
        // before the watch branch above ran.
        if !stopping {
            relay::begin_shutdown();
        }
        // Sessions end themselves at the grace period (cancelling what still runs); this is
        // the backstop for one stuck in a write to a client that stopped reading.
        let grace = timer::sleep(shared.config.shutdown_grace() + BACKSTOP);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = sessions.join_next() => if next.is_none() { break },
                () = &mut grace => {
                    tracing::warn!(remaining = sessions.len(), "grace period over, closing sessions");
                    sessions.abort_all();
                    while sessions.join_next().await.is_some() {}
                    break;
                }
            }
        }
    });
    local.block_on(&runtime, std::future::poll_fn(|cx| finished.poll(cx)));
}

/// That a worker's own loop has ended, for the LocalSet to wait on.
#[derive(Default)]
struct Finished {
    done: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Finished {
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done.get() {
            return Poll::Ready(());
        }
        let mut waker = self.waker.borrow_mut();
        if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Held by a worker's loop: however the loop ends (returns or panics), the worker stops waiting.
struct FinishOnDrop(Rc<Finished>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.done.set(true);
        if let Some(waker) = self.0.waker.take() {
            waker.wake();
        }
    }
}
