//! The start-up phase of a session: SSL and GSS negotiation, CancelRequest forwarding, and
//! reading the StartupMessage, with clear FATAL errors for anything malformed.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;

use super::pump::{self, PumpError, Side};
use super::session::Shared;
use super::stream::ClientStream;
use crate::protocol::startup::{self, StartupPacket};
use crate::protocol::{ProtocolError, encode};

/// How a session's start-up ended.
pub(super) enum Opening {
    Session {
        client: ClientStream,
        packet: BytesMut,
        leftover: BytesMut,
    },
    Done,
}

/// Reads start-up packets until a StartupMessage, answering SSL/GSS requests and forwarding a
/// CancelRequest.
pub(super) async fn open(socket: TcpStream, shared: &Shared) -> Result<Opening, PumpError> {
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
pub(super) async fn open_tls(
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

pub(super) async fn forward_cancel(raw: &[u8], shared: &Shared) {
    shared.metrics.cancel_requests.inc();
    if let Err(error) = shared
        .upstream
        .cancel(raw, shared.config.connect_timeout())
        .await
    {
        tracing::warn!(%error, "could not forward cancel request");
    }
}

pub(super) fn fatal_for(error: &PumpError) -> Option<BytesMut> {
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

pub(super) async fn reject_plain(
    tcp: &mut TcpStream,
    error: PumpError,
) -> Result<Opening, PumpError> {
    if let Some(fatal) = fatal_for(&error) {
        let _ = tcp.write_all(&fatal).await;
    }
    Err(error)
}

pub(super) async fn reject(
    client: &mut ClientStream,
    error: PumpError,
) -> Result<Opening, PumpError> {
    if let Some(fatal) = fatal_for(&error) {
        let _ = client.write_all_flush(&fatal).await;
    }
    Err(error)
}

pub(super) async fn read_startup_packet<R: AsyncRead + Unpin>(
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

pub(super) async fn read_startup_client(
    client: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, PumpError> {
    match client {
        ClientStream::Plain(s) => read_startup_packet(s, buf).await,
        ClientStream::Tls(s) => read_startup_packet(&mut **s, buf).await,
    }
}
