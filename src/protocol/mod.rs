//! PostgreSQL frontend/backend protocol v3: framing and the few messages pgshape decodes.
//!
//! Pure code over byte slices: no I/O, no tokio, so every function is tested with byte vectors.
//! Decoders borrow from the frame and never convert text lossily; anything the proxy does not
//! need to understand is never decoded at all, only framed and forwarded.
//! See <https://www.postgresql.org/docs/current/protocol-message-formats.html>.

pub mod backend;
pub mod encode;
pub mod frame;
pub mod frontend;
pub mod scram;
pub mod startup;

#[cfg(test)]
mod robustness_tests;

/// A message that did not have the shape the protocol requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid length {len} in message of type {tag:?} (must be at least 4)")]
    LengthTooSmall { tag: char, len: u32 },
    #[error("message of type {tag:?} is {len} bytes, over the limit of {max}")]
    TooLarge { tag: char, len: usize, max: usize },
    #[error("malformed {message} message: {reason}")]
    Malformed {
        message: &'static str,
        reason: &'static str,
    },
    #[error("startup packet length {len} is outside 8..={max}")]
    BadStartupLength { len: u32, max: usize },
    #[error("unsupported frontend protocol {major}.{minor}: pgshape speaks protocol 3")]
    UnsupportedProtocol { major: u16, minor: u16 },
}

/// Reads NUL-terminated strings and big-endian integers from a message body, never panicking:
/// every read checks the bytes left and reports which message was short.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader { buf, message }
    }

    fn malformed(&self, reason: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            message: self.message,
            reason,
        }
    }

    pub(crate) fn cstr(&mut self) -> Result<&'a [u8], ProtocolError> {
        // SIMD search: a Parse's SQL is scanned here on every message.
        let end = memchr::memchr(0, self.buf)
            .ok_or_else(|| self.malformed("string is not NUL-terminated"))?;
        let (s, rest) = self.buf.split_at(end);
        self.buf = &rest[1..];
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.malformed("message ends early"))?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ProtocolError> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub(crate) fn i16(&mut self) -> Result<i16, ProtocolError> {
        let bytes = self.take(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.malformed("message ends early"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }
}
