//! The two kinds of byte stream a session deals with: plain TCP or TLS on either side; and
//! the server pump's way to the client, which outlives the client.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// The client's connection, after any SSLRequest was answered.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The connection to the PostgreSQL server.
pub enum ServerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl ClientStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }
}

impl ServerStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ServerStream::Tls(_))
    }
}

/// Runs `$body` with `$r`/`$w` bound to the read and write halves of `$stream`, whatever its
/// kind. Plain TCP uses the borrowed, lock-free split; TLS needs tokio's generic split.
#[macro_export]
#[doc(hidden)]
macro_rules! with_halves {
    ($stream:expr, $kind:ident, |$r:ident, $w:ident| $body:expr) => {
        match $stream {
            $kind::Plain(s) => {
                let ($r, $w) = s.split();
                $body
            }
            $kind::Tls(s) => {
                let ($r, $w) = tokio::io::split(&mut **s);
                $body
            }
        }
    };
}

/// Writes all of `bytes` to either kind of stream and flushes (TLS buffers records).
macro_rules! impl_write_all {
    ($ty:ident) => {
        impl $ty {
            pub async fn write_all_flush(&mut self, bytes: &[u8]) -> std::io::Result<()> {
                use tokio::io::AsyncWriteExt;
                match self {
                    $ty::Plain(s) => s.write_all(bytes).await,
                    $ty::Tls(s) => {
                        s.write_all(bytes).await?;
                        s.flush().await
                    }
                }
            }

            pub async fn read_buf(&mut self, buf: &mut bytes::BytesMut) -> std::io::Result<usize> {
                use tokio::io::AsyncReadExt;
                match self {
                    $ty::Plain(s) => s.read_buf(buf).await,
                    $ty::Tls(s) => s.read_buf(buf).await,
                }
            }

            pub async fn shutdown(&mut self) {
                use tokio::io::AsyncWriteExt;
                let _ = match self {
                    $ty::Plain(s) => s.shutdown().await,
                    $ty::Tls(s) => s.shutdown().await,
                };
            }
        }
    };
}

impl_write_all!(ClientStream);
impl_write_all!(ServerStream);

/// Whether the client is gone, set by whoever notices first.
#[derive(Default)]
pub struct ClientGone {
    gone: Cell<bool>,
    notify: Notify,
}

impl ClientGone {
    pub fn set(&self) {
        if !self.gone.replace(true) {
            self.notify.notify_one();
        }
    }

    pub fn is_set(&self) -> bool {
        self.gone.get()
    }

    /// Completes once [`ClientGone::set`] was called (before or after this call).
    pub async fn wait(&self) {
        if !self.is_set() {
            self.notify.notified().await;
        }
    }
}

/// The client's write half as the server pump sees it: once a write to the client failed
/// (it is gone), writes are dropped instead of failing, so the server's replies to statements
/// still running are read, timed and counted.
pub struct ClientSink<'a, W> {
    inner: W,
    gone: &'a ClientGone,
}

impl<'a, W> ClientSink<'a, W> {
    pub fn new(inner: W, gone: &'a ClientGone) -> Self {
        ClientSink { inner, gone }
    }

    fn failed(&self, error: &io::Error) {
        if !self.gone.is_set() {
            tracing::debug!(%error, "client write failed; its replies are now dropped");
            self.gone.set();
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for ClientSink<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.gone.is_set() {
            return Poll::Ready(Ok(buf.len()));
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Err(e)) => {
                this.failed(&e);
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.gone.is_set() {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) => {
                this.failed(&e);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
