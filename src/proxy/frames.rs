//! What each direction of the relay does with the frames it sees: the client side registers requests with the
//! statement tracker (and checks the SCRAM channel-binding flag), the server side feeds replies
//! to it, strips `-PLUS` SASL mechanisms, injects rule warnings and drops the PL/pgSQL context
//! from the errors of blocked statements.

use std::cell::RefCell;
use std::time::Instant;

use bytes::Bytes;

use super::intercept::BLOCKED_SQLSTATE;
use super::metrics::ProxyMetrics;
use super::pump::{Action, FrameHandler, PumpEnd, PumpError, Side};
use super::tracker::{ClientAction, ServerAction, Tracker};
use crate::protocol::backend::{BackendMessage, strip_channel_binding, strip_error_field};
use crate::protocol::frontend::{FrontendMessage, SaslInitialResponse};

/// Where the session stands in the protocol. Only the transitions the proxy acts on are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Between StartupMessage and the first ReadyForQuery.
    Authenticating,
    /// The server sent AuthenticationSASL; the client's next `p` is SASLInitialResponse.
    SaslInitial,
    /// Authenticated; queries flow.
    Ready,
}

pub(super) struct SessionState {
    pub(super) tracker: Tracker,
    pub(super) phase: Phase,
    pub(super) server_tls: bool,
    /// The BackendKeyData body (process id, secret key), to cancel a statement on shutdown.
    pub(super) cancel_key: Option<Vec<u8>>,
    /// The server may hold part of a client frame (the client direction stopped mid-frame), so
    /// pgshape must not send it anything of its own.
    pub(super) client_mid_frame: bool,
    /// With `reuse_server_connections`: the server's greeting (AuthenticationOk through the
    /// first ReadyForQuery) as the next client of this connection will get it.
    pub(super) greeting: Option<Vec<u8>>,
    /// The server asked for a password: the next client must be asked too, so no reuse.
    pub(super) challenged: bool,
}

impl SessionState {
    /// Whether the server connection can serve another client now: the session may keep
    /// the client's Terminate, everything was answered, no transaction is open.
    pub(super) fn reusable(&self) -> bool {
        self.greeting.is_some()
            && !self.challenged
            && self.phase == Phase::Ready
            && !self.client_mid_frame
            && self.tracker.is_idle()
            && self.tracker.transaction_status() == b'I'
    }
}

/// The client side's view of frames: registers requests with the tracker before they are
/// forwarded, and checks the SCRAM channel-binding flag.
pub(super) struct ClientFrames<'a> {
    pub(super) state: &'a RefCell<SessionState>,
    pub(super) metrics: &'a ProxyMetrics,
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
            b'X' if self.state.borrow().greeting.is_some() => {
                Ok(Action::DropAndStop(PumpEnd::Terminated))
            }
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

    fn at_boundary(&mut self, at: bool) {
        self.state.borrow_mut().client_mid_frame = !at;
    }
}

/// The server side's view: feeds the tracker, strips `-PLUS` SASL mechanisms.
pub(super) struct ServerFrames<'a> {
    pub(super) state: &'a RefCell<SessionState>,
    pub(super) metrics: &'a ProxyMetrics,
    pub(super) statements_reported: u64,
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
        if state.phase != Phase::Ready {
            let challenge = matches!(message, BackendMessage::Authentication { code } if code != 0);
            state.challenged |= challenge;
            if let Some(greeting) = state.greeting.as_mut()
                && !challenge
                && matches!(frame[0], b'R' | b'S' | b'K' | b'Z')
            {
                greeting.extend_from_slice(frame);
            }
        }
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
        let tracked = state.tracker.on_server_message(&message, now);
        // A block is raised by pgshape's DO block, whose `CONTEXT: PL/pgSQL function
        // inline_code_block` would tell the user about pgshape's mechanism, not their query.
        if let BackendMessage::ErrorResponse(e) = &message
            && e.code
                .is_some_and(|c| c[..] == *BLOCKED_SQLSTATE.as_bytes())
            && let Some(stripped) = strip_error_field(frame, b'W').map_err(protocol)?
        {
            return Ok(Action::Replace(match tracked {
                ServerAction::Prepend(notice) => [&notice[..], &stripped].concat(),
                _ => stripped,
            }));
        }
        Ok(match tracked {
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
