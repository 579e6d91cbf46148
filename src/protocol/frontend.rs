//! The frontend (client → server) messages the proxy decodes. Everything else is forwarded
//! without being decoded.

use super::frame::body;
use super::{ProtocolError, Reader};

/// A client message the statement tracker cares about, borrowing from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    /// Simple query: one string holding zero or more statements.
    Query {
        sql: &'a [u8],
    },
    /// Extended protocol: prepare `sql` as statement `name` ("" = unnamed).
    Parse {
        name: &'a [u8],
        sql: &'a [u8],
        /// The parameter-type count and OIDs as sent, undecoded (a rewritten Parse carries
        /// them over unchanged).
        param_types: &'a [u8],
    },
    /// Bind statement `statement` into portal `portal`.
    Bind {
        portal: &'a [u8],
        statement: &'a [u8],
        /// Parameter formats, values and result formats, undecoded ([`BindParams::decode`]
        /// reads them when a shadow run needs the values).
        params: &'a [u8],
    },
    /// Run portal `portal`, returning at most `max_rows` rows (0 = all).
    Execute {
        portal: &'a [u8],
        max_rows: i32,
    },
    /// Describe a statement (`b'S'`) or portal (`b'P'`).
    Describe {
        kind: u8,
        name: &'a [u8],
    },
    /// Close a statement (`b'S'`) or portal (`b'P'`).
    Close {
        kind: u8,
        name: &'a [u8],
    },
    Sync,
    Flush,
    FunctionCall,
    CopyData,
    CopyDone,
    CopyFail,
    Terminate,
    /// Authentication responses (`p`); their meaning depends on the phase.
    Password,
    /// A tag this proxy does not interpret.
    Other(u8),
}

impl<'a> FrontendMessage<'a> {
    /// Decodes a complete frame.
    ///
    /// # Errors
    /// A message of a decoded type whose body does not have the required fields.
    pub fn decode(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        let tag = frame.first().copied().unwrap_or(0);
        let body = body(frame);
        Ok(match tag {
            b'Q' => {
                let mut r = Reader::new(body, "Query");
                FrontendMessage::Query { sql: r.cstr()? }
            }
            b'P' => {
                let mut r = Reader::new(body, "Parse");
                let name = r.cstr()?;
                let sql = r.cstr()?;
                FrontendMessage::Parse {
                    name,
                    sql,
                    param_types: r.rest(),
                }
            }
            b'B' => {
                let mut r = Reader::new(body, "Bind");
                let portal = r.cstr()?;
                let statement = r.cstr()?;
                FrontendMessage::Bind {
                    portal,
                    statement,
                    params: r.rest(),
                }
            }
            b'E' => {
                let mut r = Reader::new(body, "Execute");
                let portal = r.cstr()?;
                let max_rows = r.i32()?;
                FrontendMessage::Execute { portal, max_rows }
            }
            b'D' | b'C' => {
                let mut r = Reader::new(body, if tag == b'D' { "Describe" } else { "Close" });
                let kind = r.u8()?;
                if kind != b'S' && kind != b'P' {
                    return Err(ProtocolError::Malformed {
                        message: if tag == b'D' { "Describe" } else { "Close" },
                        reason: "target must be 'S' or 'P'",
                    });
                }
                let name = r.cstr()?;
                if tag == b'D' {
                    FrontendMessage::Describe { kind, name }
                } else {
                    FrontendMessage::Close { kind, name }
                }
            }
            b'S' => FrontendMessage::Sync,
            b'H' => FrontendMessage::Flush,
            b'F' => FrontendMessage::FunctionCall,
            b'd' => FrontendMessage::CopyData,
            b'c' => FrontendMessage::CopyDone,
            b'f' => FrontendMessage::CopyFail,
            b'X' => FrontendMessage::Terminate,
            b'p' => FrontendMessage::Password,
            other => FrontendMessage::Other(other),
        })
    }
}

/// The parameters of a Bind, decoded (only for the executions a shadow run samples).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindParams {
    /// Whether each parameter is in binary format (the Bind's format codes, expanded).
    pub binary: Vec<bool>,
    /// Each parameter's bytes; `None` for NULL.
    pub values: Vec<Option<Vec<u8>>>,
}

impl BindParams {
    /// Decodes the `params` section of [`FrontendMessage::Bind`].
    ///
    /// # Errors
    /// Counts or lengths that do not fit the bytes, or a format code other than 0 and 1.
    pub fn decode(params: &[u8]) -> Result<BindParams, ProtocolError> {
        let malformed = |reason| ProtocolError::Malformed {
            message: "Bind",
            reason,
        };
        let mut r = Reader::new(params, "Bind");
        let n_formats =
            usize::try_from(r.i16()?).map_err(|_| malformed("negative format count"))?;
        let mut formats = Vec::with_capacity(n_formats.min(params.len() / 2));
        for _ in 0..n_formats {
            formats.push(match r.i16()? {
                0 => false,
                1 => true,
                _ => return Err(malformed("format code must be 0 or 1")),
            });
        }
        let n_params =
            usize::try_from(r.i16()?).map_err(|_| malformed("negative parameter count"))?;
        if n_formats > 1 && n_formats != n_params {
            return Err(malformed(
                "format count matches neither 1 nor the parameter count",
            ));
        }
        let mut values = Vec::with_capacity(n_params.min(params.len() / 4));
        for _ in 0..n_params {
            let len = r.i32()?;
            values.push(match usize::try_from(len) {
                Ok(len) => Some(r.take(len)?.to_vec()),
                Err(_) if len == -1 => None,
                Err(_) => return Err(malformed("negative parameter length")),
            });
        }
        let binary = (0..n_params)
            .map(|i| match formats.as_slice() {
                [] => false,
                [one] => *one,
                many => many[i],
            })
            .collect();
        Ok(BindParams { binary, values })
    }
}

/// The parts of a SASLInitialResponse the proxy checks: the mechanism and the GS2
/// channel-binding flag (`n`, `y` or `p`) that starts the client-first-message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a [u8],
    pub gs2_flag: Option<u8>,
    /// The client-first-message (empty when the length is -1).
    pub data: &'a [u8],
}

impl<'a> SaslInitialResponse<'a> {
    /// Decodes a `p` frame sent in answer to AuthenticationSASL.
    ///
    /// # Errors
    /// A body without a mechanism name or length.
    pub fn decode(frame: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body(frame), "SASLInitialResponse");
        let mechanism = r.cstr()?;
        let len = r.i32()?;
        let data = match usize::try_from(len) {
            Ok(n) if n == r.rest().len() => r.rest(),
            Ok(_) => {
                return Err(ProtocolError::Malformed {
                    message: "SASLInitialResponse",
                    reason: "the length does not match the data",
                });
            }
            Err(_) => &[],
        };
        Ok(SaslInitialResponse {
            mechanism,
            gs2_flag: data.first().copied(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode;

    #[test]
    fn sasl_initial_response_round_trips_and_checks_its_length() {
        let frame = encode::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=abc");
        let sasl = SaslInitialResponse::decode(&frame).unwrap();
        assert_eq!(sasl.mechanism, b"SCRAM-SHA-256");
        assert_eq!(sasl.data, b"n,,n=,r=abc");
        assert_eq!(sasl.gs2_flag, Some(b'n'));
        let mut short = frame.clone();
        short.truncate(short.len() - 1);
        let len = (short.len() - 1) as u32;
        short[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(SaslInitialResponse::decode(&short).is_err());

        let sasl = encode::authentication_sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]);
        assert_eq!(&sasl[9..], b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0");
        let len = u32::from_be_bytes([sasl[1], sasl[2], sasl[3], sasl[4]]) as usize;
        assert_eq!(len + 1, sasl.len());
    }

    #[test]
    fn decodes_query() {
        let f = encode::query("SELECT 1; SELECT 2");
        assert_eq!(
            FrontendMessage::decode(&f).unwrap(),
            FrontendMessage::Query {
                sql: b"SELECT 1; SELECT 2"
            }
        );
    }

    #[test]
    fn decodes_extended_messages() {
        let mut f = encode::parse("s1", "SELECT $1");
        assert_eq!(
            FrontendMessage::decode(&f).unwrap(),
            FrontendMessage::Parse {
                name: b"s1",
                sql: b"SELECT $1",
                param_types: &[0, 0],
            }
        );
        // A rewritten Parse keeps the client's parameter types byte for byte.
        let typed = encode::parse_raw(b"s2", b"SELECT $1", &[0, 1, 0, 0, 0, 23]);
        assert_eq!(
            FrontendMessage::decode(&typed).unwrap(),
            FrontendMessage::Parse {
                name: b"s2",
                sql: b"SELECT $1",
                param_types: &[0, 1, 0, 0, 0, 23],
            }
        );
        f = encode::bind("p1", "s1");
        assert_eq!(
            FrontendMessage::decode(&f).unwrap(),
            FrontendMessage::Bind {
                portal: b"p1",
                statement: b"s1",
                params: &[0, 0, 0, 0, 0, 0],
            }
        );
        // A Bind with one format code for all, a NULL and a value.
        let mut body = b"p\0s\0".to_vec();
        body.extend_from_slice(&[
            0, 1, 0, 1, 0, 2, 255, 255, 255, 255, 0, 0, 0, 2, b'h', b'i', 0, 0,
        ]);
        let mut bind = vec![b'B'];
        bind.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        bind.extend_from_slice(&body);
        let FrontendMessage::Bind { params, .. } = FrontendMessage::decode(&bind).unwrap() else {
            panic!("not a Bind");
        };
        assert_eq!(
            BindParams::decode(params).unwrap(),
            BindParams {
                binary: vec![true, true],
                values: vec![None, Some(b"hi".to_vec())],
            }
        );
        assert!(
            BindParams::decode(&[0, 1, 0, 7, 0, 0]).is_err(),
            "format code 7"
        );
        assert!(
            BindParams::decode(&[0, 0, 0, 1, 0, 0, 0, 9, 1]).is_err(),
            "short value"
        );
        f = encode::execute("p1", 10);
        assert_eq!(
            FrontendMessage::decode(&f).unwrap(),
            FrontendMessage::Execute {
                portal: b"p1",
                max_rows: 10
            }
        );
        assert_eq!(
            FrontendMessage::decode(&encode::sync()).unwrap(),
            FrontendMessage::Sync
        );
    }

    #[test]
    fn truncated_bodies_are_errors_not_panics() {
        for frame in [
            &b"Q\0\0\0\x06ab"[..],
            b"P\0\0\0\x05\0",
            b"E\0\0\0\x06p\0",
            b"C\0\0\0\x04",
            b"D\0\0\0\x06X\0",
        ] {
            assert!(FrontendMessage::decode(frame).is_err(), "{frame:?}");
        }
    }

    #[test]
    fn reads_gs2_flag() {
        let mut f = vec![b'p', 0, 0, 0, 0];
        f.extend_from_slice(b"SCRAM-SHA-256\0");
        f.extend_from_slice(&8i32.to_be_bytes());
        f.extend_from_slice(b"y,,n=,r=");
        let n = (f.len() - 1) as u32;
        f[1..5].copy_from_slice(&n.to_be_bytes());
        let sasl = SaslInitialResponse::decode(&f).unwrap();
        assert_eq!(sasl.mechanism, b"SCRAM-SHA-256");
        assert_eq!(sasl.gs2_flag, Some(b'y'));
    }
}
