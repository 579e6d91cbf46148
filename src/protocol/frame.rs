//! Framing of regular protocol messages: a 1-byte tag and a 4-byte big-endian length that counts
//! itself but not the tag. Startup-phase packets have no tag; see [`super::startup`].

use super::ProtocolError;

/// Bytes of tag plus length.
pub const HEADER_LEN: usize = 5;

/// PostgreSQL's own limit for a message body (`PQ_LARGE_MESSAGE_LIMIT` is 1 GiB).
pub const DEFAULT_MAX_FRAME: usize = 1 << 30;

/// The header of one message: enough to decide whether to decode it or stream it through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Whole frame size including tag and length field.
    pub frame_len: usize,
}

/// Parses the header at the start of `buf`.
///
/// Returns `Ok(None)` when fewer than [`HEADER_LEN`] bytes are buffered. The length is validated
/// before anything is allocated for the body, so a hostile length costs nothing.
///
/// # Errors
/// A length under 4 (impossible) or a frame over `max_frame` bytes.
pub fn parse_header(buf: &[u8], max_frame: usize) -> Result<Option<Header>, ProtocolError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let tag = head[0];
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]);
    if len < 4 {
        return Err(ProtocolError::LengthTooSmall {
            tag: tag as char,
            len,
        });
    }
    let frame_len = len as usize + 1;
    if frame_len > max_frame {
        return Err(ProtocolError::TooLarge {
            tag: tag as char,
            len: frame_len,
            max: max_frame,
        });
    }
    Ok(Some(Header { tag, frame_len }))
}

/// The body of a complete frame (after tag and length).
pub fn body(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_LEN..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_five_bytes() {
        assert_eq!(parse_header(b"Q\0\0\0", 100), Ok(None));
    }

    #[test]
    fn reads_tag_and_length() {
        let h = parse_header(b"Q\0\0\0\x0dSELECT 1;\0", 100)
            .unwrap()
            .unwrap();
        assert_eq!(h.tag, b'Q');
        assert_eq!(h.frame_len, 14);
    }

    #[test]
    fn rejects_impossible_length() {
        assert!(matches!(
            parse_header(b"Q\0\0\0\x03", 100),
            Err(ProtocolError::LengthTooSmall { tag: 'Q', len: 3 })
        ));
    }

    #[test]
    fn rejects_oversized_frame_before_allocating() {
        let err = parse_header(&[b'D', 0x80, 0, 0, 0], DEFAULT_MAX_FRAME).unwrap_err();
        assert!(matches!(err, ProtocolError::TooLarge { tag: 'D', .. }));
        assert!(err.to_string().contains("over the limit"));
    }
}
