//! Both directions of a session driven by one future, polled by hand.
//!
//! Each wake-up of a session's task polls the two [`Direction`]s in turn: a direction first
//! finishes writing what it owes its peer, then reads what arrived, cuts it into frames, lets
//! its handler look at them and queues everything for one write. Nothing else is polled on
//! the way: no `select!` over per-direction futures, no readiness future before each read, no
//! notification primitives per session. The worker's shutdown reaches a session through a
//! waker registered once ([`ShutdownWatch`]), and "the client is gone" and "nothing is in
//! flight" are plain flags read after each poll. Measured with callgrind (bench/run's
//! instruction counts): this is where most of the relay's own user-space work went.
//!
//! Frames that can be huge and that the proxy never decodes (DataRow, CopyData) are streamed:
//! once their header is seen, their bytes are forwarded as they arrive, so a 1 GiB row never
//! sits in memory. Every other frame is buffered whole (up to the frame limit) and decoded.
//! A direction waiting between messages holds no read buffer: it takes one from a small
//! per-worker pool for each read and gives it back when the read finds nothing, so an idle
//! connection costs its task and sockets, not 2 × 16 KiB (bench/run, workload `idle`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::pump::{
    Action, FrameHandler, PumpEnd, PumpError, READ_CHUNK, Side, give_buffer, take_buffer,
};
use super::timer;
use crate::protocol::frame::parse_header;

/// Bytes a batch sends: a range of the read buffer, or bytes pgshape made.
enum Segment {
    Read(Range<usize>),
    Made(Bytes),
}

/// One direction of a session: reads one peer, writes the other.
pub(super) struct Direction<H> {
    side: Side,
    pub(super) handler: H,
    max_frame: usize,
    buf: BytesMut,
    /// Whether the next step is a read (false only for bytes left over from start-up).
    need_read: bool,
    /// Bytes of a streamed frame that are still to come and need only forwarding.
    streaming_left: usize,
    /// Length of an incomplete frame at the head of `buf`, to read it whole before decoding.
    wanted: usize,
    /// The batch being written: its segments, and how far the write got.
    out: Vec<Segment>,
    out_at: usize,
    out_offset: usize,
    writing: bool,
    batch_len: usize,
    batch_frames: u64,
    stop: Option<PumpEnd>,
    /// Writes to the peer failed and are dropped from now on (server → client only: replies
    /// to statements still running are read, timed and counted after the client is gone).
    peer_gone: bool,
}

impl<H: FrameHandler> Direction<H> {
    /// `leftover` holds bytes read during start-up, processed before the first read.
    pub(super) fn new(side: Side, handler: H, max_frame: usize, leftover: BytesMut) -> Self {
        Direction {
            side,
            handler,
            max_frame,
            need_read: leftover.is_empty(),
            buf: leftover,
            streaming_left: 0,
            wanted: 0,
            out: Vec::new(),
            out_at: 0,
            out_offset: 0,
            writing: false,
            batch_len: 0,
            batch_frames: 0,
            stop: None,
            peer_gone: false,
        }
    }

    fn peer(&self) -> Side {
        match self.side {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    /// Whether everything read so far was written.
    pub(super) fn is_flushed(&self) -> bool {
        !self.writing
    }

    /// Whether the peer stopped taking writes (see `peer_gone`).
    pub(super) fn peer_gone(&self) -> bool {
        self.peer_gone
    }

    /// Relays until the reader would block (`Pending`), reaches EOF, the handler stops it, or
    /// an error.
    pub(super) fn poll_relay<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<Result<PumpEnd, PumpError>>
    where
        R: AsyncRead + ReadReadiness + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.writing {
                if !self.peer_gone {
                    match self.poll_write_batch(cx, writer) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(error)) if self.side == Side::Server => {
                            tracing::debug!(%error, "client write failed; its replies are now dropped");
                            self.peer_gone = true;
                        }
                        Poll::Ready(Err(source)) => {
                            return Poll::Ready(Err(PumpError::Io {
                                side: self.peer(),
                                source,
                            }));
                        }
                    }
                }
                self.finish_batch();
                if let Some(end) = self.stop.take() {
                    return Poll::Ready(Ok(end));
                }
            }
            if self.need_read {
                if self.buf.capacity() == 0 {
                    // Every wake-up polls both directions; the one whose peer sent nothing
                    // returns here without taking a buffer from the pool and giving it back.
                    if reader.poll_read_ready(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.buf = take_buffer();
                }
                if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                    self.buf.reserve(READ_CHUNK);
                }
                match tokio_util::io::poll_read_buf(Pin::new(&mut *reader), cx, &mut self.buf) {
                    Poll::Pending => {
                        if self.buf.is_empty() {
                            // Between messages: wait without holding a buffer.
                            give_buffer(std::mem::take(&mut self.buf));
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(source)) => {
                        return Poll::Ready(Err(PumpError::Io {
                            side: self.side,
                            source,
                        }));
                    }
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(PumpEnd::Eof)),
                    Poll::Ready(Ok(_)) => {}
                }
                if self.buf.len() < self.wanted {
                    continue;
                }
            }
            self.cut_batch()?;
        }
    }

    /// Cuts what is buffered into frames, hands them to the handler and queues the batch.
    fn cut_batch(&mut self) -> Result<(), PumpError> {
        // Whatever is left after a batch is an incomplete frame: the next step is a read.
        self.need_read = true;
        self.handler.at_boundary(false);
        let side = self.side;
        let now = Instant::now();
        let buf = &self.buf;
        let out = &mut self.out;
        let mut pos = 0;
        let mut written = 0;
        let mut frames = 0u64;
        let mut stop = None;
        self.wanted = 0;
        while stop.is_none() {
            if self.streaming_left > 0 {
                let take = self.streaming_left.min(buf.len() - pos);
                pos += take;
                self.streaming_left -= take;
                if self.streaming_left > 0 {
                    break;
                }
                continue;
            }
            let header = parse_header(&buf[pos..], self.max_frame)
                .map_err(|error| PumpError::Protocol { side, error })?;
            let Some(header) = header else {
                break;
            };
            frames += 1;
            if self.handler.streams(header.tag) {
                if let Some(before) = self.handler.on_streamed(header.tag) {
                    push_read(out, written..pos);
                    out.push(Segment::Made(before));
                    written = pos;
                }
                let available = buf.len() - pos;
                if available >= header.frame_len {
                    pos += header.frame_len;
                } else {
                    pos = buf.len();
                    self.streaming_left = header.frame_len - available;
                }
                continue;
            }
            if buf.len() - pos < header.frame_len {
                frames -= 1;
                self.wanted = header.frame_len;
                break;
            }
            let frame_end = pos + header.frame_len;
            match self.handler.on_frame(&buf[pos..frame_end], now)? {
                Action::Forward => {}
                Action::ForwardAndStop(end) => stop = Some(end),
                Action::DropAndStop(end) => {
                    push_read(out, written..pos);
                    written = frame_end;
                    stop = Some(end);
                }
                Action::Replace(bytes) => {
                    push_read(out, written..pos);
                    out.push(Segment::Made(Bytes::from(bytes)));
                    written = frame_end;
                }
            }
            pos = frame_end;
        }
        push_read(out, written..pos);
        self.batch_len = pos;
        self.batch_frames = frames;
        self.stop = stop;
        self.writing = true;
        Ok(())
    }

    fn poll_write_batch<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        writer: &mut W,
    ) -> Poll<io::Result<()>> {
        while let Some(segment) = self.out.get(self.out_at) {
            let bytes = match segment {
                Segment::Read(range) => &self.buf[range.clone()],
                Segment::Made(bytes) => &bytes[..],
            };
            let rest = &bytes[self.out_offset..];
            if rest.is_empty() {
                self.out_at += 1;
                self.out_offset = 0;
                continue;
            }
            let n = ready!(Pin::new(&mut *writer).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_offset += n;
        }
        Pin::new(writer).poll_flush(cx)
    }

    fn finish_batch(&mut self) {
        self.out.clear();
        self.out_at = 0;
        self.out_offset = 0;
        self.writing = false;
        self.handler.at_boundary(self.streaming_left == 0);
        self.handler.on_batch(self.batch_len, self.batch_frames);
        self.buf.advance(self.batch_len);
        if self.wanted > 0 {
            // Make room for the whole frame at once instead of growing chunk by chunk.
            self.buf.reserve(self.wanted.saturating_sub(self.buf.len()));
        }
    }
}

fn push_read(out: &mut Vec<Segment>, range: Range<usize>) {
    if !range.is_empty() {
        out.push(Segment::Read(range));
    }
}

/// A reader that can say, without reading, that a read would find nothing yet.
pub(super) trait ReadReadiness {
    /// `Pending` (with `cx` registered) when a read would certainly block; `Ready` when it might
    /// not (TLS cannot tell: rustls may hold decrypted bytes).
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ReadReadiness for super::stream::ClientStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(tcp) => tcp.poll_read_ready(cx),
            Self::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}

impl ReadReadiness for super::stream::ServerStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(tcp) => tcp.poll_read_ready(cx),
            Self::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}

thread_local! {
    /// Set on a worker thread once its proxy shuts down.
    static STOPPING: Cell<bool> = const { Cell::new(false) };
    /// Wakers of this worker's relaying sessions, to wake them once at shutdown.
    static WATCHERS: RefCell<Watchers> = RefCell::new(Watchers::default());
}

#[derive(Default)]
struct Watchers {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// Tells every relaying session of this worker thread that shutdown began.
pub(super) fn begin_shutdown() {
    STOPPING.set(true);
    let wakers: Vec<Waker> =
        WATCHERS.with_borrow_mut(|w| w.slots.iter_mut().filter_map(Option::take).collect());
    for waker in wakers {
        waker.wake();
    }
}

/// A session's registration for the worker's shutdown: its task is woken once when shutdown
/// begins. Registered at the first poll (a task's waker stays valid for the task's life).
#[derive(Default)]
pub(super) struct ShutdownWatch {
    slot: Option<usize>,
}

impl ShutdownWatch {
    /// Whether shutdown began; registers `cx`'s waker the first time.
    fn poll_stopping(&mut self, cx: &Context<'_>) -> bool {
        if self.slot.is_none() {
            let waker = cx.waker().clone();
            self.slot = Some(WATCHERS.with_borrow_mut(|w| match w.free.pop() {
                Some(i) => {
                    w.slots[i] = Some(waker);
                    i
                }
                None => {
                    w.slots.push(Some(waker));
                    w.slots.len() - 1
                }
            }));
        }
        STOPPING.get()
    }
}

impl Drop for ShutdownWatch {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            WATCHERS.with_borrow_mut(|w| {
                w.slots[i] = None;
                w.free.push(i);
            });
        }
    }
}

/// How a session's shutdown wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drain {
    /// Nothing was in flight: close now.
    Idle,
    /// Requests were still in flight when the grace period ended.
    GraceOver,
}

/// Waits, once shutdown began, for the session to have nothing in flight, or for the grace
/// period to end.
pub(super) struct DrainWait {
    watch: ShutdownWatch,
    grace: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DrainWait {
    pub(super) fn new(grace: Duration) -> Self {
        DrainWait {
            watch: ShutdownWatch::default(),
            grace,
            deadline: None,
        }
    }

    /// `idle`: nothing forwarded is unanswered and everything read was written.
    pub(super) fn poll(&mut self, cx: &mut Context<'_>, idle: bool) -> Poll<Drain> {
        if !self.watch.poll_stopping(cx) {
            return Poll::Pending;
        }
        if idle {
            return Poll::Ready(Drain::Idle);
        }
        let grace = self.grace;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(timer::sleep(grace)));
        deadline.as_mut().poll(cx).map(|()| Drain::GraceOver)
    }
}

#[cfg(test)]
mod tests;
