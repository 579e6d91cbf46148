//! The two kinds of byte stream a session deals with: plain TCP or TLS on either side.

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
