//! Establishing a session: from the client's StartupMessage to a server connection that has
//! answered it. Limits, `scram_proxy` authentication, a fresh or kept server connection
//! ([`establish`]), then the server's side of start-up ([`greet`]). Both run as boxed futures
//! that are freed once they are done: only what the relay needs for the rest of the session
//! ([`Established`], [`Greeted`]) outlives them (bench/run `idle`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::OwnedSemaphorePermit;

use super::auth;
use super::frames::{Phase, SessionState};
use super::limits::Counted;
use super::pump::{PumpError, Side};
use super::session::{Accepted, Shared};
use super::startup::{Opening, open};
use super::stream::{ClientStream, ServerStream};
use super::timer;
use super::tracker::Tracker;
use super::upstream::UpstreamError;
use crate::event::SessionInfo;
use crate::protocol::encode;
use crate::protocol::scram::ProvenKeys;
use crate::protocol::startup::{self, StartupPacket};

/// Stands for "no login deadline" (`client_login_timeout_ms = 0`): far enough to never fire,
/// near enough for tokio's timer.
const NO_LOGIN_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// A session past start-up: the client logged in (or handed to the server to log in), a server
/// connection open. What the relay holds for the session's whole life, and nothing more: every
/// other local of start-up stays in [`establish`]'s boxed future, freed once it is done.
pub(super) struct Established {
    pub(super) client: ClientStream,
    pub(super) server: ServerStream,
    pub(super) handover: Box<Handover>,
    /// The key a kept server connection is filed under; only there when connections are kept.
    pub(super) startup_key: Option<Box<[u8]>>,
    /// The per-database/user count and the `max_client_connections` slot, held to the end.
    pub(super) _counted: Counted,
    pub(super) _permit: Option<OwnedSemaphorePermit>,
}

/// Start-up: the client's StartupMessage, limits, `scram_proxy` authentication and the server
/// connection (fresh or kept). `None` when the session ends here (answered, refused, gone).
pub(super) async fn establish(
    accepted: Box<Accepted>,
    shared: &Shared,
) -> Result<Option<Established>, PumpError> {
    let Accepted {
        socket,
        peer,
        permit,
        shutdown,
    } = *accepted;
    // Shutdown does not wait for a client that has not even sent its StartupMessage.
    let mut stop = shutdown;
    // A client that has not finished its start-up by then is closed, so a silent or slowloris
    // connection cannot hold a slot; PostgreSQL closes it without a word at its own
    // `authentication_timeout`, and so does pgshape (the client may not even speak the protocol).
    let login = shared
        .config
        .client_login_timeout()
        .unwrap_or(NO_LOGIN_DEADLINE);
    let opening = tokio::select! {
        // Boxed: start-up's futures (a TLS handshake among them) are large and short-lived; inline
        // they would size the task of every session for its whole life (bench/run `idle`).
        opened = timer::timeout(login, Box::pin(open(socket, shared))) => match opened {
            Ok(result) => result?,
            Err(_) => {
                shared.metrics.client_timeouts.with_label_values(&["login"]).inc();
                tracing::info!(%peer, timeout_ms = shared.config.client_login_timeout_ms, "client_login_timeout: closing a client that did not finish its start-up");
                return Ok(None);
            }
        },
        // A dropped sender (no shutdown will come) disables this branch.
        Ok(_) = stop.wait_for(|stopping| *stopping) => return Ok(None),
    };
    let Opening::Session {
        mut client,
        packet,
        mut leftover,
    } = opening
    else {
        return Ok(None);
    };
    let Ok(StartupPacket::Startup(message)) = startup::decode(&packet) else {
        return Ok(None);
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
        return Ok(None);
    }
    let text = |name: &str| {
        message
            .param(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let user = text("user").unwrap_or_default();
    // Streaming replication (CopyBoth) never finishes on its own: such a session is closed,
    // not waited for, when its client leaves.
    let replication = text("replication").is_some_and(|v| {
        !matches!(
            v.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        )
    });
    let info = SessionInfo {
        database: text("database").unwrap_or_else(|| user.clone()),
        application_name: text("application_name").unwrap_or_default(),
        user,
        client_addr: Some(peer),
    };
    // Held for the whole session: counts down when the session ends, however it ends.
    let _counted = match shared.connections.admit(
        &info.database,
        &info.user,
        shared.config.max_connections_per_database,
        shared.config.max_connections_per_user,
    ) {
        Ok(counted) => counted,
        Err(limit) => {
            shared.metrics.client_connections_refused.inc();
            tracing::warn!(%peer, %limit, "client refused");
            let hint = format!("pgshape's {} is reached", limit.setting());
            let _ = client
                .write_all_flush(&encode::error_response(
                    "FATAL",
                    "53300",
                    &limit.to_string(),
                    Some(&hint),
                ))
                .await;
            return Ok(None);
        }
    };
    // scram_proxy: the client proves itself to pgshape before any server connection is made.
    let proven = match &shared.auth {
        None => None,
        Some(scram) => {
            match Box::pin(auth::authenticate_client(
                &mut client,
                &mut leftover,
                &info.user,
                scram,
            ))
            .await?
            {
                // Boxed: held across the connect, it would size every session's future.
                Some(keys) => Some(Box::new(keys)),
                None => return Ok(None),
            }
        }
    };
    let reuse = shared.config.reuse_server_connections && !replication;
    // Boxed: a local's storage lasts to the end of its scope, across the connect below.
    let parked = if reuse {
        Box::pin(super::reuse::take_ready(
            &packet,
            shared.config.server_idle_timeout(),
            shared.config.connect_timeout(),
            &shared.metrics.server_connections_idle,
        ))
        .await
        .map(Box::new)
    } else {
        None
    };
    let (server, start) = match parked {
        Some(parked) => {
            let parked = *parked;
            shared.metrics.server_connections_reused.inc();
            let start = Box::new(Start::Reused {
                greeting: parked.greeting,
                cancel_key: parked.cancel_key,
            });
            (parked.server, start)
        }
        None => {
            let connect = shared.upstream.connect(shared.config.connect_timeout());
            match Box::pin(connect).await {
                Ok(server) => {
                    shared.metrics.server_connections_total.inc();
                    (server, Box::new(Start::Fresh { proven }))
                }
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
                    return Ok(None);
                }
            }
        }
    };
    // The key a kept server connection is filed under; only needed when connections are kept.
    let startup_key: Option<Box<[u8]>> = reuse.then(|| packet[..].into());
    Ok(Some(Established {
        client,
        server,
        handover: Box::new(Handover {
            startup_packet: packet,
            leftover,
            start,
            info,
            replication,
        }),
        startup_key,
        _counted,
        _permit: permit,
    }))
}

/// How the relay gets its server connection.
enum Start {
    /// A new connection: send the StartupMessage (or log in, for `scram_proxy`).
    Fresh { proven: Option<Box<ProvenKeys>> },
    /// A kept connection, already reset: greet the client as the server once did.
    Reused {
        greeting: Vec<u8>,
        cancel_key: Option<Vec<u8>>,
    },
}

/// What the relay starts from; boxed for the reason [`super::session::serve`] gives.
pub(super) struct Handover {
    startup_packet: BytesMut,
    leftover: BytesMut,
    start: Box<Start>,
    info: SessionInfo,
    replication: bool,
}

/// What the relay needs of [`greet`]'s work.
pub(super) struct Greeted {
    pub(super) state: RefCell<SessionState>,
    pub(super) who: Who,
    pub(super) leftover: BytesMut,
    pub(super) first_answer: BytesMut,
    pub(super) keep: bool,
    pub(super) replication: bool,
}

/// The server's side of start-up: the StartupMessage sent (or `scram_proxy`'s login, or a kept
/// connection's greeting replayed) and its first answer read. `None` when the session ends here.
pub(super) async fn greet(
    client: &mut ClientStream,
    server: &mut ServerStream,
    handover: Box<Handover>,
    shared: &Shared,
) -> Result<Option<Greeted>, PumpError> {
    let Handover {
        startup_packet,
        leftover,
        start,
        info,
        replication,
    } = *handover;
    let server_err = |source| PumpError::Io {
        side: Side::Server,
        source,
    };
    // Who the session's log lines are about.
    let who = Who {
        peer: info.client_addr,
        database: info.database.clone(),
        user: info.user.clone(),
    };
    // A server that accepted the connection but never speaks (hung, or another service on that
    // port) must not hold the client until the client's own timeout: its first answer is due
    // within the connect timeout, like the connect itself.
    let timeout = shared.config.connect_timeout();
    let mut first_answer = BytesMut::new();
    let mut reused = None;
    let answered = match (*start, shared.auth.as_deref()) {
        (
            Start::Reused {
                greeting,
                cancel_key,
            },
            _,
        ) => {
            client
                .write_all_flush(&greeting)
                .await
                .map_err(|source| PumpError::Io {
                    side: Side::Client,
                    source,
                })?;
            reused = Some(Box::new((greeting, cancel_key)));
            true
        }
        (Start::Fresh { proven: Some(keys) }, Some(scram)) => {
            let login = auth::login(client, server, &startup_packet, *keys, scram, timeout, &who);
            match Box::pin(login).await {
                auth::Login::Done(from_auth_ok) => {
                    first_answer = from_auth_ok;
                    true
                }
                auth::Login::Refused => return Ok(None),
                auth::Login::TimedOut => false,
            }
        }
        _ => {
            server
                .write_all_flush(&startup_packet)
                .await
                .map_err(server_err)?;
            let read = timer::timeout(timeout, server.read_buf(&mut first_answer)).await;
            match read {
                Ok(read) => {
                    read.map_err(server_err)?;
                    true
                }
                Err(_) => false,
            }
        }
    };
    // Its buffer (shared with what the client sent after it) would otherwise live as long as
    // the session: an async fn drops its locals at the end of their scope, not at last use.
    drop(startup_packet);
    if !answered {
        let error = UpstreamError::NoAnswer {
            target: shared.upstream.target(),
            timeout,
        };
        shared.metrics.upstream_connect_errors.inc();
        tracing::warn!(%error, %who, "upstream did not answer the startup message");
        let message = format!("pgshape: {error}");
        let fatal = encode::error_response("FATAL", "08006", &message, None);
        let _ = client.write_all_flush(&fatal).await;
        server.shutdown().await;
        client.shutdown().await;
        return Ok(None);
    }
    let keep = shared.config.reuse_server_connections && !replication;
    let (phase, cancel_key, greeting) = match reused.map(|r| *r) {
        Some((greeting, cancel_key)) => (Phase::Ready, cancel_key, Some(greeting)),
        None => (Phase::Authenticating, None, keep.then(Vec::new)),
    };
    let state = RefCell::new(SessionState {
        tracker: Tracker::with_gate(
            info,
            shared.observers.clone(),
            shared.fingerprints.clone(),
            shared.gate.as_ref().map(|g| g.open_session()),
        ),
        phase,
        server_tls: server.is_tls(),
        cancel_key,
        client_mid_frame: false,
        greeting,
        challenged: false,
    });
    Ok(Some(Greeted {
        state,
        who,
        leftover,
        first_answer,
        keep,
        replication,
    }))
}

/// A session's identity in log lines: `client 10.0.0.7:51000 (web@shop)`.
pub(super) struct Who {
    peer: Option<SocketAddr>,
    database: String,
    user: String,
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.peer {
            Some(peer) => write!(f, "client {peer} ({}@{})", self.user, self.database),
            None => write!(f, "client ({}@{})", self.user, self.database),
        }
    }
}
