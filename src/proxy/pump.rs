//! One direction of a session: read bytes, cut them into frames, let a handler look at the
//! frames it cares about, and forward everything in one write per read.
//!
//! Frames that can be huge and that the proxy never decodes (DataRow, CopyData) are streamed:
//! once their header is seen, their bytes are forwarded as they arrive, so a 1 GiB row never
//! sits in memory. Every other frame is buffered whole (up to the frame limit) and decoded.
//!
//! A pump waiting between messages holds no read buffer: on plain TCP it waits for readability
//! first and only then takes a buffer from a small per-worker pool, so an idle connection costs
//! its task and sockets, not 2 × 16 KiB (pgbouncer users run tens of thousands of mostly idle
//! clients; see bench/idle_memory.sh).

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::ProtocolError;
use crate::protocol::frame::parse_header;

/// Read buffer growth step; small enough that idle sessions stay cheap.
const READ_CHUNK: usize = 16 * 1024;
/// A buffer that grew past this for one large frame is given back once it is drained.
const SHRINK_ABOVE: usize = 1024 * 1024;

/// Spare read buffers per worker thread; more are freed.
const POOLED_BUFFERS: usize = 16;

thread_local! {
    static BUFFERS: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Gives an emptied read buffer back to this worker's pool.
fn give_buffer(mut buf: BytesMut) {
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

fn take_buffer() -> BytesMut {
    BUFFERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
}

/// A read half that can wait for input without a buffer.
pub trait ReadReady: AsyncRead + Unpin {
    /// Completes when a read would find data, end of stream or an error. A stream that cannot
    /// tell completes at once (TLS: rustls may already hold decrypted bytes) and is then
    /// waited on with a buffer.
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>>;
}

impl ReadReady for tokio::net::tcp::ReadHalf<'_> {
    async fn readable(&self) -> std::io::Result<()> {
        tokio::net::tcp::ReadHalf::readable(self).await
    }
}

impl<T: AsyncRead> ReadReady for tokio::io::ReadHalf<T> {
    async fn readable(&self) -> std::io::Result<()> {
        Ok(())
    }
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

/// Why a pump stopped.
#[derive(Debug)]
pub enum PumpEnd {
    /// The peer closed its side of the connection.
    Eof,
    /// The client sent Terminate, which was forwarded.
    Terminated,
}

/// A pump failure; the session turns it into a FATAL error for the client where one is due.
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
    /// Forward the frame, then stop this pump.
    ForwardAndStop(PumpEnd),
}

/// The per-direction logic plugged into [`run`].
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
    /// written, then whether it ended mid-frame (a streamed frame continues). A pump dropped
    /// mid-write leaves it `false`: the peer may hold part of a frame, so nothing else may be
    /// sent to it.
    fn at_boundary(&mut self, _at: bool) {}
}

/// Relays `reader` to `writer` until EOF, Terminate or an error. `buf` may already hold bytes
/// read during start-up.
///
/// # Errors
/// I/O errors on either side and malformed frames.
pub async fn run<R, W, H>(
    side: Side,
    reader: &mut R,
    writer: &mut W,
    mut buf: BytesMut,
    max_frame: usize,
    handler: &mut H,
) -> Result<PumpEnd, PumpError>
where
    R: ReadReady,
    W: AsyncWrite + Unpin,
    H: FrameHandler,
{
    let peer = match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    };
    let read_err = |source| PumpError::Io { side, source };
    let write_err = |source| PumpError::Io { side: peer, source };
    // Bytes of a streamed frame that are still to come and need only forwarding.
    let mut streaming_left: usize = 0;
    let mut wanted: usize = 0;
    // Bytes left over from start-up are processed before the first read.
    let mut need_read = buf.is_empty();
    loop {
        if need_read {
            if buf.is_empty() {
                // Between messages: wait without holding a buffer.
                give_buffer(std::mem::take(&mut buf));
                reader.readable().await.map_err(read_err)?;
                buf = take_buffer();
            }
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
            if reader.read_buf(&mut buf).await.map_err(read_err)? == 0 {
                return Ok(PumpEnd::Eof);
            }
            if buf.len() < wanted {
                continue;
            }
        }
        // Whatever is left after a batch is an incomplete frame: the next step is a read.
        need_read = true;
        handler.at_boundary(false);
        let now = Instant::now();
        let mut pos = 0;
        let mut written = 0;
        let mut frames = 0u64;
        let mut stop = None;
        wanted = 0;
        while stop.is_none() {
            if streaming_left > 0 {
                let take = streaming_left.min(buf.len() - pos);
                pos += take;
                streaming_left -= take;
                if streaming_left > 0 {
                    break;
                }
                continue;
            }
            let header = parse_header(&buf[pos..], max_frame)
                .map_err(|error| PumpError::Protocol { side, error })?;
            let Some(header) = header else {
                break;
            };
            frames += 1;
            if handler.streams(header.tag) {
                if let Some(before) = handler.on_streamed(header.tag) {
                    writer
                        .write_all(&buf[written..pos])
                        .await
                        .map_err(write_err)?;
                    writer.write_all(&before).await.map_err(write_err)?;
                    written = pos;
                }
                let available = buf.len() - pos;
                if available >= header.frame_len {
                    pos += header.frame_len;
                } else {
                    pos = buf.len();
                    streaming_left = header.frame_len - available;
                }
                continue;
            }
            if buf.len() - pos < header.frame_len {
                frames -= 1;
                wanted = header.frame_len;
                break;
            }
            let frame_end = pos + header.frame_len;
            match handler.on_frame(&buf[pos..frame_end], now)? {
                Action::Forward => {}
                Action::ForwardAndStop(end) => stop = Some(end),
                Action::Replace(bytes) => {
                    writer
                        .write_all(&buf[written..pos])
                        .await
                        .map_err(write_err)?;
                    writer.write_all(&bytes).await.map_err(write_err)?;
                    written = frame_end;
                }
            }
            pos = frame_end;
        }
        if pos > written {
            writer
                .write_all(&buf[written..pos])
                .await
                .map_err(write_err)?;
        }
        writer.flush().await.map_err(write_err)?;
        handler.at_boundary(streaming_left == 0);
        handler.on_batch(pos, frames);
        buf.advance(pos);
        if let Some(end) = stop {
            return Ok(end);
        }
        if wanted > 0 {
            // Make room for the whole frame at once instead of growing chunk by chunk.
            buf.reserve(wanted.saturating_sub(buf.len()));
        }
    }
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
