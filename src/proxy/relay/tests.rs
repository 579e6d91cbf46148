//! The relay loop against in-memory streams that read and write a few bytes at a time: frames
//! cut across reads, streamed frames, replacements, partial writes and the frame limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Direction, ReadReadiness};
use crate::proxy::pump::{Action, FrameHandler, PumpEnd, PumpError, Side};

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Records what the relay showed it; replaces `R` frames, stops at `X`, streams `D`.
#[derive(Default)]
struct Recorder {
    decoded: Vec<Vec<u8>>,
    streamed: Vec<u8>,
    batches: Vec<(usize, u64)>,
}

impl FrameHandler for Recorder {
    fn streams(&self, tag: u8) -> bool {
        tag == b'D'
    }

    fn on_streamed(&mut self, tag: u8) -> Option<Bytes> {
        self.streamed.push(tag);
        (self.streamed.len() == 1).then(|| Bytes::from(frame(b'N', b"first row")))
    }

    fn on_frame(&mut self, frame_bytes: &[u8], _now: Instant) -> Result<Action, PumpError> {
        self.decoded.push(frame_bytes.to_vec());
        Ok(match frame_bytes[0] {
            b'R' => Action::Replace(frame(b'Q', b"replaced\0")),
            b'X' => Action::ForwardAndStop(PumpEnd::Terminated),
            _ => Action::Forward,
        })
    }

    fn on_batch(&mut self, bytes: usize, frames: u64) {
        self.batches.push((bytes, frames));
    }
}

/// A reader handing out at most `step` bytes per read, pending every other poll.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
    pending_next: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending_next {
            self.pending_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending_next = true;
        let n = self
            .step
            .min(self.data.len() - self.at)
            .min(buf.remaining());
        let start = self.at;
        buf.put_slice(&self.data[start..start + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl ReadReadiness for Trickle {
    fn poll_read_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A writer taking at most `step` bytes per write, pending every other poll.
struct Sink {
    written: Vec<u8>,
    step: usize,
    pending_next: bool,
}

impl AsyncWrite for Sink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending_next {
            self.pending_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending_next = true;
        let n = self.step.min(buf.len());
        self.written.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

async fn relay(
    input: Vec<u8>,
    step: usize,
    max_frame: usize,
) -> (Result<PumpEnd, PumpError>, Vec<u8>, Recorder) {
    let mut reader = Trickle {
        data: input,
        at: 0,
        step,
        pending_next: false,
    };
    let mut writer = Sink {
        written: Vec::new(),
        step: step.max(2) - 1,
        pending_next: false,
    };
    let mut direction = Direction::new(
        Side::Server,
        Recorder::default(),
        max_frame,
        BytesMut::new(),
    );
    let end = std::future::poll_fn(|cx| direction.poll_relay(cx, &mut reader, &mut writer)).await;
    (end, writer.written, direction.handler)
}

#[tokio::test]
async fn frames_cut_across_reads_are_decoded_whole_and_forwarded_unchanged() {
    let frames = [
        frame(b'C', b"SELECT 1\0"),
        frame(b'Z', b"I"),
        frame(b'1', b""),
    ];
    let input: Vec<u8> = frames.concat();
    for step in [1, 2, 3, 7, 64] {
        let (end, out, seen) = relay(input.clone(), step, 1 << 20).await;
        assert!(matches!(end, Ok(PumpEnd::Eof)), "step {step}: {end:?}");
        assert_eq!(out, input, "step {step}");
        assert_eq!(seen.decoded, frames.to_vec(), "step {step}");
        let relayed: usize = seen.batches.iter().map(|b| b.0).sum();
        let counted: u64 = seen.batches.iter().map(|b| b.1).sum();
        assert_eq!((relayed, counted), (input.len(), 3), "step {step}");
    }
}

#[tokio::test]
async fn streamed_frames_pass_through_undecoded_with_bytes_inserted_before_the_first() {
    let big_row = frame(b'D', &vec![7u8; 100_000]);
    let input = [
        frame(b'T', b"row description"),
        big_row.clone(),
        frame(b'D', b"x"),
    ]
    .concat();
    let (end, out, seen) = relay(input, 4096, 1 << 20).await;
    assert!(matches!(end, Ok(PumpEnd::Eof)), "{end:?}");
    let expected = [
        frame(b'T', b"row description"),
        frame(b'N', b"first row"),
        big_row,
        frame(b'D', b"x"),
    ]
    .concat();
    assert_eq!(out, expected);
    assert_eq!(seen.streamed, b"DD");
    assert_eq!(seen.decoded, vec![frame(b'T', b"row description")]);
}

#[tokio::test]
async fn replaced_frames_are_swapped_in_place_and_a_stop_flushes_first() {
    let input = [
        frame(b'P', b"a"),
        frame(b'R', b"original"),
        frame(b'S', b""),
        frame(b'X', b""),
        frame(b'Q', b"never read"),
    ]
    .concat();
    let (end, out, _) = relay(input, 5, 1 << 20).await;
    assert!(matches!(end, Ok(PumpEnd::Terminated)), "{end:?}");
    let expected = [
        frame(b'P', b"a"),
        frame(b'Q', b"replaced\0"),
        frame(b'S', b""),
        frame(b'X', b""),
    ]
    .concat();
    assert_eq!(out, expected);
}

#[tokio::test]
async fn a_frame_over_the_limit_is_a_protocol_error_naming_the_side() {
    let input = frame(b'C', &[0u8; 100]);
    let (end, out, _) = relay(input, 64, 50).await;
    assert!(
        matches!(
            end,
            Err(PumpError::Protocol {
                side: Side::Server,
                ..
            })
        ),
        "{end:?}"
    );
    assert!(
        out.is_empty(),
        "nothing of the oversized frame is forwarded"
    );
}

#[tokio::test]
async fn a_failed_write_to_the_client_drops_the_rest_and_keeps_reading() {
    struct Broken;
    impl AsyncWrite for Broken {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    let input = [frame(b'C', b"UPDATE 1\0"), frame(b'Z', b"I")].concat();
    let mut reader = Trickle {
        data: input,
        at: 0,
        step: 3,
        pending_next: false,
    };
    let mut direction = Direction::new(Side::Server, Recorder::default(), 1 << 20, BytesMut::new());
    let end = std::future::poll_fn(|cx| direction.poll_relay(cx, &mut reader, &mut Broken)).await;
    assert!(matches!(end, Ok(PumpEnd::Eof)), "{end:?}");
    assert!(direction.peer_gone());
    assert_eq!(
        direction.handler.decoded.len(),
        2,
        "replies are still read and seen"
    );
    // The client side's writes fail loudly instead: the server must not be left half-fed.
    let mut reader = Trickle {
        data: frame(b'Q', b"SELECT 1\0"),
        at: 0,
        step: 64,
        pending_next: false,
    };
    let mut up = Direction::new(Side::Client, Recorder::default(), 1 << 20, BytesMut::new());
    let end = std::future::poll_fn(|cx| up.poll_relay(cx, &mut reader, &mut Broken)).await;
    assert!(
        matches!(
            end,
            Err(PumpError::Io {
                side: Side::Server,
                ..
            })
        ),
        "{end:?}"
    );
}
