//! What a relay direction is made of: which side sent something, how a direction ends or
//! fails, what a frame handler may decide, and the per-worker pool of read buffers. The
//! driving loop itself is [`super::relay`].
//!
//! Read buffers are pooled per worker so that a connection waiting between messages holds
//! none: an idle connection costs its task and sockets, not 2 × 16 KiB (pgbouncer users run
//! tens of thousands of mostly idle clients; see bench/run, workload `idle`).

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::ProtocolError;

/// Read buffer growth step; small enough that idle sessions stay cheap.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// A buffer that grew past this for one large frame is given back once it is drained.
const SHRINK_ABOVE: usize = 1024 * 1024;

/// Spare read buffers per worker thread; more are freed.
const POOLED_BUFFERS: usize = 16;

thread_local! {
    static BUFFERS: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives an emptied read buffer back to this worker's pool.
pub(super) fn give_buffer(mut buf: BytesMut) {
    buf.clear();
    // Reclaims the space consumed by `advance` in place: the buffer is not shared.
    buf.reserve(READ_CHUNK);
    if buf.capacity() > SHRINK_ABOVE {
        return;
    }
    BUFFERS.with_borrow_mut(|pool| {
        if pool.len() < POOLED_BUFFERS {
            pool.push(buf);
        }
    });
}

pub(super) fn take_buffer() -> BytesMut {
    BUFFERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
}

/// Which peer sent something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// Why a direction stopped.
#[derive(Debug)]
pub enum PumpEnd {
    /// The peer closed its side of the connection.
    Eof,
    /// The client sent Terminate, which was forwarded.
    Terminated,
}

/// A relay failure; the session turns it into a FATAL error for the client where one is due.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    #[error("{side:?} connection: {source}")]
    Io { side: Side, source: std::io::Error },
    #[error("invalid message from {}: {error}", side.label())]
    Protocol { side: Side, error: ProtocolError },
    #[error(
        "SCRAM channel binding cannot pass through pgshape, which terminates TLS on both sides"
    )]
    ChannelBindingDowngrade,
}

/// What to do with a decoded frame.
pub enum Action {
    Forward,
    /// Send these bytes instead of the frame.
    Replace(Vec<u8>),
    /// Forward the frame, then stop this direction.
    ForwardAndStop(PumpEnd),
    /// Drop the frame and stop this direction (a Terminate kept from a reusable server).
    DropAndStop(PumpEnd),
}

/// The per-direction logic plugged into [`super::relay::Direction`].
pub trait FrameHandler {
    /// Frames of this tag are forwarded without being buffered or decoded.
    fn streams(&self, tag: u8) -> bool;
    /// Called once per streamed frame, at its header; returned bytes are sent before it.
    fn on_streamed(&mut self, tag: u8) -> Option<Bytes>;
    /// Called with each complete non-streamed frame before it is forwarded.
    ///
    /// # Errors
    /// A frame that must not be forwarded and ends the session.
    fn on_frame(&mut self, frame: &[u8], now: Instant) -> Result<Action, PumpError>;
    /// Called after each forwarded batch.
    fn on_batch(&mut self, bytes: usize, frames: u64);
    /// Whether everything forwarded so far ends on a frame boundary: `false` before a batch is
    /// written, then whether it ended mid-frame (a streamed frame continues). A direction dropped
    /// mid-write leaves it `false`: the peer may hold part of a frame, so nothing else may be
    /// sent to it.
    fn at_boundary(&mut self, _at: bool) {}
}

/// Reads from `reader` into `buf` until at least `n` bytes are buffered.
///
/// # Errors
/// EOF before `n` bytes, or an I/O error.
pub async fn read_at_least<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    n: usize,
) -> std::io::Result<()> {
    while buf.len() < n {
        buf.reserve(n - buf.len());
        if reader.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}
