//! The backend (server → client) messages the proxy decodes. DataRow and CopyData are never
//! decoded: the tracker only counts DataRows from their header.

use super::frame::body;
use super::{ProtocolError, Reader};

/// A server message the proxy cares about, borrowing from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    ParseComplete,
    BindComplete,
    CloseComplete,
    /// The command tag, e.g. `SELECT 5`, `INSERT 0 1`, `CREATE TABLE`.
    CommandComplete {
        tag: &'a [u8],
    },
    DataRow,
    EmptyQueryResponse,
    PortalSuspended,
    NoData,
    RowDescription,
    ParameterDescription,
    ErrorResponse(ErrorFields<'a>),
    /// Transaction status: `I` idle, `T` in a transaction block, `E` in a failed block.
    ReadyForQuery {
        status: u8,
    },
    /// An Authentication* message with its sub-code (0 = ok, 10 = SASL, ...).
    Authentication {
        code: i32,
    },
    ParameterStatus {
        name: &'a [u8],
        value: &'a [u8],
    },
    BackendKeyData,
    FunctionCallResponse,
    CopyInResponse,
    CopyOutResponse,
    CopyBothResponse,
    Other(u8),
}

/// The fields of an ErrorResponse the proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ErrorFields<'a> {
    /// Non-localized severity (`V`), falling back to the localized one (`S`).
    pub severity: &'a [u8],
    /// SQLSTATE (`C`), five characters.
    pub code: Option<[u8; 5]>,
    pub message: &'a [u8],
}

impl<'a> BackendMessage<'a> {
    /// Decodes a complete frame.
    ///
    /// # Errors
    /// A decoded message type whose body lacks required fields.
    pub fn decode(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        let tag = frame.first().copied().unwrap_or(0);
        let body = body(frame);
        Ok(match tag {
            b'1' => BackendMessage::ParseComplete,
            b'2' => BackendMessage::BindComplete,
            b'3' => BackendMessage::CloseComplete,
            b'C' => BackendMessage::CommandComplete {
                tag: Reader::new(body, "CommandComplete").cstr()?,
            },
            b'D' => BackendMessage::DataRow,
            b'I' => BackendMessage::EmptyQueryResponse,
            b's' => BackendMessage::PortalSuspended,
            b'n' => BackendMessage::NoData,
            b'T' => BackendMessage::RowDescription,
            b't' => BackendMessage::ParameterDescription,
            b'E' => BackendMessage::ErrorResponse(decode_error_fields(body)?),
            b'Z' => {
                let status = Reader::new(body, "ReadyForQuery").u8()?;
                BackendMessage::ReadyForQuery { status }
            }
            b'R' => BackendMessage::Authentication {
                code: Reader::new(body, "Authentication").i32()?,
            },
            b'S' => {
                let mut r = Reader::new(body, "ParameterStatus");
                let name = r.cstr()?;
                let value = r.cstr()?;
                BackendMessage::ParameterStatus { name, value }
            }
            b'K' => BackendMessage::BackendKeyData,
            b'V' => BackendMessage::FunctionCallResponse,
            b'G' => BackendMessage::CopyInResponse,
            b'H' => BackendMessage::CopyOutResponse,
            b'W' => BackendMessage::CopyBothResponse,
            other => BackendMessage::Other(other),
        })
    }
}

fn decode_error_fields(body: &[u8]) -> Result<ErrorFields<'_>, ProtocolError> {
    let mut r = Reader::new(body, "ErrorResponse");
    let mut fields = ErrorFields::default();
    let mut localized_severity: &[u8] = b"";
    loop {
        let kind = r.u8()?;
        if kind == 0 {
            break;
        }
        let value = r.cstr()?;
        match kind {
            b'V' => fields.severity = value,
            b'S' => localized_severity = value,
            b'C' => fields.code = <[u8; 5]>::try_from(value).ok(),
            b'M' => fields.message = value,
            _ => {}
        }
    }
    if fields.severity.is_empty() {
        fields.severity = localized_severity;
    }
    Ok(fields)
}

/// Splits a CommandComplete tag into its command words and row count.
///
/// `INSERT 0 5` → (`INSERT`, Some(5)); `SELECT 3` → (`SELECT`, Some(3));
/// `CREATE TABLE` → (`CREATE TABLE`, None). Only tags PostgreSQL documents as carrying a row
/// count yield one, so `CREATE TABLE 1`-like oddities cannot be misread.
pub fn split_command_tag(tag: &[u8]) -> (&[u8], Option<u64>) {
    let mut words = tag.split(|&b| b == b' ');
    let first = words.next().unwrap_or_default();
    let counted = matches!(
        first,
        b"SELECT" | b"INSERT" | b"UPDATE" | b"DELETE" | b"MERGE" | b"FETCH" | b"MOVE" | b"COPY"
    );
    if !counted {
        return (tag, None);
    }
    let rows = tag
        .rsplit(|&b| b == b' ')
        .next()
        .and_then(|n| std::str::from_utf8(n).ok())
        .and_then(|n| n.parse().ok());
    (first, rows)
}

/// SASL mechanism name suffix that needs the TLS channel between client and server.
const PLUS_SUFFIX: &[u8] = b"-PLUS";

/// Rewrites an AuthenticationSASL frame without the `-PLUS` (channel binding) mechanisms.
///
/// Channel binding ties SCRAM to the TLS certificate of the connection the client sees; a proxy
/// that terminates TLS has a different one, so offering `SCRAM-SHA-256-PLUS` would make libpq
/// choose it and fail. Returns `None` when the frame offers no such mechanism.
///
/// # Errors
/// A frame that is not a well-formed AuthenticationSASL.
pub fn strip_channel_binding(frame: &[u8]) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut r = Reader::new(body(frame), "AuthenticationSASL");
    if r.i32()? != 10 {
        return Ok(None);
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut stripped = false;
    loop {
        let mechanism = r.cstr()?;
        if mechanism.is_empty() {
            break;
        }
        if mechanism.ends_with(PLUS_SUFFIX) {
            stripped = true;
        } else {
            kept.push(mechanism);
        }
    }
    if !stripped {
        return Ok(None);
    }
    Ok(Some(nul_terminated_frame(b'R', |out| {
        out.extend_from_slice(&10i32.to_be_bytes());
        for m in kept {
            out.extend_from_slice(m);
            out.push(0);
        }
    })))
}

/// A frame of `tag` whose body `body` writes, then a terminating NUL.
fn nul_terminated_frame(tag: u8, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = vec![tag, 0, 0, 0, 0];
    body(&mut out);
    out.push(0);
    let len = (out.len() - 1) as u32;
    out[1..5].copy_from_slice(&len.to_be_bytes());
    out
}

/// Rewrites an ErrorResponse (or NoticeResponse) frame without its fields of type `kind`;
/// `None` when it has none.
///
/// # Errors
/// A frame whose fields are not well-formed.
pub fn strip_error_field(frame: &[u8], kind: u8) -> Result<Option<Vec<u8>>, ProtocolError> {
    let mut r = Reader::new(body(frame), "ErrorResponse");
    let mut kept: Vec<(u8, &[u8])> = Vec::new();
    let mut stripped = false;
    loop {
        let field = r.u8()?;
        if field == 0 {
            break;
        }
        let value = r.cstr()?;
        if field == kind {
            stripped = true;
        } else {
            kept.push((field, value));
        }
    }
    if !stripped {
        return Ok(None);
    }
    Ok(Some(nul_terminated_frame(frame[0], |out| {
        for (field, value) in kept {
            out.push(field);
            out.extend_from_slice(value);
            out.push(0);
        }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    #[test]
    fn strips_one_error_field_kind() {
        let mut f = encode::error_response("ERROR", "PGS01", "blocked", Some("fix it")).to_vec();
        // Append a `W` (where) field before the terminator, as PL/pgSQL's RAISE sends it.
        f.pop();
        f.extend_from_slice(b"WPL/pgSQL function inline_code_block line 1 at RAISE\0\0");
        let len = (f.len() - 1) as u32;
        f[1..5].copy_from_slice(&len.to_be_bytes());
        let stripped = strip_error_field(&f, b'W').unwrap().expect("had a W field");
        assert!(!stripped.windows(8).any(|w| w == b"PL/pgSQL"));
        let BackendMessage::ErrorResponse(e) = BackendMessage::decode(&stripped).unwrap() else {
            panic!()
        };
        assert_eq!((e.code, e.message), (Some(*b"PGS01"), &b"blocked"[..]));
        assert!(
            stripped.windows(6).any(|w| w == b"fix it"),
            "the hint stays"
        );
        assert_eq!(strip_error_field(&stripped, b'W').unwrap(), None);
        assert!(strip_error_field(&f[..f.len() - 3], b'W').is_err());
    }

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn command_tags() {
        assert_eq!(split_command_tag(b"SELECT 5"), (&b"SELECT"[..], Some(5)));
        assert_eq!(
            split_command_tag(b"INSERT 0 12"),
            (&b"INSERT"[..], Some(12))
        );
        assert_eq!(
            split_command_tag(b"COPY 100000"),
            (&b"COPY"[..], Some(100000))
        );
        assert_eq!(
            split_command_tag(b"CREATE TABLE"),
            (&b"CREATE TABLE"[..], None)
        );
        assert_eq!(split_command_tag(b"BEGIN"), (&b"BEGIN"[..], None));
    }

    #[test]
    fn decodes_error_fields() {
        let f = encode::error_response("ERROR", "42P01", "relation \"x\" does not exist", None);
        let BackendMessage::ErrorResponse(e) = BackendMessage::decode(&f).unwrap() else {
            panic!()
        };
        assert_eq!(e.severity, b"ERROR");
        assert_eq!(e.code, Some(*b"42P01"));
        assert_eq!(e.message, b"relation \"x\" does not exist");
    }

    #[test]
    fn decodes_ready_for_query_and_command_complete() {
        assert_eq!(
            BackendMessage::decode(&frame(b'Z', b"T")).unwrap(),
            BackendMessage::ReadyForQuery { status: b'T' }
        );
        assert_eq!(
            BackendMessage::decode(&frame(b'C', b"UPDATE 3\0")).unwrap(),
            BackendMessage::CommandComplete { tag: b"UPDATE 3" }
        );
        assert!(BackendMessage::decode(&frame(b'Z', b"")).is_err());
        assert!(BackendMessage::decode(&frame(b'C', b"UPDATE")).is_err());
        assert!(BackendMessage::decode(&frame(b'E', b"Cabc")).is_err());
    }

    #[test]
    fn strips_plus_mechanisms() {
        let mut body = 10i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let f = frame(b'R', &body);
        let out = strip_channel_binding(&f).unwrap().unwrap();
        let mut want = 10i32.to_be_bytes().to_vec();
        want.extend_from_slice(b"SCRAM-SHA-256\0\0");
        assert_eq!(out, frame(b'R', &want));
        assert_eq!(strip_channel_binding(&out).unwrap(), None);
        let ok = frame(b'R', &0i32.to_be_bytes());
        assert_eq!(strip_channel_binding(&ok).unwrap(), None);
    }
}
