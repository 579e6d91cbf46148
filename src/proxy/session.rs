//! One client session from accept to close: start-up (see [`super::startup`] and
//! [`super::establish`]), the relay of both directions (see [`super::relay`] and
//! [`super::frames`]) until either side leaves, and graceful shutdown.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::TlsAcceptor;

use super::auth::ScramProxy;
use super::establish::{Established, Greeted, Handover, Who, establish, greet};
use super::frames::{ClientFrames, Phase, ServerFrames, SessionState};
use super::keepalive::Keepalive;
use super::limits::ConnectionCounts;
use super::metrics::ProxyMetrics;
use super::pump::{PumpEnd, PumpError, Side};
use super::relay::{Direction, Drain, DrainWait};
use super::startup::{fatal_for, forward_cancel};
use super::stream::{ClientStream, ServerStream};
use super::timer;
use super::upstream::Upstream;
use crate::config::Config;
use crate::event::{Observers, StatementGate};
use crate::protocol::encode;
use crate::sql::FingerprintCache;

/// What every session of a proxy shares.
pub(crate) struct Shared {
    pub config: Config,
    /// Live sessions per database and user, for the per-database/per-user limits.
    pub connections: Arc<ConnectionCounts>,
    pub upstream: Upstream,
    pub tls: Option<TlsAcceptor>,
    /// `scram_proxy`: pgshape authenticates clients itself.
    pub auth: Option<Arc<ScramProxy>>,
    pub observers: Observers,
    pub gate: Option<Arc<dyn StatementGate>>,
    pub metrics: ProxyMetrics,
    pub fingerprints: Option<Arc<FingerprintCache>>,
}

/// Serves one accepted connection to its end. Never panics on peer input; every failure is
/// logged and, where the client can still read, answered with an ErrorResponse.
///
/// Not an `async fn`, and the connection reaches [`run`] boxed: an async fn keeps each argument's
/// slot (and each local's, moved out or not) for its whole life, and this future is every
/// session's task, idle ones included (bench/run `idle`, `session_future_size`).
pub(crate) fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> {
    let _ = socket.set_nodelay(true);
    if let Some(keepalive) = Keepalive::from_config(&shared.config) {
        keepalive.apply(&socket);
    }
    shared.metrics.client_connections_active.inc();
    shared.metrics.client_connections_total.inc();
    run(
        Box::new(Accepted {
            socket,
            peer,
            permit,
            shutdown,
        }),
        shared,
    )
}

/// A connection as the listener hands it over.
pub(super) struct Accepted {
    pub(super) socket: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) shutdown: watch::Receiver<bool>,
}

async fn run(accepted: Box<Accepted>, shared: Arc<Shared>) {
    let peer = accepted.peer;
    let result = session(accepted, &shared).await;
    shared.metrics.client_connections_active.dec();
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "session ended");
    }
}

async fn session(accepted: Box<Accepted>, shared: &Shared) -> Result<(), PumpError> {
    // Bound in the pattern, not through a local: a moved-from local keeps its storage.
    let Some(Established {
        mut client,
        mut server,
        handover,
        startup_key,
        _counted,
        _permit,
    }) = Box::pin(establish(accepted, shared)).await?
    else {
        return Ok(());
    };
    shared.metrics.server_connections_active.inc();
    let result = relay(&mut client, &mut server, handover, shared).await;
    shared.metrics.server_connections_active.dec();
    match (result, startup_key) {
        (Ok(Some(kept)), Some(key)) => {
            Box::pin(keep_server(server, kept, &key, shared)).await;
            Ok(())
        }
        (Ok(_), _) => Ok(()),
        (Err(error), _) => Err(error),
    }
}

/// Parks a reset server connection for the next client, or closes it when the worker keeps
/// enough already.
async fn keep_server(server: ServerStream, kept: Kept, key: &[u8], shared: &Shared) {
    let parked = super::reuse::Parked::new(server, kept.greeting, kept.cancel_key);
    let limit = shared.config.max_idle_server_connections;
    let idle = &shared.metrics.server_connections_idle;
    if let Err(full) = super::reuse::park(key, parked, limit, idle) {
        full.close().await;
    }
}

/// A server connection the session leaves reset and idle, for the next client.
struct Kept {
    greeting: Vec<u8>,
    cancel_key: Option<Vec<u8>>,
}

enum Ended {
    Client(Result<PumpEnd, PumpError>),
    Server(Result<PumpEnd, PumpError>),
    Shutdown(Drain),
    /// The client was idle outside a transaction for `idle_client_timeout`.
    IdleTimeout,
}

async fn relay(
    client: &mut ClientStream,
    server: &mut ServerStream,
    handover: Box<Handover>,
    shared: &Shared,
) -> Result<Option<Kept>, PumpError> {
    // Boxed for the reason `serve` gives: the greeting's locals are dead once it is done.
    // Bound in the pattern, not through a local: a moved-from local keeps its storage.
    let Some(Greeted {
        state,
        who,
        leftover,
        first_answer,
        keep,
        replication,
    }) = Box::pin(greet(client, server, handover, shared)).await?
    else {
        return Ok(None);
    };
    let max_frame = shared.config.max_frame_size;
    let client_frames = ClientFrames {
        state: &state,
        metrics: &shared.metrics,
    };
    let server_frames = ServerFrames {
        state: &state,
        metrics: &shared.metrics,
        statements_reported: 0,
    };
    let ended = Relay {
        client: &mut *client,
        server: &mut *server,
        up: Direction::new(Side::Client, client_frames, max_frame, leftover),
        down: Direction::new(Side::Server, server_frames, max_frame, first_answer),
        state: &state,
        drain: DrainWait::new(shared.config.shutdown_grace()),
        idle: shared.config.idle_client_timeout().map(IdleTimer::new),
    }
    .run(shared, &who, replication)
    .await;
    let error = match ended {
        Ended::Client(Ok(end)) if keep => {
            // The client's Terminate was kept from the server: reuse it, or end it here.
            let reusable = state.borrow().reusable();
            if reusable && Box::pin(super::reuse::start_reset(server)).await {
                client.shutdown().await;
                let mut state = state.into_inner();
                return Ok(Some(Kept {
                    greeting: state.greeting.take().unwrap_or_default(),
                    cancel_key: state.cancel_key.take(),
                }));
            }
            tracing::debug!(%who, ?end, reusable, "server connection not kept");
            let _ = server.write_all_flush(&encode::terminate()).await;
            None
        }
        Ended::Client(Ok(PumpEnd::Terminated)) => None,
        Ended::Client(Ok(PumpEnd::Eof)) => {
            // The client vanished without Terminate: end the backend cleanly.
            let _ = server.write_all_flush(&encode::terminate()).await;
            None
        }
        Ended::Server(Ok(_)) => None,
        Ended::Shutdown(drain) => {
            let cancel_key = state.borrow().cancel_key.clone();
            if let (Drain::GraceOver, Some(key)) = (drain, cancel_key) {
                // The statement still running would otherwise go on in the backend after its
                // client is gone: cancel it as the client's own Ctrl-C would.
                tracing::warn!(%who, "shutdown grace period over; cancelling the running statement");
                Box::pin(forward_cancel(&cancel_request(&key), shared)).await;
            }
            let hint = match drain {
                Drain::Idle => "pgshape is shutting down",
                Drain::GraceOver => {
                    "pgshape is shutting down; the running statement was cancelled at the end of the grace period"
                }
            };
            let _ = client
                .write_all_flush(&encode::error_response(
                    "FATAL",
                    "57P01",
                    "terminating connection due to administrator command",
                    Some(hint),
                ))
                .await;
            let _ = server.write_all_flush(&encode::terminate()).await;
            None
        }
        Ended::IdleTimeout => {
            shared
                .metrics
                .client_timeouts
                .with_label_values(&["idle"])
                .inc();
            tracing::info!(%who, timeout_ms = shared.config.idle_client_timeout_ms, "idle_client_timeout: closing an idle client");
            let hint = format!(
                "pgshape closes clients idle outside a transaction for {} ms (idle_client_timeout_ms)",
                shared.config.idle_client_timeout_ms
            );
            // PostgreSQL's own idle_session_timeout answer, so drivers treat it alike.
            let _ = client
                .write_all_flush(&encode::error_response(
                    "FATAL",
                    "57P05",
                    "terminating connection due to idle-session timeout",
                    Some(&hint),
                ))
                .await;
            let _ = server.write_all_flush(&encode::terminate()).await;
            None
        }
        Ended::Client(Err(e)) | Ended::Server(Err(e)) => Some(e),
    };
    if let Some(error) = error {
        if let PumpError::Protocol { side, .. } = &error {
            shared
                .metrics
                .protocol_errors
                .with_label_values(&[side.label()])
                .inc();
            tracing::warn!(%error, %who, "closing session on protocol error");
        }
        if let Some(fatal) = fatal_for(&error) {
            let _ = client.write_all_flush(&fatal).await;
        }
        let _ = server.write_all_flush(&encode::terminate()).await;
        server.shutdown().await;
        client.shutdown().await;
        return Err(error);
    }
    server.shutdown().await;
    client.shutdown().await;
    Ok(None)
}

/// Both directions of one session, driven by one future (see [`super::relay`]).
struct Relay<'a, 's> {
    client: &'a mut ClientStream,
    server: &'a mut ServerStream,
    up: Direction<ClientFrames<'s>>,
    down: Direction<ServerFrames<'s>>,
    state: &'s RefCell<SessionState>,
    drain: DrainWait,
    /// Boxed and only there when `idle_client_timeout` is on: every idle session's task
    /// carries this struct inline.
    idle: Option<Box<IdleTimer>>,
}

/// `idle_client_timeout`: armed whenever the session becomes idle outside a transaction (every
/// request answered, nothing half-sent, transaction status `I`), disarmed by any activity.
struct IdleTimer {
    timeout: Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl IdleTimer {
    fn new(timeout: Duration) -> Box<IdleTimer> {
        Box::new(IdleTimer {
            timeout,
            sleep: Box::pin(timer::sleep(timeout)),
            armed: false,
        })
    }

    /// Ready when the session has been `quiet` for the whole timeout.
    fn poll(&mut self, cx: &mut Context<'_>, quiet: bool) -> Poll<()> {
        if !quiet {
            self.armed = false;
            return Poll::Pending;
        }
        if !self.armed {
            self.armed = true;
            let deadline = tokio::time::Instant::now() + self.timeout;
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// What one stretch of relaying ended with.
enum Step {
    ClientEnded(Result<PumpEnd, PumpError>),
    ServerEnded(Result<PumpEnd, PumpError>),
    Shutdown(Drain),
    IdleTimeout,
    /// The client had left; the server has now answered everything.
    Idle,
}

impl Relay<'_, '_> {
    /// Relays both directions until one side leaves, shutdown, or an error.
    ///
    /// A client that leaves while the server still works on its statements (killed, timed out,
    /// connection reset, or only its sending side closed) does not end the session at once:
    /// the server's replies are still read until it is idle — forwarded while the client takes
    /// them, dropped once a write fails — so those statements are timed and counted; they are
    /// often the slowest ones, the reason the client gave up. The server is nudged so that it does
    /// not wait for the client: a CopyFail ends a COPY FROM STDIN and a Flush sends what an
    /// unsynced pipeline left buffered (both are ignored otherwise), and with
    /// `cancel_on_client_disconnect` the statement is cancelled.
    async fn run(mut self, shared: &Shared, who: &Who, replication: bool) -> Ended {
        let left = match std::future::poll_fn(|cx| self.poll_step(cx, true)).await {
            Step::ClientEnded(left) => left,
            Step::ServerEnded(end) => return Ended::Server(end),
            Step::Shutdown(drain) => return Ended::Shutdown(drain),
            Step::IdleTimeout => return Ended::IdleTimeout,
            Step::Idle => Ok(PumpEnd::Eof),
        };
        let vanished = matches!(
            left,
            Ok(PumpEnd::Eof)
                | Err(PumpError::Io {
                    side: Side::Client,
                    ..
                })
        );
        let busy = {
            let state = self.state.borrow();
            state.phase == Phase::Ready && !state.tracker.is_idle()
        };
        // After a Terminate behind running statements the server answers them, then closes.
        let terminated = matches!(left, Ok(PumpEnd::Terminated));
        // A client that left inside a frame (it streams, e.g. CopyData) left the server holding
        // part of it: anything more would be read as the rest, so just close.
        let mid_frame = self.state.borrow().client_mid_frame;
        if !(busy && (vanished || terminated)) || mid_frame || replication {
            return Ended::Client(left);
        }
        if vanished {
            // Replies are still forwarded: a client that only closed its sending side (a
            // half-close) reads them as it would from the server; for a client that is really
            // gone, the first failed write makes the server direction drop the rest.
            shared.metrics.client_disconnects_mid_statement.inc();
            let cancel = shared.config.cancel_on_client_disconnect;
            tracing::info!(
                cancel,
                %who,
                "client disconnected mid-statement; waiting for the server to finish it"
            );
            let mut nudge = encode::copy_fail("pgshape: the client disconnected");
            nudge.extend_from_slice(&encode::flush());
            if self.server.write_all_flush(&nudge).await.is_err() {
                return Ended::Client(left);
            }
            let cancel_key = self.state.borrow().cancel_key.clone();
            if let (true, Some(key)) = (cancel, cancel_key) {
                Box::pin(forward_cancel(&cancel_request(&key), shared)).await;
            }
        }
        match std::future::poll_fn(|cx| self.poll_step(cx, false)).await {
            Step::ServerEnded(end) => Ended::Server(end),
            Step::Shutdown(drain) => Ended::Shutdown(drain),
            Step::Idle | Step::IdleTimeout | Step::ClientEnded(_) => Ended::Client(left),
        }
    }

    /// One wake-up: both directions relay what they can, then the flags are read. With
    /// `client_open` false only the server's replies are still relayed, until it is idle.
    fn poll_step(&mut self, cx: &mut Context<'_>, client_open: bool) -> Poll<Step> {
        if client_open
            && let Poll::Ready(end) = self.up.poll_relay(cx, &mut *self.client, &mut *self.server)
        {
            return Poll::Ready(Step::ClientEnded(end));
        }
        if let Poll::Ready(end) = self
            .down
            .poll_relay(cx, &mut *self.server, &mut *self.client)
        {
            return Poll::Ready(Step::ServerEnded(end));
        }
        if client_open && self.down.peer_gone() {
            return Poll::Ready(Step::ClientEnded(Ok(PumpEnd::Eof)));
        }
        let idle =
            self.up.is_flushed() && self.down.is_flushed() && self.state.borrow().tracker.is_idle();
        if !client_open && idle {
            return Poll::Ready(Step::Idle);
        }
        if client_open && let Some(timer) = &mut self.idle {
            let quiet = idle && {
                let state = self.state.borrow();
                state.phase == Phase::Ready
                    && state.tracker.transaction_status() == b'I'
                    && !state.client_mid_frame
            };
            if timer.poll(cx, quiet).is_ready() {
                return Poll::Ready(Step::IdleTimeout);
            }
        }
        self.drain.poll(cx, idle).map(Step::Shutdown)
    }
}

/// A CancelRequest for the backend whose BackendKeyData body (process id and secret key) is
/// `key`.
fn cancel_request(key: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(8 + key.len());
    packet.extend_from_slice(&((8 + key.len()) as u32).to_be_bytes());
    packet.extend_from_slice(&80_877_102i32.to_be_bytes());
    packet.extend_from_slice(key);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle session costs mostly its task, whose future holds every state of `serve`
    /// inline: the budget behind bench/run's "idle connections ≤ 4 KiB" target.
    #[tokio::test]
    async fn session_future_size() {
        let config = Config::default();
        let shared = Arc::new(Shared {
            connections: Arc::default(),
            upstream: Upstream::from_config(&config).expect("default upstream"),
            tls: None,
            auth: None,
            observers: Arc::from(Vec::new()),
            gate: None,
            metrics: ProxyMetrics::new(),
            fingerprints: None,
            config,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (_tx, rx) = watch::channel(false);
        let future = serve(client, addr, shared.clone(), None, rx);
        let size = std::mem::size_of_val(&future);
        // 3,680 bytes before start-up, upstream connect and cancel were boxed; more than
        // this is a regression of every idle connection's cost.
        // 3,016 before scram_proxy, server connection reuse and the idle-client timer; 3,208
        // with them; 1,888 once the start-up's locals moved to boxed `establish` and `greet`
        // and the arguments were boxed (issue 10: idle connections <= 4 KiB).
        assert!(size <= 1_920, "the session future grew to {size} bytes");
    }
}
