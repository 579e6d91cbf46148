//! The two kinds of byte stream a session deals with: plain TCP or TLS on either side.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

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

/// Both kinds of stream, read and written as one: a session's single task drives both
/// directions, so neither stream is split.
macro_rules! impl_async_io {
    ($ty:ident) => {
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    $ty::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
                }
            }
        }

        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    $ty::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_flush(cx),
                    $ty::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
                }
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    $ty::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
                }
            }
        }
    };
}

impl_async_io!(ClientStream);
impl_async_io!(ServerStream);
