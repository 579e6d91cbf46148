//! The client side of the admin API, for the commands that read a running pgshape
//! (`pgshape rewrite explain`, `top`, `snapshot`).
//!
//! The admin API is plain HTTP/1.1 on a private address (usually loopback), and every read is
//! one GET of a JSON document (`pgshape explain` also POSTs): a blocking request over
//! [`TcpStream`] is all it takes, so the binary carries no HTTP client stack (with its TLS and
//! connection pooling) for it. Reads of the admin API need no token (only its POST endpoints
//! do, see `auth.rs`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Connecting to the admin API.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Reading its answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read: a full listing of 10,000 rows with their histograms stays well below.
const MAX_RESPONSE: u64 = 256 << 20;

/// Why a read of the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid admin address {given:?}: {why}")]
    AdminUrl { given: String, why: &'static str },
    #[error(
        "cannot reach the admin API at {url}: {error} (is `pgshape serve` running with its admin \
         listener there? see its --admin flag)"
    )]
    Unreachable { url: String, error: String },
    #[error("the admin API at {url} answered HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from the admin API at {url}: {why}")]
    Protocol { url: String, why: String },
}

/// Where the admin API is: `http://host:port[/prefix]`, or `host:port` as `serve --admin` takes
/// it (a wildcard listen address means this host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminClient {
    /// `host:port` for the Host header and for resolving.
    authority: String,
    /// Path prefix without a trailing `/` (empty for the root).
    prefix: String,
}

impl AdminClient {
    /// A client for the admin API at `given`.
    ///
    /// # Errors
    /// An address that is not `http://`, has no host, or is `off`.
    pub fn new(given: &str) -> Result<AdminClient, ClientError> {
        let bad = |why| ClientError::AdminUrl {
            given: given.to_owned(),
            why,
        };
        let rest = if let Some(rest) = given.strip_prefix("http://") {
            rest
        } else if given.starts_with("https://") {
            return Err(bad(
                "the admin API speaks plain HTTP (put a TLS proxy's plain side, or a tunnel, here)",
            ));
        } else if given.contains("://") {
            return Err(bad("only http:// URLs are supported"));
        } else if given == "off" {
            return Err(bad("the admin API is switched off (--admin off)"));
        } else {
            given
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let has_port = match authority.rfind(':') {
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let authority = match authority.rsplit_once(':') {
            Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
            Some(("[::]", port)) => format!("[::1]:{port}"),
            _ => authority,
        };
        Ok(AdminClient {
            authority,
            prefix: prefix.to_owned(),
        })
    }

    /// The full URL of `path` (which starts with `/`), for messages.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}{path}", self.authority, self.prefix)
    }

    /// `GET path` (with its query string), parsed as JSON into `T`.
    ///
    /// # Errors
    /// An unreachable admin API, an HTTP status other than 200 (with the API's `error`
    /// message), or a body that is not the JSON expected.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json("GET", path, None)
    }

    /// `POST path` with an empty body and, when given, the admin API's bearer token; the
    /// answer as [`Self::get_json`] reads it.
    ///
    /// # Errors
    /// As [`Self::get_json`] (401 when the token is missing or wrong).
    pub fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> Result<T, ClientError> {
        self.json("POST", path, token)
    }

    fn json<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let (status, body) = self.request(method, path, token)?;
        if status != 200 {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            return Err(ClientError::Status {
                url,
                status,
                message,
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            url,
            why: format!("the body is not the JSON expected: {e}"),
        })
    }

    /// `method path`: the status and the (de-chunked) body.
    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let url = self.url(path);
        let unreachable = |error: String| ClientError::Unreachable {
            url: url.clone(),
            error,
        };
        let addrs: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .map_err(|e| unreachable(e.to_string()))?
            .collect();
        let mut last_error = "the host name resolves to no address".to_owned();
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        let mut stream = stream.ok_or_else(|| unreachable(last_error))?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(READ_TIMEOUT)))
            .map_err(|e| unreachable(e.to_string()))?;
        let authorization = token
            .map(|t| format!("Authorization: Bearer {t}\r\nContent-Length: 0\r\n"))
            .unwrap_or_else(|| {
                if method == "GET" {
                    String::new()
                } else {
                    "Content-Length: 0\r\n".to_owned()
                }
            });
        write!(
            stream,
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: \
             pgshape/{}\r\n{authorization}Connection: close\r\n\r\n",
            self.prefix,
            self.authority,
            env!("CARGO_PKG_VERSION"),
        )
        .map_err(|e| unreachable(e.to_string()))?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        parse_response(&raw).map_err(|why| ClientError::Protocol {
            url: url.clone(),
            why: why.to_owned(),
        })
    }
}

/// Status and body (de-chunked) of an HTTP/1.1 response read to its end.
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), &'static str> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the HTTP header")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "the HTTP header is not text")?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("not an HTTP/1.x status line")?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk");
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses() {
        let parse = |s| AdminClient::new(s).map(|u| (u.authority, u.prefix));
        assert_eq!(
            parse("http://127.0.0.1:9187").unwrap(),
            ("127.0.0.1:9187".into(), String::new())
        );
        assert_eq!(
            parse("0.0.0.0:9187").unwrap(),
            ("127.0.0.1:9187".into(), String::new())
        );
        assert_eq!(
            parse("http://admin.internal/pgshape/").unwrap(),
            ("admin.internal:80".into(), "/pgshape".into())
        );
        assert_eq!(
            parse("http://[::]:9187").unwrap(),
            ("[::1]:9187".into(), String::new())
        );
        assert!(parse("https://x:1").is_err());
        assert!(parse("off").is_err());
        assert!(parse("http://").is_err());
    }

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (404, b"{\"a\":1}".to_vec())
        );
        assert!(parse_response(b"garbage").is_err());
    }
}
