//! One client session: start-up (SSL/GSS negotiation, cancel requests, the StartupMessage),
//! the upstream connection, then the two pumps until either side leaves.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_rustls::TlsAcceptor;

use super::metrics::ProxyMetrics;
use super::pump::{self, Action, FrameHandler, PumpEnd, PumpError, Side};
use super::stream::{ClientStream, ServerStream};
use super::tracker::{ClientAction, ServerAction, Tracker};
use super::upstream::{Upstream, UpstreamError};
use crate::config::Config;
use crate::event::{Observers, SessionInfo, StatementGate};
use crate::protocol::backend::{BackendMessage, strip_channel_binding};
use crate::protocol::frontend::{FrontendMessage, SaslInitialResponse};
use crate::protocol::startup::{self, StartupPacket};
use crate::protocol::{ProtocolError, encode};
use crate::sql::FingerprintCache;
use crate::with_halves;

/// A client that has not finished its StartupMessage by then is dropped, so a silent
/// connection cannot hold a slot (PostgreSQL's `authentication_timeout` default).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// What every session of a proxy shares.
pub(crate) struct Shared {
    pub config: Config,
    pub upstream: Upstream,
    pub tls: Option<TlsAcceptor>,
    pub observers: Observers,
    pub gate: Option<Arc<dyn StatementGate>>,
    pub metrics: ProxyMetrics,
    pub fingerprints: Option<Arc<FingerprintCache>>,
}

/// Where the session stands in the protocol. Only the transitions the proxy acts on are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between StartupMessage and the first ReadyForQuery.
    Authenticating,
    /// The server sent AuthenticationSASL; the client's next `p` is SASLInitialResponse.
    SaslInitial,
    /// Authenticated; queries flow.
    Ready,
}

struct SessionState {
    tracker: Tracker,
    phase: Phase,
    server_tls: bool,
    /// The BackendKeyData body (process id, secret key), to cancel a statement on shutdown.
    cancel_key: Option<Vec<u8>>,
}

/// Serves one accepted connection to its end. Never panics on peer input; every failure is
/// logged and, where the client can still read, answered with an ErrorResponse.
pub(crate) async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    shared.metrics.client_connections_active.inc();
    shared.metrics.client_connections_total.inc();
    let result = run(socket, peer, &shared, permit, shutdown).await;
    shared.metrics.client_connections_active.dec();
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "session ended");
    }
}

/// How a session's start-up ended.
enum Opening {
    Session {
        client: ClientStream,
        packet: BytesMut,
        leftover: BytesMut,
    },
    Done,
}

async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    permit: Option<OwnedSemaphorePermit>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PumpError> {
    // Shutdown does not wait for a client that has not even sent its StartupMessage.
    let mut stop = shutdown.clone();
    let opening = tokio::select! {
        opened = tokio::time::timeout(STARTUP_TIMEOUT, open(socket, shared)) => match opened {
            Ok(result) => result?,
            Err(_) => return Ok(()),
        },
        // A dropped sender (no shutdown will come) disables this branch.
        Ok(_) = stop.wait_for(|stopping| *stopping) => return Ok(()),
    };
    let Opening::Session {
        mut client,
        packet,
        leftover,
    } = opening
    else {
        return Ok(());
    };
    let Ok(StartupPacket::Startup(message)) = startup::decode(&packet) else {
        return Ok(());
    };
    if permit.is_none() {
        shared.metrics.client_connections_refused.inc();
        let _ = client
            .write_all_flush(&encode::error_response(
                "FATAL",
                "53300",
                "sorry, too many clients already",
                Some("pgshape's max_client_connections is reached"),
            ))
            .await;
        return Ok(());
    }
    let text = |name: &str| {
        message
            .param(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let user = text("user").unwrap_or_default();
    let info = SessionInfo {
        database: text("database").unwrap_or_else(|| user.clone()),
        application_name: text("application_name").unwrap_or_default(),
        user,
        client_addr: Some(peer),
    };
    let mut server = match shared
        .upstream
        .connect(shared.config.connect_timeout())
        .await
    {
        Ok(server) => server,
        Err(error) => {
            shared.metrics.upstream_connect_errors.inc();
            tracing::warn!(%peer, %error, "upstream connect failed");
            let _ = client
                .write_all_flush(&encode::error_response(
                    "FATAL",
                    "08006",
                    &format!("pgshape: {error}"),
                    None,
                ))
                .await;
            return Ok(());
        }
    };
    shared.metrics.server_connections_active.inc();
    shared.metrics.server_connections_total.inc();
    let result = relay(
        &mut client,
        &mut server,
        packet,
        leftover,
        info,
        shared,
        shutdown,
    )
    .await;
    shared.metrics.server_connections_active.dec();
    result
}

/// Reads start-up packets until a StartupMessage, answering SSL/GSS requests and forwarding a
/// CancelRequest.
async fn open(socket: TcpStream, shared: &Shared) -> Result<Opening, PumpError> {
    let mut tcp = socket;
    let mut buf = BytesMut::with_capacity(1024);
    let client_err = |source| PumpError::Io {
        side: Side::Client,
        source,
    };
    loop {
        let packet = match read_startup_packet(&mut tcp, &mut buf).await {
            Ok(p) => p,
            Err(e) => return reject_plain(&mut tcp, e).await,
        };
        match startup::decode(&packet) {
            Ok(StartupPacket::SslRequest) => {
                let Some(acceptor) = &shared.tls else {
                    tcp.write_all(b"N").await.map_err(client_err)?;
                    continue;
                };
                if !buf.is_empty() {
                    // Bytes sent before the handshake would be read as if encrypted
                    // (CVE-2021-23214): refuse like PostgreSQL does.
                    return reject_plain(
                        &mut tcp,
                        PumpError::Protocol {
                            side: Side::Client,
                            error: ProtocolError::Malformed {
                                message: "SSLRequest",
                                reason: "data was sent after it, before the TLS handshake",
                            },
                        },
                    )
                    .await;
                }
                tcp.write_all(b"S").await.map_err(client_err)?;
                let tls = acceptor.accept(tcp).await.map_err(client_err)?;
                return open_tls(ClientStream::Tls(Box::new(tls)), buf, shared).await;
            }
            Ok(StartupPacket::GssEncRequest) => {
                tcp.write_all(b"N").await.map_err(client_err)?;
            }
            Ok(StartupPacket::CancelRequest { raw }) => {
                forward_cancel(raw, shared).await;
                return Ok(Opening::Done);
            }
            Ok(StartupPacket::Startup(_)) => {
                return Ok(Opening::Session {
                    client: ClientStream::Plain(tcp),
                    packet,
                    leftover: buf,
                });
            }
            Err(error) => {
                let error = PumpError::Protocol {
                    side: Side::Client,
                    error,
                };
                return reject_plain(&mut tcp, error).await;
            }
        }
    }
}

/// After the TLS handshake only a StartupMessage (or a CancelRequest) may follow.
async fn open_tls(
    mut client: ClientStream,
    mut buf: BytesMut,
    shared: &Shared,
) -> Result<Opening, PumpError> {
    let packet = match read_startup_client(&mut client, &mut buf).await {
        Ok(p) => p,
        Err(e) => return reject(&mut client, e).await,
    };
    match startup::decode(&packet) {
        Ok(StartupPacket::Startup(_)) => Ok(Opening::Session {
            client,
            packet,
            leftover: buf,
        }),
        Ok(StartupPacket::CancelRequest { raw }) => {
            forward_cancel(raw, shared).await;
            Ok(Opening::Done)
        }
        Ok(_) => {
            let error = PumpError::Protocol {
                side: Side::Client,
                error: ProtocolError::Malformed {
                    message: "StartupMessage",
                    reason: "encryption was requested again inside TLS",
                },
            };
            reject(&mut client, error).await
        }
        Err(error) => {
            let error = PumpError::Protocol {
                side: Side::Client,
                error,
            };
            reject(&mut client, error).await
        }
    }
}

async fn forward_cancel(raw: &[u8], shared: &Shared) {
    shared.metrics.cancel_requests.inc();
    if let Err(error) = shared
        .upstream
        .cancel(raw, shared.config.connect_timeout())
        .await
    {
        tracing::warn!(%error, "could not forward cancel request");
    }
}

fn fatal_for(error: &PumpError) -> Option<BytesMut> {
    match error {
        PumpError::Protocol { side, .. } => Some(encode::error_response(
            "FATAL",
            "08P01",
            &format!("pgshape: {error}"),
            (*side == Side::Client).then_some("the connection was closed by pgshape"),
        )),
        PumpError::ChannelBindingDowngrade => Some(encode::error_response(
            "FATAL",
            "28000",
            &format!("pgshape: {error}"),
            Some("connect with channel_binding=disable (pgshape terminates TLS)"),
        )),
        PumpError::Io { .. } => None,
    }
}

async fn reject_plain(tcp: &mut TcpStream, error: PumpError) -> Result<Opening, PumpError> {
    if let Some(fatal) = fatal_for(&error) {
        let _ = tcp.write_all(&fatal).await;
    }
    Err(error)
}

async fn reject(client: &mut ClientStream, error: PumpError) -> Result<Opening, PumpError> {
    if let Some(fatal) = fatal_for(&error) {
        let _ = client.write_all_flush(&fatal).await;
    }
    Err(error)
}

async fn read_startup_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> Result<BytesMut, PumpError> {
    let io = |source| PumpError::Io {
        side: Side::Client,
        source,
    };
    let protocol = |error| PumpError::Protocol {
        side: Side::Client,
        error,
    };
    pump::read_at_least(reader, buf, 4).await.map_err(io)?;
    let len = startup::packet_len(buf)
        .map_err(protocol)?
        .unwrap_or_default();
    pump::read_at_least(reader, buf, len).await.map_err(io)?;
    Ok(buf.split_to(len))
}

async fn read_startup_client(
    client: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, PumpError> {
    match client {
        ClientStream::Plain(s) => read_startup_packet(s, buf).await,
        ClientStream::Tls(s) => read_startup_packet(&mut **s, buf).await,
    }
}

/// The client side's view of frames: registers requests with the tracker before they are
/// forwarded, and checks the SCRAM channel-binding flag.
struct ClientFrames<'a> {
    state: &'a RefCell<SessionState>,
    metrics: &'a ProxyMetrics,
}

impl FrameHandler for ClientFrames<'_> {
    fn streams(&self, tag: u8) -> bool {
        tag == b'd'
    }

    fn on_streamed(&mut self, _tag: u8) -> Option<Bytes> {
        None
    }

    fn on_frame(&mut self, frame: &[u8], now: Instant) -> Result<Action, PumpError> {
        let protocol = |error| PumpError::Protocol {
            side: Side::Client,
            error,
        };
        match frame[0] {
            b'X' => Ok(Action::ForwardAndStop(PumpEnd::Terminated)),
            b'p' => {
                let mut state = self.state.borrow_mut();
                if state.phase == Phase::SaslInitial {
                    state.phase = Phase::Authenticating;
                    let sasl = SaslInitialResponse::decode(frame).map_err(protocol)?;
                    // `y`: the client could bind the channel but thinks the server cannot; a
                    // TLS server that offered -PLUS rejects that as a downgrade attack.
                    if sasl.gs2_flag == Some(b'y') && state.server_tls {
                        return Err(PumpError::ChannelBindingDowngrade);
                    }
                }
                Ok(Action::Forward)
            }
            b'Q' | b'P' | b'B' | b'E' | b'D' | b'C' | b'S' | b'F' => {
                let message = FrontendMessage::decode(frame).map_err(protocol)?;
                let action = self
                    .state
                    .borrow_mut()
                    .tracker
                    .on_client_message(&message, now);
                Ok(match action {
                    ClientAction::Forward => Action::Forward,
                    ClientAction::Replace(bytes) => Action::Replace(bytes),
                })
            }
            _ => Ok(Action::Forward),
        }
    }

    fn on_batch(&mut self, bytes: usize, frames: u64) {
        self.metrics.bytes_client_to_server.inc_by(bytes as u64);
        self.metrics.frames_client_to_server.inc_by(frames);
    }
}

/// The server side's view: feeds the tracker, strips `-PLUS` SASL mechanisms.
struct ServerFrames<'a> {
    state: &'a RefCell<SessionState>,
    metrics: &'a ProxyMetrics,
    statements_reported: u64,
}

impl FrameHandler for ServerFrames<'_> {
    fn streams(&self, tag: u8) -> bool {
        tag == b'D' || tag == b'd'
    }

    #[inline]
    fn on_streamed(&mut self, tag: u8) -> Option<Bytes> {
        if tag == b'D' {
            return self.state.borrow_mut().tracker.on_data_row();
        }
        None
    }

    fn on_frame(&mut self, frame: &[u8], now: Instant) -> Result<Action, PumpError> {
        let protocol = |error| PumpError::Protocol {
            side: Side::Server,
            error,
        };
        let message = BackendMessage::decode(frame).map_err(protocol)?;
        let mut state = self.state.borrow_mut();
        match message {
            BackendMessage::Authentication { code: 10 } => {
                state.phase = Phase::SaslInitial;
                return Ok(match strip_channel_binding(frame).map_err(protocol)? {
                    Some(rewritten) => Action::Replace(rewritten),
                    None => Action::Forward,
                });
            }
            BackendMessage::ReadyForQuery { .. } => state.phase = Phase::Ready,
            BackendMessage::BackendKeyData => {
                state.cancel_key = Some(crate::protocol::frame::body(frame).to_vec());
            }
            _ => {}
        }
        Ok(match state.tracker.on_server_message(&message, now) {
            ServerAction::Forward => Action::Forward,
            ServerAction::Drop => Action::Replace(Vec::new()),
            ServerAction::Prepend(notice) => {
                let mut bytes = Vec::with_capacity(notice.len() + frame.len());
                bytes.extend_from_slice(&notice);
                bytes.extend_from_slice(frame);
                Action::Replace(bytes)
            }
        })
    }

    fn on_batch(&mut self, bytes: usize, frames: u64) {
        self.metrics.bytes_server_to_client.inc_by(bytes as u64);
        self.metrics.frames_server_to_client.inc_by(frames);
        let statements = self.state.borrow().tracker.statements();
        if statements > self.statements_reported {
            self.metrics
                .statements
                .inc_by(statements - self.statements_reported);
            self.statements_reported = statements;
        }
    }
}

enum Ended {
    Client(Result<PumpEnd, PumpError>),
    Server(Result<PumpEnd, PumpError>),
    Shutdown(Drain),
}

async fn relay(
    client: &mut ClientStream,
    server: &mut ServerStream,
    startup_packet: BytesMut,
    leftover: BytesMut,
    info: SessionInfo,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), PumpError> {
    let server_err = |source| PumpError::Io {
        side: Side::Server,
        source,
    };
    server
        .write_all_flush(&startup_packet)
        .await
        .map_err(server_err)?;
    // A server that accepted the connection but never speaks (hung, or another service on that
    // port) must not hold the client until the client's own timeout: its first answer is due
    // within the connect timeout, like the connect itself.
    let timeout = shared.config.connect_timeout();
    let mut first_answer = BytesMut::new();
    match tokio::time::timeout(timeout, server.read_buf(&mut first_answer)).await {
        Ok(read) => {
            read.map_err(server_err)?;
        }
        Err(_) => {
            let error = UpstreamError::NoAnswer {
                target: shared.upstream.target(),
                timeout,
            };
            shared.metrics.upstream_connect_errors.inc();
            tracing::warn!(%error, "upstream did not answer the startup message");
            let message = format!("pgshape: {error}");
            let fatal = encode::error_response("FATAL", "08006", &message, None);
            let _ = client.write_all_flush(&fatal).await;
            server.shutdown().await;
            client.shutdown().await;
            return Ok(());
        }
    }
    let state = RefCell::new(SessionState {
        tracker: Tracker::with_gate(
            info,
            shared.observers.clone(),
            shared.fingerprints.clone(),
            shared.gate.as_ref().map(|g| g.open_session()),
        ),
        phase: Phase::Authenticating,
        server_tls: server.is_tls(),
        cancel_key: None,
    });
    let max_frame = shared.config.max_frame_size;
    let mut client_frames = ClientFrames {
        state: &state,
        metrics: &shared.metrics,
    };
    let mut server_frames = ServerFrames {
        state: &state,
        metrics: &shared.metrics,
        statements_reported: 0,
    };
    let ended = with_halves!(client, ClientStream, |client_read, client_write| {
        with_halves!(server, ServerStream, |server_read, server_write| {
            let mut client_read = client_read;
            let mut client_write = client_write;
            let mut server_read = server_read;
            let mut server_write = server_write;
            tokio::select! {
                r = pump::run(Side::Client, &mut client_read, &mut server_write, leftover, max_frame, &mut client_frames) => Ended::Client(r),
                r = pump::run(Side::Server, &mut server_read, &mut client_write, first_answer, max_frame, &mut server_frames) => Ended::Server(r),
                drain = drained(&state, &mut shutdown, shared.config.shutdown_grace()) => Ended::Shutdown(drain),
            }
        })
    });
    let error = match ended {
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
                tracing::warn!("shutdown grace period over; cancelling the running statement");
                forward_cancel(&cancel_request(&key), shared).await;
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
        Ended::Client(Err(e)) | Ended::Server(Err(e)) => Some(e),
    };
    if let Some(error) = error {
        if let PumpError::Protocol { side, .. } = &error {
            shared
                .metrics
                .protocol_errors
                .with_label_values(&[side.label()])
                .inc();
            tracing::warn!(%error, "closing session on protocol error");
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
    Ok(())
}

/// How a session's shutdown wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    /// Nothing was in flight: close now.
    Idle,
    /// Requests were still in flight when the grace period ended.
    GraceOver,
}

/// Completes once shutdown was requested and the session has no request in flight, so a
/// running statement is not cut off by a graceful shutdown — or when `grace` has passed.
async fn drained(
    state: &RefCell<SessionState>,
    shutdown: &mut watch::Receiver<bool>,
    grace: Duration,
) -> Drain {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        if state.borrow().tracker.is_idle() {
            return Drain::Idle;
        }
        if tokio::time::Instant::now() >= deadline {
            return Drain::GraceOver;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
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
