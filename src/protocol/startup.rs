//! Startup-phase packets: length-prefixed, no tag. The first packet on a connection is one of
//! SSLRequest, GSSENCRequest, CancelRequest or StartupMessage, told apart by a 4-byte code.

use super::{ProtocolError, Reader};

/// PostgreSQL refuses startup packets above this (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: usize = 10_000;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// A decoded startup-phase packet. `Startup` keeps the raw packet so it is forwarded untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket<'a> {
    SslRequest,
    GssEncRequest,
    /// Process id and secret key (4 bytes in protocol 3.0, up to 256 in 3.2).
    CancelRequest {
        raw: &'a [u8],
    },
    Startup(StartupMessage<'a>),
}

/// A StartupMessage: protocol version and the `name=value` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage<'a> {
    pub raw: &'a [u8],
    pub major: u16,
    pub minor: u16,
    params: &'a [u8],
}

impl<'a> StartupMessage<'a> {
    /// The parameters in order, as raw bytes (values may be in any client encoding).
    pub fn params(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut reader = Reader::new(self.params, "StartupMessage");
        std::iter::from_fn(move || {
            let name = reader.cstr().ok()?;
            if name.is_empty() {
                return None;
            }
            let value = reader.cstr().ok()?;
            Some((name, value))
        })
    }

    /// The value of one parameter.
    pub fn param(&self, name: &str) -> Option<&'a [u8]> {
        self.params()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// Length of the startup packet at the start of `buf`, or `Ok(None)` if fewer than 4 bytes.
///
/// # Errors
/// A length under 8 or over [`MAX_STARTUP_PACKET`].
pub fn packet_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    let Some(head) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if !(8..=MAX_STARTUP_PACKET as u32).contains(&len) {
        return Err(ProtocolError::BadStartupLength {
            len,
            max: MAX_STARTUP_PACKET,
        });
    }
    Ok(Some(len as usize))
}

/// Decodes a complete startup packet (`packet` includes its length word).
///
/// # Errors
/// Unknown protocol versions and packets whose parameters are not NUL-terminated pairs.
pub fn decode(packet: &[u8]) -> Result<StartupPacket<'_>, ProtocolError> {
    let mut reader = Reader::new(packet.get(4..).unwrap_or_default(), "StartupMessage");
    let code = reader.i32()?;
    match code {
        SSL_REQUEST => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST => {
            if !(8..=260).contains(&reader.rest().len()) {
                return Err(ProtocolError::Malformed {
                    message: "CancelRequest",
                    reason: "key data must be 8 to 260 bytes",
                });
            }
            Ok(StartupPacket::CancelRequest { raw: packet })
        }
        version => {
            let major = (version >> 16) as u16;
            let minor = (version & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            let params = reader.rest();
            if params.last() != Some(&0) {
                return Err(ProtocolError::Malformed {
                    message: "StartupMessage",
                    reason: "parameter list is not NUL-terminated",
                });
            }
            // Validate the pairs now so later lookups can ignore errors.
            let mut check = Reader::new(params, "StartupMessage");
            loop {
                let name = check.cstr()?;
                if name.is_empty() {
                    break;
                }
                check.cstr()?;
            }
            Ok(StartupPacket::Startup(StartupMessage {
                raw: packet,
                major,
                minor,
                params,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, body: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn decodes_startup_params() {
        let p = packet(
            3 << 16,
            b"user\0alice\0database\0shop\0application_name\0psql\0\0",
        );
        assert_eq!(packet_len(&p).unwrap(), Some(p.len()));
        let StartupPacket::Startup(m) = decode(&p).unwrap() else {
            panic!("not a startup message")
        };
        assert_eq!((m.major, m.minor), (3, 0));
        assert_eq!(m.param("user"), Some(&b"alice"[..]));
        assert_eq!(m.param("database"), Some(&b"shop"[..]));
        assert_eq!(m.param("missing"), None);
        assert_eq!(m.params().count(), 3);
    }

    #[test]
    fn keeps_newer_minor_versions() {
        let p = packet((3 << 16) | 2, b"user\0a\0\0");
        let StartupPacket::Startup(m) = decode(&p).unwrap() else {
            panic!()
        };
        assert_eq!(m.minor, 2);
    }

    #[test]
    fn recognises_negotiation_requests() {
        assert_eq!(
            decode(&packet(SSL_REQUEST, b"")).unwrap(),
            StartupPacket::SslRequest
        );
        assert_eq!(
            decode(&packet(GSSENC_REQUEST, b"")).unwrap(),
            StartupPacket::GssEncRequest
        );
        let cancel = packet(CANCEL_REQUEST, &[0, 0, 0, 7, 1, 2, 3, 4]);
        assert!(matches!(
            decode(&cancel).unwrap(),
            StartupPacket::CancelRequest { .. }
        ));
    }

    #[test]
    fn rejects_protocol_2_and_bad_lengths() {
        assert!(matches!(
            decode(&packet(2 << 16, b"\0")),
            Err(ProtocolError::UnsupportedProtocol { major: 2, .. })
        ));
        assert!(packet_len(&[0, 0, 0, 4]).is_err());
        assert!(packet_len(&10_000_000u32.to_be_bytes()).is_err());
        assert!(decode(&packet(3 << 16, b"user\0alice")).is_err());
        assert!(decode(&packet(CANCEL_REQUEST, b"\0\0")).is_err());
    }
}
