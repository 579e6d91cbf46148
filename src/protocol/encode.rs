//! Messages pgshape writes itself: errors and notices to clients, and request builders that
//! tests and benchmarks use to script a conversation.

use bytes::{BufMut, BytesMut};

/// Starts a frame with a length placeholder; [`finish`] fills it in.
fn start(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_u32(0);
    at
}

fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &str) {
    // A NUL inside would end the field early; PostgreSQL strings cannot carry one.
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.put_u8(0);
}

fn put_field_message(
    tag: u8,
    severity: &str,
    code: &str,
    message: &str,
    hint: Option<&str>,
) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64 + message.len());
    let at = start(&mut buf, tag);
    for (kind, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        buf.put_u8(kind);
        put_cstr(&mut buf, value);
    }
    if let Some(hint) = hint {
        buf.put_u8(b'H');
        put_cstr(&mut buf, hint);
    }
    buf.put_u8(0);
    finish(&mut buf, at);
    buf
}

/// An Authentication message: `code` (0 ok, 10 SASL, 11 SASLContinue, 12 SASLFinal) and its
/// data.
pub fn authentication(code: i32, data: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(9 + data.len());
    let at = start(&mut buf, b'R');
    buf.put_i32(code);
    buf.extend_from_slice(data);
    finish(&mut buf, at);
    buf
}

/// AuthenticationSASL offering `mechanisms`.
pub fn authentication_sasl(mechanisms: &[&str]) -> BytesMut {
    let mut data = Vec::new();
    for m in mechanisms {
        data.extend_from_slice(m.as_bytes());
        data.push(0);
    }
    data.push(0);
    authentication(10, &data)
}

/// SASLInitialResponse: the chosen mechanism and the client-first-message.
pub fn sasl_initial_response(mechanism: &str, first: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(mechanism.len() + first.len() + 10);
    let at = start(&mut buf, b'p');
    put_cstr(&mut buf, mechanism);
    buf.put_i32(first.len() as i32);
    buf.extend_from_slice(first);
    finish(&mut buf, at);
    buf
}

/// SASLResponse: a later SASL message from the client.
pub fn sasl_response(data: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(5 + data.len());
    let at = start(&mut buf, b'p');
    buf.extend_from_slice(data);
    finish(&mut buf, at);
    buf
}

/// An ErrorResponse (`severity` is `ERROR` or `FATAL`).
pub fn error_response(severity: &str, code: &str, message: &str, hint: Option<&str>) -> BytesMut {
    put_field_message(b'E', severity, code, message, hint)
}

/// A NoticeResponse (`severity` is e.g. `WARNING`).
pub fn notice_response(severity: &str, code: &str, message: &str, hint: Option<&str>) -> BytesMut {
    put_field_message(b'N', severity, code, message, hint)
}

/// A simple-protocol Query.
pub fn query(sql: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'Q');
    put_cstr(&mut buf, sql);
    finish(&mut buf, at);
    buf
}

/// A simple-protocol Query of raw bytes (a client's statement text, possibly rewritten: not
/// necessarily UTF-8, and it must not be re-encoded).
pub fn query_bytes(sql: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(sql.len() + 6);
    let at = start(&mut buf, b'Q');
    buf.extend(sql.iter().copied().filter(|&b| b != 0));
    buf.put_u8(0);
    finish(&mut buf, at);
    buf
}

/// A Parse of raw statement bytes with the parameter-type section copied as the client sent
/// it (`param_types`: the Int16 count and the OIDs).
pub fn parse_raw(name: &[u8], sql: &[u8], param_types: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(name.len() + sql.len() + param_types.len() + 7);
    let at = start(&mut buf, b'P');
    buf.extend_from_slice(name);
    buf.put_u8(0);
    buf.extend(sql.iter().copied().filter(|&b| b != 0));
    buf.put_u8(0);
    buf.extend_from_slice(param_types);
    finish(&mut buf, at);
    buf
}

/// A Parse with no parameter types given.
pub fn parse(name: &str, sql: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'P');
    put_cstr(&mut buf, name);
    put_cstr(&mut buf, sql);
    buf.put_i16(0);
    finish(&mut buf, at);
    buf
}

/// A Bind with no parameters and text results.
pub fn bind(portal: &str, statement: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'B');
    put_cstr(&mut buf, portal);
    put_cstr(&mut buf, statement);
    buf.put_i16(0);
    buf.put_i16(0);
    buf.put_i16(0);
    finish(&mut buf, at);
    buf
}

/// An Execute.
pub fn execute(portal: &str, max_rows: i32) -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'E');
    put_cstr(&mut buf, portal);
    buf.put_i32(max_rows);
    finish(&mut buf, at);
    buf
}

/// A Close of a statement (`b'S'`) or portal (`b'P'`).
pub fn close(kind: u8, name: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'C');
    buf.put_u8(kind);
    put_cstr(&mut buf, name);
    finish(&mut buf, at);
    buf
}

/// A Sync.
pub fn sync() -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'S');
    finish(&mut buf, at);
    buf
}

/// A Flush: the server sends what it has buffered, without ending the implicit transaction.
pub fn flush() -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'H');
    finish(&mut buf, at);
    buf
}

/// A CopyFail ending a COPY FROM STDIN with `message` as the error's reason.
pub fn copy_fail(message: &str) -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'f');
    put_cstr(&mut buf, message);
    finish(&mut buf, at);
    buf
}

/// A Terminate.
pub fn terminate() -> BytesMut {
    let mut buf = BytesMut::new();
    let at = start(&mut buf, b'X');
    finish(&mut buf, at);
    buf
}

/// A StartupMessage for protocol 3.0 with the given parameters.
pub fn startup(params: &[(&str, &str)]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(0);
    buf.put_i32(3 << 16);
    for (k, v) in params {
        put_cstr(&mut buf, k);
        put_cstr(&mut buf, v);
    }
    buf.put_u8(0);
    let len = buf.len() as u32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf
}
